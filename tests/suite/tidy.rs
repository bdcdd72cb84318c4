//! Tidy checks that keep the house easy to walk: every Rust file says what it is for in a
//! module doc, no source file grows past 800 lines, and ARCHITECTURE.md names every crate and
//! every module folder that exists, and no two modules of `engine` or `rag` use each other in
//! a circle. (That the environment is read only in settings is clippy's
//! `disallowed-methods`, see clippy.toml.)

use std::path::{Path, PathBuf};

use libtest_mimic::Trial;
use tests::root;

/// Longest non-test source file, in lines.
const MAX_LINES: usize = 800;

pub fn trials() -> Vec<Trial> {
    vec![
        Trial::test("tidy::every_rust_file_opens_with_a_module_doc", || {
            every_rust_file_opens_with_a_module_doc();
            Ok(())
        }),
        Trial::test("tidy::no_source_file_over_800_lines", || {
            no_source_file_over_800_lines();
            Ok(())
        }),
        Trial::test(
            "tidy::architecture_names_every_crate_and_module_folder",
            || {
                architecture_names_every_crate_and_module_folder();
                Ok(())
            },
        ),
        Trial::test("tidy::no_import_circle_in_engine_or_rag", || {
            let found: Vec<String> = ["engine", "rag"]
                .iter()
                .flat_map(|krate| {
                    module_cycles(krate)
                        .into_iter()
                        .map(move |c| format!("{krate}: {c}"))
                })
                .collect();
            assert!(
                found.is_empty(),
                "modules that use each other in a circle (move what both need into a leaf module): {found:#?}"
            );
            Ok(())
        }),
        Trial::test(
            "tidy::the_mcp_adapter_depends_on_the_application_layer_not_the_engine",
            || {
                let manifest: toml::Table =
                    std::fs::read_to_string(root().join("tools/Cargo.toml"))
                        .unwrap()
                        .parse()
                        .unwrap();
                for section in ["dependencies", "dev-dependencies"] {
                    let deps = manifest.get(section).and_then(|d| d.as_table());
                    assert!(
                        deps.is_none_or(|d| !d.contains_key("engine")),
                        "tools/Cargo.toml [{section}] names `engine`: the MCP adapter calls `service` (use cases) and names its types through `service::model`"
                    );
                }
                Ok(())
            },
        ),
        Trial::test(
            "tidy::in_server_only_the_composition_root_names_engine_types",
            || {
                in_server_only_the_composition_root_names_engine_types();
                Ok(())
            },
        ),
        Trial::test("tidy::the_circle_finder_reads_grouped_imports", || {
            let refs = crate_references(
                "use crate::{chunk::Chunk, store::{A, B}, Error};\nlet x = crate::hybrid::f();",
            );
            assert_eq!(refs, vec!["chunk", "store", "hybrid"]);
            Ok(())
        }),
    ]
}

/// Where `server` may name the engine: the binary's entry (the sandbox child and the process
/// supervisor are engine entry points), settings and flags (limits, secret references), and the
/// two places that choose implementations and build the application (`engine_setup.rs` for the
/// command line, `serve.rs` for the server). Everything else (REST handlers, the HTTP layers,
/// the remote client, the other commands) goes through `service`.
const COMPOSITION_ROOT: [&str; 6] = [
    "server/src/main.rs",
    "server/src/settings.rs",
    "server/src/settings/providers.rs",
    "server/src/cli.rs",
    "server/src/commands/engine_setup.rs",
    "server/src/commands/serve.rs",
];

fn in_server_only_the_composition_root_names_engine_types() {
    let mut files = Vec::new();
    rust_files(&root().join("server"), &mut files);
    let offenders: Vec<String> = files
        .iter()
        .filter(|f| !COMPOSITION_ROOT.contains(&f.to_string_lossy().as_ref()))
        .filter_map(|f| {
            let text = std::fs::read_to_string(root().join(f)).unwrap();
            let lines: Vec<String> = text
                .lines()
                .enumerate()
                .filter(|(_, l)| {
                    let code = l.split("//").next().unwrap_or("");
                    code.contains("engine::") || code.trim_start().starts_with("use engine")
                })
                .map(|(n, l)| format!("{}:{}: {}", f.display(), n + 1, l.trim()))
                .collect();
            (!lines.is_empty()).then(|| lines.join("\n"))
        })
        .collect();
    assert!(
        files.len() > 20 && offenders.is_empty(),
        "server files outside the composition root ({COMPOSITION_ROOT:?}) name engine types; call a `service` use case and name records through `service::model`:\n{}",
        offenders.join("\n")
    );
}

/// The workspace's members, from the root Cargo.toml.
fn crates() -> Vec<String> {
    let text = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    let manifest: toml::Table = text.parse().unwrap();
    manifest["workspace"]["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap().to_string())
        .collect()
}

/// Every `.rs` file under `dir`, relative to the repository root.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        if path.is_dir() {
            if !matches!(
                name.to_str(),
                Some("target" | "node_modules" | ".git" | "fixtures")
            ) {
                rust_files(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path.strip_prefix(root()).unwrap().to_path_buf());
        }
    }
}

fn all_rust_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for member in crates() {
        rust_files(&root().join(member), &mut files);
    }
    assert!(files.len() > 100, "only {} files found", files.len());
    files
}

fn every_rust_file_opens_with_a_module_doc() {
    let missing: Vec<String> = all_rust_files()
        .into_iter()
        .filter(|f| {
            let text = std::fs::read_to_string(root().join(f)).unwrap();
            !text.starts_with("//!")
        })
        .map(|f| f.display().to_string())
        .collect();
    assert!(
        missing.is_empty(),
        "these files do not open with a `//!` module doc saying what they are for: {missing:#?}"
    );
}

/// Tests may be longer (split by topic all the same): the `tests` crate, `tests.rs` files and
/// anything in a `tests/` folder.
fn is_test_file(path: &Path) -> bool {
    path.starts_with("tests")
        || path.file_name().is_some_and(|n| n == "tests.rs")
        || path.components().any(|c| c.as_os_str() == "tests")
}

fn no_source_file_over_800_lines() {
    let long: Vec<String> = all_rust_files()
        .into_iter()
        .filter(|f| !is_test_file(f))
        .filter_map(|f| {
            let lines = std::fs::read_to_string(root().join(&f))
                .unwrap()
                .lines()
                .count();
            (lines > MAX_LINES).then(|| format!("{} ({lines} lines)", f.display()))
        })
        .collect();
    assert!(
        long.is_empty(),
        "source files over {MAX_LINES} lines; split them by noun: {long:#?}"
    );
}

fn architecture_names_every_crate_and_module_folder() {
    let doc = std::fs::read_to_string(root().join("ARCHITECTURE.md")).unwrap();
    let mut missing = Vec::new();
    for member in crates() {
        if !doc.contains(&format!("### `{member}`")) {
            missing.push(format!("crate `{member}` (a `### `{member}`` section)"));
        }
        let src = root().join(&member).join("src");
        let mut dirs = Vec::new();
        module_dirs(&src, &src, &mut dirs);
        for dir in dirs {
            // Named as `exec/`, `exec::...`, `provider/local*` or `` `exec` ``.
            let named = [
                format!("`{dir}/"),
                format!("`{dir}`"),
                format!("`{dir}*"),
                format!("`{dir}::"),
            ]
            .iter()
            .any(|form| doc.contains(form.as_str()));
            if !named {
                missing.push(format!("module folder `{member}/src/{dir}/`"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "ARCHITECTURE.md does not name: {missing:#?}"
    );
}

/// Folders under `src` holding Rust modules, as paths relative to `src` (`provider/local`).
fn module_dirs(src: &Path, dir: &Path, out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            let mut files = Vec::new();
            rust_files(&path, &mut files);
            if !files.is_empty() {
                out.push(path.strip_prefix(src).unwrap().display().to_string());
                module_dirs(src, &path, out);
            }
        }
    }
}

/// The modules of a crate that `use` each other in a circle (`plan` → `state` → `plan`), as
/// paths like `plan → state → plan`. A module is a file or folder directly under `src`; a
/// reference is any `crate::NAME` path, including inside `use crate::{...}` groups.
fn module_cycles(krate: &str) -> Vec<String> {
    let src = root().join(krate).join("src");
    let mut modules: Vec<String> = std::fs::read_dir(&src)
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            match name.strip_suffix(".rs") {
                Some("lib" | "main") => None,
                Some(stem) => Some(stem.to_string()),
                None => e.path().is_dir().then_some(name),
            }
        })
        .collect();
    modules.sort();
    modules.dedup();
    let mut uses: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> =
        Default::default();
    for module in &modules {
        let mut files = Vec::new();
        let file = src.join(format!("{module}.rs"));
        if file.is_file() {
            files.push(file);
        }
        let mut nested = Vec::new();
        rust_files(&src.join(module), &mut nested);
        files.extend(nested.into_iter().map(|f| root().join(f)));
        let mut refs = std::collections::BTreeSet::new();
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap();
            // Unit tests may reach across (a test of `hybrid` builds an index with `ingest`).
            let text = text.split("#[cfg(test)]").next().unwrap_or_default();
            for name in crate_references(text) {
                if name != *module && modules.contains(&name) {
                    refs.insert(name);
                }
            }
        }
        uses.insert(module.clone(), refs);
    }
    // Every circle through each module, found by a depth-first walk (the graphs are small).
    let mut cycles = std::collections::BTreeSet::new();
    for start in &modules {
        let mut stack = vec![(start.clone(), vec![start.clone()])];
        while let Some((at, path)) = stack.pop() {
            for next in &uses[&at] {
                if next == start {
                    let mut circle = path.clone();
                    // One spelling per circle: rotated to start at its smallest module.
                    let min = circle.iter().enumerate().min_by_key(|(_, m)| *m).unwrap().0;
                    circle.rotate_left(min);
                    let first = circle[0].clone();
                    circle.push(first);
                    cycles.insert(circle.join(" → "));
                } else if !path.contains(next) && path.len() < 6 {
                    let mut longer = path.clone();
                    longer.push(next.clone());
                    stack.push((next.clone(), longer));
                }
            }
        }
    }
    cycles.into_iter().collect()
}

/// The first segment of every `crate::` path in `text`, groups included:
/// `use crate::{chunk::Chunk, store::{A, B}}` gives `chunk` and `store`.
fn crate_references(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("crate::") {
        let after = &rest[i + "crate::".len()..];
        if let Some(group) = after.strip_prefix('{') {
            // At the group's top level, each item is `name::...` (a module) or `Name` (an item
            // re-exported at the root): only the first segment of a path is a module.
            let mut depth = 0usize;
            let mut word = String::new();
            let mut in_path = false;
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        in_path = false;
                        word.clear();
                    }
                    ':' if depth == 0 && !in_path && !word.is_empty() => {
                        out.push(std::mem::take(&mut word));
                        in_path = true;
                    }
                    c if depth == 0 && !in_path && (c.is_alphanumeric() || c == '_') => {
                        word.push(c)
                    }
                    _ => {}
                }
            }
        } else {
            let name: String = after
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            out.push(name);
        }
        rest = after;
    }
    out
}
