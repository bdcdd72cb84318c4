//! The one place where a policy decision is made before anything runs or is approved.
//! [`CedarAuthorizer`] asks the policy set (defaults, or a user's directory, reloaded on
//! change) with the plan's facts; [`NoPolicies`] allows everything and says so in the recorded
//! decision (for tests of the executor alone).

use std::collections::BTreeMap;
use std::sync::Arc;

use policies::{
    Action, AuthRequest, Facts, LivePolicies, PolicyRef, Principal, Resource, ResourceType,
};
use serde::{Deserialize, Serialize};

use crate::plan::{Intent, Plan};

pub use policies::Decision;

/// Who asks, through which door, with which roles.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Caller {
    /// `user:alice`, or `agent:claude@alice` for an MCP client acting for alice.
    pub principal: String,
    /// `cli`, `mcp`, `rest`.
    pub channel: String,
    #[serde(default)]
    pub roles: Vec<String>,
    /// Signed in (a token, or the operating system account at a terminal).
    #[serde(default = "yes")]
    pub authenticated: bool,
    #[serde(default)]
    pub mfa: bool,
}

fn yes() -> bool {
    true
}

/// The login name of whoever runs this process: `$USER`, `$LOGNAME`, else `uid-N`.
pub fn login_name() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .ok()
        .filter(|u| !u.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/self/status")
                .ok()
                .and_then(|s| {
                    s.lines()
                        .find_map(|l| l.strip_prefix("Uid:"))
                        .and_then(|rest| rest.split_whitespace().next().map(|u| format!("uid-{u}")))
                })
        })
        .unwrap_or_else(|| "unknown".into())
}

impl Caller {
    /// The person at this terminal, authenticated by the operating system, without roles yet.
    pub fn local_user() -> Caller {
        Caller {
            principal: format!("user:{}", login_name()),
            channel: "cli".into(),
            roles: Vec::new(),
            authenticated: true,
            mfa: false,
        }
    }

    /// `user:NAME[:ROLE,ROLE]` or `agent:NAME@USER[:ROLE,ROLE]`.
    pub fn parse(text: &str, channel: &str) -> Result<Caller, String> {
        let usage = "expected user:NAME[:ROLE,ROLE] or agent:NAME@USER[:ROLE,ROLE]";
        let mut parts = text.splitn(3, ':');
        let kind = parts.next().unwrap_or_default();
        let name = parts
            .next()
            .filter(|n| !n.is_empty())
            .ok_or_else(|| format!("`{text}`: {usage}"))?;
        let roles: Vec<String> = parts
            .next()
            .map(|r| {
                r.split(',')
                    .filter(|x| !x.is_empty())
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default();
        match kind {
            "user" => {}
            "agent" => {
                if !name.contains('@') {
                    return Err(format!("`{text}`: an agent acts for a user; {usage}"));
                }
            }
            other => return Err(format!("`{other}` is not a principal kind; {usage}")),
        }
        Ok(Caller {
            principal: format!("{kind}:{name}"),
            channel: channel.into(),
            roles,
            authenticated: true,
            mfa: false,
        })
    }

    /// Nobody: not signed in, no roles. What an HTTP request stands for when the transport
    /// names no caller, so policy denies it (never the identity of the server's own account).
    pub fn nobody(channel: &str) -> Caller {
        Caller {
            principal: "user:nobody".into(),
            channel: channel.into(),
            roles: Vec::new(),
            authenticated: false,
            mfa: false,
        }
    }

    pub fn with_roles(mut self, roles: Vec<String>) -> Caller {
        self.roles = roles;
        self
    }

    /// The person behind the call: the user, or the user an agent acts for.
    pub fn person(&self) -> &str {
        let rest = self
            .principal
            .split_once(':')
            .map(|(_, r)| r)
            .unwrap_or(&self.principal);
        match self.principal.starts_with("agent:") {
            true => rest.split_once('@').map(|(_, u)| u).unwrap_or(rest),
            false => rest,
        }
    }

    pub fn to_principal(&self) -> Principal {
        let rest = self
            .principal
            .split_once(':')
            .map(|(_, r)| r)
            .unwrap_or(&self.principal);
        match (self.principal.starts_with("agent:"), rest.split_once('@')) {
            (true, Some((id, user))) => Principal::Agent {
                id: id.into(),
                acting_for: user.into(),
                roles: self.roles.clone(),
            },
            _ => Principal::User {
                id: rest.into(),
                roles: self.roles.clone(),
            },
        }
    }
}

/// Approval facts for a decision: valid approvals for exactly this plan, and who asked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApprovalFacts {
    pub approvals: i64,
    pub requester: Option<String>,
}

pub trait Authorizer: Send + Sync {
    /// May `caller` do `action` (apply, destroy, approve) to `plan`, given `approvals`?
    fn decide(
        &self,
        caller: &Caller,
        action: Action,
        plan: &Plan,
        approvals: &ApprovalFacts,
    ) -> Decision;

    /// Fewest approvals that clear every gate for `caller` doing `action` to `plan`.
    fn approvals_needed(&self, caller: &Caller, action: Action, plan: &Plan) -> Option<u32>;
}

/// The policy action a plan asks for.
pub fn plan_action(plan: &Plan) -> Action {
    match plan.intent {
        Intent::Apply => Action::Apply,
        Intent::Destroy => Action::Destroy,
    }
}

/// Allows everything and records that no policy set was consulted.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoPolicies;

impl Authorizer for NoPolicies {
    fn decide(&self, _: &Caller, _: Action, _: &Plan, _: &ApprovalFacts) -> Decision {
        Decision::Allow {
            policies: vec![PolicyRef {
                id: "no-policies".into(),
                description: "no policy set is configured: everything is allowed".into(),
            }],
        }
    }

    fn approvals_needed(&self, _: &Caller, _: Action, _: &Plan) -> Option<u32> {
        Some(0)
    }
}

/// Per-workspace limits that policies read: the budget and the forbidden zones.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkspaceLimits {
    /// Largest monthly cost increase without an approval, in the plan's currency.
    #[serde(default)]
    pub budget: Option<f64>,
    #[serde(default)]
    pub forbidden_zones: Vec<String>,
}

/// Decides with Cedar.
#[derive(Debug)]
pub struct CedarAuthorizer {
    pub policies: Arc<LivePolicies>,
    pub limits: BTreeMap<String, WorkspaceLimits>,
}

impl CedarAuthorizer {
    pub fn new(policies: Arc<LivePolicies>) -> CedarAuthorizer {
        CedarAuthorizer {
            policies,
            limits: BTreeMap::new(),
        }
    }

    pub fn with_limits(mut self, limits: BTreeMap<String, WorkspaceLimits>) -> Self {
        self.limits = limits;
        self
    }

    /// The Cedar request for `caller` doing `action` to `plan`.
    pub fn request(
        &self,
        caller: &Caller,
        action: Action,
        plan: &Plan,
        approvals: &ApprovalFacts,
    ) -> AuthRequest {
        let limits = self.limits.get(&plan.workspace);
        AuthRequest {
            principal: caller.to_principal(),
            action,
            resource: Resource {
                kind: ResourceType::Plan,
                id: plan.id.clone(),
                environment: plan.environment.as_str().into(),
                owner: plan.owner.clone(),
                budget_cents: limits
                    .and_then(|l| l.budget)
                    .map(|b| (b * 100.0).round() as i64),
                forbidden_zones: limits
                    .filter(|l| !l.forbidden_zones.is_empty())
                    .map(|l| l.forbidden_zones.clone()),
                hash: Some(plan.hash.clone()),
                zone: None,
            },
            facts: plan_facts(caller, plan, approvals),
        }
    }
}

/// What a plan tells policies: cost change, deletes, replacements, prod resources, zones.
pub fn plan_facts(caller: &Caller, plan: &Plan, approvals: &ApprovalFacts) -> Facts {
    let delta: f64 = plan.cost.iter().map(|c| c.delta).sum();
    Facts {
        authenticated: caller.authenticated,
        channel: caller.channel.clone(),
        mfa: caller.mfa,
        cost_delta_cents: (delta * 100.0).round() as i64,
        deletes: plan.summary.delete as i64,
        replacements: plan.summary.replace as i64,
        prod_resources_touched: plan.blast_radius.prod_resources_touched as i64,
        zones: plan.blast_radius.zones.clone(),
        approvals: approvals.approvals,
        requester: approvals.requester.clone(),
    }
}

impl Authorizer for CedarAuthorizer {
    fn decide(
        &self,
        caller: &Caller,
        action: Action,
        plan: &Plan,
        approvals: &ApprovalFacts,
    ) -> Decision {
        let request = self.request(caller, action, plan, approvals);
        match self.policies.current().decide(&request) {
            Ok(decision) => decision,
            Err(err) => Decision::Deny {
                reasons: vec![PolicyRef {
                    id: "policy-error".into(),
                    description: format!("the request could not be evaluated: {err}"),
                }],
            },
        }
    }

    fn approvals_needed(&self, caller: &Caller, action: Action, plan: &Plan) -> Option<u32> {
        let request = self.request(caller, action, plan, &ApprovalFacts::default());
        self.policies
            .current()
            .approvals_needed(&request)
            .ok()
            .flatten()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn callers_parse_and_name_their_person() {
        let c = Caller::parse("agent:claude@alice:operator", "mcp").unwrap();
        assert_eq!(c.person(), "alice");
        assert_eq!(c.roles, ["operator"]);
        assert!(
            matches!(c.to_principal(), Principal::Agent { ref acting_for, .. } if acting_for == "alice")
        );
        let u = Caller::parse("user:bob", "cli").unwrap();
        assert_eq!(u.person(), "bob");
        assert!(
            Caller::parse("agent:claude", "cli")
                .unwrap_err()
                .contains("acts for")
        );
        assert!(
            Caller::parse("robot:x", "cli")
                .unwrap_err()
                .contains("not a principal kind")
        );
        assert!(Caller::parse("user:", "cli").is_err());
    }
}
