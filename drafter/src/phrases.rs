//! Noun phrases: where each group of servers starts and ends in the tags. A phrase is a noun
//! with its count and adjectives ("three web servers", "a postgres database", "2x t3.medium",
//! "another one", "a k8s ha cluster"); what follows it belongs to it up to the next phrase. The
//! passes here then merge phrases that describe one group ("on a cx22", "for a redis cache"),
//! drop headings ("3 servers: one for ..."), and split off taskservs for another kind of server.

use super::tagger::{CountHow, Cue, Kind, Tag};
use super::vocab::Role;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NpKind {
    Noun,
    Cluster,
    Pronoun,
    Mirror,
    /// A count with a taskserv or plan and no noun: "a redis", "2x t3.medium".
    Bare,
}

#[derive(Debug, Clone)]
pub(crate) struct Np {
    pub start: usize,
    pub head: usize,
    pub kind: NpKind,
    /// Tag indices that belong to the group (its own words, then what follows).
    pub tags: Vec<usize>,
}

pub(crate) const CONNECTORS: &[&str] = &[
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

pub(crate) fn is_noun(kind: &Kind) -> bool {
    matches!(kind, Kind::Generic | Kind::Pair | Kind::Role { .. })
}

/// Words that may stand between a count and its noun.
pub(crate) fn is_adjective(kind: &Kind) -> bool {
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

pub(crate) fn word(tags: &[Tag], i: usize) -> Option<&str> {
    match &tags.get(i)?.kind {
        Kind::Word(w) => Some(w),
        _ => None,
    }
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

/// The noun phrases of `tags`, after all passes.
pub(crate) fn phrases(tags: &[Tag]) -> Vec<Np> {
    let mut nps = noun_phrases(tags);
    dissolve_headers(tags, &mut nps);
    merge_cluster_sizes(tags, &mut nps);
    assign_regions(tags, &mut nps);
    split_trailing_services(tags, &mut nps);
    merge_placements(tags, &mut nps);
    merge_purposes(tags, &mut nps);
    nps
}
