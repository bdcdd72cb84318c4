//! Tidy checks that keep the house easy to walk: every Rust file says what it is for in a
//! module doc, no source file grows past 800 lines, and ARCHITECTURE.md names every crate and
//! every module folder that exists. (That the environment is read only in settings is
//! clippy's `disallowed-methods`, see clippy.toml.)

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
    ]
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
