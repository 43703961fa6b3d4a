//! Typed, located reads from the YAML tree. Every wrong shape becomes a diagnostic and the read
//! returns `None`, so the caller carries on and more problems are found in the same pass.

use std::collections::BTreeMap;

use super::diagnostics::Sink;
use super::fields::Obj;
use super::yaml::{Entry, Kind, Node, Pos, ScalarType, int_value};

/// A value with where it was written.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Loc<T> {
    #[serde(rename = "v")]
    pub value: T,
    /// Where the value starts.
    #[serde(rename = "p")]
    pub pos: Pos,
    /// Where its key starts (equal to `pos` for sequence items).
    #[serde(rename = "k")]
    pub key_pos: Pos,
}

/// The closest candidate to `word`, when it is close enough to be a likely typo.
pub(crate) fn did_you_mean<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (strsim::jaro_winkler(word, c), *c))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// `, did you mean `x`?` or nothing.
pub fn suggestion(word: &str, candidates: &[&str]) -> String {
    did_you_mean(word, candidates)
        .map(|c| format!(", did you mean `{c}`?"))
        .unwrap_or_default()
}

impl Sink<'_> {
    fn expected(&mut self, field: &str, node: &Node, expected: &str) {
        self.error(
            node.pos,
            format!("{field}: expected {expected}, found {}", node.describe()),
        );
    }

    /// The entries of a mapping whose keys must all be fields of `obj` in the field table (plus
    /// `$schema` where the table allows the editor hint). Unknown keys are reported with a
    /// suggestion drawn from the same table.
    pub fn mapping<'n>(
        &mut self,
        field: &str,
        node: &'n Node,
        what: &str,
        obj: &Obj,
    ) -> Option<&'n [Entry]> {
        let Kind::Map(entries) = &node.kind else {
            self.expected(field, node, "a mapping");
            return None;
        };
        let allowed = obj.names();
        for entry in entries {
            if entry.key == "$schema" && obj.schema_key {
                self.string(entry);
                continue;
            }
            if !allowed.contains(&entry.key.as_str()) {
                let hint = suggestion(&entry.key, &allowed);
                self.error(
                    entry.key_pos,
                    format!("unknown field `{}` in {what}{hint}", entry.key),
                );
            }
        }
        Some(entries)
    }

    /// A mapping with free-form keys.
    pub fn any_mapping<'n>(&mut self, field: &str, node: &'n Node) -> Option<&'n [Entry]> {
        match &node.kind {
            Kind::Map(entries) => Some(entries),
            _ => {
                self.expected(field, node, "a mapping");
                None
            }
        }
    }

    pub fn sequence<'n>(&mut self, field: &str, node: &'n Node) -> Option<&'n [Node]> {
        match &node.kind {
            Kind::Seq(items) => Some(items),
            _ => {
                self.expected(field, node, "a sequence");
                None
            }
        }
    }

    fn loc<T>(value: T, entry: &Entry) -> Loc<T> {
        Loc {
            value,
            pos: entry.value.pos,
            key_pos: entry.key_pos,
        }
    }

    /// A string scalar (quoted, or plain text that is not a number, boolean or null).
    pub fn string(&mut self, entry: &Entry) -> Option<Loc<String>> {
        self.string_node(&entry.key, &entry.value)
            .map(|s| Self::loc(s, entry))
    }

    pub fn string_node(&mut self, field: &str, node: &Node) -> Option<String> {
        match &node.kind {
            Kind::Scalar {
                text,
                ty: ScalarType::Str,
            } => Some(text.clone()),
            _ => {
                self.expected(field, node, "a string");
                None
            }
        }
    }

    /// Any non-null scalar as text: `version: 1` and `version: "1"` both give `1`.
    pub fn scalar_text(&mut self, entry: &Entry) -> Option<Loc<String>> {
        self.scalar_text_node(&entry.key, &entry.value)
            .map(|s| Self::loc(s, entry))
    }

    fn scalar_text_node(&mut self, field: &str, node: &Node) -> Option<String> {
        match &node.kind {
            Kind::Scalar { text, ty } if *ty != ScalarType::Null => Some(text.clone()),
            _ => {
                self.expected(field, node, "a string");
                None
            }
        }
    }

    pub fn int(&mut self, entry: &Entry) -> Option<Loc<i64>> {
        match &entry.value.kind {
            Kind::Scalar {
                text,
                ty: ScalarType::Int,
            } => match int_value(text) {
                Some(v) => Some(Self::loc(v, entry)),
                None => {
                    self.error(
                        entry.value.pos,
                        format!("{}: integer `{text}` is too large", entry.key),
                    );
                    None
                }
            },
            _ => {
                self.expected(&entry.key, &entry.value, "an integer");
                None
            }
        }
    }

    /// An integer in `min..=max`.
    pub fn int_in(&mut self, entry: &Entry, min: i64, max: i64) -> Option<Loc<i64>> {
        let v = self.int(entry)?;
        if v.value < min || v.value > max {
            self.error(
                v.pos,
                format!(
                    "{} must be between {min} and {max}, found {}",
                    entry.key, v.value
                ),
            );
            return None;
        }
        Some(v)
    }

    /// A non-negative integer that fits in a u32.
    pub fn u32(&mut self, entry: &Entry) -> Option<u32> {
        let v = self.int_in(entry, 0, i64::from(u32::MAX))?;
        u32::try_from(v.value).ok()
    }

    /// A TCP port, 1..=65535.
    pub fn port(&mut self, entry: &Entry) -> Option<u16> {
        let v = self.int_in(entry, 1, 65535)?;
        u16::try_from(v.value).ok()
    }

    pub fn bool(&mut self, entry: &Entry) -> Option<bool> {
        match &entry.value.kind {
            Kind::Scalar {
                text,
                ty: ScalarType::Bool,
            } => Some(text.eq_ignore_ascii_case("true")),
            _ => {
                self.expected(&entry.key, &entry.value, "a boolean");
                None
            }
        }
    }

    /// A string that must be one of `options`.
    pub fn one_of(&mut self, entry: &Entry, options: &[&str]) -> Option<Loc<String>> {
        let value = self.string(entry)?;
        if options.contains(&value.value.as_str()) {
            return Some(value);
        }
        let list = options
            .iter()
            .map(|o| format!("`{o}`"))
            .collect::<Vec<_>>()
            .join(", ");
        let hint = suggestion(&value.value, options);
        self.error(
            value.pos,
            format!(
                "{}: unknown value `{}`, expected one of {list}{hint}",
                entry.key, value.value
            ),
        );
        None
    }

    /// A mapping of names to scalar values, all kept as text (tags, environment variables).
    pub fn string_map(&mut self, entry: &Entry) -> Option<BTreeMap<String, String>> {
        let entries = self.any_mapping(&entry.key, &entry.value)?;
        let mut out = BTreeMap::new();
        let mut ok = true;
        for item in entries {
            match self.scalar_text_node(&item.key, &item.value) {
                Some(v) => {
                    out.insert(item.key.clone(), v);
                }
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    /// A sequence of strings.
    pub fn string_list(&mut self, entry: &Entry) -> Option<Vec<Loc<String>>> {
        let items = self.sequence(&entry.key, &entry.value)?;
        let mut out = Vec::new();
        let mut ok = true;
        for item in items {
            match self.string_node(&entry.key, item) {
                Some(v) => out.push(Loc {
                    value: v,
                    pos: item.pos,
                    key_pos: item.pos,
                }),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }
}

/// Looks up `key` in mapping entries.
pub(crate) fn field<'n>(entries: &'n [Entry], key: &str) -> Option<&'n Entry> {
    entries.iter().find(|e| e.key == key)
}
