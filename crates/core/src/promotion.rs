//! `promotion:` in `environment.yaml`: which model-registry alias (or legacy stage) feeds which
//! endpoint deployment or slot template, and whether the agent commits a promotion on the
//! tracked branch or opens a pull request. Pure data; the agent's MLflow edge
//! (`src/promotion/`) reads it. docs/environment-format.md "Promotion".

use serde::{Deserialize, Serialize};

/// How the agent writes a promotion.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PromotionMode {
    /// A commit pushed onto the tracked branch.
    #[default]
    Commit,
    /// A branch pushed and a pull request opened into the tracked branch.
    PullRequest,
}

/// What a registry reference follows: an alias (`churn@champion`) or a deprecated stage
/// (`churn/Production`) [MLFLOW A5, A6].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Selector {
    Alias(String),
    Stage(String),
}

/// A registered model and what to follow of it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelRef {
    pub name: String,
    pub selector: Selector,
}

/// The legacy stages a promotion can follow (`None` and `Archived` serve nothing).
pub const STAGES: [&str; 2] = ["Staging", "Production"];

impl ModelRef {
    /// `NAME@ALIAS` or `NAME/STAGE`. Aliases: letters, digits, `_` and `-`, not `latest` and
    /// not a version number (`1`, `v1`) [MLFLOW A5].
    pub fn parse(text: &str) -> Result<ModelRef, String> {
        let text = text.trim();
        if let Some((name, alias)) = text.rsplit_once('@') {
            check_name(name)?;
            if alias.is_empty()
                || !alias
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))
            {
                return Err(format!(
                    "`{text}`: alias `{alias}` must be letters, digits, `_` or `-`"
                ));
            }
            let digits = alias.strip_prefix(['v', 'V']).unwrap_or(alias);
            if alias.eq_ignore_ascii_case("latest")
                || (!digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit()))
            {
                return Err(format!(
                    "`{text}`: alias `{alias}` is reserved by MLflow (`latest` and version-like names)"
                ));
            }
            return Ok(ModelRef {
                name: name.to_string(),
                selector: Selector::Alias(alias.to_string()),
            });
        }
        if let Some((name, stage)) = text.rsplit_once('/') {
            check_name(name)?;
            let Some(stage) = STAGES.iter().find(|s| s.eq_ignore_ascii_case(stage)) else {
                return Err(format!(
                    "`{text}`: stage `{stage}` is not one of {}",
                    STAGES.join(", ")
                ));
            };
            return Ok(ModelRef {
                name: name.to_string(),
                selector: Selector::Stage((*stage).to_string()),
            });
        }
        Err(format!(
            "`{text}` is not a registry reference: expected MODEL@ALIAS (e.g. churn-model@champion) or the legacy MODEL/STAGE (e.g. churn-model/Production)"
        ))
    }
}

fn check_name(name: &str) -> Result<(), String> {
    if name.trim().is_empty() {
        return Err("the registered model's name is empty".into());
    }
    Ok(())
}

impl std::fmt::Display for ModelRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.selector {
            Selector::Alias(a) => write!(f, "{}@{a}", self.name),
            Selector::Stage(s) => write!(f, "{}/{s}", self.name),
        }
    }
}

/// One mapping: this reference feeds this endpoint's deployment (or its slot template).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromotionRule {
    pub model: ModelRef,
    pub endpoint: String,
    /// `None` for a slot endpoint (its template changes) or an endpoint with one deployment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment: Option<String>,
}

/// The whole `promotion:` section.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromotionSettings {
    #[serde(default)]
    pub mode: PromotionMode,
    #[serde(default)]
    pub models: Vec<PromotionRule>,
}

impl PromotionSettings {
    pub fn is_empty(&self) -> bool {
        self.models.is_empty()
    }

    /// The rules that follow `model` with `selector`.
    pub fn rules_for<'a>(
        &'a self,
        model: &'a str,
        selector: &'a Selector,
    ) -> impl Iterator<Item = &'a PromotionRule> + 'a {
        self.models
            .iter()
            .filter(move |r| r.model.name == model && &r.model.selector == selector)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_and_legacy_stages_parse_and_everything_else_is_refused() {
        assert_eq!(
            ModelRef::parse("churn-model@champion").unwrap(),
            ModelRef {
                name: "churn-model".into(),
                selector: Selector::Alias("champion".into())
            }
        );
        assert_eq!(
            ModelRef::parse("churn-model/production").unwrap().selector,
            Selector::Stage("Production".into())
        );
        assert_eq!(
            ModelRef::parse("a@b").unwrap().to_string(),
            "a@b".to_string()
        );
        for bad in [
            "churn-model",
            "@champion",
            "churn@",
            "churn@latest",
            "churn@v3",
            "churn@3",
            "churn@ch ampion",
            "churn/Archived",
            "/Production",
        ] {
            assert!(ModelRef::parse(bad).is_err(), "{bad} was accepted");
        }
    }
}
