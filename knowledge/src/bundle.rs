//! The contract library as one self-contained Nickel expression. The schema files import each
//! other and the catalog TOML files; here every imported file becomes a `let` binding (a
//! catalog as a Nickel record literal), so evaluating a config against the contracts needs no
//! file at all and the sandbox can forbid every file read.

use std::collections::BTreeSet;
use std::fmt::Write;

use crate::KnowledgeError;
use crate::files::{CATALOG, SCHEMAS};

/// The expression `let ... in <config.ncl>`: evaluates to the record holding `Config`.
///
/// Only the `import "..."` forms our own schema files use are rewritten; a test checks with
/// Nickel's lexer that the result contains no `import` token.
pub fn contract_bundle() -> Result<String, KnowledgeError> {
    let mut b = Bundle::default();
    let root = b.module("schemas/config.ncl")?;
    b.out.push_str(&root);
    b.out.push('\n');
    Ok(b.out)
}

#[derive(Default)]
struct Bundle {
    /// The `let` bindings written so far, dependencies first.
    out: String,
    done: BTreeSet<String>,
    /// Files being expanded (an import cycle in our own files is a bug worth a clear error).
    open: Vec<String>,
}

impl Bundle {
    /// Writes the binding for `path` (relative to the knowledge root) after its dependencies
    /// and returns its name.
    fn module(&mut self, path: &str) -> Result<String, KnowledgeError> {
        let name = binding(path);
        if self.done.contains(path) {
            return Ok(name);
        }
        if self.open.iter().any(|p| p == path) {
            return Err(invalid(
                path,
                "the schema files import each other in a cycle",
            ));
        }
        self.open.push(path.to_owned());
        let body = if path.ends_with(".toml") {
            let text = file_text(path)?;
            let value: toml::Value =
                toml::from_str(text).map_err(|e| invalid(path, &e.to_string()))?;
            let json = serde_json::to_value(value).map_err(|e| invalid(path, &e.to_string()))?;
            let mut s = String::new();
            nickel_literal(&json, &mut s).map_err(|m| invalid(path, &m))?;
            s
        } else {
            let text = file_text(path)?;
            self.rewrite_imports(path, text)?
        };
        self.open.pop();
        let _ = writeln!(self.out, "let {name} = (\n{body}\n) in");
        self.done.insert(path.to_owned());
        Ok(name)
    }

    /// Replaces each `import "P"` in one of our schema files by the binding of `P`.
    fn rewrite_imports(&mut self, path: &str, text: &str) -> Result<String, KnowledgeError> {
        const KW: &str = "import \"";
        let dir = path.rsplit_once('/').map_or("", |(d, _)| d);
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(at) = rest.find(KW) {
            let in_comment = rest[..at]
                .rsplit('\n')
                .next()
                .is_some_and(|line| line.contains('#'));
            let after = &rest[at + KW.len()..];
            let Some(end) = after.find('"') else {
                return Err(invalid(path, "an `import` without a closing quote"));
            };
            out.push_str(&rest[..at]);
            if in_comment {
                out.push_str(&rest[at..at + KW.len() + end + 1]);
            } else {
                let target = join(dir, &after[..end]);
                out.push_str(&self.module(&target)?);
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

fn invalid(path: &str, message: &str) -> KnowledgeError {
    KnowledgeError::Catalog {
        path: path.to_owned(),
        message: message.to_owned(),
    }
}

fn file_text(path: &str) -> Result<&'static str, KnowledgeError> {
    let (tree, rel) = if let Some(rel) = path.strip_prefix("schemas/") {
        (&SCHEMAS, rel)
    } else if let Some(rel) = path.strip_prefix("catalog/") {
        (&CATALOG, rel)
    } else {
        return Err(invalid(
            path,
            "imports must stay inside `schemas/` and `catalog/`",
        ));
    };
    tree.get_file(rel)
        .and_then(|f| f.contents_utf8())
        .ok_or_else(|| invalid(path, "no such embedded file"))
}

/// `dir` joined with a relative import path, `..` resolved.
fn join(dir: &str, rel: &str) -> String {
    let mut parts: Vec<&str> = dir.split('/').filter(|p| !p.is_empty()).collect();
    for p in rel.split('/') {
        match p {
            "." | "" => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    parts.join("/")
}

/// A Nickel identifier for a file: `schemas/lib.ncl` → `__contract_schemas_lib_ncl`.
fn binding(path: &str) -> String {
    let tail: String = path
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("__contract_{tail}")
}

/// `v` as Nickel source: JSON is not Nickel (`:` is a type annotation there), so a value meant
/// for a Nickel evaluator is written this way. A control character other than `\n`, `\t` and
/// `\r` in a string is an error.
pub fn to_nickel(v: &serde_json::Value) -> Result<String, String> {
    let mut out = String::new();
    nickel_literal(v, &mut out)?;
    Ok(out)
}

/// Writes `v` as a Nickel literal (records with quoted field names).
fn nickel_literal(v: &serde_json::Value, out: &mut String) -> Result<(), String> {
    use serde_json::Value;
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => nickel_string(s, out)?,
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                nickel_literal(item, out)?;
            }
            out.push(']');
        }
        Value::Object(fields) => {
            out.push('{');
            for (i, (k, item)) in fields.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str("\n  ");
                nickel_string(k, out)?;
                out.push_str(" = ");
                nickel_literal(item, out)?;
            }
            out.push_str("\n}");
        }
    }
    Ok(())
}

fn nickel_string(s: &str, out: &mut String) -> Result<(), String> {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '%' => out.push_str("\\%"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => {
                return Err(format!("control character U+{:04X} in a string", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_import_becomes_a_binding_once() {
        let b = contract_bundle().unwrap();
        assert_eq!(b.matches("let __contract_schemas_lib_ncl =").count(), 1);
        assert!(b.contains("let __contract_catalog_providers_upcloud_toml ="));
        // Dependencies come before their users.
        let lib = b.find("let __contract_schemas_lib_ncl").unwrap();
        let server = b.find("let __contract_schemas_server_ncl").unwrap();
        assert!(lib < server);
        assert!(b.trim_end().ends_with("__contract_schemas_config_ncl"));
    }

    #[test]
    fn literals_escape_what_nickel_would_read_as_code() {
        let mut s = String::new();
        nickel_literal(&serde_json::json!({"a\"b": ["%{x}", 1.5, null]}), &mut s).unwrap();
        assert_eq!(s, "{\n  \"a\\\"b\" = [\"\\%{x}\", 1.5, null]\n}");
        assert!(nickel_literal(&serde_json::json!("\u{7}"), &mut String::new()).is_err());
    }

    #[test]
    fn paths_resolve_relative_to_the_importing_file() {
        assert_eq!(
            join("schemas", "../catalog/taskservs.toml"),
            "catalog/taskservs.toml"
        );
        assert_eq!(join("schemas", "lib.ncl"), "schemas/lib.ncl");
    }
}
