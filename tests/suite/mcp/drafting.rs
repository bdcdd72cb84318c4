//! `draft_config` through a model: the client's own (sampling, with elicitation for the
//! built-in drafter's questions) and a configured OpenAI-compatible endpoint, each scripted to
//! answer an invalid config first so the repair round is seen.

use super::*;

/// A client whose "model" answers sampling requests from a script (first an invalid config, then
/// a valid one) and whose user answers elicitation forms with the first choice offered. It
/// records what the server sent.
#[derive(Clone, Default)]
pub(super) struct Scripted {
    pub(super) replies: Arc<std::sync::Mutex<Vec<String>>>,
    pub(super) seen: Arc<std::sync::Mutex<Vec<String>>>,
    pub(super) sampling: bool,
}

impl ClientHandler for Scripted {
    #[allow(deprecated)]
    async fn create_message(
        &self,
        params: rmcp::model::CreateMessageRequestParams,
        _context: rmcp::service::RequestContext<RoleClient>,
    ) -> Result<rmcp::model::CreateMessageResult, rmcp::ErrorData> {
        self.seen
            .lock()
            .unwrap()
            .push(serde_json::to_string(&params).unwrap());
        let reply = self.replies.lock().unwrap().remove(0);
        Ok(rmcp::model::CreateMessageResult::new(
            rmcp::model::SamplingMessage::new(
                rmcp::model::Role::Assistant,
                rmcp::model::SamplingMessageContentBlock::text(reply),
            ),
            "scripted".into(),
        ))
    }

    async fn create_elicitation(
        &self,
        request: rmcp::model::ElicitRequestParams,
        _context: rmcp::service::RequestContext<RoleClient>,
    ) -> Result<rmcp::model::ElicitResult, rmcp::ErrorData> {
        let schema = serde_json::to_value(&request).unwrap();
        self.seen.lock().unwrap().push(schema.to_string());
        let mut answers = serde_json::Map::new();
        if let Some(props) = schema["requestedSchema"]["properties"].as_object() {
            for (field, prop) in props {
                if let Some(first) = prop["enum"].as_array().and_then(|e| e.first()) {
                    answers.insert(field.clone(), first.clone());
                }
            }
        }
        Ok(
            rmcp::model::ElicitResult::new(rmcp::model::ElicitationAction::Accept)
                .with_content(serde_json::Value::Object(answers)),
        )
    }

    #[allow(deprecated)]
    fn get_info(&self) -> ClientConfig {
        let caps = if self.sampling {
            rmcp::model::ClientCapabilities::builder()
                .enable_sampling()
                .build()
        } else {
            rmcp::model::ClientCapabilities::builder()
                .enable_elicitation()
                .build()
        };
        ClientConfig::new(caps, rmcp::model::Implementation::new("scripted", "0"))
    }
}

/// draft_config through the client's model: the invalid first answer goes back with its
/// diagnostics and the repaired one is returned; with an elicitation-capable client, the
/// built-in drafter's questions are asked in one form and the answers used.
pub(super) fn drafting_with_sampling_and_elicitation() {
    let dir = Dir(scratch("mcp-draft"));
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let model = Scripted {
            replies: Arc::new(std::sync::Mutex::new(vec![
                format!(
                    "Here it is:\n```nickel\n{}\n```",
                    dev_config(2).replace("sim-1", "sim-9")
                ),
                format!("```nickel\n{}\n```", dev_config(2)),
            ])),
            sampling: true,
            ..Scripted::default()
        };
        let transport = TokioChildProcess::new(command(&dir.0, &[])).unwrap();
        let client = model.clone().serve(transport).await.unwrap();
        let d = structured(
            &call(
                &client,
                "draft_config",
                serde_json::json!({ "intent": "two sim servers with nginx" }),
            )
            .await,
        );
        assert_eq!(d["drafter"], "sampling", "{d}");
        assert_eq!(d["rounds"], 2, "{d}");
        assert_eq!(d["valid"], true, "{d}");
        assert_eq!(d["config"]["servers"].as_array().unwrap().len(), 2);
        let seen = model.seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 2);
        // The prompt carries the schema files and the catalog; the repair round carries the
        // diagnostics of the invalid draft.
        assert!(
            seen[0].contains("server.ncl") && seen[0].contains("sim-1"),
            "{}",
            &seen[0][..400.min(seen[0].len())]
        );
        assert!(seen[1].contains("does not validate") && seen[1].contains("sim-9"));
        client.cancel().await.unwrap();

        // A model that never gets it right: the built-in draft comes back, with a notice.
        let stubborn = Scripted {
            replies: Arc::new(std::sync::Mutex::new(vec!["{ nope".into(); 3])),
            sampling: true,
            ..Scripted::default()
        };
        let transport = TokioChildProcess::new(command(&dir.0, &[])).unwrap();
        let client = stubborn.serve(transport).await.unwrap();
        let d = structured(
            &call(
                &client,
                "draft_config",
                serde_json::json!({ "intent": "two sim servers with nginx" }),
            )
            .await,
        );
        assert_eq!(d["drafter"], "built-in", "{d}");
        assert!(d["notices"].to_string().contains("after 3 rounds"), "{d}");
        client.cancel().await.unwrap();

        // Elicitation: no provider or place in the words, so the drafter asks; the user picks.
        let user = Scripted::default();
        let transport = TokioChildProcess::new(command(&dir.0, &[])).unwrap();
        let client = user.clone().serve(transport).await.unwrap();
        let d = structured(
            &call(
                &client,
                "draft_config",
                serde_json::json!({ "intent": "two web servers with nginx" }),
            )
            .await,
        );
        let elicited = d["elicited"].as_object().unwrap();
        assert!(!elicited.is_empty(), "{d}");
        let form = user.seen.lock().unwrap().clone();
        assert_eq!(form.len(), 1, "one form: {form:?}");
        assert!(
            form[0].contains("not a secret, and not an approval"),
            "{}",
            form[0]
        );
        assert_eq!(d["valid"], true, "{d}");
        for (field, answer) in elicited {
            assert!(
                !d["questions"]
                    .to_string()
                    .contains(&format!("\"field\":\"{field}\"")),
                "{field} was answered ({answer}) but is still asked: {d}"
            );
        }
        client.cancel().await.unwrap();
    });
}

/// An OpenAI-compatible endpoint answering chat completions from a script, recording each
/// request body and its Authorization header. Returns its base URL.
async fn scripted_openai(
    replies: Vec<String>,
    seen: Arc<std::sync::Mutex<Vec<(String, String)>>>,
) -> String {
    let replies = Arc::new(std::sync::Mutex::new(replies));
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        axum::routing::post(
            move |headers: axum::http::HeaderMap, body: String| {
                let replies = replies.clone();
                let seen = seen.clone();
                async move {
                    let auth = headers
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_string();
                    seen.lock().unwrap().push((auth, body));
                    let reply = replies.lock().unwrap().remove(0);
                    axum::Json(serde_json::json!({
                        "id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": "scripted",
                        "choices": [{ "index": 0, "finish_reason": "stop",
                                      "message": { "role": "assistant", "content": reply } }]
                    }))
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}/v1")
}

/// draft_config through a configured OpenAI-compatible endpoint (the client offers no
/// sampling): the repair round carries the diagnostics; the key is sent, never shown.
pub(super) fn drafting_with_an_openai_endpoint() {
    let dir = Dir(scratch("mcp-openai"));
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let base = scripted_openai(
            vec![
                format!("```nickel\n{}\n```", dev_config(2).replace("small", "huge")),
                format!("```nickel\n{}\n```", dev_config(2)),
            ],
            seen.clone(),
        )
        .await;
        let key = "sk-test-secret-0123456789";
        let mut cmd = command(&dir.0, &[]);
        cmd.env("PROVISIONING_DRAFTER_OPENAI_BASE_URL", &base)
            .env("PROVISIONING_DRAFTER_OPENAI_MODEL", "scripted")
            .env("PROVISIONING_DRAFTER_OPENAI_API_KEY", key);
        let client = Client::default()
            .serve(TokioChildProcess::new(cmd).unwrap())
            .await
            .unwrap();
        let result = call(
            &client,
            "draft_config",
            serde_json::json!({ "intent": "two sim servers with nginx" }),
        )
        .await;
        assert!(
            !format!("{result:?}").contains(key),
            "the key leaked: {result:?}"
        );
        let d = structured(&result);
        assert_eq!(d["drafter"], "openai", "{d}");
        assert_eq!(d["rounds"], 2, "{d}");
        assert_eq!(d["valid"], true, "{d}");
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[0].0, format!("Bearer {key}"));
        assert!(seen[0].1.contains("server.ncl") && seen[0].1.contains("\"model\":\"scripted\""));
        assert!(seen[1].1.contains("does not validate") && seen[1].1.contains("huge"));
        client.cancel().await.unwrap();
    });
}
