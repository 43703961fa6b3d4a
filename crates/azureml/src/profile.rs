//! Azure ML as a platform profile (pure data): what the planner and the loader must know about
//! managed online endpoints. Rules are from the reference contract `reference/azureml/CONTRACT.md`.

use flightdeck_core::plan::profile::{
    CreateOnly, ForeignField, MirrorLimits, NameRules, Normalisation, PlatformProfile,
};

/// Fields of flightdeck's Kubernetes form, refused on Azure ML.
const FOREIGN: &[ForeignField] = &[
    ForeignField {
        field: "image",
        owner: "kubernetes",
        hint: " (on azureml, set `environment.image`)",
    },
    kubernetes("port"),
    kubernetes("resources"),
    kubernetes("liveness_probe.path"),
    kubernetes("liveness_probe.port"),
    kubernetes("readiness_probe.path"),
    kubernetes("readiness_probe.port"),
    // The production pod settings (issue #14); scaling on Azure ML is `scale_settings`
    // (target_utilization), a different thing, so `autoscaling` is not mapped onto it.
    ForeignField {
        field: "autoscaling",
        owner: "kubernetes",
        hint: " (on azureml, autoscaling is `scale_settings` or Azure Monitor autoscale)",
    },
    kubernetes("disruption_budget"),
    kubernetes("topology_spread"),
    kubernetes("termination_grace_period"),
    kubernetes("pre_stop"),
    kubernetes("security_context"),
    kubernetes("service_account"),
    kubernetes("image_pull_secrets"),
    kubernetes("node_selector"),
    kubernetes("tolerations"),
];

const fn kubernetes(field: &'static str) -> ForeignField {
    ForeignField {
        field,
        owner: "kubernetes",
        hint: "",
    }
}

/// Create-only deployment fields: `instanceType` and `codeConfiguration` are
/// `x-ms-mutability: create, read` [AML R13].
pub const CREATE_ONLY: CreateOnly = CreateOnly {
    fields: &["instance_type", "code_configuration"],
    citation: "[AML R13]",
};

pub const PROFILE: PlatformProfile = PlatformProfile {
    name: "azureml",
    foreign_fields: FOREIGN,
    required_fields: &[],
    create_only: CREATE_ONLY,
    // Names are 3–32 characters, start with a letter, letters, digits and `-` only [AML §1].
    names: NameRules {
        min_len: 3,
        max_len: 32,
        lowercase: false,
        object_name: None,
    },
    // One mirrored deployment [AML R4], at most 50% [AML R3], never one with live traffic
    // [AML R5].
    mirror: MirrorLimits {
        max_deployments: 1,
        max_percent: 50,
        exclusive_citation: "[AML R5]: live or mirror traffic, not both",
        shift_drops_mirror: false,
    },
    values: Normalisation {
        // The image belongs to the environment asset and cannot be read back separately
        // [AML §2.6].
        image_in_environment: true,
        // Registered code is `azureml:NAME:VERSION` or an ARM id [AML §2.6].
        registered_asset_prefixes: &["azureml:", "/subscriptions/"],
        workspace_asset_ids: true,
    },
};
