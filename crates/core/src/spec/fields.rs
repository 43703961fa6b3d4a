//! The one description of every field of the environment format: endpoint, deployment (managed,
//! Kubernetes and the 2021 combined form) and `environment.yaml`.
//!
//! This table is data. Three things read it:
//! - the located loader (`raw*.rs`, `assets.rs`): the known-field list of every mapping, its
//!   did-you-mean candidates and the allowed values of enums;
//! - the JSON Schema generator (`spec::schema`, `flightdeck schema --out schemas/`);
//! - the comparison (`plan::compare`): which settings are compared, in which order, and whether a
//!   setting is compared whole or subfield by subfield.
//!
//! Adding a field is one entry here, its mapping in each platform backend and a test.

/// Which deployment forms a field belongs to (a bit set).
pub type Forms = u8;
/// The az ml managed online deployment file (`deployment.schema.json`).
pub const MANAGED: Forms = 1;
/// flightdeck's Kubernetes deployment (`kubernetes-deployment.schema.json`).
pub const KUBERNETES: Forms = 2;
/// A deployment embedded in an endpoint file (2021 combined form), which may be either.
pub const COMBINED: Forms = 4;
pub const ALL: Forms = MANAGED | KUBERNETES | COMBINED;
const AZURE: Forms = MANAGED | COMBINED;
const K8S: Forms = KUBERNETES | COMBINED;

/// How the planner compares a declared setting with the live one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compare {
    /// Not compared (checked for shape only, or folded into another setting).
    No,
    /// Compared as one value: maps are compared whole, because removing a key from a declared
    /// map is a change the user means.
    Whole,
    /// Compared subfield by subfield (only the declared subfields); when the live setting is
    /// absent the whole setting is one change. A full replace keeps live subfields.
    Nested,
}

/// The type of a value, as the loader checks it and as the JSON Schema states it.
#[derive(Clone, Copy, Debug)]
pub enum Ty {
    Str,
    /// A string matching a regular expression (the loader checks the same rule in code).
    Pattern(&'static str),
    /// An integer in `min..=max`.
    Int(i64, Option<i64>),
    Bool,
    Enum(&'static [&'static str]),
    /// `version: 1` or `version: "1"`.
    StrOrInt,
    /// Names to scalar values (tags, environment variables).
    ScalarMap,
    /// A mapping whose content flightdeck does not read.
    AnyObject,
    Object(&'static Obj),
    /// A shared object, named in [`DEFS`] (`$defs` in the schemas).
    Ref(&'static str),
    AnyOf(&'static [Ty]),
    List(&'static Ty),
    /// Free keys, each value this object (`tests:`).
    MapOf(&'static Obj),
    /// Percent per deployment (`traffic`, `mirror_traffic`): integers `0..=max`, or null.
    Weights(i64),
    /// Kubernetes resource quantities by resource name (compared by value, `plan::quantity`).
    Quantities,
    /// A list of the setting names `drift.ignore` accepts: every compared field.
    DriftNames,
    /// A duration as `humantime` reads it: `30s`, `5m`, `1h 30m`.
    Duration,
    /// Free keys, each value of this type (`rollout.endpoints`).
    Map(&'static Ty),
}

/// One field of a mapping.
#[derive(Clone, Copy, Debug)]
pub struct Field {
    /// The YAML key.
    pub name: &'static str,
    pub ty: Ty,
    pub doc: &'static str,
    pub compare: Compare,
    /// The deployment forms that have the field (other objects: [`ALL`]).
    pub forms: Forms,
    /// The forms in which the field is required.
    pub required: Forms,
    /// Another spelling of this setting the loader accepts (`allow_public_access` is the 2021
    /// preview spelling of `public_network_access`).
    pub alias_of: Option<&'static str>,
    /// One of a group of alternatives of which exactly one must be present (a test's
    /// `request_file`, `request_files`, `request_dir`).
    pub alternative: bool,
    /// Undeclared means "none" rather than "not managed": a live value with no declared one is
    /// a change that removes it (`autoscaling`, `disruption_budget`: objects of their own).
    pub absent_removes: bool,
}

const fn f(name: &'static str, ty: Ty) -> Field {
    Field {
        name,
        ty,
        doc: "",
        compare: Compare::No,
        forms: ALL,
        required: 0,
        alias_of: None,
        alternative: false,
        absent_removes: false,
    }
}

impl Field {
    const fn doc(self, doc: &'static str) -> Self {
        Field { doc, ..self }
    }
    const fn alternative(self) -> Self {
        Field {
            alternative: true,
            ..self
        }
    }
    const fn absent_removes(self) -> Self {
        Field {
            absent_removes: true,
            ..self
        }
    }
    const fn whole(self) -> Self {
        Field {
            compare: Compare::Whole,
            ..self
        }
    }
    const fn nested(self) -> Self {
        Field {
            compare: Compare::Nested,
            ..self
        }
    }
    const fn only(self, forms: Forms) -> Self {
        Field { forms, ..self }
    }
    const fn req(self) -> Self {
        Field {
            required: ALL,
            ..self
        }
    }
    const fn req_in(self, required: Forms) -> Self {
        Field { required, ..self }
    }
    const fn alias_of(self, name: &'static str) -> Self {
        Field {
            alias_of: Some(name),
            ..self
        }
    }

    /// The allowed values of an enum field (empty for other types).
    pub fn allowed(&self) -> &'static [&'static str] {
        match self.ty {
            Ty::Enum(values) => values,
            _ => &[],
        }
    }

    /// The object a nested or object-typed field holds, resolving shared definitions.
    pub fn object(&self) -> Option<&'static Obj> {
        match self.ty {
            Ty::Object(obj) | Ty::MapOf(obj) => Some(obj),
            Ty::Ref(name) => def(name),
            _ => None,
        }
    }

    /// `min..=max` of an integer field.
    pub fn range(&self) -> Option<(i64, i64)> {
        match self.ty {
            Ty::Int(min, max) => Some((min, max.unwrap_or(i64::MAX))),
            _ => None,
        }
    }
}

/// A mapping: its fields, whether it may carry the `$schema` editor hint, and its doc text.
#[derive(Debug)]
pub struct Obj {
    pub fields: &'static [Field],
    /// Whether `$schema` (an editor hint, ignored) is accepted.
    pub schema_key: bool,
    /// Exactly one of the fields must be present (`target:`).
    pub exactly_one: bool,
    pub doc: &'static str,
}

const fn obj(fields: &'static [Field]) -> Obj {
    Obj {
        fields,
        schema_key: false,
        exactly_one: false,
        doc: "",
    }
}

const fn file_obj(fields: &'static [Field], doc: &'static str) -> Obj {
    Obj {
        fields,
        schema_key: true,
        exactly_one: false,
        doc,
    }
}

impl Obj {
    /// The field names the loader accepts, each once, in table order.
    pub fn names(&self) -> Vec<&'static str> {
        let mut out: Vec<&'static str> = Vec::with_capacity(self.fields.len());
        for field in self.fields {
            if !out.contains(&field.name) {
                out.push(field.name);
            }
        }
        out
    }

    /// The first entry named `name`.
    pub fn field(&self, name: &str) -> Option<&'static Field> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// The allowed values of the enum field `name`.
    pub fn allowed(&self, name: &str) -> &'static [&'static str] {
        self.field(name).map(Field::allowed).unwrap_or(&[])
    }

    /// The fields compared by the planner, each once, in table (and so in report) order.
    pub fn compared(&self) -> impl Iterator<Item = &'static Field> + '_ {
        self.fields.iter().enumerate().filter_map(|(i, f)| {
            let first = !self.fields[..i].iter().any(|g| g.name == f.name);
            (first && f.compare != Compare::No).then_some(&self.fields[i])
        })
    }
}

/// The shared objects, by name (`$defs` in the schemas).
pub fn def(name: &str) -> Option<&'static Obj> {
    DEFS.iter().find(|(n, _)| *n == name).map(|(_, o)| *o)
}

/// The setting names `drift.ignore` accepts: every field the planner compares.
pub fn drift_names() -> Vec<&'static str> {
    let mut out = ENDPOINT.compared().map(|f| f.name).collect::<Vec<_>>();
    for name in DEPLOYMENT.compared().map(|f| f.name) {
        if !out.contains(&name) {
            out.push(name);
        }
    }
    out
}

const NAME_PATTERN: &str = "^[A-Za-z][A-Za-z0-9-]{2,31}$";
const NAME_DOC: &str = "3-32 characters: letters, digits and '-', starting with a letter.";
const SCALARS: Ty = Ty::ScalarMap;

// --- Endpoint file: today's az ml endpoint YAML plus the 2021 preview (`type`, `deployments`,
// `allow_public_access`). [AML §2.2] [AML §2.6]

pub static ENDPOINT: Obj = file_obj(
    &[
        f("name", Ty::Pattern(NAME_PATTERN)).doc(NAME_DOC).req(),
        f("auth_mode", Ty::Enum(&["key", "aml_token", "aad_token"])).whole(),
        f("description", Ty::Str).whole(),
        f("tags", SCALARS).whole(),
        f("public_network_access", Ty::Enum(ENABLED_DISABLED)).whole(),
        f("traffic", Ty::Weights(100))
            .doc("Percent of live traffic per deployment; sums to 100, or all 0. Absent: traffic is not managed.")
            .whole(),
        f("mirror_traffic", Ty::Weights(50))
            .doc("Percent of traffic mirrored to one deployment (at most 50, never one with live traffic).")
            .whole(),
        f("allow_public_access", Ty::Bool)
            .doc("2021 preview spelling of public_network_access.")
            .alias_of("public_network_access"),
        f("identity", Ty::Object(&IDENTITY)),
        f("kind", Ty::Str),
        f("compute", Ty::Str),
        f("properties", SCALARS),
        f("type", Ty::Enum(&["online"])),
        f("deployments", Ty::List(&Ty::Ref("deployment")))
            .doc("2021 combined form: deployments embedded in the endpoint."),
    ],
    "An online endpoint file: the current split form (endpoint.yml) or the 2021 combined form with embedded deployments.",
);

const ENABLED_DISABLED: &[&str] = &["enabled", "disabled"];

pub static IDENTITY: Obj = obj(&[
    f(
        "type",
        Ty::Enum(&[
            "system_assigned",
            "user_assigned",
            "system_assigned,user_assigned",
            "none",
        ]),
    ),
    f(
        "user_assigned_identities",
        Ty::AnyOf(&[Ty::List(&Ty::Object(&USER_IDENTITY)), Ty::AnyObject]),
    ),
]);

pub static USER_IDENTITY: Obj = obj(&[
    f("resource_id", Ty::Str),
    f("principal_id", Ty::Str),
    f("client_id", Ty::Str),
]);

// --- Deployment: az ml managed and Kubernetes deployments (current and 2021 preview,
// schemas-2021-11-cli-v2-preview) plus flightdeck's Kubernetes form (`image`, `port`,
// `resources`). [AML §2.3] [AML §2.6]. Compared fields are listed in the order plans report them.

pub static DEPLOYMENT: Obj = file_obj(
    &[
        f("name", Ty::Pattern(NAME_PATTERN)).doc(NAME_DOC).req(),
        f("endpoint_name", Ty::Pattern(NAME_PATTERN))
            .doc(NAME_DOC)
            .req_in(MANAGED | KUBERNETES),
        f("type", Ty::Enum(&["managed", "kubernetes"])),
        f("description", Ty::Str).whole(),
        f("tags", SCALARS).whole(),
        f("model", Ty::AnyOf(&[Ty::Str, Ty::Ref("model")]))
            .doc("azureml:<name>:<version>, an asset id, or a mapping.")
            .whole()
            .only(AZURE),
        f("model", Ty::AnyOf(&[Ty::Str, Ty::Ref("model")]))
            .doc("Kept as a label only.")
            .whole()
            .only(KUBERNETES),
        // ARM `modelMountPath` (OnlineDeploymentProperties, no x-ms-mutability: updatable). [AML §2.3]
        f("model_mount_path", Ty::Str)
            .doc("Where the model is mounted in the container (custom containers).")
            .whole()
            .only(AZURE),
        f("environment", Ty::AnyOf(&[Ty::Str, Ty::Ref("environment")]))
            .doc("azureml:<name>:<version>, an asset id, or an inline environment.")
            .whole()
            .only(AZURE),
        f("image", Ty::Str)
            .doc("Container image of the model server.")
            .whole()
            .only(K8S)
            .req_in(KUBERNETES),
        f("code_configuration", Ty::Ref("code_configuration"))
            .whole()
            .only(AZURE),
        f("instance_type", Ty::Str)
            .doc("Create-only on Azure ML.")
            .whole()
            .only(AZURE),
        f("instance_count", Ty::Int(1, Some(100)))
            .doc("Number of instances (replicas on Kubernetes).")
            .whole(),
        f("environment_variables", SCALARS).whole(),
        f("request_settings", Ty::Ref("request_settings")).nested(),
        f("liveness_probe", Ty::Ref("k8s_probe")).nested().only(K8S),
        f("liveness_probe", Ty::Ref("probe")).nested().only(MANAGED),
        f("readiness_probe", Ty::Ref("k8s_probe"))
            .nested()
            .only(K8S),
        f("readiness_probe", Ty::Ref("probe"))
            .nested()
            .only(MANAGED),
        f("port", Ty::Int(1, Some(65535)))
            .doc("Container port the model server listens on.")
            .whole()
            .only(K8S)
            .req_in(KUBERNETES),
        f("resources", Ty::Ref("resources")).nested().only(K8S),
        // Production pod settings (issue #14), Kubernetes only; docs/kubernetes.md "Production
        // settings". Compared whole: removing a subfield is a change the user means.
        f("autoscaling", Ty::Object(&AUTOSCALING))
            .doc("A HorizontalPodAutoscaler (autoscaling/v2); while declared it owns the replica count and instance_count is ignored. Removing it deletes the HPA.")
            .whole()
            .absent_removes()
            .only(K8S),
        f("disruption_budget", Ty::Object(&DISRUPTION_BUDGET))
            .doc("A PodDisruptionBudget (policy/v1); removing it deletes the budget.")
            .whole()
            .absent_removes()
            .only(K8S),
        f("topology_spread", Ty::List(&Ty::Object(&TOPOLOGY_SPREAD)))
            .doc("topologySpreadConstraints over the version's pod labels.")
            .whole()
            .only(K8S),
        f("termination_grace_period", Ty::Int(0, Some(3600)))
            .doc("terminationGracePeriodSeconds: seconds between SIGTERM and SIGKILL.")
            .whole()
            .only(K8S),
        f("pre_stop", Ty::Object(&PRE_STOP))
            .doc("The container's preStop hook: sleep seconds, or run a command.")
            .whole()
            .only(K8S),
        f("security_context", Ty::Object(&SECURITY_CONTEXT))
            .doc("The model container's security context; always allowPrivilegeEscalation: false.")
            .whole()
            .only(K8S),
        f("service_account", Ty::Pattern(DNS_SUBDOMAIN))
            .doc("The pod's service account name.")
            .whole()
            .only(K8S),
        f("image_pull_secrets", Ty::List(&Ty::Pattern(DNS_SUBDOMAIN)))
            .doc("Names of Secrets holding registry credentials (names only).")
            .whole()
            .only(K8S),
        f("node_selector", SCALARS)
            .doc("Node labels the pods must run on, e.g. {nvidia.com/gpu.present: \"true\"}.")
            .whole()
            .only(K8S),
        f("tolerations", Ty::List(&Ty::Object(&TOLERATION)))
            .doc("Taints the pods tolerate (e.g. GPU nodes' nvidia.com/gpu:NoSchedule).")
            .whole()
            .only(K8S),
        f("scale_settings", Ty::Ref("scale_settings")).only(AZURE),
        f("properties", SCALARS),
        f("app_insights_enabled", Ty::Bool).only(AZURE),
        f("egress_public_network_access", Ty::Enum(ENABLED_DISABLED)).only(AZURE),
    ],
    "",
);

/// Shared objects, in `$defs` order.
pub static DEFS: &[(&str, &Obj)] = &[
    ("model", &MODEL),
    ("environment", &ENVIRONMENT_ASSET),
    ("code_configuration", &CODE_CONFIGURATION),
    ("scale_settings", &SCALE_SETTINGS),
    ("request_settings", &REQUEST_SETTINGS),
    ("probe", &PROBE),
    ("k8s_probe", &K8S_PROBE),
    ("resources", &RESOURCES),
    ("deployment", &DEPLOYMENT),
];

pub static MODEL: Obj = file_obj(
    &[
        f("name", Ty::Str),
        f("version", Ty::StrOrInt),
        f("path", Ty::Str),
        f("local_path", Ty::Str),
        f("description", Ty::Str),
        f("tags", SCALARS),
        f("type", Ty::Str),
        f("properties", SCALARS),
        f("flavors", Ty::AnyObject),
        f("datastore", Ty::Str),
        f("model_format", Ty::Str),
        f("model_uri", Ty::Str),
    ],
    "name + version: a registered model (local_path is ignored); otherwise path/local_path: a local model flightdeck will not upload.",
);

pub static ENVIRONMENT_ASSET: Obj = file_obj(
    &[
        f("name", Ty::Str),
        f("version", Ty::StrOrInt),
        f("path", Ty::Str),
        f("conda_file", Ty::Str),
        f("docker", Ty::Object(&DOCKER)),
        f("image", Ty::Str),
        f("build", Ty::Object(&BUILD)),
        f("description", Ty::Str),
        f("tags", SCALARS),
        f("os_type", Ty::Enum(&["linux", "windows"])),
        f("inference_config", Ty::Object(&INFERENCE_CONFIG)),
        f("properties", SCALARS),
    ],
    "",
);

pub static DOCKER: Obj = obj(&[f("image", Ty::Str), f("build", Ty::AnyObject)]);

pub static BUILD: Obj = obj(&[
    f("path", Ty::Str),
    f("local_path", Ty::Str),
    f("dockerfile_path", Ty::Str),
    f("context_uri", Ty::Str),
]);

pub static INFERENCE_CONFIG: Obj = obj(&[
    f("liveness_route", Ty::Object(&ROUTE)),
    f("readiness_route", Ty::Object(&ROUTE)),
    f("scoring_route", Ty::Object(&ROUTE)),
]);

pub static ROUTE: Obj = obj(&[
    f("path", Ty::Str).req(),
    f("port", Ty::Int(1, Some(65535))).req(),
]);

pub static CODE_CONFIGURATION: Obj = file_obj(
    &[
        f("code", Ty::AnyOf(&[Ty::Str, Ty::Object(&CODE_ASSET)])).req(),
        f("scoring_script", Ty::Str).req(),
    ],
    "Create-only on Azure ML.",
);

pub static CODE_ASSET: Obj = file_obj(
    &[
        f("local_path", Ty::Str).req(),
        f("name", Ty::Str),
        f("version", Ty::StrOrInt),
        f("description", Ty::Str),
        f("tags", SCALARS),
    ],
    "",
);

pub static SCALE_SETTINGS: Obj = Obj {
    fields: &[
        f("type", Ty::Enum(&["default", "target_utilization"])),
        f("scale_type", Ty::Enum(&["manual", "auto"])),
        f("instance_count", Ty::Int(1, Some(100)))
            .doc("2021 preview spelling of the deployment's instance_count.")
            .alias_of("instance_count"),
        f("min_instances", Ty::Int(0, Some(100))),
        f("max_instances", Ty::Int(1, Some(100))),
        f("polling_interval", Ty::Int(0, None)),
        f("target_utilization_percentage", Ty::Int(1, Some(100))),
    ],
    schema_key: false,
    exactly_one: false,
    doc: "Current form: {type: default|target_utilization}; 2021 preview: {scale_type: manual, instance_count, min_instances, max_instances}.",
};

pub static REQUEST_SETTINGS: Obj = obj(&[
    f("request_timeout_ms", Ty::Int(0, None)),
    f("max_concurrent_requests_per_instance", Ty::Int(0, None)),
    f("max_queue_wait_ms", Ty::Int(0, None)),
]);

const PROBE_TIMES: [Field; 5] = [
    f("initial_delay", Ty::Int(0, None)),
    f("period", Ty::Int(0, None)),
    f("timeout", Ty::Int(0, None)),
    f("failure_threshold", Ty::Int(0, None)),
    f("success_threshold", Ty::Int(0, None)),
];

pub static PROBE: Obj = Obj {
    fields: &PROBE_TIMES,
    schema_key: false,
    exactly_one: false,
    doc: "Times in seconds.",
};

pub static K8S_PROBE: Obj = Obj {
    fields: &[
        PROBE_TIMES[0],
        PROBE_TIMES[1],
        PROBE_TIMES[2],
        PROBE_TIMES[3],
        PROBE_TIMES[4],
        f("path", Ty::Pattern("^/")),
        f("port", Ty::Int(1, Some(65535))),
    ],
    schema_key: false,
    exactly_one: false,
    doc: "HTTP GET probe; times in seconds. port defaults to the deployment's port.",
};

pub static RESOURCES: Obj = Obj {
    fields: &[f("requests", Ty::Quantities), f("limits", Ty::Quantities)],
    schema_key: false,
    exactly_one: false,
    doc: "Kubernetes quantities, e.g. cpu: 500m, memory: 2Gi.",
};

/// A Kubernetes object name (DNS-1123 subdomain).
pub const DNS_SUBDOMAIN: &str = "^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$";

pub static AUTOSCALING: Obj = Obj {
    fields: &[
        f("min_instances", Ty::Int(1, Some(1000))).req(),
        f("max_instances", Ty::Int(1, Some(1000))).req(),
        f("target_cpu_utilization_percentage", Ty::Int(1, Some(100))),
        f(
            "target_memory_utilization_percentage",
            Ty::Int(1, Some(100)),
        ),
    ],
    schema_key: false,
    exactly_one: false,
    doc: "min_instances <= max_instances; at least one utilization target (percent of the resource requests).",
};

/// A count or a percentage (`1`, `"50%"`).
const COUNT_OR_PERCENT: Ty = Ty::AnyOf(&[Ty::Int(0, None), Ty::Pattern("^[0-9]+%$")]);

pub static DISRUPTION_BUDGET: Obj = Obj {
    fields: &[
        f("min_available", COUNT_OR_PERCENT),
        f("max_unavailable", COUNT_OR_PERCENT),
    ],
    schema_key: false,
    exactly_one: true,
    doc: "Exactly one of min_available, max_unavailable: a count or a percentage.",
};

pub static TOPOLOGY_SPREAD: Obj = obj(&[
    f("across", Ty::Enum(&["nodes", "zones"]))
        .doc("nodes: kubernetes.io/hostname; zones: topology.kubernetes.io/zone.")
        .req(),
    f("max_skew", Ty::Int(1, Some(100))).doc("Default 1."),
    f(
        "when_unsatisfiable",
        Ty::Enum(&["DoNotSchedule", "ScheduleAnyway"]),
    )
    .doc("Default DoNotSchedule (a hard rule)."),
]);

pub static PRE_STOP: Obj = Obj {
    fields: &[
        f("sleep", Ty::Int(1, Some(3600))).doc("Seconds (the kubelet's sleep action)."),
        f("command", Ty::List(&Ty::Str)).doc("A command run in the container (exec)."),
    ],
    schema_key: false,
    exactly_one: true,
    doc: "Exactly one of sleep, command.",
};

pub static SECURITY_CONTEXT: Obj = obj(&[
    f("run_as_non_root", Ty::Bool),
    f("run_as_user", Ty::Int(0, Some(2_147_483_647))),
    f("read_only_root_filesystem", Ty::Bool),
    f("drop_capabilities", Ty::List(&Ty::Pattern("^[A-Z_]+$")))
        .doc("Linux capabilities to drop; default [ALL]."),
]);

pub static TOLERATION: Obj = obj(&[
    f("key", Ty::Str),
    f("operator", Ty::Enum(&["Equal", "Exists"])),
    f("value", Ty::Str),
    f(
        "effect",
        Ty::Enum(&["NoSchedule", "PreferNoSchedule", "NoExecute"]),
    ),
    f("toleration_seconds", Ty::Int(0, None)),
]);

/// Resource names the loader knows; others need a `/` (extended resources) or `hugepages-`.
pub const RESOURCE_NAMES: &[&str] = &["cpu", "memory", "ephemeral-storage"];

// --- environment.yaml

pub static ENVIRONMENT: Obj = file_obj(
    &[
        f("name", Ty::Pattern(NAME_PATTERN)).doc(NAME_DOC).req(),
        f("target", Ty::Object(&TARGET))
            .doc("Exactly one of azureml, kubernetes, state_file.")
            .req(),
        f("drift", Ty::Object(&DRIFT)),
        f("tests", Ty::MapOf(&TEST))
            .doc("Keyed by endpoint, endpoint/deployment (wins) or * (all)."),
        f("rollout", Ty::Object(&ROLLOUT))
            .doc("Progressive rollouts: staged weights, bakes, pauses and metric gates."),
        f("slots", Ty::MapOf(&SLOTS))
            .doc("Keyed by endpoint: blue/green slots, two deployment names and one deployment template."),
        f("promotion", Ty::Object(&PROMOTION))
            .doc("Model-registry aliases (MLflow) the agent follows, each feeding one deployment or slot template."),
    ],
    "environment.yaml: where an environment lives and its policies.",
);

pub static TARGET: Obj = Obj {
    fields: &[
        f("azureml", Ty::Object(&AZUREML_TARGET)),
        f("kubernetes", Ty::Object(&KUBERNETES_TARGET)),
        f("state_file", Ty::Object(&STATE_FILE_TARGET)),
    ],
    schema_key: false,
    exactly_one: true,
    doc: "",
};

pub static AZUREML_TARGET: Obj = obj(&[
    f(
        "subscription_id",
        Ty::Pattern(
            "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$",
        ),
    )
    .req(),
    f("resource_group", Ty::Str).req(),
    f("workspace", Ty::Str).req(),
    f("location", Ty::Str).req(),
]);

pub static KUBERNETES_TARGET: Obj = obj(&[
    f(
        "namespace",
        Ty::Pattern("^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"),
    )
    .req(),
    f("router", Ty::Enum(&["istio", "gateway-api"])).req(),
    f("gateways", Ty::List(&Ty::Str)),
    f("hostnames", Ty::List(&Ty::Str)),
    // Header match keys must be lowercase with hyphens. [K8S §1]
    f("pin_header", Ty::Pattern("^[a-z0-9-]+$")),
    f("test_base_url", Ty::Pattern("^https?://")),
]);

pub static STATE_FILE_TARGET: Obj = obj(&[f("path", Ty::Str)
    .doc("Relative to the environment directory.")
    .req()]);

pub static DRIFT: Obj = obj(&[
    f("mode", Ty::Enum(&["correct", "report"])),
    f("ignore", Ty::DriftNames),
]);

pub static TEST: Obj = obj(&[
        f("request_file", Ty::Str)
            .doc("One request body, relative to the environment directory; at most 1 MiB.")
            .alternative(),
        f("request_files", Ty::List(&Ty::Str))
            .doc("Several request bodies, sent in order (at most 64 files, 4 MiB together).")
            .alternative(),
        f("request_dir", Ty::Str).doc(
            "A directory: every `*.json` directly in it, sorted by name (at most 64 files, 4 MiB together).",
        )
        .alternative(),
        f("expect_status", Ty::Int(100, Some(599)))
            .doc("Expected HTTP status; any 2xx when absent."),
        f("expect_body_contains", Ty::Str),
        f("expect_json", Ty::AnyObject).doc(
            "RFC 9535 JSON paths of the answer and the value each must find, e.g. {\"$.predictions[0]\": 1}.",
        ),
        f("latency_budget", Ty::Duration).doc("The longest one answer may take, e.g. 500ms."),
        f("retries", Ty::Int(0, Some(10)))
            .doc("Extra tries of a request whose answer is wrong (status, body, JSON or over budget); default 0."),
]);

// --- slots: (environment.yaml), keyed by endpoint like `tests`, for the same reason as
// `rollout.endpoints` below.

pub static SLOTS: Obj = obj(&[
    f("names", Ty::List(&Ty::Str))
        .doc("Exactly two distinct deployment names; the one at 0% (or absent) gets the template.")
        .req(),
    f("template", Ty::Str)
        .doc("An az ml deployment file of this endpoint, relative to the environment directory; its `name` is replaced by the slot.")
        .req(),
    f("after_swap", Ty::Enum(&["keep", "scale_down", "delete"]))
        .doc("The old slot once the other holds all traffic: keep (default, at 0%), scale_down (1 instance) or delete."),
]);

// --- promotion: (environment.yaml), read by the agent's MLflow promotions (src/promotion/).

pub static PROMOTION: Obj = obj(&[
    f("mode", Ty::Enum(&["commit", "pull_request"]))
        .doc("commit (default): push the promotion onto the tracked branch; pull_request: push a branch and open a pull request."),
    f("models", Ty::List(&Ty::Object(&PROMOTION_RULE)))
        .doc("Each a registry reference and the endpoint (and deployment) it feeds.")
        .req(),
]);

pub static PROMOTION_RULE: Obj = obj(&[
    f("model", Ty::Pattern("^[^@/]+(@[A-Za-z0-9_-]+|/(Staging|Production))$"))
        .doc("MODEL@ALIAS (e.g. churn-model@champion) or the deprecated MODEL/STAGE (Staging, Production).")
        .req(),
    f("endpoint", Ty::Str).doc("A declared endpoint.").req(),
    f("deployment", Ty::Str).doc(
        "One of its deployments; omit for an endpoint with one deployment or with slots (the template changes).",
    ),
]);

// --- rollout: (environment.yaml). Per-endpoint policies live here, keyed by endpoint like
// `tests`, not in the endpoint files: those are still fed to `az ml`, whose schemas refuse
// unknown keys.

/// `<signal> <op> <value>` (`spec::gate_expr` is the full grammar; the schema checks the shape).
/// A metric gate (`<signal> <op> <value>`) or the `smoke` gate.
pub const GATE_PATTERN: &str =
    "^\\s*(smoke\\s*|(error_rate|p95|p99|requests)\\s*(<=|<|>=)\\s*\\S.*)$";

pub static ROLLOUT: Obj = Obj {
    fields: &[
        f("metrics", Ty::Object(&ROLLOUT_METRICS))
            .doc("Where gates read metrics; required when any stage has gates."),
        f("default", Ty::Object(&ROLLOUT_POLICY))
            .doc("The policy of every endpoint without an override."),
        f(
            "endpoints",
            Ty::Map(&Ty::AnyOf(&[Ty::Object(&ROLLOUT_POLICY), Ty::Enum(&["none"])])),
        )
        .doc("Keyed by endpoint: a whole policy replacing the default, or `none` (no staged rollout)."),
    ],
    schema_key: false,
    exactly_one: false,
    doc: "",
};

pub static ROLLOUT_METRICS: Obj = obj(&[
    f("provider", Ty::Enum(&["azure_monitor", "prometheus"])).req(),
    f("ingestion_delay", Ty::Duration)
        .doc("azure_monitor: metric buckets younger than this are not judged; default 3m."),
    f("base_url", Ty::Pattern("^https?://"))
        .doc("azure_monitor: the ARM base URL, when not the target's."),
    f("url", Ty::Pattern("^https?://")).doc("prometheus (required): the server's base URL."),
    f("queries", Ty::Object(&PROMETHEUS_QUERIES))
        .doc("prometheus: PromQL templates by signal, replacing the Istio defaults."),
    f("token_env", Ty::Pattern(ENV_NAME_PATTERN))
        .doc("prometheus: the environment variable holding a bearer token."),
]);

const ENV_NAME_PATTERN: &str = "^[A-Za-z_][A-Za-z0-9_]*$";

pub static PROMETHEUS_QUERIES: Obj = obj(&[
    f("error_rate", Ty::Str),
    f("p95", Ty::Str),
    f("p99", Ty::Str),
    f("requests", Ty::Str),
]);

const ON_FAILURE: &[&str] = &["rollback", "pause"];

pub static ROLLOUT_POLICY: Obj = obj(&[
    f("mirror", Ty::Object(&ROLLOUT_MIRROR)).doc(
        "A first stage that mirrors `percent` of live traffic to the candidate (live traffic stays at the baseline) and gates on the candidate's own metrics.",
    ),
    f("steps", Ty::List(&Ty::Object(&ROLLOUT_STAGE)))
        .doc("The stages in order; the declared traffic is the last stage, after these.")
        .req(),
    f("min_requests", Ty::Int(0, None))
        .doc("Below this many candidate requests in a window, gates do not judge and the bake is extended."),
    f("max_bake", Ty::Duration).doc("The longest a stage bakes waiting for min_requests."),
    f("on_no_data", Ty::Enum(ON_FAILURE)).doc("When max_bake passes with too little data; default rollback."),
    f("on_failure", Ty::Enum(ON_FAILURE)).doc("When a gate fails or the deadline passes; default rollback."),
    f("deadline", Ty::Duration).doc("The longest a whole rollout may take, from its first shift."),
    f("keep_failed", Ty::Bool).doc("Keep a rolled-back candidate deployment (default true)."),
    f("scale_with_traffic", Ty::Bool)
        .doc("Each stage sets the candidate's and the baseline's instance_count from their weights (default false)."),
]);

pub static ROLLOUT_MIRROR: Obj = obj(&[
    f("percent", Ty::Int(1, Some(100)))
        .doc("The share of live requests mirrored to the candidate; at most the platform's limit (Azure ML: 50).")
        .req(),
    f("bake", Ty::Duration).doc("How long to mirror before judging the gates.").req(),
    f("pause", Ty::Bool).doc("Wait for `flightdeck rollout resume` after the mirror stage passed."),
    f("gates", Ty::List(&Ty::Pattern(GATE_PATTERN)))
        .doc("Judged on the candidate's own metrics, from the mirrored requests; `smoke` re-runs the candidate's smoke requests (its `tests:` entry) after the bake."),
]);

pub static ROLLOUT_STAGE: Obj = obj(&[
    f("weight", Ty::Int(1, Some(99))).doc("The candidate's weight in percent (or traffic)."),
    f("traffic", Ty::Weights(100)).doc("A whole traffic map summing to 100 (or weight)."),
    f("bake", Ty::Duration).doc("How long to hold the stage before judging its gates.").req(),
    f("pause", Ty::Bool).doc("Wait for `flightdeck rollout resume` after the stage passed."),
    f("gates", Ty::List(&Ty::Pattern(GATE_PATTERN)))
        .doc("`<signal> <op> <value>`: error_rate < 2%, p99 < 250ms, requests >= 100, p99 < 1.2x baseline; or `smoke`: the candidate's smoke requests (its `tests:` entry) run again after the bake and must pass."),
]);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reference_names_a_shared_object() {
        fn check(ty: &Ty) {
            match ty {
                Ty::Ref(name) => assert!(def(name).is_some(), "no $defs entry `{name}`"),
                Ty::AnyOf(tys) => tys.iter().for_each(check),
                Ty::List(ty) => check(ty),
                _ => {}
            }
        }
        for obj in [&ENDPOINT, &DEPLOYMENT, &ENVIRONMENT] {
            obj.fields.iter().for_each(|f| check(&f.ty));
        }
        for (_, obj) in DEFS {
            obj.fields.iter().for_each(|f| check(&f.ty));
        }
    }

    #[test]
    fn nested_settings_hold_an_object() {
        for field in ENDPOINT.fields.iter().chain(DEPLOYMENT.fields) {
            if field.compare == Compare::Nested {
                assert!(field.object().is_some(), "{}", field.name);
            }
        }
    }

    #[test]
    fn drift_ignore_accepts_every_compared_setting_once() {
        let names = drift_names();
        assert!(names.contains(&"traffic") && names.contains(&"resources"));
        let mut sorted = names.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), names.len());
    }
}
