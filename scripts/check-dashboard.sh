#!/usr/bin/env bash
# The dashboard in a real browser (CI-only; docs/agent.md "Dashboard"). Installs nothing:
# `.ci/run` installs Debian's `chromium` first. Fails (exit 1) when no Chromium is found; never
# skips.
#
# Starts the sandbox and an agent following a local Git repository whose environment has a
# 3-stage policy with short bakes (green at 10%, then 50%, then the declared 100%, each stage
# judged on error_rate while a client sends scoring requests), opens the agent's dashboard once
# in headless Chromium (scripts/dashboard_cdp.py, a CDP client on the Python standard library),
# commits the release, and checks that the page, never reloaded, shows green's traffic moving
# through 10, 50 and 100 and the rollout finished. Screenshots go to
# target/dashboard-screenshots/ (CI artifacts); UPDATE_DOCS=1 also copies the one taken mid-
# rollout to docs/dashboard.png.
set -euo pipefail
cd "$(dirname "$0")/.."

bin="${CHROMIUM_BIN:-chromium}"
if ! command -v "$bin" >/dev/null 2>&1; then
    echo "check-dashboard: FAILED: no Chromium binary '$bin' on PATH." >&2
    echo "  Install it (Debian: apt-get install -y chromium) or set CHROMIUM_BIN=/path/to/chromium." >&2
    exit 1
fi
chromium="$(command -v "$bin")"
echo "check-dashboard: $("$chromium" --version 2>/dev/null | head -n 1)"

cargo build --locked --bin flightdeck
target_dir="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
fd="$target_dir/debug/flightdeck"
shots="$target_dir/dashboard-screenshots"
rm -rf "$shots"
mkdir -p "$shots"

work="$(mktemp -d)"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

"$fd" sandbox --listen 127.0.0.1:0 --provisioning-delay 0s --metrics-grain 1s --metrics-lag 0s \
    >"$work/sandbox.env" 2>"$work/sandbox.log" &
pids+=($!)
for _ in $(seq 600); do grep -q '^AZURE_SUBSCRIPTION_ID=' "$work/sandbox.env" 2>/dev/null && break; sleep 0.1; done
grep -q '^FLIGHTDECK_ARM_ENDPOINT=' "$work/sandbox.env" || { cat "$work/sandbox.log"; exit 1; }
set -a; . "$work/sandbox.env"; set +a

# The repository the agent follows: environments/sandbox with a 3-stage short-bake policy.
repo="$work/repo"
mkdir -p "$repo/environments"
cp -r environments/sandbox "$repo/environments/sandbox"
python3 - "$repo/environments/sandbox/environment.yaml" <<'PY'
import sys
p = sys.argv[1]; s = open(p).read()
start = s.index("  default:")
s = s[:start] + """  default:
    steps:
      - weight: 10
        bake: 4s
        gates: ["error_rate < 2%"]
      - weight: 50
        bake: 4s
        gates: ["error_rate < 2%"]
    min_requests: 5
    max_bake: 30s
"""
open(p, "w").write(s)
PY
git -C "$repo" init -q -b main
git -C "$repo" -c user.name=ci -c user.email=ci@example.com add -A
git -C "$repo" -c user.name=ci -c user.email=ci@example.com commit -qm "blue"

port="$(free_port)"
"$fd" agent --repo "$repo" --path environments/sandbox --interval 1s --listen "127.0.0.1:$port" \
    --cache-dir "$work/cache" --commit-url 'https://git.example.com/flightdeck/commit/{sha}' \
    >"$work/agent.log" 2>&1 &
pids+=($!)
ready=""
for _ in $(seq 300); do
    if python3 -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:$port/readyz', timeout=2)" 2>/dev/null; then ready=1; break; fi
    sleep 0.2
done
[ -n "$ready" ] || { echo "check-dashboard: FAILED: the agent never became ready" >&2; tail -n 50 "$work/agent.log" >&2; exit 1; }

# Scoring traffic for the gates (key auth, as the demo's client).
cat >"$work/traffic.py" <<'PY'
import json, os, signal, sys, time, urllib.error, urllib.parse, urllib.request
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
arm = os.environ["FLIGHTDECK_ARM_ENDPOINT"].rstrip("/")
authority = os.environ["AZURE_AUTHORITY_HOST"].rstrip("/")
form = urllib.parse.urlencode({"grant_type": "client_credentials", "client_id": os.environ["AZURE_CLIENT_ID"],
    "client_secret": os.environ["AZURE_CLIENT_SECRET"], "scope": "https://management.azure.com/.default"}).encode()
token = json.load(urllib.request.urlopen(f"{authority}/{os.environ['AZURE_TENANT_ID']}/oauth2/v2.0/token", form))["access_token"]
ep = (f"{arm}/subscriptions/{os.environ['AZURE_SUBSCRIPTION_ID']}/resourceGroups/flightdeck-demo/providers/"
      "Microsoft.MachineLearningServices/workspaces/demo/onlineEndpoints/my-endpoint")
def call(url, method="GET"):
    req = urllib.request.Request(url + "?api-version=2025-12-01", data=b"" if method == "POST" else None, method=method,
                                 headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    return json.load(urllib.request.urlopen(req))
scoring = call(ep)["properties"]["scoringUri"]
key = call(ep + "/listKeys", "POST")["primaryKey"]
body = open(sys.argv[1], "rb").read()
while True:
    try:
        req = urllib.request.Request(scoring, data=body, headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
        urllib.request.urlopen(req, timeout=10).read()
    except (OSError, urllib.error.HTTPError):
        pass
    time.sleep(0.03)
PY
python3 "$work/traffic.py" environments/sandbox/sample-request.json &
pids+=($!)

cdp="$(free_port)"
"$chromium" --headless --no-sandbox --disable-gpu --disable-dev-shm-usage --no-first-run \
    --remote-debugging-address=127.0.0.1 --remote-debugging-port="$cdp" \
    --user-data-dir="$work/chromium" about:blank >"$work/chromium.log" 2>&1 &
pids+=($!)

# The release: green declared at 100%, as one commit.
cat >"$work/release.sh" <<SH
set -e
python3 - "$repo/environments/sandbox/my-endpoint.yml" <<'PY'
import sys
p = sys.argv[1]; s = open(p).read()
green = s[s.index("  # blue deployment"):].replace("# blue deployment", "# green deployment").replace("name: blue", "name: green")
green = green.replace("name: model-1", "name: model-2").replace("name: env-model1", "name: env-model2")
s = s.replace("traffic:\n  blue: 100\n", "traffic:\n  blue: 0\n  green: 100\n") + "\n" + green
open(p, "w").write(s)
PY
git -C "$repo" -c user.name=ci -c user.email=ci@example.com commit -qam "release green"
SH

if ! python3 scripts/dashboard_cdp.py "$cdp" "http://127.0.0.1:$port/" "$shots" my-endpoint green 10,50,100 "bash $work/release.sh"; then
    echo "check-dashboard: agent log (last 40 lines):" >&2
    tail -n 40 "$work/agent.log" >&2
    exit 1
fi
if [ "${UPDATE_DOCS:-}" = 1 ]; then
    mid="$(ls "$shots" | grep -- '-green-50.png' | head -n 1)"
    cp "$shots/${mid:-final.png}" docs/dashboard.png
    echo "check-dashboard: docs/dashboard.png updated from $mid"
fi
