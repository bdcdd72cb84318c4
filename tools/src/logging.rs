//! MCP logging (`logging/setLevel`, `notifications/message`): a session that asks for a level
//! gets the workflow events of the work it started, at or above that level, as log messages.
//! A session that never asks gets none (progress notifications carry the same steps for
//! clients that send a progress token). Logging is deprecated in the 2026-07-28 revision
//! (SEP-2577) and still asked for by the clients of 2025-11-25, hence the `allow`.
#![allow(deprecated)]

use std::sync::{Arc, Mutex};

use rmcp::model::{LoggingLevel, LoggingMessageNotificationParam};
use rmcp::{Peer, RoleServer};
use service::model::EventKind;

/// The level one session asked for; `None` until it asks.
#[derive(Debug, Clone, Default)]
pub(crate) struct SessionLog(Arc<Mutex<Option<LoggingLevel>>>);

fn rank(level: LoggingLevel) -> u8 {
    match level {
        LoggingLevel::Debug => 0,
        LoggingLevel::Info => 1,
        LoggingLevel::Notice => 2,
        LoggingLevel::Warning => 3,
        LoggingLevel::Error => 4,
        LoggingLevel::Critical => 5,
        LoggingLevel::Alert => 6,
        LoggingLevel::Emergency => 7,
    }
}

/// The level of a workflow event: failures are errors, retries and skips warnings, the rest
/// information.
pub(crate) fn event_level(kind: &EventKind) -> LoggingLevel {
    match kind {
        EventKind::StepFailed => LoggingLevel::Error,
        EventKind::StepRetrying | EventKind::StepSkipped => LoggingLevel::Warning,
        _ => LoggingLevel::Info,
    }
}

impl SessionLog {
    pub(crate) fn set(&self, level: LoggingLevel) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(level);
    }

    /// Whether a message at `level` goes out.
    pub(crate) fn wants(&self, level: LoggingLevel) -> bool {
        let asked = *self.0.lock().unwrap_or_else(|e| e.into_inner());
        asked.is_some_and(|min| rank(level) >= rank(min))
    }

    /// Whether the session asked for any log at all.
    pub(crate) fn asked(&self) -> bool {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).is_some()
    }

    /// Sends `data` from `logger` at `level` when the session wants it.
    pub(crate) async fn send(
        &self,
        peer: &Peer<RoleServer>,
        level: LoggingLevel,
        logger: &str,
        data: serde_json::Value,
    ) {
        if self.wants(level) {
            let mut message = LoggingMessageNotificationParam::new(level, data);
            message.logger = Some(logger.to_string());
            let _ = peer.notify_logging_message(message).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_gets_what_it_asked_for_and_above() {
        let log = SessionLog::default();
        assert!(!log.asked());
        assert!(
            !log.wants(LoggingLevel::Emergency),
            "nothing before it asks"
        );
        log.set(LoggingLevel::Warning);
        assert!(log.wants(LoggingLevel::Warning));
        assert!(log.wants(LoggingLevel::Error));
        assert!(!log.wants(LoggingLevel::Info));
        log.set(LoggingLevel::Debug);
        assert!(log.wants(LoggingLevel::Info));
        assert_eq!(
            rank(event_level(&EventKind::StepFailed)),
            rank(LoggingLevel::Error)
        );
        assert_eq!(
            rank(event_level(&EventKind::StepRetrying)),
            rank(LoggingLevel::Warning)
        );
        assert_eq!(
            rank(event_level(&EventKind::StepSucceeded)),
            rank(LoggingLevel::Info)
        );
    }
}

/// The id the HTTP edge gave a request (`rq-…`, also its `x-request-id` header), found in the
/// request's extensions: a tool call's log lines carry it.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);
