//! What policy would decide, now, if someone applied (or destroyed with) a stored plan, and
//! how many approvals it would take: asked, never recorded and never acted on.

use engine::authz::{ApprovalFacts, plan_action};
use engine::plan::Plan;
use policies::Action;
use policies::Decision;

use crate::{App, Caller, Result};

/// The decision for `principal` on a plan, with the policies behind it.
#[derive(Debug, Clone)]
pub struct WouldDecide {
    pub plan: Plan,
    pub action: Action,
    pub decision: Decision,
    /// For a gated plan: how many approvals it takes.
    pub approvals_needed: Option<u32>,
    /// The request Cedar is asked (principal, action, resource, facts), for people writing
    /// policies; when the application holds the Cedar policy set.
    pub request: Option<policies::AuthRequest>,
}

impl App {
    /// What policy would decide if `who` applied plan `id` (without the approvals granted so
    /// far: the rules, not the state of a request).
    pub async fn would_decide(&self, who: &Caller, id: &str) -> Result<WouldDecide> {
        let plan = self.engine.load_plan(id).await?;
        let authorizer = &self.engine.authorizer;
        let action = plan_action(&plan);
        let request = self
            .authz
            .as_ref()
            .map(|cedar| cedar.request(who, action, &plan, &ApprovalFacts::default()));
        let decision = authorizer.decide(who, action, &plan, &ApprovalFacts::default());
        let approvals_needed = match &decision {
            Decision::NeedsApproval { .. } => authorizer.approvals_needed(who, action, &plan),
            _ => None,
        };
        Ok(WouldDecide {
            plan,
            action,
            decision,
            approvals_needed,
            request,
        })
    }
}
