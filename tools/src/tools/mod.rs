//! One file per tool. Each adds a router to [`crate::ProvisioningServer`]; results are
//! structured JSON with a published output schema. Failures the model can act on (invalid
//! config, unknown id, stale plan) come back as tool errors that say what to do next. Text
//! from outside (providers, logs, documents, endpoints) is in the untrusted-data envelope
//! ([`untrusted`]), shaped once for every tool and resource in [`records`].

pub(crate) mod apply_plan;
mod cancel_workflow;
mod check_policy;
mod detect_drift;
mod draft_config;
mod get_approval;
mod get_schema;
mod get_state;
mod get_workflow;
mod list_catalog;
mod list_workflows;
mod plan_changes;
pub(crate) mod records;
mod request_approval;
mod resume_workflow;
mod rollback_workflow;
mod search_docs;
mod troubleshoot;
mod untrusted;
mod validate_config;

pub use untrusted::{Fence, Untrusted};
pub(crate) use untrusted::{fence_field, fence_strings};

/// A use case's error as a tool error the model can act on: the message, with the next step
/// where there is one. An internal failure is logged and answered generically (a store's words
/// are not for the model).
pub(crate) fn app_fail(err: service::Error) -> String {
    use service::ErrorKind;
    match (err.kind(), err.subject(), err.title()) {
        (ErrorKind::Internal, ..) => {
            tracing::error!(error = %err, "a tool call failed inside the server");
            "the server failed while answering; its log has the details".into()
        }
        (_, _, "stale plan") => format!("{err} (call plan_changes again)"),
        (ErrorKind::NotFound, Some("plan"), _) => {
            format!("{err} (plan ids come from plan_changes)")
        }
        _ => err.to_string(),
    }
}

/// Output-schema shapes for the fields that carry a JSON view (`serde_json::Value`), whose
/// derived schema would be the boolean `true`: the MCP schema wants an object schema for every
/// property, and clients built on the TypeScript SDK reject a tool list that has one. Each says
/// at least which JSON type the field holds.
pub(crate) mod shape {
    use schemars::{Schema, SchemaGenerator, json_schema};

    /// A JSON object.
    pub(crate) fn object(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "type": "object" })
    }

    /// A JSON object, or null when there is none.
    pub(crate) fn object_or_null(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "type": ["object", "null"] })
    }

    /// A list of JSON objects.
    pub(crate) fn objects(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "type": "array", "items": { "type": "object" } })
    }
}

/// A JSON value for a structured result field.
pub(crate) fn value<T: serde::Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
}
