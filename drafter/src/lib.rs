//! Intent text → a Provisioning config draft, with no MCP in it. Two ways:
//!
//! - the **built-in drafter** (this module and those it names below): English text → a config
//!   (Nickel source and the same value as JSON), deterministic, with every default it applied
//!   stated as an assumption and the values it would not guess returned as questions;
//! - a **model** ([`model::Model`]: the MCP client's own through sampling, implemented by the MCP
//!   crate, or an OpenAI-compatible endpoint, [`openai`]) drafting and repairing in a bounded
//!   loop ([`model::draft_with_model`]) against a validator the caller supplies
//!   ([`model::Check`]). Which model, if any, is chosen at the composition root and per request.
//!
//! The built-in drafter:
//!
//! ```text
//! text ─lexer─▶ words ─tagger─▶ counts, sizes, places, providers, taskservs, roles, cues
//!      ─phrases, groups─▶ groups ("three web servers ... in Helsinki")
//!      ─units─▶ sets of like servers (templates, replicas, role defaults)
//!      ─placement─▶ provider, zone, plan ─assemble─▶ config ─render─▶ Nickel + JSON
//! ```
//!
//! The vocabulary is the catalog's (provider, zone, city, plan and taskserv names) plus fixed
//! English in `vocab`; a zone added to a provider catalog is understood by its code, city and
//! country without code changes.
//!
//! # Defaults and questions
//!
//! A **question** is returned for a required, non-secret value the text gives no basis for, or
//! where the text contradicts itself or the catalog; the draft still carries a provisional value
//! (`Question::assumed`) so that it validates, and [`draft_with_answers`] replaces it:
//! - `provider`: no provider and no place named (assumed `sim`: nothing real is created);
//! - `zone`: a cloud provider named without a place (assumed a fixed home zone per provider);
//! - a group naming two providers, a place the chosen provider does not serve, a plan of
//!   another provider, a size no plan reaches, a taskserv the `local` provider cannot run, an
//!   unsupported version, two environments;
//! - `owner` for `prod` workspaces without an email in the text.
//!
//! Everything else is a default, stated as an **assumption**: the environment (`dev` unless
//! named), the provider chosen from a place (the one whose fitting plans cost least in total;
//! Helsinki → Hetzner, Frankfurt → UpCloud), the zone among equally good ones (first by name),
//! the plan (the cheapest x86 plan offered in the zone with at least the asked cores, memory and
//! disk, x86 unless ARM is named; without a size 2 cores and 4 GB, 8 GB for databases; on
//! `local` and `sim` the `small` plan, `medium` for databases and Kubernetes nodes),
//! the taskservs of a role named without software (web → nginx, database → postgres, cache →
//! redis, load balancer → haproxy), the taskservs a catalog entry requires, cluster sizes from
//! templates (3 control planes for `k8s-ha`), the workspace name, spellings read as a near
//! catalog name, and on a cloud server the image and versions the install scripts take (the
//! provider's default image unless its OS lacks a taskserv's scripts, then the first image
//! whose OS has them; the version that OS packages, see `images.rs`). A taskserv with no
//! install scripts on a cloud server is drafted with a **warning** that applying fails at it.
//!
//! Text that cannot be drafted at all (empty, over [`MAX_INPUT_BYTES`], nothing recognisable,
//! more than [`MAX_SERVERS`] servers) is a [`DraftError`].

mod assemble;
mod groups;
mod images;
mod lexer;
pub mod model;
pub mod openai;
mod phrases;
mod placement;
mod places;
mod render;
mod sizing;
mod tagger;
mod units;
mod vocab;

use std::collections::BTreeMap;

use knowledge::Catalog;
use serde::{Deserialize, Serialize};

/// The longest intent the built-in drafter reads, in bytes.
pub const MAX_INPUT_BYTES: usize = 4096;
/// The most servers one group of an intent may ask for.
pub const MAX_SERVERS_PER_GROUP: u32 = 100;
/// The most servers one draft may hold.
pub const MAX_SERVERS: u32 = 200;
/// The `drafter` of drafts made here.
pub const BUILT_IN: &str = "built-in";

/// Answers to earlier questions, by [`Question::field`] (a zone may be answered with a zone code
/// or a place name, a provider with its name).
pub type Answers = BTreeMap<String, String>;

/// A drafted config and how it came about.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Draft {
    /// A self-contained Nickel config that `provisioning validate` accepts.
    pub nickel: String,
    /// The same config as JSON (without the defaults the contracts fill in).
    pub value: serde_json::Value,
    /// Which drafter produced it: `built-in` here.
    pub drafter: String,
    /// Every default the drafter applied.
    pub assumptions: Vec<Assumption>,
    /// Values the drafter would not guess; the draft holds a provisional value for each.
    pub questions: Vec<Question>,
    /// Things in the text the draft could not honour.
    pub warnings: Vec<String>,
}

/// A default the drafter applied: `field` got `value` because `why`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assumption {
    pub field: String,
    pub value: String,
    pub why: String,
}

/// A value to ask the user for (through MCP elicitation, or returned to the model).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Question {
    /// The key to answer under in [`Answers`]: `provider`, `zone`, `owner`, `environment`, or
    /// scoped to a group of servers such as `db.plan`.
    pub field: String,
    pub question: String,
    /// Accepted answers; empty for free text (an owner).
    pub choices: Vec<String>,
    /// The provisional value in the draft until answered; empty when the draft holds none (an
    /// owner).
    pub assumed: String,
}

/// Text the drafter cannot turn into a config.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DraftError {
    #[error(
        "the intent is empty; describe what to provision, for example `two web servers with nginx on hetzner in Helsinki`"
    )]
    Empty,
    #[error(
        "the intent is {len} bytes, more than the {max} the built-in drafter reads; shorten it or draft it in parts"
    )]
    TooLong { len: usize, max: usize },
    #[error(
        "found nothing to provision in `{excerpt}`; name servers or software (`three web servers with nginx`, `a postgres database`), optionally with a provider, place, size and environment"
    )]
    NothingToProvision { excerpt: String },
    #[error(
        "{text} asks for {requested} servers; a draft holds at most {max}, and at most {per_group} in one group"
    )]
    TooManyServers {
        /// The group (in backticks) or the whole intent.
        text: String,
        requested: u64,
        max: u32,
        per_group: u32,
    },
}

/// Drafts a config from `text`.
pub fn draft(text: &str, catalog: &Catalog) -> Result<Draft, DraftError> {
    draft_with_answers(text, &Answers::new(), catalog)
}

/// Drafts a config from `text`, with answers to questions an earlier draft asked.
pub fn draft_with_answers(
    text: &str,
    answers: &Answers,
    catalog: &Catalog,
) -> Result<Draft, DraftError> {
    if text.len() > MAX_INPUT_BYTES {
        return Err(DraftError::TooLong {
            len: text.len(),
            max: MAX_INPUT_BYTES,
        });
    }
    if text.trim().is_empty() {
        return Err(DraftError::Empty);
    }
    let gazetteer = places::Gazetteer::new(catalog);
    let lexicon = tagger::Lexicon::new(catalog, &gazetteer);
    let tagged = lexicon.tag(&lexer::lex(text));
    let intent = groups::group(&tagged);
    if intent.is_empty() {
        return Err(DraftError::NothingToProvision {
            excerpt: excerpt(text),
        });
    }
    let ctx = Ctx {
        catalog,
        places: &gazetteer,
        answers,
    };
    let mut notes = Notes::default();
    let mut config = assemble::assemble(&intent, &ctx, &mut notes)?;
    images::fit(&mut config.servers, &ctx, &mut notes);
    // Say what this build cannot do with the draft, before anyone tries.
    for server in &config.servers {
        let Some(p) = ctx.catalog.provider(&server.provider) else {
            continue;
        };
        if !p.apply {
            notes.warn(format!(
                "provider `{}`: this build validates, plans and prices it but cannot apply it yet; \
                 `upcloud` and `hetzner` can",
                server.provider
            ));
        } else if !p.taskservs && !server.taskservs.is_empty() {
            notes.warn(format!(
                "provider `{}`: this build creates its servers but does not install taskservs on \
                 them yet; `upcloud`, `hetzner` and `aws` servers and `ssh` hosts get taskservs",
                server.provider
            ));
        }
    }
    let value = render::to_json(&config);
    let nickel = render::to_nickel(&config, &notes);
    Ok(Draft {
        nickel,
        value,
        drafter: BUILT_IN.to_owned(),
        assumptions: notes.assumptions,
        questions: notes.questions,
        warnings: notes.warnings,
    })
}

/// The first words of `text`, for messages.
fn excerpt(text: &str) -> String {
    let one_line: String = text
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .filter(|c| !c.is_control() && *c != '`')
        .collect();
    if one_line.chars().count() > 60 {
        format!("{}…", one_line.chars().take(60).collect::<String>())
    } else {
        one_line
    }
}

/// What every step reads.
pub(crate) struct Ctx<'a> {
    pub catalog: &'a Catalog,
    pub places: &'a places::Gazetteer,
    pub answers: &'a Answers,
}

/// What every step reports.
#[derive(Debug, Default)]
pub(crate) struct Notes {
    pub assumptions: Vec<Assumption>,
    pub questions: Vec<Question>,
    pub warnings: Vec<String>,
}

impl Notes {
    pub(crate) fn assume(&mut self, field: &str, value: &str, why: impl Into<String>) {
        let a = Assumption {
            field: field.to_owned(),
            value: value.to_owned(),
            why: why.into(),
        };
        if !self.assumptions.contains(&a) {
            self.assumptions.push(a);
        }
    }

    /// Asks once per field; a later question on the same field is dropped.
    pub(crate) fn ask(
        &mut self,
        field: &str,
        question: impl Into<String>,
        choices: Vec<String>,
        assumed: &str,
    ) {
        if self.questions.iter().any(|q| q.field == field) {
            return;
        }
        self.questions.push(Question {
            field: field.to_owned(),
            question: question.into(),
            choices,
            assumed: assumed.to_owned(),
        });
    }

    pub(crate) fn warn(&mut self, message: impl Into<String>) {
        let m = message.into();
        if !self.warnings.contains(&m) {
            self.warnings.push(m);
        }
    }
}

/// `a`, `b` and `c` in backticks.
pub(crate) fn quote_list<S: AsRef<str>>(items: &[S]) -> String {
    let q: Vec<String> = items.iter().map(|s| format!("`{}`", s.as_ref())).collect();
    match q.len() {
        0 => String::new(),
        1 => q[0].clone(),
        n => format!("{} and {}", q[..n - 1].join(", "), q[n - 1]),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    fn catalog() -> &'static Catalog {
        Catalog::embedded().unwrap()
    }

    /// (name, provider, zone, plan, taskservs) of every server.
    fn servers(d: &Draft) -> Vec<(String, String, String, String, String)> {
        let s = |v: &serde_json::Value| v.as_str().unwrap_or("").to_owned();
        d.value["servers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| {
                let ts: Vec<String> = x["taskservs"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|t| t.as_str().map_or_else(|| s(&t["name"]), str::to_owned))
                    .collect();
                (
                    s(&x["name"]),
                    s(&x["provider"]),
                    s(&x["zone"]),
                    s(&x["plan"]),
                    ts.join(","),
                )
            })
            .collect()
    }

    fn fields(d: &Draft) -> Vec<&str> {
        d.questions.iter().map(|q| q.field.as_str()).collect()
    }

    #[test]
    fn the_readme_intent() {
        let d = draft(
            "three web servers on Hetzner in Helsinki behind nginx, with a replicated postgres, for staging",
            catalog(),
        )
        .unwrap();
        assert_eq!(d.drafter, "built-in");
        let s = servers(&d);
        assert_eq!(s.len(), 5);
        assert_eq!(
            s[0],
            (
                "web-1".into(),
                "hetzner".into(),
                "hel1".into(),
                "cx22".into(),
                "nginx".into()
            )
        );
        assert_eq!(s[3].0, "db-primary");
        assert_eq!(s[4].0, "db-replica");
        assert_eq!(d.value["workspace"]["environment"], "staging");
        assert_eq!(d.value["clusters"][0]["template"], "postgresql");
        assert!(d.questions.is_empty());
        assert!(d.nickel.contains("template = \"postgresql\""));
        // Every default is stated.
        assert!(d.assumptions.iter().any(|a| a.field == "web.plan"));
        assert!(d.assumptions.iter().any(|a| a.field == "workspace"));
    }

    #[test]
    fn provider_from_place_is_an_assumption() {
        let d = draft("a postgres database in Frankfurt", catalog()).unwrap();
        assert_eq!(servers(&d)[0].1, "upcloud");
        assert_eq!(servers(&d)[0].2, "de-fra1");
        let a = d
            .assumptions
            .iter()
            .find(|a| a.field.ends_with("provider"))
            .unwrap();
        assert!(a.why.contains("aws") && a.why.contains("upcloud"), "{a:?}");
        let d = draft("a redis cache in Virginia on aws", catalog()).unwrap();
        assert_eq!(servers(&d)[0].2, "us-east-1");
    }

    #[test]
    fn requirements_are_added_and_stated() {
        let d = draft("a gitea server on upcloud in amsterdam", catalog()).unwrap();
        assert_eq!(servers(&d)[0].4, "postgres,gitea");
        assert!(
            d.assumptions
                .iter()
                .any(|a| a.value == "postgres" && a.why.contains("gitea"))
        );
        let d = draft("a kubernetes node on sim", catalog()).unwrap();
        assert_eq!(servers(&d)[0].4, "containerd,etcd,kubernetes");
    }

    #[test]
    fn versions_are_checked() {
        let d = draft("postgres 15 and redis 7 on sim", catalog()).unwrap();
        assert!(
            d.nickel
                .contains("{ name = \"postgres\", version = \"15\" }"),
            "{}",
            d.nickel
        );
        assert!(
            d.nickel.contains("{ name = \"redis\", version = \"7.4\" }"),
            "{}",
            d.nickel
        );
        let d = draft("postgres 9 on sim", catalog()).unwrap();
        assert_eq!(fields(&d), ["postgres.version"]);
        assert!(!d.nickel.contains("version ="));
    }

    #[test]
    fn questions_and_their_answers() {
        let d = draft("Put two web servers on hetzner", catalog()).unwrap();
        assert_eq!(fields(&d), ["zone"]);
        assert_eq!(d.questions[0].assumed, "fsn1");
        let answers = Answers::from([("zone".to_owned(), "nbg1".to_owned())]);
        let d = draft_with_answers("Put two web servers on hetzner", &answers, catalog()).unwrap();
        assert!(d.questions.is_empty());
        assert_eq!(servers(&d)[1].2, "nbg1");

        let d = draft("a redis server for production", catalog()).unwrap();
        assert_eq!(fields(&d), ["provider", "owner"]);
        let answers = Answers::from([
            ("provider".to_owned(), "amazon".to_owned()),
            ("zone".to_owned(), "Ireland".to_owned()),
            ("owner".to_owned(), "sre@example.com".to_owned()),
            ("environment".to_owned(), "staging".to_owned()),
        ]);
        let d = draft_with_answers("a redis server for production", &answers, catalog()).unwrap();
        assert!(d.questions.is_empty(), "{:?}", d.questions);
        assert_eq!(servers(&d)[0].1, "aws");
        assert_eq!(servers(&d)[0].2, "eu-west-1");
        // EC2 instances get taskservs too: nothing to warn about.
        assert!(
            !d.warnings.iter().any(|w| w.contains("this build")),
            "aws applies with taskservs: {:?}",
            d.warnings
        );
        let h = draft("a redis server on hetzner in Helsinki", catalog()).unwrap();
        assert!(
            !h.warnings.iter().any(|w| w.contains("this build")),
            "hetzner applies with taskservs: {:?}",
            h.warnings
        );
        assert_eq!(d.value["workspace"]["environment"], "staging");
        assert_eq!(d.value["workspace"]["owner"], "sre@example.com");
    }

    #[test]
    fn cloud_servers_get_an_image_and_versions_the_install_scripts_take() {
        // Hetzner's default image (Debian 13) has no taskserv scripts yet: the draft names the
        // first image that has, and the version its OS packages, saying so.
        let h = draft("a redis server on hetzner in Helsinki", catalog()).unwrap();
        let server = &h.value["servers"][0];
        assert_eq!(server["image"], "debian-12", "{server}");
        assert_eq!(server["taskservs"][0]["version"], "7.0", "{server}");
        assert!(h.nickel.contains("image = \"debian-12\""), "{}", h.nickel);
        assert!(
            h.assumptions
                .iter()
                .any(|a| a.field == "image" && a.why.contains("`redis`")),
            "{:?}",
            h.assumptions
        );
        // An asked version picks the image that packages it.
        let p = draft("a postgres 16 database on hetzner in Helsinki", catalog()).unwrap();
        assert_eq!(
            p.value["servers"][0]["image"], "ubuntu-24.04",
            "{}",
            p.value
        );
        assert_eq!(p.value["servers"][0]["taskservs"][0]["version"], "16");
        // UpCloud's default (Debian 12) takes nginx: no image, Debian's version.
        let u = draft("a web server on upcloud in frankfurt", catalog()).unwrap();
        assert!(u.value["servers"][0].get("image").is_none(), "{}", u.value);
        assert_eq!(u.value["servers"][0]["taskservs"][0]["version"], "1.22");
        // No scripts at all: drafted, with a warning that applying fails there.
        let k = draft("a gitea server on upcloud in amsterdam", catalog()).unwrap();
        assert!(
            k.warnings
                .iter()
                .any(|w| w.contains("no install scripts for `gitea`")),
            "{:?}",
            k.warnings
        );
        assert!(k.value["servers"][0].get("image").is_none(), "{}", k.value);
    }

    #[test]
    fn contradictions_and_impossible_sizes_ask() {
        let d = draft("a web server on aws and hetzner in Frankfurt", catalog()).unwrap();
        assert!(
            fields(&d).iter().any(|f| f.ends_with("provider")),
            "{:?}",
            d.questions
        );
        let d = draft("a db with 512 cores on hetzner in hel1", catalog()).unwrap();
        assert_eq!(fields(&d), ["db.plan"]);
        assert_eq!(d.questions[0].assumed, "cx52");
        assert!(d.warnings[0].contains("512 cores"), "{:?}", d.warnings);
        let d = draft("a redis cache on aws in Helsinki", catalog()).unwrap();
        assert_eq!(fields(&d), ["cache.zone"]);
        assert_eq!(servers(&d)[0].2, "eu-central-1");
        let d = draft("kubernetes on my laptop", catalog()).unwrap();
        assert_eq!(servers(&d)[0].1, "sim");
        assert!(
            d.warnings[0].contains("`local` provider cannot run"),
            "{:?}",
            d.warnings
        );
    }

    #[test]
    fn bad_input_is_a_clear_error() {
        assert_eq!(draft("", catalog()), Err(DraftError::Empty));
        let long = "a".repeat(MAX_INPUT_BYTES + 1);
        let e = draft(&long, catalog()).unwrap_err();
        assert!(e.to_string().contains("4097 bytes"), "{e}");
        let e = draft("lorem ipsum dolor sit amet", catalog()).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("found nothing to provision in `lorem ipsum"),
            "{e}"
        );
        let e = draft("101 web servers on sim", catalog()).unwrap_err();
        assert!(e.to_string().contains("101 servers"), "{e}");
        let e = draft(
            "60 web servers, 60 caches, 60 dbs and 60 workers on sim",
            catalog(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("240 servers"), "{e}");
    }

    #[test]
    fn hostile_text_stays_inside_strings() {
        let d = draft(
            "a redis for the \"}%{x} project named a\"b on sim, owner x%{y}@e.com",
            catalog(),
        )
        .unwrap();
        assert!(!d.nickel.contains("%{x}"), "{}", d.nickel);
        assert!(
            d.nickel.contains("owner = \"x\\%{y}@e.com\"") || !d.nickel.contains("owner"),
            "{}",
            d.nickel
        );
    }

    /// Inputs near the size limit built to stress the phrase passes finish quickly.
    #[test]
    fn long_inputs_are_handled() {
        let patterns = [
            "a redis ",
            "1 server ",
            "a ",
            "postgres ",
            "x4 web servers, ",
            "one for nginx, ",
            "in helsinki ",
            "helsinky ngnix postgress ",
            "3 servers: ",
        ];
        for p in patterns {
            let text = p.repeat(MAX_INPUT_BYTES / p.len());
            let started = std::time::Instant::now();
            let result = draft(&text, catalog());
            assert!(
                started.elapsed() < std::time::Duration::from_secs(20),
                "{p}: {:?}",
                started.elapsed()
            );
            if let Ok(d) = result {
                assert!(!d.value["servers"].as_array().unwrap().is_empty(), "{p}");
            }
        }
    }

    /// Deterministic pseudo-random word salad: drafting never panics, and a draft always has
    /// servers and a Nickel record.
    #[test]
    fn word_salad_never_panics() {
        let words = [
            "two",
            "a",
            "x4",
            "3-node",
            "web",
            "servers",
            "db",
            "postgres",
            "redis",
            "k8s",
            "cluster",
            "ha",
            "replicated",
            "replica",
            "primary",
            "workers",
            "control",
            "plane",
            "in",
            "on",
            "helsinki",
            "germany",
            "us",
            "east",
            "aws",
            "hetzner",
            "sim",
            "local",
            "my",
            "laptop",
            "4",
            "cores",
            "8gb",
            "512",
            "tb",
            "prod",
            "staging",
            "and",
            ",",
            ":",
            "one",
            "another",
            "mirror",
            "them",
            "for",
            "the",
            "shop",
            "project",
            "small",
            "huge",
            "cx22",
            "t3.medium",
            "sim-2",
            "spread",
            "across",
            "each",
            "everything",
            "(",
            ")",
            "+",
            "behind",
            "a",
            "load",
            "balancer",
            "stack",
            "farm",
            "of",
            "ones",
            "\"",
            "%{",
            "}",
            "owner",
            "x@y.io",
            "postgres",
            "99",
            "0",
            "zero",
            "pair",
            "dedicated",
            "arm",
        ];
        let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..800 {
            let mut text = String::new();
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            let n = 1 + (seed >> 59) as usize;
            for _ in 0..n {
                seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                text.push_str(words[(seed >> 33) as usize % words.len()]);
                text.push(' ');
            }
            match draft(&text, catalog()) {
                Ok(d) => {
                    assert!(!d.value["servers"].as_array().unwrap().is_empty(), "{text}");
                    assert!(d.nickel.trim_end().ends_with('}'), "{text}");
                }
                Err(e) => assert!(!e.to_string().is_empty()),
            }
        }
    }
}
