//! The YAML text `diff` compares line by line: a JSON document written in block style, keys in
//! document order, two-space indentation, sequences at their key's indentation (`- item`), and a
//! string quoted only when plain text would read back as something else. Control characters are
//! written as double-quoted escapes; everything else is left for the renderer's escaping.

use std::fmt::Write;

use serde_json::Value;

/// `value` as a YAML document ending in a newline.
pub(super) fn to_yaml(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Object(map) if !map.is_empty() => mapping(&mut out, map, 0),
        Value::Array(items) if !items.is_empty() => sequence(&mut out, items, 0),
        other => {
            out.push_str(&inline(other, 0));
            out.push('\n');
        }
    }
    out
}

fn mapping(out: &mut String, map: &serde_json::Map<String, Value>, indent: usize) {
    for (key, value) in map {
        push_indent(out, indent);
        out.push_str(&scalar_text(key, indent));
        out.push(':');
        value_after_key(out, value, indent);
    }
}

/// A value after `key:` at `indent`: nested blocks on the next lines, scalars on the same line.
fn value_after_key(out: &mut String, value: &Value, indent: usize) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            out.push('\n');
            mapping(out, map, indent + 2);
        }
        Value::Array(items) if !items.is_empty() => {
            out.push('\n');
            sequence(out, items, indent);
        }
        other => {
            out.push(' ');
            out.push_str(&inline(other, indent + 2));
            out.push('\n');
        }
    }
}

fn sequence(out: &mut String, items: &[Value], indent: usize) {
    for item in items {
        push_indent(out, indent);
        out.push('-');
        match item {
            Value::Object(map) if !map.is_empty() => {
                // The first key goes on the dash's line, the rest under it.
                let mut first = String::new();
                mapping(&mut first, map, indent + 2);
                out.push(' ');
                out.push_str(&first[indent + 2..]);
            }
            Value::Array(inner) if !inner.is_empty() => {
                out.push('\n');
                sequence(out, inner, indent + 2);
            }
            other => {
                out.push(' ');
                out.push_str(&inline(other, indent + 2));
                out.push('\n');
            }
        }
    }
}

fn push_indent(out: &mut String, indent: usize) {
    out.extend(std::iter::repeat_n(' ', indent));
}

/// A scalar or an empty collection on one line (a literal block may follow for text).
fn inline(value: &Value, indent: usize) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => scalar_text(s, indent),
        Value::Array(_) => "[]".into(),
        Value::Object(_) => "{}".into(),
    }
}

/// `s` plain when that reads back as the same string, else quoted; multi-line text as a literal
/// block (`|-`) indented to `indent`.
fn scalar_text(s: &str, indent: usize) -> String {
    let control = |c: char| c.is_control() && c != '\n';
    if s.chars().any(control) {
        return double_quoted(s);
    }
    if s.contains('\n') {
        return literal_block(s, indent);
    }
    if needs_quotes(s) {
        format!("'{}'", s.replace('\'', "''"))
    } else {
        s.to_string()
    }
}

fn literal_block(s: &str, indent: usize) -> String {
    let body = s.strip_suffix('\n').unwrap_or(s);
    let trailing_lines = body.ends_with('\n');
    let leading_space = s.starts_with([' ', '\t']);
    if trailing_lines || leading_space || body.lines().any(|l| l.ends_with([' ', '\t'])) {
        return double_quoted(s);
    }
    let mut out = String::from(if s.ends_with('\n') { "|" } else { "|-" });
    for line in body.split('\n') {
        out.push('\n');
        if !line.is_empty() {
            out.extend(std::iter::repeat_n(' ', indent.max(2)));
            out.push_str(line);
        }
    }
    out
}

fn double_quoted(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{1b}' => out.push_str("\\e"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Whether plain `s` would not read back as this string (YAML 1.2 core schema, plus the YAML 1.1
/// booleans some readers still use).
fn needs_quotes(s: &str) -> bool {
    const WORDS: [&str; 12] = [
        "null", "~", "true", "false", "yes", "no", "on", "off", "y", "n", ".inf", ".nan",
    ];
    let lower = s.to_ascii_lowercase();
    let unsigned = lower.trim_start_matches(['-', '+']);
    s.is_empty()
        || WORDS.contains(&lower.as_str())
        || WORDS.contains(&unsigned)
        || looks_numeric(unsigned)
        || s.starts_with([
            '-', '?', ':', ',', '[', ']', '{', '}', '#', '&', '*', '!', '|', '>', '\'', '"', '%',
            '@', '`', ' ', '\t',
        ])
        || s.ends_with([' ', '\t', ':'])
        || s.contains(": ")
        || s.contains(" #")
}

fn looks_numeric(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_digit() || c == '.')
        && (s.parse::<f64>().is_ok()
            || s.strip_prefix("0x")
                .is_some_and(|r| r.bytes().all(|b| b.is_ascii_hexdigit()))
            || s.strip_prefix("0o")
                .is_some_and(|r| r.bytes().all(|b| b.is_ascii_digit())))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn documents_are_written_in_block_style_in_key_order() {
        let doc = json!({
            "name": "churn",
            "deployments": {"blue": {"instance_count": 1, "model": "azureml:m:1", "tags": {}}},
            "args": ["a", {"k": 1, "j": null}, []],
        });
        assert_eq!(
            to_yaml(&doc),
            "name: churn\ndeployments:\n  blue:\n    instance_count: 1\n    model: azureml:m:1\n    tags: {}\nargs:\n- a\n- k: 1\n  j: null\n- []\n"
        );
    }

    #[test]
    fn strings_that_read_back_as_something_else_are_quoted() {
        for (text, written) in [
            ("true", "'true'"),
            ("No", "'No'"),
            ("12", "'12'"),
            ("-1.5e3", "'-1.5e3'"),
            ("", "''"),
            ("a: b", "'a: b'"),
            ("it's", "it's"),
            ("'q'", "'''q'''"),
            ("http://x:8080/y", "http://x:8080/y"),
            ("500m", "500m"),
            ("x\u{1b}[2J", "\"x\\e[2J\""),
            ("line1\nline2", "|-\n  line1\n  line2"),
        ] {
            assert_eq!(scalar_text(text, 2), written, "{text:?}");
        }
    }

    #[test]
    fn every_written_document_reads_back_equal() {
        let doc = json!({
            "a": ["true", "1", "x: y", "#c", "multi\nline\n", " lead", "tab\tin", "", null, 2.5],
            "b": {"nested": {"list": [{"x": "- y"}]}},
            "yes": "on",
        });
        let text = to_yaml(&doc);
        let (root, errors) = crate::spec::yaml::parse(&text);
        assert!(errors.is_empty(), "{errors:?}\n{text}");
        assert_eq!(crate::spec::yaml::to_json(&root.unwrap()), doc, "{text}");
    }
}
