//! The CLI over REST: with `--server URL` (and a token), or on the local server's socket when it
//! runs, the commands ask the server instead of opening the state store, so they work while the
//! server holds the embedded store, and from another machine. Refusals keep their meaning:
//! the server's problem details become the same errors the local engine gives.

use serde::de::DeserializeOwned;

#[derive(Clone)]
pub struct Remote {
    base: String,
    /// Where the server is, for people: its URL, or `unix:PATH` for the local server's socket.
    shown: String,
    /// `None` on the local server's Unix socket: the kernel says who calls, no token.
    token: Option<String>,
    http: reqwest::Client,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl Remote {
    pub fn new(url: &str, token: Option<&str>) -> anyhow::Result<Remote> {
        if let Some(path) = url.trim().strip_prefix("unix:") {
            let http = reqwest::Client::builder()
                .unix_socket(std::path::Path::new(path))
                .build()
                .map_err(|e| anyhow::anyhow!("--server `{url}`: {e}"))?;
            return Ok(Remote {
                base: "http://localhost".into(),
                shown: format!("unix:{path}"),
                token: None,
                http,
            });
        }
        let base = url
            .trim()
            .trim_end_matches('/')
            .trim_end_matches("/mcp")
            .to_string();
        anyhow::ensure!(
            base.starts_with("http://") || base.starts_with("https://"),
            "--server `{url}`: expected a URL such as http://127.0.0.1:7070, or unix:PATH for the local server's socket"
        );
        let token = token
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "--server needs a token: set PROVISIONING_TOKEN (or --token); the server's config maps its SHA-256 to you"
                )
            })?
            .to_string();
        Ok(Remote {
            shown: base.clone(),
            base,
            token: Some(token),
            http: reqwest::Client::new(),
        })
    }

    /// Where the server is, for messages: its URL, or `unix:PATH`.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> service::Result<(u16, String)> {
        let mut req = self
            .http
            .request(method, format!("{}/api/v1{path}", self.base))
            .header(crate::http::kernel::CLI_HEADER, "cli");
        if let Some(token) = &self.token {
            req = req.bearer_auth(token);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.map_err(|e| {
            service::Error::remote(format!("cannot reach the server at {}: {e}", self.shown))
        })?;
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        Ok((status, text))
    }

    /// A request whose answer is JSON of type `T`; problem details become engine errors.
    pub async fn call<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> service::Result<T> {
        let (status, text) = self.send(method, path, body).await?;
        if (200..300).contains(&status) {
            return serde_json::from_str(&text).map_err(|e| {
                service::Error::remote(format!(
                    "the server's answer to {path} is not what this CLI expects ({e}); are the versions the same?"
                ))
            });
        }
        Err(self.refusal(status, &text))
    }

    /// A refusal's problem details as the engine error it stands for.
    fn refusal(&self, status: u16, text: &str) -> service::Error {
        let problem: serde_json::Value = serde_json::from_str(text).unwrap_or_default();
        let mut detail = problem["detail"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| text.trim().to_string());
        if let Some(reasons) = problem["reasons"].as_array() {
            for r in reasons.iter().filter_map(|r| r.as_str()) {
                detail.push_str(&format!("\n  {r}"));
            }
        }
        match status {
            401 => service::Error::remote(format!(
                "the server at {} refused the token ({detail})",
                self.shown
            )),
            403 => service::Error::new(
                service::ErrorKind::Forbidden,
                "not allowed",
                format!("not allowed: {detail}"),
            ),
            404 => service::Error::remote(detail),
            409 | 422 => {
                service::Error::new(service::ErrorKind::Conflict, "approval refused", detail)
            }
            _ => service::Error::remote(format!("the server answered {status}: {detail}")),
        }
    }

    /// A streamed answer (server-sent events), read chunk by chunk.
    pub async fn stream(&self, path: &str) -> service::Result<reqwest::Response> {
        let mut req = self
            .http
            .get(format!("{}/api/v1{path}", self.base))
            .header(crate::http::kernel::CLI_HEADER, "cli")
            .header(reqwest::header::ACCEPT, "text/event-stream");
        if let Some(token) = &self.token {
            req = req.bearer_auth(token);
        }
        let resp = req.send().await.map_err(|e| {
            service::Error::remote(format!("cannot reach the server at {}: {e}", self.shown))
        })?;
        if !resp.status().is_success() {
            let status = resp.status().as_u16();
            let text = resp.text().await.unwrap_or_default();
            return Err(service::Error::remote(format!(
                "the server answered {status}: {}",
                text.trim()
            )));
        }
        Ok(resp)
    }

    pub async fn text(&self, path: &str) -> service::Result<String> {
        let (status, text) = self.send(reqwest::Method::GET, path, None).await?;
        if (200..300).contains(&status) {
            Ok(text)
        } else {
            Err(service::Error::remote(format!(
                "the server answered {status}: {}",
                text.trim()
            )))
        }
    }
}

/// The CLI's questions answered by a running server, over its REST API (the token, or the
/// kernel on the local socket, says who asks: the caller given is not sent).
#[async_trait::async_trait]
impl service::Operations for Remote {
    fn now_ms(&self) -> u64 {
        service::model::now_ms()
    }

    fn location(&self) -> Option<&str> {
        Some(&self.shown)
    }

    async fn workflows(
        &self,
        limit: usize,
    ) -> service::Result<Vec<service::model::WorkflowRecord>> {
        Ok(self
            .call(
                reqwest::Method::GET,
                &format!("/workflows?limit={limit}"),
                None,
            )
            .await?)
    }

    async fn workflow(&self, id: &str) -> service::Result<service::WorkflowView> {
        Ok(self
            .call(reqwest::Method::GET, &format!("/workflows/{id}"), None)
            .await?)
    }

    async fn approvals(
        &self,
        status: Option<policies::ApprovalStatus>,
        limit: usize,
    ) -> service::Result<Vec<policies::ApprovalRequest>> {
        let which = status.map(|s| s.as_str()).unwrap_or("all");
        Ok(self
            .call(
                reqwest::Method::GET,
                &format!("/approvals?status={which}&limit={limit}"),
                None,
            )
            .await?)
    }

    async fn approval(&self, id: &str) -> service::Result<service::ApprovalView> {
        let v: serde_json::Value = self
            .call(reqwest::Method::GET, &format!("/approvals/{id}"), None)
            .await?;
        let unreadable = |e: serde_json::Error| {
            service::Error::remote(format!("the server sent an unreadable request: {e}"))
        };
        let request: policies::ApprovalRequest =
            serde_json::from_value(v["request"].clone()).map_err(unreadable)?;
        let mut plan = v["plan"].clone();
        if let Some(o) = plan.as_object_mut() {
            o.remove("rendered");
        }
        let status = v["status"]
            .as_str()
            .and_then(policies::ApprovalStatus::parse)
            .unwrap_or_else(|| request.status_at(service::Operations::now_ms(self)));
        Ok(service::ApprovalView {
            plan: serde_json::from_value(plan).ok(),
            plan_is_stale: v["plan_is_stale"] == true,
            status,
            request,
        })
    }

    async fn state(
        &self,
    ) -> service::Result<std::collections::BTreeMap<String, Vec<service::model::Resource>>> {
        Ok(self.call(reqwest::Method::GET, "/state", None).await?)
    }

    async fn drift(&self, workspace: &str) -> service::Result<service::model::DriftReport> {
        Ok(self
            .call(
                reqwest::Method::GET,
                &format!("/drift?workspace={workspace}"),
                None,
            )
            .await?)
    }

    async fn audit_all(&self) -> service::Result<Vec<policies::audit::AuditEntry>> {
        let text = self.text("/audit/export").await?;
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                serde_json::from_str(l).map_err(|e| {
                    service::Error::remote(format!(
                        "the server sent an unreadable audit entry: {e}"
                    ))
                })
            })
            .collect()
    }

    async fn verify_audit(&self) -> service::Result<service::AuditCheck> {
        let v: serde_json::Value = self
            .call(reqwest::Method::GET, "/audit/verify", None)
            .await?;
        Ok(service::AuditCheck {
            entries: v["entries"].as_u64().unwrap_or(0) as usize,
            head: None,
            problem: match v["ok"] == true {
                true => None,
                false => Some(v["problem"].as_str().unwrap_or("(no detail)").to_string()),
            },
        })
    }

    async fn decide(
        &self,
        _caller: &service::Caller,
        id: &str,
        approve: bool,
        comment: &str,
    ) -> service::Result<policies::ApprovalRequest> {
        let verb = if approve { "approve" } else { "reject" };
        Ok(self
            .call(
                reqwest::Method::POST,
                &format!("/approvals/{id}/{verb}"),
                Some(serde_json::json!({ "comment": comment })),
            )
            .await?)
    }

    async fn cancel(&self, _caller: &service::Caller, id: &str) -> service::Result<()> {
        self.call::<serde_json::Value>(
            reqwest::Method::POST,
            &format!("/workflows/{id}/cancel"),
            None,
        )
        .await?;
        Ok(())
    }

    async fn plan(
        &self,
        checked: &service::Checked,
        destroy: bool,
    ) -> service::Result<service::PlanView> {
        let source = knowledge::to_nickel(&checked.value)
            .map_err(|e| service::Error::remote(format!("the config cannot be sent: {e}")))?;
        let body = serde_json::json!({ "config": source, "destroy": destroy });
        plan_view(
            self.call(reqwest::Method::POST, "/plans", Some(body))
                .await?,
        )
    }

    async fn stored_plan(&self, id: &str) -> service::Result<service::PlanView> {
        plan_view(
            self.call(reqwest::Method::GET, &format!("/plans/{id}"), None)
                .await?,
        )
    }

    async fn preflight(
        &self,
        _caller: &service::Caller,
        id: &str,
    ) -> service::Result<service::Preflight> {
        let auth: serde_json::Value = self
            .call(
                reqwest::Method::POST,
                &format!("/plans/{id}/authorize"),
                None,
            )
            .await?;
        let decision = serde_json::from_value(auth["authorization"].clone()).map_err(|e| {
            service::Error::remote(format!(
                "the server's decision is not one this CLI knows ({e}); are the versions the same?"
            ))
        })?;
        Ok(service::Preflight {
            decision,
            request: serde_json::from_value(auth["request"].clone()).ok(),
            principal: auth["principal"].as_str().unwrap_or("you").to_string(),
        })
    }

    async fn start(&self, _caller: &service::Caller, id: &str) -> service::Result<service::Start> {
        let path = format!("/plans/{id}/apply");
        let (status, text) = self.send(reqwest::Method::POST, &path, None).await?;
        let answer: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        if status == 403
            && let Ok(request) = serde_json::from_value(answer["approval_request"].clone())
        {
            return Ok(service::Start::NeedsApproval {
                message: answer["detail"].as_str().unwrap_or_default().to_string(),
                request: Box::new(request),
            });
        }
        if !(200..300).contains(&status) {
            return Err(self.refusal(status, &text));
        }
        let Some(workflow) = answer["workflow"].as_str() else {
            // Nothing to change after all (someone else applied the same thing meanwhile).
            return Ok(service::Start::NoChanges {
                plan: id.to_string(),
            });
        };
        let steps = service::Operations::workflow(self, workflow)
            .await?
            .steps
            .len();
        Ok(service::Start::Started {
            workflow: workflow.to_string(),
            steps,
        })
    }

    async fn finish(
        &self,
        workflow: &str,
        events: service::Events,
    ) -> service::Result<service::model::RunOutcome> {
        // Checkpointed steps survive the server: say how to continue when it goes away.
        let gone = |e: &dyn std::fmt::Display| {
            service::Error::remote(format!(
                "the server at {} stopped answering while workflow {workflow} ran ({e}); once it runs again, `provisioning resume {workflow}` continues from the last checkpoint",
                self.shown
            ))
        };
        let mut stream = self
            .stream(&format!("/workflows/{workflow}/events"))
            .await?;
        let mut buffer = String::new();
        'events: while let Some(chunk) = stream.chunk().await.map_err(|e| gone(&e))? {
            buffer.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buffer.find("\n\n") {
                let message: String = buffer.drain(..end + 2).collect();
                let data: String = message
                    .lines()
                    .filter_map(|l| l.strip_prefix("data:"))
                    .map(str::trim_start)
                    .collect();
                // The server redacts what it streams.
                let Ok(event) = serde_json::from_str::<service::model::Event>(&data) else {
                    continue;
                };
                let finished = event.kind == service::model::EventKind::WorkflowFinished;
                if events.send(event).is_err() || finished {
                    break 'events;
                }
            }
        }
        let after = service::Operations::workflow(self, workflow)
            .await
            .map_err(|e| gone(&e))?;
        Ok(service::model::RunOutcome::of(
            &after.workflow,
            &after.steps,
        ))
    }

    async fn continue_to_end(
        &self,
        _caller: &service::Caller,
        id: &str,
        rollback: bool,
        events: service::Events,
    ) -> service::Result<service::model::RunOutcome> {
        let action = if rollback { "rollback" } else { "resume" };
        let answer: serde_json::Value = self
            .call(
                reqwest::Method::POST,
                &format!("/workflows/{id}/{action}"),
                None,
            )
            .await?;
        // Finished within the request: the outcome itself.
        if let Ok(outcome) = serde_json::from_value(answer.clone()) {
            return Ok(outcome);
        }
        let workflow = answer["workflow"].as_str().unwrap_or(id).to_string();
        service::Operations::finish(self, &workflow, events).await
    }
}

/// A plan as the server sends it: the plan's fields and its rendered diff.
fn plan_view(mut v: serde_json::Value) -> service::Result<service::PlanView> {
    let rendered = v
        .as_object_mut()
        .and_then(|o| o.remove("rendered"))
        .and_then(|r| r.as_str().map(str::to_string))
        .unwrap_or_default();
    let plan = serde_json::from_value(v).map_err(|e| {
        service::Error::remote(format!(
            "the server's plan is not what this CLI expects ({e}); are the versions the same?"
        ))
    })?;
    Ok(service::PlanView { plan, rendered })
}
