#!/usr/bin/env bash
# Runs the ```console examples of README.md and docs/*.md as written and compares their output
# with what is written, so the docs cannot drift from the binary (run by .ci/run).
#
#   scripts/check-docs.sh [FILE.md ...]      (default: README.md docs/*.md)
#
# In a ```console block, a line `$ CMD` is a command and the lines after it, up to the next `$ `
# line, are its expected output (stdout and stderr together). A trailing `# exit N` on the
# command or on its last output line is the expected exit code (default 0); any other trailing
# `   # comment` (two spaces or more before `#`) is ignored. `…` in expected output matches any
# text, and durations (`1.0s`, `12ms`) match any duration. A block right after a line
# `<!-- check-docs: skip: REASON -->` is not run (say why).
#
# Each file runs in one bash session (variables carry over between its blocks), in a scratch
# Git repository holding the current files (nothing in the checkout changes), with the debug
# `flightdeck` first on PATH. Background jobs a file starts are killed when it ends. Needs cargo,
# git, python3 (and curl for docs/agent.md).
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"

echo "== build" >&2
cargo build --locked --quiet --bin flightdeck
target_dir="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"

files=("$@")
[ ${#files[@]} -gt 0 ] || files=(README.md docs/*.md)

exec python3 - "$root" "$target_dir/debug" "${files[@]}" <<'PY'
import os, re, shutil, signal, subprocess, sys, tempfile

root, bindir, files = sys.argv[1], sys.argv[2], sys.argv[3:]
EXIT = re.compile(r"\s+#\s*exit\s+(\d+)\b.*$")
COMMENT = re.compile(r"\s{2,}#(?!\s*exit\b).*$")
DURATION = re.compile(r"\b\d+(\.\d+)?(ms|s)\b")


def blocks(path):
    """(line number, [(command, [expected lines], exit code)]) for each console block."""
    lines = open(path, encoding="utf-8").read().splitlines()
    out, i, skip = [], 0, False
    while i < len(lines):
        line = lines[i]
        if line.strip().startswith("<!-- check-docs: skip"):
            skip = True
        elif line.strip() == "```console":
            start, cmds, i = i + 1, [], i + 1
            while i < len(lines) and lines[i].strip() != "```":
                text = lines[i]
                if text.startswith("$ "):
                    cmds.append([text[2:], [], 0])
                elif cmds:
                    cmds[-1][1].append(text)
                i += 1
            for c in cmds:
                m = EXIT.search(c[0])
                if m:
                    c[2], c[0] = int(m.group(1)), c[0][: m.start()]
                elif c[1] and EXIT.search(c[1][-1]):
                    m = EXIT.search(c[1][-1])
                    c[2], c[1][-1] = int(m.group(1)), c[1][-1][: m.start()]
                c[0] = COMMENT.sub("", c[0])
                c[1] = [COMMENT.sub("", l).rstrip() for l in c[1]]
            if not skip:
                out.append((start, cmds))
            skip = False
        elif line.strip():
            skip = skip and line.strip().startswith("<!--")
        i += 1
    return out


def matches(expected, actual):
    actual = [DURATION.sub("<t>", l.rstrip()) for l in actual.splitlines()]
    expected = [DURATION.sub("<t>", l) for l in expected]
    if len(actual) != len(expected):
        return False
    for e, a in zip(expected, actual):
        pattern = "^" + ".*".join(re.escape(p) for p in e.split("…")) + "$"
        if not re.match(pattern, a):
            return False
    return True


def scratch_repo():
    work = tempfile.mkdtemp(prefix="flightdeck-docs-")
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=root,
                            check=True, capture_output=True).stdout.decode().split("\0")
    for rel in filter(None, listed):
        src = os.path.join(root, rel)
        if os.path.isfile(src):
            os.makedirs(os.path.dirname(os.path.join(work, rel)), exist_ok=True)
            shutil.copy2(src, os.path.join(work, rel))
    env = dict(os.environ, GIT_AUTHOR_NAME="docs", GIT_AUTHOR_EMAIL="docs@example.com",
               GIT_COMMITTER_NAME="docs", GIT_COMMITTER_EMAIL="docs@example.com")
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", "docs check"]):
        subprocess.run(["git", *args], cwd=work, check=True, env=env)
    return work


failures, ran = 0, 0
for doc in files:
    found = blocks(os.path.join(root, doc))
    if not found:
        continue
    work = scratch_repo()
    results = os.path.join(work, ".docs-check")
    os.mkdir(results)
    script = ["cd " + work, "trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null' EXIT"]
    index = []
    for start, cmds in found:
        for cmd, expected, code in cmds:
            n = len(index)
            index.append((start, cmd, expected, code))
            script.append(f"{{ {cmd.rstrip().rstrip(';')}\n}} >{results}/{n}.out 2>&1 </dev/null; "
                          f"echo $? >{results}/{n}.rc")
    env = dict(os.environ, PATH=bindir + os.pathsep + os.environ["PATH"])
    for name in ("FLIGHTDECK_ARM_ENDPOINT", "AZURE_AUTHORITY_HOST", "AZURE_TENANT_ID",
                 "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET", "AZURE_SUBSCRIPTION_ID"):
        env.pop(name, None)
    # Its own process group, killed at the end: a documented command that leaves an orphan (a
    # server still holding the pipe) cannot hang the check.
    shell = subprocess.Popen(["bash", "-c", "\n".join(script)], env=env, start_new_session=True)
    try:
        shell.wait(timeout=600)
    except subprocess.TimeoutExpired:
        print(f"FAIL {doc}: still running after 600 s")
        failures += 1
    finally:
        try:
            os.killpg(shell.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for n, (start, cmd, expected, code) in enumerate(index):
        ran += 1
        try:
            got_code = int(open(f"{results}/{n}.rc").read())
            got = open(f"{results}/{n}.out", encoding="utf-8", errors="replace").read()
        except (FileNotFoundError, ValueError):
            got_code, got = None, "(did not run)"
        ok = got_code == code and (not expected or matches(expected, got))
        if not ok:
            failures += 1
            print(f"FAIL {doc} (block at line {start}): $ {cmd}\n  expected exit {code}, got {got_code}")
            if expected:
                print("  --- expected\n  " + "\n  ".join(expected))
            print("  --- got\n  " + "\n  ".join(got.splitlines()))
    shutil.rmtree(work, ignore_errors=True)

print(f"check-docs: {ran} command(s), {failures} failed")
sys.exit(1 if failures else 0)
PY
