//! Tags → groups of servers. A group is a noun phrase ("three web servers", "a postgres
//! database", "2x t3.medium", "another one", "a k8s ha cluster") plus what follows it up to the
//! next phrase ("... with nginx on hetzner in Helsinki"). What comes before the first phrase, and
//! clauses marked "all"/"each"/"everything", apply to every group.

use super::phrases::{CONNECTORS, Np, NpKind, is_noun, phrases, word};
use super::tagger::{CountHow, Cue, Kind, Tag, Tagged};
use super::vocab::{Env, Role};

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Svc {
    pub name: String,
    pub version: Option<String>,
    pub stand_in: Option<String>,
}

/// Where, on what and how big: everything but the taskservs.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Mods {
    pub providers: Vec<String>,
    /// Gazetteer indices, in text order.
    pub places: Vec<usize>,
    /// (plan, provider)
    pub plans: Vec<(String, String)>,
    pub cores: Option<u32>,
    pub memory: Option<u32>,
    pub disk: Option<u32>,
    pub size_word: Option<u8>,
    pub arm: bool,
    pub dedicated: bool,
    pub cheap: bool,
    pub spread: bool,
}

impl Mods {
    fn take(&mut self, kind: &Kind) {
        match kind {
            Kind::Provider(p) if !self.providers.contains(p) => self.providers.push(p.clone()),
            Kind::Place(i) if !self.places.contains(i) => self.places.push(*i),
            Kind::Plan { name, provider } => {
                let p = (name.clone(), provider.clone());
                if !self.plans.contains(&p) {
                    self.plans.push(p);
                }
            }
            Kind::Cores(n) => self.cores = Some(self.cores.map_or(*n, |c| c.max(*n))),
            Kind::Memory(n) => self.memory = Some(self.memory.map_or(*n, |c| c.max(*n))),
            Kind::Disk(n) => self.disk = Some(self.disk.map_or(*n, |c| c.max(*n))),
            Kind::SizeWord(t) => self.size_word = Some(*t),
            Kind::Arm => self.arm = true,
            Kind::Dedicated => self.dedicated = true,
            Kind::Cheap => self.cheap = true,
            Kind::Cue(Cue::Spread) => self.spread = true,
            _ => {}
        }
    }

    /// Whether any size was asked for.
    pub(crate) fn has_size(&self) -> bool {
        !self.plans.is_empty()
            || self.cores.is_some()
            || self.memory.is_some()
            || self.disk.is_some()
            || self.size_word.is_some()
            || self.arm
            || self.dedicated
            || self.cheap
    }

    /// Copies the size fields of `other` where this has none.
    pub(crate) fn inherit_size(&mut self, other: &Mods) {
        if !self.has_size() {
            self.plans = other.plans.clone();
            self.cores = other.cores;
            self.memory = other.memory;
            self.disk = other.disk;
            self.size_word = other.size_word;
            self.arm = other.arm;
            self.dedicated = other.dedicated;
            self.cheap = other.cheap;
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GroupKind {
    Servers,
    /// "a k8s cluster", "a web stack", "a build farm".
    Cluster,
    /// "another one", "one for redis": like the group before unless it says otherwise.
    Pronoun,
    /// "mirror them in Falkenstein": a copy of the group before, elsewhere.
    Mirror,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Group {
    pub kind: GroupKind,
    pub role: Option<Role>,
    pub count: Option<(u32, CountHow)>,
    /// The noun was "pair".
    pub pair: bool,
    pub services: Vec<Svc>,
    pub mods: Mods,
    pub ha: bool,
    pub replicated: bool,
    /// The words of the noun phrase, for messages.
    pub text: String,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Intent {
    pub groups: Vec<Group>,
    /// Modifiers for every group: before the first group, or in an "all"/"each" clause.
    pub global: Mods,
    /// Taskservs named before any group.
    pub loose: Vec<Svc>,
    pub envs: Vec<(Env, String)>,
    pub owner: Option<String>,
    pub workspace: Option<String>,
    pub ha: bool,
    pub replicated: bool,
    pub unknown: Vec<String>,
    pub corrections: Vec<(String, String)>,
    /// Places and providers in text order, for groups that name none.
    pub first_provider: Option<String>,
    pub first_place: Option<usize>,
}

impl Intent {
    /// Whether the text asked for anything that can become a server.
    pub(crate) fn is_empty(&self) -> bool {
        self.groups.is_empty() && self.loose.is_empty()
    }
}

/// Groups the tags of one intent.
pub(crate) fn group(tagged: &Tagged) -> Intent {
    let tags = &tagged.tags;
    let mut intent = Intent {
        corrections: tagged.corrections.clone(),
        ..Intent::default()
    };
    collect_global_facts(tags, &mut intent);
    let nps = phrases(tags);
    let claimed: Vec<usize> = nps.iter().flat_map(|n| n.tags.iter().copied()).collect();
    let preamble: Vec<usize> = (0..tags.len()).filter(|i| !claimed.contains(i)).collect();
    for &i in &preamble {
        intent.global.take(&tags[i].kind);
        if let Kind::Service {
            name,
            version,
            stand_in,
        } = &tags[i].kind
        {
            push_service(&mut intent.loose, name, version, stand_in);
        }
        match tags[i].kind {
            Kind::Cue(Cue::Ha) => intent.ha = true,
            Kind::Cue(Cue::Replicated) => intent.replicated = true,
            _ => {}
        }
    }
    if nps.is_empty() {
        if !intent.loose.is_empty()
            || tags
                .iter()
                .any(|t| matches!(t.kind, Kind::Plan { .. } | Kind::Generic))
        {
            let count = tags.iter().find_map(|t| match t.kind {
                Kind::Count { n, how } if how != CountHow::Article => Some((n, how)),
                _ => None,
            });
            intent.groups.push(Group {
                kind: GroupKind::Servers,
                role: None,
                count,
                pair: false,
                services: std::mem::take(&mut intent.loose),
                mods: std::mem::take(&mut intent.global),
                ha: intent.ha,
                replicated: intent.replicated,
                text: tags
                    .iter()
                    .map(|t| t.text.as_str())
                    .collect::<Vec<_>>()
                    .join(" "),
            });
        }
        return intent;
    }
    for np in &nps {
        let g = build_group(tags, np, &mut intent.global);
        // `3 masters, 6 workers, 8 cores 32gb workers`: a later phrase without a count that
        // names an earlier group's role and only sizes describes that group.
        // What else it says (a provider or place at the end of the text) applies to all.
        let describes = g.kind == GroupKind::Servers
            && g.count.is_none()
            && g.services.is_empty()
            && g.mods.has_size();
        if describes
            && let Some(earlier) = intent
                .groups
                .iter_mut()
                .find(|e| g.role.is_some() && e.role == g.role && !e.mods.has_size())
        {
            earlier.mods.inherit_size(&g.mods);
            for p in &g.mods.providers {
                intent.global.take(&Kind::Provider(p.clone()));
            }
            for &p in &g.mods.places {
                intent.global.take(&Kind::Place(p));
            }
            continue;
        }
        intent.groups.push(g);
    }
    intent
}

fn push_service(
    list: &mut Vec<Svc>,
    name: &str,
    version: &Option<String>,
    stand_in: &Option<String>,
) {
    if let Some(s) = list.iter_mut().find(|s| s.name == name) {
        if s.version.is_none() {
            s.version.clone_from(version);
        }
        return;
    }
    list.push(Svc {
        name: name.to_owned(),
        version: version.clone(),
        stand_in: stand_in.clone(),
    });
}

/// Environment, owner, workspace name, unknown software, first provider and place.
fn collect_global_facts(tags: &[Tag], intent: &mut Intent) {
    for (i, t) in tags.iter().enumerate() {
        match &t.kind {
            Kind::Env(e) => intent.envs.push((*e, t.text.clone())),
            Kind::Email(e) if intent.owner.is_none() => intent.owner = Some(e.clone()),
            Kind::Unknown(u) if !intent.unknown.contains(u) => intent.unknown.push(u.clone()),
            Kind::Provider(p) if intent.first_provider.is_none() => {
                intent.first_provider = Some(p.clone());
            }
            Kind::Plan { provider, .. } if intent.first_provider.is_none() => {
                intent.first_provider = Some(provider.clone());
            }
            Kind::Place(p) if intent.first_place.is_none() => intent.first_place = Some(*p),
            _ => {}
        }
        if intent.workspace.is_none() {
            intent.workspace = workspace_name(tags, i);
        }
    }
}

/// `workspace shop`, `project called shop`, `named shop`, `for the shop project`,
/// `for our shop`.
fn workspace_name(tags: &[Tag], i: usize) -> Option<String> {
    const KINDS: &[&str] = &[
        "project",
        "team",
        "app",
        "application",
        "site",
        "service",
        "product",
        "workspace",
    ];
    const OWNERS: &[&str] = &["the", "our", "my"];
    let plain = |w: &str| !CONNECTORS.contains(&w) && !OWNERS.contains(&w) && w.len() >= 2;
    let w = word(tags, i)?;
    if matches!(w, "workspace" | "project") {
        let mut j = i + 1;
        if matches!(word(tags, j), Some("called" | "named"))
            || matches!(tags.get(j).map(|t| &t.kind), Some(Kind::Punct(':' | '=')))
        {
            j += 1;
        }
        return word(tags, j).filter(|w| plain(w)).map(str::to_owned);
    }
    if matches!(w, "called" | "named") {
        return word(tags, i + 1).filter(|w| plain(w)).map(str::to_owned);
    }
    if w == "for" {
        let j = if word(tags, i + 1).is_some_and(|w| OWNERS.contains(&w)) {
            i + 2
        } else {
            i + 1
        };
        let name = word(tags, j).filter(|w| plain(w) && !KINDS.contains(w))?;
        if word(tags, j + 1).is_some_and(|k| KINDS.contains(&k)) {
            return Some(name.to_owned());
        }
        let next_is_noun = tags.get(j + 1).is_some_and(|t| is_noun(&t.kind));
        if matches!(word(tags, i + 1), Some("our" | "my")) && !next_is_noun {
            return Some(name.to_owned());
        }
    }
    None
}

/// Reads one group from its tags. Modifiers in an "all"/"each"/"everything" clause go to
/// `global` instead.
fn build_group(tags: &[Tag], np: &Np, global: &mut Mods) -> Group {
    let kind = match np.kind {
        NpKind::Noun | NpKind::Bare => GroupKind::Servers,
        NpKind::Cluster => GroupKind::Cluster,
        NpKind::Pronoun => GroupKind::Pronoun,
        NpKind::Mirror => GroupKind::Mirror,
    };
    let mut g = Group {
        kind,
        role: None,
        count: None,
        pair: false,
        services: Vec::new(),
        mods: Mods::default(),
        ha: false,
        replicated: false,
        text: (np.start..=np.head)
            .map(|i| tags[i].text.as_str())
            .collect::<Vec<_>>()
            .join(" "),
    };
    let all_clauses = clauses_with_all(tags, &np.tags);
    // `staging cluster for the web shop:` names its template after the noun.
    if np.kind == NpKind::Cluster {
        g.role = np
            .tags
            .iter()
            .take_while(|&&i| !matches!(tags[i].kind, Kind::Punct(':' | ',' | ';' | '.')))
            .find_map(|&i| match tags[i].kind {
                Kind::Role { role, .. } => Some(role),
                _ => None,
            });
    }
    let mut after_of = false;
    for &i in &np.tags {
        let own = (np.start..=np.head).contains(&i);
        let k = &tags[i].kind;
        match k {
            Kind::Role { role, .. } if own && np.kind != NpKind::Cluster => g.role = Some(*role),
            Kind::Pair if own => g.pair = true,
            Kind::Count { n, how } => {
                let better = match g.count {
                    None => true,
                    Some((_, CountHow::Article)) => *how != CountHow::Article,
                    Some(_) => *how == CountHow::NodeAdj,
                };
                let postfix_ok = own || *how == CountHow::Postfix || after_of;
                if better && postfix_ok && np.kind != NpKind::Pronoun {
                    g.count = Some((*n, *how));
                }
            }
            Kind::Service {
                name,
                version,
                stand_in,
            } => push_service(&mut g.services, name, version, stand_in),
            Kind::Cue(Cue::Ha) => g.ha = true,
            Kind::Cue(Cue::Replicated) => g.replicated = true,
            _ => {}
        }
        let near_head = i == np.head + 1
            || (i == np.head + 2 && matches!(tags[np.head + 1].kind, Kind::Word(_)));
        after_of = near_head && matches!(k, Kind::Word(w) if w == "of");
        if all_clauses.contains(&i) {
            global.take(k);
        } else {
            g.mods.take(k);
        }
    }
    if np.kind == NpKind::Pronoun {
        g.count = Some((1, CountHow::Number));
    }
    // `two small ones`: like the group before, in another number or size.
    // `and a pair in Amsterdam`: a bare count of servers refers to the group before.
    let bare_pair = g.pair
        && g.role.is_none()
        && g.services.is_empty()
        && (np.start..=np.head).all(|i| matches!(tags[i].kind, Kind::Count { .. } | Kind::Pair));
    if (tags[np.head].text == "ones" || bare_pair) && g.kind == GroupKind::Servers {
        g.kind = GroupKind::Pronoun;
    }
    g
}

/// Tag indices in a clause (between separators) that contains "all", "each" or "everything".
fn clauses_with_all(tags: &[Tag], indices: &[usize]) -> Vec<usize> {
    let mut out = Vec::new();
    let mut clause: Vec<usize> = Vec::new();
    let mut has_all = false;
    let mut flush = |clause: &mut Vec<usize>, has_all: &mut bool| {
        if *has_all {
            out.append(clause);
        }
        clause.clear();
        *has_all = false;
    };
    for &i in indices {
        if matches!(tags[i].kind, Kind::Punct(',' | ';' | '.')) {
            flush(&mut clause, &mut has_all);
            continue;
        }
        has_all |= matches!(tags[i].kind, Kind::Cue(Cue::All));
        clause.push(i);
    }
    flush(&mut clause, &mut has_all);
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::{lexer::lex, places::Gazetteer, tagger::Lexicon};
    use knowledge::Catalog;

    fn intent(text: &str) -> Intent {
        let c = Catalog::embedded().unwrap();
        let g = Gazetteer::new(c);
        group(&Lexicon::new(c, &g).tag(&lex(text)))
    }

    fn summary(text: &str) -> Vec<String> {
        intent(text)
            .groups
            .iter()
            .map(|g| {
                let svcs: Vec<&str> = g.services.iter().map(|s| s.name.as_str()).collect();
                format!(
                    "{:?} {:?} {} [{}]",
                    g.kind,
                    g.role,
                    g.count.map_or(0, |c| c.0),
                    svcs.join(",")
                )
            })
            .collect()
    }

    #[test]
    fn groups_split_at_noun_phrases() {
        assert_eq!(
            summary("two web servers with nginx and a postgres database in Helsinki"),
            [
                "Servers Some(Web) 2 [nginx]",
                "Servers Some(Db) 1 [postgres]"
            ]
        );
        assert_eq!(
            summary("a grafana + loki box in Copenhagen"),
            ["Servers None 1 [grafana,loki]"]
        );
        assert_eq!(
            summary("Spin up 2x t3.medium in us-east-1 running nginx"),
            ["Servers None 2 [nginx]"]
        );
        assert_eq!(
            summary("web servers x4 behind a load balancer"),
            ["Servers Some(Web) 4 []", "Servers Some(Lb) 1 []"]
        );
    }

    #[test]
    fn placements_purposes_and_headers_merge() {
        let text = "prod database: postgres on a ccx23 in nbg1, plus prometheus on a cx22";
        assert_eq!(
            summary(text),
            ["Servers None 1 []", "Servers None 1 [prometheus]"]
        );
        assert_eq!(intent(text).loose[0].name, "postgres");
        assert_eq!(
            summary("production web tier: 6 nginx servers on hetzner fsn1, cpx21"),
            ["Servers None 6 [nginx]"]
        );
        assert_eq!(
            summary("a cheap box in Singapore for a redis cache"),
            ["Servers None 1 [redis]"]
        );
        assert_eq!(
            summary("3 servers: one for nginx, one for postgres, one for redis"),
            [
                "Pronoun None 1 [nginx]",
                "Pronoun None 1 [postgres]",
                "Pronoun None 1 [redis]"
            ]
        );
    }

    #[test]
    fn clusters_pronouns_and_global_clauses() {
        assert_eq!(
            summary("a 5 node k8s cluster in amsterdam"),
            ["Cluster None 5 [kubernetes]"]
        );
        assert_eq!(
            summary("a web server in New York and another one in San Jose"),
            ["Servers Some(Web) 1 []", "Pronoun None 1 []"]
        );
        let i = intent("3 control planes and 2 workers, 4 cores 8gb each");
        assert_eq!(i.global.cores, Some(4));
        assert_eq!(i.groups[1].mods.cores, None);
        let i = intent("3x cx22 web nodes + 1x cx42 db in hel1, staging, workspace shop");
        assert_eq!(i.workspace.as_deref(), Some("shop"));
        assert_eq!(i.groups[0].mods.plans[0].0, "cx22");
        assert_eq!(i.groups[1].mods.plans[0].0, "cx42");
        assert_eq!(
            intent("For the analytics project, a db")
                .workspace
                .as_deref(),
            Some("analytics")
        );
    }
}
