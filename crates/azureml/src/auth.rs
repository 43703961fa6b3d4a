//! ARM authentication: the `TokenSource` the backend asks for bearer tokens, a per-scope cache,
//! and the credential chosen from the standard Azure variables [AML §6].
//!
//! Order, as the Azure SDKs choose (EnvironmentCredential, then WorkloadIdentityCredential, then
//! ManagedIdentityCredential, then AzureCliCredential):
//! 1. `AZURE_TENANT_ID` + `AZURE_CLIENT_ID` + `AZURE_CLIENT_SECRET` → client secret;
//! 2. `AZURE_TENANT_ID` + `AZURE_CLIENT_ID` + `AZURE_FEDERATED_TOKEN_FILE` → workload identity;
//! 3. otherwise managed identity, falling back to the Azure CLI on the first token request.
//!
//! azure_identity 1.0 refuses an authority host that is not https (`get_authority_host` in its
//! lib.rs), so it cannot talk to a local token endpoint. When `AZURE_AUTHORITY_HOST` is a plain
//! http loopback URL (the sandbox), steps 1 and 2 use [`LoopbackEntraCredential`] instead, which
//! speaks the same OAuth2 form flows. Nothing else ever sends a credential over plain http.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

use async_trait::async_trait;
use azure_core::credentials::TokenCredential;
use azure_identity::{
    AzureCliCredential, ClientSecretCredential, ManagedIdentityCredential,
    ManagedIdentityCredentialOptions, UserAssignedId, WorkloadIdentityCredential,
    WorkloadIdentityCredentialOptions,
};
use tokio::sync::Mutex;
use url::Url;

use super::error::AzureMlError;
use super::loopback::{LoopbackEntraCredential, LoopbackGrant, is_loopback_http};

/// Scope of the Azure ML data plane, for `AADToken` endpoints [AML §5].
pub const ML_SCOPE: &str = "https://ml.azure.com/.default";
/// Scope of the public-cloud ARM API [AML §6].
pub const ARM_SCOPE: &str = "https://management.azure.com/.default";

pub use flightdeck_core::secret::Secret;

/// Gives bearer tokens for a scope (`https://management.azure.com/.default`).
#[async_trait]
pub trait TokenSource: Send + Sync {
    async fn token(&self, scope: &str) -> Result<Secret, AzureMlError>;

    /// Drops a cached token for `scope` after the server refused it (401), so the next
    /// [`TokenSource::token`] fetches a new one. Sources that do not cache do nothing.
    async fn invalidate(&self, _scope: &str) {}
}

/// A freshly issued token and how long it is valid.
#[derive(Clone, Debug)]
pub struct IssuedToken {
    pub token: Secret,
    pub expires_in: Duration,
}

/// Fetches a new token every time it is called; wrap it in a [`CachedTokenSource`].
#[async_trait]
pub trait TokenFetcher: Send + Sync {
    /// Short credential name for errors (`ClientSecretCredential`).
    fn name(&self) -> &'static str;
    async fn fetch(&self, scope: &str) -> Result<IssuedToken, AzureMlError>;
}

/// Caches one token per scope and fetches a new one shortly before it expires: at 5 minutes
/// before expiry, or at half its lifetime for short-lived tokens.
pub struct CachedTokenSource {
    fetcher: Box<dyn TokenFetcher>,
    cache: Mutex<HashMap<String, (Secret, Instant)>>,
}

impl CachedTokenSource {
    pub fn new(fetcher: Box<dyn TokenFetcher>) -> CachedTokenSource {
        CachedTokenSource {
            fetcher,
            cache: Mutex::new(HashMap::new()),
        }
    }
}

#[async_trait]
impl TokenSource for CachedTokenSource {
    async fn token(&self, scope: &str) -> Result<Secret, AzureMlError> {
        // Holding the lock across the fetch makes concurrent callers share one request.
        let mut cache = self.cache.lock().await;
        if let Some((token, refresh_at)) = cache.get(scope)
            && Instant::now() < *refresh_at
        {
            return Ok(token.clone());
        }
        let issued = self.fetcher.fetch(scope).await?;
        let margin = (issued.expires_in / 2).min(Duration::from_secs(300));
        let refresh_at = Instant::now() + issued.expires_in.saturating_sub(margin);
        tracing::debug!(
            credential = self.fetcher.name(),
            scope,
            expires_in_s = issued.expires_in.as_secs(),
            "token acquired"
        );
        cache.insert(scope.to_string(), (issued.token.clone(), refresh_at));
        Ok(issued.token)
    }

    async fn invalidate(&self, scope: &str) {
        if self.cache.lock().await.remove(scope).is_some() {
            tracing::debug!(
                credential = self.fetcher.name(),
                scope,
                "cached token refused; dropped"
            );
        }
    }
}

/// Any azure_identity credential as a fetcher.
pub struct AzureIdentityFetcher {
    name: &'static str,
    credential: Arc<dyn TokenCredential>,
}

impl AzureIdentityFetcher {
    pub fn new(name: &'static str, credential: Arc<dyn TokenCredential>) -> AzureIdentityFetcher {
        AzureIdentityFetcher { name, credential }
    }
}

#[async_trait]
impl TokenFetcher for AzureIdentityFetcher {
    fn name(&self) -> &'static str {
        self.name
    }

    async fn fetch(&self, scope: &str) -> Result<IssuedToken, AzureMlError> {
        let token = self
            .credential
            .get_token(&[scope], None)
            .await
            .map_err(|e| AzureMlError::Auth {
                credential: self.name.to_string(),
                message: e.to_string(),
            })?;
        let now_ms = i128::from(flightdeck_core::clock::now_utc().timestamp_millis());
        let left_ms = token.expires_on.unix_timestamp_nanos() / 1_000_000 - now_ms;
        let millis = u64::try_from(left_ms).unwrap_or(0);
        Ok(IssuedToken {
            token: Secret::new(token.token.secret()),
            expires_in: Duration::from_millis(millis),
        })
    }
}

/// Tries fetchers in order until one works, then sticks with it (managed identity → Azure CLI).
struct ChainFetcher {
    fetchers: Vec<Box<dyn TokenFetcher>>,
    chosen: Mutex<Option<usize>>,
}

#[async_trait]
impl TokenFetcher for ChainFetcher {
    fn name(&self) -> &'static str {
        "ChainedCredential"
    }

    async fn fetch(&self, scope: &str) -> Result<IssuedToken, AzureMlError> {
        let mut chosen = self.chosen.lock().await;
        if let Some(i) = *chosen {
            return self.fetchers[i].fetch(scope).await;
        }
        let mut failures = Vec::new();
        for (i, fetcher) in self.fetchers.iter().enumerate() {
            match fetcher.fetch(scope).await {
                Ok(token) => {
                    *chosen = Some(i);
                    return Ok(token);
                }
                Err(e) => failures.push(e.to_string()),
            }
        }
        Err(AzureMlError::Auth {
            credential: "ChainedCredential".to_string(),
            message: format!("{NO_CREDENTIALS}; tried: {}", failures.join("; ")),
        })
    }
}

/// The ARM token scope for an ARM base URL: its origin + `/.default`. A loopback URL is the
/// sandbox emulating the public cloud, so it gets the public-cloud scope.
pub fn arm_scope(arm_endpoint: &Url) -> String {
    if arm_endpoint
        .host()
        .is_some_and(|h| super::loopback::host_is_loopback(&h))
    {
        return ARM_SCOPE.to_string();
    }
    let origin = arm_endpoint.origin().ascii_serialization();
    format!("{origin}/.default")
}

/// The credential chosen from the process environment (see the module docs for the order).
/// What to do when no credential works: the first words of every such error.
pub const NO_CREDENTIALS: &str = "no Azure credentials found: set AZURE_TENANT_ID, AZURE_CLIENT_ID and \
     AZURE_CLIENT_SECRET (or AZURE_FEDERATED_TOKEN_FILE), use a managed identity or `az login`, or run \
     `flightdeck sandbox` and export the lines it prints";

/// The credential for `arm_endpoint` chosen from the Azure variables `var` looks up (see the
/// module docs for the order): the edges pass a captured `backend::CredentialVars`, tests a map.
pub fn credential_from_vars(
    arm_endpoint: &Url,
    var: &dyn Fn(&str) -> Option<String>,
) -> Result<Arc<dyn TokenSource>, AzureMlError> {
    if arm_endpoint.scheme() != "https" && !is_loopback_http(arm_endpoint) {
        return Err(AzureMlError::Config(format!(
            "ARM endpoint {arm_endpoint} is plain http and not loopback: refusing to send tokens over it"
        )));
    }
    // A local sandbox issues its own credentials; a managed identity or `az login` never works
    // against it, so say at once what is missing instead of trying them.
    if is_loopback_http(arm_endpoint)
        && (var("AZURE_TENANT_ID").is_none()
            || var("AZURE_CLIENT_ID").is_none()
            || var("AZURE_AUTHORITY_HOST").is_none())
    {
        return Err(AzureMlError::Config(format!(
            "no Azure credentials found for the sandbox at {arm_endpoint}: export the lines \
             `flightdeck sandbox` prints (AZURE_AUTHORITY_HOST, AZURE_TENANT_ID, AZURE_CLIENT_ID, \
             AZURE_CLIENT_SECRET), e.g. `set -a; . ./sandbox.env; set +a`"
        )));
    }
    let fetcher = select_fetcher(var)?;
    Ok(Arc::new(CachedTokenSource::new(fetcher)))
}

fn select_fetcher(
    var: &dyn Fn(&str) -> Option<String>,
) -> Result<Box<dyn TokenFetcher>, AzureMlError> {
    let tenant = var("AZURE_TENANT_ID");
    let client = var("AZURE_CLIENT_ID");
    let secret = var("AZURE_CLIENT_SECRET").map(Secret::new);
    let token_file = var("AZURE_FEDERATED_TOKEN_FILE").map(PathBuf::from);
    let authority = match var("AZURE_AUTHORITY_HOST") {
        Some(raw) => Some(Url::parse(&raw).map_err(|e| {
            AzureMlError::Config(format!("AZURE_AUTHORITY_HOST {raw:?} is not a URL: {e}"))
        })?),
        None => None,
    };

    if let Some(authority) = authority.as_ref().filter(|a| is_loopback_http(a)) {
        let (Some(tenant), Some(client)) = (tenant, client) else {
            return Err(AzureMlError::Config(
                "AZURE_AUTHORITY_HOST is a loopback URL but AZURE_TENANT_ID or AZURE_CLIENT_ID is not set"
                    .into(),
            ));
        };
        let grant = match (secret, token_file) {
            (Some(secret), _) => LoopbackGrant::ClientSecret(secret),
            (None, Some(path)) => LoopbackGrant::FederatedTokenFile(path),
            (None, None) => {
                return Err(AzureMlError::Config(
                    "AZURE_AUTHORITY_HOST is a loopback URL: set AZURE_CLIENT_SECRET or AZURE_FEDERATED_TOKEN_FILE"
                        .into(),
                ));
            }
        };
        let credential = LoopbackEntraCredential::new(authority, &tenant, &client, grant)?;
        return Ok(Box::new(credential));
    }
    if let Some(authority) = &authority
        && authority.scheme() != "https"
    {
        return Err(AzureMlError::Config(format!(
            "AZURE_AUTHORITY_HOST {authority} must be https (plain http is allowed on loopback only)"
        )));
    }

    let identity_err = |name: &'static str| {
        move |e: azure_core::Error| AzureMlError::Auth {
            credential: name.to_string(),
            message: e.to_string(),
        }
    };
    if let (Some(tenant), Some(client), Some(secret)) = (&tenant, &client, secret) {
        let secret = azure_core::credentials::Secret::new(secret.expose().to_string());
        let credential = ClientSecretCredential::new(tenant, client.clone(), secret, None)
            .map_err(identity_err("ClientSecretCredential"))?;
        return Ok(Box::new(AzureIdentityFetcher::new(
            "ClientSecretCredential",
            credential,
        )));
    }
    if let (Some(tenant), Some(client), Some(path)) = (&tenant, &client, token_file) {
        let options = WorkloadIdentityCredentialOptions {
            client_id: Some(client.clone()),
            tenant_id: Some(tenant.clone()),
            token_file_path: Some(path),
            ..Default::default()
        };
        let credential = WorkloadIdentityCredential::new(Some(options))
            .map_err(identity_err("WorkloadIdentityCredential"))?;
        return Ok(Box::new(AzureIdentityFetcher::new(
            "WorkloadIdentityCredential",
            credential,
        )));
    }

    let mut fetchers: Vec<Box<dyn TokenFetcher>> = Vec::new();
    let options = ManagedIdentityCredentialOptions {
        user_assigned_id: client.map(UserAssignedId::ClientId),
        ..Default::default()
    };
    match ManagedIdentityCredential::new(Some(options)) {
        Ok(c) => fetchers.push(Box::new(AzureIdentityFetcher::new(
            "ManagedIdentityCredential",
            c,
        ))),
        Err(e) => tracing::debug!(error = %e, "managed identity unavailable"),
    }
    match AzureCliCredential::new(None) {
        Ok(c) => fetchers.push(Box::new(AzureIdentityFetcher::new("AzureCliCredential", c))),
        Err(e) => tracing::debug!(error = %e, "azure cli credential unavailable"),
    }
    if fetchers.is_empty() {
        return Err(AzureMlError::Config(
            "no Azure credential available: set AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET \
             (or AZURE_FEDERATED_TOKEN_FILE), use a managed identity, or run `az login`"
                .into(),
        ));
    }
    Ok(Box::new(ChainFetcher {
        fetchers,
        chosen: Mutex::new(None),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    struct Counting {
        calls: Arc<AtomicU32>,
        lifetime: Duration,
    }

    #[async_trait]
    impl TokenFetcher for Counting {
        fn name(&self) -> &'static str {
            "Counting"
        }
        async fn fetch(&self, scope: &str) -> Result<IssuedToken, AzureMlError> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            Ok(IssuedToken {
                token: Secret::new(format!("{scope}-{n}")),
                expires_in: self.lifetime,
            })
        }
    }

    #[tokio::test]
    async fn cached_tokens_are_reused_per_scope_until_near_expiry() {
        let calls = Arc::new(AtomicU32::new(0));
        let source = CachedTokenSource::new(Box::new(Counting {
            calls: calls.clone(),
            lifetime: Duration::from_secs(3600),
        }));
        assert_eq!(source.token("a").await.unwrap().expose(), "a-0");
        assert_eq!(source.token("a").await.unwrap().expose(), "a-0");
        assert_eq!(source.token("b").await.unwrap().expose(), "b-1");
        assert_eq!(calls.load(Ordering::SeqCst), 2);

        let short = CachedTokenSource::new(Box::new(Counting {
            calls: calls.clone(),
            lifetime: Duration::ZERO,
        }));
        short.token("a").await.unwrap();
        short.token("a").await.unwrap();
        assert_eq!(
            calls.load(Ordering::SeqCst),
            4,
            "expired tokens are fetched again"
        );
    }

    #[test]
    fn arm_scope_follows_the_endpoint_and_maps_loopback_to_public_cloud() {
        let public = Url::parse("https://management.azure.com").unwrap();
        assert_eq!(arm_scope(&public), "https://management.azure.com/.default");
        let gov = Url::parse("https://management.usgovcloudapi.net/").unwrap();
        assert_eq!(
            arm_scope(&gov),
            "https://management.usgovcloudapi.net/.default"
        );
        let local = Url::parse("http://127.0.0.1:7070").unwrap();
        assert_eq!(arm_scope(&local), ARM_SCOPE);
    }

    #[test]
    fn plain_http_is_refused_off_loopback() {
        let vars = |_: &str| None;
        let remote = Url::parse("http://arm.example.com").unwrap();
        let err = credential_from_vars(&remote, &vars).err().unwrap();
        assert!(err.to_string().contains("plain http"), "{err}");

        let arm = Url::parse("https://management.azure.com").unwrap();
        let insecure = |name: &str| match name {
            "AZURE_AUTHORITY_HOST" => Some("http://login.example.com/".to_string()),
            _ => None,
        };
        let err = credential_from_vars(&arm, &insecure).err().unwrap();
        assert!(err.to_string().contains("must be https"), "{err}");
    }

    #[test]
    fn a_loopback_authority_needs_a_secret_or_a_token_file() {
        let arm = Url::parse("http://127.0.0.1:9").unwrap();
        let vars = |name: &str| match name {
            "AZURE_AUTHORITY_HOST" => Some("http://127.0.0.1:9/".to_string()),
            "AZURE_TENANT_ID" | "AZURE_CLIENT_ID" => Some("x".to_string()),
            _ => None,
        };
        let err = credential_from_vars(&arm, &vars).err().unwrap();
        assert!(err.to_string().contains("AZURE_CLIENT_SECRET"), "{err}");
    }

    /// The reason `LoopbackEntraCredential` exists: if a later azure_identity accepts a plain
    /// http loopback authority, this fails and the loopback credential can go.
    #[test]
    fn azure_identity_refuses_a_plain_http_authority() {
        use azure_core::cloud::{CloudConfiguration, CustomConfiguration};
        use azure_identity::ClientSecretCredentialOptions;
        let mut custom = CustomConfiguration::default();
        custom.authority_host = "http://127.0.0.1:7070".into();
        let mut options = ClientSecretCredentialOptions::default();
        options.client_options.cloud = Some(Arc::new(CloudConfiguration::Custom(custom)));
        let secret = azure_core::credentials::Secret::new("s");
        let err = ClientSecretCredential::new("tenant", "client".into(), secret, Some(options))
            .expect_err("http authority refused");
        assert!(err.to_string().contains("HTTPS"), "{err}");
    }

    #[test]
    fn https_authorities_use_azure_identity_credentials() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "jwt").unwrap();
        let file = file.display().to_string();
        for with_secret in [true, false] {
            let vars = |name: &str| match name {
                "AZURE_TENANT_ID" => Some("00000000-0000-0000-0000-000000000001".to_string()),
                "AZURE_CLIENT_ID" => Some("client".to_string()),
                "AZURE_CLIENT_SECRET" if with_secret => Some("s".to_string()),
                "AZURE_FEDERATED_TOKEN_FILE" => Some(file.clone()),
                _ => None,
            };
            let fetcher = select_fetcher(&vars).unwrap();
            let expected = if with_secret {
                "ClientSecretCredential"
            } else {
                "WorkloadIdentityCredential"
            };
            assert_eq!(fetcher.name(), expected);
        }
    }
}
