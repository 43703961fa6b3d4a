//! Naming, labels, and the Deployment / Service objects for one model version (docs/kubernetes.md
//! "Mapping"). Pure: render objects from settings, and read settings back from objects, so that
//! `settings_from_deployment(&deployment_object(s)) == s` for everything flightdeck writes.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EnvVar, HTTPGetAction, PodSpec, PodTemplateSpec, Probe as K8sProbe,
    ResourceRequirements, Service, ServicePort, ServiceSpec,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use flightdeck_core::model::{
    AssetRef, DeploymentSettings, EndpointSettings, Probe, Resources, Weights,
};

pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const MANAGER: &str = "flightdeck";
pub const NAME_LABEL: &str = "app.kubernetes.io/name";
pub const ENDPOINT_LABEL: &str = "flightdeck.io/endpoint";
pub const DEPLOYMENT_LABEL: &str = "flightdeck.io/deployment";
/// The model reference, kept as an annotation: `azureml:model:1` is not a valid label value.
pub const MODEL_ANNOTATION: &str = "flightdeck.io/model";
/// Settings with no Kubernetes field (description, tags, environment, ...), as JSON.
pub const SETTINGS_ANNOTATION: &str = "flightdeck.io/settings";
/// Label selector for everything flightdeck manages.
pub const MANAGED_SELECTOR: &str = "app.kubernetes.io/managed-by=flightdeck";
pub const CONTAINER_NAME: &str = "model";
pub const PORT_NAME: &str = "http";
pub const DEFAULT_PORT: u16 = 8080;
/// The umbrella Service's port; it targets the named container port `http` of every version.
pub const UMBRELLA_PORT: i32 = 80;

/// `E-D`: the Deployment and Service of one version.
pub fn version_name(endpoint: &str, deployment: &str) -> String {
    format!("{endpoint}-{deployment}")
}

/// `E.N.svc.cluster.local`: the umbrella Service's FQDN ([K8S §1]: FQDN recommended).
pub fn service_fqdn(endpoint: &str, namespace: &str) -> String {
    format!("{endpoint}.{namespace}.svc.cluster.local")
}

/// Whether an object carries `app.kubernetes.io/managed-by: flightdeck`.
pub fn is_managed(meta: &ObjectMeta) -> bool {
    meta.labels
        .as_ref()
        .and_then(|l| l.get(MANAGED_BY))
        .is_some_and(|v| v == MANAGER)
}

pub fn endpoint_labels(endpoint: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (MANAGED_BY.to_string(), MANAGER.to_string()),
        (NAME_LABEL.to_string(), endpoint.to_string()),
        (ENDPOINT_LABEL.to_string(), endpoint.to_string()),
    ])
}

pub fn version_labels(endpoint: &str, deployment: &str) -> BTreeMap<String, String> {
    let mut labels = endpoint_labels(endpoint);
    labels.insert(DEPLOYMENT_LABEL.to_string(), deployment.to_string());
    labels
}

/// The pod selector of one version (immutable once the Deployment exists).
pub fn version_selector(endpoint: &str, deployment: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (ENDPOINT_LABEL.to_string(), endpoint.to_string()),
        (DEPLOYMENT_LABEL.to_string(), deployment.to_string()),
    ])
}

fn meta(name: String, namespace: &str, labels: BTreeMap<String, String>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: Some(namespace.to_string()),
        labels: Some(labels),
        ..Default::default()
    }
}

/// Settings that have no Kubernetes field, stored in `flightdeck.io/settings`. The model is in the
/// image (it is a label here), so no model volume is mounted: `model_mount_path` is kept here
/// only so that it reads back as written.
#[derive(Default, serde::Serialize, serde::Deserialize)]
struct ExtraSettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tags: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    environment: Option<AssetRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    code_configuration: Option<flightdeck_core::model::CodeConfiguration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    instance_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    model_mount_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    request_settings: Option<flightdeck_core::model::RequestSettings>,
}

/// The version that takes the most traffic (the first by name on a tie), if any takes some: the
/// one version the umbrella Service selects.
pub fn primary(traffic: &Weights) -> Option<&str> {
    let mut best: Option<(&str, u32)> = None;
    for (d, w) in traffic {
        if *w > 0 && best.is_none_or(|(_, b)| *w > b) {
            best = Some((d, *w));
        }
    }
    best.map(|(d, _)| d)
}

/// The umbrella Service's selector: only the primary version's pods, so that a client without a
/// sidecar (kube-proxy picks any endpoint of the Service) never reaches a version at 0%. With no
/// traffic it selects no pod (the deployment label is never empty).
pub fn umbrella_selector(endpoint: &str, primary: Option<&str>) -> BTreeMap<String, String> {
    version_selector(endpoint, primary.unwrap_or_default())
}

fn http_service(metadata: ObjectMeta, selector: BTreeMap<String, String>, port: i32) -> Service {
    Service {
        metadata,
        spec: Some(ServiceSpec {
            selector: Some(selector),
            ports: Some(vec![ServicePort {
                name: Some(PORT_NAME.to_string()),
                port,
                target_port: Some(IntOrString::String(PORT_NAME.to_string())),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        status: None,
    }
}

/// The umbrella Service `E`, which clients address: selects the primary version only (see
/// `umbrella_selector`), carries the endpoint settings.
pub fn umbrella_service(
    endpoint: &str,
    namespace: &str,
    settings: &EndpointSettings,
    primary: Option<&str>,
) -> Service {
    let mut metadata = meta(endpoint.to_string(), namespace, endpoint_labels(endpoint));
    let json = serde_json::to_string(settings).unwrap_or_default();
    metadata.annotations = Some(BTreeMap::from([(SETTINGS_ANNOTATION.to_string(), json)]));
    http_service(
        metadata,
        umbrella_selector(endpoint, primary),
        UMBRELLA_PORT,
    )
}

/// `E--pool` (Istio only): no version name `E-D` can equal it, since a deployment name starts
/// with a letter.
pub fn pool_name(endpoint: &str) -> String {
    format!("{endpoint}--pool")
}

/// The pool Service `E--pool` (Istio only): selects every version of `E`. It is the
/// DestinationRule's host, because subset labels filter the endpoints of the host's Service
/// ([K8S §1] "DestinationRule subsets"); the VirtualService on host `E` routes to its
/// subsets. Clients never address it.
pub fn pool_service(endpoint: &str, namespace: &str) -> Service {
    let selector = BTreeMap::from([(ENDPOINT_LABEL.to_string(), endpoint.to_string())]);
    let metadata = meta(pool_name(endpoint), namespace, endpoint_labels(endpoint));
    http_service(metadata, selector, UMBRELLA_PORT)
}

/// The selector of a Service, empty when it has none.
pub fn service_selector(service: &Service) -> BTreeMap<String, String> {
    service
        .spec
        .as_ref()
        .and_then(|s| s.selector.clone())
        .unwrap_or_default()
}

pub fn endpoint_settings_from_service(service: &Service) -> EndpointSettings {
    service
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(SETTINGS_ANNOTATION))
        .and_then(|json| serde_json::from_str(json).ok())
        .unwrap_or_default()
}

/// The per-version Service `E-D`, on the version's container port.
pub fn version_service(endpoint: &str, deployment: &str, namespace: &str, port: u16) -> Service {
    let name = version_name(endpoint, deployment);
    http_service(
        meta(name, namespace, version_labels(endpoint, deployment)),
        version_selector(endpoint, deployment),
        i32::from(port),
    )
}

/// The port of a per-version Service, if it has one.
pub fn service_port(service: &Service) -> Option<i32> {
    service
        .spec
        .as_ref()?
        .ports
        .as_ref()?
        .first()
        .map(|p| p.port)
}

pub fn port_of(settings: &DeploymentSettings) -> u16 {
    settings.port.unwrap_or(DEFAULT_PORT)
}

fn probe(p: &Probe, default_port: u16) -> K8sProbe {
    let int = |v: Option<u32>| v.map(|n| i32::try_from(n).unwrap_or(i32::MAX));
    K8sProbe {
        http_get: Some(HTTPGetAction {
            path: Some(p.path.clone().unwrap_or_else(|| "/".to_string())),
            port: IntOrString::Int(i32::from(p.port.unwrap_or(default_port))),
            ..Default::default()
        }),
        initial_delay_seconds: int(p.initial_delay),
        period_seconds: int(p.period),
        timeout_seconds: int(p.timeout),
        failure_threshold: int(p.failure_threshold),
        success_threshold: int(p.success_threshold),
        ..Default::default()
    }
}

fn probe_back(p: &K8sProbe) -> Probe {
    let uint = |v: Option<i32>| v.and_then(|n| u32::try_from(n).ok());
    let get = p.http_get.as_ref();
    Probe {
        initial_delay: uint(p.initial_delay_seconds),
        period: uint(p.period_seconds),
        timeout: uint(p.timeout_seconds),
        failure_threshold: uint(p.failure_threshold),
        success_threshold: uint(p.success_threshold),
        path: get.and_then(|g| g.path.clone()),
        port: get.and_then(|g| match &g.port {
            IntOrString::Int(n) => u16::try_from(*n).ok(),
            IntOrString::String(_) => None,
        }),
    }
}

fn quantities(map: &BTreeMap<String, String>) -> Option<BTreeMap<String, Quantity>> {
    (!map.is_empty()).then(|| {
        map.iter()
            .map(|(k, v)| (k.clone(), Quantity(v.clone())))
            .collect()
    })
}

fn strings(map: Option<&BTreeMap<String, Quantity>>) -> BTreeMap<String, String> {
    map.map(|m| m.iter().map(|(k, v)| (k.clone(), v.0.clone())).collect())
        .unwrap_or_default()
}

/// The Deployment `E-D`. `image` must be set (checked by the caller).
pub fn deployment_object(
    endpoint: &str,
    deployment: &str,
    namespace: &str,
    settings: &DeploymentSettings,
) -> Deployment {
    let port = port_of(settings);
    let labels = version_labels(endpoint, deployment);
    let mut metadata = meta(
        version_name(endpoint, deployment),
        namespace,
        labels.clone(),
    );
    let extra = ExtraSettings {
        description: settings.description.clone(),
        tags: settings.tags.clone(),
        environment: settings.environment.clone(),
        code_configuration: settings.code_configuration.clone(),
        instance_type: settings.instance_type.clone(),
        model_mount_path: settings.model_mount_path.clone(),
        request_settings: settings.request_settings.clone(),
    };
    let mut annotations = BTreeMap::from([(
        SETTINGS_ANNOTATION.to_string(),
        serde_json::to_string(&extra).unwrap_or_default(),
    )]);
    if let Some(model) = &settings.model {
        annotations.insert(MODEL_ANNOTATION.to_string(), model.to_string());
    }
    metadata.annotations = Some(annotations.clone());
    let env = settings.environment_variables.as_ref().map(|vars| {
        vars.iter()
            .map(|(k, v)| EnvVar {
                name: k.clone(),
                value: Some(v.clone()),
                ..Default::default()
            })
            .collect()
    });
    let resources = settings.resources.as_ref().map(|r| ResourceRequirements {
        requests: quantities(&r.requests),
        limits: quantities(&r.limits),
        ..Default::default()
    });
    let container = Container {
        name: CONTAINER_NAME.to_string(),
        image: settings.image.clone(),
        ports: Some(vec![ContainerPort {
            name: Some(PORT_NAME.to_string()),
            container_port: i32::from(port),
            ..Default::default()
        }]),
        env,
        resources,
        readiness_probe: settings.readiness_probe.as_ref().map(|p| probe(p, port)),
        liveness_probe: settings.liveness_probe.as_ref().map(|p| probe(p, port)),
        ..Default::default()
    };
    // An HPA owns the replica count: leave `spec.replicas` out of the apply so that flightdeck
    // never fights it (docs/kubernetes.md "Autoscaling").
    let replicas = settings
        .autoscaling
        .is_none()
        .then(|| i32::try_from(settings.instance_count.unwrap_or(1)).unwrap_or(i32::MAX));
    let mut container = container;
    let mut pod = PodSpec::default();
    super::pod::write(
        &mut pod,
        &mut container,
        settings,
        &version_selector(endpoint, deployment),
    );
    pod.containers = vec![container];
    Deployment {
        metadata,
        spec: Some(DeploymentSpec {
            replicas,
            selector: LabelSelector {
                match_labels: Some(version_selector(endpoint, deployment)),
                ..Default::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    annotations: settings
                        .model
                        .as_ref()
                        .map(|m| BTreeMap::from([(MODEL_ANNOTATION.to_string(), m.to_string())])),
                    ..Default::default()
                }),
                spec: Some(pod),
            },
            ..Default::default()
        }),
        status: None,
    }
}

/// Reads the settings back from a Deployment that `deployment_object` rendered (or that a server
/// defaulted): the inverse of `deployment_object` on every field flightdeck writes.
pub fn settings_from_deployment(d: &Deployment) -> DeploymentSettings {
    let annotations = d.metadata.annotations.clone().unwrap_or_default();
    let extra: ExtraSettings = annotations
        .get(SETTINGS_ANNOTATION)
        .and_then(|json| serde_json::from_str(json).ok())
        .unwrap_or_default();
    let spec = d.spec.clone().unwrap_or_default();
    let pod = spec.template.spec.unwrap_or_default();
    let container = pod
        .containers
        .iter()
        .find(|c| c.name == CONTAINER_NAME)
        .or_else(|| pod.containers.first())
        .cloned()
        .unwrap_or_default();
    let port = container
        .ports
        .iter()
        .flatten()
        .next()
        .and_then(|p| u16::try_from(p.container_port).ok());
    let env = container.env.as_ref().map(|vars| {
        vars.iter()
            .map(|v| (v.name.clone(), v.value.clone().unwrap_or_default()))
            .collect()
    });
    let resources = container.resources.as_ref().map(|r| Resources {
        requests: strings(r.requests.as_ref()),
        limits: strings(r.limits.as_ref()),
    });
    let mut settings = DeploymentSettings {
        description: extra.description,
        tags: extra.tags,
        model: annotations
            .get(MODEL_ANNOTATION)
            .map(|m| AssetRef::parse(m)),
        model_mount_path: extra.model_mount_path,
        environment: extra.environment,
        image: container.image.clone(),
        code_configuration: extra.code_configuration,
        instance_type: extra.instance_type,
        instance_count: Some(
            spec.replicas
                .and_then(|r| u32::try_from(r).ok())
                .unwrap_or(1),
        ),
        environment_variables: env,
        request_settings: extra.request_settings,
        liveness_probe: container.liveness_probe.as_ref().map(probe_back),
        readiness_probe: container.readiness_probe.as_ref().map(probe_back),
        port,
        resources,
        ..Default::default()
    };
    super::pod::read(&pod, &container, &mut settings);
    settings
}

#[cfg(test)]
mod tests {
    use super::*;
    use flightdeck_core::model::RequestSettings;

    fn settings() -> DeploymentSettings {
        DeploymentSettings {
            description: Some("blue".into()),
            tags: Some(BTreeMap::from([("team".into(), "ml".into())])),
            model: Some(AssetRef::parse("azureml:credit:3")),
            image: Some("registry.example/credit:3".into()),
            instance_count: Some(2),
            environment_variables: Some(BTreeMap::from([("MODE".into(), "fast".into())])),
            request_settings: Some(RequestSettings {
                request_timeout_ms: Some(5000),
                ..Default::default()
            }),
            readiness_probe: Some(Probe {
                initial_delay: Some(5),
                period: Some(10),
                timeout: Some(2),
                failure_threshold: Some(3),
                success_threshold: Some(1),
                path: Some("/ready".into()),
                port: Some(9000),
            }),
            liveness_probe: Some(Probe {
                path: Some("/live".into()),
                port: Some(9000),
                ..Default::default()
            }),
            port: Some(9000),
            resources: Some(Resources {
                requests: BTreeMap::from([("cpu".into(), "500m".into())]),
                limits: BTreeMap::from([("memory".into(), "2Gi".into())]),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn deployment_settings_round_trip_through_the_deployment_object() {
        let s = settings();
        let d = deployment_object("scoring", "blue", "ml", &s);
        assert_eq!(settings_from_deployment(&d), s);
    }

    #[test]
    fn model_mount_path_is_kept_in_the_settings_annotation_and_read_back() {
        let s = DeploymentSettings {
            model_mount_path: Some("/var/models".into()),
            ..settings()
        };
        let d = deployment_object("scoring", "blue", "ml", &s);
        let annotations = d.metadata.annotations.clone().unwrap();
        let extra: serde_json::Value =
            serde_json::from_str(&annotations[SETTINGS_ANNOTATION]).unwrap();
        assert_eq!(extra["model_mount_path"], "/var/models");
        assert_eq!(
            settings_from_deployment(&d).model_mount_path.as_deref(),
            Some("/var/models")
        );
    }

    #[test]
    fn version_objects_carry_the_labels_and_select_only_their_version() {
        let d = deployment_object("scoring", "blue", "ml", &settings());
        let labels = d.metadata.labels.clone().unwrap();
        assert_eq!(labels[MANAGED_BY], "flightdeck");
        assert_eq!(labels[ENDPOINT_LABEL], "scoring");
        assert_eq!(labels[DEPLOYMENT_LABEL], "blue");
        assert_eq!(labels[NAME_LABEL], "scoring");
        let spec = d.spec.unwrap();
        assert_eq!(spec.replicas, Some(2));
        assert_eq!(
            spec.template.metadata.unwrap().labels.unwrap(),
            version_labels("scoring", "blue")
        );
        let svc = version_service("scoring", "blue", "ml", 9000);
        assert_eq!(svc.metadata.name.as_deref(), Some("scoring-blue"));
        assert_eq!(
            svc.spec.as_ref().unwrap().selector.clone().unwrap(),
            version_selector("scoring", "blue")
        );
        assert_eq!(service_port(&svc), Some(9000));
    }

    #[test]
    fn endpoint_settings_round_trip_through_the_umbrella_service() {
        let settings = EndpointSettings {
            description: Some("credit scoring".into()),
            ..Default::default()
        };
        let svc = umbrella_service("scoring", "ml", &settings, Some("blue"));
        assert_eq!(endpoint_settings_from_service(&svc), settings);
        assert!(is_managed(&svc.metadata));
    }
}
