//! Located problems: `path:line:col: message`. Displayed with control characters escaped
//! (`crate::escape`): messages quote YAML keys and values as they are.

use std::fmt;
use std::path::{Path, PathBuf};

use super::yaml::Pos;
use crate::escape::Esc;

/// One problem in one file. `line` and `column` are 1-based; a line of 0 means the problem
/// concerns the whole file or directory and is shown as `path: message`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Diagnostic {
    pub path: PathBuf,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl Diagnostic {
    pub fn new(path: &Path, pos: Pos, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            path: path.to_path_buf(),
            line: pos.line,
            column: pos.column,
            message: message.into(),
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.path.display().to_string();
        let (path, message) = (Esc(&path), Esc(&self.message));
        if self.line == 0 {
            write!(f, "{path}: {message}")
        } else {
            write!(f, "{path}:{}:{}: {message}", self.line, self.column)
        }
    }
}

/// Every problem found, sorted by path, line and column.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    /// Sorted and without exact duplicates.
    pub fn from_unsorted(mut all: Vec<Diagnostic>) -> Diagnostics {
        all.sort();
        all.dedup();
        Diagnostics(all)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter()
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut sorted: Vec<&Diagnostic> = self.0.iter().collect();
        sorted.sort();
        for (i, d) in sorted.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

/// Collects diagnostics for one file.
pub(crate) struct Sink<'a> {
    pub path: &'a Path,
    pub out: &'a mut Vec<Diagnostic>,
}

impl Sink<'_> {
    pub fn error(&mut self, pos: Pos, message: impl Into<String>) {
        self.out.push(Diagnostic::new(self.path, pos, message));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diagnostics_display_sorted_one_per_line() {
        let d = Diagnostics(vec![
            Diagnostic::new(Path::new("b.yml"), Pos { line: 1, column: 1 }, "second"),
            Diagnostic::new(Path::new("a.yml"), Pos { line: 9, column: 3 }, "first"),
            Diagnostic::new(Path::new("dir"), Pos::FILE, "whole"),
        ]);
        assert_eq!(
            d.to_string(),
            "a.yml:9:3: first\nb.yml:1:1: second\ndir: whole"
        );
    }

    #[test]
    fn control_characters_in_a_message_or_path_are_escaped() {
        let d = Diagnostic::new(
            Path::new("a\rb.yml"),
            Pos { line: 2, column: 1 },
            "unknown field `x\u{1b}[2J\ny`",
        );
        assert_eq!(
            d.to_string(),
            "a\\rb.yml:2:1: unknown field `x\\u{1b}[2J\\ny`"
        );
    }
}
