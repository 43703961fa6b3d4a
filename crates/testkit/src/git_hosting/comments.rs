//! The fake GitHub's issue comments [GIT G3], commit statuses [GIT G4] and "pull requests of a commit",
//! for the CI files' scripts (ci/github/actions/flightdeck-report/github-api.sh): comments list
//! in pages of `per_page` (default 30, at most 100) with a `Link: <…>; rel="next"` header, are
//! created with 201 and updated by `PATCH /issues/comments/{id}` (no issue number in the path)
//! with 200; a status needs a `state` of the four GitHub knows and a description of at most 140
//! characters, and answers 201 (every status is kept, in order: a later one with the same
//! `context` is what GitHub shows). `GET /commits/{sha}/pulls` is not
//! in the contract: GitHub's "list pull requests associated with a commit", answering an array
//! of pull requests with `number`.

use std::collections::BTreeMap;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{FakeHosting, Inner, error};

#[derive(Clone, Debug)]
pub struct Comment {
    pub id: u64,
    pub repo: String,
    pub issue: u64,
    pub body: String,
}

#[derive(Clone, Debug)]
pub struct CommitStatus {
    pub repo: String,
    pub sha: String,
    pub state: String,
    pub description: Option<String>,
    pub context: String,
    pub target_url: Option<String>,
}

#[derive(Default)]
pub(super) struct GitHubState {
    comments: Vec<Comment>,
    statuses: Vec<CommitStatus>,
    /// (repo, sha) → pull request numbers, for `GET /commits/{sha}/pulls`.
    commit_pulls: BTreeMap<(String, String), Vec<u64>>,
    next_comment: u64,
}

/// The routes below `/repos/{owner}/{repo}/` this module answers.
pub(super) fn handles(rest: &[&str]) -> bool {
    matches!(
        rest,
        ["issues", _, "comments"]
            | ["issues", "comments", _]
            | ["statuses", _]
            | ["commits", _, "pulls"]
    )
}

impl FakeHosting {
    /// The comments on issue or pull request `number` of `repo` (`owner/name`), oldest first.
    pub fn comments(&self, repo: &str, number: u64) -> Vec<Comment> {
        let inner = self.shared.0.lock().unwrap();
        inner
            .github
            .comments
            .iter()
            .filter(|c| c.repo == repo && c.issue == number)
            .cloned()
            .collect()
    }

    /// A comment someone else wrote; returns its id.
    pub fn seed_comment(&self, repo: &str, number: u64, body: &str) -> u64 {
        let mut inner = self.shared.0.lock().unwrap();
        add_comment(&mut inner, repo, number, body)
    }

    /// Every status posted on `sha`, in order.
    pub fn statuses(&self, repo: &str, sha: &str) -> Vec<CommitStatus> {
        let inner = self.shared.0.lock().unwrap();
        inner
            .github
            .statuses
            .iter()
            .filter(|s| s.repo == repo && s.sha == sha)
            .cloned()
            .collect()
    }

    /// Makes `GET /repos/{repo}/commits/{sha}/pulls` answer pull request `number`.
    pub fn seed_commit_pull(&self, repo: &str, sha: &str, number: u64) {
        let mut inner = self.shared.0.lock().unwrap();
        inner
            .github
            .commit_pulls
            .entry((repo.to_string(), sha.to_string()))
            .or_default()
            .push(number);
    }
}

fn add_comment(inner: &mut Inner, repo: &str, issue: u64, body: &str) -> u64 {
    inner.github.next_comment += 1;
    let id = 90_000 + inner.github.next_comment;
    inner.github.comments.push(Comment {
        id,
        repo: repo.to_string(),
        issue,
        body: body.to_string(),
    });
    id
}

fn comment_json(c: &Comment) -> Value {
    json!({
        "id": c.id,
        "html_url": format!("https://github.com/{}/pull/{}#issuecomment-{}", c.repo, c.issue, c.id),
        "body": c.body,
        "user": {"login": "github-actions[bot]"},
        "created_at": "2026-01-01T00:00:00Z",
        "updated_at": "2026-01-01T00:00:00Z",
    })
}

fn body_text(body: &Option<Value>) -> Option<String> {
    body.as_ref()?.get("body")?.as_str().map(str::to_string)
}

pub(super) fn github(
    inner: &mut Inner,
    method: &str,
    repo: &str,
    rest: &[&str],
    query: &BTreeMap<String, String>,
    body: Option<Value>,
) -> Response {
    let not_found = || error(StatusCode::NOT_FOUND, json!({"message": "Not Found"}));
    match (method, rest) {
        ("GET", ["issues", number, "comments"]) => {
            let Ok(number) = number.parse::<u64>() else {
                return not_found();
            };
            let per_page = query
                .get("per_page")
                .and_then(|p| p.parse::<usize>().ok())
                .unwrap_or(30)
                .clamp(1, 100);
            let page = query
                .get("page")
                .and_then(|p| p.parse::<usize>().ok())
                .unwrap_or(1)
                .max(1);
            let all: Vec<&Comment> = inner
                .github
                .comments
                .iter()
                .filter(|c| c.repo == repo && c.issue == number)
                .collect();
            let list: Vec<Value> = all
                .iter()
                .skip((page - 1) * per_page)
                .take(per_page)
                .map(|c| comment_json(c))
                .collect();
            let mut response = (StatusCode::OK, axum::Json(Value::Array(list))).into_response();
            if page * per_page < all.len() {
                let next = format!(
                    "<{}/github/repos/{repo}/issues/{number}/comments?per_page={per_page}&page={}>; rel=\"next\"",
                    inner.base,
                    page + 1
                );
                response
                    .headers_mut()
                    .insert("link", next.parse().expect("a header value"));
            }
            response
        }
        ("POST", ["issues", number, "comments"]) => {
            let Ok(number) = number.parse::<u64>() else {
                return not_found();
            };
            let Some(text) = body_text(&body) else {
                return error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    json!({"message": "Invalid request.\n\n\"body\" wasn't supplied."}),
                );
            };
            let id = add_comment(inner, repo, number, &text);
            let c = inner.github.comments.iter().find(|c| c.id == id).unwrap();
            (StatusCode::CREATED, axum::Json(comment_json(c))).into_response()
        }
        ("PATCH", ["issues", "comments", id]) => {
            let Some(text) = body_text(&body) else {
                return error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    json!({"message": "Invalid request.\n\n\"body\" wasn't supplied."}),
                );
            };
            let id = id.parse::<u64>().unwrap_or(0);
            match inner
                .github
                .comments
                .iter_mut()
                .find(|c| c.id == id && c.repo == repo)
            {
                Some(c) => {
                    c.body = text;
                    (StatusCode::OK, axum::Json(comment_json(c))).into_response()
                }
                None => not_found(),
            }
        }
        ("POST", ["statuses", sha]) => {
            let field = |k: &str| {
                body.as_ref()
                    .and_then(|b| b.get(k))
                    .and_then(Value::as_str)
                    .map(str::to_string)
            };
            let state = field("state").unwrap_or_default();
            if !["error", "failure", "pending", "success"].contains(&state.as_str()) {
                return error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    json!({"message": "Validation Failed", "errors": [{"resource": "Status", "field": "state", "code": "custom", "message": "state is not included in the list"}]}),
                );
            }
            if field("description").is_some_and(|d| d.chars().count() > 140) {
                return error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    json!({"message": "Validation Failed", "errors": [{"resource": "Status", "field": "description", "code": "custom", "message": "description is too long (maximum is 140 characters)"}]}),
                );
            }
            let status = CommitStatus {
                repo: repo.to_string(),
                sha: sha.to_string(),
                state,
                description: field("description"),
                context: field("context").unwrap_or_else(|| "default".to_string()),
                target_url: field("target_url"),
            };
            let answer = json!({
                "state": status.state, "description": status.description,
                "context": status.context, "target_url": status.target_url,
            });
            inner.github.statuses.push(status);
            (StatusCode::CREATED, axum::Json(answer)).into_response()
        }
        ("GET", ["commits", sha, "pulls"]) => {
            let numbers = inner
                .github
                .commit_pulls
                .get(&(repo.to_string(), sha.to_string()))
                .cloned()
                .unwrap_or_default();
            let list: Vec<Value> = numbers
                .iter()
                .map(|n| json!({"number": n, "state": "closed", "merged_at": "2026-01-01T00:00:00Z"}))
                .collect();
            (StatusCode::OK, axum::Json(Value::Array(list))).into_response()
        }
        _ => not_found(),
    }
}
