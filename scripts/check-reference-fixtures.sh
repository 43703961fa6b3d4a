#!/usr/bin/env bash
# Checks that every file under tests/fixtures/reference/ is byte-for-byte equal to the contract it
# was copied from in ../shared/reference/ (same relative path). The tests read only the in-repo
# copy, so `cargo test --locked` passes in a clone with nothing beside it; this script keeps that
# copy honest. CI always has ../shared beside the clone, so its absence is an error.
#
# Usage: scripts/check-reference-fixtures.sh [SHARED_REFERENCE_DIR]
#   (default: ../shared/reference next to the repository root)
# Exit codes: 0 all equal; 1 some differ or are missing upstream; 2 the reference dir is absent.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
fixtures="$root/tests/fixtures/reference"
upstream="${1:-$root/../shared/reference}"

if [ ! -d "$upstream" ]; then
    echo "check-reference-fixtures: $upstream is absent; cannot compare the copies in" \
        "tests/fixtures/reference/ with the contracts (CI always has ../shared beside the clone)" >&2
    exit 2
fi
if [ ! -d "$fixtures" ]; then
    echo "check-reference-fixtures: $fixtures is absent" >&2
    exit 1
fi

checked=0
differ=()
while IFS= read -r -d '' file; do
    rel="${file#"$fixtures"/}"
    checked=$((checked + 1))
    if [ ! -f "$upstream/$rel" ]; then
        differ+=("$rel (not in $upstream)")
    elif ! cmp -s "$file" "$upstream/$rel"; then
        differ+=("$rel")
    fi
done < <(find "$fixtures" -type f ! -name README.md -print0 | sort -z)

if [ "${#differ[@]}" -gt 0 ]; then
    echo "check-reference-fixtures: ${#differ[@]} of $checked copied files differ from $upstream:" >&2
    printf '  %s\n' "${differ[@]}" >&2
    echo "copy them again: cp $upstream/<file> tests/fixtures/reference/<file>" >&2
    exit 1
fi
echo "check-reference-fixtures: $checked files in tests/fixtures/reference/ equal $upstream"
