//! Providers: where servers and taskservs actually come into being. The executor talks to them
//! only through [`Provider`]; every mutating call carries an idempotency key so that a step
//! repeated after a crash or a retry does its side effect at most once.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub mod aws;
pub mod hetzner;
pub mod local;
pub mod output;
mod ports;
pub mod sim;
pub mod ssh;
pub mod upcloud;
mod web;

/// A stable key for one side effect: the same step of the same workflow always presents the
/// same key, on every attempt and after every restart.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct IdempotencyKey(pub String);

impl std::fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a server should be.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerSpec {
    pub workspace: String,
    pub name: String,
    pub provider: String,
    pub plan: String,
    pub zone: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// `ssh` provider: the inventory host (default: the server's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// The image, a name of the provider's catalog (`None`: the provider's default image).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
}

impl ServerSpec {
    /// The catalog entry of the image this server gets (the config's, else the provider's
    /// default): its name and what the provider's API takes. A permanent error when the
    /// catalog has no such image (validation rejects it first).
    pub fn image_entry(&self) -> ProviderResult<(String, knowledge::Image)> {
        let catalog = knowledge::Catalog::embedded()
            .map_err(|e| ProviderError::Permanent(format!("the catalog cannot be read: {e}")))?;
        let provider = catalog.provider(&self.provider).ok_or_else(|| {
            ProviderError::Permanent(format!("the catalog has no provider `{}`", self.provider))
        })?;
        let name = provider
            .image_name(self.image.as_deref())
            .ok_or_else(|| {
                ProviderError::Permanent(format!(
                    "provider `{}` has no images in its catalog",
                    self.provider
                ))
            })?
            .to_string();
        let image = provider.images.get(&name).cloned().ok_or_else(|| {
            ProviderError::Permanent(format!(
                "unknown image `{name}` for provider `{}` (images: {})",
                self.provider,
                provider
                    .images
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?;
        Ok((name, image))
    }
}

/// What a taskserv on a server should be.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskservSpec {
    pub workspace: String,
    pub server: String,
    pub name: String,
    pub version: String,
    #[serde(default)]
    pub config: serde_json::Map<String, Value>,
}

impl TaskservSpec {
    /// The ports this taskserv serves to clients outside the workspace (its definition's
    /// `public` ports, as the config sets them), which a cloud firewall opens to everyone.
    pub fn public_ports(&self) -> Vec<u16> {
        let Ok(Some(scripts)) = knowledge::taskserv_scripts(&self.name) else {
            return Vec::new();
        };
        let mut ports: Vec<u16> = scripts
            .meta
            .public
            .iter()
            .filter_map(|key| {
                match self.config.get(key).and_then(Value::as_u64) {
                    Some(port) => u16::try_from(port).ok(),
                    None => scripts.meta.ports.get(key).copied(),
                }
                .filter(|p| *p != 0)
            })
            .collect();
        ports.sort_unstable();
        ports.dedup();
        ports
    }
}

/// What the provider reports about a resource it holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Observed {
    /// The provider's own id (an instance id, a directory, a process group).
    pub provider_id: String,
    /// Attributes worth recording: address, ports, pid, plan, zone...
    #[serde(default)]
    pub attrs: BTreeMap<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "status", content = "detail")]
pub enum Health {
    Healthy,
    Unhealthy(String),
    Missing,
}

/// Why a provider call failed. Only [`ProviderError::Transient`] is retried.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum ProviderError {
    /// Worth retrying: a timeout, a rate limit, a flaky network.
    #[error("{0} (transient)")]
    Transient(String),
    /// Retrying will not help: bad request, quota, missing binary.
    #[error("{0}")]
    Permanent(String),
}

impl ProviderError {
    pub fn retryable(&self) -> bool {
        matches!(self, ProviderError::Transient(_))
    }
}

pub type ProviderResult<T> = Result<T, ProviderError>;

/// One cloud (or this machine). Implementations must make every mutating call idempotent
/// under its key: calling it again with the same key after it succeeded changes nothing and
/// returns the same result.
#[async_trait]
pub trait Provider: Send + Sync {
    fn name(&self) -> &str;
    async fn create_server(
        &self,
        key: &IdempotencyKey,
        spec: &ServerSpec,
    ) -> ProviderResult<Observed>;
    /// Change what can change in place (plan, labels).
    async fn update_server(
        &self,
        key: &IdempotencyKey,
        spec: &ServerSpec,
    ) -> ProviderResult<Observed>;
    /// `None` when the provider has no such server.
    async fn inspect_server(&self, spec: &ServerSpec) -> ProviderResult<Option<Observed>>;
    async fn delete_server(&self, key: &IdempotencyKey, spec: &ServerSpec) -> ProviderResult<()>;
    /// Install and start the taskserv, or bring a running one to `spec` (version, config).
    /// Returns once it passes its health check.
    async fn install_taskserv(
        &self,
        key: &IdempotencyKey,
        spec: &TaskservSpec,
    ) -> ProviderResult<Observed>;
    async fn taskserv_health(&self, spec: &TaskservSpec) -> ProviderResult<Health>;
    async fn remove_taskserv(
        &self,
        key: &IdempotencyKey,
        spec: &TaskservSpec,
    ) -> ProviderResult<()>;
    /// The value behind a secret fact this provider recorded (an observed attribute
    /// `{"secret": NAME}`, e.g. a password a taskserv generated), for a taskserv whose config
    /// uses it. The value joins the redactor.
    fn read_secret(&self, name: &str) -> ProviderResult<crate::secrets::Secret> {
        Err(ProviderError::Permanent(format!(
            "provider `{}` keeps no secrets (asked for `{name}`)",
            self.name()
        )))
    }
}

/// The observed attribute that stands for a secret the provider keeps: `{"secret": NAME}`.
pub fn secret_fact(name: &str) -> Value {
    serde_json::json!({ "secret": name })
}

/// The name in a secret fact (see [`secret_fact`]).
pub fn secret_fact_name(value: &Value) -> Option<&str> {
    let object = value.as_object()?;
    if object.len() != 1 {
        return None;
    }
    object.get("secret")?.as_str()
}

/// The providers a workflow may use, by name.
#[derive(Clone, Default)]
pub struct Providers {
    by_name: BTreeMap<String, Arc<dyn Provider>>,
}

impl std::fmt::Debug for Providers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.by_name.keys()).finish()
    }
}

impl Providers {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with(mut self, provider: Arc<dyn Provider>) -> Self {
        self.by_name.insert(provider.name().to_string(), provider);
        self
    }

    pub fn get(&self, name: &str) -> ProviderResult<&Arc<dyn Provider>> {
        self.by_name.get(name).ok_or_else(|| {
            ProviderError::Permanent(format!(
                "provider `{name}` is not available in this build (available: {})",
                self.by_name.keys().cloned().collect::<Vec<_>>().join(", ")
            ))
        })
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(String::as_str)
    }
}
