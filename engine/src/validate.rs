//! Validation: size and import checks, evaluation of the config with the contracts applied (in
//! the sandbox), conversion into the typed model, then the cross-field checks. Every failure is
//! a [`Diagnostic`]; nothing is changed anywhere.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use knowledge::Catalog;

use crate::nickel_diag::{Placement, convert};
use crate::sandbox::{self, AbortReason, EvalOutcome, EvalRequest};
use crate::{Config, Diagnostic, EngineError, Limits, Sandbox, Span, checks, imports};

/// A config to validate.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    pub source: &'a str,
    /// How to name the source in messages (a file path, or `<mcp>`).
    pub name: &'a str,
    /// Directory relative imports resolve from. `None` forbids `import` altogether: configs from
    /// MCP or REST callers must not read files of the server's machine, so they are evaluated
    /// confined (no file, no network) and an `import` token is refused before that.
    pub imports_from: Option<&'a Path>,
}

/// The outcome of validating one config.
#[derive(Debug, Clone)]
pub struct Validation {
    /// The typed config, when there is no error.
    pub config: Option<Config>,
    /// The exported value (contracts applied, defaults filled), when evaluation succeeded.
    pub value: Option<serde_json::Value>,
    pub diagnostics: Vec<Diagnostic>,
}

impl Validation {
    pub fn is_valid(&self) -> bool {
        !self.diagnostics.iter().any(Diagnostic::is_error)
    }

    fn failed(diagnostics: Vec<Diagnostic>) -> Self {
        Validation {
            config: None,
            value: None,
            diagnostics,
        }
    }
}

/// Validates configs against the embedded schema library and catalogs.
#[derive(Debug, Clone)]
pub struct Validator {
    sandbox: Sandbox,
    limits: Limits,
    /// The contract library as one expression (no imports), see [`knowledge::contract_bundle`].
    contracts: Arc<str>,
    catalog: &'static Catalog,
    /// Evaluations running now, shared by clones.
    running: Arc<AtomicUsize>,
}

impl Validator {
    /// Whether every evaluation slot is taken at this moment: a server answers "busy, retry"
    /// without first handing the input to a blocking thread. Only a fast answer: `validate`
    /// still takes its slot (or refuses) itself.
    pub fn is_busy(&self) -> bool {
        matches!(self.sandbox, Sandbox::Subprocess { .. })
            && self.running.load(Ordering::Acquire) >= self.limits.max_concurrent
    }

    pub fn new(sandbox: Sandbox, limits: Limits) -> Result<Self, EngineError> {
        Ok(Validator {
            sandbox,
            limits,
            contracts: knowledge::contract_bundle()?.into(),
            catalog: Catalog::embedded()?,
            running: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// How the evaluator is confined on this machine (see [`sandbox::probe`]).
    pub fn confinement(&self) -> Result<Option<String>, EngineError> {
        sandbox::probe(&self.sandbox, &self.limits)
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    pub fn catalog(&self) -> &'static Catalog {
        self.catalog
    }

    pub fn validate(&self, input: &Input<'_>) -> Result<Validation, EngineError> {
        let src = input.source;
        let max = self.limits.max_input_bytes;
        if src.len() > max {
            return Ok(Validation::failed(vec![
                Diagnostic::error(
                    "limit",
                    format!(
                        "config is {} bytes, over the limit of {max} bytes",
                        src.len()
                    ),
                )
                .expected(format!("a config of at most {max} bytes")),
            ]));
        }
        if input.imports_from.is_none()
            && let Some(at) = imports::find_import(src)
        {
            return Ok(Validation::failed(vec![
                Diagnostic::error(
                    "forbidden-import",
                    "`import` is not allowed in configs submitted to the server",
                )
                .with_span(Some(Span::from_offsets(src, at, at + "import".len())))
                .expected("a self-contained config: inline the imported values"),
            ]));
        }
        let Some(_slot) = Slot::take(&self.running, self.limits.max_concurrent) else {
            return Err(EngineError::Busy {
                running: self.limits.max_concurrent,
            });
        };
        // The user's text first, then the contracts: nothing the user writes can reach into the
        // contracts' bindings, and diagnostics keep the user's offsets (after the prefix).
        let prefix = "(";
        let wrapped = format!("{prefix}{src}\n) | ({}).Config\n", self.contracts);
        let source_name = match input.imports_from {
            Some(dir) => dir
                .join(file_name(input.name))
                .to_string_lossy()
                .into_owned(),
            None => format!("<input>/{}", file_name(input.name)),
        };
        let request = EvalRequest {
            source: wrapped,
            source_name,
            memory_bytes: self.limits.memory_bytes,
            cpu_seconds: self.limits.timeout.as_secs() + 1,
            confined: input.imports_from.is_none(),
            user: Some((prefix.len(), prefix.len() + src.len())),
        };
        let at = Placement {
            user_source: src,
            prefix_len: prefix.len(),
        };
        match sandbox::evaluate(&self.sandbox, &self.limits, request)? {
            EvalOutcome::NickelError { diagnostics } => {
                Ok(Validation::failed(convert(&diagnostics, &at, self.catalog)))
            }
            EvalOutcome::Aborted { reason, detail } => {
                Ok(Validation::failed(vec![aborted(reason, detail)]))
            }
            EvalOutcome::Value { json } => Ok(self.typed(src, &json)),
        }
    }

    fn typed(&self, src: &str, json: &str) -> Validation {
        let value: serde_json::Value = match serde_json::from_str(json) {
            Ok(v) => v,
            Err(e) => {
                return Validation::failed(vec![Diagnostic::error(
                    "evaluation",
                    format!("exported value is not JSON: {e}"),
                )]);
            }
        };
        let config: Config = match serde_path_to_error::deserialize(&value) {
            Ok(c) => c,
            Err(e) => {
                let path = e.path().to_string();
                return Validation {
                    config: None,
                    value: Some(value),
                    diagnostics: vec![Diagnostic::error("type", e.inner().to_string()).at(path)],
                };
            }
        };
        let diagnostics = checks::check(&config, self.catalog, src);
        let ok = !diagnostics.iter().any(Diagnostic::is_error);
        Validation {
            config: ok.then_some(config),
            value: Some(value),
            diagnostics,
        }
    }
}

fn aborted(reason: AbortReason, detail: String) -> Diagnostic {
    let expected = match reason {
        AbortReason::Timeout
        | AbortReason::Memory
        | AbortReason::StackOverflow
        | AbortReason::Output => {
            "a config that evaluates within the limits: look for unbounded recursion (`let rec`) or very large generated arrays"
        }
        AbortReason::Crash => "a config the evaluator can process; please report this input",
    };
    Diagnostic::error("limit", detail).expected(expected)
}

fn file_name(name: &str) -> String {
    Path::new(name).file_name().map_or_else(
        || "config.ncl".to_owned(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// One of the validator's evaluation slots, given back on drop.
struct Slot<'a>(&'a AtomicUsize);

impl<'a> Slot<'a> {
    fn take(running: &'a AtomicUsize, max: usize) -> Option<Self> {
        running
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot(running))
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn validator() -> Validator {
        Validator::new(Sandbox::InProcess, Limits::default()).unwrap()
    }

    fn run(src: &str) -> Validation {
        validator()
            .validate(&Input {
                source: src,
                name: "t.ncl",
                imports_from: None,
            })
            .unwrap()
    }

    const OK: &str = r#"{
  workspace = { name = "shop", environment = "dev" },
  servers = [
    { name = "cache-1", provider = "local", plan = "small", zone = "local", taskservs = ["redis"] },
    { name = "app-1", provider = "sim", plan = "medium", zone = "sim-1",
      taskservs = [{ name = "postgres", version = "16" }, { name = "nginx", depends_on = ["postgres", "cache-1/redis"] }] },
  ],
}"#;

    #[test]
    fn a_valid_config_is_typed_with_defaults() {
        let v = run(OK);
        assert!(v.is_valid(), "{:?}", v.diagnostics);
        let c = v.config.unwrap();
        assert_eq!(c.servers[0].taskservs[0].name, "redis");
        assert_eq!(
            c.servers[1].taskservs[1].depends_on,
            ["postgres", "cache-1/redis"]
        );
        assert_eq!(c.workflow, crate::Workflow::default());
        assert!(c.clusters.is_empty());
    }

    #[test]
    fn contract_errors_carry_path_span_and_suggestion() {
        let v = run(&OK.replace("\"sim-1\"", "\"sim-9\""));
        let d = &v.diagnostics[0];
        assert_eq!(d.path.as_deref(), Some("servers[1].zone"), "{d:?}");
        assert_eq!(d.span.map(|s| s.line), Some(5));
        assert_eq!(d.suggestion.as_deref(), Some("did you mean `sim-1`?"));
    }

    #[test]
    fn imports_are_refused_without_an_import_dir() {
        let v = run("import \"/etc/passwd\" as 'Text");
        assert_eq!(v.diagnostics[0].code, "forbidden-import");
    }
}
