//! A fake of the three pull-request APIs `flightdeck promote --open-pr` calls, built to
//! ../shared/reference/git-hosting/CONTRACT.md, on 127.0.0.1: GitHub under `/github` (G1, G2),
//! GitLab under `/gitlab/api/v4` (L1, L2), Azure DevOps under `/ado` (D1, D2, D5). It answers
//! with the documented status codes and fields, including "already exists" (GitHub 422, GitLab
//! 409, Azure DevOps 409 `TF401179`) when a pull request for the same branch is open (X4), and
//! refuses a request without the headers the provider requires, so a client that forgets one
//! fails. Every request is recorded (method, raw path, query, headers, JSON body). GitHub's
//! issue comments, commit statuses and the pull requests of a commit, for the CI files users
//! copy (ci/github/), are in `git_hosting/comments.rs` [GIT G3, G4].

mod comments;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::{Value, json};

#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    /// As sent, percent-encoding kept (GitLab's `group%2Fproject`).
    pub path: String,
    pub query: BTreeMap<String, String>,
    /// Lower-case names.
    pub headers: BTreeMap<String, String>,
    pub body: Option<Value>,
}

/// One open pull request, as each provider identifies it.
#[derive(Clone, Debug)]
struct Open {
    provider: &'static str,
    repo: String,
    head: String,
    base: String,
    number: u64,
}

#[derive(Default)]
struct Inner {
    token: String,
    requests: Vec<Recorded>,
    open: Vec<Open>,
    next: u64,
    /// `http://127.0.0.1:PORT`, for `Link` headers.
    base: String,
    github: comments::GitHubState,
}

#[derive(Clone)]
struct Shared(Arc<Mutex<Inner>>);

pub struct FakeHosting {
    /// `http://127.0.0.1:PORT`
    pub base: String,
    shared: Shared,
}

impl FakeHosting {
    /// Accepts `token` as GitHub's bearer token, GitLab's `PRIVATE-TOKEN` and Azure DevOps' PAT.
    pub async fn start(token: &str) -> FakeHosting {
        let shared = Shared(Arc::new(Mutex::new(Inner {
            token: token.to_string(),
            next: 1,
            ..Inner::default()
        })));
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        shared.0.lock().unwrap().base = base.clone();
        tokio::spawn(async move { axum::serve(listener, app).await });
        FakeHosting { base, shared }
    }

    /// `--pr-api` for each provider.
    pub fn github_api(&self) -> String {
        format!("{}/github", self.base)
    }
    pub fn gitlab_api(&self) -> String {
        format!("{}/gitlab/api/v4", self.base)
    }
    pub fn azure_devops_api(&self) -> String {
        format!("{}/ado", self.base)
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.0.lock().unwrap().requests.clone()
    }

    /// A pull request that is already open (`provider`: github, gitlab, azure-devops; `repo` as
    /// the provider's path names it: `o/r`, `g/p`, `org/project/repo`). Returns its number.
    pub fn seed_open(&self, provider: &'static str, repo: &str, head: &str, base: &str) -> u64 {
        let mut inner = self.shared.0.lock().unwrap();
        let number = inner.next;
        inner.next += 1;
        inner.open.push(Open {
            provider,
            repo: repo.to_string(),
            head: head.to_string(),
            base: base.to_string(),
            number,
        });
        number
    }
}

fn error(status: StatusCode, body: Value) -> Response {
    (status, axum::Json(body)).into_response()
}

fn decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

async fn handle(State(shared): State<Shared>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let bytes: Bytes = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_default();
    let path = parts.uri.path().to_string();
    let query: BTreeMap<String, String> =
        url::form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    let headers: BTreeMap<String, String> = parts
        .headers
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let body: Option<Value> = serde_json::from_slice(&bytes).ok();
    let method = parts.method.as_str().to_string();
    let mut inner = shared.0.lock().unwrap();
    inner.requests.push(Recorded {
        method: method.clone(),
        path: path.clone(),
        query: query.clone(),
        headers: headers.clone(),
        body: body.clone(),
    });
    let segments: Vec<String> = path.split('/').skip(1).map(decode).collect();
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    let h = |name: &str| headers.get(name).map(String::as_str);
    match segments.as_slice() {
        ["github", "repos", owner, repo, "pulls"] => github(
            &mut inner,
            &method,
            &format!("{owner}/{repo}"),
            h,
            &query,
            body,
        ),
        ["github", "repos", owner, repo, rest @ ..] if comments::handles(rest) => {
            let repo = format!("{owner}/{repo}");
            match github_refuses(&inner, &h) {
                Some(refused) => refused,
                None => comments::github(&mut inner, &method, &repo, rest, &query, body),
            }
        }
        ["gitlab", "api", "v4", "projects", id, "merge_requests"] => {
            gitlab(&mut inner, &method, id, h, &query, body)
        }
        [
            "ado",
            org,
            project,
            "_apis",
            "git",
            "repositories",
            repo,
            "pullrequests",
        ] => {
            let repo = format!("{org}/{project}/{repo}");
            azure_devops(&mut inner, &method, &repo, h, &query, body)
        }
        _ => error(StatusCode::NOT_FOUND, json!({"message": "Not Found"})),
    }
}

fn field<'b>(body: &'b Option<Value>, key: &str) -> Option<&'b str> {
    body.as_ref()?.get(key)?.as_str()
}

/// GitHub [G1]: bearer token, `Accept`, `X-GitHub-Api-Version` and a `User-Agent` on every
/// request; [G2] 201 with `number` and `html_url`, 422 when a PR for the head exists.
fn github<'h>(
    inner: &mut Inner,
    method: &str,
    repo: &str,
    h: impl Fn(&str) -> Option<&'h str>,
    query: &BTreeMap<String, String>,
    body: Option<Value>,
) -> Response {
    if let Some(refused) = github_refuses(inner, &h) {
        return refused;
    }
    let pr = |o: &Open| {
        json!({
            "number": o.number,
            "html_url": format!("https://github.com/{}/pull/{}", o.repo, o.number),
            "url": format!("https://api.github.com/repos/{}/pulls/{}", o.repo, o.number),
            "state": "open",
            "head": {"ref": o.head, "sha": "0000000000000000000000000000000000000000"},
            "base": {"ref": o.base},
            "merged": false,
            "mergeable": null,
        })
    };
    let owner = repo.split('/').next().unwrap_or_default();
    match method {
        "GET" => {
            let head = query.get("head").cloned().unwrap_or_default();
            let list: Vec<Value> = inner
                .open
                .iter()
                .filter(|o| o.provider == "github" && o.repo == repo)
                .filter(|o| format!("{owner}:{}", o.head) == head)
                .filter(|_| query.get("state").map(String::as_str) == Some("open"))
                .map(pr)
                .collect();
            (StatusCode::OK, axum::Json(Value::Array(list))).into_response()
        }
        "POST" => {
            let (Some(title), Some(head), Some(base)) = (
                field(&body, "title"),
                field(&body, "head"),
                field(&body, "base"),
            ) else {
                return error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    json!({"message": "Validation Failed", "errors": [{"resource": "PullRequest", "code": "missing_field"}]}),
                );
            };
            let _ = title;
            if inner
                .open
                .iter()
                .any(|o| o.provider == "github" && o.repo == repo && o.head == head)
            {
                return error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    json!({"message": "Validation Failed", "errors": [{"resource": "PullRequest", "code": "custom", "message": format!("A pull request already exists for {owner}:{head}.")}]}),
                );
            }
            let open = new_open(inner, "github", repo, head, base);
            (StatusCode::CREATED, axum::Json(pr(&open))).into_response()
        }
        _ => error(StatusCode::NOT_FOUND, json!({"message": "Not Found"})),
    }
}

/// GitHub [G1]: the answer to a request without the User-Agent, the bearer token, `Accept` or
/// `X-GitHub-Api-Version`; `None` when it has them all.
fn github_refuses<'h>(inner: &Inner, h: &impl Fn(&str) -> Option<&'h str>) -> Option<Response> {
    if h("user-agent").is_none_or(str::is_empty) {
        return Some(error(
            StatusCode::FORBIDDEN,
            json!({"message": "Request forbidden by administrative rules. Please make sure your request has a User-Agent header"}),
        ));
    }
    if h("authorization") != Some(format!("Bearer {}", inner.token).as_str()) {
        return Some(error(
            StatusCode::UNAUTHORIZED,
            json!({"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest"}),
        ));
    }
    if h("accept") != Some("application/vnd.github+json")
        || h("x-github-api-version") != Some("2022-11-28")
    {
        return Some(error(
            StatusCode::BAD_REQUEST,
            json!({"message": "Accept: application/vnd.github+json and X-GitHub-Api-Version: 2022-11-28 are required by this fake (G1)"}),
        ));
    }
    None
}

fn new_open(inner: &mut Inner, provider: &'static str, repo: &str, head: &str, base: &str) -> Open {
    let open = Open {
        provider,
        repo: repo.to_string(),
        head: head.to_string(),
        base: base.to_string(),
        number: inner.next,
    };
    inner.next += 1;
    inner.open.push(open.clone());
    open
}

/// GitLab [L1]: `PRIVATE-TOKEN` (or a bearer token); [L2] 201 with `iid` and `web_url`, 409
/// when an open merge request exists for the source branch.
fn gitlab<'h>(
    inner: &mut Inner,
    method: &str,
    project: &str,
    h: impl Fn(&str) -> Option<&'h str>,
    query: &BTreeMap<String, String>,
    body: Option<Value>,
) -> Response {
    let bearer = format!("Bearer {}", inner.token);
    if h("private-token") != Some(inner.token.as_str()) && h("authorization") != Some(&bearer) {
        return error(
            StatusCode::UNAUTHORIZED,
            json!({"message": "401 Unauthorized"}),
        );
    }
    let mr = |o: &Open| {
        json!({
            "id": 1000 + o.number,
            "iid": o.number,
            "web_url": format!("https://gitlab.com/{}/-/merge_requests/{}", o.repo, o.number),
            "state": "opened",
            "sha": "0000000000000000000000000000000000000000",
            "source_branch": o.head,
            "target_branch": o.base,
        })
    };
    match method {
        "GET" => {
            let source = query.get("source_branch").cloned().unwrap_or_default();
            let list: Vec<Value> = inner
                .open
                .iter()
                .filter(|o| o.provider == "gitlab" && o.repo == project && o.head == source)
                .filter(|_| query.get("state").map(String::as_str) == Some("opened"))
                .map(mr)
                .collect();
            (StatusCode::OK, axum::Json(Value::Array(list))).into_response()
        }
        "POST" => {
            let (Some(_), Some(source), Some(target)) = (
                field(&body, "title"),
                field(&body, "source_branch"),
                field(&body, "target_branch"),
            ) else {
                return error(
                    StatusCode::BAD_REQUEST,
                    json!({"error": "title, source_branch, target_branch are missing"}),
                );
            };
            if let Some(o) = inner
                .open
                .iter()
                .find(|o| o.provider == "gitlab" && o.repo == project && o.head == source)
            {
                return error(
                    StatusCode::CONFLICT,
                    json!({"message": [format!("Another open merge request already exists for this source branch: !{}", o.number)]}),
                );
            }
            let open = new_open(inner, "gitlab", project, source, target);
            (StatusCode::CREATED, axum::Json(mr(&open))).into_response()
        }
        _ => error(StatusCode::NOT_FOUND, json!({"message": "404 Not Found"})),
    }
}

/// Azure DevOps [D1]: `api-version=7.1` on every call, `Basic base64(":" + PAT)`; a bad PAT
/// gets a 203 HTML sign-in page [D5]. [D2] full ref names, 201 with `pullRequestId`, 409
/// `TF401179` when an active one exists for the source and target.
fn azure_devops<'h>(
    inner: &mut Inner,
    method: &str,
    repo: &str,
    h: impl Fn(&str) -> Option<&'h str>,
    query: &BTreeMap<String, String>,
    body: Option<Value>,
) -> Response {
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!(":{}", inner.token))
    );
    if h("authorization") != Some(basic.as_str()) {
        return (
            StatusCode::NON_AUTHORITATIVE_INFORMATION,
            [("content-type", "text/html")],
            "<html><body>Sign in to your account</body></html>",
        )
            .into_response();
    }
    if query.get("api-version").map(String::as_str) != Some("7.1") {
        return error(
            StatusCode::BAD_REQUEST,
            json!({"message": "VS800006: No api-version was supplied for the request.", "typeKey": "VssVersionNotSpecifiedException"}),
        );
    }
    let pr = |o: &Open| {
        json!({
            "pullRequestId": o.number,
            "status": "active",
            "url": format!("https://dev.azure.com/_apis/git/repositories/x/pullRequests/{}", o.number),
            "sourceRefName": format!("refs/heads/{}", o.head),
            "targetRefName": format!("refs/heads/{}", o.base),
            "mergeStatus": "queued",
        })
    };
    match method {
        "GET" => {
            let source = query.get("searchCriteria.sourceRefName").cloned();
            let target = query.get("searchCriteria.targetRefName").cloned();
            let list: Vec<Value> = inner
                .open
                .iter()
                .filter(|o| o.provider == "azure-devops" && o.repo == repo)
                .filter(|o| source.as_deref() == Some(format!("refs/heads/{}", o.head).as_str()))
                .filter(|o| target.as_deref() == Some(format!("refs/heads/{}", o.base).as_str()))
                .map(pr)
                .collect();
            let count = list.len();
            (
                StatusCode::OK,
                axum::Json(json!({"value": list, "count": count})),
            )
                .into_response()
        }
        "POST" => {
            let (Some(_), Some(source), Some(target)) = (
                field(&body, "title"),
                field(&body, "sourceRefName"),
                field(&body, "targetRefName"),
            ) else {
                return error(
                    StatusCode::BAD_REQUEST,
                    json!({"message": "title, sourceRefName and targetRefName are required"}),
                );
            };
            let (Some(head), Some(base)) = (
                source.strip_prefix("refs/heads/"),
                target.strip_prefix("refs/heads/"),
            ) else {
                return error(
                    StatusCode::BAD_REQUEST,
                    json!({"message": "TF401398: The pull request cannot be created: full ref names (refs/heads/...) are required"}),
                );
            };
            if inner.open.iter().any(|o| {
                o.provider == "azure-devops" && o.repo == repo && o.head == head && o.base == base
            }) {
                return error(
                    StatusCode::CONFLICT,
                    json!({"message": "TF401179: An active pull request for the source and target branch already exists.", "typeKey": "GitPullRequestExistsException", "errorCode": 0}),
                );
            }
            let open = new_open(inner, "azure-devops", repo, head, base);
            (StatusCode::CREATED, axum::Json(pr(&open))).into_response()
        }
        _ => error(StatusCode::NOT_FOUND, json!({"message": "Not Found"})),
    }
}
