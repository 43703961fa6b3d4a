//! The fake API server's object store: resourceVersions, generations, field ownership for
//! server-side apply, and the watch history. Synchronous; the HTTP layer holds the lock.

use std::collections::{BTreeMap, VecDeque};

use serde_json::{Map, Value, json};
use tokio::sync::broadcast;

use super::validate;

/// A kind the fake serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Kind {
    pub plural: &'static str,
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
}

impl Kind {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `deployments.apps`, as the API server names resources in messages.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }
}

pub const KINDS: [Kind; 8] = [
    Kind {
        plural: "deployments",
        group: "apps",
        version: "v1",
        kind: "Deployment",
    },
    Kind {
        plural: "services",
        group: "",
        version: "v1",
        kind: "Service",
    },
    Kind {
        plural: "virtualservices",
        group: "networking.istio.io",
        version: "v1",
        kind: "VirtualService",
    },
    Kind {
        plural: "destinationrules",
        group: "networking.istio.io",
        version: "v1",
        kind: "DestinationRule",
    },
    Kind {
        plural: "httproutes",
        group: "gateway.networking.k8s.io",
        version: "v1",
        kind: "HTTPRoute",
    },
    // A version's autoscaler and disruption budget (issue #14).
    Kind {
        plural: "horizontalpodautoscalers",
        group: "autoscaling",
        version: "v2",
        kind: "HorizontalPodAutoscaler",
    },
    Kind {
        plural: "poddisruptionbudgets",
        group: "policy",
        version: "v1",
        kind: "PodDisruptionBudget",
    },
    // Leader election (k8s reference: coordination.k8s.io/v1 Lease).
    Kind {
        plural: "leases",
        group: "coordination.k8s.io",
        version: "v1",
        kind: "Lease",
    },
];

/// The Istio API versions the reference CRDs serve besides `v1` [K8S §0], with the same
/// schema; objects are stored once, whichever version wrote them.
pub const ISTIO_GROUP: &str = "networking.istio.io";
pub const ISTIO_OLDER: [&str; 2] = ["v1beta1", "v1alpha3"];

pub fn kind_for(group: &str, version: &str, plural: &str) -> Option<Kind> {
    let k = KINDS
        .iter()
        .copied()
        .find(|k| k.group == group && k.plural == plural)?;
    if k.version == version {
        return Some(k);
    }
    let older = ISTIO_OLDER.iter().find(|v| **v == version)?;
    (group == ISTIO_GROUP).then_some(Kind {
        version: older,
        ..k
    })
}

/// A Kubernetes `Status` failure, sent as the HTTP status `code`.
#[derive(Clone, Debug)]
pub struct Failure {
    pub code: u16,
    pub body: Value,
}

pub fn failure(code: u16, reason: &str, message: String) -> Failure {
    Failure {
        code,
        body: json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                     "message": message, "reason": reason, "code": code}),
    }
}

/// A field path such as `["spec", "replicas"]`, rendered `.spec.replicas`.
pub type FieldPath = Vec<String>;

pub fn render_path(path: &FieldPath) -> String {
    path.iter().map(|s| format!(".{s}")).collect()
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    pub manager: String,
    /// `Apply` or `Update`.
    pub operation: &'static str,
}

#[derive(Clone, Debug)]
pub struct Stored {
    pub object: Value,
    pub owners: BTreeMap<FieldPath, Owner>,
}

#[derive(Clone, Debug)]
pub struct Event {
    pub rv: u64,
    pub kind: Kind,
    pub namespace: String,
    pub event_type: &'static str,
    pub object: Value,
}

/// The fields one write sets, at the granularity the fake tracks: each top-level `spec` key, each
/// label and annotation ([K8S §4]: lists are atomic, so `.spec.http` is one field).
pub fn fields_of(obj: &Value) -> Vec<FieldPath> {
    let mut out = Vec::new();
    for section in ["labels", "annotations"] {
        if let Some(map) = obj
            .pointer(&format!("/metadata/{section}"))
            .and_then(Value::as_object)
        {
            for key in map.keys() {
                out.push(vec!["metadata".into(), section.into(), key.clone()]);
            }
        }
    }
    if let Some(spec) = obj.get("spec").and_then(Value::as_object) {
        for key in spec.keys() {
            out.push(vec!["spec".into(), key.clone()]);
        }
    }
    out
}

pub fn value_at<'a>(obj: &'a Value, path: &FieldPath) -> Option<&'a Value> {
    path.iter().try_fold(obj, |v, key| v.get(key))
}

pub(super) fn set_at(obj: &mut Value, path: &FieldPath, value: Value) {
    let mut cur = obj;
    for key in &path[..path.len() - 1] {
        if !cur.get(key).is_some_and(Value::is_object) {
            cur[key.as_str()] = Value::Object(Map::new());
        }
        cur = cur.get_mut(key).expect("just ensured");
    }
    cur[path[path.len() - 1].as_str()] = value;
}

pub(super) fn remove_at(obj: &mut Value, path: &FieldPath) {
    let mut cur = obj;
    for key in &path[..path.len() - 1] {
        match cur.get_mut(key) {
            Some(next) => cur = next,
            None => return,
        }
    }
    if let Some(map) = cur.as_object_mut() {
        map.remove(&path[path.len() - 1]);
    }
}

pub struct Store {
    pub objects: BTreeMap<(&'static str, String, String), Stored>,
    pub rv: u64,
    /// Events newer than `floor` are kept; a watch or continue from before it gets 410.
    pub floor: u64,
    pub history: VecDeque<Event>,
    pub events: broadcast::Sender<Event>,
    /// Client requests that changed stored state (controller status updates excluded).
    pub writes: u64,
    pub uid: u64,
}

impl Store {
    pub fn new() -> Store {
        Store {
            objects: BTreeMap::new(),
            rv: 1,
            floor: 0,
            history: VecDeque::new(),
            events: broadcast::channel(1024).0,
            writes: 0,
            uid: 0,
        }
    }

    fn bump(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    fn emit(&mut self, kind: Kind, namespace: &str, event_type: &'static str, object: Value) {
        let event = Event {
            rv: self.rv,
            kind,
            namespace: namespace.to_string(),
            event_type,
            object,
        };
        self.history.push_back(event.clone());
        while self.history.len() > 10_000 {
            if let Some(old) = self.history.pop_front() {
                self.floor = old.rv;
            }
        }
        let _ = self.events.send(event);
    }

    /// Forgets the watch history, as etcd compaction does: older RVs now get 410 Expired.
    pub fn compact(&mut self) {
        self.floor = self.rv;
        self.history.clear();
    }

    pub fn get(&self, kind: Kind, ns: &str, name: &str) -> Option<&Stored> {
        self.objects
            .get(&(kind.plural, ns.to_string(), name.to_string()))
    }

    /// The object as the server returns it: with `managedFields`.
    pub fn render(&self, stored: &Stored) -> Value {
        let mut out = stored.object.clone();
        let mut entries: BTreeMap<(String, &str), Value> = BTreeMap::new();
        for (path, owner) in &stored.owners {
            let fields = entries
                .entry((owner.manager.clone(), owner.operation))
                .or_insert_with(|| json!({}));
            let mut cur = fields;
            for key in path {
                let slot = format!("f:{key}");
                if cur.get(&slot).is_none() {
                    cur[slot.as_str()] = json!({});
                }
                cur = cur.get_mut(&slot).expect("just set");
            }
        }
        let api_version = stored.object["apiVersion"].clone();
        let managed: Vec<Value> = entries
            .into_iter()
            .map(|((manager, operation), fields)| {
                json!({"manager": manager, "operation": operation, "apiVersion": api_version,
                       "fieldsType": "FieldsV1", "fieldsV1": fields})
            })
            .collect();
        out["metadata"]["managedFields"] = Value::Array(managed);
        out
    }

    pub(super) fn not_found(kind: Kind, name: &str) -> Failure {
        failure(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", kind.qualified()),
        )
    }

    pub(super) fn check_body(kind: Kind, name: Option<&str>, body: &Value) -> Result<(), Failure> {
        let bad = |m: String| Err(failure(400, "BadRequest", m));
        if body.get("apiVersion").and_then(Value::as_str) != Some(kind.api_version().as_str())
            || body.get("kind").and_then(Value::as_str) != Some(kind.kind)
        {
            return bad(format!("body must be {} {}", kind.api_version(), kind.kind));
        }
        if let Some(name) = name
            && body.pointer("/metadata/name").and_then(Value::as_str) != Some(name)
        {
            return bad(format!(
                "the name of the object ({:?}) does not match the URL ({name})",
                body.pointer("/metadata/name")
            ));
        }
        Ok(())
    }

    /// Stores a new version of an object, bumping generation when `spec` changed and the
    /// resourceVersion when anything changed. Returns the rendered object.
    pub(super) fn commit(
        &mut self,
        kind: Kind,
        ns: &str,
        name: &str,
        mut object: Value,
        owners: BTreeMap<FieldPath, Owner>,
    ) -> Result<Value, Failure> {
        let key = (kind.plural, ns.to_string(), name.to_string());
        if kind.plural == "deployments" {
            super::quantity::canonicalize_deployment(&mut object);
        }
        // `fieldValidation=Strict`: a field the kind's schema does not declare is refused
        // before any other check, as the API server's strict decoding does.
        let problems = match super::strict::unknown_fields(kind, &object) {
            Ok(unknown) => unknown
                .iter()
                .map(|f| format!("unknown field \"{f}\""))
                .collect::<Vec<_>>(),
            Err(decode) => vec![decode],
        };
        if !problems.is_empty() {
            return Err(failure(
                400,
                "BadRequest",
                format!("strict decoding error: {}", problems.join(", ")),
            ));
        }
        validate::check(kind, &object).map_err(|m| {
            failure(
                422,
                "Invalid",
                format!("{}.{} \"{name}\" is invalid: {m}", kind.kind, kind.group),
            )
        })?;
        match self.objects.get(&key).cloned() {
            None => {
                let rv = self.bump();
                self.uid += 1;
                let meta = &mut object["metadata"];
                meta["namespace"] = json!(ns);
                meta["uid"] = json!(format!("00000000-0000-0000-0000-{:012}", self.uid));
                meta["resourceVersion"] = json!(rv.to_string());
                meta["generation"] = json!(1);
                meta["creationTimestamp"] = json!("2026-01-01T00:00:00Z");
                if let Some(m) = meta.as_object_mut() {
                    m.remove("managedFields");
                }
                let stored = Stored { object, owners };
                self.writes += 1;
                self.objects.insert(key, stored.clone());
                let rendered = self.render(&stored);
                self.emit(kind, ns, "ADDED", rendered.clone());
                Ok(rendered)
            }
            Some(old) => {
                // Server-owned metadata and status survive writes to the main resource.
                for k in [
                    "uid",
                    "creationTimestamp",
                    "generation",
                    "resourceVersion",
                    "namespace",
                ] {
                    object["metadata"][k] = old.object["metadata"][k].clone();
                }
                if let Some(m) = object["metadata"].as_object_mut() {
                    m.remove("managedFields");
                }
                match old.object.get("status") {
                    Some(status) => object["status"] = status.clone(),
                    None => {
                        if let Some(m) = object.as_object_mut() {
                            m.remove("status");
                        }
                    }
                }
                if object == old.object && owners == old.owners {
                    return Ok(self.render(&old));
                }
                if object.get("spec") != old.object.get("spec") {
                    let generation = old.object["metadata"]["generation"].as_i64().unwrap_or(0);
                    object["metadata"]["generation"] = json!(generation + 1);
                }
                let changed = object != old.object;
                if changed {
                    let rv = self.bump();
                    object["metadata"]["resourceVersion"] = json!(rv.to_string());
                    self.writes += 1;
                }
                let stored = Stored { object, owners };
                self.objects.insert(key, stored.clone());
                let rendered = self.render(&stored);
                if changed {
                    self.emit(kind, ns, "MODIFIED", rendered.clone());
                }
                Ok(rendered)
            }
        }
    }

    pub fn delete(&mut self, kind: Kind, ns: &str, name: &str) -> Result<Value, Failure> {
        let key = (kind.plural, ns.to_string(), name.to_string());
        let Some(stored) = self.objects.remove(&key) else {
            return Err(Self::not_found(kind, name));
        };
        let rv = self.bump();
        self.writes += 1;
        let mut last = self.render(&stored);
        last["metadata"]["resourceVersion"] = json!(rv.to_string());
        self.emit(kind, ns, "DELETED", last);
        Ok(
            json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                  "details": {"name": name, "group": kind.group, "kind": kind.plural}}),
        )
    }

    /// Controller write to `status` (not counted as a client write; no generation bump).
    pub fn set_status(&mut self, kind: Kind, ns: &str, name: &str, status: Value) {
        let key = (kind.plural, ns.to_string(), name.to_string());
        let Some(stored) = self.objects.get(&key) else {
            return;
        };
        if stored.object.get("status") == Some(&status) {
            return;
        }
        let mut stored = stored.clone();
        let rv = self.bump();
        stored.object["status"] = status;
        stored.object["metadata"]["resourceVersion"] = json!(rv.to_string());
        self.objects.insert(key, stored.clone());
        let rendered = self.render(&stored);
        self.emit(kind, ns, "MODIFIED", rendered);
    }
}

pub fn merge(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = Value::Object(Map::new());
            }
            let t = target.as_object_mut().expect("object");
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        other => *target = other.clone(),
    }
}

/// `k=v,k2=v2` (also `k`, `!k`, `k!=v`) against an object's labels.
pub fn selector_matches(selector: &str, obj: &Value) -> bool {
    let labels = obj.pointer("/metadata/labels").and_then(Value::as_object);
    let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
    selector
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .all(|term| {
            if let Some((k, v)) = term.split_once("!=") {
                get(k.trim()) != Some(v.trim())
            } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                get(k.trim()) == Some(v.trim())
            } else if let Some(k) = term.strip_prefix('!') {
                get(k).is_none()
            } else {
                get(term).is_some()
            }
        })
}
