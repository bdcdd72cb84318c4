//! The drafted config as a self-contained Nickel record (one server per line, assumptions and
//! questions as comments) and as JSON.

use serde_json::{Value, json};

use super::Notes;

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Config {
    pub name: String,
    pub environment: String,
    pub owner: Option<String>,
    pub servers: Vec<Server>,
    pub clusters: Vec<Cluster>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Server {
    pub name: String,
    pub provider: String,
    pub plan: String,
    pub zone: String,
    /// The image, where the provider's default would not take the taskservs.
    pub image: Option<String>,
    pub labels: Vec<(String, String)>,
    /// (name, pinned version)
    pub taskservs: Vec<(String, Option<String>)>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Cluster {
    pub name: String,
    pub template: String,
    pub servers: Vec<String>,
}

pub(crate) fn to_json(c: &Config) -> Value {
    let mut workspace = json!({ "name": c.name, "environment": c.environment });
    if let (Some(owner), Some(w)) = (&c.owner, workspace.as_object_mut()) {
        w.insert("owner".to_owned(), json!(owner));
    }
    let servers: Vec<Value> = c
        .servers
        .iter()
        .map(|s| {
            let labels: serde_json::Map<String, Value> = s
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), json!(v)))
                .collect();
            let taskservs: Vec<Value> = s
                .taskservs
                .iter()
                .map(|(n, v)| match v {
                    Some(v) => json!({ "name": n, "version": v }),
                    None => json!(n),
                })
                .collect();
            let mut server = json!({
                "name": s.name,
                "provider": s.provider,
                "plan": s.plan,
                "zone": s.zone,
                "labels": labels,
                "taskservs": taskservs,
            });
            if let (Some(image), Some(o)) = (&s.image, server.as_object_mut()) {
                o.insert("image".to_owned(), json!(image));
            }
            server
        })
        .collect();
    let clusters: Vec<Value> = c
        .clusters
        .iter()
        .map(|k| json!({ "name": k.name, "template": k.template, "servers": k.servers }))
        .collect();
    json!({ "workspace": workspace, "servers": servers, "clusters": clusters })
}

/// A Nickel string literal: quotes, backslashes and `%` (interpolation) escaped, control
/// characters dropped.
pub(crate) fn string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '%' => out.push_str("\\%"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A record key: bare when it is an identifier, quoted otherwise (`"pg-role"`).
fn key(k: &str) -> String {
    let ident = k
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ident { k.to_owned() } else { string(k) }
}

/// One comment line: no line breaks, so text from the intent cannot leave the comment.
fn comment(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

pub(crate) fn to_nickel(c: &Config, notes: &Notes) -> String {
    let mut out = String::from(
        "# Drafted by the built-in drafter from a plain-English intent. Review it, then\n# `provisioning validate` and `provisioning plan`.\n",
    );
    if !notes.assumptions.is_empty() {
        out.push_str("#\n# Assumptions:\n");
        for a in &notes.assumptions {
            out.push_str(&comment(&format!(
                "#   {} = {}: {}",
                a.field, a.value, a.why
            )));
            out.push('\n');
        }
    }
    if !notes.questions.is_empty() {
        out.push_str("#\n# Open questions (the values below are provisional):\n");
        for q in &notes.questions {
            out.push_str(&comment(&format!(
                "#   {}: {} (now `{}`)",
                q.field, q.question, q.assumed
            )));
            out.push('\n');
        }
    }
    out.push_str("{\n  workspace = { name = ");
    out.push_str(&string(&c.name));
    out.push_str(", environment = ");
    out.push_str(&string(&c.environment));
    if let Some(owner) = &c.owner {
        out.push_str(", owner = ");
        out.push_str(&string(owner));
    }
    out.push_str(" },\n  servers = [\n");
    for s in &c.servers {
        let labels: Vec<String> = s
            .labels
            .iter()
            .map(|(k, v)| format!("{} = {}", key(k), string(v)))
            .collect();
        let taskservs: Vec<String> = s
            .taskservs
            .iter()
            .map(|(n, v)| match v {
                Some(v) => format!("{{ name = {}, version = {} }}", string(n), string(v)),
                None => string(n),
            })
            .collect();
        let image = s
            .image
            .as_ref()
            .map(|i| format!(", image = {}", string(i)))
            .unwrap_or_default();
        out.push_str(&format!(
            "    {{ name = {}, provider = {}, plan = {}, zone = {}{image}, labels = {{ {} }}, taskservs = [{}] }},\n",
            string(&s.name),
            string(&s.provider),
            string(&s.plan),
            string(&s.zone),
            labels.join(", "),
            taskservs.join(", ")
        ));
    }
    out.push_str("  ],\n");
    if !c.clusters.is_empty() {
        out.push_str("  clusters = [\n");
        for k in &c.clusters {
            let members: Vec<String> = k.servers.iter().map(|s| string(s)).collect();
            out.push_str(&format!(
                "    {{ name = {}, template = {}, servers = [{}] }},\n",
                string(&k.name),
                string(&k.template),
                members.join(", ")
            ));
        }
        out.push_str("  ],\n");
    }
    out.push_str("}\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_cannot_interpolate_or_break_out() {
        assert_eq!(string("a\"b\\c%{x}\n"), "\"a\\\"b\\\\c\\%{x}\"");
        assert_eq!(key("role"), "role");
        assert_eq!(key("pg-role"), "\"pg-role\"");
        assert_eq!(comment("a\nb\r"), "a b ");
    }
}
