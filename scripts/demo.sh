#!/usr/bin/env bash
# The main job, end to end on one machine: start `flightdeck sandbox` (a local Azure ML endpoint
# emulator with a data plane), then roll `environments/sandbox` from blue to green the GitOps way:
# each stage edits the YAML and runs `flightdeck apply`, and 20 scoring requests show who answers.
#
#   scripts/demo.sh            (PROVISIONING_DELAY=1s by default; set it to 0s for a fast run)
#
# Needs: cargo (builds flightdeck) and python3 (to call the scoring URI). Changes nothing in
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
cleanup() {
  [ -n "$sandbox_pid" ] && kill -TERM "$sandbox_pid" 2>/dev/null && wait "$sandbox_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

say "start the sandbox (provisioning delay $delay)"
"$fd" sandbox --listen 127.0.0.1:0 --provisioning-delay "$delay" >"$work/sandbox.env" 2>"$work/sandbox.log" &
sandbox_pid=$!
for _ in $(seq 100); do grep -q '^AZURE_SUBSCRIPTION_ID=' "$work/sandbox.env" 2>/dev/null && break; sleep 0.1; done
grep -q '^FLIGHTDECK_ARM_ENDPOINT=' "$work/sandbox.env" || { cat "$work/sandbox.log"; exit 1; }
set -a; . "$work/sandbox.env"; set +a
echo "FLIGHTDECK_ARM_ENDPOINT=$FLIGHTDECK_ARM_ENDPOINT (credentials exported as AZURE_*)"

env_dir="$work/environments/sandbox"
mkdir -p "$work/environments"
cp -r environments/sandbox "$env_dir"
endpoint_file="$env_dir/my-endpoint.yml"

# Score 20 requests through the endpoint's scoring URI (key auth, as `az ml online-endpoint invoke`).
score() {
  python3 - "$@" <<'PY'
import json, os, urllib.request, urllib.parse, collections
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
seen = collections.Counter()
for _ in range(20):
    req = urllib.request.Request(endpoint["properties"]["scoringUri"], data=body,
                                 headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req) as r:
        answer = json.load(r)
        seen[f"{r.headers['azureml-model-deployment']} ({answer.get('model', '?').rsplit('/', 3)[-3]})"] += 1
print("   live traffic:", endpoint["properties"]["traffic"], "| 20 requests answered by:", dict(sorted(seen.items())))
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

python3 - "$endpoint_file" <<'PY'
import sys
p = sys.argv[1]; s = open(p).read()
green = s[s.index("  # blue deployment"):].replace("# blue deployment", "# green deployment").replace("name: blue", "name: green")
green = green.replace("name: model-1", "name: model-2").replace("name: env-model1", "name: env-model2")
s = s.replace("traffic:\n  blue: 100\n", "traffic:\n  blue: 100\n  green: 0\n") + "\n" + green
open(p, "w").write(s)
PY
stage "2. add green at 0% (created and provisioned; it takes no traffic yet)"

sed -i 's/^  blue: 100$/  blue: 90/; s/^  green: 0$/  green: 10/' "$endpoint_file"
stage "3. flight green 10% (green is tested through azureml-model-deployment first)"

sed -i 's/^  blue: 90$/  blue: 0/; s/^  green: 10$/  green: 100/' "$endpoint_file"
stage "4. green takes all traffic"

python3 - "$endpoint_file" <<'PY'
import sys
p = sys.argv[1]; s = open(p).read()
start = s.index("  # blue deployment"); end = s.index("  # green deployment")
s = s[:start] + s[end:]
s = s.replace("  blue: 0\n", "")
open(p, "w").write(s)
PY
stage "5. delete blue (drained)"

say "re-plan: nothing left to do"
"$fd" plan "$env_dir" && echo "   flightdeck plan exited 0: live equals Git"
