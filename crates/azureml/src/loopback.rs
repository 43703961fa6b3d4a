//! `LoopbackEntraCredential`: an OAuth2 client-credentials token source used ONLY when
//! `AZURE_AUTHORITY_HOST` is a plain-http loopback URL, i.e. the flightdeck sandbox.
//!
//! Why it exists: azure_identity 1.0 validates the authority host and rejects any scheme other
//! than https ("authority host doesn't use HTTPS scheme", `get_authority_host` in
//! azure_identity-1.0.0/src/lib.rs), and a local emulator serves plain http. Rather than turning
//! off that check for real clouds, this credential implements the two form flows of
//! [AML §6] against `{authority}/{tenant}/oauth2/v2.0/token`:
//! - client secret: `grant_type=client_credentials&client_id&client_secret&scope`;
//! - workload identity: `client_assertion_type=…jwt-bearer&client_assertion=<file>`, re-reading
//!   the federated token file on every request (the kubelet rotates it).
//!
//! It refuses any authority that is not http on 127.0.0.0/8, ::1 or `localhost`.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use url::{Host, Url};

use super::auth::{IssuedToken, Secret, TokenFetcher};
use super::error::{AzureMlError, excerpt};

const NAME: &str = "LoopbackEntraCredential";

/// True for `localhost`, 127.0.0.0/8 and ::1.
pub(crate) fn host_is_loopback(host: &Host<&str>) -> bool {
    match host {
        Host::Domain(d) => d.eq_ignore_ascii_case("localhost"),
        Host::Ipv4(ip) => IpAddr::V4(*ip).is_loopback(),
        Host::Ipv6(ip) => IpAddr::V6(*ip).is_loopback(),
    }
}

/// True for a plain-http URL on a loopback host.
pub(crate) fn is_loopback_http(url: &Url) -> bool {
    url.scheme() == "http" && url.host().is_some_and(|h| host_is_loopback(&h))
}

/// What the credential proves its identity with.
#[derive(Clone, Debug)]
pub enum LoopbackGrant {
    /// `AZURE_CLIENT_SECRET`.
    ClientSecret(Secret),
    /// `AZURE_FEDERATED_TOKEN_FILE`, read again for every token.
    FederatedTokenFile(PathBuf),
}

/// See the module documentation: local-only client-credentials flow.
#[derive(Debug)]
pub struct LoopbackEntraCredential {
    token_url: Url,
    client_id: String,
    grant: LoopbackGrant,
    http: reqwest::Client,
}

impl LoopbackEntraCredential {
    pub fn new(
        authority: &Url,
        tenant_id: &str,
        client_id: &str,
        grant: LoopbackGrant,
    ) -> Result<LoopbackEntraCredential, AzureMlError> {
        if !is_loopback_http(authority) {
            return Err(AzureMlError::Config(format!(
                "{NAME} only talks to a plain-http loopback authority, not {authority}"
            )));
        }
        let tenant_ok = !tenant_id.is_empty()
            && tenant_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
        if !tenant_ok {
            return Err(AzureMlError::Config(format!(
                "invalid tenant id {tenant_id:?}: expected letters, digits, '-' and '.'"
            )));
        }
        if client_id.is_empty() {
            return Err(AzureMlError::Config("empty client id".into()));
        }
        let token_url = authority
            .join(&format!("{tenant_id}/oauth2/v2.0/token"))
            .map_err(|e| AzureMlError::Config(format!("token endpoint url: {e}")))?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| AzureMlError::Config(format!("http client: {e}")))?;
        Ok(LoopbackEntraCredential {
            token_url,
            client_id: client_id.to_string(),
            grant,
            http,
        })
    }

    /// The token endpoint this credential posts to.
    pub fn token_url(&self) -> &Url {
        &self.token_url
    }

    fn auth_error(&self, message: String) -> AzureMlError {
        AzureMlError::Auth {
            credential: NAME.to_string(),
            message,
        }
    }
}

#[async_trait]
impl TokenFetcher for LoopbackEntraCredential {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn fetch(&self, scope: &str) -> Result<IssuedToken, AzureMlError> {
        let mut form: Vec<(&str, String)> = vec![
            ("grant_type", "client_credentials".into()),
            ("client_id", self.client_id.clone()),
            ("scope", scope.to_string()),
        ];
        let secret_text = match &self.grant {
            LoopbackGrant::ClientSecret(secret) => {
                form.push(("client_secret", secret.expose().to_string()));
                secret.expose().to_string()
            }
            LoopbackGrant::FederatedTokenFile(path) => {
                let assertion = tokio::fs::read_to_string(path).await.map_err(|e| {
                    self.auth_error(format!(
                        "cannot read federated token file {}: {e}",
                        path.display()
                    ))
                })?;
                let assertion = assertion.trim().to_string();
                if assertion.is_empty() {
                    return Err(self
                        .auth_error(format!("federated token file {} is empty", path.display())));
                }
                form.push((
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".into(),
                ));
                form.push(("client_assertion", assertion.clone()));
                assertion
            }
        };
        let response = self
            .http
            .post(self.token_url.clone())
            .form(&form)
            .send()
            .await
            .map_err(|e| {
                let hint = if e.is_connect() {
                    ": nothing answers there; is `flightdeck sandbox` running? start it and export \
                     the lines it prints again"
                } else {
                    ""
                };
                self.auth_error(format!(
                    "token endpoint {}: {}{hint}",
                    self.token_url,
                    e.without_url()
                ))
            })?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| self.auth_error(format!("reading token response: {}", e.without_url())))?;
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        if !status.is_success() {
            let code = json["error"].as_str().unwrap_or("");
            let description = json["error_description"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
            let mut message = format!(
                "token endpoint returned {}: {code}: {}",
                status.as_u16(),
                excerpt(&description, 300)
            );
            // The server should never echo the secret; make sure we never repeat it if it does.
            // The sandbox generates a tenant, client and secret at each start unless they are
            // kept (`--state-dir`) or given: after a restart the old ones are unknown to it.
            if matches!(
                code,
                "invalid_request" | "unauthorized_client" | "invalid_client"
            ) {
                message.push_str(
                    ": the credentials changed (a sandbox restarted without `--state-dir` generates \
                     new ones); export the lines `flightdeck sandbox` prints again",
                );
            }
            if !secret_text.is_empty() {
                message = message.replace(&secret_text, "***");
            }
            return Err(self.auth_error(message));
        }
        let token = json["access_token"]
            .as_str()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| self.auth_error("token response has no access_token".into()))?;
        // expires_in is a number from Entra, a string from IMDS [AML §6]: accept both.
        let expires_in = match &json["expires_in"] {
            serde_json::Value::Number(n) => n.as_u64(),
            serde_json::Value::String(s) => s.parse().ok(),
            _ => None,
        }
        .ok_or_else(|| self.auth_error("token response has no valid expires_in".into()))?;
        Ok(IssuedToken {
            token: Secret::new(token),
            expires_in: Duration::from_secs(expires_in),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_http_loopback_authorities_are_accepted() {
        let grant = LoopbackGrant::ClientSecret(Secret::new("s"));
        for ok in [
            "http://127.0.0.1:8080/",
            "http://localhost:1",
            "http://[::1]:2/",
        ] {
            let url = Url::parse(ok).unwrap();
            assert!(
                LoopbackEntraCredential::new(&url, "t", "c", grant.clone()).is_ok(),
                "{ok}"
            );
        }
        for bad in [
            "https://127.0.0.1/",
            "http://10.0.0.1/",
            "http://login.example.com/",
        ] {
            let url = Url::parse(bad).unwrap();
            assert!(
                LoopbackEntraCredential::new(&url, "t", "c", grant.clone()).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_token_url_is_under_the_tenant() {
        let url = Url::parse("http://127.0.0.1:7070/").unwrap();
        let grant = LoopbackGrant::ClientSecret(Secret::new("s"));
        let c = LoopbackEntraCredential::new(&url, "tenant-1", "c", grant).unwrap();
        assert_eq!(
            c.token_url().as_str(),
            "http://127.0.0.1:7070/tenant-1/oauth2/v2.0/token"
        );
        let grant = LoopbackGrant::ClientSecret(Secret::new("s"));
        assert!(LoopbackEntraCredential::new(&url, "../x", "c", grant).is_err());
    }

    #[test]
    fn debug_output_hides_the_client_secret() {
        let url = Url::parse("http://127.0.0.1:7070/").unwrap();
        let grant = LoopbackGrant::ClientSecret(Secret::new("very-secret-value"));
        let c = LoopbackEntraCredential::new(&url, "t", "c", grant).unwrap();
        assert!(!format!("{c:?}").contains("very-secret-value"));
    }
}
