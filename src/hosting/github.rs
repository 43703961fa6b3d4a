//! GitHub: `POST /repos/{owner}/{repo}/pulls` [GIT G2], with the headers every request needs:
//! `Authorization: Bearer`, `Accept: application/vnd.github+json`, `X-GitHub-Api-Version:
//! 2022-11-28` and a `User-Agent` (the client's) [GIT G1]. A 422 means a pull request for the
//! head already exists (or there is nothing to merge): the open one is looked up with
//! `GET /repos/{o}/{r}/pulls?head=owner:branch&state=open` [GIT G2].

use serde_json::{Value, json};

use super::{HostingError, NewPullRequest, PullRequest, error_message};
use crate::source::Secret;

const P: &str = "github";

fn request(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    token: &Secret,
) -> reqwest::RequestBuilder {
    client
        .request(method, url)
        .bearer_auth(token.expose())
        .header("Accept", "application/vnd.github+json")
        .header("X-GitHub-Api-Version", "2022-11-28")
}

fn parse(v: &Value, existed: bool, what: &'static str) -> Result<PullRequest, HostingError> {
    let number = v.get("number").and_then(Value::as_u64);
    let url = v.get("html_url").and_then(Value::as_str);
    match (number, url) {
        (Some(number), Some(url)) => Ok(PullRequest {
            number,
            url: url.to_string(),
            existed,
        }),
        _ => Err(HostingError::Response {
            provider: P,
            what,
            why: "no `number` or `html_url`".into(),
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
    let Some((owner, name)) = repo
        .split_once('/')
        .filter(|(o, n)| !o.is_empty() && !n.is_empty() && !n.contains('/'))
    else {
        return Err(HostingError::Repo {
            repo: repo.to_string(),
            form: "OWNER/REPO",
        });
    };
    let http = |what, source| HostingError::Http {
        provider: P,
        what,
        source,
    };
    let what = "opening the pull request";
    let response = request(
        client,
        reqwest::Method::POST,
        format!("{api}/repos/{owner}/{name}/pulls"),
        token,
    )
    .json(&json!({
        "title": pr.title,
        "head": pr.head,
        "base": pr.base,
        "body": pr.body,
    }))
    .send()
    .await
    .map_err(|e| http(what, e))?;
    let status = response.status().as_u16();
    let body = response.text().await.map_err(|e| http(what, e))?;
    if status == 201 {
        let v: Value = serde_json::from_str(&body).map_err(|e| HostingError::Response {
            provider: P,
            what,
            why: e.to_string(),
        })?;
        return parse(&v, false, what);
    }
    if status != 422 {
        return Err(HostingError::Status {
            provider: P,
            what,
            status,
            message: error_message(&body),
        });
    }
    let what = "finding the existing pull request";
    let response = request(
        client,
        reqwest::Method::GET,
        format!("{api}/repos/{owner}/{name}/pulls"),
        token,
    )
    .query(&[
        ("head", format!("{owner}:{}", pr.head)),
        ("state", "open".into()),
    ])
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
    let list: Vec<Value> = serde_json::from_str(&body).map_err(|e| HostingError::Response {
        provider: P,
        what,
        why: e.to_string(),
    })?;
    match list.first() {
        Some(v) => parse(v, true, what),
        // 422 with no open pull request: GitHub's other 422, no commits between the branches.
        None => Err(HostingError::Status {
            provider: P,
            what: "opening the pull request",
            status: 422,
            message: "refused, and no open pull request exists for the branch (are there commits between it and the base?)".into(),
        }),
    }
}
