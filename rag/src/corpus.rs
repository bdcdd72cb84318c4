//! The documents to index: the docs and Nickel schemas shipped in the binary, and a user's own
//! Markdown folder. Each document gets a content hash (for incremental re-indexing) and the
//! metadata that filters use (kind, provider, taskserv), from front matter or its path.

use std::path::Path;

use include_dir::{Dir, include_dir};
use sha2::{Digest, Sha256};

use crate::chunk::{self, Chunk, ChunkOptions};
use crate::{RagError, RagResult};

static DOCS: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/../knowledge/docs");

/// Prefix of the paths of documents from the user's folder.
pub const USER_PREFIX: &str = "user/";

pub use crate::meta::DocMeta;

/// One document: shipped Markdown, a shipped Nickel schema, or a user's Markdown file.
#[derive(Debug, Clone)]
pub struct Doc {
    /// `providers/hetzner.md`, `schemas/server.ncl`, `user/notes/db.md`.
    pub path: String,
    pub text: String,
    /// SHA-256 of the text, hex.
    pub hash: String,
    pub meta: DocMeta,
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `key: value` pairs of YAML-style front matter at the top of a Markdown file.
fn front_matter(text: &str) -> Vec<(String, String)> {
    let mut lines = text.lines();
    if lines.next().map(str::trim) != Some("---") {
        return Vec::new();
    }
    let mut out = Vec::new();
    for line in lines {
        if line.trim() == "---" {
            return out;
        }
        if let Some((k, v)) = line.split_once(':') {
            let v = v.trim().trim_matches(['"', '\'']);
            out.push((k.trim().to_ascii_lowercase(), v.to_string()));
        }
    }
    Vec::new()
}

fn first_h1(text: &str) -> Option<String> {
    let mut in_fence = false;
    for line in text.lines() {
        let t = line.trim_start();
        if t.starts_with("```") || t.starts_with("~~~") {
            in_fence = !in_fence;
        }
        if !in_fence && let Some(title) = t.strip_prefix("# ") {
            return Some(title.trim().to_string());
        }
    }
    None
}

fn stem(path: &str) -> &str {
    let file = path.rsplit('/').next().unwrap_or(path);
    file.rsplit_once('.').map_or(file, |(s, _)| s)
}

/// Metadata from the path (`providers/hetzner.md` is about provider `hetzner`), overridden by
/// front matter keys `title`, `kind`, `provider`, `taskserv`.
pub fn meta_for(path: &str, text: &str) -> DocMeta {
    let rel = path.strip_prefix(USER_PREFIX).unwrap_or(path);
    let name = stem(rel).to_string();
    let dir = rel.split_once('/').map(|(d, _)| d);
    let is_index = matches!(name.as_str(), "index" | "README" | "readme" | "overview");
    let (kind, provider, taskserv) = match dir {
        Some("providers") => ("provider", (!is_index).then(|| name.clone()), None),
        Some("taskservs") => ("taskserv", None, (!is_index).then(|| name.clone())),
        Some("clusters" | "templates") => ("cluster", None, None),
        Some("schemas") => ("schema", None, None),
        Some("reference") => ("reference", None, None),
        Some("policies" | "policy") => ("policy", None, None),
        Some("runbooks" | "troubleshooting") => ("runbook", None, None),
        Some(other) => (other.strip_suffix('s').unwrap_or(other), None, None),
        None => ("guide", None, None),
    };
    let mut meta = DocMeta {
        title: first_h1(text).unwrap_or_else(|| {
            if path.ends_with(".ncl") {
                format!("Nickel schema {}", rel.rsplit('/').next().unwrap_or(rel))
            } else {
                name.clone()
            }
        }),
        kind: kind.to_string(),
        provider,
        taskserv,
    };
    if path.ends_with(".ncl") {
        meta.title = format!("Nickel schema {}", rel.rsplit('/').next().unwrap_or(rel));
    }
    for (k, v) in front_matter(text) {
        match k.as_str() {
            "title" => meta.title = v,
            "kind" => meta.kind = v,
            "provider" => meta.provider = Some(v),
            "taskserv" => meta.taskserv = Some(v),
            _ => {}
        }
    }
    meta
}

impl Doc {
    pub fn new(path: impl Into<String>, text: impl Into<String>) -> Doc {
        let path = path.into();
        let text = text.into();
        Doc {
            hash: sha256_hex(text.as_bytes()),
            meta: meta_for(&path, &text),
            path,
            text,
        }
    }

    /// The document's chunks: Markdown by heading, Nickel by block.
    pub fn chunks(&self, options: ChunkOptions) -> Vec<Chunk> {
        if self.path.ends_with(".ncl") {
            chunk::nickel(&self.path, &self.text, &self.meta, options)
        } else {
            chunk::markdown(&self.path, &self.text, &self.meta, options)
        }
    }
}

fn walk_embedded(dir: &Dir<'_>, out: &mut Vec<Doc>) {
    for file in dir.files() {
        let path = file.path().to_string_lossy().replace('\\', "/");
        if path.ends_with(".md")
            && let Some(text) = file.contents_utf8()
        {
            out.push(Doc::new(path, text));
        }
    }
    for sub in dir.dirs() {
        walk_embedded(sub, out);
    }
}

/// The docs and schemas shipped in the binary, sorted by path.
pub fn shipped() -> Vec<Doc> {
    let mut out = Vec::new();
    walk_embedded(&DOCS, &mut out);
    for name in knowledge::schema_names() {
        if let Some(schema) = knowledge::schema(name) {
            out.push(Doc::new(format!("schemas/{name}.ncl"), schema.source));
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

/// Markdown (`*.md`) and Nickel (`*.ncl`) files under `dir`, recursively, with paths
/// `PREFIX` + their path relative to `dir`, sorted. Hidden files and folders are skipped.
pub fn from_dir(dir: &Path, prefix: &str) -> RagResult<Vec<Doc>> {
    fn walk(root: &Path, dir: &Path, prefix: &str, out: &mut Vec<Doc>) -> RagResult<()> {
        let io = |source| RagError::Io {
            path: dir.display().to_string(),
            source,
        };
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .map_err(io)?
            .filter_map(Result::ok)
            .collect();
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let path = entry.path();
            if entry.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            if path.is_dir() {
                walk(root, &path, prefix, out)?;
            } else if path
                .extension()
                .is_some_and(|e| e == "md" || e == "ncl" || e == "markdown")
            {
                let text = std::fs::read_to_string(&path).map_err(|source| RagError::Io {
                    path: path.display().to_string(),
                    source,
                })?;
                let rel = path
                    .strip_prefix(root)
                    .unwrap_or(&path)
                    .to_string_lossy()
                    .replace('\\', "/");
                out.push(Doc::new(format!("{prefix}{rel}"), text));
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(dir, dir, prefix, &mut out)?;
    Ok(out)
}

/// The user's docs folder, with paths under `user/`.
pub fn user(dir: &Path) -> RagResult<Vec<Doc>> {
    from_dir(dir, USER_PREFIX)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn meta_from_path_and_front_matter() {
        let m = meta_for("providers/hetzner.md", "# Hetzner Cloud\n");
        assert_eq!(
            (m.kind.as_str(), m.provider.as_deref(), m.title.as_str()),
            ("provider", Some("hetzner"), "Hetzner Cloud")
        );
        let m = meta_for("taskservs/redis.md", "text");
        assert_eq!(
            (m.kind.as_str(), m.taskserv.as_deref(), m.title.as_str()),
            ("taskserv", Some("redis"), "redis")
        );
        let m = meta_for(
            "user/notes/x.md",
            "---\nkind: runbook\ntaskserv: nginx\n---\n# X\n",
        );
        assert_eq!(
            (m.kind.as_str(), m.taskserv.as_deref()),
            ("runbook", Some("nginx"))
        );
        assert_eq!(meta_for("schemas/server.ncl", "").kind, "schema");
        assert_eq!(meta_for("quickstart.md", "").kind, "guide");
    }

    #[test]
    fn shipped_includes_every_schema() {
        let docs = shipped();
        for name in knowledge::schema_names() {
            assert!(docs.iter().any(|d| d.path == format!("schemas/{name}.ncl")));
        }
        let a = Doc::new("a.md", "x");
        let b = Doc::new("a.md", "y");
        assert_ne!(a.hash, b.hash);
        assert_eq!(a.hash.len(), 64);
    }
}
