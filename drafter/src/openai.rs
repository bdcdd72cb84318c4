//! The OpenAI-compatible drafter: chat completions at a configured base URL (OpenAI, or any
//! server speaking the same API), through `async-openai`. The server's settings supply the base
//! URL, the model, the API key as a secret reference (resolved at each call, so it joins the
//! redactor and is never kept in plain text here), a token budget (per call and per draft) and
//! a time limit per call. The key is never logged or returned, and the base URL is shown only
//! without user, password and query ([`display_url`]).

use std::time::Duration;

use async_openai::Client;
use async_openai::config::OpenAIConfig;
use engine::secrets::{SecretRef, Secrets};

use crate::model::{Model, Speaker, TokenBudget};

/// Most tokens one completion may produce, unless configured.
pub const DEFAULT_MAX_TOKENS: u32 = 2048;
/// Most tokens (prompt and completion) one draft may spend across its rounds, unless configured.
pub const DEFAULT_MAX_TOTAL_TOKENS: u64 = 60_000;
/// Longest one call may take, unless configured.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// How the drafter is configured.
#[derive(Debug, Clone)]
pub struct OpenAiSettings {
    /// e.g. `https://api.openai.com/v1`.
    pub base_url: String,
    pub model: String,
    /// The API key; `None` sends no key (a local server that needs none).
    pub api_key: Option<SecretRef>,
    /// `max_tokens` of each completion.
    pub max_tokens: u32,
    /// Tokens one draft may spend over all its rounds (the endpoint's `usage`, else an
    /// estimate of four bytes a token).
    pub max_total_tokens: u64,
    /// Time limit of one call, retries included.
    pub timeout: Duration,
}

/// A configured endpoint.
pub struct OpenAiDrafter {
    settings: OpenAiSettings,
    secrets: Secrets,
    shown_url: String,
}

impl std::fmt::Debug for OpenAiDrafter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiDrafter")
            .field("base_url", &self.shown_url)
            .field("model", &self.settings.model)
            .finish_non_exhaustive()
    }
}

/// `url` without user, password, query and fragment, for logs and messages. The password and
/// query, being likely credentials, are registered with `secrets`' redactor.
pub fn display_url(url: &str, secrets: Option<&Secrets>) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            if let Some(s) = secrets {
                if let Some(password) = parsed.password() {
                    s.redactor().register(password);
                    if let Some(decoded) = urldecode(password) {
                        s.redactor().register(&decoded);
                    }
                }
                if let Some(query) = parsed.query() {
                    s.redactor().register(query);
                    for (_, v) in parsed.query_pairs() {
                        s.redactor().register(&v);
                    }
                }
            }
            let _ = parsed.set_username("");
            let _ = parsed.set_password(None);
            parsed.set_query(None);
            parsed.set_fragment(None);
            parsed.to_string().trim_end_matches('/').to_string()
        }
        Err(_) => "<a base URL that does not parse>".to_string(),
    }
}

/// A percent-encoded URL component, decoded.
fn urldecode(text: &str) -> Option<String> {
    url::form_urlencoded::parse(format!("x={text}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
}

impl OpenAiDrafter {
    pub fn new(settings: OpenAiSettings, secrets: Secrets) -> OpenAiDrafter {
        let shown_url = display_url(&settings.base_url, Some(&secrets));
        OpenAiDrafter {
            settings,
            secrets,
            shown_url,
        }
    }

    /// The base URL without credentials or query.
    pub fn base_url(&self) -> &str {
        &self.shown_url
    }

    pub fn model(&self) -> &str {
        &self.settings.model
    }

    pub fn settings(&self) -> &OpenAiSettings {
        &self.settings
    }
}

#[async_trait::async_trait]
impl Model for OpenAiDrafter {
    fn name(&self) -> &'static str {
        "openai"
    }

    /// One chat completion: the system prompt, then the conversation. Returns the first
    /// choice's text. Refused once `budget` holds the draft's whole allowance.
    async fn complete(
        &self,
        system: &str,
        turns: &[(Speaker, String)],
        budget: &mut TokenBudget,
    ) -> Result<String, String> {
        let s = &self.settings;
        let remaining = s.max_total_tokens.saturating_sub(budget.spent);
        if remaining == 0 {
            return Err(format!(
                "the draft spent its token budget ({} of {} tokens; `max_total_tokens` in [drafter.openai])",
                budget.spent, s.max_total_tokens
            ));
        }
        // The key is read at the moment of use; it joins the redactor as it is read.
        let key = match &s.api_key {
            Some(reference) => self
                .secrets
                .resolve(reference)
                .map_err(|e| format!("the OpenAI-compatible endpoint's API key: {e}"))?
                .expose()
                .to_string(),
            None => String::new(),
        };
        let client = Client::with_config(
            OpenAIConfig::new()
                .with_api_base(s.base_url.trim_end_matches('/'))
                .with_api_key(key),
        );
        let mut messages = vec![serde_json::json!({ "role": "system", "content": system })];
        for (role, text) in turns {
            messages.push(serde_json::json!({ "role": role.role(), "content": text }));
        }
        let prompt_bytes: usize = system.len() + turns.iter().map(|(_, t)| t.len()).sum::<usize>();
        let max_tokens = u64::from(s.max_tokens).min(remaining);
        let request = serde_json::json!({
            "model": s.model,
            "messages": messages,
            "temperature": 0,
            "max_tokens": max_tokens,
        });
        let chat = client.chat();
        let call = chat.create_byot(request);
        let response: serde_json::Value = match tokio::time::timeout(s.timeout, call).await {
            Err(_) => {
                return Err(format!(
                    "the endpoint at {} did not answer within {} s (`timeout_secs` in [drafter.openai])",
                    self.shown_url,
                    s.timeout.as_secs_f64()
                ));
            }
            Ok(Err(e)) => {
                return Err(format!(
                    "the endpoint at {} answered with an error: {e}",
                    self.shown_url
                ));
            }
            Ok(Ok(v)) => v,
        };
        let text = response["choices"][0]["message"]["content"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| {
                format!(
                    "the endpoint at {} returned no message content",
                    self.shown_url
                )
            })?;
        budget.spent += response["usage"]["total_tokens"]
            .as_u64()
            .unwrap_or(((prompt_bytes + text.len()) / 4) as u64);
        Ok(text)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use engine::secrets::{Redactor, SecretSource, Secrets};

    use super::display_url;

    struct Nothing;
    impl SecretSource for Nothing {
        fn var(&self, _: &str) -> Option<String> {
            None
        }
        fn read(&self, _: &std::path::Path) -> std::io::Result<Vec<u8>> {
            Err(std::io::ErrorKind::NotFound.into())
        }
    }

    #[test]
    fn urls_are_shown_without_credentials_or_query() {
        let secrets = Secrets::new(Arc::new(Nothing), Redactor::new());
        assert_eq!(
            display_url(
                "https://bob:hunter2-hunter2@llm.example.com:8443/v1/?api-key=query-secret-1#x",
                Some(&secrets)
            ),
            "https://llm.example.com:8443/v1"
        );
        assert_eq!(
            display_url("http://127.0.0.1:9/v1", None),
            "http://127.0.0.1:9/v1"
        );
        assert_eq!(
            display_url("not a url", None),
            "<a base URL that does not parse>"
        );
        // The password and the query's values are secrets from now on.
        let r = secrets.redactor();
        assert_eq!(
            r.redact("x hunter2-hunter2 y query-secret-1"),
            "x [redacted] y [redacted]"
        );
    }
}
