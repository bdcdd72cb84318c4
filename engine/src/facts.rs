//! Facts flowing between taskservs. A taskserv's install reports facts (its address, its port:
//! `Observed::attrs`, recorded in state); another taskserv's `config` names them as
//! `{{SERVER/TASKSERV.KEY}}` inside a string, e.g. nginx in front of an app server:
//!
//! ```nickel
//! { name = "nginx", depends_on = ["app-1/app"],
//!   config = { upstream = "{{app-1/app.address}}:{{app-1/app.port}}" } }
//! ```
//!
//! The reference must name a taskserv the referring one depends on (so it is installed first);
//! validation says so before anything runs. At execution the executor replaces each reference
//! with the recorded fact and hands the result to the provider; state keeps the text as written,
//! so a re-plan compares like with like.

use serde_json::{Map, Value};

/// One `{{SERVER/TASKSERV.KEY}}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FactRef {
    pub server: String,
    pub taskserv: String,
    pub key: String,
}

impl std::fmt::Display for FactRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{{{{{}/{}.{}}}}}", self.server, self.taskserv, self.key)
    }
}

fn word(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// The references in `text`, in order, with their byte ranges; an error names the first
/// malformed one and the form expected.
pub fn references(text: &str) -> Result<Vec<(std::ops::Range<usize>, FactRef)>, String> {
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(start) = text[at..].find("{{").map(|i| i + at) {
        let Some(len) = text[start + 2..].find("}}") else {
            return Err(format!(
                "`{}` opens a fact reference that is never closed; expected `{{{{SERVER/TASKSERV.KEY}}}}`",
                &text[start..]
            ));
        };
        let inner = &text[start + 2..start + 2 + len];
        let end = start + 2 + len + 2;
        let parsed = inner.trim().split_once('/').and_then(|(server, rest)| {
            let (taskserv, key) = rest.split_once('.')?;
            (word(server) && word(taskserv) && word(key)).then(|| FactRef {
                server: server.to_string(),
                taskserv: taskserv.to_string(),
                key: key.to_string(),
            })
        });
        match parsed {
            Some(r) => out.push((start..end, r)),
            None => {
                return Err(format!(
                    "`{{{{{inner}}}}}` is not a fact reference; expected `{{{{SERVER/TASKSERV.KEY}}}}`, e.g. `{{{{db-1/postgres.address}}}}`"
                ));
            }
        }
        at = end;
    }
    Ok(out)
}

/// Every reference in the string values of `config` (nested values included).
pub fn config_references(config: &Map<String, Value>) -> Result<Vec<(String, FactRef)>, String> {
    let mut out = Vec::new();
    for (key, value) in config {
        collect(key, value, &mut out)?;
    }
    Ok(out)
}

fn collect(key: &str, value: &Value, out: &mut Vec<(String, FactRef)>) -> Result<(), String> {
    match value {
        Value::String(s) => {
            for (_, r) in references(s).map_err(|e| format!("config `{key}`: {e}"))? {
                out.push((key.to_string(), r));
            }
        }
        Value::Array(items) => {
            for item in items {
                collect(key, item, out)?;
            }
        }
        Value::Object(map) => {
            for (k, v) in map {
                collect(&format!("{key}.{k}"), v, out)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// `config` with every reference replaced by `lookup(reference)`; an error names the reference
/// that has no value.
pub fn substitute(
    config: &Map<String, Value>,
    lookup: &dyn Fn(&FactRef) -> Result<String, String>,
) -> Result<Map<String, Value>, String> {
    config
        .iter()
        .map(|(k, v)| Ok((k.clone(), replace(v, lookup)?)))
        .collect()
}

fn replace(
    value: &Value,
    lookup: &dyn Fn(&FactRef) -> Result<String, String>,
) -> Result<Value, String> {
    Ok(match value {
        Value::String(s) => {
            let refs = references(s)?;
            if refs.is_empty() {
                return Ok(value.clone());
            }
            let mut text = String::with_capacity(s.len());
            let mut at = 0;
            for (range, r) in refs {
                text.push_str(&s[at..range.start]);
                text.push_str(&lookup(&r)?);
                at = range.end;
            }
            text.push_str(&s[at..]);
            Value::String(text)
        }
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|v| replace(v, lookup))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(map) => Value::Object(substitute(map, lookup)?),
        other => other.clone(),
    })
}

/// A fact as text: strings as they are, numbers and booleans written out.
pub fn fact_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn references_are_found_and_replaced() {
        let config = json!({
            "upstream": "{{app-1/app.address}}:{{app-1/app.port}}",
            "plain": "no braces",
            "list": ["{{db-1/postgres.port}}"],
            "n": 3,
        });
        let config = config.as_object().unwrap();
        let refs = config_references(config).unwrap();
        let mut found: Vec<String> = refs.iter().map(|(k, r)| format!("{k} {r}")).collect();
        found.sort();
        assert_eq!(
            found,
            [
                "list {{db-1/postgres.port}}",
                "upstream {{app-1/app.address}}",
                "upstream {{app-1/app.port}}"
            ]
        );
        let facts = json!({"app-1/app": {"address": "10.0.0.2", "port": 8080}, "db-1/postgres": {"port": 5432}});
        let out = substitute(config, &|r| {
            facts[format!("{}/{}", r.server, r.taskserv)]
                .get(&r.key)
                .map(fact_text)
                .ok_or_else(|| format!("no {r}"))
        })
        .unwrap();
        assert_eq!(out["upstream"], "10.0.0.2:8080");
        assert_eq!(out["list"][0], "5432");
        assert_eq!(out["plain"], "no braces");
        assert_eq!(out["n"], 3);
        let missing = substitute(json!({"x": "{{a/b.c}}"}).as_object().unwrap(), &|r| {
            Err(format!("no fact {r}"))
        })
        .unwrap_err();
        assert_eq!(missing, "no fact {{a/b.c}}");
    }

    #[test]
    fn malformed_references_say_what_is_expected() {
        for bad in [
            "{{app-1.address}}",
            "{{app-1/app}}",
            "{{ a/b.c d }}",
            "{{a/b.c",
        ] {
            let err = references(bad).unwrap_err();
            assert!(err.contains("{{SERVER/TASKSERV.KEY}}"), "{bad}: {err}");
        }
    }
}
