//! The OpenAI-compatible drafter: chat completions at a configured base URL (OpenAI, or any
//! server speaking the same API), through `async-openai`. Configured from the environment:
//! `PROVISIONING_DRAFTER_OPENAI_BASE_URL` (e.g. `https://api.openai.com/v1`),
//! `PROVISIONING_DRAFTER_OPENAI_MODEL`, and the key from `PROVISIONING_DRAFTER_OPENAI_API_KEY`
//! (else `OPENAI_API_KEY`). The key is never logged or returned.

use async_openai::Client;
use async_openai::config::OpenAIConfig;

/// A configured endpoint.
pub struct OpenAiDrafter {
    client: Client<OpenAIConfig>,
    pub base_url: String,
    pub model: String,
}

impl std::fmt::Debug for OpenAiDrafter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiDrafter")
            .field("base_url", &self.base_url)
            .field("model", &self.model)
            .finish_non_exhaustive()
    }
}

impl OpenAiDrafter {
    /// From the environment; `None` when no base URL or model is set.
    pub fn from_env() -> Option<OpenAiDrafter> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let base_url = var("PROVISIONING_DRAFTER_OPENAI_BASE_URL")?;
        let model = var("PROVISIONING_DRAFTER_OPENAI_MODEL")?;
        let key = var("PROVISIONING_DRAFTER_OPENAI_API_KEY")
            .or_else(|| var("OPENAI_API_KEY"))
            .unwrap_or_default();
        Some(OpenAiDrafter::new(&base_url, &model, &key))
    }

    pub fn new(base_url: &str, model: &str, key: &str) -> OpenAiDrafter {
        let config = OpenAIConfig::new()
            .with_api_base(base_url.trim_end_matches('/'))
            .with_api_key(key);
        OpenAiDrafter {
            client: Client::with_config(config),
            base_url: base_url.to_string(),
            model: model.to_string(),
        }
    }

    /// One chat completion: the system prompt, then the conversation as (role, text) pairs
    /// with role `user` or `assistant`. Returns the first choice's text.
    pub async fn complete(&self, system: &str, turns: &[(&str, String)]) -> Result<String, String> {
        let mut messages = vec![serde_json::json!({ "role": "system", "content": system })];
        for (role, text) in turns {
            messages.push(serde_json::json!({ "role": role, "content": text }));
        }
        let request = serde_json::json!({
            "model": self.model,
            "messages": messages,
            "temperature": 0,
        });
        let response: serde_json::Value =
            self.client.chat().create_byot(request).await.map_err(|e| {
                format!(
                    "the endpoint at {} answered with an error: {e}",
                    self.base_url
                )
            })?;
        response["choices"][0]["message"]["content"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| {
                format!(
                    "the endpoint at {} returned no message content",
                    self.base_url
                )
            })
    }
}
