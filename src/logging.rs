//! Logging set-up: tracing-subscriber's formatter, writing to stderr through [`EscapingWriter`],
//! so every log line (message, fields, span fields) has its control characters escaped in one
//! place, whatever a YAML name or value or a platform answer put into it. ANSI colours are off:
//! they are control characters themselves and could not be told apart from injected ones.

use std::io::{self, Write};

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use crate::escape::{escape_control, escape_json};

/// Installs the global subscriber: `RUST_LOG` if set, else `default` (e.g. `"warn"`).
pub fn init(json: bool, default: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(EscapingStderr { json });
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Makes an [`EscapingWriter`] over stderr for each event.
#[derive(Clone, Copy, Debug)]
pub struct EscapingStderr {
    json: bool,
}

impl<'a> MakeWriter<'a> for EscapingStderr {
    type Writer = EscapingWriter<io::Stderr>;

    fn make_writer(&'a self) -> Self::Writer {
        EscapingWriter::new(io::stderr(), self.json)
    }
}

/// Writes each buffer it gets as one log line: the formatter hands over a whole event at once,
/// ending with LF. Everything before that LF is escaped (an LF inside a value too, so a value
/// cannot forge a second line); JSON lines get JSON escapes so they still parse.
pub struct EscapingWriter<W> {
    inner: W,
    json: bool,
}

impl<W: Write> EscapingWriter<W> {
    pub fn new(inner: W, json: bool) -> Self {
        EscapingWriter { inner, json }
    }
}

impl<W: Write> Write for EscapingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        let (body, end) = match text.strip_suffix('\n') {
            Some(body) => (body, "\n"),
            None => (&*text, ""),
        };
        let mut line = if self.json {
            escape_json(body).into_owned()
        } else {
            escape_control(body).into_owned()
        };
        line.push_str(end);
        self.inner.write_all(line.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn through(json: bool, event: &str) -> String {
        let mut w = EscapingWriter::new(Vec::new(), json);
        w.write_all(event.as_bytes()).unwrap();
        String::from_utf8(w.inner).unwrap()
    }

    #[test]
    fn a_text_line_keeps_its_final_lf_and_escapes_the_rest() {
        assert_eq!(
            through(false, "WARN step failed endpoint=a\x1b[2J\rb\nFAKE ok\n"),
            "WARN step failed endpoint=a\\u{1b}[2J\\rb\\nFAKE ok\n"
        );
    }

    #[test]
    fn a_json_line_stays_json() {
        let line = serde_json::to_string(&serde_json::json!({"endpoint": "a\u{9b}2J\u{202e}"}))
            .unwrap()
            + "\n";
        let out = through(true, &line);
        assert!(!out.contains(['\u{9b}', '\u{202e}']), "{out}");
        let back: serde_json::Value = serde_json::from_str(out.trim_end()).unwrap();
        assert_eq!(back["endpoint"], "a\u{9b}2J\u{202e}");
    }
}
