//! What a platform is, as data: which deployment fields it understands, which it cannot change
//! in place, its name rules, its mirror limits and how it normalises values. Each backend module
//! exports one (`backend::azureml::PROFILE`, `backend::kubernetes::PROFILE`, ...); `validate`
//! and the planner receive it as an argument, so neither names a platform. Pure data: no I/O.

use crate::model::Target;

/// A platform's rules, as the loader and the planner need them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlatformProfile {
    /// The target kind as users write it (`azureml`, `kubernetes`, `state_file`).
    pub name: &'static str,
    /// Deployment fields of the format that this platform does not understand: refused.
    pub foreign_fields: &'static [ForeignField],
    /// Deployment fields this platform cannot do without.
    pub required_fields: &'static [&'static str],
    /// Fields that cannot change on an existing deployment: a change recreates it when it is
    /// idle and is refused while it takes traffic.
    pub create_only: CreateOnly,
    pub names: NameRules,
    pub mirror: MirrorLimits,
    pub values: Normalisation,
}

/// A field that belongs to another platform, and what to tell the user who wrote it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ForeignField {
    /// The key as written: `instance_type`, or a subfield like `readiness_probe.path`.
    pub field: &'static str,
    /// The platform that does understand it (`is only for {owner} targets`).
    pub owner: &'static str,
    /// Appended to the message: where the setting lives on this platform, or empty.
    pub hint: &'static str,
}

/// Create-only fields with the rule that makes them so.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CreateOnly {
    pub fields: &'static [&'static str],
    /// The contract rule cited in refusals (the backend's profile names it).
    pub citation: &'static str,
}

impl CreateOnly {
    /// Whether a change of `field` (`code_configuration.code` counts for `code_configuration`)
    /// needs a new deployment.
    pub fn covers(&self, field: &str) -> bool {
        self.fields.iter().any(|f| {
            field == *f
                || field
                    .strip_prefix(f)
                    .is_some_and(|rest| rest.starts_with('.'))
        })
    }
}

/// Names of endpoints, deployments and environments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NameRules {
    /// Shortest and longest name, in characters.
    pub min_len: usize,
    pub max_len: usize,
    /// Names must be lowercase and must not end with `-`.
    pub lowercase: bool,
    /// The object names the platform derives from `ENDPOINT-DEPLOYMENT`, if it derives any.
    pub object_name: Option<ObjectName>,
}

/// A platform object named `ENDPOINT-DEPLOYMENT`, and the longest such name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ObjectName {
    pub max_len: usize,
    /// Why, for the message: "Service names are DNS-1035 labels".
    pub why: &'static str,
}

/// How much traffic may be mirrored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MirrorLimits {
    /// Deployments that may get mirror traffic at once.
    pub max_deployments: usize,
    /// The largest sum of mirror percentages.
    pub max_percent: u32,
    /// The rule that a deployment gets live or mirror traffic, never both, as cited in refusals.
    pub exclusive_citation: &'static str,
    /// Live weights and mirrors are fields of one object written whole (a router's split rule
    /// on Kubernetes), so the shift that gives a mirrored deployment live weight drops its
    /// mirror in the same write, and no separate "stop mirroring" step comes before it. Where
    /// they are separate writes (Azure ML's endpoint traffic and mirror, [AML R5]) the mirror
    /// is removed first, in its own step.
    pub shift_drops_mirror: bool,
}

/// How the platform stores values, so that a declared value and its read-back form compare
/// equal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Normalisation {
    /// The container image belongs to the environment asset: with an environment declared,
    /// a deployment's own `image` is not compared (nor shown by `diff`).
    pub image_in_environment: bool,
    /// Prefixes of registered asset references (`code_configuration.code`); any other value is
    /// a local path that flightdeck does not upload.
    pub registered_asset_prefixes: &'static [&'static str],
    /// Workspace asset ids are read back as `azureml:NAME:VERSION`.
    pub workspace_asset_ids: bool,
}

/// The rules shared by every platform, used when no target is known (single files checked
/// without an `environment.yaml`): names of 3–32 characters, one mirrored deployment at most
/// 50%, nothing create-only, every field understood.
pub const NEUTRAL: PlatformProfile = PlatformProfile {
    name: "any",
    foreign_fields: &[],
    required_fields: &[],
    create_only: CreateOnly {
        fields: &[],
        citation: "",
    },
    names: NameRules {
        min_len: 3,
        max_len: 32,
        lowercase: false,
        object_name: None,
    },
    mirror: MirrorLimits {
        max_deployments: 1,
        max_percent: 50,
        exclusive_citation: "live or mirror traffic, not both",
        shift_drops_mirror: false,
    },
    values: Normalisation {
        image_in_environment: false,
        registered_asset_prefixes: &[],
        workspace_asset_ids: false,
    },
};

/// Picks the profile of a target. The core never names the backends; the edges (CLI, agent)
/// pass `backend::profile_of`.
pub type ProfileOf = fn(&Target) -> &'static PlatformProfile;

impl PlatformProfile {
    /// Whether the platform understands the deployment field `field` as written.
    pub fn understands(&self, field: &str) -> bool {
        self.foreign(field).is_none()
    }

    pub fn foreign(&self, field: &str) -> Option<&ForeignField> {
        self.foreign_fields.iter().find(|f| f.field == field)
    }

    /// Whether `code` names a registered asset rather than a local path.
    pub fn is_registered_asset(&self, code: &str) -> bool {
        self.values
            .registered_asset_prefixes
            .iter()
            .any(|p| code.starts_with(p))
    }

    /// Why `name` is not a valid name of a `kind` (endpoint, deployment, environment).
    pub fn name_problem(&self, kind: &str, name: &str) -> Option<String> {
        let rules = &self.names;
        let len = name.chars().count();
        if !(rules.min_len..=rules.max_len).contains(&len) {
            return Some(format!(
                "{kind} name `{name}` must be {} to {} characters long, found {len}",
                rules.min_len, rules.max_len
            ));
        }
        if !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
            return Some(format!("{kind} name `{name}` must start with a letter"));
        }
        if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Some(format!(
                "{kind} name `{name}` may contain only letters, digits and `-`"
            ));
        }
        if rules.lowercase && (name.chars().any(|c| c.is_ascii_uppercase()) || name.ends_with('-'))
        {
            return Some(format!(
                "{kind} name `{name}` must be lowercase and not end with `-` on {} targets",
                self.name
            ));
        }
        None
    }

    /// Why the object named `ENDPOINT-DEPLOYMENT` cannot exist on this platform.
    pub fn object_name_problem(&self, endpoint: &str, deployment: &str) -> Option<String> {
        let limit = self.names.object_name?;
        let object = format!("{endpoint}-{deployment}");
        (object.len() > limit.max_len).then(|| {
            format!(
                "deployment `{deployment}` of endpoint `{endpoint}` would be named `{object}` on \
                 {}, {} characters; {} of at most {}: shorten the endpoint or deployment name",
                self.name,
                object.len(),
                limit.why,
                limit.max_len
            )
        })
    }

    /// Why a mirror split naming `deployments` positive entries summing to `sum` is refused.
    pub fn mirror_problems(&self, deployments: usize, sum: Option<i64>) -> Vec<String> {
        let limits = &self.mirror;
        let mut out = Vec::new();
        if deployments > limits.max_deployments {
            let most = match limits.max_deployments {
                1 => "only one deployment".to_string(),
                n => format!("at most {n} deployments"),
            };
            out.push(format!(
                "mirror_traffic can name {most}, found {deployments}"
            ));
        }
        if let Some(sum) = sum.filter(|s| *s > i64::from(limits.max_percent)) {
            out.push(format!(
                "mirror_traffic sums to {sum}, at most {} is allowed",
                limits.max_percent
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subfield_of_a_create_only_field_is_create_only_but_a_longer_name_is_not() {
        let c = CreateOnly {
            fields: &["code_configuration"],
            citation: "R",
        };
        assert!(c.covers("code_configuration"));
        assert!(c.covers("code_configuration.code"));
        assert!(!c.covers("code_configuration_x"));
        assert!(!c.covers("instance_type"));
    }

    #[test]
    fn the_neutral_profile_checks_length_and_characters_but_not_case() {
        assert_eq!(NEUTRAL.name_problem("endpoint", "Blue-1"), None);
        assert_eq!(
            NEUTRAL.name_problem("endpoint", "ab").as_deref(),
            Some("endpoint name `ab` must be 3 to 32 characters long, found 2")
        );
        assert!(NEUTRAL.object_name_problem(&"a".repeat(40), "b").is_none());
    }

    #[test]
    fn mirror_limits_come_from_the_profile() {
        let two = PlatformProfile {
            mirror: MirrorLimits {
                max_deployments: 2,
                max_percent: 20,
                ..NEUTRAL.mirror
            },
            ..NEUTRAL
        };
        assert!(two.mirror_problems(2, Some(20)).is_empty());
        assert_eq!(
            two.mirror_problems(3, Some(21)),
            [
                "mirror_traffic can name at most 2 deployments, found 3",
                "mirror_traffic sums to 21, at most 20 is allowed"
            ]
        );
    }
}
