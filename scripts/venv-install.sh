#!/usr/bin/env bash
# Installs pinned PyPI packages into a virtualenv, for the CI-only checks' real components
# (azure-ai-ml, mlflow, the CI-file linters). Usage: scripts/venv-install.sh VENV PACKAGE==VERSION...
#
# It installs with uv (astral-sh/uv, itself a PyPI package) rather than pip: uv resolves, downloads
# and unpacks in parallel and compiles no bytecode, so the three virtualenvs cost about 10 s of CPU
# instead of the ~2.5 minutes pip spends, which `.ci/run` would take from the Rust build beside it
# (docs/benchmarks.md, "CI time"). uv is installed once, with pip, into UV_VENV (default
# ${TMPDIR:-/tmp}/flightdeck-uv-venv). The virtualenv is created by the system's python3, without
# pip (uv needs none). Idempotent: installed pins are kept. Fails loudly (exit 1) on any error.
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: scripts/venv-install.sh VENV PACKAGE==VERSION..." >&2; exit 2; }
venv="$1"
shift

UV_VERSION=0.13.9
uv_venv="${UV_VENV:-${TMPDIR:-/tmp}/flightdeck-uv-venv}"
uv="$uv_venv/bin/uv"
if [ ! -x "$uv" ] || [[ "$("$uv" --version 2>/dev/null)" != "uv $UV_VERSION"* ]]; then
  { [ -x "$uv_venv/bin/python" ] || python3 -m venv "$uv_venv"; } \
    || { echo "venv-install: cannot create a virtualenv at $uv_venv" >&2; exit 1; }
  "$uv_venv/bin/python" -m pip install --quiet --no-compile --disable-pip-version-check "uv==$UV_VERSION" \
    || { echo "venv-install: cannot install uv==$UV_VERSION from PyPI into $uv_venv" >&2; exit 1; }
fi
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv --without-pip "$venv" || { echo "venv-install: cannot create a virtualenv at $venv" >&2; exit 1; }
fi
"$uv" pip install --quiet --python "$venv/bin/python" "$@" \
  || { echo "venv-install: cannot install $* from PyPI into $venv" >&2; exit 1; }
