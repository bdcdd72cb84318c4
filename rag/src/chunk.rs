//! Chunking: Markdown by heading (the heading path goes with every chunk, code fences stay
//! whole, long sections are split on paragraph boundaries under a size cap) and Nickel schema
//! files by top-level block. Every chunk knows its 1-based line range in the source.

use serde::{Deserialize, Serialize};

use crate::meta::{DocMeta, Filter};

/// One retrievable piece of a document, with what a citation needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Chunk {
    /// `DOC#N`, N counting from 0 in document order.
    pub id: String,
    /// The document's path, e.g. `providers/hetzner.md` or `schemas/server.ncl`.
    pub doc: String,
    /// The document's title (its first `#` heading, else the file name).
    pub title: String,
    /// Headings from the top of the document down to this chunk's section.
    pub headings: Vec<String>,
    /// The chunk's text, without the section heading line itself.
    pub text: String,
    /// First line (1-based, inclusive), the section heading's line for a section's first chunk.
    pub start_line: usize,
    /// Last line (1-based, inclusive).
    pub end_line: usize,
    pub kind: String,
    pub provider: Option<String>,
    pub taskserv: Option<String>,
}

impl Chunk {
    /// The heading path as one line, `Title > Section > Subsection`.
    pub fn heading_path(&self) -> String {
        if self.headings.is_empty() {
            self.title.clone()
        } else {
            self.headings.join(" > ")
        }
    }

    /// What the embedding model sees: the heading path, then the text.
    pub fn embed_text(&self) -> String {
        format!("{}\n{}", self.heading_path(), self.text)
    }
}

/// Size limits for chunks, in characters.
#[derive(Debug, Clone, Copy)]
pub struct ChunkOptions {
    /// A chunk grows by whole paragraphs up to this size; a code fence is never split, and a
    /// single paragraph longer than this is split at line ends.
    pub max_chars: usize,
}

impl Default for ChunkOptions {
    fn default() -> Self {
        ChunkOptions { max_chars: 1000 }
    }
}

#[derive(Debug)]
enum BlockKind {
    Heading { level: usize, title: String },
    Paragraph,
    Code,
}

#[derive(Debug)]
struct Block {
    kind: BlockKind,
    /// 1-based, inclusive.
    start: usize,
    end: usize,
    text: String,
}

fn heading(line: &str) -> Option<(usize, String)> {
    let trimmed = line.trim_start();
    if line.len() - trimmed.len() > 3 {
        return None;
    }
    let level = trimmed.bytes().take_while(|b| *b == b'#').count();
    if level == 0 || level > 6 {
        return None;
    }
    let rest = &trimmed[level..];
    if !rest.is_empty() && !rest.starts_with([' ', '\t']) {
        return None;
    }
    let title = rest.trim().trim_end_matches('#').trim();
    Some((level, title.to_string()))
}

/// The fence marker (```` ``` ```` or `~~~`, at least three) opening a code block.
fn fence(line: &str) -> Option<(char, usize)> {
    let trimmed = line.trim_start();
    let first = trimmed.chars().next()?;
    if first != '`' && first != '~' {
        return None;
    }
    let n = trimmed.chars().take_while(|c| *c == first).count();
    (n >= 3).then_some((first, n))
}

fn closes(line: &str, open: (char, usize)) -> bool {
    let trimmed = line.trim();
    let n = trimmed.chars().take_while(|c| *c == open.0).count();
    n >= open.1 && trimmed.chars().all(|c| c == open.0)
}

/// Lines after YAML front matter (`---` ... `---` at the top), as (1-based number, text).
fn body_lines(text: &str) -> Vec<(usize, &str)> {
    let lines: Vec<(usize, &str)> = text.lines().enumerate().map(|(i, l)| (i + 1, l)).collect();
    if lines.first().is_some_and(|(_, l)| l.trim() == "---")
        && let Some(end) = lines.iter().skip(1).position(|(_, l)| l.trim() == "---")
    {
        return lines[end + 2..].to_vec();
    }
    lines
}

fn blocks(text: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut para: Option<Block> = None;
    let mut code: Option<(Block, (char, usize))> = None;
    let mut in_comment = false;
    let flush = |para: &mut Option<Block>, out: &mut Vec<Block>| {
        if let Some(p) = para.take() {
            out.push(p);
        }
    };
    for (n, line) in body_lines(text) {
        if let Some((block, open)) = code.as_mut() {
            block.text.push('\n');
            block.text.push_str(line);
            block.end = n;
            if closes(line, *open)
                && let Some((block, _)) = code.take()
            {
                out.push(block);
            }
            continue;
        }
        // HTML comments (generator markers) are not content.
        let trimmed = line.trim();
        if in_comment {
            in_comment = !trimmed.contains("-->");
            continue;
        }
        if trimmed.starts_with("<!--") {
            in_comment = !trimmed.contains("-->");
            continue;
        }
        if let Some(open) = fence(line) {
            flush(&mut para, &mut out);
            code = Some((
                Block {
                    kind: BlockKind::Code,
                    start: n,
                    end: n,
                    text: line.to_string(),
                },
                open,
            ));
            continue;
        }
        if let Some((level, title)) = heading(line) {
            flush(&mut para, &mut out);
            out.push(Block {
                kind: BlockKind::Heading { level, title },
                start: n,
                end: n,
                text: String::new(),
            });
            continue;
        }
        if trimmed.is_empty() {
            flush(&mut para, &mut out);
            continue;
        }
        match para.as_mut() {
            Some(p) => {
                p.text.push('\n');
                p.text.push_str(line);
                p.end = n;
            }
            None => {
                para = Some(Block {
                    kind: BlockKind::Paragraph,
                    start: n,
                    end: n,
                    text: line.to_string(),
                })
            }
        }
    }
    flush(&mut para, &mut out);
    // An unclosed fence runs to the end of the file, still one block.
    if let Some((block, _)) = code {
        out.push(block);
    }
    out
}

/// Splits a paragraph longer than `max` at line ends (a single longer line stays whole).
fn split_long(block: Block, max: usize) -> Vec<Block> {
    if block.text.len() <= max || matches!(block.kind, BlockKind::Code) {
        return vec![block];
    }
    let mut out: Vec<Block> = Vec::new();
    for (i, line) in block.text.lines().enumerate() {
        let n = block.start + i;
        match out.last_mut() {
            Some(last) if last.text.len() + 1 + line.len() <= max => {
                last.text.push('\n');
                last.text.push_str(line);
                last.end = n;
            }
            _ => out.push(Block {
                kind: BlockKind::Paragraph,
                start: n,
                end: n,
                text: line.to_string(),
            }),
        }
    }
    out
}

/// Builds chunks from `(heading path, section start line, blocks)` sections.
struct Packer<'a> {
    doc: &'a str,
    meta: &'a DocMeta,
    max: usize,
    out: Vec<Chunk>,
}

impl Packer<'_> {
    fn push(&mut self, headings: &[String], start: usize, parts: &[Block]) {
        let (Some(first), Some(last)) = (parts.first(), parts.last()) else {
            return;
        };
        let text = parts
            .iter()
            .map(|b| b.text.as_str())
            .collect::<Vec<_>>()
            .join("\n\n");
        self.out.push(Chunk {
            id: format!("{}#{}", self.doc, self.out.len()),
            doc: self.doc.to_string(),
            title: self.meta.title.clone(),
            headings: headings.to_vec(),
            text,
            start_line: start.min(first.start),
            end_line: last.end,
            kind: self.meta.kind.clone(),
            provider: self.meta.provider.clone(),
            taskserv: self.meta.taskserv.clone(),
        });
    }

    /// Packs a section's blocks into chunks of at most `max` characters.
    fn section(&mut self, headings: &[String], heading_line: usize, body: Vec<Block>) {
        let mut current: Vec<Block> = Vec::new();
        let mut len = 0usize;
        let mut start = heading_line;
        let max = self.max;
        for block in body.into_iter().flat_map(|b| split_long(b, max)) {
            let add = block.text.len() + 2;
            if !current.is_empty() && len + add > self.max {
                self.push(headings, start, &current);
                current.clear();
                len = 0;
                start = block.start;
            }
            len += add;
            current.push(block);
        }
        self.push(headings, start, &current);
    }
}

/// Chunks a Markdown document.
pub fn markdown(doc: &str, text: &str, meta: &DocMeta, options: ChunkOptions) -> Vec<Chunk> {
    let mut packer = Packer {
        doc,
        meta,
        max: options.max_chars.max(100),
        out: Vec::new(),
    };
    let mut stack: Vec<(usize, String)> = Vec::new();
    let mut section_line = 1usize;
    let mut body: Vec<Block> = Vec::new();
    for block in blocks(text) {
        match block.kind {
            BlockKind::Heading { level, title } => {
                let path: Vec<String> = stack.iter().map(|(_, t)| t.clone()).collect();
                packer.section(&path, section_line, std::mem::take(&mut body));
                stack.retain(|(l, _)| *l < level);
                stack.push((level, title));
                section_line = block.start;
            }
            _ => body.push(block),
        }
    }
    let path: Vec<String> = stack.iter().map(|(_, t)| t.clone()).collect();
    packer.section(&path, section_line, body);
    packer.out
}

/// The first top-level binding of a Nickel block (`Server = ...`, `let Zone = ...`).
fn nickel_binding(text: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let indent = line.len() - line.trim_start().len();
        if indent > 2 {
            return None;
        }
        let rest = line.trim_start();
        let rest = rest.strip_prefix("let ").unwrap_or(rest);
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
            .collect();
        let after = rest[name.len()..].trim_start();
        (!name.is_empty() && (after.starts_with('=') || after.starts_with('|'))).then_some(name)
    })
}

/// Chunks a Nickel source file by blank-line separated blocks under the size cap, each chunk
/// headed by the file and the first binding it defines.
pub fn nickel(doc: &str, text: &str, meta: &DocMeta, options: ChunkOptions) -> Vec<Chunk> {
    let max = options.max_chars.max(100) * 3 / 2;
    let mut paragraphs: Vec<Block> = Vec::new();
    let mut open: Option<Block> = None;
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if line.trim().is_empty() {
            paragraphs.extend(open.take());
            continue;
        }
        match open.as_mut() {
            Some(block) => {
                block.text.push('\n');
                block.text.push_str(line);
                block.end = n;
            }
            None => {
                open = Some(Block {
                    kind: BlockKind::Paragraph,
                    start: n,
                    end: n,
                    text: line.to_string(),
                })
            }
        }
    }
    paragraphs.extend(open);
    let mut out: Vec<Chunk> = Vec::new();
    let mut current: Vec<Block> = Vec::new();
    let mut len = 0usize;
    let flush = |current: &mut Vec<Block>, out: &mut Vec<Chunk>| {
        let (Some(first), Some(last)) = (current.first(), current.last()) else {
            return;
        };
        let text = current
            .iter()
            .map(|b| b.text.as_str())
            .collect::<Vec<_>>()
            .join("\n\n");
        let mut headings = vec![meta.title.clone()];
        if let Some(name) = nickel_binding(&text) {
            headings.push(name);
        }
        out.push(Chunk {
            id: format!("{doc}#{}", out.len()),
            doc: doc.to_string(),
            title: meta.title.clone(),
            headings,
            text,
            start_line: first.start,
            end_line: last.end,
            kind: meta.kind.clone(),
            provider: meta.provider.clone(),
            taskserv: meta.taskserv.clone(),
        });
        current.clear();
    };
    for block in paragraphs {
        let add = block.text.len() + 2;
        if !current.is_empty() && len + add > max {
            flush(&mut current, &mut out);
            len = 0;
        }
        len += add;
        current.push(block);
    }
    flush(&mut current, &mut out);
    out
}

impl Filter {
    /// Whether `chunk` is of a document this filter lets through. (Here rather than with
    /// [`Filter`] in `meta`, which knows no chunks.)
    pub fn matches(&self, chunk: &Chunk) -> bool {
        let eq = |want: &Option<String>, have: &Option<String>| {
            want.as_ref().is_none_or(|w| have.as_ref() == Some(w))
        };
        eq(&self.provider, &chunk.provider)
            && eq(&self.taskserv, &chunk.taskserv)
            && self.kind.as_ref().is_none_or(|k| *k == chunk.kind)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn meta() -> DocMeta {
        DocMeta {
            title: "Guide".into(),
            kind: "guide".into(),
            provider: None,
            taskserv: None,
        }
    }

    const DOC: &str = "# Guide\n\nIntro paragraph.\n\n## Install\n\nRun this:\n\n```sh\napt-get install redis\n\nredis-server --port 7000\n```\n\nThen check.\n\n### Verify\n\nPing it.\n\n## Remove\n\nStop it.\n";

    #[test]
    fn heading_paths_and_line_ranges() {
        let chunks = markdown("g.md", DOC, &meta(), ChunkOptions::default());
        let summary: Vec<(String, usize, usize)> = chunks
            .iter()
            .map(|c| (c.heading_path(), c.start_line, c.end_line))
            .collect();
        assert_eq!(
            summary,
            vec![
                ("Guide".to_string(), 1, 3),
                ("Guide > Install".to_string(), 5, 15),
                ("Guide > Install > Verify".to_string(), 17, 19),
                ("Guide > Remove".to_string(), 21, 23),
            ]
        );
        assert_eq!(chunks[1].id, "g.md#1");
        // The line range really covers the text: the cited lines contain the chunk's words.
        let lines: Vec<&str> = DOC.lines().collect();
        let cited = lines[chunks[1].start_line - 1..chunks[1].end_line].join("\n");
        assert!(cited.contains("redis-server --port 7000"));
        assert!(cited.contains("Then check."));
    }

    #[test]
    fn code_fences_stay_whole_even_when_over_the_cap() {
        let mut doc = String::from("# T\n\n## Big\n\nBefore.\n\n```nickel\n");
        for i in 0..80 {
            doc.push_str(&format!("  field_{i} = \"value {i}\",\n\n"));
        }
        doc.push_str("```\n\nAfter.\n");
        let chunks = markdown("t.md", &doc, &meta(), ChunkOptions { max_chars: 300 });
        let with_fence: Vec<&Chunk> = chunks
            .iter()
            .filter(|c| c.text.contains("```nickel"))
            .collect();
        assert_eq!(with_fence.len(), 1);
        let fence = with_fence[0];
        assert!(fence.text.contains("field_0 ") && fence.text.contains("field_79 "));
        assert!(fence.text.trim_end().ends_with("```"));
        // A heading-looking line inside the fence is not a heading.
        let doc2 = "# A\n\n```md\n# not a heading\n```\n";
        let c2 = markdown("a.md", doc2, &meta(), ChunkOptions::default());
        assert_eq!(c2.len(), 1);
        assert_eq!(c2[0].headings, vec!["A"]);
    }

    #[test]
    fn long_sections_split_on_paragraphs_under_the_cap() {
        let mut doc = String::from("# T\n\n## Long\n\n");
        for i in 0..30 {
            doc.push_str(&format!(
                "Paragraph {i} says something about servers and zones.\n\n"
            ));
        }
        let chunks = markdown("t.md", &doc, &meta(), ChunkOptions { max_chars: 200 });
        assert!(chunks.len() > 5, "{}", chunks.len());
        for c in &chunks {
            assert!(c.text.len() <= 200, "{}", c.text.len());
            assert_eq!(c.heading_path(), "T > Long");
            // Never cut inside a paragraph.
            for para in c.text.split("\n\n") {
                assert!(para.starts_with("Paragraph ") && para.ends_with("zones."));
            }
        }
        // Ranges are contiguous and increasing.
        for pair in chunks.windows(2) {
            assert!(pair[0].end_line < pair[1].start_line);
        }
    }

    #[test]
    fn front_matter_and_generator_comments_are_not_content() {
        let doc = "---\nkind: runbook\n---\n<!-- generated-from: x -->\n# Title\n\nBody.\n";
        let chunks = markdown("r.md", doc, &meta(), ChunkOptions::default());
        assert_eq!(chunks.len(), 1);
        assert_eq!(chunks[0].text, "Body.");
        assert_eq!((chunks[0].start_line, chunks[0].end_line), (5, 7));
    }

    #[test]
    fn nickel_files_chunk_by_block_with_binding_names() {
        let src = "# Server contracts\nlet lib = import \"lib.ncl\" in\n\n{\n  Zone = String,\n\n  Server = {\n    name | String,\n  },\n}\n";
        let m = DocMeta {
            title: "Nickel schema server.ncl".into(),
            kind: "schema".into(),
            provider: None,
            taskserv: None,
        };
        let chunks = nickel("schemas/server.ncl", src, &m, ChunkOptions::default());
        assert_eq!(chunks.len(), 1);
        assert_eq!((chunks[0].start_line, chunks[0].end_line), (1, 10));
        assert_eq!(chunks[0].headings[0], "Nickel schema server.ncl");
        let pad = "  # a comment line that makes this block longer than the cap on its own\n";
        let long = format!(
            "# Server contracts\n{pad}{pad}let lib = import \"lib.ncl\" in\n\n{{\n{pad}{pad}  Zone = String,\n\n  Server = {{\n{pad}{pad}    name | String,\n  }},\n}}\n"
        );
        let small = nickel(
            "schemas/server.ncl",
            &long,
            &m,
            ChunkOptions { max_chars: 10 },
        );
        assert!(small.len() >= 3);
        assert!(
            small
                .iter()
                .any(|c| c.headings.get(1).is_some_and(|h| h == "Server"))
        );
    }
}
