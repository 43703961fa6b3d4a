//! What Microsoft's azure-ai-ml SDK needs of the sandbox beyond the flightdeck client, checked
//! in Rust so `cargo test` covers it without Python (the SDK itself runs in
//! scripts/check-azure-ai-ml.sh): HTTPS with the generated certificate, the workspace GET the
//! SDK makes before every PUT, the preview api-versions it pins, and tokens for the sandbox's
//! own URL as ARM scope (a custom cloud's resource manager), from both the v2 token endpoint and
//! the managed-identity endpoint.

use flightdeck::sandbox::{Sandbox, SandboxConfig};
use flightdeck_testkit::sandbox::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

#[tokio::test]
async fn with_tls_cert_the_sandbox_serves_https_with_a_certificate_clients_can_trust() {
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("sandbox.pem");
    let sandbox = Sandbox::start(SandboxConfig {
        tls_cert: Some(cert.clone()),
        ..Default::default()
    })
    .await
    .unwrap();
    let base = sandbox.base_url();
    assert!(base.starts_with("https://127.0.0.1:"), "{base}");
    let lines = sandbox.env_lines();
    assert!(lines.contains(&format!("REQUESTS_CA_BUNDLE={}", cert.display())));
    assert!(lines.contains(&format!("AZURE_POD_IDENTITY_AUTHORITY_HOST={base}")));

    let pem = std::fs::read(&cert).unwrap();
    let trusting = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .build()
        .unwrap();
    let health = trusting
        .get(format!("{base}/_sandbox/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    let token = fetch_token(&sandbox, &trusting, "https://management.azure.com/.default").await;
    assert!(!token.is_empty());

    // A client that does not trust the certificate is refused at the handshake.
    let strict = reqwest::Client::new();
    assert!(
        strict
            .get(format!("{base}/_sandbox/health"))
            .send()
            .await
            .is_err()
    );
    // Plain http on the TLS port gets no answer either.
    let plain = base.replacen("https://", "http://", 1);
    let answered = strict
        .get(format!("{plain}/_sandbox/health"))
        .send()
        .await
        .map(|r| r.status() == StatusCode::OK)
        .unwrap_or(false);
    assert!(!answered);
    sandbox.shutdown().await;
}

#[tokio::test]
async fn a_workspace_get_answers_the_configured_location_for_any_workspace() {
    let env = Env::start().await;
    for api in ["2024-10-01-preview", "2025-12-01"] {
        let url = format!("{}{}?api-version={api}", env.base, env.ws_path("any-ws"));
        let ws = env.get_json(&url).await;
        assert_eq!(ws["name"], "any-ws");
        assert_eq!(ws["location"], "westus2");
        assert_eq!(ws["type"], "Microsoft.MachineLearningServices/workspaces");
        assert_eq!(ws["id"], env.ws_path("any-ws"));
        assert_eq!(ws["properties"]["provisioningState"], "Succeeded");
    }
    // Still an ARM route: no token, no answer.
    let url = format!("{}{}?api-version=2025-12-01", env.base, env.ws_path("ws"));
    let r = env.http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let bad = format!("{}{}?api-version=2025-12-01", env.base, env.ws_path("-bad"));
    let (status, code, _) = error_code(env.get(&bad).await).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::BAD_REQUEST, "BadArgument")
    );
}

#[tokio::test]
async fn the_preview_api_versions_the_sdk_pins_are_served() {
    let env = Env::start().await;
    let ep = format!("{}?api-version=2022-02-01-preview", env.ep_url("e1"));
    let r = env.put(&ep, &endpoint_body("Key", json!({}))).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    env.wait_terminal(&ep).await;
    let dep = format!(
        "{}?api-version=2023-04-01-preview",
        env.dep_url("e1", "blue")
    );
    let r = env.put(&dep, &deployment_body("azureml:m:1", 1)).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    // The operation URL carries the PUT's api-version, and is served too.
    let op = r.headers()["azure-asyncoperation"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(op.contains("api-version=2023-04-01-preview"), "{op}");
    assert_eq!(env.get(&op).await.status(), StatusCode::OK);
    let body = env.wait_terminal(&dep).await;
    assert_eq!(body["properties"]["model"], "azureml:m:1");
    let other = format!("{}?api-version=2021-03-01-preview", env.ep_url("e1"));
    let (status, code, _) = error_code(env.get(&other).await).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::BAD_REQUEST, "InvalidApiVersionParameter")
    );
}

#[tokio::test]
async fn the_sandbox_url_is_an_arm_scope_for_the_token_and_managed_identity_endpoints() {
    let env = Env::start().await;
    let c = env.sandbox.credentials();
    let own_scope = format!("{}/.default", env.base);
    let r = env
        .request_token(&[
            ("grant_type", "client_credentials"),
            ("client_id", &c.client_id),
            ("client_secret", &c.client_secret),
            ("scope", &own_scope),
        ])
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let token: Value = r.json().await.unwrap();
    let arm = env
        .http
        .get(format!("{}?api-version=2025-12-01", env.eps_url()))
        .bearer_auth(token["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(arm.status(), StatusCode::OK);

    // What azure-identity's ManagedIdentityCredential sends: the scope without /.default.
    let imds = env
        .http
        .get(format!("{}/metadata/identity/oauth2/token", env.base))
        .query(&[
            ("api-version", "2018-02-01"),
            ("resource", env.base.as_str()),
        ])
        .header("Metadata", "true")
        .send()
        .await
        .unwrap();
    assert_eq!(imds.status(), StatusCode::OK);
    let body: Value = imds.json().await.unwrap();
    let arm = env
        .http
        .get(format!("{}?api-version=2025-12-01", env.eps_url()))
        .bearer_auth(body["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(arm.status(), StatusCode::OK);

    // Another URL is still no audience.
    let r = env
        .request_token(&[
            ("grant_type", "client_credentials"),
            ("client_id", &c.client_id),
            ("client_secret", &c.client_secret),
            ("scope", "http://127.0.0.1:1/.default"),
        ])
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}
