//! Builders shared by the k8s_* tests: targets, settings, and plan steps written by hand.

use std::time::Duration;

use flightdeck::backend::kubernetes::{KubernetesBackend, KubernetesOptions};
use flightdeck::model::{
    DeploymentSettings, EndpointSettings, KubernetesTarget, Probe, Router, TestSpec, Weights,
};
use flightdeck::plan::{Action, Step};

use super::FakeKube;

pub const NS: &str = "ml";
pub const EP: &str = "scoring";

pub fn target(router: Router) -> KubernetesTarget {
    KubernetesTarget {
        namespace: NS.into(),
        router,
        gateways: vec!["infra/public".into()],
        hostnames: vec!["scoring.example.com".into()],
        pin_header: Some("x-model-deployment".into()),
        test_base_url: None,
    }
}

pub fn options() -> KubernetesOptions {
    KubernetesOptions {
        rollout_timeout: Duration::from_secs(5),
        poll_interval: Duration::from_millis(10),
        make_before_break_delay: Duration::from_millis(30),
        ..KubernetesOptions::default()
    }
}

pub fn backend(fake: &FakeKube, target: &KubernetesTarget) -> KubernetesBackend {
    KubernetesBackend::new(target, fake.client(), options())
}

pub fn settings(image: &str, count: u32) -> DeploymentSettings {
    DeploymentSettings {
        model: Some(flightdeck::model::AssetRef::parse("azureml:credit:1")),
        image: Some(image.into()),
        instance_count: Some(count),
        port: Some(8080),
        readiness_probe: Some(Probe {
            path: Some("/ready".into()),
            period: Some(5),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn weights(pairs: &[(&str, u32)]) -> Weights {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

pub fn step(action: Action) -> Step {
    let reason = action.kind().replace('_', " ");
    Step::new(EP.into(), action, reason)
}

pub fn create_endpoint() -> Step {
    step(Action::CreateEndpoint {
        settings: EndpointSettings::default(),
    })
}

pub fn create(d: &str, s: DeploymentSettings) -> Step {
    step(Action::CreateDeployment {
        deployment: d.into(),
        settings: Box::new(s),
    })
}

pub fn test_gate(d: &str) -> Step {
    step(Action::TestDeployment {
        deployment: d.into(),
        test: TestSpec {
            requests: vec![flightdeck::model::TestRequest::new(
                "sample.json",
                r#"{"data": [[1, 2]]}"#,
            )],
            expect_status: None,
            expect_body_contains: None,
            ..Default::default()
        },
    })
}

pub fn traffic(pairs: &[(&str, u32)]) -> Step {
    step(Action::SetTraffic {
        traffic: weights(pairs),
    })
}

pub fn mirror(pairs: &[(&str, u32)]) -> Step {
    step(Action::SetMirrorTraffic {
        mirror_traffic: weights(pairs),
    })
}

pub fn scale(d: &str, from: u32, to: u32) -> Step {
    step(Action::ScaleDeployment {
        deployment: d.into(),
        from,
        to,
    })
}

pub fn delete(d: &str) -> Step {
    step(Action::DeleteDeployment {
        deployment: d.into(),
    })
}
