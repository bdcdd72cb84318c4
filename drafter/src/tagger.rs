//! Words → tags: counts, sizes, plan names, places, providers, environments, taskservs, server
//! roles, and the cue words that shape clusters ("cluster", "replicated", "spread across").
//! Multi-word phrases are matched longest first; a word the vocabulary misses by a letter or
//! two ("ngnix", "helsinky") is read as the closest name, which the draft states.

use std::collections::HashMap;

use knowledge::Catalog;

use super::lexer::Tok;
use super::places::Gazetteer;
use super::vocab::{self, Env, Role};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CountHow {
    /// `a`, `an`: one, unless something more specific says otherwise.
    Article,
    /// `3`, `three`, `2x`, `a pair of`.
    Number,
    /// `x4` after the noun, `tier of 3`.
    Postfix,
    /// `3-node` before a cluster.
    NodeAdj,
    /// `a few`, `several`: a guess, stated as an assumption.
    Vague,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cue {
    Cluster,
    Stack,
    Farm,
    Ha,
    Replicated,
    Spread,
    All,
    Mirror,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Kind {
    Count {
        n: u32,
        how: CountHow,
    },
    Role {
        role: Role,
        head: bool,
    },
    Generic,
    /// `pair`: a noun for two servers.
    Pair,
    /// `another (one)`; a bare `one` is a count the grouping may read as a pronoun.
    Pronoun,
    Service {
        name: String,
        version: Option<String>,
        /// The text named software the catalog lacks and this is its stand-in.
        stand_in: Option<String>,
    },
    Provider(String),
    Place(usize),
    Env(Env),
    Cores(u32),
    Memory(u32),
    Disk(u32),
    SizeWord(u8),
    Plan {
        name: String,
        provider: String,
    },
    Arm,
    Dedicated,
    Cheap,
    Email(String),
    Cue(Cue),
    Unknown(String),
    Word(String),
    Punct(char),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Tag {
    pub kind: Kind,
    /// The words the tag was read from.
    pub text: String,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Tagged {
    pub tags: Vec<Tag>,
    /// (as written, read as)
    pub corrections: Vec<(String, String)>,
}

/// The phrase tables, built once per catalog.
pub(crate) struct Lexicon {
    phrases: HashMap<String, Vec<(Vec<String>, Kind)>>,
    /// Supported versions per taskserv, to tell `postgres 17 database` from `redis 3 nodes`.
    versions: HashMap<String, Vec<String>>,
    plans: HashMap<String, (String, String)>,
    typo_targets: Vec<(String, Kind)>,
}

const CUE_WORDS: &[(&str, Cue)] = &[
    ("cluster", Cue::Cluster),
    ("clusters", Cue::Cluster),
    ("stack", Cue::Stack),
    ("stacks", Cue::Stack),
    ("farm", Cue::Farm),
    ("fleet", Cue::Farm),
    ("pool", Cue::Farm),
    ("ha", Cue::Ha),
    ("highly available", Cue::Ha),
    ("high availability", Cue::Ha),
    ("high-availability", Cue::Ha),
    ("fault tolerant", Cue::Ha),
    ("fault-tolerant", Cue::Ha),
    ("redundant", Cue::Ha),
    ("replicated", Cue::Replicated),
    ("replication", Cue::Replicated),
    ("primary / replica", Cue::Replicated),
    ("primary + replica", Cue::Replicated),
    ("primary and replica", Cue::Replicated),
    ("primary and a replica", Cue::Replicated),
    ("primary-replica", Cue::Replicated),
    ("primary / standby", Cue::Replicated),
    ("primary and standby", Cue::Replicated),
    ("master / replica", Cue::Replicated),
    ("spread", Cue::Spread),
    ("across", Cue::Spread),
    ("split", Cue::Spread),
    ("distributed", Cue::Spread),
    ("evenly", Cue::Spread),
    ("each zone", Cue::Spread),
    ("both zones", Cue::Spread),
    ("all zones", Cue::Spread),
    ("every zone", Cue::Spread),
    ("different zones", Cue::Spread),
    ("multiple zones", Cue::Spread),
    ("two zones", Cue::Spread),
    ("each", Cue::All),
    ("all", Cue::All),
    ("every", Cue::All),
    ("everything", Cue::All),
    ("apiece", Cue::All),
    ("all of them", Cue::All),
    ("each of them", Cue::All),
    ("mirror", Cue::Mirror),
    ("mirrored", Cue::Mirror),
    ("duplicate", Cue::Mirror),
    ("the same", Cue::Mirror),
];

const COUNT_PHRASES: &[(&str, u32, CountHow)] = &[
    ("a pair of", 2, CountHow::Number),
    ("a couple of", 2, CountHow::Number),
    ("a couple", 2, CountHow::Number),
    ("couple of", 2, CountHow::Number),
    ("a dozen", 12, CountHow::Number),
    ("half a dozen", 6, CountHow::Number),
    ("a few", 3, CountHow::Vague),
    ("a handful of", 3, CountHow::Vague),
    ("several", 3, CountHow::Vague),
];

const CORES_WORDS: &[(&str, u32)] = &[
    ("single-core", 1),
    ("dual-core", 2),
    ("quad-core", 4),
    ("hexa-core", 6),
    ("octa-core", 8),
];

fn words_of(phrase: &str) -> Vec<String> {
    super::lexer::lex(phrase)
        .into_iter()
        .map(|t| match t {
            Tok::Word(w) => w,
            Tok::Punct(c) => c.to_string(),
        })
        .collect()
}

impl Lexicon {
    pub(crate) fn new(catalog: &Catalog, places: &Gazetteer) -> Lexicon {
        let mut lx = Lexicon {
            phrases: HashMap::new(),
            versions: catalog
                .taskservs
                .iter()
                .map(|(n, t)| (n.clone(), t.versions.clone()))
                .collect(),
            plans: HashMap::new(),
            typo_targets: Vec::new(),
        };
        let service = |name: &str, stand_in: Option<&str>| Kind::Service {
            name: name.to_owned(),
            version: None,
            stand_in: stand_in.map(str::to_owned),
        };
        for (i, p) in places.places() {
            lx.add(&p.name, Kind::Place(i));
        }
        for name in catalog.taskservs.keys() {
            lx.add(name, service(name, None));
        }
        for (alias, name) in vocab::SERVICE_ALIASES {
            lx.add(alias, service(name, None));
        }
        for (alias, name) in vocab::SERVICE_STAND_INS {
            lx.add(alias, service(name, Some(alias)));
        }
        for name in vocab::NOT_IN_CATALOG {
            lx.add(name, Kind::Unknown((*name).to_owned()));
        }
        for (word, role, head) in vocab::ROLE_WORDS {
            lx.add(
                word,
                Kind::Role {
                    role: *role,
                    head: *head,
                },
            );
        }
        for word in vocab::GENERIC_NOUNS {
            lx.add(word, Kind::Generic);
        }
        lx.add("pair", Kind::Pair);
        lx.add("ones", Kind::Generic);
        for name in catalog.providers.keys() {
            lx.add(name, Kind::Provider(name.clone()));
        }
        for (phrase, name) in vocab::PROVIDER_PHRASES {
            lx.add(phrase, Kind::Provider((*name).to_owned()));
        }
        for (word, env) in vocab::ENV_WORDS {
            lx.add(word, Kind::Env(*env));
        }
        for (word, tier) in vocab::SIZE_WORDS {
            lx.add(word, Kind::SizeWord(*tier));
        }
        for (word, cue) in CUE_WORDS {
            lx.add(word, Kind::Cue(*cue));
        }
        for (phrase, n, how) in COUNT_PHRASES {
            lx.add(phrase, Kind::Count { n: *n, how: *how });
        }
        for w in ["arm", "arm64", "aarch64", "graviton", "ampere"] {
            lx.add(w, Kind::Arm);
        }
        lx.add("dedicated", Kind::Dedicated);
        for w in ["cheap", "cheapest", "budget", "inexpensive", "low-cost"] {
            lx.add(w, Kind::Cheap);
        }
        for (provider, p) in &catalog.providers {
            for plan in p.plans.keys() {
                if plan.bytes().any(|b| b.is_ascii_digit() || b == b'.') {
                    lx.plans
                        .insert(plan.to_lowercase(), (plan.clone(), provider.clone()));
                }
            }
        }
        for list in lx.phrases.values() {
            for (words, kind) in list {
                let wanted = matches!(
                    kind,
                    Kind::Service { .. } | Kind::Provider(_) | Kind::Role { .. } | Kind::Place(_)
                );
                if wanted && words.len() == 1 && words[0].len() >= 5 {
                    lx.typo_targets.push((words[0].clone(), kind.clone()));
                }
            }
        }
        lx.typo_targets.sort_by(|a, b| a.0.cmp(&b.0));
        for list in lx.phrases.values_mut() {
            list.sort_by_key(|(w, _)| std::cmp::Reverse(w.len()));
        }
        lx
    }

    /// Adds a phrase; the first meaning given for a phrase wins.
    fn add(&mut self, phrase: &str, kind: Kind) {
        let words = words_of(phrase);
        let Some(first) = words.first().cloned() else {
            return;
        };
        let list = self.phrases.entry(first).or_default();
        if !list.iter().any(|(w, _)| *w == words) {
            list.push((words, kind));
        }
    }

    /// The longest phrase starting at `i`: its meaning and length in words.
    fn phrase_at(&self, words: &[String], i: usize) -> Option<(Kind, usize)> {
        let list = self.phrases.get(words.get(i)?)?;
        list.iter()
            .find(|(w, _)| words.get(i..i + w.len()) == Some(w.as_slice()))
            .map(|(w, k)| (k.clone(), w.len()))
    }

    fn typo(&self, word: &str) -> Option<(String, Kind)> {
        let len = word.chars().count();
        if len < 5 || vocab::PLAIN_WORDS.contains(&word) || word.bytes().any(|b| b.is_ascii_digit())
        {
            return None;
        }
        let limit = if len >= 8 { 2 } else { 1 };
        self.typo_targets
            .iter()
            .filter(|(t, _)| t.chars().next() == word.chars().next())
            .map(|(t, k)| (strsim::damerau_levenshtein(word, t), t, k))
            .filter(|(d, _, _)| *d <= limit)
            .min_by_key(|(d, t, _)| (*d, (*t).clone()))
            .map(|(_, t, k)| (t.clone(), k.clone()))
    }

    /// `no database`, `without redis`, `not prod`: the negated word is dropped.
    fn negate(tags: &mut [Tag]) {
        for i in 1..tags.len() {
            let negation = matches!(&tags[i - 1].kind, Kind::Word(w) if matches!(w.as_str(), "no" | "without" | "not" | "except"));
            let droppable = matches!(
                tags[i].kind,
                Kind::Service { .. }
                    | Kind::Role { .. }
                    | Kind::Generic
                    | Kind::Env(_)
                    | Kind::Provider(_)
                    | Kind::Place(_)
                    | Kind::Unknown(_)
            );
            if negation && droppable {
                tags[i].kind = Kind::Word(format!("not-{}", tags[i].text));
            }
        }
    }

    pub(crate) fn tag(&self, toks: &[Tok]) -> Tagged {
        let words: Vec<String> = toks
            .iter()
            .map(|t| match t {
                Tok::Word(w) => w.clone(),
                Tok::Punct(c) => c.to_string(),
            })
            .collect();
        let mut out = Tagged::default();
        let mut i = 0;
        while i < words.len() {
            let (kind, used) = match &toks[i] {
                Tok::Punct(c) => (Kind::Punct(*c), 1),
                Tok::Word(w) => self.word_at(&words, i, w, &mut out.corrections),
            };
            let used = used.max(1);
            let text = words[i..(i + used).min(words.len())].join(" ");
            out.tags.push(Tag { kind, text });
            i += used;
        }
        Lexicon::negate(&mut out.tags);
        out
    }

    fn word_at(
        &self,
        words: &[String],
        i: usize,
        w: &str,
        corrections: &mut Vec<(String, String)>,
    ) -> (Kind, usize) {
        if let Some((user, domain)) = w.split_once('@')
            && !user.is_empty()
            && domain.contains('.')
        {
            return (Kind::Email(w.to_owned()), 1);
        }
        if let Some(found) = size_at(words, i) {
            return found;
        }
        if let Some((kind, used)) = self.phrase_at(words, i)
            && used > 1
        {
            // `the us east`: a longer place starting at the next word wins over `the us`.
            let longer = w == "the"
                && matches!(kind, Kind::Place(_))
                && self
                    .phrase_at(words, i + 1)
                    .is_some_and(|(k, n)| matches!(k, Kind::Place(_)) && n + 1 > used);
            if longer {
                return (Kind::Word(w.to_owned()), 1);
            }
            return self.with_version(words, i, kind, used);
        }
        if let Some(found) = count_at(words, i) {
            return found;
        }
        if let Some((name, provider)) = self.plans.get(w) {
            return (
                Kind::Plan {
                    name: name.clone(),
                    provider: provider.clone(),
                },
                1,
            );
        }
        if let Some((kind, used)) = self.phrase_at(words, i) {
            return self.with_version(words, i, kind, used);
        }
        // `calico-based`, `redis-backed`, `nginx-only`: the name before the hyphen.
        if let Some((stem, _)) = w.split_once('-')
            && let Some(list) = self.phrases.get(stem)
            && let Some((_, kind)) = list.iter().find(|(p, k)| {
                p.len() == 1 && matches!(k, Kind::Service { .. } | Kind::Provider(_))
            })
        {
            return (kind.clone(), 1);
        }
        if let Some((target, kind)) = self.typo(w) {
            corrections.push((w.to_owned(), target));
            return self.with_version(words, i, kind, 1);
        }
        (Kind::Word(w.to_owned()), 1)
    }

    /// A taskserv followed by a version (`postgres 16`, `k8s v1.31`) takes the version along.
    fn with_version(&self, words: &[String], i: usize, kind: Kind, used: usize) -> (Kind, usize) {
        let Kind::Service {
            name,
            version: None,
            stand_in,
        } = kind
        else {
            return (kind, used);
        };
        let next = words.get(i + used).map(String::as_str).unwrap_or("");
        let v = next.strip_prefix('v').unwrap_or(next);
        let looks_like_version = !v.is_empty()
            && v.bytes().all(|b| b.is_ascii_digit() || b == b'.')
            && v.bytes().next().is_some_and(|b| b.is_ascii_digit());
        let after = words.get(i + used + 1).map(String::as_str).unwrap_or("");
        let is_size = vocab::CORE_UNITS.contains(&after) || vocab::GB_UNITS.contains(&after);
        let is_count = vocab::GENERIC_NOUNS.contains(&after)
            || vocab::ROLE_WORDS.iter().any(|(r, _, _)| *r == after)
            || after == "x";
        let supported = self
            .versions
            .get(&name)
            .is_some_and(|vs| vs.iter().any(|x| x == v || x.starts_with(&format!("{v}."))));
        if looks_like_version && !is_size && (supported || !is_count) {
            return (
                Kind::Service {
                    name,
                    version: Some(v.to_owned()),
                    stand_in,
                },
                used + 1,
            );
        }
        (
            Kind::Service {
                name,
                version: None,
                stand_in,
            },
            used,
        )
    }
}

/// Splits `16gb` into (16, "gb"), `0.5gb` into (1, "gb"), `4-core` into (4, "core").
fn number_prefix(w: &str) -> Option<(u32, &str)> {
    let end = w
        .char_indices()
        .find(|(_, c)| !(c.is_ascii_digit() || *c == '.'))
        .map_or(w.len(), |(i, _)| i);
    if end == 0 || end == w.len() {
        return None;
    }
    let n: f64 = w[..end].parse().ok()?;
    if !n.is_finite() || n < 0.0 || n > f64::from(u32::MAX) {
        return None;
    }
    Some((n.ceil() as u32, w[end..].trim_start_matches('-')))
}

/// Whether the gigabytes at `j` are memory or disk, and how many following words say so.
fn memory_or_disk(words: &[String], j: usize, terabytes: bool) -> (bool, usize) {
    let mut k = j;
    if words.get(k).map(String::as_str) == Some("of") {
        k += 1;
    }
    match words.get(k).map(String::as_str) {
        Some(w) if vocab::MEMORY_WORDS.contains(&w) => (false, k + 1 - j),
        Some(w) if vocab::DISK_WORDS.contains(&w) => (true, k + 1 - j),
        _ => (terabytes, 0),
    }
}

fn size_of(n: u32, unit: &str, words: &[String], next: usize) -> Option<(Kind, usize)> {
    if vocab::CORE_UNITS.contains(&unit) {
        return Some((Kind::Cores(n), 0));
    }
    let gb = if vocab::GB_UNITS.contains(&unit) {
        n
    } else if vocab::TB_UNITS.contains(&unit) {
        n.saturating_mul(1024)
    } else if vocab::MB_UNITS.contains(&unit) {
        n.div_ceil(1024)
    } else {
        return None;
    };
    let (disk, extra) = memory_or_disk(words, next, vocab::TB_UNITS.contains(&unit));
    Some((
        if disk {
            Kind::Disk(gb)
        } else {
            Kind::Memory(gb)
        },
        extra,
    ))
}

/// Sizes: `4 cores`, `4c`, `4-core`, `quad-core`, `8GB`, `8 gigs of RAM`, `100 GB disk`, and
/// the key-value forms `cpu=4`, `RAM: 16GB`, `disk: 100gb`.
fn size_at(words: &[String], i: usize) -> Option<(Kind, usize)> {
    let w = words[i].as_str();
    let sep = matches!(words.get(i + 1).map(String::as_str), Some(":" | "="));
    if sep && let Some(value) = words.get(i + 2) {
        let n = vocab::number(value).or_else(|| number_prefix(value).map(|(n, _)| n));
        let gb = number_prefix(value)
            .and_then(|(n, unit)| size_of(n, unit, words, words.len()))
            .and_then(|(k, _)| match k {
                Kind::Memory(g) | Kind::Disk(g) => Some(g),
                _ => None,
            })
            .or(n);
        if (vocab::CORE_UNITS.contains(&w) && w != "c") || w == "vcpu" {
            return n.map(|n| (Kind::Cores(n), 3));
        }
        if vocab::MEMORY_WORDS.contains(&w) {
            return gb.map(|g| (Kind::Memory(g), 3));
        }
        if vocab::DISK_WORDS.contains(&w) {
            return gb.map(|g| (Kind::Disk(g), 3));
        }
    }
    if let Some((_, n)) = CORES_WORDS.iter().find(|(c, _)| *c == w) {
        return Some((Kind::Cores(*n), 1));
    }
    if let Some((n, unit)) = number_prefix(w) {
        return size_of(n, unit, words, i + 1).map(|(k, extra)| (k, 1 + extra));
    }
    let n = vocab::number(w)?;
    let unit = words.get(i + 1)?.as_str();
    if unit == "c" || unit == "g" {
        return None;
    }
    let (kind, extra) = size_of(n, unit, words, i + 2)?;
    let mut used = 2 + extra;
    if matches!(kind, Kind::Cores(_))
        && matches!(words.get(i + 2).map(String::as_str), Some("cores" | "core"))
    {
        used += 1;
    }
    Some((kind, used))
}

/// Counts: `a`, `3`, `three`, `2x`, `2 x`, `x4`, `3-node`, `twenty-five`.
fn count_at(words: &[String], i: usize) -> Option<(Kind, usize)> {
    let w = words[i].as_str();
    let count = |n, how| Kind::Count { n, how };
    match w {
        "a" | "an" => return Some((count(1, CountHow::Article), 1)),
        "another" => {
            let used = if words.get(i + 1).map(String::as_str) == Some("one") {
                2
            } else {
                1
            };
            return Some((Kind::Pronoun, used));
        }
        _ => {}
    }
    if let Some(n) = w.strip_suffix('x').and_then(vocab::number) {
        return Some((count(n, CountHow::Number), 1));
    }
    if let Some(n) = w.strip_prefix('x').and_then(vocab::number) {
        return Some((count(n, CountHow::Postfix), 1));
    }
    if let Some((n, noun)) = w.rsplit_once('-')
        && let Some(n) = vocab::number(n)
        && matches!(noun, "node" | "nodes" | "server" | "servers" | "machine")
    {
        return Some((count(n, CountHow::NodeAdj), 1));
    }
    let n = vocab::number(w)?;
    if words.get(i + 1).map(String::as_str) == Some("x") {
        return Some((count(n, CountHow::Number), 2));
    }
    Some((count(n, CountHow::Number), 1))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;
    use crate::lexer::lex;

    fn tags(text: &str) -> Vec<Kind> {
        let c = Catalog::embedded().unwrap();
        let g = Gazetteer::new(c);
        Lexicon::new(c, &g)
            .tag(&lex(text))
            .tags
            .into_iter()
            .map(|t| t.kind)
            .collect()
    }

    fn count(n: u32, how: CountHow) -> Kind {
        Kind::Count { n, how }
    }

    #[test]
    fn counts_in_many_spellings() {
        assert_eq!(tags("three")[0], count(3, CountHow::Number));
        assert_eq!(tags("2x")[0], count(2, CountHow::Number));
        assert_eq!(tags("2 × cpx21")[0], count(2, CountHow::Number));
        assert_eq!(tags("x4")[0], count(4, CountHow::Postfix));
        assert_eq!(tags("a pair of")[0], count(2, CountHow::Number));
        assert_eq!(tags("half a dozen")[0], count(6, CountHow::Number));
        assert_eq!(tags("twenty-five")[0], count(25, CountHow::Number));
        assert_eq!(tags("3-node")[0], count(3, CountHow::NodeAdj));
        assert_eq!(tags("a few")[0], count(3, CountHow::Vague));
        assert_eq!(tags("an")[0], count(1, CountHow::Article));
        assert_eq!(tags("another one"), [Kind::Pronoun]);
    }

    #[test]
    fn sizes_in_many_spellings() {
        assert_eq!(tags("4 cores 8GB"), [Kind::Cores(4), Kind::Memory(8)]);
        assert_eq!(tags("4c/8g")[0], Kind::Cores(4));
        assert_eq!(tags("4c/8g")[2], Kind::Memory(8));
        assert_eq!(tags("8 gigs of RAM"), [Kind::Memory(8)]);
        assert_eq!(tags("16 GB of memory"), [Kind::Memory(16)]);
        assert_eq!(tags("quad-core"), [Kind::Cores(4)]);
        assert_eq!(tags("8-core"), [Kind::Cores(8)]);
        assert_eq!(tags("two vCPUs"), [Kind::Cores(2)]);
        assert_eq!(tags("4 cpu cores"), [Kind::Cores(4)]);
        assert_eq!(tags("100 GB disk"), [Kind::Disk(100)]);
        assert_eq!(tags("1TB"), [Kind::Disk(1024)]);
        assert_eq!(tags("512MB"), [Kind::Memory(1)]);
        assert_eq!(tags("512 cores"), [Kind::Cores(512)]);
        assert_eq!(tags("cpu=4"), [Kind::Cores(4)]);
        assert_eq!(tags("RAM: 16GB"), [Kind::Memory(16)]);
        assert_eq!(tags("memory=8g"), [Kind::Memory(8)]);
        assert_eq!(tags("disk: 100"), [Kind::Disk(100)]);
    }

    #[test]
    fn taskservs_by_name_synonym_and_version() {
        let svc = |t: &str| match &tags(t)[0] {
            Kind::Service { name, version, .. } => (name.clone(), version.clone()),
            other => panic!("{t}: {other:?}"),
        };
        assert_eq!(svc("postgresql"), ("postgres".into(), None));
        assert_eq!(svc("pg 15"), ("postgres".into(), Some("15".into())));
        assert_eq!(svc("k8s v1.31"), ("kubernetes".into(), Some("1.31".into())));
        assert_eq!(svc("mongo"), ("mongodb".into(), None));
        assert_eq!(svc("reverse proxy"), ("nginx".into(), None));
        assert_eq!(svc("container registry"), ("registry".into(), None));
        assert_eq!(svc("redis 3 nodes"), ("redis".into(), None));
        assert_eq!(
            svc("postgres 17 database"),
            ("postgres".into(), Some("17".into()))
        );
        assert_eq!(
            svc("mysql 8.0 database"),
            ("mysql".into(), Some("8.0".into()))
        );
        assert_eq!(svc("postgres 16gb"), ("postgres".into(), None));
        assert_eq!(svc("ngnix"), ("nginx".into(), None));
        assert_eq!(svc("mariadb"), ("mariadb".into(), None));
        assert!(
            matches!(&tags("valkey")[0], Kind::Service { stand_in: Some(s), .. } if s == "valkey")
        );
        assert_eq!(tags("kafka"), [Kind::Unknown("kafka".into())]);
        assert_eq!(tags("no database")[1], Kind::Word("not-database".into()));
        assert_eq!(tags("without redis")[1], Kind::Word("not-redis".into()));
    }

    #[test]
    fn places_providers_roles_and_plans() {
        assert!(matches!(tags("New York")[..], [Kind::Place(_)]));
        assert!(matches!(tags("helsinky")[..], [Kind::Place(_)]));
        assert_eq!(tags("on my laptop")[1], Kind::Provider("local".into()));
        assert_eq!(tags("amazon")[0], Kind::Provider("aws".into()));
        assert_eq!(
            tags("load balancer")[0],
            Kind::Role {
                role: Role::Lb,
                head: true
            }
        );
        assert_eq!(
            tags("t3.medium")[0],
            Kind::Plan {
                name: "t3.medium".into(),
                provider: "aws".into()
            }
        );
        assert_eq!(
            tags("2xCPU-4GB")[0],
            Kind::Plan {
                name: "2xCPU-4GB".into(),
                provider: "upcloud".into()
            }
        );
        assert_eq!(tags("small")[0], Kind::SizeWord(1));
        assert_eq!(tags("production")[0], Kind::Env(Env::Prod));
        assert_eq!(tags("primary/replica")[0], Kind::Cue(Cue::Replicated));
        assert_eq!(tags("ops@shop.io")[0], Kind::Email("ops@shop.io".into()));
        assert_eq!(tags("spread across")[0], Kind::Cue(Cue::Spread));
        assert!(matches!(tags("in the US east region")[2], Kind::Place(_)));
        assert_eq!(
            tags("in the US east region")[3],
            Kind::Word("region".into())
        );
        assert!(matches!(&tags("calico-based")[0], Kind::Service { name, .. } if name == "calico"));
    }
}
