//! `flightdeck sandbox --state-dir DIR`: the tenant, client id and client secret are kept in
//! `DIR/credentials.json` (mode 0600), so a restarted sandbox accepts the variables its clients
//! already exported. Endpoints and deployments stay in memory. Credentials given as flags win
//! over kept ones, and the sandbox then says that they changed.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::SandboxConfig;
use super::error::SandboxError;

const FILE: &str = "credentials.json";

#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
struct Kept {
    tenant_id: String,
    client_id: String,
    client_secret: String,
}

/// What `keep_credentials` did, for the start-up log.
#[derive(Debug, PartialEq, Eq)]
pub enum KeptOutcome {
    /// The kept credentials were reused.
    Reused(PathBuf),
    /// None were kept: new ones were generated (or taken from flags) and written.
    Created(PathBuf),
    /// Flags named other credentials than the kept ones: these names changed, and clients must
    /// export the new lines.
    Changed(PathBuf, Vec<&'static str>),
}

fn config_error(path: &Path, what: impl std::fmt::Display) -> SandboxError {
    SandboxError::Config(format!("--state-dir: {}: {what}", path.display()))
}

/// Fills the configuration's tenant, client id and secret from `dir`, generating and writing
/// them the first time.
pub fn keep_credentials(
    dir: &Path,
    config: &mut SandboxConfig,
) -> Result<KeptOutcome, SandboxError> {
    std::fs::create_dir_all(dir).map_err(|e| config_error(dir, e))?;
    let path = dir.join(FILE);
    let kept: Option<Kept> = match std::fs::read(&path) {
        Ok(bytes) => Some(serde_json::from_slice(&bytes).map_err(|e| {
            SandboxError::Config(format!(
                "--state-dir: {}:{}:{}: {e}",
                path.display(),
                e.line(),
                e.column()
            ))
        })?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(config_error(&path, e)),
    };
    let mut changed = Vec::new();
    let mut pick = |name: &'static str,
                    flag: &mut Option<String>,
                    kept: Option<&String>,
                    new: fn() -> String| {
        let value = match (flag.take(), kept) {
            (Some(f), Some(k)) if &f != k => {
                changed.push(name);
                f
            }
            (Some(f), _) => f,
            (None, Some(k)) => k.clone(),
            (None, None) => new(),
        };
        *flag = Some(value.clone());
        value
    };
    let uuid = || uuid::Uuid::new_v4().to_string();
    let now = Kept {
        tenant_id: pick(
            "tenant id",
            &mut config.tenant_id,
            kept.as_ref().map(|k| &k.tenant_id),
            uuid,
        ),
        client_id: pick(
            "client id",
            &mut config.client_id,
            kept.as_ref().map(|k| &k.client_id),
            uuid,
        ),
        client_secret: pick(
            "client secret",
            &mut config.client_secret,
            kept.as_ref().map(|k| &k.client_secret),
            super::auth::random_secret,
        ),
    };
    if kept.as_ref() == Some(&now) {
        return Ok(KeptOutcome::Reused(path));
    }
    write_private(
        &path,
        &serde_json::to_vec_pretty(&now).expect("credentials serialise"),
    )
    .map_err(|e| config_error(&path, e))?;
    Ok(if kept.is_none() {
        KeptOutcome::Created(path)
    } else {
        KeptOutcome::Changed(path, changed)
    })
}

/// Writes a file only its owner can read (it holds the client secret), replacing it atomically.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("json.tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_generated_once_then_reused_and_a_flag_that_differs_is_a_change() {
        let dir = tempfile::tempdir().unwrap();
        let mut first = SandboxConfig::default();
        assert!(matches!(
            keep_credentials(dir.path(), &mut first),
            Ok(KeptOutcome::Created(_))
        ));
        let mut second = SandboxConfig::default();
        assert!(matches!(
            keep_credentials(dir.path(), &mut second),
            Ok(KeptOutcome::Reused(_))
        ));
        assert_eq!(
            (&first.tenant_id, &first.client_id, &first.client_secret),
            (&second.tenant_id, &second.client_id, &second.client_secret)
        );
        let mut third = SandboxConfig {
            tenant_id: Some("other".into()),
            ..SandboxConfig::default()
        };
        let outcome = keep_credentials(dir.path(), &mut third).unwrap();
        assert!(matches!(outcome, KeptOutcome::Changed(_, ref names) if names == &["tenant id"]));
        assert_eq!(third.client_id, first.client_id);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn an_unreadable_credentials_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE), "{\"tenant_id\": 1").unwrap();
        let err = keep_credentials(dir.path(), &mut SandboxConfig::default()).unwrap_err();
        assert!(err.to_string().contains("credentials.json:1:"), "{err}");
    }
}
