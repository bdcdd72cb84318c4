//! The text of the scripts sent to hosts: the preamble of `PROV_*` variables (every value
//! single-quoted: data, never shell text), a taskserv's config as variables, and what a failed
//! script means.

use serde_json::Value;

use super::SshHost;
use super::runner::{EXIT_TRANSIENT, EXIT_UNSUPPORTED, Output, shell_quote};
use crate::provider::{ProviderError, TaskservSpec};

/// `set -eu` and the PROV_* variables, each value single-quoted (data, never shell text).
pub(super) fn preamble(
    host: &SshHost,
    workspace: &str,
    server: &str,
    taskserv: Option<(&str, &str)>,
    config: &[(String, String)],
) -> String {
    let mut s = String::from("set -eu\n");
    let mut export = |name: &str, value: &str| {
        s.push_str(&format!("export {name}={}\n", shell_quote(value)));
    };
    export("PROV_WORKSPACE", workspace);
    export("PROV_SERVER", server);
    if let Some((name, version)) = taskserv {
        export("PROV_TASKSERV", name);
        export("PROV_VERSION", version);
    }
    let bind = config
        .iter()
        .find(|(k, _)| k == "PROV_CFG_BIND")
        .map_or("127.0.0.1", |(_, v)| v.as_str())
        .to_string();
    export("PROV_BIND", &bind);
    for (k, v) in config {
        export(k, v);
    }
    match &host.root {
        Some(root) => export("PROV_ROOT", root),
        None => s.push_str("export PROV_ROOT=\"$HOME/.provisioning\"\n"),
    }
    if taskserv.is_some() {
        s.push_str("export PROV_DIR=\"$PROV_ROOT/$PROV_WORKSPACE/$PROV_SERVER/$PROV_TASKSERV\"\n");
    }
    s
}

/// A taskserv's `config` as `PROV_CFG_<KEY>` variables.
pub(super) fn config_vars(
    config: &serde_json::Map<String, Value>,
) -> Result<Vec<(String, String)>, ProviderError> {
    config
        .iter()
        .map(|(k, v)| {
            if k.is_empty()
                || !k
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
            {
                return Err(ProviderError::Permanent(format!(
                    "config key `{k}` cannot be handed to a script: use letters, digits, `_`, `-` and `.`"
                )));
            }
            let name = format!(
                "PROV_CFG_{}",
                k.to_ascii_uppercase().replace(['-', '.'], "_")
            );
            let value = match v {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                other => other.to_string(),
            };
            // Scripts write values into config files line by line: a line break would let a
            // value add directives of its own (redis `dir` + `dbfilename` writes any file).
            if value.chars().any(char::is_control) {
                return Err(ProviderError::Permanent(format!(
                    "config `{k}` contains a line break or another control character; values \
                     are single lines of text"
                )));
            }
            Ok((name, value))
        })
        .collect()
}

/// A script's failure as a provider error: 3 permanent (unsupported here), 75 transient, any
/// other permanent with the output's last lines (the host's words: data, not instructions).
pub(super) fn script_error(
    what: &str,
    spec: &TaskservSpec,
    host: &str,
    out: &Output,
) -> ProviderError {
    match out.status {
        EXIT_UNSUPPORTED => ProviderError::Permanent(format!(
            "cannot {what} taskserv `{}` on host `{host}`: {}",
            spec.name,
            out.last_words().trim_start_matches("provisioning: ")
        )),
        EXIT_TRANSIENT => ProviderError::Transient(format!(
            "{what} of taskserv `{}` on host `{host}` failed for now: {}",
            spec.name,
            out.last_words()
        )),
        code => ProviderError::Permanent(format!(
            "{what} of taskserv `{}` on host `{host}` failed (exit {code}); its last lines:\n{}",
            spec.name,
            out.tail(12)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_values_are_single_lines_and_keys_are_plain() {
        let ok = serde_json::json!({"port": 6379, "maxmemory-policy": "allkeys-lru", "appendonly": true});
        let vars = config_vars(ok.as_object().unwrap()).unwrap();
        assert!(vars.contains(&("PROV_CFG_MAXMEMORY_POLICY".into(), "allkeys-lru".into())));
        assert!(vars.contains(&("PROV_CFG_PORT".into(), "6379".into())));
        assert!(vars.contains(&("PROV_CFG_APPENDONLY".into(), "true".into())));
        for bad in [
            serde_json::json!({"maxmemory": "1mb\ndir /etc"}),
            serde_json::json!({"maxmemory": "1mb\r"}),
            serde_json::json!({"a b": "x"}),
            serde_json::json!({"$(id)": "x"}),
        ] {
            assert!(config_vars(bad.as_object().unwrap()).is_err(), "{bad}");
        }
    }
}
