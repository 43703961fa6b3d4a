#!/usr/bin/env bash
# Installs the real components the CI-only checks use, so that `.ci/run` can do it in the
# background while the Rust build runs (it waits for this script before the first check that
# needs them). Idempotent: what is already installed is kept. Fails (exit 1, saying what) when
# something cannot be installed; the checks themselves then fail loudly too, never skip.
#   - Microsoft's azure-ai-ml SDK in a virtualenv (SDK_VENV, default ${TMPDIR:-/tmp}/flightdeck-sdk-venv),
#     at the versions scripts/check-azure-ai-ml.sh pins;
#   - mlflow 3.17.2 in a virtualenv (MLFLOW_VENV, default ${TMPDIR:-/tmp}/flightdeck-mlflow-venv),
#     as scripts/check-mlflow.sh pins it;
#   - actionlint, check-jsonschema and shellcheck in a virtualenv (CI_FILES_VENV, default
#     ${TMPDIR:-/tmp}/flightdeck-ci-files-venv), at the versions scripts/check-ci-files.sh pins;
#   - Debian's `prometheus` and `chromium` packages, when they are not on PATH (needs root, as CI
#     runs): one apt-get for both.
set -euo pipefail
cd "$(dirname "$0")/.."

status=0

VENV="${SDK_VENV:-${TMPDIR:-/tmp}/flightdeck-sdk-venv}"
if scripts/check-azure-ai-ml.sh --install-only; then
  echo "prepare-ci: azure-ai-ml ready in $VENV"
else
  echo "prepare-ci: FAILED to install azure-ai-ml into $VENV" >&2
  status=1
fi

CI_VENV="${CI_FILES_VENV:-${TMPDIR:-/tmp}/flightdeck-ci-files-venv}"
if scripts/check-ci-files.sh --install-only; then
  echo "prepare-ci: actionlint, check-jsonschema and shellcheck ready in $CI_VENV"
else
  echo "prepare-ci: FAILED to install actionlint, check-jsonschema and shellcheck into $CI_VENV" >&2
  status=1
fi

MLFLOW_VENV="${MLFLOW_VENV:-${TMPDIR:-/tmp}/flightdeck-mlflow-venv}"
if scripts/check-mlflow.sh --install-only; then
  echo "prepare-ci: mlflow ready in $MLFLOW_VENV"
else
  echo "prepare-ci: FAILED to install mlflow into $MLFLOW_VENV" >&2
  status=1
fi

packages=()
command -v prometheus >/dev/null || packages+=(prometheus)
command -v chromium >/dev/null || packages+=(chromium)
if [ ${#packages[@]} -eq 0 ]; then
  echo "prepare-ci: prometheus and chromium already installed"
elif (export DEBIAN_FRONTEND=noninteractive && apt-get update -q && apt-get install -y -q --no-install-recommends "${packages[@]}"); then
  echo "prepare-ci: installed Debian's ${packages[*]}"
else
  echo "prepare-ci: FAILED to install Debian's ${packages[*]} (apt-get)" >&2
  status=1
fi

exit "$status"
