//! Control plane, endpoints: OnlineEndpoints_* [AML §1].

use std::collections::BTreeMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, Path, RawQuery, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::auth::{self, Audience};
use super::deployment_input::merge_add_only;
use super::error::ArmError;
use super::faults::LroFail;
use super::lro::{self, KeyType, OpKind, Operation, lro_headers};
use super::paging::{self, Query};
use super::routing::RoutingState;
use super::rules::{self, check_name, check_traffic, parse_body};
use super::server::ApiVersion;
use super::shapes;
use super::state::{
    Endpoint, EndpointKeys, ProvisioningState, Target, Timestamps, WorkspaceKey, ensure_idle,
};

#[derive(Deserialize)]
pub struct WsPath {
    sub: String,
    rg: String,
    ws: String,
}

#[derive(Deserialize)]
pub struct EpPath {
    sub: String,
    rg: String,
    ws: String,
    pub ep: String,
}

impl WsPath {
    pub fn key(&self) -> WorkspaceKey {
        WorkspaceKey {
            subscription: self.sub.clone(),
            resource_group: self.rg.clone(),
            workspace: self.ws.clone(),
        }
    }
}

impl EpPath {
    pub fn key(&self) -> WorkspaceKey {
        WorkspaceKey {
            subscription: self.sub.clone(),
            resource_group: self.rg.clone(),
            workspace: self.ws.clone(),
        }
    }

    pub fn target(&self) -> Target {
        Target {
            ws: self.key(),
            endpoint: self.ep.clone(),
            deployment: None,
        }
    }
}

/// The failure an operation will end with, when a fault rule asked for it.
pub fn lro_failure(fail: Option<Extension<LroFail>>) -> Option<ArmError> {
    fail.map(|_| {
        ArmError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalServerError",
            "the operation failed: injected by a sandbox fault rule (lro_fail)",
        )
    })
}

fn tags_match(filter: &str, tags: &serde_json::Map<String, Value>) -> bool {
    filter
        .split(',')
        .map(str::trim)
        .filter(|f| !f.is_empty())
        .all(|f| match f.split_once('=') {
            Some((k, v)) => tags.get(k).and_then(Value::as_str) == Some(v),
            None => tags.contains_key(f),
        })
}

/// GET E: filters `name`, `computeType`, `tags`, `orderBy`; paged by `count` (§1).
pub async fn list_endpoints(
    State(state): State<AppState>,
    Path(p): Path<WsPath>,
    RawQuery(raw): RawQuery,
    uri: Uri,
) -> Result<Response, ArmError> {
    let query = Query::parse(raw.as_deref());
    let store = state.store();
    let ctx = state.render_ctx();
    let mut eps: Vec<&Endpoint> = store
        .workspaces
        .get(&p.key())
        .map(|m| m.values().collect())
        .unwrap_or_default();
    if let Some(name) = query.get("name") {
        eps.retain(|e| e.name == name);
    }
    match query.get("computeType") {
        None => {}
        Some("Managed") => eps.retain(|e| !e.is_kubernetes()),
        Some("Kubernetes") => eps.retain(|e| e.is_kubernetes()),
        Some("AzureMLCompute") => eps.clear(),
        Some(other) => {
            return Err(ArmError::bad_argument(format!(
                "computeType {other:?} is not Managed, Kubernetes or AzureMLCompute"
            )));
        }
    }
    if let Some(filter) = query.get("tags") {
        eps.retain(|e| tags_match(filter, &e.envelope.tags));
    }
    match query.get("orderBy") {
        None | Some("CreatedAtAsc") => eps.sort_by_key(|e| e.seq),
        Some("CreatedAtDesc") => eps.sort_by_key(|e| std::cmp::Reverse(e.seq)),
        Some("UpdatedAtAsc") => eps.sort_by_key(|e| (e.times.modified_at, e.seq)),
        Some("UpdatedAtDesc") => {
            eps.sort_by_key(|e| std::cmp::Reverse((e.times.modified_at, e.seq)))
        }
        Some(other) => {
            return Err(ArmError::bad_argument(format!(
                "orderBy {other:?} is not a known ordering"
            )));
        }
    }
    let paging = paging::Paging {
        query: &query,
        size_keys: &["count"],
        default_size: state.config.page_size,
        base_url: &state.base_url,
        path: uri.path(),
    };
    let body = paging::page(&eps, &paging, |e| shapes::endpoint(&ctx, e))?;
    Ok(Json(body).into_response())
}

pub async fn get_endpoint(
    State(state): State<AppState>,
    Path(p): Path<EpPath>,
) -> Result<Response, ArmError> {
    let store = state.store();
    let ep = store.endpoint_or_404(&p.key(), &p.ep)?;
    Ok(Json(shapes::endpoint(&state.render_ctx(), ep)).into_response())
}

/// PUT E/{e}: 201 create / 200 update, LRO via Azure-AsyncOperation (§1, §3). Full replace (R8).
pub async fn put_endpoint(
    State(state): State<AppState>,
    Path(p): Path<EpPath>,
    Extension(ApiVersion(api)): Extension<ApiVersion>,
    fail: Option<Extension<LroFail>>,
    body: Bytes,
) -> Result<Response, ArmError> {
    check_name("endpoint", &p.ep)?;
    let mut input = rules::endpoint_put(&parse_body(&body)?, &state.config.location)?;
    let ws = p.key();
    let mut store = state.store();
    // R12: endpoint names are unique per region, across workspaces (and DNS-like: any case).
    if let Some(owner) = store.names.get(&p.ep.to_ascii_lowercase()) {
        let same = owner == &ws && store.endpoint(&ws, &p.ep).is_some();
        if !same {
            return Err(ArmError::conflict(format!(
                "there is already an endpoint named {}: endpoint names must be unique within a region",
                p.ep
            )));
        }
    }
    let failure = lro_failure(fail);
    let seq = store.next_seq();
    let (status, kind) = match store.endpoint_mut(&ws, &p.ep) {
        Some(ep) => {
            ensure_idle(ep)?;
            // R13: location is create-only; changing compute would orphan the deployments (R14).
            if !rules::same_location(&ep.location, &input.location) {
                return Err(ArmError::bad_argument(
                    "location is create-only and cannot be changed",
                )
                .with_target("location"));
            }
            if ep.compute != input.compute {
                return Err(ArmError::bad_argument(
                    "properties.compute cannot be changed on an existing endpoint",
                )
                .with_target("compute"));
            }
            check_traffic(
                &input.traffic,
                input.mirror.as_ref(),
                input.compute.is_some(),
                &ep.deployments,
            )?;
            let old_props = ep
                .props
                .get("properties")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            if let Some(new_props) = input
                .props
                .get_mut("properties")
                .and_then(Value::as_object_mut)
            {
                merge_add_only(&old_props, new_props)?;
            }
            ep.envelope = input.envelope;
            ep.auth_mode = input.auth_mode;
            ep.traffic = input.traffic;
            ep.mirror = input.mirror;
            ep.props = input.props;
            ep.state = ProvisioningState::Updating;
            ep.times.modified_at = state.clock.now_utc();
            (StatusCode::OK, OpKind::Update)
        }
        None => {
            check_traffic(
                &input.traffic,
                input.mirror.as_ref(),
                input.compute.is_some(),
                &BTreeMap::new(),
            )?;
            let id = ws.endpoint_id(&p.ep).to_ascii_lowercase();
            if let Some(props) = input
                .props
                .get_mut("properties")
                .and_then(Value::as_object_mut)
            {
                props.insert("azureml.onlineendpointid".into(), json!(id));
            }
            let keys = EndpointKeys {
                primary: input.keys.0.take().unwrap_or_else(auth::random_secret),
                secondary: input.keys.1.take().unwrap_or_else(auth::random_secret),
            };
            store.insert_endpoint(Endpoint {
                name: p.ep.clone(),
                ws: ws.clone(),
                location: input.location,
                envelope: input.envelope,
                auth_mode: input.auth_mode,
                compute: input.compute,
                traffic: input.traffic,
                mirror: input.mirror,
                props: input.props,
                state: ProvisioningState::Creating,
                times: Timestamps::new(state.clock.now_utc()),
                keys,
                deployments: BTreeMap::new(),
                busy: None,
                seq,
                routing: RoutingState::default(),
            });
            (StatusCode::CREATED, OpKind::Create)
        }
    };
    let op = Operation::new(
        kind,
        p.target(),
        &state.clock,
        state.operation_delay(),
        failure,
        &api,
    );
    let headers = lro_headers(&state, &op, false);
    store.start_op(op);
    let ep = store.endpoint_or_404(&ws, &p.ep)?;
    tracing::info!(endpoint = %p.ep, status = status.as_u16(), "sandbox endpoint put");
    Ok((
        status,
        headers,
        Json(shapes::endpoint(&state.render_ctx(), ep)),
    )
        .into_response())
}

/// PATCH E/{e}: tags + identity only (R15); 202 + Location (§3).
pub async fn patch_endpoint(
    State(state): State<AppState>,
    Path(p): Path<EpPath>,
    Extension(ApiVersion(api)): Extension<ApiVersion>,
    fail: Option<Extension<LroFail>>,
    body: Bytes,
) -> Result<Response, ArmError> {
    let patch = rules::endpoint_patch(&parse_body(&body)?)?;
    let mut store = state.store();
    let ep = store.endpoint_mut_or_404(&p.key(), &p.ep)?;
    ensure_idle(ep)?;
    if let Some(tags) = patch.tags {
        ep.envelope.tags = tags;
    }
    if let Some(identity) = patch.identity {
        ep.envelope.identity = Some(identity);
    }
    ep.state = ProvisioningState::Updating;
    ep.times.modified_at = state.clock.now_utc();
    Ok(lro::accept(
        &state,
        &mut store,
        OpKind::Update,
        p.target(),
        lro_failure(fail),
        &api,
    ))
}

/// DELETE E/{e}: 202 + Location, 204 when already gone; cascades to deployments (R10).
pub async fn delete_endpoint(
    State(state): State<AppState>,
    Path(p): Path<EpPath>,
    Extension(ApiVersion(api)): Extension<ApiVersion>,
    fail: Option<Extension<LroFail>>,
) -> Result<Response, ArmError> {
    let mut store = state.store();
    let Some(ep) = store.endpoint_mut(&p.key(), &p.ep) else {
        return Ok(StatusCode::NO_CONTENT.into_response());
    };
    ensure_idle(ep)?;
    ep.state = ProvisioningState::Deleting;
    for dep in ep.deployments.values_mut() {
        dep.state = ProvisioningState::Deleting;
    }
    Ok(lro::accept(
        &state,
        &mut store,
        OpKind::Delete,
        p.target(),
        lro_failure(fail),
        &api,
    ))
}

/// POST E/{e}/listKeys: synchronous (§1). Keys exist whatever the auth mode; the data plane
/// accepts them only on `Key` endpoints.
pub async fn list_keys(
    State(state): State<AppState>,
    Path(p): Path<EpPath>,
) -> Result<Response, ArmError> {
    let store = state.store();
    let ep = store.endpoint_or_404(&p.key(), &p.ep)?;
    Ok(
        Json(json!({ "primaryKey": ep.keys.primary, "secondaryKey": ep.keys.secondary }))
            .into_response(),
    )
}

/// POST E/{e}/regenerateKeys: `{keyType, keyValue?}`, 202 + Location (§1).
pub async fn regenerate_keys(
    State(state): State<AppState>,
    Path(p): Path<EpPath>,
    Extension(ApiVersion(api)): Extension<ApiVersion>,
    fail: Option<Extension<LroFail>>,
    body: Bytes,
) -> Result<Response, ArmError> {
    let body = parse_body(&body)?;
    let key_type = match body.get("keyType").and_then(Value::as_str) {
        Some("Primary") => KeyType::Primary,
        Some("Secondary") => KeyType::Secondary,
        Some(other) => {
            return Err(ArmError::bad_argument(format!(
                "keyType {other:?} is not Primary or Secondary"
            ))
            .with_target("keyType"));
        }
        None => return Err(ArmError::bad_argument("keyType is required").with_target("keyType")),
    };
    let value = match body.get("keyValue") {
        None | Some(Value::Null) => auth::random_secret(),
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(_) => {
            return Err(
                ArmError::bad_argument("keyValue must be a non-empty string")
                    .with_target("keyValue"),
            );
        }
    };
    let mut store = state.store();
    let ep = store.endpoint_or_404(&p.key(), &p.ep)?;
    ensure_idle(ep)?;
    let kind = OpKind::RegenerateKeys { key_type, value };
    Ok(lro::accept(
        &state,
        &mut store,
        kind,
        p.target(),
        lro_failure(fail),
        &api,
    ))
}

/// POST E/{e}/token: an AML token for `AMLToken` endpoints (§1, §5).
pub async fn get_token(
    State(state): State<AppState>,
    Path(p): Path<EpPath>,
) -> Result<Response, ArmError> {
    let (mode, id) = {
        let store = state.store();
        let ep = store.endpoint_or_404(&p.key(), &p.ep)?;
        (ep.auth_mode, ep.ws.endpoint_id(&ep.name))
    };
    if mode != super::state::AuthMode::AmlToken {
        return Err(ArmError::bad_argument(format!(
            "endpoint {} uses auth mode {}; tokens are only issued for AMLToken endpoints (use listKeys for Key)",
            p.ep,
            mode.as_str()
        )));
    }
    let lifetime = std::time::Duration::from_secs(3600);
    let token = state.issue_token_for(Audience::Endpoint(id), lifetime);
    let now = state.clock.now_utc().timestamp();
    Ok(Json(json!({
        "accessToken": token,
        "tokenType": "Bearer",
        "expiryTimeUtc": now + 3600,
        "refreshAfterTimeUtc": now + 1800,
    }))
    .into_response())
}
