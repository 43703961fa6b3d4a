//! GitHub: `POST /repos/{owner}/{repo}/pulls` [GIT G2], with the headers every request needs:
//! `Authorization: Bearer`, `Accept: application/vnd.github+json`, `X-GitHub-Api-Version:
//! 2022-11-28` and a `User-Agent` (the client's) [GIT G1]. A 422 means a pull request for the
//! head already exists (or there is nothing to merge): the open one is looked up with
//! `GET /repos/{o}/{r}/pulls?head=owner:branch&state=open` [GIT G2].

use serde_json::json;

use super::answer::Answer;
use super::{HostingError, NewPullRequest, PullRequest};
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
    const KEYS: (&str, &str) = ("number", "html_url");
    let opened = Answer::of(
        P,
        "opening the pull request",
        request(
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
        })),
    )
    .await?;
    match opened.status {
        201 => return opened.pull_request(&opened.json()?, KEYS, false),
        422 => {}
        _ => return Err(opened.refused()),
    }
    let found = Answer::of(
        P,
        "finding the existing pull request",
        request(
            client,
            reqwest::Method::GET,
            format!("{api}/repos/{owner}/{name}/pulls"),
            token,
        )
        .query(&[
            ("head", format!("{owner}:{}", pr.head)),
            ("state", "open".into()),
        ]),
    )
    .await?
    .expect(200)?;
    let list = found.json()?;
    match list.as_array().and_then(|a| a.first()) {
        Some(v) => found.pull_request(v, KEYS, true),
        // 422 with no open pull request: GitHub's other 422, no commits between the branches.
        None => Err(HostingError::Status {
            provider: P,
            what: "opening the pull request",
            status: 422,
            message: "refused, and no open pull request exists for the branch (are there commits between it and the base?)".into(),
        }),
    }
}
