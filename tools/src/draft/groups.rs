//! Tags → groups of servers. A group is a noun phrase ("three web servers", "a postgres
//! database", "2x t3.medium", "another one", "a k8s ha cluster") plus what follows it up to the
//! next phrase ("... with nginx on hetzner in Helsinki"). What comes before the first phrase, and
//! clauses marked "all"/"each"/"everything", apply to every group.

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NpKind {
    Noun,
    Cluster,
    Pronoun,
    Mirror,
    /// A count with a taskserv or plan and no noun: "a redis", "2x t3.medium".
    Bare,
}

#[derive(Debug, Clone)]
struct Np {
    start: usize,
    head: usize,
    kind: NpKind,
    /// Tag indices that belong to the group (its own words, then what follows).
    tags: Vec<usize>,
}

const CONNECTORS: &[&str] = &[
    "and",
    "with",
    "plus",
    "behind",
    "in",
    "on",
    "for",
    "of",
    "to",
    "at",
    "running",
    "runs",
    "run",
    "from",
    "into",
    "onto",
    "using",
    "front",
    "as",
    "also",
    "then",
    "but",
    "or",
    "that",
    "which",
    "where",
    "while",
    "me",
    "us",
    "i",
    "we",
    "need",
    "want",
    "give",
    "get",
    "put",
    "create",
    "deploy",
    "launch",
    "provision",
    "spin",
    "up",
    "set",
    "add",
    "make",
    "like",
    "please",
    "could",
    "would",
    "you",
    "them",
    "it",
    "have",
];

fn is_connector(kind: &Kind) -> bool {
    matches!(kind, Kind::Word(w) if CONNECTORS.contains(&w.as_str()))
}

fn is_head_noun(kind: &Kind) -> bool {
    matches!(
        kind,
        Kind::Generic | Kind::Pair | Kind::Role { head: true, .. }
    )
}

fn is_noun(kind: &Kind) -> bool {
    matches!(kind, Kind::Generic | Kind::Pair | Kind::Role { .. })
}

/// Words that may stand between a count and its noun.
fn is_adjective(kind: &Kind) -> bool {
    matches!(
        kind,
        Kind::Service { .. }
            | Kind::Role { .. }
            | Kind::SizeWord(_)
            | Kind::Cores(_)
            | Kind::Memory(_)
            | Kind::Disk(_)
            | Kind::Plan { .. }
            | Kind::Arm
            | Kind::Dedicated
            | Kind::Cheap
            | Kind::Provider(_)
            | Kind::Env(_)
            | Kind::Cue(Cue::Ha | Cue::Replicated)
            | Kind::Count {
                how: CountHow::NodeAdj,
                ..
            }
    )
}

fn is_strong_separator(kind: &Kind) -> bool {
    matches!(kind, Kind::Punct(',' | ';' | '.' | '+' | '&'))
        || matches!(kind, Kind::Word(w) if w == "plus" || w == "also")
}

fn is_cluster_noun(kind: &Kind) -> bool {
    matches!(kind, Kind::Cue(Cue::Cluster | Cue::Stack | Cue::Farm))
}

/// Groups the tags of one intent.
pub(crate) fn group(tagged: &Tagged) -> Intent {
    let tags = &tagged.tags;
    let mut intent = Intent {
        corrections: tagged.corrections.clone(),
        ..Intent::default()
    };
    collect_global_facts(tags, &mut intent);
    let mut nps = noun_phrases(tags);
    dissolve_headers(tags, &mut nps);
    merge_cluster_sizes(tags, &mut nps);
    assign_regions(tags, &mut nps);
    split_trailing_services(tags, &mut nps);
    merge_placements(tags, &mut nps);
    merge_purposes(tags, &mut nps);
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

fn word(tags: &[Tag], i: usize) -> Option<&str> {
    match &tags.get(i)?.kind {
        Kind::Word(w) => Some(w),
        _ => None,
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

/// Finds the noun phrases, left to right, without overlaps.
fn noun_phrases(tags: &[Tag]) -> Vec<Np> {
    let mut heads: Vec<(usize, NpKind)> = Vec::new();
    for (i, t) in tags.iter().enumerate() {
        let next = tags.get(i + 1).map(|t| &t.kind);
        match &t.kind {
            k if is_head_noun(k) => {
                if next.is_some_and(is_noun) || leads_to_cluster(tags, i) {
                    continue;
                }
                // `host a git server`: a noun is not followed by an article; this is a verb.
                let verb = matches!(
                    next,
                    Some(Kind::Count {
                        how: CountHow::Article | CountHow::Number,
                        ..
                    })
                ) && (i == 0 || !is_adjective(&tags[i - 1].kind));
                if verb {
                    continue;
                }
                heads.push((i, NpKind::Noun));
            }
            // `2x web (nginx)`: a role word right after a count names the servers.
            Kind::Role { head: false, .. }
                if i > 0
                    && matches!(tags[i - 1].kind, Kind::Count { .. })
                    && !next.is_some_and(|k| is_noun(k) || is_cluster_noun(k)) =>
            {
                heads.push((i, NpKind::Noun));
            }
            k if is_cluster_noun(k) => heads.push((i, NpKind::Cluster)),
            Kind::Pronoun => heads.push((i, NpKind::Pronoun)),
            Kind::Count { n: 1, .. } if t.text == "one" => {
                let pronoun = match next {
                    None | Some(Kind::Punct(_)) => true,
                    Some(Kind::Word(w)) => matches!(
                        w.as_str(),
                        "for" | "in" | "with" | "running" | "on" | "at" | "that" | "which"
                    ),
                    _ => false,
                };
                if pronoun {
                    heads.push((i, NpKind::Pronoun));
                }
            }
            Kind::Cue(Cue::Mirror) => heads.push((i, NpKind::Mirror)),
            // `haproxy in front of 3 nginx servers`: a server of its own.
            Kind::Service { .. }
                if heads.is_empty()
                    && (1..=3).all(|d| word(tags, i + d).is_some())
                    && matches!(
                        (word(tags, i + 1), word(tags, i + 2), word(tags, i + 3)),
                        (Some("in"), Some("front"), Some("of"))
                    )
                    && matches!(tags.get(i + 4).map(|t| &t.kind), Some(Kind::Count { .. })) =>
            {
                heads.push((i, NpKind::Bare));
            }
            _ => {}
        }
    }
    let mut nps: Vec<Np> = Vec::new();
    let mut floor = 0;
    for (head, kind) in heads {
        let start = match kind {
            NpKind::Noun | NpKind::Cluster => extend_left(tags, head, floor),
            _ => head,
        };
        nps.push(Np {
            start,
            head,
            kind,
            tags: (start..=head).collect(),
        });
        floor = head + 1;
    }
    // A count with taskservs or a plan and no noun: "a redis", "2x t3.medium".
    let inside = |nps: &[Np], i: usize| nps.iter().any(|n| n.start <= i && i <= n.head);
    let mut bare = Vec::new();
    for (i, t) in tags.iter().enumerate() {
        let Kind::Count { how, .. } = t.kind else {
            continue;
        };
        if how == CountHow::Postfix || inside(&nps, i) {
            continue;
        }
        let mut j = i + 1;
        let mut last = None;
        while let Some(t) = tags.get(j) {
            if inside(&nps, j) {
                last = None;
                break;
            }
            if matches!(t.kind, Kind::Service { .. } | Kind::Plan { .. }) {
                last = Some(j);
            } else if !(is_adjective(&t.kind) || is_list_joint(tags, j)) {
                break;
            }
            j += 1;
        }
        if let Some(head) = last {
            bare.push(Np {
                start: i,
                head,
                kind: NpKind::Bare,
                tags: (i..=head).collect(),
            });
        }
    }
    nps.extend(bare);
    nps.sort_by_key(|n| n.start);
    nps
}

/// `5 node k8s cluster`: the noun counts the cluster's servers and is not a group of its own.
fn leads_to_cluster(tags: &[Tag], i: usize) -> bool {
    let mut j = i + 1;
    while let Some(t) = tags.get(j) {
        if is_cluster_noun(&t.kind) {
            return true;
        }
        if !is_adjective(&t.kind) {
            return false;
        }
        j += 1;
    }
    false
}

/// `grafana + loki box`, `nginx and redis servers`: joins inside a list of taskservs.
fn is_list_joint(tags: &[Tag], j: usize) -> bool {
    let joint = matches!(tags[j].kind, Kind::Punct('+' | '&' | '/' | ','))
        || matches!(&tags[j].kind, Kind::Word(w) if w == "and");
    let svc = |k: Option<&Tag>| k.is_some_and(|t| matches!(t.kind, Kind::Service { .. }));
    let sizes = |k: Option<&Tag>| {
        k.is_some_and(|t| matches!(t.kind, Kind::Cores(_) | Kind::Memory(_) | Kind::Disk(_)))
    };
    joint
        && ((svc(j.checked_sub(1).and_then(|p| tags.get(p))) && svc(tags.get(j + 1)))
            || (sizes(j.checked_sub(1).and_then(|p| tags.get(p))) && sizes(tags.get(j + 1))))
}

/// The first word of the noun phrase whose noun is at `head`.
fn extend_left(tags: &[Tag], head: usize, floor: usize) -> usize {
    let mut start = head;
    let mut j = head;
    while j > floor {
        let k = &tags[j - 1].kind;
        if let Kind::Count { how, .. } = k {
            start = j - 1;
            // `a 3-node cluster`: the article belongs too.
            if *how == CountHow::NodeAdj
                && j >= 2
                && j - 2 >= floor
                && matches!(
                    tags[j - 2].kind,
                    Kind::Count {
                        how: CountHow::Article,
                        ..
                    }
                )
            {
                start = j - 2;
            }
            break;
        }
        if is_adjective(k) || is_list_joint(tags, j - 1) || matches!(k, Kind::Generic) {
            j -= 1;
            start = j;
            continue;
        }
        // Plain words between a count and its noun: "a separate cache server".
        if let Kind::Word(_) = k
            && !is_connector(k)
        {
            let count_at = (j.saturating_sub(3).max(floor)..j - 1)
                .rev()
                .find(|&c| matches!(tags[c].kind, Kind::Count { .. }));
            let plain_between = count_at.is_some_and(|c| {
                (c + 1..j).all(|x| {
                    matches!(tags[x].kind, Kind::Word(_)) && !is_connector(&tags[x].kind)
                        || is_adjective(&tags[x].kind)
                })
            });
            if let Some(c) = count_at
                && plain_between
            {
                start = c;
            }
        }
        break;
    }
    start
}

/// Gives every tag after a phrase to that phrase, up to the next one. When the next phrase is
/// a placement ("on a cx22") preceded by its own taskservs after a separator ("..., plus
/// prometheus on a cx22"), those taskservs go with it.
fn assign_regions(tags: &[Tag], nps: &mut [Np]) {
    for k in 0..nps.len() {
        let from = nps[k].head + 1;
        let to = nps.get(k + 1).map_or(tags.len(), |n| n.start);
        let mut split = to;
        if k + 1 < nps.len()
            && is_placement(tags, &nps[k + 1])
            && let Some(sep) = (from..to)
                .rev()
                .find(|&i| is_strong_separator(&tags[i].kind))
            && (sep + 1..to).any(|i| matches!(tags[i].kind, Kind::Service { .. }))
        {
            split = sep + 1;
        }
        nps[k].tags.extend(from..split);
        if split < to {
            let mut pre: Vec<usize> = (split..to).collect();
            pre.extend(nps[k + 1].tags.iter().copied());
            nps[k + 1].tags = pre;
        }
    }
}

/// `a postgres primary with a standby, and redis`: after ", and" or ", plus", a taskserv for
/// another kind of server than the phrase names starts a server of its own.
fn split_trailing_services(tags: &[Tag], nps: &mut Vec<Np>) {
    let mut k = 0;
    while k < nps.len() {
        let head_role = (nps[k].start..=nps[k].head)
            .rev()
            .find_map(|i| match tags[i].kind {
                Kind::Role { role, .. } => Some(role),
                _ => None,
            });
        let own_kinds: Vec<Role> = nps[k]
            .tags
            .iter()
            .filter_map(|&i| match &tags[i].kind {
                Kind::Service { name, .. } => Some(Role::of_taskserv(name)),
                _ => None,
            })
            .collect();
        let role = head_role.or_else(|| own_kinds.first().copied());
        let mut cut = None;
        if let Some(role) = role {
            let post: Vec<usize> = nps[k]
                .tags
                .iter()
                .copied()
                .filter(|&i| i > nps[k].head)
                .collect();
            for w in post.windows(3) {
                let joint = matches!(tags[w[0]].kind, Kind::Punct(',' | ';'))
                    && matches!(word(tags, w[1]), Some("and" | "plus" | "also"));
                if let Kind::Service { name, .. } = &tags[w[2]].kind {
                    let other = Role::of_taskserv(name);
                    if joint && other != Role::Node && !same_kind(role, other) {
                        cut = Some(w[2]);
                        break;
                    }
                }
            }
        }
        if let Some(at) = cut {
            let rest: Vec<usize> = nps[k].tags.iter().copied().filter(|&i| i >= at).collect();
            nps[k].tags.retain(|&i| i < at);
            nps.insert(
                k + 1,
                Np {
                    start: at,
                    head: at,
                    kind: NpKind::Bare,
                    tags: rest,
                },
            );
        }
        k += 1;
    }
}

fn same_kind(a: Role, b: Role) -> bool {
    let norm = |r: Role| match r {
        Role::Primary | Role::Replica => Role::Db,
        Role::App => Role::Web,
        other => other,
    };
    norm(a) == norm(b)
}

/// A phrase naming only a size or plan after "on"/"onto"/"using": `on a ccx23`, `on a 2xCPU-4GB
/// plan`, `on a 4-core box`.
fn is_placement(tags: &[Tag], np: &Np) -> bool {
    let mut b = np.start;
    while b > 0 && matches!(word(tags, b - 1), Some("my" | "this" | "our" | "the")) {
        b -= 1;
    }
    let before = b.checked_sub(1).and_then(|i| word(tags, i));
    if !matches!(before, Some("on" | "onto" | "using")) {
        return false;
    }
    (np.start..=np.head).all(|i| {
        matches!(
            tags[i].kind,
            Kind::Count { .. }
                | Kind::Generic
                | Kind::Plan { .. }
                | Kind::Provider(_)
                | Kind::Cores(_)
                | Kind::Memory(_)
                | Kind::Disk(_)
                | Kind::SizeWord(_)
                | Kind::Arm
                | Kind::Dedicated
                | Kind::Cheap
        )
    })
}

/// A placement without taskservs of its own describes the group before it.
fn merge_placements(tags: &[Tag], nps: &mut Vec<Np>) {
    let mut k = 1;
    while k < nps.len() {
        let own_services = nps[k]
            .tags
            .iter()
            .any(|&i| matches!(tags[i].kind, Kind::Service { .. }) && i < nps[k].start);
        if is_placement(tags, &nps[k]) && !own_services {
            let np = nps.remove(k);
            nps[k - 1].tags.extend(np.tags);
            continue;
        }
        k += 1;
    }
}

/// `a cheap box in Singapore for a redis cache`: the second phrase says what the first is for.
fn merge_purposes(tags: &[Tag], nps: &mut Vec<Np>) {
    let mut k = 1;
    while k < nps.len() {
        let after_for = nps[k]
            .start
            .checked_sub(1)
            .and_then(|i| word(tags, i))
            .is_some_and(|w| w == "for");
        let weak_count = (nps[k].start..=nps[k].head).all(|i| {
            !matches!(
                tags[i].kind,
                Kind::Count {
                    how: CountHow::Number | CountHow::Vague | CountHow::NodeAdj,
                    ..
                }
            )
        });
        let prev_has_services = nps[k - 1]
            .tags
            .iter()
            .any(|&i| matches!(tags[i].kind, Kind::Service { .. }));
        if after_for
            && weak_count
            && !prev_has_services
            && matches!(nps[k].kind, NpKind::Noun | NpKind::Bare)
            && nps[k - 1].kind == NpKind::Noun
        {
            let np = nps.remove(k);
            nps[k - 1].tags.extend(np.tags);
            continue;
        }
        k += 1;
    }
}

fn np_count(tags: &[Tag], np: &Np) -> Option<u32> {
    (np.start..=np.head).find_map(|i| match tags[i].kind {
        Kind::Count { n, how } if how != CountHow::Article => Some(n),
        Kind::Count { n, .. } => Some(n),
        _ => None,
    })
}

/// `a k3s cluster with 3 nodes`, `a redis cluster of 5 servers`: the plain noun phrase after a
/// cluster counts the cluster's servers.
fn merge_cluster_sizes(tags: &[Tag], nps: &mut Vec<Np>) {
    let mut k = 0;
    while k + 1 < nps.len() {
        let next = &nps[k + 1];
        let plain = (next.start..=next.head).all(|i| {
            matches!(
                tags[i].kind,
                Kind::Count { .. }
                    | Kind::Generic
                    | Kind::SizeWord(_)
                    | Kind::Cores(_)
                    | Kind::Memory(_)
            )
        }) && matches!(tags[next.head].kind, Kind::Generic);
        let joined = (nps[k].head + 1..next.start).all(|i| {
            matches!(word(tags, i), Some("with" | "of" | "and"))
                || matches!(tags[i].kind, Kind::Punct(','))
        });
        if nps[k].kind == NpKind::Cluster && next.kind == NpKind::Noun && plain && joined {
            let np = nps.remove(k + 1);
            let gap: Vec<usize> = (nps[k].head + 1..np.start).collect();
            nps[k].tags.extend(gap);
            nps[k].tags.extend(np.tags);
            nps[k].head = np.head;
            continue;
        }
        k += 1;
    }
}

/// `3 servers: one for nginx, one for postgres, one for redis`, `production web tier: 6 nginx
/// servers`, `2 servers in Helsinki, one with postgres and one with redis`: the first phrase
/// only announces the ones after it, so it is dropped and its modifiers apply to all.
fn dissolve_headers(tags: &[Tag], nps: &mut Vec<Np>) {
    let mut k = 0;
    while k + 1 < nps.len() {
        let gap = nps[k].head + 1..nps[k + 1].start;
        let colon = gap
            .clone()
            .any(|i| matches!(tags[i].kind, Kind::Punct(':')));
        let comma = gap
            .clone()
            .any(|i| matches!(tags[i].kind, Kind::Punct(',' | ':')));
        let only_ones = nps[k + 1..].iter().all(|n| n.kind == NpKind::Pronoun);
        let announced = np_count(tags, &nps[k]);
        let rest: Option<u32> = nps[k + 1..]
            .iter()
            .map(|n| np_count(tags, n).or(Some(1)))
            .sum();
        let bare_noun = nps[k].kind == NpKind::Noun
            && !(nps[k].start..=nps[k].head).any(|i| matches!(tags[i].kind, Kind::Service { .. }));
        let counted = (nps[k].start..=nps[k].head).any(|i| {
            matches!(
                tags[i].kind,
                Kind::Count {
                    how: CountHow::Number | CountHow::NodeAdj | CountHow::Vague,
                    ..
                }
            )
        });
        let announces = announced.is_some() && announced == rest && nps.len() - k > 2;
        // A heading: no count of its own.
        let heading = !counted;
        if bare_noun && ((colon && (announces || heading)) || (comma && only_ones && announces)) {
            // Its words are left unclaimed, so they apply to every group.
            nps.remove(k);
            continue;
        }
        k += 1;
    }
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
    use crate::draft::{lexer::lex, places::Gazetteer, tagger::Lexicon};
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
