#!/usr/bin/env bash
# MLflow promotion end to end, with a real MLflow tracking server (mlflow 3.17.2 from PyPI; the
# contract ../shared/reference/mlflow/CONTRACT.md was read from 3.18.0, see below). Creates a virtualenv outside
# the repo (MLFLOW_VENV, default ${TMPDIR:-/tmp}/flightdeck-mlflow-venv), installs mlflow (fails
# loudly if it cannot), then:
#   1. starts `mlflow server` on a sqlite backend with the webhook settings a 127.0.0.1 receiver
#      needs ([MLFLOW C1-C3]: http allowed, private IPs allowed, a Fernet key, no cache TTL);
#   2. starts the sandbox, and the agent on a bare local Git repository holding
#      environments/sandbox with a `promotion:` mapping model-1@champion → my-endpoint;
#   3. registers model-1 versions 1 and 2 and a webhook to the agent with a secret, with the
#      real MLflow client (tests/sdk/mlflow_promotion.py), sets champion → 2, and waits for the
#      promote commit on main, the rollout on the sandbox and version 2 answering the scoring
#      URI; prints the latencies alias set → commit → first sandbox write → serving.
# Needs python3 with venv and a built binary (FLIGHTDECK, default target/debug/flightdeck).
# Run by .ci/run after `cargo test`; not part of `cargo test`. `--install-only` only prepares
# the virtualenv (scripts/prepare-ci.sh runs it while the build runs) and needs no binary.
set -euo pipefail
cd "$(dirname "$0")/.."
install_only=false
[ "${1:-}" = "--install-only" ] && install_only=true

VENV="${MLFLOW_VENV:-${TMPDIR:-/tmp}/flightdeck-mlflow-venv}"
BIN="${FLIGHTDECK:-${CARGO_TARGET_DIR:-target}/debug/flightdeck}"
$install_only || [ -x "$BIN" ] || { echo "check-mlflow: no flightdeck binary at $BIN (cargo build first)" >&2; exit 1; }

# Pinned: 3.17.2, the newest release the package registry serves whole (the contract was read
# from 3.18.0, whose mlflow-skinny is not on the registry, so `pip install mlflow==3.18.0`
# fails); webhooks and their signature are the same from 3.3.0 on [MLFLOW B1, B8].
# MLFLOW_VERSION overrides it only to try another release by hand.
VERSION="${MLFLOW_VERSION:-3.17.2}"
scripts/venv-install.sh "$VENV" "mlflow==$VERSION" \
  || { echo "check-mlflow: cannot install mlflow==$VERSION from PyPI" >&2; exit 1; }
"$VENV/bin/python" -c "import mlflow, sys; v = mlflow.__version__; print('mlflow', v); sys.exit(v != sys.argv[1])" "$VERSION" \
  || { echo "check-mlflow: mlflow $VERSION is not importable from $VENV" >&2; exit 1; }
[ -x "$VENV/bin/mlflow" ] || { echo "check-mlflow: no mlflow command in $VENV/bin" >&2; exit 1; }
$install_only && exit 0

BIN="$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")"
WORK="$(mktemp -d)"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
fail() {
  for log in mlflow sandbox agent; do
    [ -f "$WORK/$log.log" ] && { echo "--- $log log (last 40 lines)" >&2; tail -40 "$WORK/$log.log" >&2; }
  done
  echo "check-mlflow: FAILED: $*" >&2
  exit 1
}
free_port() { "$VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
started=$(date +%s)

# 1. MLflow [MLFLOW C1, C2]: settings in the server's environment, where delivery runs.
MLFLOW_PORT="$(free_port)"
FERNET="$("$VENV/bin/python" -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())')"
mkdir -p "$WORK/artifacts"
MLFLOW_WEBHOOK_ALLOWED_SCHEMES=http,https \
MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS=true \
MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY="$FERNET" \
MLFLOW_WEBHOOK_CACHE_TTL=0 \
  "$VENV/bin/mlflow" server --backend-store-uri "sqlite:///$WORK/mlflow.db" \
    --default-artifact-root "$WORK/artifacts" --host 127.0.0.1 --port "$MLFLOW_PORT" --workers 1 \
    >"$WORK/mlflow.log" 2>&1 &
PIDS+=($!)

# 2. The sandbox (no provisioning delay) and its credentials.
"$BIN" sandbox --listen 127.0.0.1:0 --provisioning-delay 0s >"$WORK/sandbox.env" 2>"$WORK/sandbox.log" &
PIDS+=($!)
for _ in $(seq 600); do grep -q '^AZURE_SUBSCRIPTION_ID=' "$WORK/sandbox.env" 2>/dev/null && break; sleep 0.1; done
grep -q '^FLIGHTDECK_ARM_ENDPOINT=' "$WORK/sandbox.env" || fail "the sandbox did not start"
set -a; . "$WORK/sandbox.env"; set +a

# The repository: environments/sandbox without its staged-rollout policy (a direct update is
# what this check measures), with the promotion mapping.
git init -q -b main "$WORK/src"
mkdir -p "$WORK/src/environments/sandbox"
cp environments/sandbox/my-endpoint.yml environments/sandbox/sample-request.json "$WORK/src/environments/sandbox/"
cat >"$WORK/src/environments/sandbox/environment.yaml" <<'YAML'
name: sandbox
target:
  azureml:
    subscription_id: 00000000-0000-0000-0000-000000000000
    resource_group: flightdeck-demo
    workspace: demo
    location: westus2
tests:
  my-endpoint:
    request_file: sample-request.json
    expect_status: 200
promotion:
  mode: commit
  models:
    - model: model-1@champion
      endpoint: my-endpoint
      deployment: blue
YAML
"$BIN" validate "$WORK/src/environments/sandbox" >/dev/null || fail "the check's environment does not validate"
git -C "$WORK/src" -c user.name=ci -c user.email=ci@localhost add -A
git -C "$WORK/src" -c user.name=ci -c user.email=ci@localhost commit -q -m "sandbox with promotion"
git clone -q --bare "$WORK/src" "$WORK/origin.git"

# Generous: importing mlflow takes ~10 s of CPU, and in CI this check shares the two cores with
# `cargo test` and the other checks (one run took over 60 s to get healthy).
for _ in $(seq 3000); do
  curl -fsS "http://127.0.0.1:$MLFLOW_PORT/health" >/dev/null 2>&1 && break
  kill -0 "${PIDS[0]}" 2>/dev/null || fail "mlflow server exited"
  sleep 0.1
done
curl -fsS "http://127.0.0.1:$MLFLOW_PORT/health" >/dev/null || fail "mlflow server not healthy after 300 s"

AGENT_PORT="$(free_port)"
SECRET="$("$VENV/bin/python" -c 'import secrets; print(secrets.token_hex(16))')"
printf '%s\n' "$SECRET" >"$WORK/mlflow-webhook-secret"
"$BIN" agent --repo "$WORK/origin.git" --branch main --path environments/sandbox \
  --interval 2s --listen "127.0.0.1:$AGENT_PORT" --cache-dir "$WORK/cache" \
  --mlflow-uri "http://127.0.0.1:$MLFLOW_PORT" --mlflow-webhook-secret-file "$WORK/mlflow-webhook-secret" \
  --promotion-interval 60s >"$WORK/agent.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 3000); do
  curl -fsS "http://127.0.0.1:$AGENT_PORT/readyz" >/dev/null 2>&1 && break
  kill -0 "${PIDS[2]}" 2>/dev/null || fail "the agent exited"
  sleep 0.1
done
curl -fsS "http://127.0.0.1:$AGENT_PORT/readyz" >/dev/null || fail "the agent did not apply the first revision within 300 s"

# 3. The real MLflow client: register, subscribe, move the alias, and watch it land.
status=0
MLFLOW_TRACKING_URI="http://127.0.0.1:$MLFLOW_PORT" AGENT="http://127.0.0.1:$AGENT_PORT" \
  WEBHOOK_SECRET="$SECRET" ORIGIN="$WORK/origin.git" WORK="$WORK" \
  timeout 120 "$VENV/bin/python" tests/sdk/mlflow_promotion.py || status=$?
[ "$status" -eq 0 ] || fail "tests/sdk/mlflow_promotion.py exited $status"
grep -qF "$SECRET" "$WORK/agent.log" && fail "the webhook secret appears in the agent's log"
echo "check-mlflow: passed in $(( $(date +%s) - started )) s"
