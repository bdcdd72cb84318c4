//! The plan as a person reads it: one line per change, then the summary, blast radius and cost.

use serde_json::Value;

use super::*;

impl Plan {
    /// The plan as a human reads it.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{} {} for workspace {} ({}), against state version {}",
            if self.intent == Intent::Destroy {
                "Destroy plan"
            } else {
                "Plan"
            },
            self.id,
            self.workspace,
            self.environment.as_str(),
            self.state_version
        );
        let _ = writeln!(out);
        let width = self
            .actions
            .iter()
            .map(|a| a.kind.as_str().len() + 1 + display_name(a).len())
            .max()
            .unwrap_or(0);
        for action in &self.actions {
            if action.action == ActionKind::NoOp {
                continue;
            }
            let label = format!("{} {}", action.kind.as_str(), display_name(action));
            let detail = describe(action);
            let _ = writeln!(
                out,
                "  {:>3} {label:<width$}  {detail}",
                action.action.symbol()
            );
        }
        if self.is_noop() {
            let _ = writeln!(out, "  No changes: recorded state matches the config.");
        }
        let s = &self.summary;
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "{} to create, {} to update, {} to replace, {} to delete, {} unchanged.",
            s.create, s.update, s.replace, s.delete, s.unchanged
        );
        let b = &self.blast_radius;
        let _ = writeln!(
            out,
            "Blast radius: {} delete(s), {} replacement(s){}",
            b.deletes.len(),
            b.replacements.len(),
            if b.prod {
                format!("; prod resources touched: {}", b.prod_resources_touched)
            } else {
                String::new()
            }
        );
        for cost in &self.cost {
            let _ = writeln!(
                out,
                "Monthly cost: {} {:.2} -> {:.2} ({:+.2})",
                cost.currency, cost.before, cost.after, cost.delta
            );
        }
        for warning in &self.warnings {
            let _ = writeln!(out, "warning: {warning}");
        }
        out
    }
}

fn display_name(action: &Action) -> String {
    action
        .after
        .as_ref()
        .or(action.before.as_ref())
        .map(ResourceSpec::name)
        .unwrap_or_else(|| action.key.clone())
}

fn describe(action: &Action) -> String {
    match (&action.action, &action.after) {
        (ActionKind::Create, Some(ResourceSpec::Server(s))) => {
            format!("{} {} in {}", s.provider, s.plan, s.zone)
        }
        (ActionKind::Create, Some(ResourceSpec::Taskserv { spec, .. })) => {
            format!("version {}", spec.version)
        }
        (ActionKind::Create, Some(ResourceSpec::Cluster(c))) => {
            format!("{} with {}", c.template, c.servers.join(", "))
        }
        (ActionKind::Delete, _) => action.reason.clone(),
        _ => {
            let changes: Vec<String> = action
                .changes
                .iter()
                .map(|c| format!("{}: {} -> {}", c.field, short(&c.from), short(&c.to)))
                .collect();
            if changes.is_empty() {
                action.reason.clone()
            } else {
                changes.join("; ")
            }
        }
    }
}

fn short(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "(none)".into(),
        other => other.to_string(),
    }
}
