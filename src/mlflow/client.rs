//! A small MLflow registry REST client: the version behind an alias
//! (`GET /api/2.0/mlflow/registered-models/alias`), one version
//! (`GET /api/2.0/mlflow/model-versions/get`) and, for legacy registries, the latest version in a
//! stage (`GET /api/2.0/mlflow/registered-models/get`, its `latest_versions`) [MLFLOW A1-A4, A6].
//! Errors keep MLflow's `error_code` and `message` [MLFLOW A7]. Auth: none, a bearer token or
//! HTTP Basic [MLFLOW A8]; the credential is sent only in its header and never logged or put in
//! an error.

use std::time::Duration;

use serde::Deserialize;
use url::Url;

use crate::promotion::{ModelRef, Selector};
use crate::source::Secret;

/// How requests authenticate [MLFLOW A8].
#[derive(Clone, Debug, Default)]
pub enum MlflowAuth {
    /// A plain `mlflow server`.
    #[default]
    None,
    /// `Authorization: Bearer` (MLflow's `MLFLOW_TRACKING_TOKEN`).
    Bearer(Secret),
    /// `Authorization: Basic` (`mlflow server --app-name basic-auth`).
    Basic { username: String, password: Secret },
}

/// The fields of a `ModelVersion` flightdeck reads; everything is optional in the JSON (empty
/// fields are omitted) [MLFLOW A3].
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct ModelVersion {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub version: String,
    /// `PENDING_REGISTRATION`, `FAILED_REGISTRATION` or `READY`.
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub status_message: Option<String>,
    #[serde(default)]
    pub current_stage: Option<String>,
    #[serde(default)]
    pub aliases: Vec<String>,
}

impl ModelVersion {
    /// Only READY versions are promoted [MLFLOW A3].
    pub fn is_ready(&self) -> bool {
        self.status.as_deref() == Some("READY")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MlflowError {
    #[error("{what}: not found in the MLflow registry ({code}: {message})")]
    NotFound {
        what: String,
        code: String,
        message: String,
    },
    #[error("{what}: MLflow answered HTTP {status} {code}: {message}")]
    Api {
        what: String,
        status: u16,
        code: String,
        message: String,
    },
    #[error("{what}: MLflow is unreachable")]
    Transport {
        what: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{what}: the answer is not what the MLflow API documents: {why}")]
    Malformed { what: String, why: String },
    #[error("MLflow URL `{0}` must be http(s) without a user name or password in it")]
    BadUrl(String),
}

#[derive(Deserialize)]
struct VersionBody {
    model_version: Option<ModelVersion>,
}

#[derive(Deserialize)]
struct ModelBody {
    registered_model: Option<RegisteredModel>,
}

#[derive(Deserialize)]
struct RegisteredModel {
    #[serde(default)]
    latest_versions: Vec<ModelVersion>,
}

#[derive(Deserialize, Default)]
struct ErrorBody {
    #[serde(default)]
    error_code: String,
    #[serde(default)]
    message: String,
}

#[derive(Clone, Debug)]
pub struct MlflowClient {
    base: Url,
    auth: MlflowAuth,
    http: reqwest::Client,
}

impl MlflowClient {
    /// `base` is the tracking server (`http://127.0.0.1:5000`); the API lives under `/api/2.0`
    /// [MLFLOW A1].
    pub fn new(base: &str, auth: MlflowAuth) -> Result<MlflowClient, MlflowError> {
        let mut url = Url::parse(base).map_err(|_| MlflowError::BadUrl(base.to_string()))?;
        if !matches!(url.scheme(), "http" | "https")
            || !url.username().is_empty()
            || url.password().is_some()
        {
            return Err(MlflowError::BadUrl(crate::source::redact_url(base)));
        }
        if !url.path().ends_with('/') {
            url.set_path(&format!("{}/", url.path()));
        }
        let http = reqwest::Client::builder()
            .user_agent(concat!("flightdeck/", env!("CARGO_PKG_VERSION")))
            .timeout(Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(10))
            .build()
            .expect("a TLS client can be built");
        Ok(MlflowClient {
            base: url,
            auth,
            http,
        })
    }

    pub fn base(&self) -> &Url {
        &self.base
    }

    pub fn auth(&self) -> &MlflowAuth {
        &self.auth
    }

    /// The version `model` points at now: its alias, or the newest version in its stage.
    pub async fn resolve(&self, model: &ModelRef) -> Result<ModelVersion, MlflowError> {
        match &model.selector {
            Selector::Alias(alias) => self.alias(&model.name, alias).await,
            Selector::Stage(stage) => self.stage(&model.name, stage).await,
        }
    }

    /// `GET registered-models/alias?name=&alias=` [MLFLOW A2]; a missing alias is 404 [MLFLOW A5].
    pub async fn alias(&self, name: &str, alias: &str) -> Result<ModelVersion, MlflowError> {
        let what = format!("{name}@{alias}");
        let body: VersionBody = self
            .get(
                "api/2.0/mlflow/registered-models/alias",
                &[("name", name), ("alias", alias)],
                &what,
            )
            .await?;
        body.model_version.ok_or(MlflowError::Malformed {
            what,
            why: "no `model_version`".into(),
        })
    }

    /// `GET model-versions/get?name=&version=` [MLFLOW A2].
    pub async fn version(&self, name: &str, version: &str) -> Result<ModelVersion, MlflowError> {
        let what = format!("{name} version {version}");
        let body: VersionBody = self
            .get(
                "api/2.0/mlflow/model-versions/get",
                &[("name", name), ("version", version)],
                &what,
            )
            .await?;
        body.model_version.ok_or(MlflowError::Malformed {
            what,
            why: "no `model_version`".into(),
        })
    }

    /// The version in `stage` from `registered-models/get`'s `latest_versions` (one per stage)
    /// [MLFLOW A4, A6].
    pub async fn stage(&self, name: &str, stage: &str) -> Result<ModelVersion, MlflowError> {
        let what = format!("{name}/{stage}");
        let body: ModelBody = self
            .get(
                "api/2.0/mlflow/registered-models/get",
                &[("name", name)],
                &what,
            )
            .await?;
        let model = body.registered_model.ok_or(MlflowError::Malformed {
            what: what.clone(),
            why: "no `registered_model`".into(),
        })?;
        model
            .latest_versions
            .into_iter()
            .filter(|v| v.current_stage.as_deref() == Some(stage))
            .max_by_key(|v| v.version.parse::<u64>().unwrap_or(0))
            .ok_or(MlflowError::NotFound {
                what,
                code: "RESOURCE_DOES_NOT_EXIST".into(),
                message: format!("no version of {name} is in stage {stage}"),
            })
    }

    async fn get<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, &str)],
        what: &str,
    ) -> Result<T, MlflowError> {
        let url = self.base.join(path).expect("a relative path joins");
        let mut request = self.http.get(url).query(query);
        request = match &self.auth {
            MlflowAuth::None => request,
            MlflowAuth::Bearer(token) => request.bearer_auth(token.expose()),
            MlflowAuth::Basic { username, password } => {
                request.basic_auth(username, Some(password.expose()))
            }
        };
        let transport = |source: reqwest::Error| MlflowError::Transport {
            what: what.to_string(),
            source: source.without_url(),
        };
        let response = request.send().await.map_err(transport)?;
        let status = response.status();
        let text = response.text().await.map_err(transport)?;
        if !status.is_success() {
            let error: ErrorBody = serde_json::from_str(&text).unwrap_or_default();
            let message: String = if error.message.is_empty() {
                text.chars().take(200).collect()
            } else {
                error.message.chars().take(300).collect()
            };
            let message = crate::escape::escape_control(&message).into_owned();
            // [MLFLOW A7]: 404 (or RESOURCE_DOES_NOT_EXIST) is "not found".
            if status.as_u16() == 404 || error.error_code == "RESOURCE_DOES_NOT_EXIST" {
                return Err(MlflowError::NotFound {
                    what: what.to_string(),
                    code: error.error_code,
                    message,
                });
            }
            return Err(MlflowError::Api {
                what: what.to_string(),
                status: status.as_u16(),
                code: error.error_code,
                message,
            });
        }
        serde_json::from_str(&text).map_err(|e| MlflowError::Malformed {
            what: what.to_string(),
            why: e.to_string(),
        })
    }
}
