use proptest::prelude::*;
use similar::{ChangeTag, TextDiff};

use super::*;

fn p(path: &str) -> Vec<String> {
    path.split('.').map(String::from).collect()
}

fn ints(pairs: &[(&str, i64)]) -> Vec<(String, Scalar)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), Scalar::Int(*v)))
        .collect()
}

fn set_traffic(text: &str, pairs: &[(&str, i64)]) -> Result<String, EditError> {
    apply(
        text,
        &[Edit::SetMap {
            path: p("traffic"),
            entries: ints(pairs),
            after: None,
        }],
    )
}

/// The numbers (1-based) of the old lines a diff deletes, and how many lines it inserts.
fn touched(old: &str, new: &str) -> (Vec<usize>, usize) {
    let diff = TextDiff::from_lines(old, new);
    let mut deleted = Vec::new();
    let mut inserted = 0;
    for change in diff.iter_all_changes() {
        match change.tag() {
            ChangeTag::Delete => deleted.push(change.old_index().unwrap() + 1),
            ChangeTag::Insert => inserted += 1,
            ChangeTag::Equal => {}
        }
    }
    (deleted, inserted)
}

const FILE: &str = "\
$schema: https://azuremlschemas.azureedge.net/latest/managedOnlineEndpoint.schema.json
name: my-endpoint   # the endpoint
auth_mode: 'key'
traffic:
  blue: 0     # the old model
  green: 100  # the new one

deployments:
  - name: blue
";

#[test]
fn a_block_traffic_map_swaps_its_weights_and_keeps_its_comments() {
    let out = set_traffic(FILE, &[("blue", 100), ("green", 0)]).unwrap();
    assert_eq!(
        out,
        FILE.replace("blue: 0     #", "blue: 100     #")
            .replace("green: 100  #", "green: 0  #")
    );
    assert_eq!(touched(FILE, &out), (vec![5, 6], 2));
}

#[test]
fn a_key_live_has_is_inserted_with_the_same_indentation_and_a_key_to_drop_is_removed() {
    let out = set_traffic(FILE, &[("blue", 100), ("red", 0)]).unwrap();
    assert_eq!(
        out,
        FILE.replace("blue: 0     #", "blue: 100     #")
            .replace("  green: 100  # the new one\n", "  red: 0\n")
    );
}

#[test]
fn a_flow_map_stays_a_flow_map() {
    let text = "name: e\ntraffic: { blue: 0, green: 100 }  # swap\nx: 1\n";
    let out = set_traffic(text, &[("blue", 100), ("green", 0), ("red", 0)]).unwrap();
    assert_eq!(
        out,
        "name: e\ntraffic: { blue: 100, green: 0, red: 0 }  # swap\nx: 1\n"
    );
    let out = set_traffic("traffic: {blue: 0, green: 100}\n", &[("green", 100)]).unwrap();
    assert_eq!(out, "traffic: {green: 100}\n");
}

#[test]
fn crlf_files_and_a_document_start_are_kept() {
    let text = "---\r\nname: e\r\ntraffic:\r\n    blue: 0\r\n    green: 100\r\n";
    let out = set_traffic(text, &[("blue", 100), ("green", 0), ("red", 5)]).unwrap();
    assert_eq!(
        out,
        "---\r\nname: e\r\ntraffic:\r\n    blue: 100\r\n    green: 0\r\n    red: 5\r\n"
    );
}

#[test]
fn a_scalar_keeps_its_quoting_style() {
    let text = "model:\n  name: \"model-1\" # pinned\n  version: 1\n";
    let out = apply(
        text,
        &[
            Edit::SetScalar {
                path: p("model.name"),
                value: Scalar::Str("model-2".into()),
            },
            Edit::SetScalar {
                path: p("model.version"),
                value: Scalar::Int(2),
            },
        ],
    )
    .unwrap();
    assert_eq!(out, "model:\n  name: \"model-2\" # pinned\n  version: 2\n");
    // A string that would read as a number stays a string.
    let out = apply(
        "v: abc\n",
        &[Edit::SetScalar {
            path: p("v"),
            value: Scalar::Str("12".into()),
        }],
    )
    .unwrap();
    assert_eq!(out, "v: \"12\"\n");
}

#[test]
fn a_missing_map_is_added_after_the_key_named_and_an_empty_one_is_removed() {
    let text = "name: e\ntraffic:\n    blue: 100\ndeployments: []\n";
    let out = apply(
        text,
        &[Edit::SetMap {
            path: p("mirror_traffic"),
            entries: ints(&[("green", 10)]),
            after: Some("traffic".into()),
        }],
    )
    .unwrap();
    assert_eq!(
        out,
        "name: e\ntraffic:\n    blue: 100\nmirror_traffic:\n    green: 10\ndeployments: []\n"
    );
    let back = apply(
        &out,
        &[Edit::Remove {
            path: p("mirror_traffic"),
        }],
    )
    .unwrap();
    assert_eq!(back, text);
    // Emptying a block map leaves `{}`.
    let out = set_traffic("traffic:\n  blue: 1\nx: 2\n", &[]).unwrap();
    assert_eq!(out, "traffic: {}\nx: 2\n");
}

#[test]
fn what_cannot_be_edited_in_place_is_an_error_and_nothing_else() {
    assert!(matches!(
        set_traffic("name: e\n", &[("blue", 1)]),
        Ok(t) if t == "name: e\ntraffic:\n  blue: 1\n"
    ));
    assert_eq!(
        set_traffic("traffic: 5\n", &[("blue", 1)]),
        Err(EditError::Shape {
            path: "traffic".into(),
            found: "an integer",
            expected: "a mapping"
        })
    );
    assert!(matches!(
        set_traffic("traffic: {a: 1,\n  b: 2}\n", &[("a", 2)]),
        Err(EditError::Unsupported { .. })
    ));
    assert!(matches!(
        set_traffic("traffic: [\n", &[("a", 2)]),
        Err(EditError::Parse(_))
    ));
    assert!(matches!(
        apply(
            "a: |\n  x\n",
            &[Edit::SetScalar {
                path: p("a"),
                value: Scalar::Int(1)
            }]
        ),
        Err(EditError::Unsupported { .. })
    ));
}

/// A generated endpoint file: comments, blank lines, CRLF or not, `---` or not, traffic as a
/// block or flow mapping at some indentation, with other keys before and after.
#[derive(Debug, Clone)]
struct Gen {
    crlf: bool,
    doc_start: bool,
    flow: bool,
    indent: usize,
    comments: bool,
    traffic: Vec<(String, i64)>,
    target: Vec<(String, i64)>,
}

fn names() -> impl Strategy<Value = Vec<String>> {
    prop::sample::subsequence(
        vec!["blue", "green", "red", "canary-1", "b2"]
            .into_iter()
            .map(String::from)
            .collect::<Vec<_>>(),
        1..=4,
    )
    .prop_shuffle()
}

fn generated() -> impl Strategy<Value = Gen> {
    (
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        1usize..=4,
        any::<bool>(),
        names(),
        prop::collection::vec(0i64..=100, 4),
        names(),
        prop::collection::vec(0i64..=100, 4),
    )
        .prop_map(
            |(crlf, doc_start, flow, indent, comments, a, wa, b, wb)| Gen {
                crlf,
                doc_start,
                flow,
                indent,
                comments,
                traffic: a.into_iter().zip(wa).collect(),
                target: b.into_iter().zip(wb).collect(),
            },
        )
}

impl Gen {
    fn text(&self) -> String {
        let c = |s: &str| {
            if self.comments {
                s.to_string()
            } else {
                String::new()
            }
        };
        let mut lines = Vec::new();
        if self.doc_start {
            lines.push("---".to_string());
        }
        lines.push(format!("# generated{}", c(" file")));
        lines.push(format!("name: my-endpoint{}", c("  # name")));
        lines.push("auth_mode: \"key\"".to_string());
        if self.flow {
            let items: Vec<String> = self
                .traffic
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect();
            lines.push(format!(
                "traffic: {{{}}}{}",
                items.join(", "),
                c(" # weights")
            ));
        } else {
            lines.push(format!("traffic:{}", c(" # weights")));
            for (k, v) in &self.traffic {
                lines.push(format!(
                    "{}{k}: {v}{}",
                    " ".repeat(self.indent),
                    c("   # w")
                ));
            }
        }
        lines.push(String::new());
        lines.push(c("# the deployments"));
        lines.push("deployments:".to_string());
        lines.push("  - name: blue".to_string());
        let eol = if self.crlf { "\r\n" } else { "\n" };
        lines.join(eol) + eol
    }
}

proptest! {
    #[test]
    fn an_edited_traffic_map_reads_back_as_intended_and_only_its_lines_change(g in generated()) {
        let text = g.text();
        let target: Vec<(&str, i64)> = g.target.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        let out = set_traffic(&text, &target).unwrap();
        // Re-parses to exactly the intended value...
        let (root, errors) = yaml::parse(&out);
        prop_assert!(errors.is_empty(), "{errors:?}\n{out}");
        let json = yaml::to_json(&root.unwrap());
        let want: serde_json::Map<String, Value> =
            g.target.iter().map(|(k, v)| (k.clone(), Value::from(*v))).collect();
        prop_assert_eq!(&json["traffic"], &Value::Object(want));
        let (old_root, _) = yaml::parse(&text);
        let mut old = yaml::to_json(&old_root.unwrap());
        old["traffic"] = json["traffic"].clone();
        prop_assert_eq!(&json, &old, "nothing else changed in value");
        // ...and the only lines changed are the traffic lines.
        let first = if g.doc_start { 5 } else { 4 };
        let last = if g.flow { first } else { first + g.traffic.len() };
        let (deleted, _) = touched(&text, &out);
        prop_assert!(
            deleted.iter().all(|l| (first..=last).contains(l)),
            "lines {deleted:?} outside {first}..={last}\n{text}\n---\n{out}"
        );
        prop_assert_eq!(out.contains("\r\n"), g.crlf);
        if g.crlf {
            prop_assert!(!out.replace("\r\n", "").contains('\n'), "a bare LF in {out:?}");
        }
        if g.comments {
            prop_assert!(out.contains("# the deployments") && out.contains("# name"));
        }
    }
}
