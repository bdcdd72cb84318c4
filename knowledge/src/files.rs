//! The embedded schema and catalog files, and writing them to disk for Nickel imports.

use std::path::{Path, PathBuf};

use include_dir::{Dir, include_dir};

use crate::KnowledgeError;

pub(crate) static SCHEMAS: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/schemas");
pub(crate) static CATALOG: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/catalog");

/// One Nickel schema file of the contract library.
#[derive(Debug, Clone, Copy)]
pub struct Schema {
    /// File stem, e.g. `server` for `server.ncl`.
    pub name: &'static str,
    /// The Nickel source.
    pub source: &'static str,
}

/// Names of the schema files, sorted (`config`, `server`, ...).
pub fn schema_names() -> Vec<&'static str> {
    let mut names: Vec<_> = SCHEMAS
        .files()
        .filter_map(|f| f.path().to_str()?.strip_suffix(".ncl"))
        .collect();
    names.sort_unstable();
    names
}

/// The schema called `name` (with or without the `.ncl` suffix).
pub fn schema(name: &str) -> Option<Schema> {
    let stem = name.strip_suffix(".ncl").unwrap_or(name);
    let file = SCHEMAS.get_file(format!("{stem}.ncl"))?;
    let stem: &'static str = file.path().to_str()?.strip_suffix(".ncl")?;
    Some(Schema {
        name: stem,
        source: file.contents_utf8()?,
    })
}

/// Writes the schema library and catalogs under `base` (in a folder named after a hash of
/// their content, so several versions of the product can share `base`) and returns the path
/// of the folder holding `schemas/` and `catalog/`. Existing complete copies are reused.
pub fn materialize(base: &Path) -> Result<PathBuf, KnowledgeError> {
    let dir = base.join(format!("knowledge-{:016x}", content_hash()));
    if dir.join(".complete").exists() {
        return Ok(dir);
    }
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source| KnowledgeError::Materialize { path, source }
    };
    let staging = base.join(format!(
        ".knowledge-{}-{}",
        std::process::id(),
        content_hash()
    ));
    for (sub, tree) in [("schemas", &SCHEMAS), ("catalog", &CATALOG)] {
        write_tree(tree, &staging.join(sub)).map_err(io(&staging))?;
    }
    std::fs::write(staging.join(".complete"), b"").map_err(io(&staging))?;
    match std::fs::rename(&staging, &dir) {
        Ok(()) => Ok(dir),
        // Another process won the race; its copy has the same content.
        Err(_) if dir.join(".complete").exists() => {
            let _ = std::fs::remove_dir_all(&staging);
            Ok(dir)
        }
        Err(e) => Err(io(&dir)(e)),
    }
}

fn write_tree(tree: &Dir<'_>, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for file in tree.files() {
        if let Some(name) = file.path().file_name() {
            std::fs::write(to.join(name), file.contents())?;
        }
    }
    for sub in tree.dirs() {
        if let Some(name) = sub.path().file_name() {
            write_tree(sub, &to.join(name))?;
        }
    }
    Ok(())
}

/// FNV-1a over every embedded path and content: identifies this version of the files.
fn content_hash() -> u64 {
    fn walk(dir: &Dir<'_>, h: &mut u64) {
        for f in dir.files() {
            for b in f
                .path()
                .to_string_lossy()
                .bytes()
                .chain(f.contents().iter().copied())
            {
                *h = (*h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
            }
        }
        for d in dir.dirs() {
            walk(d, h);
        }
    }
    let mut h = 0xcbf2_9ce4_8422_2325;
    walk(&SCHEMAS, &mut h);
    walk(&CATALOG, &mut h);
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_library_is_complete() {
        let names = schema_names();
        for n in [
            "catalog",
            "cluster",
            "config",
            "lib",
            "server",
            "workflow",
            "workspace",
        ] {
            assert!(names.contains(&n), "missing schema {n} in {names:?}");
        }
        assert!(schema("server.ncl").is_some_and(|s| s.source.contains("Zone")));
        assert!(schema("nope").is_none());
    }

    #[test]
    fn materialize_is_idempotent_and_complete() {
        let base = std::env::temp_dir().join(format!("prov-know-test-{}", std::process::id()));
        let a = materialize(&base).unwrap();
        let b = materialize(&base).unwrap();
        assert_eq!(a, b);
        assert!(a.join("schemas/config.ncl").is_file());
        assert!(a.join("catalog/providers/hetzner.toml").is_file());
        std::fs::remove_dir_all(&base).unwrap();
    }
}
