//! In-place edits of a YAML file's text: set a scalar at a key path, set a mapping's entries,
//! remove a key. Only the bytes of what changes are rewritten, from the located tree's spans
//! ([`yaml::parse`]); comments, order, quoting style, indentation, line endings (CRLF too) and
//! a `---` document start stay as written everywhere else. Pure: text in, text out.
//!
//! Every edit is checked before it is returned: the new text must parse, and give exactly the
//! old document with the one change made (compared as JSON, `yaml::to_json`). An edit the
//! checker refuses is an error, never a silently different file. `flightdeck revert` edits
//! `traffic` and `mirror_traffic` with it; `flightdeck promote` edits a deployment's model
//! version or image with [`set_scalar_at`] (a path through sequences too).

use serde_json::Value;

use super::yaml::{self, Entry, Kind, Node, ScalarType, Span};

#[path = "edit_path.rs"]
mod path;
pub use path::{Step, dotted as dotted_steps, set_scalar_at};

/// A scalar value to write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scalar {
    Int(i64),
    Str(String),
}

impl Scalar {
    fn json(&self) -> Value {
        match self {
            Scalar::Int(i) => Value::from(*i),
            Scalar::Str(s) => Value::String(s.clone()),
        }
    }
}

/// One edit at a key path (mapping keys from the document's root).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Edit {
    /// Replace the scalar at `path` (it must exist and be a scalar).
    SetScalar { path: Vec<String>, value: Scalar },
    /// Make the mapping at `path` hold exactly `entries`: existing keys keep their place, new
    /// ones are added at its end in the mapping's own style (block or flow), keys not listed
    /// are removed. When `path`'s key is absent it is added to its parent (after the key
    /// `after` when given, else at the end), unless `entries` is empty.
    SetMap {
        path: Vec<String>,
        entries: Vec<(String, Scalar)>,
        after: Option<String>,
    },
    /// Remove the key at `path` (nothing to do when it is absent).
    Remove { path: Vec<String> },
}

impl Edit {
    fn path(&self) -> &[String] {
        match self {
            Edit::SetScalar { path, .. } | Edit::SetMap { path, .. } | Edit::Remove { path } => {
                path
            }
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EditError {
    #[error("the file does not parse: {0}")]
    Parse(String),
    #[error("`{path}` is not in the file")]
    Missing { path: String },
    #[error("`{path}` is {found}, expected {expected}")]
    Shape {
        path: String,
        found: &'static str,
        expected: &'static str,
    },
    #[error("`{path}` cannot be edited in place: {why}")]
    Unsupported { path: String, why: &'static str },
    #[error("editing `{path}` did not give the intended document; the file is left as it was")]
    Unverified { path: String },
}

/// Applies `edits` in order to `text`.
pub fn apply(text: &str, edits: &[Edit]) -> Result<String, EditError> {
    let mut out = text.to_string();
    for edit in edits {
        out = apply_one(&out, edit)?;
    }
    Ok(out)
}

fn dotted(path: &[String]) -> String {
    path.join(".")
}

fn parse(text: &str) -> Result<Node, EditError> {
    let (root, errors) = yaml::parse(text);
    if let Some(e) = errors.first() {
        return Err(EditError::Parse(format!(
            "{}:{}: {}",
            e.pos.line, e.pos.column, e.message
        )));
    }
    root.ok_or_else(|| EditError::Parse("the file is empty".into()))
}

fn apply_one(text: &str, edit: &Edit) -> Result<String, EditError> {
    let root = parse(text)?;
    let path = edit.path();
    let name = dotted(path);
    let mut doc = Doc {
        text,
        eol: if text.contains("\r\n") { "\r\n" } else { "\n" },
        changes: Vec::new(),
        name: name.clone(),
    };
    let mut expected = yaml::to_json(&root);
    match edit {
        Edit::SetScalar { path, value } => {
            let entry = doc.entry(&root, path)?;
            doc.set_scalar(entry, value)?;
            *json_at(&mut expected, path).expect("the entry exists") = value.json();
        }
        Edit::SetMap {
            path,
            entries,
            after,
        } => {
            let (key, parent_path) = path
                .split_last()
                .ok_or_else(|| doc.unsupported("the root"))?;
            let parent = doc.node(&root, parent_path)?;
            match parent.get(key) {
                Some(entry) => doc.set_map(entry, entries)?,
                None if entries.is_empty() => return Ok(text.to_string()),
                None => doc.insert_map(parent, key, entries, after.as_deref())?,
            }
            let map: serde_json::Map<String, Value> =
                entries.iter().map(|(k, v)| (k.clone(), v.json())).collect();
            match json_at(&mut expected, parent_path) {
                Some(Value::Object(o)) => {
                    o.insert(key.clone(), Value::Object(map));
                }
                _ => return Err(doc.unsupported("its parent is not a mapping")),
            }
        }
        Edit::Remove { path } => {
            let (key, parent_path) = path
                .split_last()
                .ok_or_else(|| doc.unsupported("the root"))?;
            let parent = doc.node(&root, parent_path)?;
            let Some(entry) = parent.get(key) else {
                return Ok(text.to_string());
            };
            doc.remove(parent, entry)?;
            if let Some(Value::Object(o)) = json_at(&mut expected, parent_path) {
                o.shift_remove(key);
            }
        }
    }
    let out = doc.finish();
    let reparsed = parse(&out).map_err(|_| EditError::Unverified { path: name.clone() })?;
    if yaml::to_json(&reparsed) != expected {
        return Err(EditError::Unverified { path: name });
    }
    Ok(out)
}

fn json_at<'v>(value: &'v mut Value, path: &[String]) -> Option<&'v mut Value> {
    path.iter()
        .try_fold(value, |v, key| v.as_object_mut()?.get_mut(key))
}

/// The text being edited and the replacements found so far.
struct Doc<'t> {
    text: &'t str,
    eol: &'static str,
    /// Non-overlapping replacements of byte ranges.
    changes: Vec<(Span, String)>,
    name: String,
}

impl Doc<'_> {
    fn unsupported(&self, why: &'static str) -> EditError {
        EditError::Unsupported {
            path: self.name.clone(),
            why,
        }
    }

    fn node<'n>(&self, root: &'n Node, path: &[String]) -> Result<&'n Node, EditError> {
        let mut node = root;
        for (i, key) in path.iter().enumerate() {
            if !matches!(node.kind, Kind::Map(_)) {
                return Err(EditError::Shape {
                    path: dotted(&path[..i]),
                    found: node.describe(),
                    expected: "a mapping",
                });
            }
            node = &node
                .get(key)
                .ok_or_else(|| EditError::Missing {
                    path: dotted(&path[..=i]),
                })?
                .value;
        }
        Ok(node)
    }

    fn entry<'n>(&self, root: &'n Node, path: &[String]) -> Result<&'n Entry, EditError> {
        let (key, parent_path) = path
            .split_last()
            .ok_or_else(|| self.unsupported("the root"))?;
        self.node(root, parent_path)?
            .get(key)
            .ok_or_else(|| EditError::Missing { path: dotted(path) })
    }

    fn replace(&mut self, span: Span, with: String) {
        self.changes.push((span, with));
    }

    fn finish(mut self) -> String {
        // From the end, so earlier offsets stay valid; an insertion at the end of a removed
        // range comes after (it touches it, never overlaps it).
        self.changes
            .sort_by_key(|c| std::cmp::Reverse((c.0.start, c.0.end)));
        let mut out = self.text.to_string();
        for (span, with) in &self.changes {
            out.replace_range(span.start..span.end, with);
        }
        out
    }

    fn line_start(&self, at: usize) -> usize {
        self.text[..at].rfind('\n').map_or(0, |i| i + 1)
    }

    /// Just after the line break ending the line `at` is on (or the end of the text).
    fn line_end(&self, at: usize) -> usize {
        self.text[at..]
            .find('\n')
            .map_or(self.text.len(), |i| at + i + 1)
    }

    /// The whitespace before the key of `entry`, which must start its line.
    fn indent(&self, entry: &Entry) -> Result<&str, EditError> {
        let start = self.line_start(entry.key_span.start);
        let before = &self.text[start..entry.key_span.start];
        if before.bytes().all(|b| b == b' ') {
            Ok(before)
        } else {
            Err(self.unsupported("a block entry that does not start its line"))
        }
    }

    fn set_scalar(&mut self, entry: &Entry, value: &Scalar) -> Result<(), EditError> {
        let node = &entry.value;
        let Kind::Scalar { text, ty } = &node.kind else {
            return Err(EditError::Shape {
                path: self.name.clone(),
                found: node.describe(),
                expected: "a scalar",
            });
        };
        if same(text, *ty, value) {
            return Ok(());
        }
        if node.span.start == node.span.end {
            return Err(self.unsupported("an empty value"));
        }
        let between = &self.text[entry.key_span.end..node.span.start];
        if between.contains(['|', '>']) {
            return Err(self.unsupported("a block scalar"));
        }
        let quote = match self.text.as_bytes()[node.span.start] {
            q @ (b'"' | b'\'') => Some(q),
            _ => None,
        };
        let rendered = render(value, quote);
        self.replace(node.span, rendered);
        Ok(())
    }

    fn set_map(&mut self, entry: &Entry, entries: &[(String, Scalar)]) -> Result<(), EditError> {
        let node = &entry.value;
        let Kind::Map(existing) = &node.kind else {
            if node.is_null() && entries.is_empty() {
                return Ok(());
            }
            return Err(EditError::Shape {
                path: self.name.clone(),
                found: node.describe(),
                expected: "a mapping",
            });
        };
        if node.flow {
            return self.set_flow_map(node, existing, entries);
        }
        let wanted = |key: &str| entries.iter().find(|(k, _)| k == key).map(|(_, v)| v);
        for old in existing {
            match wanted(&old.key) {
                Some(value) => self.set_scalar(old, value)?,
                None => {
                    self.indent(old)?;
                    let start = self.line_start(old.key_span.start);
                    let end = self.line_end(old.value.span.end.max(old.key_span.end));
                    self.replace(Span { start, end }, String::new());
                }
            }
        }
        let Some(last) = existing.last() else {
            return Err(self.unsupported("an empty block mapping"));
        };
        let new: Vec<_> = entries
            .iter()
            .filter(|(k, _)| !existing.iter().any(|e| &e.key == k))
            .collect();
        if entries.is_empty() {
            // Every entry removed: the key's value becomes `{}`.
            let colon = self.text[entry.key_span.end..]
                .find(':')
                .map(|i| entry.key_span.end + i + 1)
                .ok_or_else(|| self.unsupported("no `:` after the key"))?;
            self.replace(
                Span {
                    start: colon,
                    end: colon,
                },
                " {}".into(),
            );
            return Ok(());
        }
        if !new.is_empty() {
            let indent = self.indent(&existing[0])?.to_string();
            let at = self.line_end(last.value.span.end.max(last.key_span.end));
            let mut lines = String::new();
            if !self.text[..at].ends_with('\n') {
                lines.push_str(self.eol);
            }
            for (k, v) in new {
                lines.push_str(&format!(
                    "{indent}{}: {}{}",
                    key(k),
                    render(v, None),
                    self.eol
                ));
            }
            self.replace(Span { start: at, end: at }, lines);
        }
        Ok(())
    }

    /// A flow mapping is written again whole (on its one line), each kept entry as it was.
    fn set_flow_map(
        &mut self,
        node: &Node,
        existing: &[Entry],
        entries: &[(String, Scalar)],
    ) -> Result<(), EditError> {
        let written = &self.text[node.span.start..node.span.end];
        if written.contains('\n') || written.contains('#') {
            return Err(self.unsupported("a flow mapping over several lines or with comments"));
        }
        let mut items = Vec::new();
        for old in existing {
            let Some((_, value)) = entries.iter().find(|(k, _)| k == &old.key) else {
                continue;
            };
            let Kind::Scalar { text, ty } = &old.value.kind else {
                return Err(self.unsupported("a flow mapping with nested values"));
            };
            let key_text = &self.text[old.key_span.start..old.value.span.start];
            if same(text, *ty, value) {
                items.push(self.text[old.key_span.start..old.value.span.end].to_string());
            } else {
                let quote = match self.text.as_bytes().get(old.value.span.start) {
                    Some(q @ (b'"' | b'\'')) => Some(*q),
                    _ => None,
                };
                items.push(format!("{key_text}{}", render(value, quote)));
            }
        }
        for (k, v) in entries {
            if !existing.iter().any(|e| &e.key == k) {
                items.push(format!("{}: {}", key(k), render(v, None)));
            }
        }
        let padded = written.starts_with("{ ") && !items.is_empty();
        let inner = items.join(", ");
        let rendered = if padded {
            format!("{{ {inner} }}")
        } else {
            format!("{{{inner}}}")
        };
        self.replace(node.span, rendered);
        Ok(())
    }

    /// Adds `key:` with a block mapping of `entries` to the block mapping `parent`.
    fn insert_map(
        &mut self,
        parent: &Node,
        key_name: &str,
        entries: &[(String, Scalar)],
        after: Option<&str>,
    ) -> Result<(), EditError> {
        let Kind::Map(siblings) = &parent.kind else {
            return Err(self.unsupported("its parent is not a mapping"));
        };
        if parent.flow {
            return Err(self.unsupported("a key added to a flow mapping"));
        }
        let anchor = after
            .and_then(|a| siblings.iter().find(|e| e.key == a))
            .or(siblings.last())
            .ok_or_else(|| self.unsupported("an empty parent mapping"))?;
        let indent = self.indent(anchor)?.to_string();
        // The file's own indentation step, from a nested block mapping when there is one.
        let step = siblings
            .iter()
            .find_map(|e| match &e.value.kind {
                Kind::Map(inner) if !e.value.flow => inner.first(),
                _ => None,
            })
            .and_then(|first| first.key_pos.column.checked_sub(indent.len() + 1))
            .filter(|s| *s > 0)
            .unwrap_or(2);
        let at = self.line_end(anchor.value.span.end.max(anchor.key_span.end));
        let mut lines = String::new();
        if !self.text[..at].ends_with('\n') {
            lines.push_str(self.eol);
        }
        lines.push_str(&format!("{indent}{}:{}", key(key_name), self.eol));
        for (k, v) in entries {
            lines.push_str(&format!(
                "{indent}{}{}: {}{}",
                " ".repeat(step),
                key(k),
                render(v, None),
                self.eol
            ));
        }
        self.replace(Span { start: at, end: at }, lines);
        Ok(())
    }

    fn remove(&mut self, parent: &Node, entry: &Entry) -> Result<(), EditError> {
        let Kind::Map(siblings) = &parent.kind else {
            return Err(self.unsupported("its parent is not a mapping"));
        };
        let end_of = |e: &Entry| e.value.span.end.max(e.key_span.end);
        if siblings.len() == 1 {
            return Err(self.unsupported("the only key of its mapping"));
        }
        let i = siblings
            .iter()
            .position(|e| e.key == entry.key)
            .expect("the entry is in its parent");
        let span = if parent.flow {
            if i > 0 {
                Span {
                    start: end_of(&siblings[i - 1]),
                    end: end_of(entry),
                }
            } else {
                Span {
                    start: entry.key_span.start,
                    end: siblings[1].key_span.start,
                }
            }
        } else {
            self.indent(entry)?;
            Span {
                start: self.line_start(entry.key_span.start),
                end: self.line_end(end_of(entry)),
            }
        };
        self.replace(span, String::new());
        Ok(())
    }
}

/// Whether the scalar written as `text` (of type `ty`) already is `value`.
fn same(text: &str, ty: ScalarType, value: &Scalar) -> bool {
    match value {
        Scalar::Int(i) => ty == ScalarType::Int && yaml::int_value(text) == Some(*i),
        Scalar::Str(s) => ty == ScalarType::Str && text == s,
    }
}

/// A key as written: plain when that reads back as the same string, else double-quoted.
fn key(k: &str) -> String {
    render(&Scalar::Str(k.to_string()), None)
}

/// `value` as YAML text, in the quote style `quote` (`'` or `"`) when given and possible.
fn render(value: &Scalar, quote: Option<u8>) -> String {
    let s = match value {
        Scalar::Int(i) => return i.to_string(),
        Scalar::Str(s) => s,
    };
    let printable = !s.chars().any(char::is_control);
    match quote {
        Some(b'\'') if printable => format!("'{}'", s.replace('\'', "''")),
        Some(_) => double_quoted(s),
        None if printable && plain_ok(s) => s.clone(),
        None => double_quoted(s),
    }
}

fn plain_ok(s: &str) -> bool {
    let (root, errors) = yaml::parse(&format!("k: {s}\n"));
    errors.is_empty()
        && !s.starts_with(' ')
        && !s.ends_with(' ')
        && root.as_ref().and_then(|r| r.get("k")).is_some_and(|e| {
            matches!(&e.value.kind, Kind::Scalar { text, ty: ScalarType::Str } if text == s)
                && !e.value.quoted
        })
}

fn double_quoted(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
#[path = "edit_tests.rs"]
mod tests;
