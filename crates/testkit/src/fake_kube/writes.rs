//! Client writes to the fake store: server-side apply with field ownership and conflicts
//! [K8S §4], create, replace with resourceVersion preconditions, and merge patch.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::store::{
    Failure, FieldPath, Kind, Owner, Store, Stored, failure, fields_of, merge, remove_at,
    render_path, set_at, value_at,
};

impl Store {
    /// Server-side apply [K8S §4]: creates if absent; 409 FieldManagerConflict when another
    /// manager owns a field with a different value and `force` is not set.
    pub fn apply(
        &mut self,
        kind: Kind,
        ns: &str,
        name: &str,
        body: Value,
        manager: &str,
        force: bool,
    ) -> Result<Value, Failure> {
        Self::check_body(kind, Some(name), &body)?;
        if body.pointer("/metadata/managedFields").is_some() {
            return Err(failure(
                400,
                "BadRequest",
                "metadata.managedFields must be nil".into(),
            ));
        }
        let mut body = body;
        if let Some(m) = body.as_object_mut() {
            m.remove("status");
        }
        let applied = fields_of(&body);
        let old = self.get(kind, ns, name).cloned();
        let (mut object, mut owners) = match &old {
            Some(s) => (s.object.clone(), s.owners.clone()),
            None => (
                json!({"apiVersion": kind.api_version(), "kind": kind.kind, "metadata": {"name": name}}),
                BTreeMap::new(),
            ),
        };
        let conflicts: Vec<(FieldPath, Owner)> = applied
            .iter()
            .filter_map(|f| {
                let owner = owners.get(f)?;
                (owner.manager != manager && value_at(&object, f) != value_at(&body, f))
                    .then(|| (f.clone(), owner.clone()))
            })
            .collect();
        if !conflicts.is_empty() && !force {
            let api_version = kind.api_version();
            let causes: Vec<Value> = conflicts
                .iter()
                .map(|(f, o)| {
                    json!({"reason": "FieldManagerConflict",
                    "message": format!("conflict with \"{}\" using {api_version}", o.manager),
                    "field": render_path(f)})
                })
                .collect();
            let summary: Vec<String> = conflicts
                .iter()
                .map(|(f, o)| {
                    format!(
                        "conflict with \"{}\" using {api_version}: {}",
                        o.manager,
                        render_path(f)
                    )
                })
                .collect();
            let n = conflicts.len();
            let mut f = failure(
                409,
                "Conflict",
                format!(
                    "Apply failed with {n} conflict{}: {}",
                    if n == 1 { "" } else { "s" },
                    summary.join("; ")
                ),
            );
            f.body["details"] = json!({"causes": causes});
            return Err(f);
        }
        // Fields this manager applied before and stopped sending are removed (if nobody else owns them).
        let dropped: Vec<FieldPath> = owners
            .iter()
            .filter(|(f, o)| o.manager == manager && !applied.contains(f))
            .map(|(f, _)| f.clone())
            .collect();
        for f in dropped {
            remove_at(&mut object, &f);
            owners.remove(&f);
        }
        for f in &applied {
            if let Some(v) = value_at(&body, f) {
                set_at(&mut object, f, v.clone());
            }
            owners.insert(
                f.clone(),
                Owner {
                    manager: manager.to_string(),
                    operation: "Apply",
                },
            );
        }
        self.commit(kind, ns, name, object, owners)
    }

    fn update_owners(owners: &mut BTreeMap<FieldPath, Owner>, object: &Value, manager: &str) {
        for f in fields_of(object) {
            owners.insert(
                f,
                Owner {
                    manager: manager.to_string(),
                    operation: "Update",
                },
            );
        }
    }

    /// POST: create, 409 AlreadyExists if present.
    pub fn create(
        &mut self,
        kind: Kind,
        ns: &str,
        body: Value,
        manager: &str,
    ) -> Result<Value, Failure> {
        Self::check_body(kind, None, &body)?;
        let Some(name) = body
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .map(str::to_string)
        else {
            return Err(failure(
                422,
                "Invalid",
                "metadata.name: Required value".into(),
            ));
        };
        if self.get(kind, ns, &name).is_some() {
            return Err(failure(
                409,
                "AlreadyExists",
                format!("{} \"{name}\" already exists", kind.qualified()),
            ));
        }
        let mut owners = BTreeMap::new();
        Self::update_owners(&mut owners, &body, manager);
        let mut body = body;
        if let Some(m) = body.as_object_mut() {
            m.remove("status");
        }
        self.commit(kind, ns, &name, body, owners)
    }

    fn precondition(kind: Kind, name: &str, stored: &Stored, body: &Value) -> Result<(), Failure> {
        // API-CONV "Concurrency Control and Consistency": a stale resourceVersion is 409 Conflict.
        if let Some(rv) = body
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            && Some(rv)
                != stored
                    .object
                    .pointer("/metadata/resourceVersion")
                    .and_then(Value::as_str)
        {
            return Err(failure(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                    kind.qualified()
                ),
            ));
        }
        Ok(())
    }

    /// PUT: replace, with the resourceVersion precondition.
    pub fn replace(
        &mut self,
        kind: Kind,
        ns: &str,
        name: &str,
        body: Value,
        manager: &str,
    ) -> Result<Value, Failure> {
        Self::check_body(kind, Some(name), &body)?;
        let Some(stored) = self.get(kind, ns, name).cloned() else {
            return Err(Self::not_found(kind, name));
        };
        Self::precondition(kind, name, &stored, &body)?;
        let mut owners: BTreeMap<FieldPath, Owner> = stored
            .owners
            .into_iter()
            .filter(|(f, _)| value_at(&body, f).is_some())
            .collect();
        Self::update_owners(&mut owners, &body, manager);
        self.commit(kind, ns, name, body, owners)
    }

    /// PATCH with `application/merge-patch+json` (RFC 7386).
    pub fn merge_patch(
        &mut self,
        kind: Kind,
        ns: &str,
        name: &str,
        patch: Value,
        manager: &str,
    ) -> Result<Value, Failure> {
        let Some(stored) = self.get(kind, ns, name).cloned() else {
            return Err(Self::not_found(kind, name));
        };
        Self::precondition(kind, name, &stored, &patch)?;
        let mut object = stored.object.clone();
        merge(&mut object, &patch);
        let mut owners = stored.owners.clone();
        Self::update_owners(&mut owners, &patch, manager);
        self.commit(kind, ns, name, object, owners)
    }
}
