//! The audit log: entries filtered by kind and actor, all of them, and a check of the hash
//! chain against the recorded head.

use policies::audit::AuditEntry;

use crate::{App, Result};

/// Whether the recorded chain holds.
#[derive(Debug, Clone)]
pub struct AuditCheck {
    pub entries: usize,
    /// The recorded head's hash, when known (a remote server does not send it).
    pub head: Option<String>,
    /// What is wrong with the chain, when something is.
    pub problem: Option<String>,
}

impl App {
    /// The newest `limit` entries of `kind` by `actor` (each when given), oldest first.
    pub async fn audit(
        &self,
        kind: Option<&str>,
        actor: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AuditEntry>> {
        let (entries, _) = self.engine.store.audit_log().await?;
        let mut picked: Vec<AuditEntry> = entries
            .into_iter()
            .filter(|e| kind.is_none_or(|k| e.kind == k))
            .filter(|e| actor.is_none_or(|a| e.actor == a))
            .collect();
        let skip = picked.len().saturating_sub(limit);
        picked.drain(..skip);
        Ok(picked)
    }

    /// Every entry, oldest first.
    pub async fn audit_all(&self) -> Result<Vec<AuditEntry>> {
        Ok(self.engine.store.audit_log().await?.0)
    }

    /// Recomputes the hash chain and compares it with the recorded head.
    pub async fn verify_audit(&self) -> Result<AuditCheck> {
        let (entries, head) = self.engine.store.audit_log().await?;
        let result =
            policies::audit::verify(&entries, head.as_ref().map(|(n, h)| (*n, h.as_str())));
        Ok(AuditCheck {
            entries: entries.len(),
            head: head.map(|(_, hash)| hash),
            problem: result.err().map(|e| e.to_string()),
        })
    }
}
