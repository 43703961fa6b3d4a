#!/usr/bin/env bash
# Drives `flightdeck sandbox` with Microsoft's azure-ai-ml Python SDK (tests/sdk/azure_ai_ml_sandbox.py).
# Creates a virtualenv outside the repo (SDK_VENV, default ${TMPDIR:-/tmp}/flightdeck-sdk-venv),
# installs azure-ai-ml + azure-identity from PyPI (fails loudly if it cannot), starts the sandbox
# over HTTPS on a free port, runs the script with only the variables it needs, and stops the
# sandbox. Needs python3 with venv and a built binary (FLIGHTDECK, default target/debug/flightdeck).
# Run by .ci/run after `cargo test`; not part of `cargo test`. `--install-only` only prepares the
# virtualenv (scripts/prepare-ci.sh runs it while the build runs) and needs no binary.
set -euo pipefail
cd "$(dirname "$0")/.."
install_only=false
[ "${1:-}" = "--install-only" ] && install_only=true

VENV="${SDK_VENV:-${TMPDIR:-/tmp}/flightdeck-sdk-venv}"
BIN="${FLIGHTDECK:-${CARGO_TARGET_DIR:-target}/debug/flightdeck}"
$install_only || [ -x "$BIN" ] || { echo "check-azure-ai-ml: no flightdeck binary at $BIN (cargo build first)" >&2; exit 1; }

# Pinned: the versions this sandbox was checked against (docs/sandbox.md); bump them together.
scripts/venv-install.sh "$VENV" azure-ai-ml==1.35.2 azure-identity==1.27.0 \
  || { echo "check-azure-ai-ml: cannot install azure-ai-ml from PyPI" >&2; exit 1; }
"$VENV/bin/python" -c "import azure.ai.ml, azure.identity; print('azure-ai-ml', azure.ai.ml.__version__)"
$install_only && exit 0

WORK="$(mktemp -d)"
SANDBOX_PID=""
cleanup() {
  if [ -n "$SANDBOX_PID" ]; then kill "$SANDBOX_PID" 2>/dev/null || true; wait "$SANDBOX_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

# A free loopback port: bind :0 and read it back (the sandbox then binds it).
PORT="$("$VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
"$BIN" sandbox --listen "127.0.0.1:$PORT" --provisioning-delay 1s --tls-cert "$WORK/sandbox.pem" \
  >"$WORK/env" 2>"$WORK/sandbox.log" &
SANDBOX_PID=$!
for _ in $(seq 1 100); do
  [ "$(grep -c = "$WORK/env" 2>/dev/null || true)" -ge 8 ] && break
  kill -0 "$SANDBOX_PID" 2>/dev/null || { cat "$WORK/sandbox.log" >&2; echo "check-azure-ai-ml: the sandbox did not start" >&2; exit 1; }
  sleep 0.1
done
value() { grep "^$1=" "$WORK/env" | cut -d= -f2-; }

started=$(date +%s%N)
# Only what the script needs: no AZURE_CLIENT_SECRET, so DefaultAzureCredential uses the
# sandbox's managed-identity endpoint (AZURE_POD_IDENTITY_AUTHORITY_HOST).
status=0
env -i PATH="$PATH" HOME="${HOME:-$WORK}" \
  FLIGHTDECK_ARM_ENDPOINT="$(value FLIGHTDECK_ARM_ENDPOINT)" \
  AZURE_SUBSCRIPTION_ID="$(value AZURE_SUBSCRIPTION_ID)" \
  REQUESTS_CA_BUNDLE="$(value REQUESTS_CA_BUNDLE)" \
  AZURE_POD_IDENTITY_AUTHORITY_HOST="$(value AZURE_POD_IDENTITY_AUTHORITY_HOST)" \
  timeout 300 "$VENV/bin/python" tests/sdk/azure_ai_ml_sandbox.py || status=$?
if [ "$status" -ne 0 ]; then
  echo "--- sandbox log" >&2; tail -50 "$WORK/sandbox.log" >&2
  echo "check-azure-ai-ml: FAILED (exit $status)" >&2
  exit "$status"
fi
echo "check-azure-ai-ml: passed in $(( ($(date +%s%N) - started) / 1000000 )) ms"
