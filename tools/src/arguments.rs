//! Tool arguments checked against the tool's whole input schema (nested fields, enums, bounds,
//! formats) with `jsonschema`, before the tool runs. A problem is answered as a tool error
//! (`isError: true`, as the MCP specification asks for input the model can correct), naming the
//! argument's path, what was sent and what would be accepted.

use std::collections::HashMap;
use std::sync::OnceLock;

use jsonschema::error::ValidationErrorKind;
use jsonschema::paths::LocationSegment;
use jsonschema::{ValidationError, Validator};
use serde_json::Value;

/// At most this many problems are listed in one answer; the rest are counted.
const MAX_LISTED: usize = 5;

/// One compiled validator per tool, from its input schema.
#[derive(Default)]
pub(crate) struct ArgumentChecks {
    /// Per tool: the validator and the names of its top-level arguments (for a "did you mean").
    validators: HashMap<String, (Validator, Vec<String>)>,
}

impl std::fmt::Debug for ArgumentChecks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArgumentChecks")
            .field("tools", &self.validators.len())
            .finish()
    }
}

impl ArgumentChecks {
    /// Compiles every schema. A schema `jsonschema` cannot compile is a bug of ours; it is
    /// reported in the error so the test that builds every tool's check fails on it.
    pub(crate) fn compile<'a>(
        schemas: impl IntoIterator<Item = (&'a str, &'a serde_json::Map<String, Value>)>,
    ) -> Result<ArgumentChecks, String> {
        let mut validators = HashMap::new();
        for (tool, schema) in schemas {
            let names = schema
                .get("properties")
                .and_then(Value::as_object)
                .map(|p| p.keys().cloned().collect())
                .unwrap_or_default();
            let schema = Value::Object(schema.clone());
            let validator = jsonschema::options()
                .should_validate_formats(true)
                .build(&schema)
                .map_err(|e| format!("the input schema of `{tool}` does not compile: {e}"))?;
            validators.insert(tool.to_string(), (validator, names));
        }
        Ok(ArgumentChecks { validators })
    }

    /// The problems with `args` for `tool`, as one message, or `None` when they are valid (or
    /// the tool is unknown here: the router answers for that).
    pub(crate) fn problem(&self, tool: &str, args: &Value) -> Option<String> {
        let (validator, names) = self.validators.get(tool)?;
        let errors: Vec<ValidationError<'_>> = validator.iter_errors(args).collect();
        if errors.is_empty() {
            return None;
        }
        let mut lines: Vec<String> = errors
            .iter()
            .take(MAX_LISTED)
            .map(|e| describe(e, names))
            .collect();
        if errors.len() > MAX_LISTED {
            lines.push(format!("… and {} more", errors.len() - MAX_LISTED));
        }
        Some(format!(
            "invalid arguments for `{tool}`: {}. Nothing was done; call it again with the arguments corrected (its input schema is in tools/list).",
            lines.join("; ")
        ))
    }
}

/// The process-wide checks for every tool of the server, compiled once.
pub(crate) fn checks() -> &'static ArgumentChecks {
    static CHECKS: OnceLock<ArgumentChecks> = OnceLock::new();
    CHECKS.get_or_init(|| {
        let tools = crate::server::ProvisioningServer::all_tools();
        ArgumentChecks::compile(
            tools
                .iter()
                .map(|t| (t.name.as_ref(), t.input_schema.as_ref())),
        )
        .unwrap_or_else(|e| {
            // Unreachable while the unit test compiling every schema passes; without a check a
            // tool still deserializes its arguments and refuses what does not fit its type.
            tracing::error!("{e}; arguments are checked by their types only");
            ArgumentChecks::default()
        })
    })
}

/// `servers[0].zone` for the instance path `/servers/0/zone`; `arguments` for the root.
fn argument_path(error: &ValidationError<'_>) -> String {
    let mut out = String::new();
    for segment in error.instance_path().iter() {
        match segment {
            LocationSegment::Property(p) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(&p);
            }
            LocationSegment::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// One problem, in words: where, what was wrong, what would be accepted.
fn describe(error: &ValidationError<'_>, arguments: &[String]) -> String {
    let path = argument_path(error);
    match error.kind() {
        ValidationErrorKind::Required { property } => {
            let name = property
                .as_str()
                .map_or_else(|| property.to_string(), str::to_string);
            let at = if path.is_empty() {
                name
            } else {
                format!("{path}.{name}")
            };
            format!("missing required argument `{at}`")
        }
        ValidationErrorKind::AdditionalProperties { unexpected } => {
            let names: Vec<String> = unexpected
                .iter()
                .map(|u| {
                    if path.is_empty() {
                        format!("`{u}`")
                    } else {
                        format!("`{path}.{u}`")
                    }
                })
                .collect();
            let mut text = format!(
                "unknown argument{} {}",
                if names.len() == 1 { "" } else { "s" },
                names.join(", ")
            );
            if path.is_empty() {
                if let [one] = unexpected.as_slice()
                    && let Some(near) =
                        service::model::did_you_mean(one, arguments.iter().map(String::as_str))
                {
                    text.push_str(&format!(" (did you mean `{near}`?)"));
                }
                text.push_str(&format!(
                    "; it takes {}",
                    if arguments.is_empty() {
                        "no arguments".to_string()
                    } else {
                        arguments.join(", ")
                    }
                ));
            }
            text
        }
        _ => {
            let at = if path.is_empty() {
                "the arguments".to_string()
            } else {
                format!("argument `{path}`")
            };
            format!("{at}: {}", shorten(&error.to_string()))
        }
    }
}

/// A validator message quotes the value it refused; a long value is cut so the answer stays
/// readable (and a pasted document is not echoed back whole).
pub(crate) fn shorten(message: &str) -> String {
    const MAX: usize = 300;
    if message.chars().count() <= MAX {
        return message.to_string();
    }
    let cut: String = message.chars().take(MAX).collect();
    format!("{cut}…")
}

#[cfg(test)]
mod tests {
    use super::ArgumentChecks;
    use serde_json::json;

    fn server_checks() -> ArgumentChecks {
        let tools = crate::server::ProvisioningServer::all_tools();
        ArgumentChecks::compile(
            tools
                .iter()
                .map(|t| (t.name.as_ref(), t.input_schema.as_ref())),
        )
        .unwrap()
    }

    #[test]
    fn every_input_schema_compiles_and_takes_its_own_minimal_call() {
        let tools = crate::server::ProvisioningServer::all_tools();
        let checks = server_checks();
        assert_eq!(checks.validators.len(), tools.len());
        // A call with only the required arguments, each a string, passes where the schema says
        // string: the checks refuse nothing a correct client sends.
        let ok = checks.problem("get_workflow", &json!({ "workflow_id": "wf-1" }));
        assert_eq!(ok, None);
        assert_eq!(checks.problem("list_workflows", &json!({})), None);
        assert_eq!(
            checks.problem(
                "list_workflows",
                &json!({ "limit": null, "workspace": "w" })
            ),
            None
        );
    }

    #[test]
    fn problems_name_the_argument_what_was_sent_and_what_is_accepted() {
        let checks = server_checks();
        let wrong_type = checks
            .problem("get_workflow", &json!({ "workflow_id": 7 }))
            .unwrap();
        assert!(
            wrong_type.contains("argument `workflow_id`: 7 is not of type \"string\""),
            "{wrong_type}"
        );
        assert!(wrong_type.starts_with("invalid arguments for `get_workflow`"));
        let missing = checks.problem("apply_plan", &json!({})).unwrap();
        assert!(
            missing.contains("missing required argument `plan_id`"),
            "{missing}"
        );
        let unknown = checks
            .problem("apply_plan", &json!({ "plan_id": "plan-1", "planid": "x" }))
            .unwrap();
        assert!(
            unknown
                .contains("unknown argument `planid` (did you mean `plan_id`?); it takes plan_id"),
            "{unknown}"
        );
        // Bounds the old top-level type check let through.
        let bound = checks
            .problem("list_workflows", &json!({ "limit": 500 }))
            .unwrap();
        assert!(
            bound.contains("argument `limit`: 500 is greater than the maximum of 200"),
            "{bound}"
        );
    }

    #[test]
    fn nested_fields_enums_and_many_problems() {
        let schema = json!({
            "type": "object",
            "additionalProperties": false,
            "properties": {
                "servers": { "type": "array", "items": {
                    "type": "object",
                    "additionalProperties": false,
                    "required": ["zone"],
                    "properties": { "zone": { "enum": ["hel1", "fsn1"] }, "count": { "type": "integer", "minimum": 1 } }
                } }
            }
        });
        let schema = schema.as_object().unwrap().clone();
        let checks = ArgumentChecks::compile([("t", &schema)]).unwrap();
        let nested = checks
            .problem("t", &json!({ "servers": [ { "zone": "hel1" }, { "zone": "ams", "count": 0, "size": 1 } ] }))
            .unwrap();
        assert!(
            nested
                .contains("argument `servers[1].zone`: \"ams\" is not one of [\"hel1\",\"fsn1\"]")
                || nested.contains("argument `servers[1].zone`: \"ams\" is not one of"),
            "{nested}"
        );
        assert!(nested.contains("argument `servers[1].count`"), "{nested}");
        assert!(
            nested.contains("unknown argument `servers[1].size`"),
            "{nested}"
        );
        let many: Vec<serde_json::Value> = (0..9).map(|_| json!({ "zone": 1 })).collect();
        let capped = checks.problem("t", &json!({ "servers": many })).unwrap();
        assert!(capped.contains("… and 4 more"), "{capped}");
        // A long value is cut, not echoed back whole.
        let long = "x".repeat(10_000);
        let cut = checks
            .problem("t", &json!({ "servers": [ { "zone": long } ] }))
            .unwrap();
        assert!(cut.len() < 1_000, "{} bytes", cut.len());
    }
}
