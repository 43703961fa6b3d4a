//! A scalar set at a path that may go through sequences (`deployments[1].model.version`, the
//! combined endpoint form), for `flightdeck promote`. The same rules as [`super::Edit`]: only
//! the scalar's bytes change, quoting style is kept, and the result is checked by parsing it
//! again and comparing the whole document as JSON.

use serde_json::Value;

use super::yaml::{self, Entry, Kind, Node};
use super::{Doc, EditError, Scalar, parse};

/// One step of a path: a mapping key or a sequence index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    Key(String),
    Index(usize),
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Step::Key(k) => f.write_str(k),
            Step::Index(i) => write!(f, "[{i}]"),
        }
    }
}

/// `deployments[1].model.version`
pub fn dotted(path: &[Step]) -> String {
    let mut out = String::new();
    for step in path {
        if matches!(step, Step::Key(_)) && !out.is_empty() {
            out.push('.');
        }
        out.push_str(&step.to_string());
    }
    out
}

/// The entry of the last key of `path` (which must end with a key).
fn entry_at<'n>(root: &'n Node, path: &[Step]) -> Result<&'n Entry, EditError> {
    let mut node = root;
    let mut entry = None;
    for (i, step) in path.iter().enumerate() {
        let here = || dotted(&path[..=i]);
        match step {
            Step::Key(key) => {
                let Kind::Map(_) = &node.kind else {
                    return Err(EditError::Shape {
                        path: dotted(&path[..i]),
                        found: node.describe(),
                        expected: "a mapping",
                    });
                };
                let e = node
                    .get(key)
                    .ok_or_else(|| EditError::Missing { path: here() })?;
                node = &e.value;
                entry = Some(e);
            }
            Step::Index(n) => {
                let Kind::Seq(items) = &node.kind else {
                    return Err(EditError::Shape {
                        path: dotted(&path[..i]),
                        found: node.describe(),
                        expected: "a sequence",
                    });
                };
                node = items
                    .get(*n)
                    .ok_or_else(|| EditError::Missing { path: here() })?;
                entry = None;
            }
        }
    }
    entry.ok_or_else(|| EditError::Unsupported {
        path: dotted(path),
        why: "a path that does not end with a key",
    })
}

fn json_at<'v>(value: &'v mut Value, path: &[Step]) -> Option<&'v mut Value> {
    path.iter().try_fold(value, |v, step| match step {
        Step::Key(k) => v.as_object_mut()?.get_mut(k),
        Step::Index(i) => v.as_array_mut()?.get_mut(*i),
    })
}

/// `text` with the scalar at `path` replaced by `value`, every other byte as it was.
pub fn set_scalar_at(text: &str, path: &[Step], value: &Scalar) -> Result<String, EditError> {
    let root = parse(text)?;
    let name = dotted(path);
    let mut doc = Doc {
        text,
        eol: if text.contains("\r\n") { "\r\n" } else { "\n" },
        changes: Vec::new(),
        name: name.clone(),
    };
    let entry = entry_at(&root, path)?;
    doc.set_scalar(entry, value)?;
    let mut expected = yaml::to_json(&root);
    *json_at(&mut expected, path).expect("the entry exists") = value.json();
    let out = doc.finish();
    let reparsed = parse(&out).map_err(|_| EditError::Unverified { path: name.clone() })?;
    if yaml::to_json(&reparsed) != expected {
        return Err(EditError::Unverified { path: name });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(k: &str) -> Step {
        Step::Key(k.into())
    }

    const FLOW: &str = "name: ep\ndeployments:\n  #blue\n  - name: blue\n    model:\n      name: m\n      version: 1 # pinned\n  - name: green\n    model:\n      name: m\n      version: '1'\n";

    #[test]
    fn a_version_inside_a_sequence_item_is_set_and_nothing_else_changes() {
        let path = [
            key("deployments"),
            Step::Index(0),
            key("model"),
            key("version"),
        ];
        let out = set_scalar_at(FLOW, &path, &Scalar::Int(2)).unwrap();
        assert_eq!(
            out,
            FLOW.replace("version: 1 # pinned", "version: 2 # pinned")
        );
    }

    #[test]
    fn a_quoted_version_keeps_its_quotes() {
        let path = [
            key("deployments"),
            Step::Index(1),
            key("model"),
            key("version"),
        ];
        let out = set_scalar_at(FLOW, &path, &Scalar::Str("7".into())).unwrap();
        assert_eq!(out, FLOW.replace("version: '1'", "version: '7'"));
    }

    #[test]
    fn a_missing_index_or_a_wrong_shape_is_an_error_naming_the_path() {
        let path = [key("deployments"), Step::Index(5), key("model")];
        assert_eq!(
            set_scalar_at(FLOW, &path, &Scalar::Int(1)).unwrap_err(),
            EditError::Missing {
                path: "deployments[5]".into()
            }
        );
        let path = [key("name"), Step::Index(0), key("x")];
        assert_eq!(
            set_scalar_at(FLOW, &path, &Scalar::Int(1))
                .unwrap_err()
                .to_string(),
            "`name` is a string, expected a sequence"
        );
    }

    #[test]
    fn a_reference_string_is_replaced_in_a_deployment_file() {
        let text = "name: blue\nendpoint_name: ep\nmodel: azureml:churn:4 # prod\n";
        let out = set_scalar_at(
            text,
            &[key("model")],
            &Scalar::Str("azureml:churn:5".into()),
        )
        .unwrap();
        assert_eq!(out, text.replace(":4 #", ":5 #"));
    }
}
