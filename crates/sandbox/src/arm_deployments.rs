//! Control plane, deployments: OnlineDeployments_* [AML §1].

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, Path, RawQuery, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::arm_endpoints::{EpPath, lro_failure};
use super::deployment_input::{check_create_only, deployment_put, is_scale_only, merge_add_only};
use super::error::ArmError;
use super::faults::LroFail;
use super::lro::{self, OpKind, Operation, lro_headers};
use super::paging::{self, Query};
use super::rules::{self, check_name, parse_body};
use super::server::ApiVersion;
use super::shapes;
use super::state::{
    Deployment, ProvisioningState, Target, Timestamps, WorkspaceKey, deployment_not_found,
    ensure_idle,
};

#[derive(Deserialize)]
pub struct DepPath {
    sub: String,
    rg: String,
    ws: String,
    ep: String,
    dep: String,
}

impl DepPath {
    fn key(&self) -> WorkspaceKey {
        WorkspaceKey {
            subscription: self.sub.clone(),
            resource_group: self.rg.clone(),
            workspace: self.ws.clone(),
        }
    }

    fn target(&self) -> Target {
        Target {
            ws: self.key(),
            endpoint: self.ep.clone(),
            deployment: Some(self.dep.clone()),
        }
    }
}

/// GET D: paged by `$top` (§1); `$orderBy` CreatedAtAsc (default) / CreatedAtDesc.
pub async fn list_deployments(
    State(state): State<AppState>,
    Path(p): Path<EpPath>,
    RawQuery(raw): RawQuery,
    uri: Uri,
) -> Result<Response, ArmError> {
    let query = Query::parse(raw.as_deref());
    let store = state.store();
    let ep = store.endpoint_or_404(&p.key(), &p.ep)?;
    let mut deps: Vec<&Deployment> = ep.deployments.values().collect();
    match query.get("$orderBy") {
        None | Some("CreatedAtAsc") => deps.sort_by_key(|d| d.seq),
        Some("CreatedAtDesc") => deps.sort_by_key(|d| std::cmp::Reverse(d.seq)),
        Some(other) => {
            return Err(ArmError::bad_argument(format!(
                "$orderBy {other:?} is not a known ordering"
            )));
        }
    }
    let ctx = state.render_ctx();
    let paging = paging::Paging {
        query: &query,
        size_keys: &["$top"],
        default_size: state.config.page_size,
        base_url: &state.base_url,
        path: uri.path(),
    };
    let body = paging::page(&deps, &paging, |d| shapes::deployment(&ctx, ep, d))?;
    Ok(Json(body).into_response())
}

pub async fn get_deployment(
    State(state): State<AppState>,
    Path(p): Path<DepPath>,
) -> Result<Response, ArmError> {
    let store = state.store();
    let ep = store.endpoint_or_404(&p.key(), &p.ep)?;
    let dep = ep
        .deployments
        .get(&p.dep)
        .ok_or_else(|| deployment_not_found(&p.ep, &p.dep))?;
    Ok(Json(shapes::deployment(&state.render_ctx(), ep, dep)).into_response())
}

/// PUT D/{d}: 201 create / 200 update (`Scaling` when only the sku changes), LRO (§3).
pub async fn put_deployment(
    State(state): State<AppState>,
    Path(p): Path<DepPath>,
    Extension(ApiVersion(api)): Extension<ApiVersion>,
    fail: Option<Extension<LroFail>>,
    body: Bytes,
) -> Result<Response, ArmError> {
    check_name("deployment", &p.dep)?;
    let body = parse_body(&body)?;
    let mut store = state.store();
    let kubernetes = {
        // R11: the endpoint must exist.
        let ep = store.endpoint_or_404(&p.key(), &p.ep)?;
        ensure_idle(ep)?;
        ep.is_kubernetes()
    };
    let mut input = deployment_put(&body, &state.config.location, kubernetes)?;
    let seq = store.next_seq();
    let injected = store
        .faults
        .get_mut(&(p.ep.clone(), p.dep.clone()))
        .filter(|f| f.fail_provisioning)
        .map(|f| {
            // The fault fires once: "the next PUT ends Failed".
            f.fail_provisioning = false;
            ArmError::new(
                StatusCode::BAD_REQUEST,
                "ResourceNotReady",
                format!("deployment {} failed to provision: user container has crashed or terminated (injected by sandbox fault fail_provisioning)", p.dep),
            )
        });
    let failure = injected.or_else(|| lro_failure(fail));
    let ep = store.endpoint_mut_or_404(&p.key(), &p.ep)?;
    let (status, kind) = match ep.deployments.get_mut(&p.dep) {
        Some(existing) => {
            check_create_only(existing, &input)?;
            let old = existing
                .props
                .get("properties")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            if let Some(new) = input
                .props
                .get_mut("properties")
                .and_then(Value::as_object_mut)
            {
                merge_add_only(&old, new)?;
            }
            let scale = is_scale_only(existing, &input);
            existing.begin_change(state.clock.now());
            existing.envelope = input.envelope;
            existing.props = input.props;
            existing.state = if scale {
                ProvisioningState::Scaling
            } else {
                ProvisioningState::Updating
            };
            existing.times.modified_at = state.clock.now_utc();
            (
                StatusCode::OK,
                if scale { OpKind::Scale } else { OpKind::Update },
            )
        }
        None => {
            ep.deployments.insert(
                p.dep.clone(),
                Deployment {
                    name: p.dep.clone(),
                    location: input.location,
                    envelope: input.envelope,
                    compute_type: input.compute_type,
                    props: input.props,
                    state: ProvisioningState::Creating,
                    times: Timestamps::new(state.clock.now_utc()),
                    ready_at: None,
                    previous: None,
                    seq,
                },
            );
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
    let ep = store.endpoint_or_404(&p.key(), &p.ep)?;
    let dep = ep
        .deployments
        .get(&p.dep)
        .ok_or_else(|| deployment_not_found(&p.ep, &p.dep))?;
    tracing::info!(endpoint = %p.ep, deployment = %p.dep, status = status.as_u16(), "sandbox deployment put");
    Ok((
        status,
        headers,
        Json(shapes::deployment(&state.render_ctx(), ep, dep)),
    )
        .into_response())
}

/// PATCH D/{d}: tags + sku only (R15); a sku change goes through `Scaling`; 202 + Location.
pub async fn patch_deployment(
    State(state): State<AppState>,
    Path(p): Path<DepPath>,
    Extension(ApiVersion(api)): Extension<ApiVersion>,
    fail: Option<Extension<LroFail>>,
    body: Bytes,
) -> Result<Response, ArmError> {
    let patch = rules::deployment_patch(&parse_body(&body)?)?;
    let mut store = state.store();
    let ep = store.endpoint_mut_or_404(&p.key(), &p.ep)?;
    ensure_idle(ep)?;
    let dep = ep
        .deployments
        .get_mut(&p.dep)
        .ok_or_else(|| deployment_not_found(&p.ep, &p.dep))?;
    let mut kind = OpKind::Update;
    dep.begin_change(state.clock.now());
    if let Some(tags) = patch.tags {
        dep.envelope.tags = tags;
    }
    if let Some(partial) = patch.sku {
        let mut sku = dep.envelope.sku.clone().unwrap_or_default();
        sku.extend(partial);
        if dep.envelope.sku.as_ref() != Some(&sku) {
            kind = OpKind::Scale;
        }
        dep.envelope.sku = Some(sku);
    }
    dep.state = if kind == OpKind::Scale {
        ProvisioningState::Scaling
    } else {
        ProvisioningState::Updating
    };
    dep.times.modified_at = state.clock.now_utc();
    Ok(lro::accept(
        &state,
        &mut store,
        kind,
        p.target(),
        lro_failure(fail),
        &api,
    ))
}

/// DELETE D/{d}: refused while the deployment has live or mirrored traffic (R9); 202 +
/// Location, 204 when already gone.
pub async fn delete_deployment(
    State(state): State<AppState>,
    Path(p): Path<DepPath>,
    Extension(ApiVersion(api)): Extension<ApiVersion>,
    fail: Option<Extension<LroFail>>,
) -> Result<Response, ArmError> {
    let mut store = state.store();
    let Some(ep) = store.endpoint_mut(&p.key(), &p.ep) else {
        return Ok(StatusCode::NO_CONTENT.into_response());
    };
    if !ep.deployments.contains_key(&p.dep) {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    ensure_idle(ep)?;
    let live = ep.traffic.get(&p.dep).copied().unwrap_or(0);
    let mirrored = ep
        .mirror
        .as_ref()
        .and_then(|m| m.get(&p.dep))
        .copied()
        .unwrap_or(0);
    if live > 0 || mirrored > 0 {
        return Err(ArmError::bad_argument(format!(
            "deployment {} still receives traffic ({live}% live, {mirrored}% mirrored); set its traffic to 0 before deleting it",
            p.dep
        )));
    }
    if let Some(dep) = ep.deployments.get_mut(&p.dep) {
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

/// POST D/{d}/getLogs: `{containerType, tail}` → `{content}` with synthetic lines.
pub async fn get_logs(
    State(state): State<AppState>,
    Path(p): Path<DepPath>,
    body: Bytes,
) -> Result<Response, ArmError> {
    let body = parse_body(&body)?;
    let container = match body.get("containerType") {
        None | Some(Value::Null) => "InferenceServer",
        Some(Value::String(s)) if s == "InferenceServer" || s == "StorageInitializer" => s.as_str(),
        Some(other) => {
            return Err(ArmError::bad_argument(format!(
                "containerType {other} is not InferenceServer or StorageInitializer"
            )));
        }
    };
    let tail = match body.get("tail") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .ok_or_else(|| ArmError::bad_argument("tail must be a non-negative integer"))?
                as usize,
        ),
    };
    let store = state.store();
    let ep = store.endpoint_or_404(&p.key(), &p.ep)?;
    let dep = ep
        .deployments
        .get(&p.dep)
        .ok_or_else(|| deployment_not_found(&p.ep, &p.dep))?;
    let model = dep
        .props
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("(none)");
    let lines: Vec<String> = match container {
        "StorageInitializer" => vec![
            format!("sandbox storage-initializer: resolving model {model}"),
            "sandbox storage-initializer: model files downloaded".to_string(),
        ],
        _ => vec![
            format!(
                "sandbox inference-server: starting deployment {} of endpoint {}",
                p.dep, p.ep
            ),
            format!("sandbox inference-server: loaded model {model}"),
            format!(
                "sandbox inference-server: provisioning state {}",
                dep.state.as_str()
            ),
            "sandbox inference-server: listening on port 5001".to_string(),
        ],
    };
    let keep = tail.unwrap_or(lines.len()).min(lines.len());
    let content = lines[lines.len() - keep..].join("\n");
    Ok(Json(json!({ "content": content })).into_response())
}

/// Instance types listed by GET D/{d}/skus.
const SKUS: [&str; 6] = [
    "Standard_DS2_v2",
    "Standard_DS3_v2",
    "Standard_DS4_v2",
    "Standard_F2s_v2",
    "Standard_F4s_v2",
    "Standard_F8s_v2",
];

/// GET D/{d}/skus: SkuResource list in the listSkus example's shape, paged by `count`.
pub async fn list_skus(
    State(state): State<AppState>,
    Path(p): Path<DepPath>,
    RawQuery(raw): RawQuery,
    uri: Uri,
) -> Result<Response, ArmError> {
    let query = Query::parse(raw.as_deref());
    {
        let store = state.store();
        let ep = store.endpoint_or_404(&p.key(), &p.ep)?;
        ep.deployments
            .get(&p.dep)
            .ok_or_else(|| deployment_not_found(&p.ep, &p.dep))?;
    }
    let paging = paging::Paging {
        query: &query,
        size_keys: &["count"],
        default_size: state.config.page_size,
        base_url: &state.base_url,
        path: uri.path(),
    };
    let body = paging::page(&SKUS, &paging, |name| {
        json!({
            "resourceType": "Microsoft.MachineLearning.Services/endpoints/deployments",
            "sku": { "name": name, "tier": "Standard" },
            "capacity": { "minimum": 1, "maximum": 20, "default": 1, "scaleType": "Manual" },
        })
    })?;
    Ok(Json(body).into_response())
}
