//! Writes through server-side apply [K8S §4], the ownership rule, and mapping Kubernetes
//! errors to `BackendError`.
//!
//! Ownership rule (docs/kubernetes.md "Writes"):
//! - an object without `app.kubernetes.io/managed-by: flightdeck` is never written or deleted;
//! - an object that carries the label AND lists `flightdeck` among its field managers is ours:
//!   apply with `force=true` ("controllers always force conflicts on objects that they own");
//! - an absent object, or a labelled one flightdeck never applied (a copied manifest), is applied
//!   without force, so a 409 FieldManagerConflict surfaces with the other manager's name.

use std::fmt::Debug;

use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::objects::{MANAGER, is_managed};
use flightdeck_core::backend::BackendError;

/// Page size for LIST calls (`limit` + `continue`, [K8S §4] Watch/Lists).
const PAGE_SIZE: u32 = 200;

/// Maps a kube error to a `BackendError` for `subject`. A FieldManagerConflict names the other
/// manager and field; nothing from the request (tokens, bodies) ends up in the message.
pub fn kube_error(subject: &str, what: &str, err: kube::Error) -> BackendError {
    match err {
        kube::Error::Api(status) => {
            let causes: Vec<String> = status
                .details
                .iter()
                .flat_map(|d| d.causes.iter())
                .filter(|c| c.reason == "FieldManagerConflict")
                .map(|c| {
                    let manager = c.message.split('"').nth(1).unwrap_or(c.message.as_str());
                    format!("conflict with \"{manager}\" on {}", c.field)
                })
                .collect();
            if status.code == 409 && !causes.is_empty() {
                return BackendError::Platform {
                    transient: false,
                    source: None,
                    subject: subject.to_string(),
                    code: "Conflict".to_string(),
                    message: format!("{what}: {}", causes.join(", ")),
                };
            }
            let code = if status.reason.is_empty() {
                status.code.to_string()
            } else {
                status.reason.clone()
            };
            // 429 and 5xx (a busy or restarting API server) may pass; a refusal will not.
            let transient = status.code == 429 || status.code >= 500;
            BackendError::Platform {
                subject: subject.to_string(),
                code,
                message: format!("{what}: {}", status.message),
                transient,
                source: Some(Box::new(kube::Error::Api(status))),
            }
        }
        other if is_timeout(&other) => BackendError::TimedOut {
            subject: subject.to_string(),
            message: format!("kubernetes API call {what} {TIMED_OUT}"),
        },
        other => {
            BackendError::transport(subject, format!("{what}: {other}"), Some(Box::new(other)))
        }
    }
}

/// How a timed-out call's message ends; the backend appends the budget.
pub(super) const TIMED_OUT: &str = "timed out";

/// Whether a kube error is a connect/read/write timeout somewhere down its source chain
/// (hyper-timeout reports `io::ErrorKind::TimedOut`).
fn is_timeout(err: &kube::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::TimedOut
        {
            return true;
        }
        if e.to_string().contains("deadline has elapsed") {
            return true;
        }
        source = e.source();
    }
    false
}

fn not_managed(subject: &str, kind: &str, name: &str) -> BackendError {
    BackendError::Platform {
        transient: false,
        source: None,
        subject: subject.to_string(),
        code: "NotManaged".to_string(),
        message: format!(
            "{kind} {name} exists without the label app.kubernetes.io/managed-by=flightdeck; \
             flightdeck never modifies objects it did not create"
        ),
    }
}

/// Reads one object. Absent is `Ok(None)`; present but not ours is an error.
pub async fn get_owned<K>(
    api: &Api<K>,
    subject: &str,
    name: &str,
) -> Result<Option<K>, BackendError>
where
    K: Resource + Clone + DeserializeOwned + Debug,
    K::DynamicType: Default,
{
    let kind = K::kind(&K::DynamicType::default()).to_string();
    let found = api
        .get_opt(name)
        .await
        .map_err(|e| kube_error(subject, &format!("get {kind} {name}"), e))?;
    match found {
        Some(obj) if !is_managed(obj.meta()) => Err(not_managed(subject, &kind, name)),
        other => Ok(other),
    }
}

/// Server-side applies `obj` (which must carry our labels) under the ownership rule above.
pub async fn apply<K>(api: &Api<K>, subject: &str, obj: &K) -> Result<K, BackendError>
where
    K: Resource + Clone + Serialize + DeserializeOwned + Debug,
    K::DynamicType: Default,
{
    let kind = K::kind(&K::DynamicType::default()).to_string();
    let name = obj.name_any();
    let existing = get_owned(api, subject, &name).await?;
    let ours = existing.as_ref().is_some_and(|e| {
        e.managed_fields()
            .iter()
            .any(|m| m.manager.as_deref() == Some(MANAGER))
    });
    let mut params = PatchParams::apply(MANAGER);
    if ours {
        params = params.force();
    }
    tracing::debug!(kind = %kind, name = %name, force = ours, "server-side apply");
    // The body's apiVersion is the one the request goes to (an Istio kind's discovered version).
    let mut body = serde_json::to_value(obj).map_err(|e| {
        BackendError::transport(
            subject,
            format!("apply {kind} {name}: {e}"),
            Some(Box::new(e)),
        )
    })?;
    body["apiVersion"] = serde_json::Value::String(api_version_of(api.resource_url()));
    api.patch(&name, &params, &Patch::Apply(&body))
        .await
        .map_err(|e| kube_error(subject, &format!("apply {kind} {name}"), e))
}

/// Sets the annotations `manager` owns on an existing object of ours to exactly `annotations`
/// (server-side apply of a body with only them [K8S §4]: fields other managers own stay, the
/// ones `manager` applied before and leaves out are removed). Forced: `manager` is flightdeck's
/// own and owns these annotations. An absent object is refused, never created half-empty.
pub async fn apply_annotations<K>(
    api: &Api<K>,
    subject: &str,
    name: &str,
    manager: &str,
    annotations: &std::collections::BTreeMap<String, String>,
) -> Result<(), BackendError>
where
    K: Resource + Clone + DeserializeOwned + Debug,
    K::DynamicType: Default,
{
    let kind = K::kind(&K::DynamicType::default()).to_string();
    if get_owned(api, subject, name).await?.is_none() {
        return Err(BackendError::Platform {
            transient: false,
            source: None,
            subject: subject.to_string(),
            code: "NotFound".to_string(),
            message: format!(
                "{kind} {name} does not exist (it is created with the endpoint's first traffic);                  rollout progress is stored on it"
            ),
        });
    }
    let body = serde_json::json!({
        "apiVersion": api_version_of(api.resource_url()),
        "kind": kind,
        "metadata": { "name": name, "annotations": annotations },
    });
    tracing::debug!(kind = %kind, name = %name, manager, "server-side apply of annotations");
    api.patch(
        name,
        &PatchParams::apply(manager).force(),
        &Patch::Apply(&body),
    )
    .await
    .map_err(|e| kube_error(subject, &format!("annotate {kind} {name}"), e))?;
    Ok(())
}

/// `G/V` from `/apis/G/V/...`, `V` from `/api/V/...`.
fn api_version_of(url: &str) -> String {
    let segs: Vec<&str> = url.trim_start_matches('/').split('/').collect();
    match segs.as_slice() {
        ["apis", group, version, ..] => format!("{group}/{version}"),
        [_, version, ..] => (*version).to_string(),
        _ => String::new(),
    }
}

/// Deletes an object if it exists and is ours. Returns whether a delete was sent. An object
/// without our label is left alone (and logged), never deleted.
pub async fn delete_owned<K>(api: &Api<K>, subject: &str, name: &str) -> Result<bool, BackendError>
where
    K: Resource + Clone + DeserializeOwned + Debug,
    K::DynamicType: Default,
{
    let kind = K::kind(&K::DynamicType::default()).to_string();
    let found = api
        .get_opt(name)
        .await
        .map_err(|e| kube_error(subject, &format!("get {kind} {name}"), e))?;
    match found {
        None => Ok(false),
        Some(obj) if !is_managed(obj.meta()) => {
            tracing::warn!(kind = %kind, name, "not managed by flightdeck; left in place");
            Ok(false)
        }
        Some(_) => match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(false),
            Err(e) => Err(kube_error(subject, &format!("delete {kind} {name}"), e)),
        },
    }
}

/// Lists every object matching `selector` that carries flightdeck's label, following `continue`
/// tokens.
pub async fn list_all<K>(
    api: &Api<K>,
    subject: &str,
    selector: &str,
) -> Result<Vec<K>, BackendError>
where
    K: Resource + Clone + DeserializeOwned + Debug,
    K::DynamicType: Default,
{
    let items = list_pages(api, subject, selector).await?;
    // The selector already filters; the check keeps the invariant local and explicit.
    Ok(items.into_iter().filter(|o| is_managed(o.meta())).collect())
}

/// Names of every object without `app.kubernetes.io/managed-by=flightdeck` (read, never written).
pub async fn list_unmanaged_names<K>(
    api: &Api<K>,
    subject: &str,
) -> Result<Vec<String>, BackendError>
where
    K: Resource + Clone + DeserializeOwned + Debug,
    K::DynamicType: Default,
{
    let selector = format!("{}!={MANAGER}", super::objects::MANAGED_BY);
    let items = list_pages(api, subject, &selector).await?;
    Ok(items
        .iter()
        .filter(|o| !is_managed(o.meta()))
        .map(|o| o.name_any())
        .collect())
}

async fn list_pages<K>(api: &Api<K>, subject: &str, selector: &str) -> Result<Vec<K>, BackendError>
where
    K: Resource + Clone + DeserializeOwned + Debug,
    K::DynamicType: Default,
{
    let kind = K::kind(&K::DynamicType::default()).to_string();
    let mut items = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut params = ListParams::default().labels(selector).limit(PAGE_SIZE);
        if let Some(t) = &token {
            params = params.continue_token(t);
        }
        let page = api
            .list(&params)
            .await
            .map_err(|e| kube_error(subject, &format!("list {kind}"), e))?;
        items.extend(page.items);
        match page.metadata.continue_ {
            Some(t) if !t.is_empty() => token = Some(t),
            _ => return Ok(items),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::Status;

    #[test]
    fn a_field_manager_conflict_names_the_other_manager_and_field() {
        // [K8S §4]: the verbatim shape of the server's 409 body.
        let body = r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Apply failed with 1 conflict: conflict with \"helm\" using apps/v1: .spec.replicas","reason":"Conflict","details":{"causes":[{"reason":"FieldManagerConflict","message":"conflict with \"helm\" using apps/v1","field":".spec.replicas"}]},"code":409}"#;
        let status: Status = serde_json::from_str(body).unwrap();
        let err = kube_error(
            "scoring/blue",
            "apply Deployment scoring-blue",
            kube::Error::Api(status.boxed()),
        );
        assert_eq!(
            err.to_string(),
            "scoring/blue: Conflict: apply Deployment scoring-blue: conflict with \"helm\" on .spec.replicas"
        );
    }

    #[test]
    fn a_resource_version_conflict_keeps_the_server_message() {
        let body = r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"the object has been modified","reason":"Conflict","code":409}"#;
        let status: Status = serde_json::from_str(body).unwrap();
        let err = kube_error("scoring", "apply", kube::Error::Api(status.boxed()));
        assert_eq!(
            err.to_string(),
            "scoring: Conflict: apply: the object has been modified"
        );
    }
}
