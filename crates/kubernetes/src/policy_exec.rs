//! Writing and deleting a version's HPA and PDB (`policy` renders them), and handing the
//! replica count over to the HPA. A version's Deployment, Service, HPA and PDB go together: the
//! apply of a version writes or deletes the two optional ones, a delete removes all four.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::Api;
use kube::api::{Patch, PatchParams};

use super::KubernetesBackend;
use super::objects::{MANAGER, version_name};
use super::policy::{hpa, pdb};
use super::ssa::{apply, delete_owned, kube_error};
use flightdeck_core::backend::BackendError;
use flightdeck_core::model::DeploymentSettings;

/// The field manager that holds `spec.replicas` between flightdeck letting go of it and the HPA
/// taking it (the Kubernetes docs' "Transferring ownership" for server-side apply).
pub const REPLICAS_HANDOVER: &str = "flightdeck-replicas-handover";

/// Whether `flightdeck`'s applied field set on `d` includes `spec.replicas`.
fn flightdeck_owns_replicas(d: &Deployment) -> bool {
    d.metadata.managed_fields.iter().flatten().any(|m| {
        m.manager.as_deref() == Some(MANAGER)
            && m.fields_v1
                .as_ref()
                .and_then(|f| f.0.pointer("/f:spec/f:replicas"))
                .is_some()
    })
}

impl KubernetesBackend {
    pub(super) fn hpas(&self) -> Api<HorizontalPodAutoscaler> {
        Api::namespaced(self.client.clone(), self.ns())
    }

    pub(super) fn pdbs(&self) -> Api<PodDisruptionBudget> {
        Api::namespaced(self.client.clone(), self.ns())
    }

    /// Before an apply without `spec.replicas`: if flightdeck still owns the field, another
    /// manager first applies the current count, so that leaving the field out keeps the count
    /// (server-side apply removes a field its only owner stops sending, and the Deployment
    /// would fall back to 1 replica) until the HPA writes its own.
    pub(super) async fn hand_replicas_over(
        &self,
        subject: &str,
        existing: Option<&Deployment>,
    ) -> Result<(), BackendError> {
        let Some(d) = existing.filter(|d| flightdeck_owns_replicas(d)) else {
            return Ok(());
        };
        let name = d.metadata.name.clone().unwrap_or_default();
        let replicas = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let body = serde_json::json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": { "name": name },
            "spec": { "replicas": replicas },
        });
        tracing::debug!(name = %name, replicas, "handing spec.replicas over to the autoscaler");
        self.deployments()
            .patch(
                &name,
                &PatchParams::apply(REPLICAS_HANDOVER).force(),
                &Patch::Apply(&body),
            )
            .await
            .map_err(|e| kube_error(subject, &format!("hand over replicas of {name}"), e))?;
        Ok(())
    }

    /// Writes the HPA and PDB a version declares and deletes the ones it no longer does.
    pub(super) async fn apply_policies(
        &self,
        subject: &str,
        e: &str,
        d: &str,
        settings: &DeploymentSettings,
    ) -> Result<(), BackendError> {
        let name = version_name(e, d);
        match &settings.autoscaling {
            Some(a) => {
                apply(&self.hpas(), subject, &hpa(e, d, self.ns(), a)).await?;
            }
            None => {
                delete_owned(&self.hpas(), subject, &name).await?;
            }
        }
        match &settings.disruption_budget {
            Some(b) => {
                apply(&self.pdbs(), subject, &pdb(e, d, self.ns(), b)).await?;
            }
            None => {
                delete_owned(&self.pdbs(), subject, &name).await?;
            }
        }
        Ok(())
    }

    /// Deletes a version's HPA and PDB (when it is deleted).
    pub(super) async fn delete_policies(
        &self,
        subject: &str,
        name: &str,
    ) -> Result<(), BackendError> {
        delete_owned(&self.hpas(), subject, name).await?;
        delete_owned(&self.pdbs(), subject, name).await?;
        Ok(())
    }
}
