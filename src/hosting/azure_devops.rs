//! Azure DevOps: `POST {org}/{project}/_apis/git/repositories/{repo}/pullrequests?api-version=7.1`
//! with full ref names [GIT D2] and `Authorization: Basic base64(":" + PAT)` [GIT D1];
//! `api-version=7.1` on every call [GIT D1]. A 409 (`TF401179`) means an active pull request for
//! the source and target exists: it is found with the `searchCriteria` query. A 203 that is not
//! JSON is a sign-in page: a bad token, reported as 401 [GIT D5].

use base64::Engine;
use serde_json::{Value, json};

use super::answer::Answer;
use super::{HostingError, NewPullRequest, PullRequest};
use crate::source::Secret;

const P: &str = "azure-devops";

fn basic(token: &Secret) -> String {
    let raw = format!(":{}", token.expose());
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

pub(super) async fn open_or_get(
    client: &reqwest::Client,
    api: &str,
    repo: &str,
    token: &Secret,
    pr: &NewPullRequest,
) -> Result<PullRequest, HostingError> {
    let parts: Vec<&str> = repo.split('/').collect();
    let [org, project, name] = parts.as_slice() else {
        return Err(HostingError::Repo {
            repo: repo.to_string(),
            form: "ORGANIZATION/PROJECT/REPOSITORY",
        });
    };
    if [org, project, name].iter().any(|p| p.is_empty()) {
        return Err(HostingError::Repo {
            repo: repo.to_string(),
            form: "ORGANIZATION/PROJECT/REPOSITORY",
        });
    }
    let enc = |s: &str| -> String {
        url::form_urlencoded::byte_serialize(s.as_bytes())
            .collect::<String>()
            .replace('+', "%20")
    };
    let (org, project, name) = (enc(org), enc(project), enc(name));
    let base = format!("{api}/{org}/{project}/_apis/git/repositories/{name}/pullrequests");
    let web = |id: u64| format!("{api}/{org}/{project}/_git/{name}/pullrequest/{id}");
    let source_ref = format!("refs/heads/{}", pr.head);
    let target_ref = format!("refs/heads/{}", pr.base);
    let opened = Answer::of(
        P,
        "opening the pull request",
        client
            .post(&base)
            .query(&[("api-version", "7.1")])
            .header("Authorization", basic(token))
            .json(&json!({
                "sourceRefName": source_ref,
                "targetRefName": target_ref,
                "title": pr.title,
                "description": pr.body,
            })),
    )
    .await?;
    // The web page is not in the answer: it is built from the id.
    let pull_request = |answer: &Answer, v: &Value, existed| {
        let id = v
            .get("pullRequestId")
            .and_then(Value::as_u64)
            .ok_or_else(|| answer.malformed("no `pullRequestId`".into()))?;
        Ok(PullRequest {
            number: id,
            url: web(id),
            existed,
        })
    };
    if opened.status == 203 && opened.json().is_err() {
        return Err(HostingError::Status {
            provider: P,
            what: "opening the pull request",
            status: 401,
            message: "the token was refused (a sign-in page came back)".into(),
        });
    }
    match opened.status {
        201 => return pull_request(&opened, &opened.json()?, false),
        409 => {}
        _ => return Err(opened.refused()),
    }
    let found = Answer::of(
        P,
        "finding the existing pull request",
        client
            .get(&base)
            .query(&[
                ("searchCriteria.sourceRefName", source_ref.as_str()),
                ("searchCriteria.targetRefName", target_ref.as_str()),
                ("searchCriteria.status", "active"),
                ("api-version", "7.1"),
            ])
            .header("Authorization", basic(token)),
    )
    .await?
    .expect(200)?;
    let list = found.json()?;
    match list
        .get("value")
        .and_then(Value::as_array)
        .and_then(|a| a.first())
    {
        Some(v) => pull_request(&found, v, true),
        None => Err(HostingError::NotFound {
            provider: P,
            head: pr.head.clone(),
        }),
    }
}
