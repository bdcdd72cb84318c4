//! Units → provider, zones and plan. A provider comes from the text (named, implied by a plan
//! name or zone code, or named elsewhere in the text), else from the place (the provider whose
//! fitting plans cost least there), else it is asked. A zone comes from the place, else it is
//! asked. A plan comes from a plan name, a size, a size word or the role's default size.

use std::collections::BTreeMap;

use knowledge::Provider;

use super::groups::{Intent, Mods};
use super::places::{Level, display, nearest};
use super::sizing::{Need, cheapest, describe_plan, largest};
use super::units::Unit;
use super::vocab::{self, Role};
use super::{Ctx, Notes, quote_list};

/// Where the servers of one unit go.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Placed {
    pub provider: String,
    /// One zone per server.
    pub zones: Vec<String>,
    pub plan: String,
}

/// The zone a cloud provider gets when the text names no place (and a question is asked).
fn home_zone(provider: &Provider) -> String {
    let preferred = match provider.name.as_str() {
        "hetzner" => "fsn1",
        "upcloud" => "de-fra1",
        "aws" => "us-east-1",
        "sim" => "sim-1",
        _ => "",
    };
    if provider.zones.contains_key(preferred) {
        return preferred.to_owned();
    }
    provider.zones.keys().next().cloned().unwrap_or_default()
}

/// A provider named in an answer: its catalog name or an everyday one (`amazon`).
fn parse_provider(ctx: &Ctx, text: &str) -> Option<String> {
    let t = text.trim().to_lowercase();
    if ctx.catalog.provider(&t).is_some() {
        return Some(t);
    }
    vocab::PROVIDER_PHRASES
        .iter()
        .find(|(w, _)| *w == t)
        .map(|(_, p)| (*p).to_owned())
}

struct Choice {
    provider: Option<String>,
    places: Vec<usize>,
}

pub(crate) fn place_all(
    units: &[Unit],
    keys: &[String],
    taskservs: &[Vec<String>],
    intent: &Intent,
    ctx: &Ctx,
    notes: &mut Notes,
) -> Vec<Placed> {
    let mut choices: Vec<Choice> = units
        .iter()
        .zip(keys)
        .map(|(u, key)| choose_provider(u, key, intent, ctx, notes))
        .collect();
    choose_by_place(units, keys, &mut choices, ctx, notes);
    let unplaced: Vec<usize> = (0..units.len())
        .filter(|&k| choices[k].provider.is_none())
        .collect();
    if !unplaced.is_empty() {
        let names: Vec<String> = ctx.catalog.providers.keys().cloned().collect();
        let fallback = if ctx.catalog.provider("sim").is_some() {
            "sim".to_owned()
        } else {
            names.first().cloned().unwrap_or_default()
        };
        let answered = ctx
            .answers
            .get("provider")
            .and_then(|a| parse_provider(ctx, a));
        if let Some(bad) = ctx.answers.get("provider").filter(|_| answered.is_none()) {
            notes.warn(format!(
                "the answer `{bad}` for `provider` is not a provider; expected one of {}",
                quote_list(&names)
            ));
        }
        let provider = answered.clone().unwrap_or(fallback);
        if answered.is_none() {
            notes.ask(
                "provider",
                "Which provider should the servers run on? The text names no provider and no place.",
                names,
                &provider,
            );
        }
        for k in unplaced {
            choices[k].provider = Some(provider.clone());
        }
    }
    units
        .iter()
        .enumerate()
        .map(|(k, u)| place_unit(u, &keys[k], &choices[k], &taskservs[k], intent, ctx, notes))
        .collect()
}

fn choose_provider(u: &Unit, key: &str, intent: &Intent, ctx: &Ctx, notes: &mut Notes) -> Choice {
    let own_places = !u.mods.places.is_empty();
    let places = if own_places {
        u.mods.places.clone()
    } else if !intent.global.places.is_empty() {
        intent.global.places.clone()
    } else {
        intent.first_place.into_iter().collect()
    };
    let choice = |provider: Option<String>| Choice {
        provider,
        places: places.clone(),
    };
    let field = format!("{key}.provider");
    if let Some(a) = ctx.answers.get(&field) {
        match parse_provider(ctx, a) {
            Some(p) => return choice(Some(p)),
            None => notes.warn(format!("the answer `{a}` for `{field}` is not a provider")),
        }
    }
    if let Some(p) = conflicting(&u.mods.providers, &field, &format!("`{}`", u.text), notes) {
        return choice(Some(p));
    }
    if let Some((plan, p)) = u.mods.plans.first() {
        notes.assume(&field, p, format!("`{plan}` is a plan of {p}"));
        return choice(Some(p.clone()));
    }
    let code = u.mods.places.iter().find_map(|&i| {
        let place = ctx.places.get(i)?;
        (place.level == Level::Code).then(|| place.zones.first().map(|z| z.0.clone()))?
    });
    if let Some(p) = code {
        return choice(Some(p));
    }
    let inherited = conflicting(&intent.global.providers, "provider", "the text", notes)
        .or_else(|| intent.first_provider.clone())
        .or_else(|| intent.global.plans.first().map(|(_, p)| p.clone()));
    if let Some(p) = inherited {
        let serves = places.is_empty()
            || places.iter().any(|&i| {
                ctx.places
                    .get(i)
                    .is_some_and(|pl| pl.zones.iter().any(|z| z.0 == p))
            });
        if serves || !own_places {
            return choice(Some(p));
        }
    }
    choice(None)
}

/// The first of several providers, asking which one was meant.
fn conflicting(providers: &[String], field: &str, text: &str, notes: &mut Notes) -> Option<String> {
    let first = providers.first()?.clone();
    if providers.len() > 1 {
        notes.warn(format!(
            "{text} names several providers ({}) for the same servers; the draft uses `{first}`",
            quote_list(providers)
        ));
        notes.ask(
            field,
            format!(
                "{text} names {}; which one should these servers use?",
                quote_list(providers)
            ),
            providers.to_vec(),
            &first,
        );
    }
    Some(first)
}

/// Providers for units that only name a place: the one whose fitting plans cost least in total
/// for all units at that place.
fn choose_by_place(
    units: &[Unit],
    keys: &[String],
    choices: &mut [Choice],
    ctx: &Ctx,
    notes: &mut Notes,
) {
    let mut by_places: BTreeMap<Vec<usize>, Vec<usize>> = BTreeMap::new();
    for (k, c) in choices.iter().enumerate() {
        if c.provider.is_none() && !c.places.is_empty() {
            by_places.entry(c.places.clone()).or_default().push(k);
        }
    }
    for (places, members) in by_places {
        let serving: Vec<&String> = ctx
            .catalog
            .providers
            .keys()
            .filter(|p| {
                places.iter().all(|&i| {
                    ctx.places
                        .get(i)
                        .is_some_and(|pl| pl.zones.iter().any(|z| &z.0 == *p))
                })
            })
            .collect();
        let mut best: Option<(f64, &String)> = None;
        for p in &serving {
            let Some(provider) = ctx.catalog.provider(p) else {
                continue;
            };
            let mut total = 0.0;
            let mut ok = true;
            for &k in &members {
                let need = need_of(&units[k], &Mods::default(), provider).0;
                let zones = place_zones(ctx, &places, p);
                let price = zones
                    .iter()
                    .filter_map(|z| cheapest(provider, std::slice::from_ref(z), &need).map(|x| x.1))
                    .min_by(f64::total_cmp);
                match price {
                    Some(price) => total += price * f64::from(units[k].count),
                    None => ok = false,
                }
            }
            if ok && best.is_none_or(|(b, _)| total < b) {
                best = Some((total, p));
            }
        }
        let names: Vec<String> = places
            .iter()
            .filter_map(|&i| ctx.places.get(i).map(|p| display(&p.name)))
            .collect();
        let chosen = best
            .map(|(_, p)| p.clone())
            .or_else(|| serving.first().map(|p| (*p).clone()));
        let Some(chosen) = chosen else {
            continue;
        };
        let field = if members.len() == 1 {
            format!("{}.provider", keys[members[0]])
        } else {
            "provider".to_owned()
        };
        let why = if serving.len() > 1 {
            let offers: Vec<String> = serving
                .iter()
                .map(|p| format!("{p} ({})", place_zones(ctx, &places, p).join(", ")))
                .collect();
            format!(
                "{} is served by {}; {chosen} has the cheapest plans that fit",
                quote_list(&names),
                offers.join(", ")
            )
        } else {
            format!("{chosen} is the provider serving {}", quote_list(&names))
        };
        notes.assume(&field, &chosen, why);
        for k in members {
            choices[k].provider = Some(chosen.clone());
        }
    }
}

/// Zones of `provider` in the first of `places` it serves.
fn place_zones(ctx: &Ctx, places: &[usize], provider: &str) -> Vec<String> {
    places
        .iter()
        .filter_map(|&i| ctx.places.get(i))
        .map(|pl| {
            pl.zones
                .iter()
                .filter(|z| z.0 == provider)
                .map(|z| z.1.clone())
                .collect::<Vec<_>>()
        })
        .find(|z| !z.is_empty())
        .unwrap_or_default()
}

/// What the unit needs from a plan, and a plan named by a size word on `local`/`sim`.
fn need_of(u: &Unit, global: &Mods, provider: &Provider) -> (Need, Option<String>, String) {
    let mods = if u.mods.has_size() { &u.mods } else { global };
    let local_like = provider.zones.values().all(|z| z.country == "--");
    let mut need = Need {
        arm: mods.arm,
        dedicated: mods.dedicated,
        ..Need::default()
    };
    if let Some(tier) = mods.size_word {
        if local_like {
            let plan = vocab::size_word_plan(tier);
            if provider.plans.contains_key(plan) {
                return (need, Some(plan.to_owned()), "the size word".to_owned());
            }
        }
        let (c, m) = vocab::size_word_spec(tier);
        need.cores = c;
        need.memory_gb = m;
    }
    if mods.cores.is_some() || mods.memory.is_some() || mods.disk.is_some() {
        need.cores = mods.cores.unwrap_or(need.cores);
        need.memory_gb = mods.memory.unwrap_or(need.memory_gb);
        need.disk_gb = mods.disk.unwrap_or(0);
        return (need, None, format!("asked for {}", need.describe()));
    }
    if mods.size_word.is_some() || mods.cheap {
        return (need, None, "the size word".to_owned());
    }
    if mods.arm || mods.dedicated {
        need.cores = 2;
        need.memory_gb = 4;
        return (need, None, format!("no size given; {}", need.describe()));
    }
    let heavy = matches!(u.role, Role::Db | Role::Primary | Role::Replica);
    let k8s = matches!(u.role, Role::ControlPlane | Role::Worker);
    if local_like {
        let plan = if heavy || k8s { "medium" } else { "small" };
        if provider.plans.contains_key(plan) {
            return (
                need,
                Some(plan.to_owned()),
                format!("no size given; `{plan}` for a {} server", u.role.prefix()),
            );
        }
    }
    need.cores = 2;
    need.memory_gb = if heavy { 8 } else { 4 };
    let why = format!(
        "no size given; the cheapest plan with at least {}{}",
        need.describe(),
        if heavy { " (a database)" } else { "" }
    );
    (need, None, why)
}

#[allow(clippy::too_many_arguments)]
fn place_unit(
    u: &Unit,
    key: &str,
    choice: &Choice,
    taskservs: &[String],
    intent: &Intent,
    ctx: &Ctx,
    notes: &mut Notes,
) -> Placed {
    let mut provider_name = choice.provider.clone().unwrap_or_default();
    if provider_name == "local" {
        let cannot: Vec<&String> = taskservs
            .iter()
            .filter(|t| ctx.catalog.taskserv(t).is_some_and(|x| !x.local))
            .collect();
        if !cannot.is_empty() && ctx.catalog.provider("sim").is_some() {
            let field = format!("{key}.provider");
            notes.warn(format!(
                "the `local` provider cannot run {} (it runs {}); `{}` is drafted on `sim` instead",
                quote_list(&cannot),
                quote_list(
                    &ctx.catalog
                        .taskservs
                        .iter()
                        .filter(|(_, t)| t.local)
                        .map(|(n, _)| n.as_str())
                        .collect::<Vec<_>>()
                ),
                u.text
            ));
            let choices: Vec<String> = ctx
                .catalog
                .providers
                .keys()
                .filter(|p| *p != "local")
                .cloned()
                .collect();
            notes.ask(
                &field,
                format!(
                    "`local` cannot run {}; which provider should `{}` use?",
                    quote_list(&cannot),
                    u.text
                ),
                choices,
                "sim",
            );
            provider_name = "sim".to_owned();
        }
    }
    let Some(provider) = ctx.catalog.provider(&provider_name) else {
        return Placed {
            provider: provider_name,
            zones: vec![String::new(); u.count as usize],
            plan: String::new(),
        };
    };
    let (need, plan_word, need_why) = need_of(u, &intent.global, provider);
    let zones = choose_zones(u, key, choice, provider, &need, ctx, notes);
    let plan = choose_plan(
        u, key, provider, &zones, need, plan_word, &need_why, intent, ctx, notes,
    );
    let per_server = (0..u.count as usize)
        .map(|i| {
            zones
                .get(i % zones.len().max(1))
                .cloned()
                .unwrap_or_default()
        })
        .collect();
    Placed {
        provider: provider_name,
        zones: per_server,
        plan,
    }
}

/// The distinct zones the unit's servers are spread over (usually one).
fn choose_zones(
    u: &Unit,
    key: &str,
    choice: &Choice,
    provider: &Provider,
    need: &Need,
    ctx: &Ctx,
    notes: &mut Notes,
) -> Vec<String> {
    let p = provider.name.as_str();
    let field = format!("{key}.zone");
    for f in [field.as_str(), "zone"] {
        if let Some(a) = ctx.answers.get(f) {
            if provider.zones.contains_key(a.trim()) {
                return vec![a.trim().to_owned()];
            }
            let found = ctx
                .places
                .lookup(a)
                .map(|pl| {
                    pl.zones
                        .iter()
                        .filter(|z| z.0 == p)
                        .map(|z| z.1.clone())
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default();
            if let Some(z) = best_zone(provider, &found, need) {
                return vec![z];
            }
            notes.warn(format!(
                "the answer `{a}` for `{f}` is not a zone of `{p}`; expected one of {}",
                quote_list(&provider.zones.keys().collect::<Vec<_>>())
            ));
        }
    }
    let spread = u.mods.spread && u.count > 1;
    let all_zones: Vec<String> = provider.zones.keys().cloned().collect();
    if choice.places.is_empty() {
        if all_zones.len() == 1 {
            return all_zones;
        }
        if spread && all_zones.len() <= u.count as usize {
            notes.assume(
                &field,
                &all_zones.join(", "),
                format!("`{}` is spread over the zones of {p}", u.text),
            );
            return all_zones;
        }
        let home = home_zone(provider);
        if provider.zones.values().all(|z| z.country == "--") {
            notes.assume(
                &field,
                &home,
                format!("no zone named; the first zone of `{p}`"),
            );
        } else {
            let q = format!(
                "Which {} zone should `{}` run in? The text names no place.",
                provider.title, u.text
            );
            // One `zone` question for all servers of one provider; per group beyond that.
            let shared = notes
                .questions
                .iter()
                .find(|q| q.field == "zone")
                .is_none_or(|q| q.choices == all_zones);
            notes.ask(if shared { "zone" } else { &field }, q, all_zones, &home);
        }
        return vec![home];
    }
    let per_place: Vec<(String, Vec<String>)> = choice
        .places
        .iter()
        .filter_map(|&i| ctx.places.get(i))
        .map(|pl| {
            let zs = pl
                .zones
                .iter()
                .filter(|z| z.0 == p)
                .map(|z| z.1.clone())
                .collect();
            (display(&pl.name), zs)
        })
        .collect();
    let several = per_place.len() > 1 && u.count > 1 && (spread || !overlap(&per_place));
    if several || spread {
        let mut zones: Vec<String> = Vec::new();
        if per_place.len() == 1 {
            zones = per_place[0].1.clone();
        } else {
            for (_, zs) in &per_place {
                if let Some(z) = best_zone(provider, zs, need)
                    && !zones.contains(&z)
                {
                    zones.push(z);
                }
            }
        }
        if zones.len() > 1 {
            return zones;
        }
    }
    let mut candidates: Option<Vec<String>> = None;
    for (_, zs) in &per_place {
        if zs.is_empty() {
            continue;
        }
        candidates = Some(match candidates {
            None => zs.clone(),
            Some(c) => {
                let both: Vec<String> = c.iter().filter(|z| zs.contains(z)).cloned().collect();
                if both.is_empty() { c } else { both }
            }
        });
    }
    let names: Vec<&str> = per_place.iter().map(|(n, _)| n.as_str()).collect();
    match candidates {
        Some(c) => {
            let z = best_zone(provider, &c, need)
                .or_else(|| c.first().cloned())
                .unwrap_or_default();
            if c.len() > 1 {
                notes.assume(
                    &field,
                    &z,
                    format!(
                        "{} has {} on {p}; took the cheapest, first by name",
                        quote_list(&names),
                        quote_list(&c)
                    ),
                );
            }
            vec![z]
        }
        None => {
            let zones: Vec<_> = choice
                .places
                .iter()
                .filter_map(|&i| ctx.places.get(i))
                .flat_map(|pl| pl.zones.clone())
                .collect();
            let near = nearest(ctx.catalog, &zones, p);
            let z = best_zone(provider, &near, need).unwrap_or_else(|| home_zone(provider));
            notes.warn(format!(
                "{p} has no zone in {}; the draft uses the nearest, `{z}`",
                quote_list(&names)
            ));
            notes.ask(
                &field,
                format!(
                    "{p} has no zone in {}; which zone should `{}` use?",
                    quote_list(&names),
                    u.text
                ),
                all_zones,
                &z,
            );
            vec![z]
        }
    }
}

fn overlap(per_place: &[(String, Vec<String>)]) -> bool {
    per_place
        .iter()
        .skip(1)
        .all(|(_, zs)| zs.iter().any(|z| per_place[0].1.contains(z)))
}

/// The zone among `zones` where the fitting plan is cheapest, first by name on a tie.
fn best_zone(provider: &Provider, zones: &[String], need: &Need) -> Option<String> {
    let mut sorted = zones.to_vec();
    sorted.sort();
    sorted
        .iter()
        .map(|z| {
            (
                z,
                cheapest(provider, std::slice::from_ref(z), need).map_or(f64::INFINITY, |x| x.1),
            )
        })
        .min_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(b.0)))
        .map(|(z, _)| z.clone())
}

#[allow(clippy::too_many_arguments)]
fn choose_plan(
    u: &Unit,
    key: &str,
    provider: &Provider,
    zones: &[String],
    mut need: Need,
    plan_word: Option<String>,
    need_why: &str,
    intent: &Intent,
    ctx: &Ctx,
    notes: &mut Notes,
) -> String {
    let p = provider.name.as_str();
    let field = format!("{key}.plan");
    if let Some(a) = ctx.answers.get(&field) {
        let found = provider
            .plans
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(a.trim()));
        match found {
            Some((name, spec)) if zones.iter().all(|z| spec.offered_in(z)) => return name.clone(),
            _ => notes.warn(format!(
                "the answer `{a}` for `{field}` is not a {p} plan offered in {}",
                quote_list(zones)
            )),
        }
    }
    let plans = if u.mods.plans.is_empty() {
        &intent.global.plans
    } else {
        &u.mods.plans
    };
    if let Some((plan, spec)) = plans
        .iter()
        .find(|(_, pr)| pr == p)
        .and_then(|(plan, _)| Some((plan, provider.plans.get(plan)?)))
    {
        let missing: Vec<&String> = zones.iter().filter(|z| !spec.offered_in(z)).collect();
        if missing.is_empty() {
            return plan.clone();
        }
        notes.warn(format!(
            "plan `{plan}` of {p} is not offered in {}; the draft uses the cheapest plan at least as big",
            quote_list(&missing)
        ));
        need = Need {
            cores: spec.cores,
            memory_gb: spec.memory_gb,
            arm: spec.arch == "aarch64",
            ..Need::default()
        };
    } else if let Some((plan, other)) = plans.first() {
        notes.warn(format!(
            "plan `{plan}` belongs to {other}, not {p}; the draft uses a {p} plan of its size"
        ));
        if let Some(spec) = ctx.catalog.provider(other).and_then(|o| o.plans.get(plan)) {
            need = Need {
                cores: spec.cores,
                memory_gb: spec.memory_gb,
                arm: spec.arch == "aarch64",
                ..Need::default()
            };
        }
        notes.ask(
            &field,
            format!(
                "`{plan}` is a plan of {other}; which {p} plan should `{}` use?",
                u.text
            ),
            provider.plans.keys().cloned().collect(),
            &cheapest(provider, zones, &need)
                .map(|x| x.0)
                .unwrap_or_default(),
        );
    } else if let Some(plan) = plan_word {
        if !u.mods.has_size() && !intent.global.has_size() {
            notes.assume(&field, &plan, need_why.to_owned());
        }
        return plan;
    }
    match cheapest(provider, zones, &need) {
        Some((plan, _)) => {
            if !u.mods.has_size() && !intent.global.has_size() {
                notes.assume(
                    &field,
                    &describe_plan(provider, &plan),
                    format!("{need_why} in {}", zones.join(", ")),
                );
            }
            plan
        }
        None => {
            let relaxed = Need {
                dedicated: false,
                ..need
            };
            if need.dedicated
                && let Some((plan, _)) = cheapest(provider, zones, &relaxed)
            {
                notes.warn(format!(
                    "{p} has no dedicated plan with {} in {}; the draft uses `{plan}`",
                    need.describe(),
                    zones.join(", ")
                ));
                return plan;
            }
            let choices = largest(provider, zones, need.arm, 3);
            let assumed = choices.first().cloned().unwrap_or_default();
            notes.warn(format!(
                "no {p} plan in {} has {}; the largest is {}",
                zones.join(", "),
                need.describe(),
                describe_plan(provider, &assumed)
            ));
            notes.ask(
                &field,
                format!(
                    "No {p} plan has {} for `{}`; which plan should it use?",
                    need.describe(),
                    u.text
                ),
                choices,
                &assumed,
            );
            assumed
        }
    }
}
