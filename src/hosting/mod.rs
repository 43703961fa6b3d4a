//! Pull requests on GitHub, GitLab and Azure DevOps, for `flightdeck promote --open-pr`. One
//! call per provider, `open_or_get`: open the pull request, or, when the provider answers that
//! one already exists for the branch (GitHub 422, GitLab 409, Azure DevOps 409), find and return
//! that one ([GIT X2]). Contracts: ../shared/reference/git-hosting/CONTRACT.md (GitHub G1-G2,
//! GitLab L1-L2, Azure DevOps D1-D2, D5). The token is sent only in its header, never logged
//! or put in an error.

use std::time::Duration;

use crate::source::Secret;

mod answer;
mod azure_devops;
mod github;
mod gitlab;

/// Which REST API.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Provider {
    Github,
    Gitlab,
    AzureDevops,
}

impl Provider {
    pub fn default_api(self) -> &'static str {
        match self {
            Provider::Github => "https://api.github.com",
            Provider::Gitlab => "https://gitlab.com/api/v4",
            Provider::AzureDevops => "https://dev.azure.com",
        }
    }

    /// What `--pr-repo` holds for this provider.
    pub fn repo_form(self) -> &'static str {
        match self {
            Provider::Github => "OWNER/REPO",
            Provider::Gitlab => "GROUP/PROJECT (subgroups allowed) or a numeric project id",
            Provider::AzureDevops => "ORGANIZATION/PROJECT/REPOSITORY",
        }
    }

    /// The repository coordinates from a remote URL on the provider's public host
    /// (`https://github.com/o/r.git`, `git@gitlab.com:g/p.git`,
    /// `https://org@dev.azure.com/org/project/_git/repo`), when it is one.
    pub fn repo_from_url(self, url: &str) -> Option<String> {
        let (host, path) = if let Some((_, rest)) = url.split_once("://") {
            let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
            rest.split_once('/')?
        } else {
            // scp-like `git@host:path`
            let rest = url.split_once('@').map_or(url, |(_, r)| r);
            rest.split_once(':')?
        };
        let host = host.split(':').next()?;
        let path = path.trim_end_matches('/');
        let path = path.strip_suffix(".git").unwrap_or(path);
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        match self {
            Provider::Github if host == "github.com" && parts.len() == 2 => Some(parts.join("/")),
            Provider::Gitlab if host == "gitlab.com" && parts.len() >= 2 => Some(parts.join("/")),
            Provider::AzureDevops if host == "dev.azure.com" || host == "ssh.dev.azure.com" => {
                // https: org/project/_git/repo; ssh: v3/org/project/repo
                match parts.as_slice() {
                    [org, project, "_git", repo] => Some(format!("{org}/{project}/{repo}")),
                    ["v3", org, project, repo] => Some(format!("{org}/{project}/{repo}")),
                    _ => None,
                }
            }
            _ => None,
        }
    }
}

/// Where to open the pull request.
#[derive(Clone, Debug)]
pub struct Hosting {
    pub provider: Provider,
    /// The API base, e.g. `https://api.github.com` (no trailing slash needed).
    pub api: String,
    /// As [`Provider::repo_form`] says.
    pub repo: String,
    pub token: Secret,
}

/// The pull request to open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewPullRequest {
    pub title: String,
    /// Markdown.
    pub body: String,
    /// The branch with the change.
    pub head: String,
    /// The branch it merges into.
    pub base: String,
}

/// An open pull request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PullRequest {
    /// GitHub's `number`, GitLab's `iid`, Azure DevOps' `pullRequestId`.
    pub number: u64,
    /// The page people open.
    pub url: String,
    /// It existed already (the provider refused a second one); this is that one.
    pub existed: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum HostingError {
    #[error("--pr-repo `{repo}` is not {form}")]
    Repo { repo: String, form: &'static str },
    #[error("{provider}: {what}: {source}")]
    Http {
        provider: &'static str,
        what: &'static str,
        #[source]
        source: reqwest::Error,
    },
    #[error("{provider}: {what}: HTTP {status}: {message}")]
    Status {
        provider: &'static str,
        what: &'static str,
        status: u16,
        message: String,
    },
    #[error("{provider}: {what}: the response is not what the API documents: {why}")]
    Response {
        provider: &'static str,
        what: &'static str,
        why: String,
    },
    #[error(
        "{provider}: a pull request from {head} already exists, but none was found open (it may be closed or in another repository)"
    )]
    NotFound {
        provider: &'static str,
        head: String,
    },
}

/// The one HTTP client: a User-Agent on every request (GitHub requires one [GIT G1]), bounded.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .user_agent(concat!("flightdeck/", env!("CARGO_PKG_VERSION")))
        .timeout(Duration::from_secs(30))
        .connect_timeout(Duration::from_secs(10))
        .build()
        .expect("a TLS client can be built")
}

/// The error message of a JSON error body (`message`, GitLab's `error`), or the status text.
/// Long bodies are cut: an HTML page is not a message.
pub(crate) fn error_message(body: &str) -> String {
    let parsed: Option<serde_json::Value> = serde_json::from_str(body).ok();
    let message = parsed.as_ref().and_then(|v| {
        v.get("message")
            .or_else(|| v.get("error"))
            .map(|m| match m {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            })
    });
    let text = message.unwrap_or_else(|| body.trim().to_string());
    let cut: String = text.chars().take(300).collect();
    crate::escape::escape_control(&cut).into_owned()
}

impl Hosting {
    /// Opens the pull request, or returns the open one for the same branch.
    pub async fn open_or_get(&self, pr: &NewPullRequest) -> Result<PullRequest, HostingError> {
        let client = client();
        let api = self.api.trim_end_matches('/');
        match self.provider {
            Provider::Github => {
                github::open_or_get(&client, api, &self.repo, &self.token, pr).await
            }
            Provider::Gitlab => {
                gitlab::open_or_get(&client, api, &self.repo, &self.token, pr).await
            }
            Provider::AzureDevops => {
                azure_devops::open_or_get(&client, api, &self.repo, &self.token, pr).await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_coordinates_come_from_the_usual_remote_urls() {
        let gh = Provider::Github;
        assert_eq!(
            gh.repo_from_url("https://github.com/acme/ml.git")
                .as_deref(),
            Some("acme/ml")
        );
        assert_eq!(
            gh.repo_from_url("git@github.com:acme/ml.git").as_deref(),
            Some("acme/ml")
        );
        assert_eq!(
            gh.repo_from_url("https://x-access-token:t@github.com/acme/ml")
                .as_deref(),
            Some("acme/ml")
        );
        assert_eq!(gh.repo_from_url("https://example.com/acme/ml.git"), None);
        assert_eq!(
            Provider::Gitlab
                .repo_from_url("https://gitlab.com/g/sub/p.git")
                .as_deref(),
            Some("g/sub/p")
        );
        let ado = Provider::AzureDevops;
        assert_eq!(
            ado.repo_from_url("https://acme@dev.azure.com/acme/ml/_git/models")
                .as_deref(),
            Some("acme/ml/models")
        );
        assert_eq!(
            ado.repo_from_url("git@ssh.dev.azure.com:v3/acme/ml/models")
                .as_deref(),
            Some("acme/ml/models")
        );
    }

    #[test]
    fn error_bodies_give_their_message_and_html_is_cut() {
        assert_eq!(
            error_message(r#"{"message":"Validation Failed"}"#),
            "Validation Failed"
        );
        assert_eq!(
            error_message(r#"{"error":"403 Forbidden"}"#),
            "403 Forbidden"
        );
        assert_eq!(error_message(&"x".repeat(1000)).len(), 300);
    }
}
