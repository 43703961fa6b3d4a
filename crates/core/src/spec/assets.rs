//! Asset references in deployments: `model`, `environment` and `code_configuration`, mapped to
//! `AssetRef` and `CodeConfiguration` (registered, asset id or local).

use super::diagnostics::Sink;
use super::fields::{
    BUILD, CODE_ASSET, CODE_CONFIGURATION, DOCKER, ENVIRONMENT_ASSET, INFERENCE_CONFIG, MODEL,
    ROUTE,
};
use super::located::field;
use super::yaml::{Entry, Kind, Node, ScalarType};
use crate::model::{AssetRef, AzureMlTarget, CodeConfiguration, Endpoint};

/// `model: azureml:name:version`, an asset id, or a mapping (name + version → registered,
/// otherwise `path`/`local_path` → local).
pub(crate) fn model(sink: &mut Sink<'_>, e: &Entry) -> Option<AssetRef> {
    if let Kind::Scalar { .. } = e.value.kind {
        return sink.string(e).map(|l| asset_from_string(&l.value));
    }
    let entries = sink.mapping("model", &e.value, "model", &MODEL)?;
    let mut ok = true;
    for item in entries {
        ok &= match item.key.as_str() {
            "tags" | "properties" => sink.string_map(item).is_some(),
            "flavors" => sink.any_mapping(&item.key, &item.value).is_some(),
            "version" => sink.scalar_text(item).is_some(),
            _ => sink.string(item).is_some(),
        };
    }
    if !ok {
        return None;
    }
    let registered = registered(entries);
    if registered.is_some() {
        // name + version with local_path (the 2021 flow files): registered; local_path is only
        // what az ml would upload.
        return registered;
    }
    let local = field(entries, "path").or_else(|| field(entries, "local_path"));
    if let Some(local) = local.and_then(|l| text(&l.value)) {
        return Some(AssetRef::Local {
            path: strip_file(&local),
        });
    }
    sink.error(e.key_pos, "model needs `name` and `version`, or a `path`");
    None
}

/// `environment: azureml:env:1` or an inline environment. Returns the asset and the image.
pub(crate) fn environment(sink: &mut Sink<'_>, e: &Entry) -> (Option<AssetRef>, Option<String>) {
    if let Kind::Scalar { .. } = e.value.kind {
        return (sink.string(e).map(|l| asset_from_string(&l.value)), None);
    }
    let Some(entries) = sink.mapping("environment", &e.value, "environment", &ENVIRONMENT_ASSET)
    else {
        return (None, None);
    };
    let mut image = None;
    let mut build_path = None;
    for item in entries {
        match item.key.as_str() {
            "tags" | "properties" => {
                sink.string_map(item);
            }
            "version" => {
                sink.scalar_text(item);
            }
            "os_type" => {
                sink.one_of(item, ENVIRONMENT_ASSET.allowed("os_type"));
            }
            "image" => image = sink.string(item).map(|l| l.value),
            "docker" => {
                if let Some(docker) = sink.mapping("docker", &item.value, "docker", &DOCKER) {
                    if let Some(i) = field(docker, "image") {
                        image = sink.string(i).map(|l| l.value);
                    }
                    if let Some(b) = field(docker, "build") {
                        sink.any_mapping("build", &b.value);
                    }
                }
            }
            "build" => {
                if let Some(build) = sink.mapping("build", &item.value, "build", &BUILD) {
                    for b in build {
                        let v = sink.string(b).map(|l| l.value);
                        if matches!(b.key.as_str(), "path" | "local_path") {
                            build_path = v;
                        }
                    }
                }
            }
            "inference_config" => inference_config(sink, &item.value),
            _ => {
                sink.string(item);
            }
        }
    }
    if let Some(asset) = registered(entries) {
        return (Some(asset), image);
    }
    // An inline environment: az ml would register it; flightdeck does not (the planner warns).
    let path = field(entries, "conda_file")
        .and_then(|c| text(&c.value))
        .or(build_path)
        .or_else(|| field(entries, "path").and_then(|p| text(&p.value)))
        .or_else(|| image.clone());
    match path {
        Some(path) => (
            Some(AssetRef::Local {
                path: strip_file(&path),
            }),
            image,
        ),
        None => {
            sink.error(
                e.key_pos,
                "environment needs `name` and `version`, an `image`, a `conda_file` or a `build`",
            );
            (None, image)
        }
    }
}

fn inference_config(sink: &mut Sink<'_>, node: &Node) {
    let Some(entries) = sink.mapping(
        "inference_config",
        node,
        "inference_config",
        &INFERENCE_CONFIG,
    ) else {
        return;
    };
    for route in entries {
        if let Some(r) = sink.mapping(&route.key, &route.value, &route.key, &ROUTE) {
            for f in r {
                if f.key == "port" {
                    sink.port(f);
                } else {
                    sink.string(f);
                }
            }
        }
    }
}

pub(crate) fn code_configuration(sink: &mut Sink<'_>, e: &Entry) -> Option<CodeConfiguration> {
    let entries = sink.mapping(&e.key, &e.value, "code_configuration", &CODE_CONFIGURATION)?;
    let script = match field(entries, "scoring_script") {
        Some(s) => sink.string(s).map(|l| l.value),
        None => {
            sink.error(e.key_pos, "code_configuration has no `scoring_script`");
            None
        }
    };
    let code = match field(entries, "code") {
        Some(c) if matches!(c.value.kind, Kind::Map(_)) => {
            let inner = sink.mapping("code", &c.value, "code", &CODE_ASSET)?;
            for item in inner {
                match item.key.as_str() {
                    "tags" => {
                        sink.string_map(item);
                    }
                    "version" => {
                        sink.scalar_text(item);
                    }
                    _ => {
                        sink.string(item);
                    }
                }
            }
            match field(inner, "local_path").and_then(|l| text(&l.value)) {
                Some(path) => Some(path),
                None => {
                    sink.error(c.key_pos, "code needs a `local_path`");
                    None
                }
            }
        }
        Some(c) => sink.string(c).map(|l| l.value),
        None => {
            sink.error(e.key_pos, "code_configuration has no `code`");
            None
        }
    };
    Some(CodeConfiguration {
        code: code?,
        scoring_script: script?,
    })
}

fn registered(entries: &[Entry]) -> Option<AssetRef> {
    let name = text(&field(entries, "name")?.value)?;
    let version = text(&field(entries, "version")?.value)?;
    Some(AssetRef::Registered { name, version })
}

/// A string reference: `file:` and `local:` paths are local, the rest goes to `AssetRef::parse`.
fn asset_from_string(s: &str) -> AssetRef {
    match s.strip_prefix("file:") {
        Some(path) => AssetRef::Local {
            path: path.to_string(),
        },
        None => AssetRef::parse(s),
    }
}

fn strip_file(path: &str) -> String {
    path.strip_prefix("file:").unwrap_or(path).to_string()
}

fn text(node: &Node) -> Option<String> {
    match &node.kind {
        Kind::Scalar { text, ty } if *ty != ScalarType::Null => Some(text.clone()),
        _ => None,
    }
}

/// Rewrites full ARM ids of models and environments registered in the target workspace
/// (`/subscriptions/S/resourceGroups/G/providers/Microsoft.MachineLearningServices/workspaces/W/models/N/versions/V`)
/// as `azureml:N:V`: the same asset, in the form the Azure ML backend reads back, so declaring
/// either form never shows up as a change. Ids of other workspaces and registries stay verbatim.
pub fn canonical_workspace_assets<'a>(
    target: &AzureMlTarget,
    endpoints: impl Iterator<Item = &'a mut Endpoint>,
) {
    let workspace = format!(
        "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.MachineLearningServices/workspaces/{}/",
        target.subscription_id, target.resource_group, target.workspace
    );
    let canonical = |asset: &mut Option<AssetRef>, kind: &str| {
        let Some(AssetRef::Id { id }) = asset else {
            return;
        };
        let prefix = format!("{workspace}{kind}/");
        let rest = match id.get(..prefix.len()) {
            Some(head) if head.eq_ignore_ascii_case(&prefix) => &id[prefix.len()..],
            _ => return,
        };
        if let [name, versions, version] = rest.split('/').collect::<Vec<_>>()[..]
            && versions.eq_ignore_ascii_case("versions")
            && !name.is_empty()
            && !version.is_empty()
        {
            *asset = Some(AssetRef::Registered {
                name: name.to_string(),
                version: version.to_string(),
            });
        }
    };
    for endpoint in endpoints {
        for d in endpoint.deployments.values_mut() {
            canonical(&mut d.settings.model, "models");
            canonical(&mut d.settings.environment, "environments");
        }
    }
}

#[cfg(test)]
mod canonical_tests {
    use super::*;
    use crate::model::{Deployment, DeploymentSettings, EndpointSettings};

    #[test]
    fn a_full_arm_id_in_the_target_workspace_is_the_registered_asset() {
        let target = AzureMlTarget {
            subscription_id: "sub".into(),
            resource_group: "rg".into(),
            workspace: "ws".into(),
            location: "westus2".into(),
        };
        let ws = "/subscriptions/sub/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces";
        let deployment = |model: String| Deployment {
            name: "blue".into(),
            settings: Box::new(DeploymentSettings {
                model: Some(AssetRef::parse(&model)),
                environment: Some(AssetRef::parse(&format!(
                    "{ws}/ws/environments/env/versions/3"
                ))),
                ..DeploymentSettings::default()
            }),
            test: None,
        };
        let mut endpoints = [
            Endpoint {
                name: "ep-one".into(),
                settings: EndpointSettings::default(),
                traffic: None,
                mirror_traffic: None,
                deployments: [(
                    "blue".into(),
                    deployment(format!("{ws}/ws/models/m/versions/2")),
                )]
                .into(),
            },
            Endpoint {
                name: "ep-two".into(),
                settings: EndpointSettings::default(),
                traffic: None,
                mirror_traffic: None,
                deployments: [(
                    "blue".into(),
                    deployment(format!("{ws}/other/models/m/versions/2")),
                )]
                .into(),
            },
        ];
        canonical_workspace_assets(&target, endpoints.iter_mut());
        let model = |i: usize| {
            endpoints[i].deployments["blue"]
                .settings
                .model
                .clone()
                .unwrap()
        };
        assert_eq!(model(0).to_string(), "azureml:m:2");
        assert_eq!(
            model(1).to_string(),
            format!("{ws}/other/models/m/versions/2")
        );
        let env = endpoints[0].deployments["blue"]
            .settings
            .environment
            .clone()
            .unwrap();
        assert_eq!(env.to_string(), "azureml:env:3");
    }
}
