//! Kubernetes as a platform profile (pure data): what the planner and the loader must know about
//! flightdeck's Kubernetes mapping (docs/kubernetes.md, `reference/k8s/CONTRACT.md`).

use flightdeck_core::plan::profile::{
    CreateOnly, ForeignField, MirrorLimits, NameRules, Normalisation, ObjectName, PlatformProfile,
};

const fn azureml(field: &'static str) -> ForeignField {
    ForeignField {
        field,
        owner: "azureml",
        hint: "",
    }
}

/// Deployment fields that only Azure ML understands.
const FOREIGN: &[ForeignField] = &[
    azureml("instance_type"),
    azureml("code_configuration"),
    azureml("environment"),
    azureml("scale_settings"),
    azureml("model_mount_path"),
    azureml("app_insights_enabled"),
    azureml("egress_public_network_access"),
];

pub const PROFILE: PlatformProfile = PlatformProfile {
    name: "kubernetes",
    foreign_fields: FOREIGN,
    // A version is a Deployment of `image` behind a Service on `port` (docs/kubernetes.md).
    required_fields: &["image", "port"],
    // Every field of a Deployment's pod template can change in place (a rollout).
    create_only: CreateOnly {
        fields: &[],
        citation: "",
    },
    // Object names are lowercase and do not end with `-`; each version's Deployment and Service
    // are named `ENDPOINT-DEPLOYMENT`, and a Service name is a DNS-1035 label
    // (`[a-z]([-a-z0-9]*[a-z0-9])?`, at most 63 characters; docs/kubernetes.md "Mapping").
    names: NameRules {
        min_len: 3,
        max_len: 32,
        lowercase: true,
        object_name: Some(ObjectName {
            max_len: 63,
            why: "Service names are DNS-1035 labels",
        }),
    },
    // The routers could mirror more ([K8S §1]: `mirrors[]`, [K8S §2]: `RequestMirror` may
    // repeat), but the format is the same on every target: one mirrored deployment, at most 50%,
    // never one that takes live traffic.
    mirror: MirrorLimits {
        max_deployments: 1,
        max_percent: 50,
        exclusive_citation: "live or mirror traffic, not both",
        // The mirror is a field of the split rule ([K8S §1] `mirror`/`mirrorPercentage`,
        // [K8S §2] the `RequestMirror` filter), written with the weights in one apply.
        shift_drops_mirror: true,
    },
    values: Normalisation {
        image_in_environment: false,
        registered_asset_prefixes: &[],
        workspace_asset_ids: false,
    },
};
