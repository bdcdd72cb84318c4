//! `provisioning init`: the first run. Writes the operator's config file (when there is none)
//! with a token for them, and prints what to paste into the usual MCP clients: the stdio
//! server for a desktop assistant on this machine, and `serve --http` with the token for the
//! rest. Running it again changes nothing that exists.

use std::process::ExitCode;

use anyhow::Context;

use super::token;
use crate::Settings;
use crate::cli::InitArgs;

/// The commented start of a new config file.
const HEADER: &str = "\
# Provisioning's config file (written by `provisioning init`). Every section is optional; see
# `provisioning --help` and docs/ for the rest: [policies], [approvals], [workspaces.NAME],
# [secrets], [drafter.openai], [state], [daemon].
#
# Tokens for `provisioning serve --http` are stored as their SHA-256 only:
#   provisioning token create NAME --role viewer|operator|approver
#   provisioning token list / provisioning token revoke NAME

";

pub fn run(settings: &Settings, args: &InitArgs) -> anyhow::Result<ExitCode> {
    let path = token::config_path(settings);
    let name = match &args.name {
        Some(n) => n.clone(),
        None => service::model::account_name(nix::unistd::getuid().as_raw()),
    };
    token::check_name(&name)?;
    let url = format!("http://{}/mcp", args.http);
    let exe = std::env::current_exe()
        .ok()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "provisioning".into());

    let existing = token::list(&path)?;
    let mine = existing
        .iter()
        .find(|t| t.principal == format!("user:{name}"));
    let token = match mine {
        Some(_) => {
            eprintln!(
                "{} already has a token for user:{name}; keeping it (`provisioning token create {name} --rotate` makes a new one)",
                path.display()
            );
            None
        }
        None => {
            if !path.exists() {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)
                        .with_context(|| format!("cannot create {}", dir.display()))?;
                }
                use std::io::Write;
                use std::os::unix::fs::OpenOptionsExt;
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&path)
                    .with_context(|| format!("cannot create {}", path.display()))?;
                // The user's table is written with the header, so the header stays on top
                // (a comment-only document would keep it after the first table added).
                let entry = format!("{HEADER}[users.{}]\n", toml_key(&name));
                f.write_all(entry.as_bytes())
                    .with_context(|| format!("cannot write {}", path.display()))?;
                eprintln!("wrote {}", path.display());
            }
            let made = token::create(&path, &name, &["operator", "approver"], None, false)?;
            Some(made.token)
        }
    };
    let shown = token.as_deref().unwrap_or("YOUR_TOKEN");
    print!(
        "{}",
        snippets(&exe, &url, shown, settings.config_file.is_none())
    );
    if token.is_some() {
        println!(
            "\nThe token above is shown once: {} keeps only its SHA-256. It holds the roles operator and approver \
             (you cannot approve your own requests: another approver does).",
            path.display()
        );
    }
    println!(
        "\nCheck this machine with `provisioning doctor`; start the server with `{exe} serve --http {}`.",
        args.http
    );
    Ok(ExitCode::SUCCESS)
}

/// `name` as a TOML key: bare when it can be, quoted otherwise.
fn toml_key(name: &str) -> String {
    if !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        name.to_string()
    } else {
        serde_json::to_string(name).unwrap_or_default()
    }
}

/// What to paste where, for a desktop assistant on this machine (stdio) and over HTTP.
pub fn snippets(exe: &str, url: &str, token: &str, default_config: bool) -> String {
    let exe_json = serde_json::to_string(exe).unwrap_or_default();
    let auth = format!("Bearer {token}");
    let http_json = serde_json::json!({
        "mcpServers": { "provisioning": { "type": "http", "url": url, "headers": { "Authorization": auth } } }
    });
    let vscode_json = serde_json::json!({
        "servers": { "provisioning": { "type": "http", "url": url, "headers": { "Authorization": auth } } }
    });
    let pretty = |v: &serde_json::Value| serde_json::to_string_pretty(v).unwrap_or_default();
    let config_note = if default_config {
        ""
    } else {
        "\n(This config file is not the default one: add \"env\": {\"PROVISIONING_CONFIG\": \"…\"} to the stdio entries.)"
    };
    format!(
        "\
== Claude Desktop (claude_desktop_config.json), on this machine, over stdio ==
{{
  \"mcpServers\": {{
    \"provisioning\": {{ \"command\": {exe_json}, \"args\": [\"serve\"] }}
  }}
}}{config_note}

== Claude Code ==
claude mcp add provisioning -- {exe} serve
claude mcp add --transport http provisioning {url} --header \"Authorization: {auth}\"

== Cursor (~/.cursor/mcp.json) ==
{http}

== VS Code (.vscode/mcp.json) ==
{vscode}
",
        http = pretty(&http_json),
        vscode = pretty(&vscode_json),
    )
}

#[cfg(test)]
mod tests {
    use super::snippets;

    #[test]
    fn every_snippet_is_valid_and_carries_the_url_and_token() {
        let text = snippets(
            "/opt/prov/bin/provisioning",
            "http://127.0.0.1:7070/mcp",
            "prov_abc",
            true,
        );
        // The JSON blocks parse, and say what each client expects.
        let blocks: Vec<serde_json::Value> = text
            .split("== ")
            .filter_map(|part| {
                let start = part.find('{')?;
                let end = part.rfind('}')?;
                serde_json::from_str(&part[start..=end]).ok()
            })
            .collect();
        assert_eq!(blocks.len(), 3, "{text}");
        assert_eq!(
            blocks[0]["mcpServers"]["provisioning"]["command"],
            "/opt/prov/bin/provisioning"
        );
        assert_eq!(
            blocks[1]["mcpServers"]["provisioning"]["headers"]["Authorization"],
            "Bearer prov_abc"
        );
        assert_eq!(
            blocks[2]["servers"]["provisioning"]["url"],
            "http://127.0.0.1:7070/mcp"
        );
        assert!(text.contains(
            "claude mcp add --transport http provisioning http://127.0.0.1:7070/mcp --header \"Authorization: Bearer prov_abc\""
        ));
    }
}
