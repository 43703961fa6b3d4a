//! Contract tests: every request body in the 2025-12-01 examples is accepted by the sandbox
//! (subscription, location and the example's impossible traffic adapted), and every sandbox
//! response body validates against its mfe.json definition [AML §0, §1, §2, §7].

use flightdeck_testkit::mfe_schema::{MfeSchemas, load_json, reference_dir};
use flightdeck_testkit::sandbox::*;
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};

fn example(rel: &str) -> Value {
    load_json(&reference_dir().join("examples").join(rel))
}

/// The example request body with the sandbox's location.
fn example_body(rel: &str) -> Value {
    let mut body = example(rel)["parameters"]["body"].clone();
    if body.get("location").is_some() {
        body["location"] = json!("westus2");
    }
    body
}

async fn json_of(r: Response, expect: StatusCode) -> Value {
    let status = r.status();
    let text = r.text().await.unwrap();
    assert_eq!(status, expect, "{text}");
    serde_json::from_str(&text).unwrap()
}

fn valid(schemas: &mut MfeSchemas, def: &str, body: &Value) {
    if let Err(e) = schemas.check(def, body) {
        panic!("{e}\nbody: {body:#}");
    }
}

/// Follows an accepted operation's Location URL until it stops answering 202.
async fn follow_location(env: &Env, r: Response) -> Response {
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    env.wait_location(&location).await
}

#[test]
fn the_schema_conversion_accepts_the_spec_examples_and_rejects_broken_bodies() {
    let mut schemas = MfeSchemas::load();
    let cases = [
        (
            "Workspace/OnlineEndpoint/get.json",
            "200",
            "OnlineEndpointTrackedResource",
        ),
        (
            "Workspace/OnlineEndpoint/createOrUpdate.json",
            "201",
            "OnlineEndpointTrackedResource",
        ),
        (
            "Workspace/OnlineEndpoint/list.json",
            "200",
            "OnlineEndpointTrackedResourceArmPaginatedResult",
        ),
        (
            "Workspace/OnlineEndpoint/getToken.json",
            "200",
            "EndpointAuthToken",
        ),
        (
            "OnlineDeployment/ManagedOnlineDeployment/get.json",
            "200",
            "OnlineDeploymentTrackedResource",
        ),
        (
            "OnlineDeployment/KubernetesOnlineDeployment/get.json",
            "200",
            "OnlineDeploymentTrackedResource",
        ),
        (
            "OnlineDeployment/list.json",
            "200",
            "OnlineDeploymentTrackedResourceArmPaginatedResult",
        ),
        (
            "OnlineDeployment/ManagedOnlineDeployment/listSkus.json",
            "200",
            "SkuResourceArmPaginatedResult",
        ),
        ("OnlineDeployment/getLogs.json", "200", "DeploymentLogs"),
    ];
    for (rel, status, def) in cases {
        let body = example(rel)["responses"][status]["body"].clone();
        valid(&mut schemas, def, &body);
    }
    let requests = [
        (
            "Workspace/OnlineEndpoint/createOrUpdate.json",
            "OnlineEndpointTrackedResource",
        ),
        (
            "Workspace/OnlineEndpoint/update.json",
            "PartialMinimalTrackedResourceWithIdentity",
        ),
        (
            "Workspace/OnlineEndpoint/regenerateKeys.json",
            "RegenerateEndpointKeysRequest",
        ),
        (
            "OnlineDeployment/ManagedOnlineDeployment/createOrUpdate.json",
            "OnlineDeploymentTrackedResource",
        ),
        (
            "OnlineDeployment/KubernetesOnlineDeployment/createOrUpdate.json",
            "OnlineDeploymentTrackedResource",
        ),
        (
            "OnlineDeployment/ManagedOnlineDeployment/update.json",
            "PartialMinimalTrackedResourceWithSku",
        ),
        ("OnlineDeployment/getLogs.json", "DeploymentLogsRequest"),
    ];
    for (rel, def) in requests {
        valid(&mut schemas, def, &example(rel)["parameters"]["body"]);
    }
    // The schemas can fail: unknown fields, wrong enums, wrong types, a missing discriminator.
    let mut ep = example("Workspace/OnlineEndpoint/get.json")["responses"]["200"]["body"].clone();
    ep["properties"]["trafic"] = json!({});
    assert!(schemas.check("OnlineEndpointTrackedResource", &ep).is_err());
    let mut ep = example("Workspace/OnlineEndpoint/get.json")["responses"]["200"]["body"].clone();
    ep["properties"]["authMode"] = json!("Password");
    assert!(schemas.check("OnlineEndpointTrackedResource", &ep).is_err());
    ep["properties"]["authMode"] = json!("Key");
    ep["properties"]["traffic"] = json!({"blue": "100"});
    assert!(schemas.check("OnlineEndpointTrackedResource", &ep).is_err());
    let mut dep = example("OnlineDeployment/ManagedOnlineDeployment/get.json")["responses"]["200"]
        ["body"]
        .clone();
    dep["properties"]
        .as_object_mut()
        .unwrap()
        .remove("endpointComputeType");
    assert!(
        schemas
            .check("OnlineDeploymentTrackedResource", &dep)
            .is_err()
    );
    let mut dep = example("OnlineDeployment/ManagedOnlineDeployment/get.json")["responses"]["200"]
        ["body"]
        .clone();
    dep["properties"]["containerResourceRequirements"] = json!({});
    assert!(
        schemas
            .check("OnlineDeploymentTrackedResource", &dep)
            .is_err(),
        "Managed has no container resources"
    );
    assert!(
        schemas
            .check("ErrorResponse", &json!({"error": {"code": 1}}))
            .is_err()
    );
}

#[tokio::test]
async fn every_example_request_is_accepted_and_every_response_validates() {
    let mut schemas = MfeSchemas::load();
    let env = Env::start().await;

    // OnlineEndpoints_CreateOrUpdate. The example carries `compute` (a Kubernetes endpoint) and
    // `traffic: {"string": 1}`, which no new endpoint can satisfy (R1, R2): it starts empty.
    let mut k8s = example_body("Workspace/OnlineEndpoint/createOrUpdate.json");
    k8s["properties"]["traffic"] = json!({});
    let body = json_of(
        env.put(&env.ep_url("testEndpointName"), &k8s).await,
        StatusCode::CREATED,
    )
    .await;
    valid(&mut schemas, "OnlineEndpointTrackedResource", &body);
    assert_eq!(body["properties"]["provisioningState"], "Creating");
    let mut managed = k8s.clone();
    managed["properties"]
        .as_object_mut()
        .unwrap()
        .remove("compute");
    let body = json_of(
        env.put(&env.ep_url("managedEndpoint"), &managed).await,
        StatusCode::CREATED,
    )
    .await;
    valid(&mut schemas, "OnlineEndpointTrackedResource", &body);
    for ep in ["testEndpointName", "managedEndpoint"] {
        let body = env.wait_terminal(&env.ep_url(ep)).await;
        valid(&mut schemas, "OnlineEndpointTrackedResource", &body);
    }

    // OnlineDeployments_CreateOrUpdate, Kubernetes and Managed.
    let kdep = example_body("OnlineDeployment/KubernetesOnlineDeployment/createOrUpdate.json");
    let r = env
        .put(
            &env.dep_url("testEndpointName", "testDeploymentName"),
            &kdep,
        )
        .await;
    let op_url = r.headers()["azure-asyncoperation"]
        .to_str()
        .unwrap()
        .to_string();
    let body = json_of(r, StatusCode::CREATED).await;
    valid(&mut schemas, "OnlineDeploymentTrackedResource", &body);
    let status = json_of(env.get(&op_url).await, StatusCode::OK).await;
    valid(&mut schemas, "OperationStatus", &status);
    let mdep = example_body("OnlineDeployment/ManagedOnlineDeployment/createOrUpdate.json");
    let body = json_of(
        env.put(&env.dep_url("managedEndpoint", "testDeploymentName"), &mdep)
            .await,
        StatusCode::CREATED,
    )
    .await;
    valid(&mut schemas, "OnlineDeploymentTrackedResource", &body);
    for ep in ["testEndpointName", "managedEndpoint"] {
        let body = env
            .wait_terminal(&env.dep_url(ep, "testDeploymentName"))
            .await;
        valid(&mut schemas, "OnlineDeploymentTrackedResource", &body);
    }
    let status = json_of(env.get(&op_url).await, StatusCode::OK).await;
    valid(&mut schemas, "OperationStatus", &status);
    assert_eq!(status["status"], "Succeeded");

    // Traffic to the new deployment, then the endpoint with traffic validates too.
    let (st, _) = env
        .set_traffic(
            "managedEndpoint",
            json!({"testDeploymentName": 100}),
            Some(json!({})),
        )
        .await;
    assert!(st.is_success());

    // OnlineEndpoints_Update and OnlineDeployments_Update (PATCH) → 202, Location → 200 body.
    let patch = example_body("Workspace/OnlineEndpoint/update.json");
    let done = follow_location(
        &env,
        env.patch(&env.ep_url("managedEndpoint"), &patch).await,
    )
    .await;
    valid(
        &mut schemas,
        "OnlineEndpointTrackedResource",
        &json_of(done, StatusCode::OK).await,
    );
    for (rel, ep) in [
        (
            "OnlineDeployment/ManagedOnlineDeployment/update.json",
            "managedEndpoint",
        ),
        (
            "OnlineDeployment/KubernetesOnlineDeployment/update.json",
            "testEndpointName",
        ),
    ] {
        let done = follow_location(
            &env,
            env.patch(&env.dep_url(ep, "testDeploymentName"), &example_body(rel))
                .await,
        )
        .await;
        valid(
            &mut schemas,
            "OnlineDeploymentTrackedResource",
            &json_of(done, StatusCode::OK).await,
        );
    }

    // Gets and lists (with the list example's count / computeType / orderBy).
    let body = json_of(
        env.get(&env.ep_url("managedEndpoint")).await,
        StatusCode::OK,
    )
    .await;
    valid(&mut schemas, "OnlineEndpointTrackedResource", &body);
    let list_url = format!(
        "{}?api-version={API}&count=1&orderBy=CreatedAtDesc",
        env.eps_url()
    );
    let page = json_of(env.get(&list_url).await, StatusCode::OK).await;
    valid(
        &mut schemas,
        "OnlineEndpointTrackedResourceArmPaginatedResult",
        &page,
    );
    assert_eq!(page["value"][0]["name"], "managedEndpoint");
    let next = json_of(
        env.get(page["nextLink"].as_str().unwrap()).await,
        StatusCode::OK,
    )
    .await;
    valid(
        &mut schemas,
        "OnlineEndpointTrackedResourceArmPaginatedResult",
        &next,
    );
    let k8s_only = json_of(
        env.get(&format!(
            "{}?api-version={API}&computeType=Kubernetes",
            env.eps_url()
        ))
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(k8s_only["value"].as_array().unwrap().len(), 1);
    let deps = json_of(
        env.get(&format!("{}/deployments", env.ep_url("testEndpointName")))
            .await,
        StatusCode::OK,
    )
    .await;
    valid(
        &mut schemas,
        "OnlineDeploymentTrackedResourceArmPaginatedResult",
        &deps,
    );

    // listKeys, token (the example endpoint is AMLToken), regenerateKeys, getLogs, skus.
    let keys = json_of(
        env.post(&format!("{}/listKeys", env.ep_url("managedEndpoint")), None)
            .await,
        StatusCode::OK,
    )
    .await;
    valid(&mut schemas, "EndpointAuthKeys", &keys);
    let token = json_of(
        env.post(&format!("{}/token", env.ep_url("managedEndpoint")), None)
            .await,
        StatusCode::OK,
    )
    .await;
    valid(&mut schemas, "EndpointAuthToken", &token);
    let regen = example_body("Workspace/OnlineEndpoint/regenerateKeys.json");
    let done = follow_location(
        &env,
        env.post(
            &format!("{}/regenerateKeys", env.ep_url("managedEndpoint")),
            Some(&regen),
        )
        .await,
    )
    .await;
    assert_eq!(done.status(), StatusCode::OK);
    let keys = json_of(
        env.post(&format!("{}/listKeys", env.ep_url("managedEndpoint")), None)
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        keys["primaryKey"], "string",
        "keyValue from the example was applied"
    );
    let logs_req = example_body("OnlineDeployment/getLogs.json");
    let logs = json_of(
        env.post(
            &format!(
                "{}/getLogs",
                env.dep_url("managedEndpoint", "testDeploymentName")
            ),
            Some(&logs_req),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    valid(&mut schemas, "DeploymentLogs", &logs);
    let skus = json_of(
        env.get(&format!(
            "{}/skus?api-version={API}&count=1",
            env.dep_url("managedEndpoint", "testDeploymentName")
        ))
        .await,
        StatusCode::OK,
    )
    .await;
    valid(&mut schemas, "SkuResourceArmPaginatedResult", &skus);
    assert!(skus["nextLink"].is_string());

    // Errors use the ARM ErrorResponse shape.
    let missing = json_of(env.get(&env.ep_url("nope")).await, StatusCode::NOT_FOUND).await;
    valid(&mut schemas, "ErrorResponse", &missing);
    let bad = json_of(
        env.patch(&env.ep_url("managedEndpoint"), &json!({"properties": {}}))
            .await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    valid(&mut schemas, "ErrorResponse", &bad);

    // OnlineDeployments_Delete and OnlineEndpoints_Delete: 202, then 204.
    let (st, _) = env.set_traffic("managedEndpoint", json!({}), None).await;
    assert!(st.is_success());
    let done = follow_location(
        &env,
        env.delete(&env.dep_url("managedEndpoint", "testDeploymentName"))
            .await,
    )
    .await;
    assert_eq!(done.status(), StatusCode::NO_CONTENT);
    for ep in ["managedEndpoint", "testEndpointName"] {
        let done = follow_location(&env, env.delete(&env.ep_url(ep)).await).await;
        assert_eq!(done.status(), StatusCode::NO_CONTENT);
        assert_eq!(
            env.delete(&env.ep_url(ep)).await.status(),
            StatusCode::NO_CONTENT
        );
    }
}
