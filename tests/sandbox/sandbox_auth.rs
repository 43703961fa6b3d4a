//! Token issuance and ARM authentication [AML §6].

use flightdeck::sandbox::{Sandbox, SandboxConfig};
use flightdeck_testkit::sandbox::*;
use reqwest::StatusCode;
use serde_json::Value;

#[tokio::test]
async fn arm_requests_without_a_token_get_401_authentication_failed() {
    let env = Env::start().await;
    let r = env
        .http
        .get(env.eps_url())
        .query(&[("api-version", API)])
        .send()
        .await
        .unwrap();
    assert!(r.headers().contains_key("www-authenticate"));
    let (status, code, _) = error_code(r).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::UNAUTHORIZED, "AuthenticationFailed")
    );
}

#[tokio::test]
async fn arm_requests_with_a_made_up_token_get_401_invalid_token() {
    let env = Env::start().await;
    let r = env
        .http
        .get(env.eps_url())
        .query(&[("api-version", API)])
        .bearer_auth("not-a-real-token")
        .send()
        .await
        .unwrap();
    let (status, code, _) = error_code(r).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::UNAUTHORIZED, "InvalidAuthenticationToken")
    );
}

#[tokio::test]
async fn a_token_from_another_sandbox_is_not_accepted() {
    let env = Env::start().await;
    let other = Env::start().await;
    let r = env
        .http
        .get(env.eps_url())
        .query(&[("api-version", API)])
        .bearer_auth(&other.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_data_plane_token_is_not_an_arm_token() {
    let env = Env::start().await;
    let ml = fetch_token(&env.sandbox, &env.http, "https://ml.azure.com/.default").await;
    let r = env
        .http
        .get(env.eps_url())
        .query(&[("api-version", API)])
        .bearer_auth(&ml)
        .send()
        .await
        .unwrap();
    let (status, code, _) = error_code(r).await;
    assert_eq!(
        (status, code.as_str()),
        (
            StatusCode::UNAUTHORIZED,
            "InvalidAuthenticationTokenAudience"
        )
    );
}

#[tokio::test]
async fn the_token_endpoint_answers_in_the_entra_shape() {
    let env = Env::start().await;
    let c = env.sandbox.credentials();
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", c.client_id.as_str()),
        ("client_secret", c.client_secret.as_str()),
        ("scope", "https://management.azure.com/.default"),
    ];
    let body: Value = env.request_token(&form).await.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3599);
    assert_eq!(body["ext_expires_in"], 3599);
    assert!(body["access_token"].as_str().unwrap().len() >= 40);
}

#[tokio::test]
async fn a_wrong_client_secret_gets_401_with_an_aadsts_error_and_no_secret_echo() {
    let env = Env::start().await;
    let c = env.sandbox.credentials();
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", c.client_id.as_str()),
        ("client_secret", "wrong-secret-value"),
        ("scope", "https://management.azure.com/.default"),
    ];
    let r = env.request_token(&form).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let text = r.text().await.unwrap();
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["error"], "invalid_client");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .starts_with("AADSTS7000215")
    );
    assert!(!text.contains("wrong-secret-value"));
    assert!(!text.contains(&c.client_secret));
}

#[tokio::test]
async fn unknown_tenants_clients_and_scopes_are_refused() {
    let env = Env::start().await;
    let c = env.sandbox.credentials();
    let post = |tenant: String, client: String, scope: &'static str| {
        let url = token_url(&env.base, &tenant);
        let form = vec![
            ("grant_type", "client_credentials".to_string()),
            ("client_id", client),
            ("client_secret", c.client_secret.clone()),
            ("scope", scope.to_string()),
        ];
        env.http.post(url).form(&form).send()
    };
    let r = post(
        "other-tenant".into(),
        c.client_id.clone(),
        "https://management.azure.com/.default",
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = post(
        c.tenant_id.clone(),
        "other-client".into(),
        "https://management.azure.com/.default",
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = post(
        c.tenant_id.clone(),
        c.client_id.clone(),
        "https://graph.microsoft.com/.default",
    )
    .await
    .unwrap();
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "invalid_scope");
}

#[tokio::test]
async fn workload_identity_assertions_are_accepted_for_the_configured_client() {
    let env = Env::start().await;
    let c = env.sandbox.credentials();
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", c.client_id.as_str()),
        (
            "client_assertion_type",
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        ),
        ("client_assertion", "eyJhbGciOiJSUzI1NiJ9.projected.token"),
        ("scope", "https://management.azure.com/.default"),
    ];
    let body: Value = env.request_token(&form).await.json().await.unwrap();
    let token = body["access_token"].as_str().unwrap();
    let r = env
        .http
        .get(env.eps_url())
        .query(&[("api-version", API)])
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let empty = [
        ("grant_type", "client_credentials"),
        ("client_id", c.client_id.as_str()),
        (
            "client_assertion_type",
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        ),
        ("client_assertion", " "),
        ("scope", "https://management.azure.com/.default"),
    ];
    assert_eq!(
        env.request_token(&empty).await.status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn imds_needs_the_metadata_header_and_answers_numbers_as_strings() {
    let env = Env::start().await;
    let url = format!("{}/metadata/identity/oauth2/token", env.base);
    let q = [
        ("api-version", "2018-02-01"),
        ("resource", "https://management.azure.com/"),
    ];
    let r = env.http.get(&url).query(&q).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let body: Value = env
        .http
        .get(&url)
        .query(&q)
        .header("Metadata", "true")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["expires_in"], "3599");
    assert!(body["expires_on"].is_string());
    assert_eq!(body["resource"], "https://management.azure.com/");
    let token = body["access_token"].as_str().unwrap();
    let r = env
        .http
        .get(env.eps_url())
        .query(&[("api-version", API)])
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn openid_configuration_points_at_the_token_endpoint() {
    let env = Env::start().await;
    let tenant = env.sandbox.credentials().tenant_id;
    let body: Value = env
        .http
        .get(format!(
            "{}/{tenant}/v2.0/.well-known/openid-configuration",
            env.base
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["token_endpoint"], token_url(&env.base, &tenant));
}

#[tokio::test]
async fn configured_credentials_are_used_and_env_lines_carry_them() {
    let config = SandboxConfig {
        client_id: Some("my-client".into()),
        client_secret: Some("my-secret".into()),
        tenant_id: Some("my-tenant".into()),
        ..Default::default()
    };
    let sandbox = Sandbox::start(config).await.unwrap();
    let lines = sandbox.env_lines();
    let base = sandbox.base_url();
    assert!(lines.contains(&format!("FLIGHTDECK_ARM_ENDPOINT={base}")));
    assert!(lines.contains(&format!("AZURE_AUTHORITY_HOST={base}/")));
    assert!(lines.contains(&"AZURE_TENANT_ID=my-tenant".to_string()));
    assert!(lines.contains(&"AZURE_CLIENT_ID=my-client".to_string()));
    assert!(lines.contains(&"AZURE_CLIENT_SECRET=my-secret".to_string()));
    assert!(
        lines.contains(&"AZURE_SUBSCRIPTION_ID=00000000-0000-0000-0000-000000000000".to_string())
    );
    assert!(!format!("{sandbox:?}").contains("my-secret"));
    let http = reqwest::Client::new();
    fetch_token(&sandbox, &http, "https://management.azure.com/.default").await;
    sandbox.shutdown().await;
    assert!(
        http.get(format!("{base}/_sandbox/health"))
            .send()
            .await
            .is_err(),
        "stopped after shutdown"
    );
}
