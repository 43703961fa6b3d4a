//! Paths that YAML names (`request_file`, `state_file.path`): relative, and inside the
//! environment directory once `.` and `..` are resolved. Symlinks are the tree reader's part
//! (`source::tree`): the loader only ever looks a path up in the tree it was given.

use std::path::{Component, Path, PathBuf};

/// The path relative to the environment directory, or why it is refused.
pub(crate) fn inside_environment(value: &str) -> Result<PathBuf, &'static str> {
    if value.is_empty() {
        return Err("the path is empty");
    }
    let path = Path::new(value);
    if path.has_root() {
        return Err("must be relative to the environment directory, not an absolute path");
    }
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return Err("leaves the environment directory");
                }
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err("must be relative to the environment directory, not an absolute path");
            }
        }
    }
    if out.as_os_str().is_empty() {
        return Err("names the environment directory itself, not a file");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_must_stay_inside_the_environment() {
        assert_eq!(
            inside_environment("./a/../b.json"),
            Ok(PathBuf::from("b.json"))
        );
        assert_eq!(
            inside_environment("sub/x.json"),
            Ok(PathBuf::from("sub/x.json"))
        );
        assert!(inside_environment("/etc/passwd").is_err());
        assert!(inside_environment("../x.json").is_err());
        assert!(inside_environment("a/../../x.json").is_err());
        assert!(inside_environment("a/..").is_err());
        assert!(inside_environment("").is_err());
    }
}
