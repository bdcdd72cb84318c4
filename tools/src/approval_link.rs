//! A gated `apply_plan` offers the approval link through URL-mode elicitation, to a client that
//! declared it (`elicitation.url`): the client shows the user the Control Center page of the
//! request. The link is never the approval: a person signs in there and approves; whatever the
//! client answers, the server reads the request's status from the store.
//!
//! - A 2025-11-25 session gets an `elicitation/create` request (mode `url`) while the call is
//!   open. When the user accepts and the request is approved within [`DECISION_WAIT`], the same
//!   call goes on to apply.
//! - A 2026-07-28 client (no server-to-client requests) gets an `InputRequiredResult` (the
//!   multi-round-trip pattern) carrying the elicitation and a `requestState`. The state is
//!   sealed (HMAC-SHA256 under a key of this process, bound to the caller and the plan, valid for
//!   [`STATE_TTL`]) and single use. The client retries `apply_plan` with it; the retry waits up to
//!   [`DECISION_WAIT`] for a decision and then runs the tool as any call would: policy decides
//!   again, and an approved request lets the apply run. A retry never asks again.
//!
//! Other clients get the same link in the result (`approval_url`).

use std::collections::{BTreeMap, HashMap};
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use rmcp::RoleServer;
use rmcp::model::{
    CallToolRequestParams, CallToolResult, ElicitRequest, ElicitRequestParams, ElicitationAction,
    ErrorData, InputRequest, InputRequiredResult, ProtocolVersion, RequestStateCodec, SealOptions,
};
use rmcp::service::RequestContext;
use serde::{Deserialize, Serialize};

use crate::ProvisioningServer;

/// How long a sealed `requestState` stays valid.
pub(crate) const STATE_TTL: Duration = Duration::from_secs(3600);

/// After the user accepted the link, how long the call waits for a person's decision before it
/// answers `needs_approval` again (the same bound as a running workflow's answer).
pub(crate) const DECISION_WAIT: Duration = crate::tools::apply_plan::RUN_WAIT;

/// How long a 2025-11-25 client may keep the link's dialog open (a human's time; shorter than
/// the 60 s request timeout most clients use for the call that asked).
pub(crate) const DIALOG_WAIT: Duration = Duration::from_secs(45);

/// The input request's key in `inputRequests` / `inputResponses`.
const KEY: &str = "approval";

/// How this request's client can be given the link, besides the result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Offer {
    /// No URL-mode elicitation declared: the link is in the result only.
    None,
    /// A 2025-11-25 session: an `elicitation/create` request.
    Request,
    /// 2026-07-28: an `InputRequiredResult`.
    InputRequired,
}

pub(crate) fn offer(rc: &RequestContext<RoleServer>) -> Offer {
    let url = rc
        .client_capabilities()
        .and_then(|c| c.elicitation)
        .is_some_and(|e| e.url.is_some());
    if !url {
        Offer::None
    } else if rc
        .protocol_version()
        .is_some_and(|v| v >= ProtocolVersion::V_2026_07_28)
    {
        Offer::InputRequired
    } else {
        Offer::Request
    }
}

/// What a sealed state holds: the request the link is for, and a nonce that makes it single use.
#[derive(Debug, Serialize, Deserialize)]
struct State {
    approval: String,
    nonce: String,
}

/// The sealing key lives only in this process: a restarted server refuses older states (the
/// client calls `apply_plan` again and gets a new one). `None` when the system gives no random
/// bytes: then the link is in the result only.
static CODEC: LazyLock<Option<RequestStateCodec>> = LazyLock::new(|| {
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).ok()?;
    RequestStateCodec::try_new(key.to_vec()).ok()
});

/// Nonces already redeemed, with when they stop mattering (their state's expiry).
static USED: LazyLock<Mutex<HashMap<String, Instant>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// What a state is bound to: who called and for which plan. A state replayed by another caller
/// or against another plan does not open.
fn binding(principal: &str, plan_id: &str) -> Vec<u8> {
    format!("provisioning/apply_plan/v1\0{principal}\0{plan_id}").into_bytes()
}

fn nonce() -> Option<String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).ok()?;
    Some(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The link in a gated apply's answer, with the request it names.
fn gated(result: &CallToolResult) -> Option<(String, String)> {
    let answer = result.structured_content.as_ref()?;
    if answer.get("status")?.as_str()? != "needs_approval" {
        return None;
    }
    let url = answer.get("approval_url")?.as_str()?;
    let id = answer.get("approval_request")?.get("id")?.as_str()?;
    Some((url.to_string(), id.to_string()))
}

fn plan_id(request: &CallToolRequestParams) -> String {
    request
        .arguments
        .as_ref()
        .and_then(|a| a.get("plan_id"))
        .and_then(|p| p.as_str())
        .unwrap_or_default()
        .to_string()
}

fn link_message(url: &str) -> String {
    format!(
        "This change needs a person's approval. Open {url} : a person other than the requester signs in to the Control Center there and approves or rejects it. Opening the link approves nothing."
    )
}

fn bad_state(what: &str) -> ErrorData {
    ErrorData::invalid_params(
        format!(
            "requestState {what}; call apply_plan again without requestState and inputResponses"
        ),
        None,
    )
}

/// The action of the client's answer to the link (`inputResponses.approval`).
fn answered(request: &CallToolRequestParams) -> Option<ElicitationAction> {
    let response = request.input_responses.as_ref()?.get(KEY)?;
    serde_json::from_value(response.get("action")?.clone()).ok()
}

impl ProvisioningServer {
    /// Before the tool runs: a retry that carries a `requestState` (2026-07-28). The state must
    /// open for this caller and plan and not have been used; then, when the user accepted the
    /// link, the call waits up to [`DECISION_WAIT`] for a person's decision. Returns whether the
    /// call is such a retry (which is never asked again).
    pub(crate) async fn link_retry(
        &self,
        request: &CallToolRequestParams,
        principal: &str,
    ) -> Result<bool, ErrorData> {
        let Some(sealed) = request.request_state.as_deref() else {
            if request.input_responses.is_some() {
                return Err(bad_state(
                    "is missing: inputResponses answer an input request only together with the requestState that came with it",
                ));
            }
            return Ok(false);
        };
        if request.name != "apply_plan" {
            return Err(bad_state(&format!(
                "belongs to no input request of `{}` (only a gated apply_plan asks for input)",
                request.name
            )));
        }
        let codec = CODEC
            .as_ref()
            .ok_or_else(|| bad_state("cannot be checked (no sealing key)"))?;
        let state: State = codec
            .open_json_with(sealed, &binding(principal, &plan_id(request)))
            .map_err(|_| {
                bad_state(
                    "was not issued by this server for this caller and plan, was altered, or expired (states last an hour; a restarted server issues new ones)",
                )
            })?;
        {
            let mut used = USED.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            used.retain(|_, until| *until > now);
            if used.insert(state.nonce.clone(), now + STATE_TTL).is_some() {
                return Err(bad_state("was already used once"));
            }
        }
        tracing::info!(
            approval = %state.approval,
            action = ?answered(request),
            "apply_plan retried after its approval link"
        );
        if answered(request) == Some(ElicitationAction::Accept) {
            self.await_decision(&state.approval).await;
        }
        Ok(true)
    }

    /// Waits up to [`DECISION_WAIT`] for approval request `id` to leave `pending`.
    async fn await_decision(&self, id: &str) {
        let until = Instant::now() + DECISION_WAIT;
        loop {
            let pending = match self.app.engine.approval(id).await {
                Ok(r) => {
                    r.status_at(self.app.engine.clock.now_ms()) == policies::ApprovalStatus::Pending
                }
                Err(_) => false,
            };
            if !pending || Instant::now() >= until {
                return;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// A 2026-07-28 client's gated apply: the link as an input request, with the sealed state
    /// its retry must carry. `None` when the answer is not a gated apply with a link.
    pub(crate) fn link_input_request(
        &self,
        result: &CallToolResult,
        request: &CallToolRequestParams,
        principal: &str,
    ) -> Option<InputRequiredResult> {
        let (url, approval) = gated(result)?;
        let state = State {
            approval: approval.clone(),
            nonce: nonce()?,
        };
        let binding = binding(principal, &plan_id(request));
        let sealed = CODEC
            .as_ref()?
            .seal_json_with(
                &state,
                &SealOptions::new().associated_data(&binding).ttl(STATE_TTL),
            )
            .ok()?;
        let ask = ElicitRequest::new(ElicitRequestParams::UrlElicitationParams {
            meta: None,
            message: link_message(&url),
            url,
            elicitation_id: approval,
        });
        Some(InputRequiredResult::new(
            Some(BTreeMap::from([(
                KEY.to_string(),
                InputRequest::Elicitation(ask),
            )])),
            Some(sealed),
        ))
    }

    /// A 2025-11-25 session's gated apply: asks the client to show the link; when the user
    /// accepts and a person approves within [`DECISION_WAIT`], returns true (call the tool
    /// again: it applies). A client that fails, declines or lets the dialog time out keeps the
    /// first answer, which has the link too.
    pub(crate) async fn link_dialog(
        &self,
        result: &CallToolResult,
        rc: &RequestContext<RoleServer>,
    ) -> bool {
        let Some((url, approval)) = gated(result) else {
            return false;
        };
        let asked = rc
            .peer
            .create_elicitation_with_timeout(
                ElicitRequestParams::UrlElicitationParams {
                    meta: None,
                    message: link_message(&url),
                    url,
                    elicitation_id: approval.clone(),
                },
                Some(DIALOG_WAIT),
            )
            .await;
        match asked {
            Ok(answer) if answer.action == ElicitationAction::Accept => {
                self.await_decision(&approval).await;
                matches!(
                    self.app
                        .engine
                        .approval(&approval)
                        .await
                        .map(|r| r.status_at(self.app.engine.clock.now_ms())),
                    Ok(policies::ApprovalStatus::Approved)
                )
            }
            Ok(answer) => {
                tracing::info!(approval = %approval, action = ?answer.action, "the approval link was not followed");
                false
            }
            Err(e) => {
                tracing::info!(approval = %approval, error = %e, "the approval link could not be shown");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_opens_only_for_its_caller_and_plan() {
        let state = State {
            approval: "apr-1".into(),
            nonce: nonce().unwrap(),
        };
        let codec = CODEC.as_ref().unwrap();
        let b = binding("agent:a@alice", "plan-1");
        let sealed = codec
            .seal_json_with(
                &state,
                &SealOptions::new().associated_data(&b).ttl(STATE_TTL),
            )
            .unwrap();
        let opened: State = codec.open_json_with(&sealed, &b).unwrap();
        assert_eq!(opened.approval, "apr-1");
        assert!(
            codec
                .open_json_with::<State>(&sealed, &binding("agent:b@bob", "plan-1"))
                .is_err()
        );
        assert!(
            codec
                .open_json_with::<State>(&sealed, &binding("agent:a@alice", "plan-2"))
                .is_err()
        );
        let mut altered = sealed.clone().into_bytes();
        let i = altered.len() / 2;
        altered[i] = if altered[i] == b'A' { b'B' } else { b'A' };
        assert!(
            codec
                .open_json_with::<State>(&String::from_utf8(altered).unwrap(), &b)
                .is_err()
        );
    }
}
