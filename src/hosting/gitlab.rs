//! GitLab: `POST /projects/:id/merge_requests` [GIT L2] with `PRIVATE-TOKEN` [GIT L1]; `:id` is
//! the URL-encoded full path (`group%2Fproject`) or the numeric id. A 409 means an open merge
//! request exists for the source branch: it is found with
//! `GET /projects/:id/merge_requests?source_branch=…&state=opened` [GIT L2].

use serde_json::json;

use super::answer::Answer;
use super::{HostingError, NewPullRequest, PullRequest};
use crate::source::Secret;

const P: &str = "gitlab";

pub(super) async fn open_or_get(
    client: &reqwest::Client,
    api: &str,
    repo: &str,
    token: &Secret,
    pr: &NewPullRequest,
) -> Result<PullRequest, HostingError> {
    let valid =
        !repo.is_empty() && !repo.starts_with('/') && !repo.ends_with('/') && !repo.contains("//");
    if !valid {
        return Err(HostingError::Repo {
            repo: repo.to_string(),
            form: "GROUP/PROJECT (subgroups allowed) or a numeric project id",
        });
    }
    let id: String = url::form_urlencoded::byte_serialize(repo.as_bytes()).collect();
    let base = format!("{api}/projects/{id}/merge_requests");
    const KEYS: (&str, &str) = ("iid", "web_url");
    let opened = Answer::of(
        P,
        "opening the merge request",
        client
            .post(&base)
            .header("PRIVATE-TOKEN", token.expose())
            .json(&json!({
                "source_branch": pr.head,
                "target_branch": pr.base,
                "title": pr.title,
                "description": pr.body,
            })),
    )
    .await?;
    match opened.status {
        201 => return opened.pull_request(&opened.json()?, KEYS, false),
        409 => {}
        _ => return Err(opened.refused()),
    }
    let found = Answer::of(
        P,
        "finding the existing merge request",
        client
            .get(&base)
            .header("PRIVATE-TOKEN", token.expose())
            .query(&[("source_branch", pr.head.as_str()), ("state", "opened")]),
    )
    .await?
    .expect(200)?;
    let list = found.json()?;
    match list.as_array().and_then(|a| a.first()) {
        Some(v) => found.pull_request(v, KEYS, true),
        None => Err(HostingError::NotFound {
            provider: P,
            head: pr.head.clone(),
        }),
    }
}
