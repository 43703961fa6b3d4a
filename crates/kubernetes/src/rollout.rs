//! The `kubectl rollout status` predicate for Deployments ([K8S §3], [KUBECTL]
//! `rollout_status.go`). Deliberately NOT kube-runtime's `is_deployment_completed`, which only looks
//! at the `Progressing` reason and so reports the previous rollout as complete right after a spec
//! change ([K8S §3] "Pitfall").

use k8s_openapi::api::apps::v1::Deployment;

/// Where a Deployment's rollout stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rollout {
    /// Check 6: "successfully rolled out".
    Done,
    /// Checks 1, 3, 4, 5: still rolling; the text says why (kubectl's wording).
    Pending(String),
    /// Check 2: `Progressing` has reason `ProgressDeadlineExceeded`; kubectl exits 1.
    DeadlineExceeded,
}

/// Runs the six checks of [K8S §3] in order. Missing integers count as 0.
pub fn rollout_status(deployment: &Deployment) -> Rollout {
    let generation = deployment.metadata.generation.unwrap_or(0);
    let status = deployment.status.clone().unwrap_or_default();
    let observed = status.observed_generation.unwrap_or(0);
    // 1. The controller has seen the latest spec.
    if generation > observed {
        return Rollout::Pending("waiting for deployment spec update to be observed".to_string());
    }
    // 2. Progress deadline exceeded: a terminal error.
    let deadline_exceeded = status.conditions.iter().flatten().any(|c| {
        c.type_ == "Progressing" && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
    });
    if deadline_exceeded {
        return Rollout::DeadlineExceeded;
    }
    let wanted = deployment
        .spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(0);
    let updated = status.updated_replicas.unwrap_or(0);
    let replicas = status.replicas.unwrap_or(0);
    let available = status.available_replicas.unwrap_or(0);
    // 3. Every wanted replica runs the new template.
    if updated < wanted {
        return Rollout::Pending(format!(
            "{updated} out of {wanted} new replicas have been updated"
        ));
    }
    // 4. Old replicas are gone.
    if replicas > updated {
        return Rollout::Pending(format!(
            "{} old replicas are pending termination",
            replicas - updated
        ));
    }
    // 5. Every updated replica is available.
    if available < updated {
        return Rollout::Pending(format!(
            "{available} of {updated} updated replicas are available"
        ));
    }
    // 6. Done.
    Rollout::Done
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{DeploymentCondition, DeploymentSpec, DeploymentStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn deployment(generation: i64, replicas: i32, status: DeploymentStatus) -> Deployment {
        Deployment {
            metadata: ObjectMeta {
                name: Some("scoring-blue".into()),
                generation: Some(generation),
                ..Default::default()
            },
            spec: Some(DeploymentSpec {
                replicas: Some(replicas),
                ..Default::default()
            }),
            status: Some(status),
        }
    }

    fn progressing(reason: &str, status: &str) -> Option<Vec<DeploymentCondition>> {
        Some(vec![DeploymentCondition {
            type_: "Progressing".into(),
            status: status.into(),
            reason: Some(reason.into()),
            ..Default::default()
        }])
    }

    fn complete(generation: i64, n: i32) -> DeploymentStatus {
        DeploymentStatus {
            observed_generation: Some(generation),
            replicas: Some(n),
            updated_replicas: Some(n),
            available_replicas: Some(n),
            ready_replicas: Some(n),
            conditions: progressing("NewReplicaSetAvailable", "True"),
            ..Default::default()
        }
    }

    #[test]
    fn an_unobserved_generation_is_pending_even_if_the_old_rollout_completed() {
        // The kube-runtime pitfall: Progressing=NewReplicaSetAvailable from the previous rollout.
        let d = deployment(3, 2, complete(2, 2));
        assert_eq!(
            rollout_status(&d),
            Rollout::Pending("waiting for deployment spec update to be observed".into())
        );
    }

    #[test]
    fn a_missing_status_counts_as_generation_zero() {
        let mut d = deployment(1, 1, DeploymentStatus::default());
        d.status = None;
        assert!(matches!(rollout_status(&d), Rollout::Pending(_)));
    }

    #[test]
    fn progress_deadline_exceeded_is_an_error_before_replica_counts() {
        let status = DeploymentStatus {
            observed_generation: Some(1),
            conditions: progressing("ProgressDeadlineExceeded", "False"),
            ..Default::default()
        };
        assert_eq!(
            rollout_status(&deployment(1, 2, status)),
            Rollout::DeadlineExceeded
        );
    }

    #[test]
    fn fewer_updated_than_wanted_replicas_is_pending() {
        let mut status = complete(1, 1);
        status.replicas = Some(1);
        assert_eq!(
            rollout_status(&deployment(1, 2, status)),
            Rollout::Pending("1 out of 2 new replicas have been updated".into())
        );
    }

    #[test]
    fn old_replicas_still_running_is_pending() {
        let mut status = complete(1, 2);
        status.replicas = Some(3);
        assert_eq!(
            rollout_status(&deployment(1, 2, status)),
            Rollout::Pending("1 old replicas are pending termination".into())
        );
    }

    #[test]
    fn updated_but_unavailable_replicas_is_pending() {
        let mut status = complete(1, 2);
        status.available_replicas = None;
        assert_eq!(
            rollout_status(&deployment(1, 2, status)),
            Rollout::Pending("0 of 2 updated replicas are available".into())
        );
    }

    #[test]
    fn a_fully_available_rollout_is_done_and_scaling_to_zero_counts() {
        assert_eq!(
            rollout_status(&deployment(4, 2, complete(4, 2))),
            Rollout::Done
        );
        let zero = DeploymentStatus {
            observed_generation: Some(5),
            ..Default::default()
        };
        assert_eq!(rollout_status(&deployment(5, 0, zero)), Rollout::Done);
    }
}
