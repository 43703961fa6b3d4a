//! A small located YAML tree built from `saphyr-parser` events.
//!
//! The loader parses every file into this tree first (a serde deserializer cannot say where a
//! value came from): each node and each mapping key keeps its 1-based line and column. Duplicate keys,
//! anchors, aliases, tags and nesting deeper than [`MAX_DEPTH`] are reported here.

use saphyr_parser::{Event, Marker, Parser, ScalarStyle, Tag};

/// Deepest nesting of mappings and sequences accepted in one file.
pub const MAX_DEPTH: usize = 32;

/// A 1-based position in a file. Line 0 means "the whole file".
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
}

impl From<(usize, usize)> for Pos {
    fn from((line, column): (usize, usize)) -> Pos {
        Pos { line, column }
    }
}

impl From<Pos> for (usize, usize) {
    fn from(pos: Pos) -> (usize, usize) {
        (pos.line, pos.column)
    }
}

impl Pos {
    pub const FILE: Pos = Pos { line: 0, column: 0 };

    fn of(marker: &Marker) -> Pos {
        Pos {
            line: marker.line(),
            column: marker.col() + 1,
        }
    }
}

/// The YAML 1.2 core-schema type of a scalar. Quoted and block scalars are always strings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScalarType {
    Null,
    Bool,
    Int,
    Float,
    Str,
}

impl ScalarType {
    /// `a string`, `an integer`, ... for "expected X, found Y" messages.
    pub fn describe(self) -> &'static str {
        match self {
            ScalarType::Null => "null",
            ScalarType::Bool => "a boolean",
            ScalarType::Int => "an integer",
            ScalarType::Float => "a number",
            ScalarType::Str => "a string",
        }
    }
}

/// A byte range of the file's text (`start..end`), for in-place edits (`spec::edit`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub key: String,
    pub key_pos: Pos,
    /// Where the key is written, quotes included.
    pub key_span: Span,
    pub value: Node,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Kind {
    Scalar { text: String, ty: ScalarType },
    Seq(Vec<Node>),
    Map(Vec<Entry>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub kind: Kind,
    pub pos: Pos,
    /// A single- or double-quoted scalar: its text starts one column after `pos`.
    pub quoted: bool,
    /// Where the node is written: a scalar's token (quotes included), a flow collection from
    /// its bracket to its closing bracket, a block collection from its first item to the end of
    /// its last one (comments and line breaks after it left out).
    pub span: Span,
    /// A flow collection (`{a: 1}`, `[1, 2]`), as opposed to a block one.
    pub flow: bool,
}

impl Node {
    /// What this node is, for "found X" in messages.
    pub fn describe(&self) -> &'static str {
        match &self.kind {
            Kind::Scalar { ty, .. } => ty.describe(),
            Kind::Seq(_) => "a sequence",
            Kind::Map(_) => "a mapping",
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(
            self.kind,
            Kind::Scalar {
                ty: ScalarType::Null,
                ..
            }
        )
    }

    /// The entry for `key` when this node is a mapping.
    pub fn get(&self, key: &str) -> Option<&Entry> {
        match &self.kind {
            Kind::Map(entries) => entries.iter().find(|e| e.key == key),
            _ => None,
        }
    }
}

/// A problem found while building the tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct YamlError {
    pub pos: Pos,
    pub message: String,
}

/// Parses one YAML document. Returns the tree (`None` for an empty file or a fatal error such as
/// a syntax error) and every problem found.
pub fn parse(text: &str) -> (Option<Node>, Vec<YamlError>) {
    let mut builder = Builder {
        parser: Parser::new_from_str(text),
        text,
        errors: Vec::new(),
        offsets: (!text.is_ascii()).then(|| {
            let mut v: Vec<usize> = text.char_indices().map(|(i, _)| i).collect();
            v.push(text.len());
            v
        }),
    };
    let root = builder.document();
    let mut errors = builder.errors;
    for e in &mut errors {
        // The scanner reports a stray tab where the token before it ended (often the end of
        // the previous line); point at the tab itself.
        if e.message.contains("tab")
            && let Some(tab) = first_tab_from(text, e.pos)
        {
            e.pos = tab;
        }
    }
    (root, errors)
}

/// The first tab on `from`'s line or after it (1-based; columns in characters).
fn first_tab_from(text: &str, from: Pos) -> Option<Pos> {
    text.lines()
        .enumerate()
        .skip(from.line.saturating_sub(1))
        .find_map(|(i, line)| {
            line.chars().position(|c| c == '\t').map(|col| Pos {
                line: i + 1,
                column: col + 1,
            })
        })
}

/// Signals that parsing of this file cannot go on; the error is already recorded.
struct Fatal;

struct Builder<'a> {
    parser: Parser<'a, saphyr_parser::StrInput<'a>>,
    text: &'a str,
    errors: Vec<YamlError>,
    /// The byte offset of each character, when the text is not all ASCII (the parser counts
    /// characters).
    offsets: Option<Vec<usize>>,
}

impl<'a> Builder<'a> {
    fn byte(&self, marker: &Marker) -> usize {
        match &self.offsets {
            None => marker.index(),
            Some(v) => v.get(marker.index()).copied().unwrap_or(usize::MAX),
        }
    }

    fn span(&self, span: &saphyr_parser::Span) -> Span {
        Span {
            start: self.byte(&span.start),
            end: self.byte(&span.end),
        }
    }

    fn error(&mut self, pos: Pos, message: impl Into<String>) {
        self.errors.push(YamlError {
            pos,
            message: message.into(),
        });
    }

    fn next(&mut self) -> Result<(Event<'a>, saphyr_parser::Span), Fatal> {
        match self.parser.next_event() {
            Some(Ok(ev)) => Ok(ev),
            Some(Err(e)) => {
                let pos = Pos::of(e.marker());
                self.error(pos, format!("invalid YAML: {}", e.info()));
                Err(Fatal)
            }
            None => {
                self.error(Pos::FILE, "invalid YAML: unexpected end of input");
                Err(Fatal)
            }
        }
    }

    fn document(&mut self) -> Option<Node> {
        let mut root = None;
        let mut documents = 0;
        loop {
            let (event, span) = self.next().ok()?;
            match event {
                Event::StreamStart | Event::DocumentEnd | Event::Nothing => {}
                Event::StreamEnd => return root,
                Event::DocumentStart(_) => {
                    documents += 1;
                    if documents > 1 {
                        self.error(
                            Pos::of(&span.start),
                            "a file may hold only one YAML document",
                        );
                        return None;
                    }
                }
                other => {
                    let node = self.node(other, span, 0).ok()?;
                    // An empty document is a single empty plain scalar.
                    if !matches!(&node.kind, Kind::Scalar { ty: ScalarType::Null, text } if text.is_empty())
                    {
                        root = Some(node);
                    }
                }
            }
        }
    }

    fn node(
        &mut self,
        event: Event<'a>,
        span: saphyr_parser::Span,
        depth: usize,
    ) -> Result<Node, Fatal> {
        let pos = Pos::of(&span.start);
        let bytes = self.span(&span);
        match event {
            Event::Alias(_) => {
                self.error(pos, "YAML aliases (*name) are not supported");
                Err(Fatal)
            }
            Event::Scalar(value, style, anchor, tag) => {
                self.no_anchor(anchor, pos);
                let ty = self.scalar_type(&value, style, tag.as_deref(), pos);
                let quoted = matches!(style, ScalarStyle::SingleQuoted | ScalarStyle::DoubleQuoted);
                // The parser's end of a quoted scalar may run past the closing quote (over
                // trailing spaces and a comment): find the closing quote itself.
                let bytes = if quoted {
                    Span {
                        start: bytes.start,
                        end: quoted_end(self.text, bytes.start).unwrap_or(bytes.end),
                    }
                } else {
                    bytes
                };
                Ok(Node {
                    kind: Kind::Scalar {
                        text: value.into_owned(),
                        ty,
                    },
                    pos,
                    quoted,
                    span: bytes,
                    flow: false,
                })
            }
            Event::SequenceStart(anchor, tag) => {
                self.no_anchor(anchor, pos);
                self.no_tag(tag.as_deref(), pos);
                self.check_depth(depth, pos)?;
                let flow = self.is_flow(bytes.start, b'[');
                let mut items: Vec<Node> = Vec::new();
                let end = loop {
                    let (event, span) = self.next()?;
                    if event == Event::SequenceEnd {
                        break self.closing(self.span(&span), b']');
                    }
                    items.push(self.node(event, span, depth + 1)?);
                };
                let last = items.last().map_or(bytes.start, |n| n.span.end);
                Ok(Node {
                    kind: Kind::Seq(items),
                    pos,
                    quoted: false,
                    span: Span {
                        start: bytes.start,
                        end: if flow { end } else { last },
                    },
                    flow,
                })
            }
            Event::MappingStart(anchor, tag) => {
                self.no_anchor(anchor, pos);
                self.no_tag(tag.as_deref(), pos);
                self.check_depth(depth, pos)?;
                let flow = self.is_flow(bytes.start, b'{');
                self.mapping(pos, bytes.start, flow, depth)
            }
            other => {
                self.error(pos, format!("invalid YAML: unexpected {other:?}"));
                Err(Fatal)
            }
        }
    }

    /// Just after the closing bracket of a flow collection whose end event is at `span` (the
    /// parser's end may run past the bracket).
    fn closing(&self, span: Span, bracket: u8) -> usize {
        let bytes = self.text.as_bytes();
        (span.start..bytes.len().min(span.end.max(span.start + 1)))
            .find(|&i| bytes[i] == bracket)
            .map_or(span.end, |i| i + 1)
    }

    /// Whether the collection starting at byte `at` is a flow one (`{` or `[` there).
    fn is_flow(&self, at: usize, bracket: u8) -> bool {
        self.text.as_bytes().get(at) == Some(&bracket)
    }

    fn mapping(&mut self, pos: Pos, start: usize, flow: bool, depth: usize) -> Result<Node, Fatal> {
        let mut entries: Vec<Entry> = Vec::new();
        let end = loop {
            let (event, span) = self.next()?;
            if event == Event::MappingEnd {
                break self.closing(self.span(&span), b'}');
            }
            let key_pos = Pos::of(&span.start);
            let key_node = self.node(event, span, depth + 1)?;
            let key_span = key_node.span;
            let (value_event, value_span) = self.next()?;
            let mut value = self.node(value_event, value_span, depth + 1)?;
            let key = match key_node.kind {
                Kind::Scalar { text, .. } => text,
                _ => {
                    self.error(key_pos, "mapping keys must be scalars");
                    continue;
                }
            };
            // `key:` with nothing after it: point at the key, not at whatever follows.
            if matches!(&value.kind, Kind::Scalar { ty: ScalarType::Null, text } if text.is_empty())
            {
                value.pos = key_pos;
            }
            if let Some(first) = entries.iter().find(|e| e.key == key) {
                let message = format!(
                    "duplicate key `{key}` (first declared at line {}, column {})",
                    first.key_pos.line, first.key_pos.column
                );
                self.error(key_pos, message);
                continue;
            }
            entries.push(Entry {
                key,
                key_pos,
                key_span,
                value,
            });
        };
        let last = entries
            .last()
            .map_or(start, |e| e.value.span.end.max(e.key_span.end));
        Ok(Node {
            kind: Kind::Map(entries),
            pos,
            quoted: false,
            span: Span {
                start,
                end: if flow { end } else { last },
            },
            flow,
        })
    }

    fn check_depth(&mut self, depth: usize, pos: Pos) -> Result<(), Fatal> {
        if depth >= MAX_DEPTH {
            self.error(
                pos,
                format!("YAML nesting is deeper than {MAX_DEPTH} levels"),
            );
            return Err(Fatal);
        }
        Ok(())
    }

    fn no_anchor(&mut self, anchor: usize, pos: Pos) {
        if anchor != 0 {
            self.error(pos, "YAML anchors (&name) are not supported");
        }
    }

    fn no_tag(&mut self, tag: Option<&Tag>, pos: Pos) {
        if let Some(tag) = tag {
            self.error(pos, format!("YAML tags are not supported (found `{tag}`)"));
        }
    }

    fn scalar_type(
        &mut self,
        value: &str,
        style: ScalarStyle,
        tag: Option<&Tag>,
        pos: Pos,
    ) -> ScalarType {
        if let Some(tag) = tag {
            if tag.is_yaml_core_schema() && tag.suffix == "str" {
                return ScalarType::Str;
            }
            self.no_tag(Some(tag), pos);
        }
        if style != ScalarStyle::Plain {
            return ScalarType::Str;
        }
        resolve_plain(value)
    }
}

/// The byte just after the closing quote of the quoted scalar opening at `start` (`''` is an
/// escaped quote in single quotes, `\"` in double quotes).
fn quoted_end(text: &str, start: usize) -> Option<usize> {
    let bytes = text.as_bytes();
    let quote = *bytes.get(start)?;
    let mut i = start + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if quote == b'"' => i += 2,
            b'\'' if quote == b'\'' && bytes.get(i + 1) == Some(&b'\'') => i += 2,
            b if b == quote => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

/// YAML 1.2 core schema resolution of a plain scalar.
fn resolve_plain(value: &str) -> ScalarType {
    match value {
        "" | "~" | "null" | "Null" | "NULL" => return ScalarType::Null,
        "true" | "True" | "TRUE" | "false" | "False" | "FALSE" => return ScalarType::Bool,
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" | "-.inf" | "-.Inf" | "-.INF"
        | ".nan" | ".NaN" | ".NAN" => return ScalarType::Float,
        _ => {}
    }
    let unsigned = value.strip_prefix(['-', '+']).unwrap_or(value);
    let is_int = (!unsigned.is_empty() && unsigned.bytes().all(|b| b.is_ascii_digit()))
        || value
            .strip_prefix("0o")
            .is_some_and(|r| !r.is_empty() && r.bytes().all(|b| (b'0'..=b'7').contains(&b)))
        || value
            .strip_prefix("0x")
            .is_some_and(|r| !r.is_empty() && r.bytes().all(|b| b.is_ascii_hexdigit()));
    if is_int {
        return ScalarType::Int;
    }
    let looks_numeric = unsigned.starts_with(|c: char| c.is_ascii_digit() || c == '.')
        && unsigned
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'-' | b'+'));
    if looks_numeric && value.parse::<f64>().is_ok() {
        return ScalarType::Float;
    }
    ScalarType::Str
}

/// The value of an integer scalar (decimal, `0o` or `0x`), if it fits in an i64.
pub fn int_value(text: &str) -> Option<i64> {
    if let Some(oct) = text.strip_prefix("0o") {
        return i64::from_str_radix(oct, 8).ok();
    }
    if let Some(hex) = text.strip_prefix("0x") {
        return i64::from_str_radix(hex, 16).ok();
    }
    text.parse::<i64>().ok()
}

/// The tree as JSON, positions dropped: integers that fit an i64 become numbers, floats become
/// numbers when finite (else strings), everything else keeps its core-schema type. For callers
/// that need plain data (JSON Schema validation, test fakes) rather than located reads.
pub fn to_json(node: &Node) -> serde_json::Value {
    use serde_json::Value;
    match &node.kind {
        Kind::Scalar { text, ty } => match ty {
            ScalarType::Null => Value::Null,
            ScalarType::Bool => Value::Bool(text.eq_ignore_ascii_case("true")),
            ScalarType::Int => int_value(text.strip_prefix('+').unwrap_or(text))
                .map(Value::from)
                .unwrap_or_else(|| Value::String(text.clone())),
            ScalarType::Float => text
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map(Value::Number)
                .unwrap_or_else(|| Value::String(text.clone())),
            ScalarType::Str => Value::String(text.clone()),
        },
        Kind::Seq(items) => Value::Array(items.iter().map(to_json).collect()),
        Kind::Map(entries) => Value::Object(
            entries
                .iter()
                .map(|e| (e.key.clone(), to_json(&e.value)))
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tab_error_points_at_the_tab_not_the_end_of_the_line_before() {
        let (_, errors) = parse("a:\n  b: c\n\td: 1\n");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].message.contains("tab"), "{errors:?}");
        assert_eq!(errors[0].pos, Pos { line: 3, column: 1 });
        let (_, errors) = parse("a:\n\tb: 1\n");
        assert_eq!(errors[0].pos, Pos { line: 2, column: 1 }, "{errors:?}");
    }

    fn messages(text: &str) -> Vec<String> {
        parse(text)
            .1
            .into_iter()
            .map(|e| format!("{}:{}: {}", e.pos.line, e.pos.column, e.message))
            .collect()
    }

    #[test]
    fn keys_and_values_keep_their_positions() {
        let (root, errors) = parse("name: a\ntraffic:\n  blue: 90\n");
        assert!(errors.is_empty(), "{errors:?}");
        let root = root.unwrap();
        let traffic = root.get("traffic").unwrap();
        assert_eq!(traffic.key_pos, Pos { line: 2, column: 1 });
        let blue = traffic.value.get("blue").unwrap();
        assert_eq!(blue.key_pos, Pos { line: 3, column: 3 });
        assert_eq!(blue.value.pos, Pos { line: 3, column: 9 });
        assert_eq!(blue.value.describe(), "an integer");
    }

    #[test]
    fn plain_scalars_resolve_with_the_core_schema() {
        for (text, ty) in [
            ("12", ScalarType::Int),
            ("-3", ScalarType::Int),
            ("0x1f", ScalarType::Int),
            ("1.5", ScalarType::Float),
            ("1e3", ScalarType::Float),
            ("true", ScalarType::Bool),
            ("~", ScalarType::Null),
            ("yes", ScalarType::Str),
            ("1.2.3", ScalarType::Str),
            ("500m", ScalarType::Str),
        ] {
            assert_eq!(resolve_plain(text), ty, "{text}");
        }
        let (root, _) = parse("a: '12'\n");
        assert_eq!(root.unwrap().get("a").unwrap().value.describe(), "a string");
    }

    #[test]
    fn duplicate_keys_are_reported_at_the_second_key() {
        assert_eq!(
            messages("a: 1\nb: 2\na: 3\n"),
            ["3:1: duplicate key `a` (first declared at line 1, column 1)"]
        );
    }

    #[test]
    fn syntax_errors_carry_their_location() {
        let found = messages("a: [1, 2\nb: 3\n");
        assert_eq!(found.len(), 1);
        assert!(found[0].contains("invalid YAML"), "{found:?}");
    }

    #[test]
    fn deep_nesting_and_aliases_are_refused() {
        let deep = format!("{}1{}", "[".repeat(40), "]".repeat(40));
        assert_eq!(
            messages(&deep),
            ["1:33: YAML nesting is deeper than 32 levels"]
        );
        let found = messages("a: &x 1\nb: *x\n");
        assert!(found.iter().any(|m| m.contains("anchors")), "{found:?}");
        assert!(found.iter().any(|m| m.contains("aliases")), "{found:?}");
    }

    #[test]
    fn the_tree_converts_to_json_with_core_schema_types() {
        let (root, errors) = parse("a: 1\nb: '1'\nc: [true, ~, 1.5, x]\nd: {e: -0x10}\n");
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            to_json(&root.unwrap()),
            serde_json::json!({"a": 1, "b": "1", "c": [true, null, 1.5, "x"], "d": {"e": "-0x10"}})
        );
    }

    #[test]
    fn an_empty_file_has_no_root_and_a_second_document_is_refused() {
        assert_eq!(parse("# only a comment\n"), (None, vec![]));
        assert_eq!(
            messages("a: 1\n---\nb: 2\n"),
            ["2:1: a file may hold only one YAML document"]
        );
    }
}
