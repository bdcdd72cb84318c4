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

/// The account this process runs as, as the kernel reports it (the real user id, named through
/// the system's user database), else `uid-N`. Never `$USER` or `$LOGNAME`: anyone can set those.
pub fn login_name() -> String {
    account_name(nix::unistd::getuid().as_raw())
}

pub use crate::runtime::account_name;

impl Caller {
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
    /// The open request was made by an agent acting for `requester`.
    pub requested_by_agent: bool,
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
    /// Largest monthly cost increase of one plan without an approval: one amount for every
    /// currency (`budget = 150.0`), or one per currency (`budget = { EUR = 150.0, USD = 160.0 }`).
    #[serde(default)]
    pub budget: Option<Budget>,
    #[serde(default)]
    pub forbidden_zones: Vec<String>,
}

/// A workspace budget. Amounts in different currencies are never added or converted: each of a
/// plan's currencies is compared with its own amount.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Budget {
    Amount(f64),
    PerCurrency(BTreeMap<String, f64>),
}

impl Budget {
    /// The budget in `currency`; a per-currency budget that does not name it allows nothing
    /// (a plan priced in an unbudgeted currency is over budget rather than unchecked).
    pub fn in_currency(&self, currency: &str) -> f64 {
        match self {
            Budget::Amount(a) => *a,
            Budget::PerCurrency(m) => m.get(currency).copied().unwrap_or(0.0),
        }
    }

    /// Every amount, for checking the config (`(currency or "", amount)`).
    pub fn amounts(&self) -> Vec<(String, f64)> {
        match self {
            Budget::Amount(a) => vec![(String::new(), *a)],
            Budget::PerCurrency(m) => m.iter().map(|(c, a)| (c.clone(), *a)).collect(),
        }
    }
}

fn cents(amount: f64) -> i64 {
    (amount * 100.0).round() as i64
}

/// The cost change policies see, and the budget to compare it with: per currency, the one
/// furthest over (or nearest to) its budget. Without a budget, the largest change among the
/// plan's currencies; a plan without prices changes nothing.
pub fn cost_facts(plan: &Plan, budget: Option<&Budget>) -> (i64, Option<i64>) {
    let worst = plan
        .cost
        .iter()
        .map(|c| {
            let limit = budget.map(|b| cents(b.in_currency(&c.currency)));
            (cents(c.delta), limit)
        })
        .max_by_key(|(delta, limit)| delta - limit.unwrap_or(0));
    match (worst, budget) {
        (Some((delta, limit)), _) => (delta, limit),
        (None, Some(b)) => (0, Some(cents(b.in_currency("")))),
        (None, None) => (0, None),
    }
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
        let (cost_delta_cents, budget_cents) =
            cost_facts(plan, limits.and_then(|l| l.budget.as_ref()));
        let mut facts = plan_facts(caller, plan, approvals);
        facts.cost_delta_cents = cost_delta_cents;
        AuthRequest {
            principal: caller.to_principal(),
            action,
            resource: Resource {
                kind: ResourceType::Plan,
                id: plan.id.clone(),
                environment: plan.environment.as_str().into(),
                owner: plan.owner.clone(),
                budget_cents,
                forbidden_zones: limits
                    .filter(|l| !l.forbidden_zones.is_empty())
                    .map(|l| l.forbidden_zones.clone()),
                hash: Some(plan.hash.clone()),
                zone: None,
            },
            facts,
        }
    }
}

/// What a plan tells policies: cost change, deletes, replacements, prod resources, zones.
pub fn plan_facts(caller: &Caller, plan: &Plan, approvals: &ApprovalFacts) -> Facts {
    Facts {
        authenticated: caller.authenticated,
        channel: caller.channel.clone(),
        mfa: caller.mfa,
        cost_delta_cents: cost_facts(plan, None).0,
        deletes: plan.summary.delete as i64,
        replacements: plan.summary.replace as i64,
        prod_resources_touched: plan.blast_radius.prod_resources_touched as i64,
        zones: plan.blast_radius.zones.clone(),
        approvals: approvals.approvals,
        requester: approvals.requester.clone(),
        requested_by_agent: approvals.requested_by_agent,
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
    fn names_come_from_the_user_database_never_the_environment() {
        assert_eq!(account_name(0), "root");
        assert_eq!(account_name(4_000_000_123), "uid-4000000123");
        assert_eq!(login_name(), account_name(nix::unistd::getuid().as_raw()));
    }

    fn priced(costs: &[(&str, f64)]) -> Plan {
        let cfg: crate::model::Config = serde_json::from_value(serde_json::json!({
            "workspace": { "name": "ws", "environment": "staging" },
            "servers": [],
        }))
        .unwrap();
        let mut plan = crate::plan::make_plan(&cfg, &[], 0, 0);
        plan.cost = costs
            .iter()
            .map(|(currency, delta)| crate::plan::Cost {
                currency: (*currency).into(),
                before: 0.0,
                after: *delta,
                delta: *delta,
            })
            .collect();
        plan
    }

    #[test]
    fn budgets_compare_each_currency_with_its_own_amount() {
        let mixed = priced(&[("EUR", 3.0), ("USD", 4.0)]);
        // One amount for every currency: neither 3 EUR nor 4 USD is over 5 (their sum, 7, is
        // not a sum of anything).
        let five = Budget::Amount(5.0);
        assert_eq!(cost_facts(&mixed, Some(&five)), (400, Some(500)));
        assert_eq!(
            cost_facts(&mixed, Some(&Budget::Amount(3.5))),
            (400, Some(350))
        );
        // Per currency: the one furthest over its own budget is what policies see.
        let table = Budget::PerCurrency([("EUR".into(), 1.0), ("USD".into(), 10.0)].into());
        assert_eq!(cost_facts(&mixed, Some(&table)), (300, Some(100)));
        // A currency the table does not name has no allowance.
        let eur_only = Budget::PerCurrency([("EUR".into(), 10.0)].into());
        assert_eq!(cost_facts(&mixed, Some(&eur_only)), (400, Some(0)));
        // Without a budget, the largest change; without prices, none.
        assert_eq!(cost_facts(&mixed, None), (400, None));
        assert_eq!(cost_facts(&priced(&[]), None), (0, None));
        // The decision uses it: within 5 per currency is allowed in staging, over 3.50 is gated.
        let decide = |budget: Budget| {
            let policies = policies::LivePolicies::open(policies::PolicySource::Defaults).unwrap();
            let limits = WorkspaceLimits {
                budget: Some(budget),
                forbidden_zones: Vec::new(),
            };
            CedarAuthorizer::new(Arc::new(policies))
                .with_limits([("ws".to_string(), limits)].into())
                .decide(
                    &Caller::parse("user:alice", "cli").unwrap(),
                    Action::Apply,
                    &mixed,
                    &ApprovalFacts::default(),
                )
        };
        assert!(decide(five.clone()).is_allow());
        assert!(matches!(
            decide(Budget::Amount(3.5)),
            Decision::NeedsApproval { .. }
        ));
        // A forbidden zone the plan touches reaches the policies, and only a non-empty list does.
        let mut in_sim2 = priced(&[]);
        in_sim2.blast_radius.zones = vec!["sim-2".into()];
        let zoned = |forbidden: &[&str]| {
            let policies = policies::LivePolicies::open(policies::PolicySource::Defaults).unwrap();
            let limits = WorkspaceLimits {
                budget: None,
                forbidden_zones: forbidden.iter().map(|z| z.to_string()).collect(),
            };
            CedarAuthorizer::new(Arc::new(policies))
                .with_limits([("ws".to_string(), limits)].into())
                .decide(
                    &Caller::parse("user:alice:operator", "cli").unwrap(),
                    Action::Apply,
                    &in_sim2,
                    &ApprovalFacts::default(),
                )
        };
        let denied = zoned(&["sim-2"]);
        assert!(
            matches!(&denied, Decision::Deny { reasons } if reasons.iter().any(|r| r.id == "forbidden-zones")),
            "{denied:?}"
        );
        assert!(zoned(&[]).is_allow(), "{:?}", zoned(&[]));
        assert!(zoned(&["sim-1"]).is_allow());
        // The TOML forms both parse.
        let limits: WorkspaceLimits = toml::from_str("budget = 150.0").unwrap();
        assert_eq!(limits.budget, Some(Budget::Amount(150.0)));
        let limits: WorkspaceLimits = toml::from_str("budget = { EUR = 1.5 }").unwrap();
        assert_eq!(limits.budget.unwrap().in_currency("EUR"), 1.5);
    }

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
