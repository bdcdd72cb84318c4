//! The project's own documents stay true: every crate has an ARCHITECTURE.md entry, the
//! README Quickstart has exactly two commands, the second being what `.ci/run` runs, and every
//! complete config in the user docs (what the assistant is handed through `search_docs`)
//! validates.

use libtest_mimic::Trial;
use tests::root;

pub fn trials() -> Vec<Trial> {
    vec![
        Trial::test("docs::every_config_in_the_docs_validates", || {
            crate::check(every_config_in_the_docs_validates)
        }),
        Trial::test("docs::architecture_names_every_crate", || {
            crate::check(|| {
                let arch = std::fs::read_to_string(root().join("ARCHITECTURE.md")).unwrap();
                let manifest = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
                let members = manifest
                    .split("members = [")
                    .nth(1)
                    .unwrap()
                    .split(']')
                    .next()
                    .unwrap();
                for member in members
                    .split(',')
                    .map(|m| m.trim().trim_matches('"'))
                    .filter(|m| !m.is_empty())
                {
                    assert!(
                        arch.contains(&format!("### `{member}`")),
                        "ARCHITECTURE.md lacks an entry for `{member}`"
                    );
                }
            })
        }),
        Trial::test("docs::quickstart_has_two_commands", || {
            crate::check(|| {
                let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
                let quick = readme.split("## Quickstart").nth(1).unwrap();
                let block = quick
                    .split("```sh")
                    .nth(1)
                    .unwrap()
                    .split("```")
                    .next()
                    .unwrap();
                let commands: Vec<&str> = block
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .collect();
                assert_eq!(commands.len(), 2, "{commands:?}");
                let ci = std::fs::read_to_string(root().join(".ci/run")).unwrap();
                assert!(
                    ci.contains(commands[1]),
                    ".ci/run does not run `{}`",
                    commands[1]
                );
            })
        }),
    ]
}

/// Every ```nickel block of `knowledge/docs` that is a whole config (a record with `workspace`
/// and `servers`) validates with no error. The one warning a page may show is the one that says
/// this build has no install scripts for a taskserv on a cloud server (a page about such a
/// taskserv shows it as it is).
fn every_config_in_the_docs_validates() {
    let dir = tests::scratch("docs-configs");
    let mut checked = 0;
    let mut failures = Vec::new();
    for page in tests::walk(&root().join("knowledge/docs")) {
        if page.extension().is_none_or(|e| e != "md") {
            continue;
        }
        let text = std::fs::read_to_string(&page).unwrap();
        let mut rest = text.as_str();
        while let Some(start) = rest.find("```nickel\n") {
            let body = &rest[start + "```nickel\n".len()..];
            let Some(end) = body.find("```") else { break };
            let block = &body[..end];
            let line = text.len() - rest.len() + start;
            let line = text[..line].matches('\n').count() + 1;
            rest = &body[end + 3..];
            let whole = block.lines().any(|l| l.starts_with('{'))
                && block.contains("workspace")
                && block.contains("servers");
            if !whole {
                continue;
            }
            checked += 1;
            let file = dir.join(format!("config-{checked}.ncl"));
            std::fs::write(&file, block).unwrap();
            let out = tests::run(&dir, &["validate", file.to_str().unwrap(), "--json"], None);
            let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
            let unexpected: Vec<String> = report["diagnostics"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .filter(|d| {
                    !(d["severity"] == "warning"
                        && d["message"]
                            .as_str()
                            .is_some_and(|m| m.starts_with("this build has no install scripts")))
                })
                .map(|d| format!("{}: {}", d["path"], d["message"]))
                .collect();
            if out.status.code() != Some(0) || !unexpected.is_empty() {
                let rel = page
                    .strip_prefix(root())
                    .unwrap_or(&page)
                    .display()
                    .to_string();
                failures.push(format!("{rel}:{line}: {unexpected:?}"));
            }
        }
    }
    assert!(checked >= 50, "only {checked} configs found in the docs");
    assert!(
        failures.is_empty(),
        "configs in the docs that do not validate:\n{}",
        failures.join("\n")
    );
    let _ = std::fs::remove_dir_all(&dir);
}
