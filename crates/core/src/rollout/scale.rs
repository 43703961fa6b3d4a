//! `scale_with_traffic`: the instance counts that follow a stage's weights (like Argo Rollouts'
//! dynamicStableScale). Pure; the engine puts the counts on the endpoint it hands the planner,
//! and the planner's safety order does the rest: a scale up is `Phase::Provision` (before the
//! shift), a scale down `Phase::ScaleDown` (after it). So a deployment gains capacity before
//! traffic moves onto it and loses it only once traffic has left, and its count never drops
//! below what its current weight needs (checked after every step by the engine's model tests).
//!
//! A deployment's count at weight `w` is `ceil(full × w / W)`, at least 1 while `w > 0`:
//! - the candidate: `full` is its declared `instance_count`, `W` its declared weight (100 when
//!   it takes all the traffic in the end: `ceil(instance_count × w / 100)`);
//! - a baseline deployment: `full` is the count it had when the rollout began (kept in the
//!   record, since it may no longer be declared), `W` its baseline weight.

use std::collections::BTreeMap;

use super::record::RolloutRecord;
use crate::model::{Endpoint, LiveEndpoint, Weights, effective};

/// `ceil(full × weight / of)`, at least 1 while `weight > 0`; 0 at weight 0.
pub fn count_at(full: u32, weight: u32, of: u32) -> u32 {
    if weight == 0 {
        return 0;
    }
    let of = u64::from(of.max(1));
    let n = (u64::from(full) * u64::from(weight)).div_ceil(of);
    u32::try_from(n).unwrap_or(u32::MAX).max(1)
}

/// The counts to remember when a rollout begins: every baseline deployment that takes traffic,
/// at its live count.
pub fn baseline_counts(baseline: &Weights, live: &LiveEndpoint) -> BTreeMap<String, u32> {
    effective(baseline)
        .keys()
        .filter_map(|d| {
            let n = live.deployments.get(d)?.settings.instance_count?;
            Some((d.clone(), n))
        })
        .collect()
}

/// The count `deployment` needs at `weight`, when it has a full count to scale from.
pub fn needed(
    record: &RolloutRecord,
    desired: &Endpoint,
    deployment: &str,
    weight: u32,
) -> Option<u32> {
    let (full, of) = if deployment == record.candidate {
        let full = desired
            .deployments
            .get(deployment)?
            .settings
            .instance_count?;
        let declared = desired
            .traffic
            .as_ref()
            .and_then(|t| t.get(deployment).copied())
            .filter(|w| *w > 0)
            .unwrap_or(100);
        (full, declared)
    } else {
        let full = *record.scale.get(deployment)?;
        let of = record
            .baseline
            .get(deployment)
            .copied()
            .filter(|w| *w > 0)?;
        (full, of)
    };
    Some(count_at(full, weight, of))
}

/// Sets the instance count of every deployment `traffic` routes to, on `endpoint` (the
/// declared endpoint routed as the stage).
pub fn set_stage(
    endpoint: &mut Endpoint,
    record: &RolloutRecord,
    desired: &Endpoint,
    traffic: &Weights,
) {
    for (name, weight) in effective(traffic) {
        if let Some(bounds) = bounds_needed(record, desired, &name, weight)
            && let Some(d) = endpoint.deployments.get_mut(&name)
            && let Some(a) = d.settings.autoscaling.as_mut()
        {
            (a.min_instances, a.max_instances) = bounds;
        } else if let Some(n) = needed(record, desired, &name, weight)
            && let Some(d) = endpoint.deployments.get_mut(&name)
        {
            d.settings.instance_count = Some(n);
        }
    }
}

/// An autoscaled deployment (`autoscaling` declared, so its HPA owns the replica count) scales
/// its HPA's bounds instead: `(min, max)` at `weight`, each `count_at` of its declared bound over
/// the declared weight (the candidate) or the baseline weight (a baseline deployment). A
/// baseline no longer declared in Git has no declared bounds: it is left to its HPA, which
/// follows its falling load within the bounds it had.
pub fn bounds_needed(
    record: &RolloutRecord,
    desired: &Endpoint,
    deployment: &str,
    weight: u32,
) -> Option<(u32, u32)> {
    let full = desired
        .deployments
        .get(deployment)?
        .settings
        .autoscaling
        .as_ref()?;
    let of = if deployment == record.candidate {
        desired
            .traffic
            .as_ref()
            .and_then(|t| t.get(deployment).copied())
            .filter(|w| *w > 0)
            .unwrap_or(100)
    } else {
        record
            .baseline
            .get(deployment)
            .copied()
            .filter(|w| *w > 0)?
    };
    Some((
        count_at(full.min_instances, weight, of),
        count_at(full.max_instances, weight, of),
    ))
}

/// A rollback: the baseline deployments get back the counts they had when the rollout began;
/// the failed candidate keeps its live count (it is kept for inspection, not scaled up).
pub fn set_rollback(endpoint: &mut Endpoint, record: &RolloutRecord, live: &LiveEndpoint) {
    for (name, d) in endpoint.deployments.iter_mut() {
        if let Some(n) = record.scale.get(name) {
            d.settings.instance_count = Some(*n);
        } else if *name == record.candidate
            && let Some(l) = live.deployments.get(name)
        {
            d.settings.instance_count = l.settings.instance_count;
            if d.settings.autoscaling.is_some() && l.settings.autoscaling.is_some() {
                d.settings.autoscaling = l.settings.autoscaling.clone();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_round_up_and_never_drop_to_zero_while_taking_traffic() {
        assert_eq!(count_at(4, 10, 100), 1);
        assert_eq!(count_at(4, 50, 100), 2);
        assert_eq!(count_at(4, 90, 100), 4);
        assert_eq!(count_at(3, 51, 100), 2);
        assert_eq!(count_at(10, 1, 100), 1);
        assert_eq!(count_at(2, 30, 60), 1);
        assert_eq!(count_at(4, 0, 100), 0);
        assert_eq!(count_at(0, 50, 100), 1);
    }

    #[test]
    fn an_autoscaled_candidate_scales_its_bounds_with_its_weight() {
        use crate::model::{Autoscaling, Deployment, DeploymentSettings};
        let autoscaled = |min, max| Deployment {
            name: "green".into(),
            settings: Box::new(DeploymentSettings {
                autoscaling: Some(Autoscaling {
                    min_instances: min,
                    max_instances: max,
                    target_cpu_utilization_percentage: Some(70),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            test: None,
        };
        let desired = Endpoint {
            name: "scoring".into(),
            settings: Default::default(),
            traffic: Some(BTreeMap::from([("green".into(), 100)])),
            mirror_traffic: None,
            deployments: BTreeMap::from([("green".into(), autoscaled(4, 10))]),
        };
        let record = RolloutRecord {
            digest: "3f2a9c0d1e2f".into(),
            revision: None,
            candidate: "green".into(),
            stage: 0,
            since: "2026-12-01T10:00:00Z".parse().unwrap(),
            started: "2026-12-01T10:00:00Z".parse().unwrap(),
            state: crate::rollout::record::RolloutState::Progressing,
            baseline: BTreeMap::from([("blue".to_string(), 100)]),
            shifting: false,
            approved: false,
            reason: None,
            scale: Default::default(),
        };
        assert_eq!(bounds_needed(&record, &desired, "green", 25), Some((1, 3)));
        let mut stage = desired.clone();
        set_stage(
            &mut stage,
            &record,
            &desired,
            &BTreeMap::from([("green".into(), 50)]),
        );
        let a = stage.deployments["green"]
            .settings
            .autoscaling
            .clone()
            .unwrap();
        assert_eq!((a.min_instances, a.max_instances), (2, 5));
        assert_eq!(stage.deployments["green"].settings.instance_count, None);
    }
}
