#!/usr/bin/env bash
# The GitHub REST calls flightdeck's workflow makes, with bash, curl and python3 (all on GitHub's
# runners). Reads the variables a runner sets: GITHUB_TOKEN (pass secrets.GITHUB_TOKEN),
# GITHUB_API_URL, GITHUB_REPOSITORY, GITHUB_EVENT_PATH, GITHUB_SHA, GITHUB_SERVER_URL, GITHUB_RUN_ID.
#
#   github-api.sh comment MARKER BODY_FILE [PR_NUMBER]
#       One living comment per MARKER on the pull request (default: the event's): lists the
#       comments, PATCHes the one holding `<!-- MARKER -->`, else POSTs a new one [GIT G3]. The body
#       gets the marker as its first line; past 65,000 characters it is cut (GitHub refuses
#       comments over 65,536).
#   github-api.sh pr-of-commit [SHA]
#       Prints the number of the pull request a pushed commit came from, or nothing
#       (`GET /repos/{o}/{r}/commits/{sha}/pulls`, GitHub's "list pull requests associated with
#       a commit").
#   github-api.sh status STATE DESCRIPTION [SHA]
#       Sets the commit status of context FLIGHTDECK_STATUS_CONTEXT (default flightdeck/rollout)
#       on SHA (default GITHUB_SHA): STATE is error, failure, pending or success; DESCRIPTION is
#       cut to 140 characters [GIT G4]. The target URL is this workflow run.
#
# Any answer other than the documented success code fails with the status and GitHub's message;
# the token is never printed. Contract: git-hosting/CONTRACT.md [GIT G1] (headers), [GIT G3], [GIT G4].
set -euo pipefail

die() { echo "github-api: $*" >&2; exit 1; }
[ -n "${GITHUB_TOKEN:-}" ] || die "GITHUB_TOKEN is not set (pass secrets.GITHUB_TOKEN in the step's env)"
[ -n "${GITHUB_REPOSITORY:-}" ] || die "GITHUB_REPOSITORY is not set"
api_url="${GITHUB_API_URL:-https://api.github.com}"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

# api METHOD URL [JSON_BODY_FILE] -> prints the HTTP status; the body is in $scratch/out and the
# response headers in $scratch/headers. G1: bearer token, Accept, API version, User-Agent.
api() {
  local method="$1" url="$2" data=()
  [ $# -ge 3 ] && data=(--data-binary "@$3" -H "Content-Type: application/json")
  # The token goes through a header file, so it is not on curl's command line (ps).
  printf 'Authorization: Bearer %s\n' "$GITHUB_TOKEN" >"$scratch/auth"
  curl --silent --show-error --max-time 60 -X "$method" "$url" \
    -H @"$scratch/auth" \
    -H "Accept: application/vnd.github+json" \
    -H "X-GitHub-Api-Version: 2022-11-28" \
    -H "User-Agent: flightdeck-ci" \
    "${data[@]}" -D "$scratch/headers" -o "$scratch/out" -w '%{http_code}'
}

expect() { # expect CODE GOT WHAT
  [ "$2" = "$1" ] && return 0
  local message
  message="$(python3 -c 'import json,sys
try: print(json.load(open(sys.argv[1])).get("message", ""))
except Exception: print(open(sys.argv[1], errors="replace").read()[:200])' "$scratch/out")"
  die "$3: HTTP $2 (expected $1): $message"
}

event() { # event KEY.PATH -> the value in the event payload, or nothing
  [ -n "${GITHUB_EVENT_PATH:-}" ] && [ -f "$GITHUB_EVENT_PATH" ] || return 0
  python3 -c 'import json,sys
v = json.load(open(sys.argv[1]))
for k in sys.argv[2].split("."):
    v = v.get(k) if isinstance(v, dict) else None
print("" if v is None else v)' "$GITHUB_EVENT_PATH" "$1"
}

comment() {
  local marker="$1" file="$2" number="${3:-$(event pull_request.number)}"
  [ -n "$number" ] || die "comment: no pull request number (not a pull_request event, and none given)"
  [ -f "$file" ] || die "comment: no body file $file"
  python3 - "$marker" "$file" >"$scratch/body.json" <<'PY'
import json, sys
marker, path = sys.argv[1], sys.argv[2]
text = open(path, encoding="utf-8", errors="replace").read()
head = f"<!-- {marker} -->\n"
limit = 65000 - len(head)
if len(text) > limit:
    text = text[:limit] + "\n\n… (cut: the full output is in the job log)\n"
print(json.dumps({"body": head + text}))
PY
  # List every page (Link: rel="next") and find the comment with the marker.
  local url="$api_url/repos/$GITHUB_REPOSITORY/issues/$number/comments?per_page=100" id="" code
  while [ -n "$url" ] && [ -z "$id" ]; do
    code="$(api GET "$url")"
    expect 200 "$code" "listing the comments of #$number"
    id="$(python3 -c 'import json,sys
m = "<!-- " + sys.argv[2] + " -->"
print(next((str(c["id"]) for c in json.load(open(sys.argv[1])) if m in (c.get("body") or "")), ""))' "$scratch/out" "$marker")"
    url="$(python3 -c 'import re,sys
for line in open(sys.argv[1], errors="replace"):
    if line.lower().startswith("link:"):
        m = re.search(r"<([^>]+)>;\s*rel=\"next\"", line)
        if m: print(m.group(1))' "$scratch/headers")"
  done
  if [ -n "$id" ]; then
    code="$(api PATCH "$api_url/repos/$GITHUB_REPOSITORY/issues/comments/$id" "$scratch/body.json")"
    expect 200 "$code" "updating comment $id on #$number"
    echo "github-api: updated comment $id on #$number"
  else
    code="$(api POST "$api_url/repos/$GITHUB_REPOSITORY/issues/$number/comments" "$scratch/body.json")"
    expect 201 "$code" "commenting on #$number"
    echo "github-api: commented on #$number"
  fi
}

pr_of_commit() {
  local sha="${1:-${GITHUB_SHA:?GITHUB_SHA is not set}}" code
  code="$(api GET "$api_url/repos/$GITHUB_REPOSITORY/commits/$sha/pulls")"
  expect 200 "$code" "finding the pull request of $sha"
  python3 -c 'import json,sys
prs = json.load(open(sys.argv[1]))
print(prs[0]["number"] if prs else "")' "$scratch/out"
}

status() {
  local state="$1" description="$2" sha="${3:-${GITHUB_SHA:?GITHUB_SHA is not set}}" code
  case "$state" in error | failure | pending | success) ;; *) die "status: state must be error, failure, pending or success, not '$state'" ;; esac
  python3 - "$state" "$description" "${FLIGHTDECK_STATUS_CONTEXT:-flightdeck/rollout}" \
    "${GITHUB_SERVER_URL:-https://github.com}/$GITHUB_REPOSITORY/actions/runs/${GITHUB_RUN_ID:-}" >"$scratch/body.json" <<'PY'
import json, sys
state, description, context, target = sys.argv[1:5]
if len(description) > 140:
    description = description[:139] + "…"
print(json.dumps({"state": state, "description": description, "context": context, "target_url": target}))
PY
  code="$(api POST "$api_url/repos/$GITHUB_REPOSITORY/statuses/$sha" "$scratch/body.json")"
  expect 201 "$code" "setting the status of $sha"
  echo "github-api: status ${FLIGHTDECK_STATUS_CONTEXT:-flightdeck/rollout} of $sha: $state: $description"
}

case "${1:-}" in
  comment) [ $# -ge 3 ] || die "usage: github-api.sh comment MARKER BODY_FILE [PR_NUMBER]"; comment "$2" "$3" "${4:-}" ;;
  pr-of-commit) pr_of_commit "${2:-}" ;;
  status) [ $# -ge 3 ] || die "usage: github-api.sh status STATE DESCRIPTION [SHA]"; status "$2" "$3" "${4:-}" ;;
  *) die "usage: github-api.sh comment|pr-of-commit|status ..." ;;
esac
