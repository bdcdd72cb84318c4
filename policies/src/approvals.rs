//! Approval requests and which approvals count for a plan: for exactly its hash, not expired,
//! not used before, not granted by the requester (or by whoever applies), one per approver.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::{Action, PolicyRef};

/// One approval as the decision counts it.
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

/// The number of distinct approvers whose approval is valid for `plan_hash` at `now`, leaving
/// out every user in `excluded` (the requester, and whoever is applying).
pub fn count_valid(
    records: &[ApprovalRecord],
    plan_hash: &str,
    excluded: &[&str],
    now: u64,
) -> i64 {
    let approvers: BTreeSet<&str> = records
        .iter()
        .filter(|r| r.plan_hash == plan_hash)
        .filter(|r| r.expires_at > now)
        .filter(|r| !r.used)
        .filter(|r| !excluded.contains(&r.approver.as_str()))
        .map(|r| r.approver.as_str())
        .collect();
    approvers.len() as i64
}

/// Where a request stands. `Expired` is never stored: it is computed from `expires_at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalStatus {
    /// Waiting for approvals (it may already have some).
    Pending,
    /// Enough approvals; the next apply of this exact plan will use them.
    Approved,
    /// Someone said no; the comment says why. Final.
    Rejected,
    /// An apply consumed it. Final: approvals are single use.
    Used,
    /// Its time ran out before an apply used it. Final.
    Expired,
}

impl ApprovalStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalStatus::Pending => "pending",
            ApprovalStatus::Approved => "approved",
            ApprovalStatus::Rejected => "rejected",
            ApprovalStatus::Used => "used",
            ApprovalStatus::Expired => "expired",
        }
    }

    pub fn parse(text: &str) -> Option<ApprovalStatus> {
        [
            ApprovalStatus::Pending,
            ApprovalStatus::Approved,
            ApprovalStatus::Rejected,
            ApprovalStatus::Used,
            ApprovalStatus::Expired,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

/// A yes or a no from one person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    /// User id.
    pub by: String,
    /// `user:bob`, or the agent that carried it (agents cannot approve, but the record says
    /// who tried).
    pub principal: String,
    pub channel: String,
    pub at: u64,
    #[serde(default)]
    pub comment: String,
}

/// A request for approval of one exact plan, made when an apply met a gate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalRequest {
    pub id: String,
    pub plan_id: String,
    pub plan_hash: String,
    pub workspace: String,
    pub environment: String,
    /// `apply`, `destroy` or `rollback`.
    pub action: Action,
    /// User id of the person who asked (for an agent: the person it acts for).
    pub requester: String,
    /// The principal that asked: `user:alice`, `agent:claude@alice`.
    pub requested_by: String,
    pub channel: String,
    /// The gate policies that stopped the apply.
    pub gates: Vec<PolicyRef>,
    /// Fewest distinct approvals that clear every gate.
    pub required: u32,
    pub created_at: u64,
    pub expires_at: u64,
    /// Stored status: pending, rejected or used (approved and expired are derived).
    pub status: ApprovalStatus,
    #[serde(default)]
    pub approvals: Vec<Verdict>,
    #[serde(default)]
    pub rejection: Option<Verdict>,
    /// The workflow that consumed it.
    #[serde(default)]
    pub used_by: Option<String>,
    /// Grows with every change; updates are compare-and-set on it.
    #[serde(default)]
    pub rev: u64,
}

impl ApprovalRequest {
    /// The status as of `now`.
    pub fn status_at(&self, now: u64) -> ApprovalStatus {
        match self.status {
            ApprovalStatus::Rejected | ApprovalStatus::Used => self.status,
            _ if now >= self.expires_at => ApprovalStatus::Expired,
            _ if self.approvals.len() as u32 >= self.required => ApprovalStatus::Approved,
            _ => ApprovalStatus::Pending,
        }
    }

    /// Open for approvals and usable by an apply.
    pub fn is_open(&self, now: u64) -> bool {
        matches!(
            self.status_at(now),
            ApprovalStatus::Pending | ApprovalStatus::Approved
        )
    }

    /// Its approvals as the decision counts them.
    pub fn records(&self) -> Vec<ApprovalRecord> {
        self.approvals
            .iter()
            .enumerate()
            .map(|(i, v)| ApprovalRecord {
                id: format!("{}/{}", self.id, i + 1),
                plan_hash: self.plan_hash.clone(),
                approver: v.by.clone(),
                expires_at: self.expires_at,
                used: self.status == ApprovalStatus::Used,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn request() -> ApprovalRequest {
        ApprovalRequest {
            id: "apr-1".into(),
            plan_id: "plan-1".into(),
            plan_hash: "h1".into(),
            workspace: "shop".into(),
            environment: "prod".into(),
            action: Action::Apply,
            requester: "alice".into(),
            requested_by: "user:alice".into(),
            channel: "cli".into(),
            gates: vec![],
            required: 2,
            created_at: 0,
            expires_at: 100,
            status: ApprovalStatus::Pending,
            approvals: vec![],
            rejection: None,
            used_by: None,
            rev: 0,
        }
    }

    fn verdict(by: &str) -> Verdict {
        Verdict {
            by: by.into(),
            principal: format!("user:{by}"),
            channel: "cli".into(),
            at: 1,
            comment: String::new(),
        }
    }

    #[test]
    fn status_follows_approvals_expiry_and_use() {
        let mut r = request();
        assert_eq!(r.status_at(0), ApprovalStatus::Pending);
        r.approvals.push(verdict("bob"));
        assert_eq!(r.status_at(0), ApprovalStatus::Pending);
        r.approvals.push(verdict("carol"));
        assert_eq!(r.status_at(0), ApprovalStatus::Approved);
        assert!(r.is_open(0), "approved and unused: an apply may use it");
        assert_eq!(r.status_at(100), ApprovalStatus::Expired);
        assert!(!r.is_open(100));
        assert!(request().is_open(0), "pending takes approvals");
        r.status = ApprovalStatus::Used;
        assert_eq!(r.status_at(0), ApprovalStatus::Used);
        assert!(r.records().iter().all(|x| x.used));
    }

    #[test]
    fn statuses_round_trip_through_their_names() {
        let all = [
            (ApprovalStatus::Pending, "pending"),
            (ApprovalStatus::Approved, "approved"),
            (ApprovalStatus::Rejected, "rejected"),
            (ApprovalStatus::Used, "used"),
            (ApprovalStatus::Expired, "expired"),
        ];
        for (status, name) in all {
            assert_eq!(status.as_str(), name);
            assert_eq!(ApprovalStatus::parse(name), Some(status));
        }
        assert_eq!(ApprovalStatus::parse("all"), None);
        assert_eq!(ApprovalStatus::parse(""), None);
    }

    #[test]
    fn count_leaves_out_requester_applier_other_hashes_expired_and_used() {
        let mut r = request();
        for who in ["bob", "bob", "alice", "carol", "dave"] {
            r.approvals.push(verdict(who));
        }
        let records = r.records();
        assert_eq!(count_valid(&records, "h1", &["alice"], 0), 3);
        assert_eq!(count_valid(&records, "h1", &["alice", "dave"], 0), 2);
        assert_eq!(count_valid(&records, "h2", &["alice"], 0), 0);
        assert_eq!(count_valid(&records, "h1", &["alice"], 100), 0);
        r.status = ApprovalStatus::Used;
        assert_eq!(count_valid(&r.records(), "h1", &["alice"], 0), 0);
    }
}
