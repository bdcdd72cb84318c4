//! Which approvals count for a plan: for exactly its hash, not expired, not used before, not
//! granted by the requester, one per approver.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalRecord {
    pub id: String,
    pub plan_hash: String,
    /// User id of who granted it.
    pub approver: String,
    pub expires_at: u64,
    /// Single use: set once an apply consumed it.
    #[serde(default)]
    pub used: bool,
}

/// The number of distinct approvers whose approval is valid for `plan_hash` at `now`.
pub fn count_valid(
    records: &[ApprovalRecord],
    plan_hash: &str,
    requester: Option<&str>,
    now: u64,
) -> i64 {
    let approvers: BTreeSet<&str> = records
        .iter()
        .filter(|r| r.plan_hash == plan_hash)
        .filter(|r| r.expires_at > now)
        .filter(|r| !r.used)
        .filter(|r| Some(r.approver.as_str()) != requester)
        .map(|r| r.approver.as_str())
        .collect();
    approvers.len() as i64
}
