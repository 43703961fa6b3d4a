//! GitLab: `POST /projects/:id/merge_requests` [GIT L2] with `PRIVATE-TOKEN` [GIT L1]; `:id` is
//! the URL-encoded full path (`group%2Fproject`) or the numeric id. A 409 means an open merge
//! request exists for the source branch: it is found with
//! `GET /projects/:id/merge_requests?source_branch=…&state=opened` [GIT L2].

use serde_json::{Value, json};

use super::{HostingError, NewPullRequest, PullRequest, error_message};
use crate::source::Secret;

const P: &str = "gitlab";

fn parse(v: &Value, existed: bool, what: &'static str) -> Result<PullRequest, HostingError> {
    let number = v.get("iid").and_then(Value::as_u64);
    let url = v.get("web_url").and_then(Value::as_str);
    match (number, url) {
        (Some(number), Some(url)) => Ok(PullRequest {
            number,
            url: url.to_string(),
            existed,
        }),
        _ => Err(HostingError::Response {
            provider: P,
            what,
            why: "no `iid` or `web_url`".into(),
        }),
    }
}

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
    let http = |what, source| HostingError::Http {
        provider: P,
        what,
        source,
    };
    let what = "opening the merge request";
    let response = client
        .post(&base)
        .header("PRIVATE-TOKEN", token.expose())
        .json(&json!({
            "source_branch": pr.head,
            "target_branch": pr.base,
            "title": pr.title,
            "description": pr.body,
        }))
        .send()
        .await
        .map_err(|e| http(what, e))?;
    let status = response.status().as_u16();
    let body = response.text().await.map_err(|e| http(what, e))?;
    let json = |body: &str, what| {
        serde_json::from_str::<Value>(body).map_err(|e| HostingError::Response {
            provider: P,
            what,
            why: e.to_string(),
        })
    };
    if status == 201 {
        return parse(&json(&body, what)?, false, what);
    }
    if status != 409 {
        return Err(HostingError::Status {
            provider: P,
            what,
            status,
            message: error_message(&body),
        });
    }
    let what = "finding the existing merge request";
    let response = client
        .get(&base)
        .header("PRIVATE-TOKEN", token.expose())
        .query(&[("source_branch", pr.head.as_str()), ("state", "opened")])
        .send()
        .await
        .map_err(|e| http(what, e))?;
    let status = response.status().as_u16();
    let body = response.text().await.map_err(|e| http(what, e))?;
    if status != 200 {
        return Err(HostingError::Status {
            provider: P,
            what,
            status,
            message: error_message(&body),
        });
    }
    match json(&body, what)?
        .as_array()
        .and_then(|a| a.first().cloned())
    {
        Some(v) => parse(&v, true, what),
        None => Err(HostingError::NotFound {
            provider: P,
            head: pr.head.clone(),
        }),
    }
}
