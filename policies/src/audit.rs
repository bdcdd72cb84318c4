//! The tamper-evident audit log: every entry holds the hash of the one before, and its own
//! hash over its content, so editing or removing any entry breaks the chain. The store keeps
//! the newest hash as the head, so removing entries at the end is caught too.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The `prev_hash` of the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub seq: u64,
    pub at: u64,
    /// `decision`, `apply`, `step`, `workflow`, `approval`, `denial`...
    pub kind: String,
    /// Who: `user:alice`, `agent:claude`, `engine`.
    pub actor: String,
    /// What: a workflow, plan or resource id.
    pub subject: String,
    pub data: Value,
    pub prev_hash: String,
    pub hash: String,
}

/// SHA-256 over everything but the hash itself.
pub fn entry_hash(entry: &AuditEntry) -> String {
    let content = serde_json::json!({
        "seq": entry.seq,
        "at": entry.at,
        "kind": entry.kind,
        "actor": entry.actor,
        "subject": entry.subject,
        "data": entry.data,
        "prev_hash": entry.prev_hash,
    });
    crate::canonical::sha256_hex(&content)
}

/// The next entry after `prev` (or the first one).
pub fn next_entry(
    prev: Option<(u64, &str)>,
    at: u64,
    kind: &str,
    actor: &str,
    subject: &str,
    data: Value,
) -> AuditEntry {
    let (seq, prev_hash) = match prev {
        Some((seq, hash)) => (seq + 1, hash.to_string()),
        None => (1, GENESIS.to_string()),
    };
    let mut entry = AuditEntry {
        seq,
        at,
        kind: kind.to_string(),
        actor: actor.to_string(),
        subject: subject.to_string(),
        data,
        prev_hash,
        hash: String::new(),
    };
    entry.hash = entry_hash(&entry);
    entry
}

/// Where the chain is broken, and how.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[error("audit chain broken at entry {seq}: {reason}")]
pub struct ChainBreak {
    pub seq: u64,
    pub reason: String,
}

/// Checks a whole log (ordered by seq) against the recorded head (the newest hash, if any).
/// Returns the number of entries verified.
pub fn verify(entries: &[AuditEntry], head: Option<(u64, &str)>) -> Result<usize, ChainBreak> {
    let mut prev_hash = GENESIS.to_string();
    let mut expected_seq = 1;
    for entry in entries {
        if entry.seq != expected_seq {
            return Err(ChainBreak {
                seq: expected_seq,
                reason: format!(
                    "entry {expected_seq} is missing (next present is {})",
                    entry.seq
                ),
            });
        }
        if entry.prev_hash != prev_hash {
            return Err(ChainBreak {
                seq: entry.seq,
                reason: "it does not point at the entry before it".into(),
            });
        }
        if entry_hash(entry) != entry.hash {
            return Err(ChainBreak {
                seq: entry.seq,
                reason: "its content does not match its hash (edited)".into(),
            });
        }
        prev_hash = entry.hash.clone();
        expected_seq += 1;
    }
    match head {
        Some((seq, hash)) if seq != expected_seq - 1 || hash != prev_hash => Err(ChainBreak {
            seq: expected_seq,
            reason: format!(
                "the log ends at entry {} but the head says {seq}: entries were removed from the end",
                expected_seq - 1
            ),
        }),
        None if !entries.is_empty() => Err(ChainBreak {
            seq: 1,
            reason: "entries exist but the head record is missing".into(),
        }),
        _ => Ok(entries.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: u64) -> Vec<AuditEntry> {
        let mut out: Vec<AuditEntry> = Vec::new();
        for i in 0..n {
            let prev = out.last().map(|e| (e.seq, e.hash.as_str()));
            let e = next_entry(
                prev,
                1000 + i,
                "step",
                "engine",
                "wf-1",
                serde_json::json!({ "i": i }),
            );
            out.push(e);
        }
        out
    }

    fn head(entries: &[AuditEntry]) -> Option<(u64, &str)> {
        entries.last().map(|e| (e.seq, e.hash.as_str()))
    }

    #[test]
    fn an_intact_chain_verifies() {
        let log = chain(20);
        assert_eq!(verify(&log, head(&log)), Ok(20));
        assert_eq!(verify(&[], None), Ok(0));
    }

    #[test]
    fn any_edit_or_removal_is_detected() {
        let log = chain(10);
        let h = head(&log).map(|(s, h)| (s, h.to_string())).unwrap();
        let h = Some((h.0, h.1.as_str()));
        let mut edited = log.clone();
        edited[4].data = serde_json::json!({ "i": 999 });
        assert_eq!(verify(&edited, h).unwrap_err().seq, 5);
        let mut rehashed = log.clone();
        rehashed[4].actor = "user:mallory".into();
        rehashed[4].hash = entry_hash(&rehashed[4]);
        assert_eq!(
            verify(&rehashed, h).unwrap_err().seq,
            6,
            "the next entry no longer points at it"
        );
        let mut removed = log.clone();
        removed.remove(3);
        assert_eq!(verify(&removed, h).unwrap_err().seq, 4);
        let mut truncated = log.clone();
        truncated.pop();
        assert!(
            verify(&truncated, h)
                .unwrap_err()
                .reason
                .contains("removed from the end")
        );
    }
}
