//! Control characters from YAML names and values (and from anything else flightdeck echoes) are
//! escaped before they reach a terminal, a CI log or a PR comment, so a commit cannot clear a
//! screen, move the cursor, overwrite a line with CR, forge a log line with LF, or reorder text
//! with a bidi override.
//!
//! Escaped: C0 (U+0000–U+001F, including TAB, LF and CR), DEL (U+007F), C1 (U+0080–U+009F), the
//! line and paragraph separators (U+2028, U+2029) and the bidi controls (U+061C, U+200E, U+200F,
//! U+202A–U+202E, U+2066–U+2069). Text is written as Rust writes escapes: `\n`, `\r`, `\t` and
//! `\u{1b}` for the others; JSON output gets `\u001b` instead, so that it stays valid JSON.

use std::borrow::Cow;
use std::fmt;

/// True for the characters this module escapes.
pub fn is_control(c: char) -> bool {
    matches!(c,
        '\u{0}'..='\u{1f}'
        | '\u{7f}'..='\u{9f}'
        | '\u{61c}'
        | '\u{200e}'
        | '\u{200f}'
        | '\u{2028}'..='\u{202e}'
        | '\u{2066}'..='\u{2069}')
}

/// `s` with every control character escaped (`\u{1b}`, `\r`, `\n`, `\t`, `\u{9b}`, ...);
/// borrowed when there is none. Use it on every name, value or message put into a line.
pub fn escape_control(s: &str) -> Cow<'_, str> {
    escape_where(s, is_control, |out, c| match c {
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        c => out.push_str(&format!("\\u{{{:x}}}", u32::from(c))),
    })
}

/// As [`escape_control`], but keeps LF: for multi-line text whose lines flightdeck itself put
/// together (each value in it already escaped) and whose line structure must survive.
pub fn escape_control_keep_lines(s: &str) -> Cow<'_, str> {
    let mut lines = s.split('\n').map(escape_control);
    let first = lines.next().unwrap_or_default();
    let rest: Vec<Cow<'_, str>> = lines.collect();
    if rest.iter().all(|l| matches!(l, Cow::Borrowed(_))) && matches!(first, Cow::Borrowed(_)) {
        return Cow::Borrowed(s);
    }
    let mut out = first.into_owned();
    for line in rest {
        out.push('\n');
        out.push_str(&line);
    }
    Cow::Owned(out)
}

/// A serialized JSON document with the control characters that JSON allows raw inside strings
/// (DEL, C1, U+2028/2029, bidi controls) written as `\uXXXX`. serde_json already escapes C0
/// inside strings, so the C0 characters left (LF, spaces of pretty printing) are structure and
/// stay. The parsed value is unchanged.
pub fn escape_json(json: &str) -> Cow<'_, str> {
    escape_where(
        json,
        |c| is_control(c) && !matches!(c, '\u{0}'..='\u{1f}'),
        |out, c| out.push_str(&format!("\\u{:04x}", u32::from(c))),
    )
}

fn escape_where(
    s: &str,
    escape: impl Fn(char) -> bool,
    write: impl Fn(&mut String, char),
) -> Cow<'_, str> {
    if !s.chars().any(&escape) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        if escape(c) {
            write(&mut out, c);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Displays a string with its control characters escaped: `format!("{}", Esc(&name))`.
pub struct Esc<'a>(pub &'a str);

impl fmt::Display for Esc<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&escape_control(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_and_log_controls_are_written_as_escapes() {
        let s = "a\x1b[2Jb\rc\nd\te\u{9b}f\u{7f}g\u{202e}h\u{2028}i\u{2066}j\u{0}";
        assert_eq!(
            escape_control(s),
            "a\\u{1b}[2Jb\\rc\\nd\\te\\u{9b}f\\u{7f}g\\u{202e}h\\u{2028}i\\u{2066}j\\u{0}"
        );
    }

    #[test]
    fn plain_text_and_other_unicode_are_borrowed_unchanged() {
        for s in ["my-endpoint", "blue 90 → green 10", "modèle ✓ 模型", ""] {
            assert!(matches!(escape_control(s), Cow::Borrowed(_)), "{s}");
            assert!(matches!(escape_control_keep_lines(s), Cow::Borrowed(_)));
            assert!(matches!(escape_json(s), Cow::Borrowed(_)));
        }
    }

    #[test]
    fn keeping_lines_escapes_everything_but_lf() {
        assert_eq!(
            escape_control_keep_lines("one\x1b[1A\ntwo\r\n"),
            "one\\u{1b}[1A\ntwo\\r\n"
        );
        assert_eq!(escape_control_keep_lines("a\nb"), "a\nb");
    }

    #[test]
    fn json_keeps_its_structure_and_its_value() {
        let value = serde_json::json!({"name": "x\x1b\r\n\u{9b}\u{202e}y"});
        let text = serde_json::to_string_pretty(&value).unwrap();
        let escaped = escape_json(&text);
        assert!(!escaped.contains(['\x1b', '\r', '\u{9b}', '\u{202e}']));
        assert!(escaped.contains("\\u009b") && escaped.contains("\\u202e"));
        assert!(escaped.contains('\n'), "pretty printing stays");
        let back: serde_json::Value = serde_json::from_str(&escaped).unwrap();
        assert_eq!(back, value);
    }

    #[test]
    fn esc_pads_like_a_str() {
        assert_eq!(format!("[{:<6}]", Esc("a\rb")), "[a\\rb  ]");
    }
}
