//! Which `networking.istio.io` version the cluster serves, from API discovery (`GET /apis`):
//! `v1` when served, else `v1beta1` (Istio < 1.22 has no `v1`). No Istio group at all names the
//! missing CRD instead of failing later with a bare 404.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::APIGroupList;

use super::crd::IstioVersion;
use super::ssa::kube_error;
use flightdeck_core::backend::BackendError;

pub const ISTIO_GROUP: &str = "networking.istio.io";

/// The Istio version to use, given the cluster's API groups.
pub fn istio_version(groups: &APIGroupList, subject: &str) -> Result<IstioVersion, BackendError> {
    let served: Vec<&str> = groups
        .groups
        .iter()
        .filter(|g| g.name == ISTIO_GROUP)
        .flat_map(|g| g.versions.iter().map(|v| v.version.as_str()))
        .collect();
    for v in [IstioVersion::V1, IstioVersion::V1beta1] {
        if served.contains(&v.as_str()) {
            return Ok(v);
        }
    }
    let message = if served.is_empty() {
        "VirtualService is not served by this cluster: install Istio or use router: gateway-api"
            .to_string()
    } else {
        format!(
            "VirtualService is served only as {ISTIO_GROUP} {}; flightdeck needs v1 or v1beta1 \
             (Istio 1.12 or later), or use router: gateway-api",
            served.join(", ")
        )
    };
    Err(BackendError::Platform {
        transient: false,
        source: None,
        subject: subject.to_string(),
        code: "NotServed".to_string(),
        message,
    })
}

/// Asks the API server which groups it serves.
pub async fn api_groups(
    client: &kube::Client,
    subject: &str,
) -> Result<APIGroupList, BackendError> {
    client
        .list_api_groups()
        .await
        .map_err(|e| kube_error(subject, "discover API groups", e))
}
