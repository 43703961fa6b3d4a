//! The one secret type: tokens, keys, client secrets, webhook secrets. The value lives in a
//! [`secrecy::SecretString`] (zeroed when dropped); `Debug` and `Display` print `***`, so a
//! secret in a struct, an error or a log field never shows. Read it with [`Secret::expose`], in
//! the one place that must send it.

use std::fmt;
use std::path::Path;

use secrecy::{ExposeSecret, SecretString};

#[derive(Clone)]
pub struct Secret(SecretString);

impl Secret {
    /// Trims surrounding whitespace: a trailing newline in a secret file or a variable is not
    /// part of the secret.
    pub fn new(value: impl AsRef<str>) -> Secret {
        Secret(SecretString::from(value.as_ref().trim()))
    }

    /// The secret value, for the one place that must send it.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    pub fn is_empty(&self) -> bool {
        self.expose().is_empty()
    }

    /// Reads a secret from a file; the error names the file, never the content.
    pub fn from_file(path: &Path) -> Result<Secret, SecretFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| SecretFileError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let secret = Secret::new(text);
        if secret.is_empty() {
            return Err(SecretFileError::Empty {
                path: path.display().to_string(),
            });
        }
        Ok(secret)
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Secret) -> bool {
        self.expose() == other.expose()
    }
}

impl Eq for Secret {}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// A secret file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SecretFileError {
    #[error("{path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: secret file is empty")]
    Empty { path: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_show_in_debug_or_display() {
        let s = Secret::new("hunter2\n");
        assert_eq!(s.expose(), "hunter2");
        assert!(!format!("{s:?} {s}").contains("hunter2"));
    }

    #[test]
    fn an_empty_secret_file_is_refused_with_its_name_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "  \n").unwrap();
        let err = Secret::from_file(&path).unwrap_err().to_string();
        assert!(err.ends_with("token: secret file is empty"), "{err}");
    }
}
