//! The project's own documents stay true: every crate has an ARCHITECTURE.md entry, and the
//! README Quickstart has exactly two commands, the second being what `.ci/run` runs.

use libtest_mimic::Trial;
use tests::root;

pub fn trials() -> Vec<Trial> {
    vec![
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
