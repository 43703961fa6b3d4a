//! The MLflow Model Registry at the edge: a REST client for the two reads a promotion needs
//! (`client`) and the receiver side of registry webhooks (`webhook`). Contract:
//! ../shared/reference/mlflow/CONTRACT.md (registry API A1-A8, webhooks B1-B12). The agent's
//! promotion loop (`agent::promotion`) uses both; nothing here writes to Git.

pub mod client;
pub mod webhook;

pub use client::{MlflowAuth, MlflowClient, MlflowError, ModelVersion};
pub use webhook::{AliasEvent, DeliveryLog, MlflowWebhookError, TIMESTAMP_TOLERANCE};
