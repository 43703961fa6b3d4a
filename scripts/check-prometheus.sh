#!/usr/bin/env bash
# The Prometheus provider against a real Prometheus server (CI-only; docs/metrics.md "Checking
# against a real Prometheus"). Installs nothing: `.ci/run` installs Debian's `prometheus` first.
# Fails (exit 1) when no Prometheus binary is found; never skips.
set -euo pipefail
cd "$(dirname "$0")/.."

bin="${PROMETHEUS_BIN:-prometheus}"
if ! command -v "$bin" >/dev/null 2>&1; then
    echo "check-prometheus: FAILED: no Prometheus binary '$bin' on PATH." >&2
    echo "  Install it (Debian: apt-get install -y prometheus) or set PROMETHEUS_BIN=/path/to/prometheus." >&2
    exit 1
fi
PROMETHEUS_BIN="$(command -v "$bin")"
export PROMETHEUS_BIN
echo "check-prometheus: $("$PROMETHEUS_BIN" --version 2>&1 | head -n 1)"
# benches/prometheus_check.rs (harness = false): `cargo test` never builds it; the dev profile
# reuses the test build.
cargo bench --locked --bench prometheus_check --profile dev
