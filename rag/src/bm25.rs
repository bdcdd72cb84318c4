//! Keyword retrieval: an in-process BM25 index over chunks, with the heading path counted as a
//! weighted second field (BM25F-style), English stop words dropped and a light suffix stemmer.

use std::collections::HashMap;

/// BM25 parameters.
#[derive(Debug, Clone, Copy)]
pub struct Bm25Params {
    pub k1: f32,
    pub b: f32,
    /// How much a term in the title or heading path counts, relative to one in the body.
    pub heading_weight: f32,
}

impl Default for Bm25Params {
    fn default() -> Self {
        Bm25Params {
            k1: 1.2,
            b: 0.75,
            heading_weight: 2.0,
        }
    }
}

const STOP_WORDS: &[&str] = &[
    "a", "about", "all", "an", "and", "any", "are", "as", "at", "be", "been", "but", "by", "can",
    "do", "does", "for", "from", "get", "has", "have", "how", "i", "if", "in", "into", "is", "it",
    "its", "me", "my", "of", "on", "or", "our", "should", "so", "that", "the", "their", "them",
    "then", "there", "these", "this", "to", "use", "was", "we", "what", "when", "where", "which",
    "while", "who", "why", "will", "with", "would", "you", "your",
];

/// A light English suffix stemmer: enough that `servers`/`server` and `zones`/`zone` meet;
/// it only has to be consistent between documents and queries.
pub fn stem(word: &str) -> String {
    let w = word;
    let n = w.len();
    if n <= 3 || !w.is_ascii() {
        return w.to_string();
    }
    for (suffix, replace, min_stem) in [
        ("ies", "y", 3),
        ("sses", "ss", 2),
        ("ing", "", 4),
        ("edly", "", 4),
        ("ed", "", 4),
        ("es", "", 3),
        ("s", "", 3),
    ] {
        if let Some(base) = w.strip_suffix(suffix) {
            if base.len() < min_stem {
                continue;
            }
            if suffix == "s" && (base.ends_with('s') || base.ends_with('u') || base.ends_with('i'))
            {
                return w.to_string();
            }
            if suffix == "es"
                && !(base.ends_with('s')
                    || base.ends_with('x')
                    || base.ends_with("ch")
                    || base.ends_with("sh")
                    || base.ends_with('z'))
            {
                // `zones` -> `zone`: only the `s` goes.
                return w[..n - 1].to_string();
            }
            return format!("{base}{replace}");
        }
    }
    w.to_string()
}

/// Lowercased, stemmed terms of `text`, stop words dropped. Identifiers split at `_`, `-` and
/// `.` also keep their joined form (`parallel_limit` gives `parallel`, `limit`,
/// `parallel_limit`).
pub fn terms(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for raw in text.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '-' || c == '.')) {
        let raw = raw.trim_matches(|c: char| c == '.' || c == '-' || c == '_');
        if raw.is_empty() {
            continue;
        }
        let lower = raw.to_lowercase();
        let parts: Vec<&str> = lower
            .split(['_', '-', '.'])
            .filter(|p| !p.is_empty())
            .collect();
        if parts.len() > 1 {
            out.push(lower.clone());
        }
        for part in parts {
            if STOP_WORDS.contains(&part) {
                continue;
            }
            out.push(stem(part));
        }
    }
    out
}

#[derive(Debug, Clone)]
struct Posting {
    doc: u32,
    /// Body count plus `heading_weight` times the heading count.
    tf: f32,
}

/// A BM25 index over items with a heading field and a body field.
#[derive(Debug, Clone, Default)]
pub struct Bm25 {
    params: Bm25Params,
    postings: HashMap<String, Vec<Posting>>,
    lengths: Vec<f32>,
    avg_len: f32,
}

impl Bm25 {
    /// Indexes `(heading, body)` pairs; results refer to them by position.
    pub fn build<'a>(
        items: impl IntoIterator<Item = (&'a str, &'a str)>,
        params: Bm25Params,
    ) -> Bm25 {
        let mut postings: HashMap<String, Vec<Posting>> = HashMap::new();
        let mut lengths = Vec::new();
        for (i, (heading, body)) in items.into_iter().enumerate() {
            let mut tf: HashMap<String, f32> = HashMap::new();
            let heading_terms = terms(heading);
            let body_terms = terms(body);
            for t in &body_terms {
                *tf.entry(t.clone()).or_default() += 1.0;
            }
            for t in &heading_terms {
                *tf.entry(t.clone()).or_default() += params.heading_weight;
            }
            lengths
                .push(body_terms.len() as f32 + params.heading_weight * heading_terms.len() as f32);
            let doc = u32::try_from(i).unwrap_or(u32::MAX);
            for (term, tf) in tf {
                postings.entry(term).or_default().push(Posting { doc, tf });
            }
        }
        let avg_len = if lengths.is_empty() {
            1.0
        } else {
            (lengths.iter().sum::<f32>() / lengths.len() as f32).max(1.0)
        };
        Bm25 {
            params,
            postings,
            lengths,
            avg_len,
        }
    }

    pub fn len(&self) -> usize {
        self.lengths.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lengths.is_empty()
    }

    /// The best `limit` items for `query` among those `allow` accepts, best first, with
    /// their scores. Items sharing no term with the query are not returned.
    pub fn search(
        &self,
        query: &str,
        limit: usize,
        allow: impl Fn(usize) -> bool,
    ) -> Vec<(usize, f32)> {
        let n = self.lengths.len() as f32;
        let mut scores: HashMap<u32, f32> = HashMap::new();
        let mut seen: Vec<String> = Vec::new();
        for term in terms(query) {
            if seen.contains(&term) {
                continue;
            }
            let Some(list) = self.postings.get(&term) else {
                seen.push(term);
                continue;
            };
            seen.push(term);
            let df = list.len() as f32;
            let idf = ((n - df + 0.5) / (df + 0.5) + 1.0).ln();
            let Bm25Params { k1, b, .. } = self.params;
            for p in list {
                let len = self
                    .lengths
                    .get(p.doc as usize)
                    .copied()
                    .unwrap_or(self.avg_len);
                let norm = k1 * (1.0 - b + b * len / self.avg_len);
                *scores.entry(p.doc).or_default() += idf * p.tf * (k1 + 1.0) / (p.tf + norm);
            }
        }
        let mut ranked: Vec<(usize, f32)> = scores
            .into_iter()
            .map(|(d, s)| (d as usize, s))
            .filter(|(d, _)| allow(*d))
            .collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        ranked.truncate(limit);
        ranked
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn stemming_and_terms() {
        assert_eq!(stem("servers"), "server");
        assert_eq!(stem("zones"), "zone");
        assert_eq!(stem("policies"), "policy");
        assert_eq!(stem("status"), "status");
        assert_eq!(stem("boxes"), "box");
        assert_eq!(stem("approved"), "approv");
        assert_eq!(stem("approving"), "approv");
        assert_eq!(
            terms("How do I set the parallel_limit?"),
            vec!["set", "parallel_limit", "parallel", "limit"]
        );
        assert_eq!(terms("de-fra1 zone"), vec!["de-fra1", "de", "fra1", "zone"]);
    }

    #[test]
    fn ranks_by_term_rarity_and_frequency() {
        let items = [
            (
                "Redis",
                "redis is an in-memory store. redis persists with AOF.",
            ),
            (
                "Nginx",
                "nginx serves http and proxies to upstream servers.",
            ),
            (
                "Postgres",
                "postgres is a relational database server with replication.",
            ),
            (
                "Servers",
                "servers run taskservs; every server has a plan and a zone.",
            ),
        ];
        let idx = Bm25::build(items.iter().map(|(h, b)| (*h, *b)), Bm25Params::default());
        let hits = idx.search("redis persistence", 10, |_| true);
        assert_eq!(hits[0].0, 0);
        assert_eq!(hits.len(), 1, "only the redis item shares a term: {hits:?}");
        // A rare term beats a common one.
        let hits = idx.search("server replication", 10, |_| true);
        assert_eq!(hits[0].0, 2, "{hits:?}");
        // Heading terms count more than body terms.
        let hits = idx.search("nginx", 10, |_| true);
        assert_eq!(hits[0].0, 1);
        // Filters apply.
        let hits = idx.search("server", 10, |i| i != 3);
        assert!(hits.iter().all(|(i, _)| *i != 3));
        assert!(idx.search("the of and", 10, |_| true).is_empty());
    }

    #[test]
    fn heading_weight_breaks_ties_toward_the_titled_item() {
        let items = [
            ("Backups", "take a snapshot of the volume every night"),
            (
                "Volumes",
                "a volume is attached; take a backup with a snapshot",
            ),
        ];
        let idx = Bm25::build(items.iter().map(|(h, b)| (*h, *b)), Bm25Params::default());
        assert_eq!(idx.search("backup", 2, |_| true)[0].0, 0);
    }
}
