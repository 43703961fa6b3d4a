#!/usr/bin/env bash
# The main job, end to end on one machine: start `flightdeck sandbox` (a local Azure ML endpoint
# emulator with a data plane and Azure Monitor metrics), then roll `environments/sandbox` from blue
# to green the GitOps way: each commit edits the YAML and runs `flightdeck apply`. The environment's
# `rollout:` policy makes the move to green a staged rollout (10%, then 50%, each baked 3 s and
# judged on error rate and p99 latency) while a background generator sends scoring requests. Then
# a bad release (red, answering 500 to half its requests) is rolled back and held.
#
#   scripts/demo.sh            (PROVISIONING_DELAY=1s by default; set it to 0s for a fast run)
#
# Needs: cargo (builds flightdeck) and python3 (scoring requests and sandbox faults). Changes nothing in
# the repository: the environment is copied to a temp directory first.
set -euo pipefail
cd "$(dirname "$0")/.."

delay="${PROVISIONING_DELAY:-1s}"
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "build (the first, cold build compiles every dependency: several minutes, with progress below)"
cargo build --locked --bin flightdeck
target_dir="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
fd="$target_dir/debug/flightdeck"

work="$(mktemp -d)"
sandbox_pid=""
traffic_pid=""
stop_traffic() {
  if [ -n "$traffic_pid" ]; then
    kill -TERM "$traffic_pid" 2>/dev/null || true
    wait "$traffic_pid" 2>/dev/null || true
    traffic_pid=""
  fi
}
cleanup() {
  stop_traffic
  if [ -n "$sandbox_pid" ]; then
    kill -TERM "$sandbox_pid" 2>/dev/null || true
    wait "$sandbox_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

say "start the sandbox (provisioning delay $delay; metrics in 1 s buckets, published at once)"
"$fd" sandbox --listen 127.0.0.1:0 --provisioning-delay "$delay" --metrics-grain 1s --metrics-lag 0s \
  >"$work/sandbox.env" 2>"$work/sandbox.log" &
sandbox_pid=$!
for _ in $(seq 600); do grep -q '^AZURE_SUBSCRIPTION_ID=' "$work/sandbox.env" 2>/dev/null && break; sleep 0.1; done
grep -q '^FLIGHTDECK_ARM_ENDPOINT=' "$work/sandbox.env" || { cat "$work/sandbox.log"; exit 1; }
set -a; . "$work/sandbox.env"; set +a
echo "FLIGHTDECK_ARM_ENDPOINT=$FLIGHTDECK_ARM_ENDPOINT (credentials exported as AZURE_*)"

env_dir="$work/environments/sandbox"
mkdir -p "$work/environments"
cp -r environments/sandbox "$env_dir"
endpoint_file="$env_dir/my-endpoint.yml"

# The scoring client (key auth, as `az ml online-endpoint invoke`): `score.py count` sends 20
# requests and says who answered; `score.py generate` sends requests until it is stopped (the live
# traffic the rollout gates judge, about 40 a second).
cat >"$work/score.py" <<'PY'
import collections, json, os, signal, sys, time, urllib.error, urllib.parse, urllib.request
arm = os.environ["FLIGHTDECK_ARM_ENDPOINT"].rstrip("/")
authority = os.environ["AZURE_AUTHORITY_HOST"].rstrip("/")
form = urllib.parse.urlencode({"grant_type": "client_credentials", "client_id": os.environ["AZURE_CLIENT_ID"],
    "client_secret": os.environ["AZURE_CLIENT_SECRET"], "scope": "https://management.azure.com/.default"}).encode()
token = json.load(urllib.request.urlopen(f"{authority}/{os.environ['AZURE_TENANT_ID']}/oauth2/v2.0/token", form))["access_token"]
ep = (f"{arm}/subscriptions/{os.environ['AZURE_SUBSCRIPTION_ID']}/resourceGroups/flightdeck-demo/providers/"
      "Microsoft.MachineLearningServices/workspaces/demo/onlineEndpoints/my-endpoint")
def call(url, data=b"", method="GET"):
    req = urllib.request.Request(url + "?api-version=2025-12-01", data=data if method == "POST" else None, method=method,
                                 headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    return json.load(urllib.request.urlopen(req))
endpoint = call(ep)
key = call(ep + "/listKeys", b"", "POST")["primaryKey"]
body = open("environments/sandbox/sample-request.json", "rb").read()
def score():
    req = urllib.request.Request(endpoint["properties"]["scoringUri"], data=body,
                                 headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            answer = json.load(r)
            return f"{r.headers['azureml-model-deployment']} ({answer.get('model', '?').rsplit('/', 3)[-3]})"
    except urllib.error.HTTPError as e:
        return f"{e.headers.get('azureml-model-deployment', '?')} (HTTP {e.code})"
if sys.argv[1] == "generate":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    while True:
        try:
            score()
        except OSError:
            pass  # the endpoint may be mid-update; the gates judge what the deployments answered
        time.sleep(0.025)
seen = collections.Counter(score() for _ in range(20))
print("   live traffic:", endpoint["properties"]["traffic"], "| 20 requests answered by:", dict(sorted(seen.items())))
PY
score() { python3 "$work/score.py" count; }
start_traffic() {
  echo "   (a background client sends ~40 scoring requests a second: the traffic the gates judge)"
  python3 "$work/score.py" generate &
  traffic_pid=$!
}

# Sandbox fault injection (no auth): how a bad model release behaves.
fault() {
  python3 - "$FLIGHTDECK_ARM_ENDPOINT" "$1" <<'PY'
import sys, urllib.request
req = urllib.request.Request(sys.argv[1].rstrip("/") + "/_sandbox/faults", data=sys.argv[2].encode(), method="POST",
                             headers={"Content-Type": "application/json"})
urllib.request.urlopen(req).read()
PY
}

# The YAML change Git would carry at each stage, as `git diff` shows it.
previous="$work/previous.yml"
cp "$endpoint_file" "$previous"
show_change() {
  if ! cmp -s "$previous" "$endpoint_file"; then
    echo "   the commit for this stage changes environments/sandbox/my-endpoint.yml:"
    diff -u --label a/environments/sandbox/my-endpoint.yml --label b/environments/sandbox/my-endpoint.yml \
      "$previous" "$endpoint_file" | sed 's/^/   | /' || true
    cp "$endpoint_file" "$previous"
  fi
}

stage() {
  say "$1"
  show_change
  "$fd" apply "$env_dir"
  score
}

stage "1. blue takes all traffic (environments/sandbox as committed)"

# Every model answers in about 100 ms (simulated), so the latency gate compares like with like:
# the host's own jitter (tens of ms on a loaded CI machine, where the sandbox is a debug build)
# stays well inside the gate's 1.5x.
for d in blue green red; do fault "{\"endpoint\": \"my-endpoint\", \"deployment\": \"$d\", \"latency_ms\": 100}"; done

python3 - "$endpoint_file" <<'PY'
import sys
p = sys.argv[1]; s = open(p).read()
green = s[s.index("  # blue deployment"):].replace("# blue deployment", "# green deployment").replace("name: blue", "name: green")
green = green.replace("name: model-1", "name: model-2").replace("name: env-model1", "name: env-model2")
s = s.replace("traffic:\n  blue: 100\n", "traffic:\n  blue: 0\n  green: 100\n") + "\n" + green
open(p, "w").write(s)
PY
say "2. release green: one commit declares green at 100%; the rollout policy stages it"
echo "   environment.yaml's rollout: 10% for 3 s, then 50% for 3 s, each judged on"
echo "   error_rate < 2% and p99 < 1.5x baseline (blue) before it goes on; then the declared 100%"
show_change
start_traffic
"$fd" apply "$env_dir"
stop_traffic
score

python3 - "$endpoint_file" <<'PY'
import sys
p = sys.argv[1]; s = open(p).read()
start = s.index("  # blue deployment"); end = s.index("  # green deployment")
s = s[:start] + s[end:]
s = s.replace("  blue: 0\n", "")
open(p, "w").write(s)
PY
stage "3. delete blue (drained; no traffic moves, so no staged rollout)"

good="$work/good.yml"
cp "$endpoint_file" "$good"
python3 - "$endpoint_file" <<'PY'
import sys
p = sys.argv[1]; s = open(p).read()
red = s[s.index("  # green deployment"):].replace("# green deployment", "# red deployment").replace("name: green", "name: red")
red = red.replace("name: model-2", "name: model-3").replace("name: env-model2", "name: env-model3")
s = s.replace("traffic:\n  green: 100\n", "traffic:\n  green: 0\n  red: 100\n") + "\n" + red
open(p, "w").write(s)
PY
say "4. a bad release: red answers 500 to every other request (a sandbox fault)"
fault '{"endpoint": "my-endpoint", "deployment": "red", "latency_ms": 100, "error_rate": 0.5}'
show_change
start_traffic
code=0
"$fd" apply "$env_dir" || code=$?
stop_traffic
[ "$code" -eq 3 ] || { echo "expected flightdeck apply to exit 3 (rolled back), got $code"; exit 1; }
echo "   flightdeck apply exited 3: red failed its gate at stage 1, traffic went back to green"
score
code=0
"$fd" plan "$env_dir" || code=$?
[ "$code" -eq 3 ] || { echo "expected flightdeck plan to exit 3 (held), got $code"; exit 1; }
echo "   flightdeck plan exited 3: this desired state is held at green until Git changes"

cp "$good" "$endpoint_file"
stage "5. revert the bad commit (Git changes: red is removed, green keeps all traffic)"

say "re-plan: nothing left to do"
"$fd" plan "$env_dir" && echo "   flightdeck plan exited 0: live equals Git"
