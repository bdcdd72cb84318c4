//! A model drafts, the caller's validator checks, and an invalid draft goes back to the model
//! with what was wrong, at most [`MAX_ROUNDS`] times. The model is anything behind [`Model`]:
//! the MCP client's own through sampling (the MCP crate implements it) or an OpenAI-compatible
//! endpoint ([`crate::openai`]). The validator is behind [`Check`], so this loop knows neither
//! MCP nor the sandbox; the caller also words the repair message (its diagnostics are fenced
//! as data there).

use async_trait::async_trait;

/// Model drafts tried (the first plus repairs) before the caller falls back.
pub const MAX_ROUNDS: usize = 3;

/// Who says a turn of the conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Speaker {
    User,
    Assistant,
}

impl Speaker {
    /// The chat-completion role name.
    pub fn role(self) -> &'static str {
        match self {
            Speaker::User => "user",
            Speaker::Assistant => "assistant",
        }
    }
}

/// What one draft has spent of a model's token allowance.
#[derive(Debug, Clone, Default)]
pub struct TokenBudget {
    pub spent: u64,
}

/// A model that completes a conversation.
#[async_trait]
pub trait Model: Send + Sync {
    /// The drafter's name in answers (`sampling`, `openai`).
    fn name(&self) -> &'static str;
    /// The reply to `turns` under the `system` prompt; refused once `budget` holds the
    /// allowance (where the model has one).
    async fn complete(
        &self,
        system: &str,
        turns: &[(Speaker, String)],
        budget: &mut TokenBudget,
    ) -> Result<String, String>;
}

/// What the caller's validator made of one draft.
#[derive(Debug, Clone)]
pub struct Verdict {
    pub valid: bool,
    /// The config's value, when valid.
    pub value: Option<serde_json::Value>,
    /// What goes back to the model when invalid: the diagnostics, worded by the caller.
    pub repair: String,
    /// A line naming the first problems, for the error when every round failed.
    pub summary: String,
}

/// The caller's validator.
#[async_trait]
pub trait Check: Send + Sync {
    async fn check(&self, nickel: String) -> Result<Verdict, String>;
}

/// A valid draft from a model.
#[derive(Debug, Clone)]
pub struct ModelDraft {
    pub nickel: String,
    pub value: Option<serde_json::Value>,
    /// Rounds it took (1 when the first draft validated).
    pub rounds: usize,
}

/// Asks `model` for a config (`first` is the user's turn), checks each reply, and sends an
/// invalid one back with its [`Verdict::repair`] until one validates or [`MAX_ROUNDS`] are spent.
pub async fn draft_with_model(
    model: &dyn Model,
    check: &dyn Check,
    system: &str,
    first: String,
) -> Result<ModelDraft, String> {
    let mut turns = vec![(Speaker::User, first)];
    let mut budget = TokenBudget::default();
    let mut last = String::new();
    for round in 1..=MAX_ROUNDS {
        let text = model.complete(system, &turns, &mut budget).await?;
        let nickel = extract_nickel(&text);
        let verdict = check.check(nickel.clone()).await?;
        if verdict.valid {
            return Ok(ModelDraft {
                nickel,
                value: verdict.value,
                rounds: round,
            });
        }
        last = verdict.summary;
        turns.push((Speaker::Assistant, text));
        turns.push((Speaker::User, verdict.repair));
    }
    Err(format!("still invalid after {MAX_ROUNDS} rounds: {last}"))
}

/// The config in a model's reply: the first fenced block's body, else the whole reply.
pub fn extract_nickel(reply: &str) -> String {
    let Some(start) = reply.find("```") else {
        return reply.trim().to_string();
    };
    let after = &reply[start + 3..];
    let body = after.split_once('\n').map(|(_, b)| b).unwrap_or("");
    match body.find("```") {
        Some(end) => body[..end].trim().to_string(),
        None => body.trim().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// A model that replies from a script and records what it was sent.
    struct Scripted {
        replies: Mutex<Vec<String>>,
        seen: Mutex<Vec<Vec<(Speaker, String)>>>,
    }

    #[async_trait]
    impl Model for Scripted {
        fn name(&self) -> &'static str {
            "scripted"
        }
        async fn complete(
            &self,
            _system: &str,
            turns: &[(Speaker, String)],
            _budget: &mut TokenBudget,
        ) -> Result<String, String> {
            self.seen
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(turns.to_vec());
            let mut replies = self.replies.lock().unwrap_or_else(|e| e.into_inner());
            Ok(if replies.is_empty() {
                String::new()
            } else {
                replies.remove(0)
            })
        }
    }

    /// Valid when the text contains `ok`.
    struct ContainsOk;

    #[async_trait]
    impl Check for ContainsOk {
        async fn check(&self, nickel: String) -> Result<Verdict, String> {
            let valid = nickel.contains("ok");
            Ok(Verdict {
                valid,
                value: valid.then(|| serde_json::json!({ "text": nickel })),
                repair: format!("fix: {nickel}"),
                summary: format!("`{nickel}` is not ok"),
            })
        }
    }

    fn scripted(replies: &[&str]) -> Scripted {
        Scripted {
            replies: Mutex::new(replies.iter().map(|r| r.to_string()).collect()),
            seen: Mutex::new(Vec::new()),
        }
    }

    #[tokio::test]
    async fn an_invalid_draft_goes_back_with_its_repair_message_until_one_validates() {
        let model = scripted(&["```nickel\nbad\n```", "```nickel\nok now\n```"]);
        let got = draft_with_model(&model, &ContainsOk, "sys", "make it".into())
            .await
            .unwrap();
        assert_eq!((got.nickel.as_str(), got.rounds), ("ok now", 2));
        let seen = model.seen.lock().unwrap();
        assert_eq!(seen[1].len(), 3, "{:?}", seen[1]);
        assert_eq!(
            seen[1][1],
            (Speaker::Assistant, "```nickel\nbad\n```".into())
        );
        assert_eq!(seen[1][2], (Speaker::User, "fix: bad".into()));
    }

    #[tokio::test]
    async fn the_loop_stops_after_max_rounds_naming_the_last_problem() {
        let model = scripted(&["a", "b", "c", "ok too late"]);
        let err = draft_with_model(&model, &ContainsOk, "sys", "make it".into())
            .await
            .unwrap_err();
        assert_eq!(model.seen.lock().unwrap().len(), MAX_ROUNDS);
        assert!(err.contains("`c` is not ok"), "{err}");
    }

    #[test]
    fn the_config_is_the_first_fenced_block() {
        assert_eq!(
            extract_nickel("here:\n```nickel\n{ a = 1 }\n```\nbye"),
            "{ a = 1 }"
        );
        assert_eq!(extract_nickel("{ a = 1 }"), "{ a = 1 }");
    }
}
