//! The one place where a policy decision is required before anything runs. The policies crate
//! implements [`Authorizer`] with Cedar; until it is wired in, [`NoPolicies`] allows and says
//! so in the recorded decision.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::plan::Plan;

/// Who asks, through which door.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Caller {
    /// `user:alice`, `agent:claude-for-alice`.
    pub principal: String,
    /// `cli`, `mcp`, `api`.
    pub channel: String,
}

impl Caller {
    /// The person at this terminal: `$USER@host`.
    pub fn local_user() -> Caller {
        let user = std::env::var("USER")
            .or_else(|_| std::env::var("LOGNAME"))
            .ok()
            .filter(|u| !u.is_empty())
            .or_else(|| {
                // No login name in the environment: the numeric uid says who it was.
                std::fs::read_to_string("/proc/self/status")
                    .ok()
                    .and_then(|s| {
                        s.lines()
                            .find_map(|l| l.strip_prefix("Uid:"))
                            .and_then(|rest| {
                                rest.split_whitespace().next().map(|u| format!("uid-{u}"))
                            })
                    })
            })
            .unwrap_or_else(|| "unknown".into());
        Caller {
            principal: format!("user:{user}"),
            channel: "cli".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Decision {
    Allow { reasons: Vec<String> },
    Deny { reasons: Vec<String> },
    NeedsApproval { gates: Vec<String> },
}

impl Decision {
    pub fn is_allow(&self) -> bool {
        matches!(self, Decision::Allow { .. })
    }
}

#[async_trait]
pub trait Authorizer: Send + Sync {
    /// May `caller` apply `plan`?
    async fn decide_apply(&self, caller: &Caller, plan: &Plan) -> Decision;
}

/// Allows everything and records that no policy set was consulted.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoPolicies;

#[async_trait]
impl Authorizer for NoPolicies {
    async fn decide_apply(&self, _caller: &Caller, _plan: &Plan) -> Decision {
        Decision::Allow {
            reasons: vec!["no policy set is configured: every apply is allowed".into()],
        }
    }
}
