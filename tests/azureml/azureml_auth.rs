//! Token acquisition over real HTTP against a loopback Entra-shaped token endpoint
//! [AML §6], and secrets staying out of errors and Debug output.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use flightdeck::backend::azureml::{
    AzureMlBackend, LoopbackEntraCredential, LoopbackGrant, Secret, TokenFetcher,
    credential_from_vars,
};
use flightdeck::backend::{Backend, BackendError};
use flightdeck_testkit::arm_fake::*;
use serde_json::json;

const TENANT: &str = "tenant-1";
const CLIENT: &str = "client-1";
const SECRET: &str = "client-secret-value-xyz";

fn form(seen: &Seen) -> std::collections::HashMap<String, String> {
    url::form_urlencoded::parse(seen.body.as_bytes())
        .into_owned()
        .collect()
}

/// An Entra-shaped token endpoint: client secret or any non-empty assertion for CLIENT.
fn serve_tokens(fake: &Fake) -> Arc<AtomicU32> {
    let issued = Arc::new(AtomicU32::new(0));
    let counter = issued.clone();
    fake.on_fn("POST", &format!("/{TENANT}/oauth2/v2.0/token"), move |seen| {
        let f = form(seen);
        let client_ok = f.get("client_id").map(String::as_str) == Some(CLIENT)
            && f.get("grant_type").map(String::as_str) == Some("client_credentials");
        let secret_ok = f.get("client_secret").map(String::as_str) == Some(SECRET);
        let assertion_ok = f.get("client_assertion_type").map(String::as_str)
            == Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
            && f.get("client_assertion").is_some_and(|a| !a.is_empty());
        if !client_ok || !(secret_ok || assertion_ok) {
            return Canned::json(
                401,
                json!({"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret provided.", "error_codes": [7000215]}),
            );
        }
        let n = counter.fetch_add(1, Ordering::SeqCst);
        Canned::json(
            200,
            json!({"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": format!("issued-{n}")}),
        )
    });
    issued
}

fn authority(fake: &Fake) -> url::Url {
    url::Url::parse(&format!("{}/", fake.base)).unwrap()
}

#[tokio::test]
async fn a_client_secret_gets_a_token_from_the_token_endpoint() {
    let fake = Fake::start().await;
    serve_tokens(&fake);
    let credential = LoopbackEntraCredential::new(
        &authority(&fake),
        TENANT,
        CLIENT,
        LoopbackGrant::ClientSecret(Secret::new(SECRET)),
    )
    .unwrap();
    let token = credential
        .fetch("https://management.azure.com/.default")
        .await
        .unwrap();
    assert_eq!(token.token.expose(), "issued-0");
    assert_eq!(token.expires_in.as_secs(), 3599);

    let seen = &fake.log()[0];
    assert_eq!(
        seen.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    let f = form(seen);
    assert_eq!(f["scope"], "https://management.azure.com/.default");
    assert_eq!(f["client_secret"], SECRET);
    fake.stop().await;
}

#[tokio::test]
async fn a_wrong_secret_gives_a_clear_error_without_the_secret() {
    let fake = Fake::start().await;
    serve_tokens(&fake);
    let credential = LoopbackEntraCredential::new(
        &authority(&fake),
        TENANT,
        CLIENT,
        LoopbackGrant::ClientSecret(Secret::new("wrong-secret-abc")),
    )
    .unwrap();
    let err = credential.fetch("s").await.unwrap_err();
    let text = format!("{err} {err:?} {credential:?}");
    assert!(err.to_string().contains("401"), "{err}");
    assert!(err.to_string().contains("AADSTS7000215"), "{err}");
    assert!(!text.contains("wrong-secret-abc"), "{text}");
    fake.stop().await;
}

#[tokio::test]
async fn the_federated_token_file_is_read_again_for_every_token() {
    let fake = Fake::start().await;
    serve_tokens(&fake);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("azure-identity-token");
    std::fs::write(&file, "assertion-one\n").unwrap();
    let credential = LoopbackEntraCredential::new(
        &authority(&fake),
        TENANT,
        CLIENT,
        LoopbackGrant::FederatedTokenFile(file.clone()),
    )
    .unwrap();
    credential.fetch("s").await.unwrap();
    std::fs::write(&file, "assertion-two").unwrap();
    credential.fetch("s").await.unwrap();
    let assertions: Vec<String> = fake
        .log()
        .iter()
        .map(|s| form(s)["client_assertion"].clone())
        .collect();
    assert_eq!(assertions, vec!["assertion-one", "assertion-two"]);

    std::fs::remove_file(&file).unwrap();
    let err = credential.fetch("s").await.unwrap_err();
    assert!(
        err.to_string().contains("cannot read federated token file"),
        "{err}"
    );
    fake.stop().await;
}

#[tokio::test]
async fn the_backend_authenticates_every_arm_call_with_a_cached_token_from_the_environment() {
    let fake = Fake::start().await;
    let issued = serve_tokens(&fake);
    // ARM answers only a bearer the token endpoint issued.
    fake.on_fn("GET", &eps(""), |seen| {
        if seen.header("authorization") == Some("Bearer issued-0") {
            Canned::json(
                200,
                json!({"value": [endpoint_body("a", "Succeeded", json!({}), json!({}))]}),
            )
        } else {
            Canned::error(401, "InvalidAuthenticationToken", "bad token")
        }
    });
    fake.on(
        "GET",
        &eps("/a/deployments"),
        vec![Canned::json(200, json!({"value": []}))],
    );
    let base = fake.base.clone();
    let vars = move |name: &str| match name {
        "AZURE_AUTHORITY_HOST" => Some(format!("{base}/")),
        "AZURE_TENANT_ID" => Some(TENANT.to_string()),
        "AZURE_CLIENT_ID" => Some(CLIENT.to_string()),
        "AZURE_CLIENT_SECRET" => Some(SECRET.to_string()),
        _ => None,
    };
    let credential = credential_from_vars(&fake.url(), &vars).unwrap();
    let backend = AzureMlBackend::new(&target(), config(&fake), credential).unwrap();
    let live = backend.read_live().await.unwrap();
    assert!(live.endpoints.contains_key("a"));
    backend.read_live().await.unwrap();
    assert_eq!(issued.load(Ordering::SeqCst), 1, "the token is cached");
    let token_form = form(&fake.log()[0]);
    assert_eq!(token_form["scope"], "https://management.azure.com/.default");
    fake.stop().await;
}

#[tokio::test]
async fn auth_failures_name_the_credential_and_never_show_secrets_or_tokens() {
    let fake = Fake::start().await;
    serve_tokens(&fake);
    let base = fake.base.clone();
    let vars = move |name: &str| match name {
        "AZURE_AUTHORITY_HOST" => Some(format!("{base}/")),
        "AZURE_TENANT_ID" => Some(TENANT.to_string()),
        "AZURE_CLIENT_ID" => Some(CLIENT.to_string()),
        "AZURE_CLIENT_SECRET" => Some("not-the-secret-123".to_string()),
        _ => None,
    };
    let credential = credential_from_vars(&fake.url(), &vars).unwrap();
    let backend = AzureMlBackend::new(&target(), config(&fake), credential).unwrap();
    let err = backend.read_live().await.unwrap_err();
    assert!(matches!(err, BackendError::Auth { .. }), "{err:?}");
    assert!(
        !err.is_transient(),
        "a refused credential does not pass by waiting"
    );
    let text = format!("{err} {err:?}");
    assert!(text.contains("LoopbackEntraCredential"), "{text}");
    assert!(!text.contains("not-the-secret-123"), "{text}");
    assert_eq!(fake.log().len(), 1, "no ARM call without a token");

    // ARM refusing a token: one refresh and resend, then the 401 is reported (no retry loop),
    // and the token is not in the error.
    fake.on(
        "GET",
        &eps(""),
        vec![Canned::error(
            401,
            "InvalidAuthenticationToken",
            "token expired",
        )],
    );
    let err = flightdeck_testkit::arm_fake::backend(&fake)
        .read_live()
        .await
        .unwrap_err();
    let text = format!("{err} {err:?}");
    assert!(text.contains("InvalidAuthenticationToken"), "{text}");
    assert!(!text.contains(TOKEN), "{text}");
    assert!(
        text.contains("a freshly fetched token was refused too"),
        "{text}"
    );
    assert_eq!(fake.count("GET", &eps("")), 2);
    fake.stop().await;
}
