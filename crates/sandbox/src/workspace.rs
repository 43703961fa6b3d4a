//! `GET …/workspaces/{ws}` (Workspaces_Get). Microsoft's azure-ai-ml SDK reads the workspace
//! before every endpoint or deployment PUT to learn its `location`. The sandbox has no
//! workspace resources of its own: every workspace exists as soon as it is named (see
//! docs/sandbox.md), is in the configured region and is `Succeeded`. The body carries the
//! Workspace fields the SDK deserialises (`Workspace._from_rest_object`); the workspace spec
//! itself is not part of the reference contracts (reference/azureml), so the shape follows the
//! SDK's REST model.

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use chrono::{TimeZone, Utc};
use serde_json::json;

use super::AppState;
use super::arm_endpoints::WsPath;
use super::error::ArmError;
use super::shapes::{stable_uuid, timestamp};

pub const WORKSPACE_TYPE: &str = "Microsoft.MachineLearningServices/workspaces";

pub async fn get_workspace(
    State(state): State<AppState>,
    Path(p): Path<WsPath>,
) -> Result<Response, ArmError> {
    let key = p.key();
    super::rules::check_name("workspace", &key.workspace)?;
    let id = key.arm_prefix();
    let ctx = state.render_ctx();
    // A fixed creation time: the workspace has always existed, as far as clients can tell.
    let created = timestamp(
        Utc.timestamp_opt(1_700_000_000, 0)
            .single()
            .unwrap_or_default(),
    );
    Ok(Json(json!({
        "id": id,
        "name": key.workspace,
        "type": WORKSPACE_TYPE,
        "location": state.config.location,
        "kind": "Default",
        "tags": {},
        "identity": {
            "type": "SystemAssigned",
            "principalId": stable_uuid(&format!("principal:{id}")),
            "tenantId": ctx.tenant_id,
        },
        "sku": {"name": "Basic", "tier": "Basic"},
        "properties": {
            "friendlyName": key.workspace,
            "description": "flightdeck sandbox workspace",
            "provisioningState": "Succeeded",
            "workspaceId": stable_uuid(&format!("workspace:{id}")),
            "publicNetworkAccess": "Enabled",
            "hbiWorkspace": false,
            "v1LegacyMode": false,
        },
        "systemData": {
            "createdAt": created,
            "createdBy": ctx.client_id,
            "createdByType": "Application",
            "lastModifiedAt": created,
            "lastModifiedBy": ctx.client_id,
            "lastModifiedByType": "Application",
        },
    }))
    .into_response())
}
