//! `provisioning catalog [providers|plans P|zones P|taskservs|templates] [--json]`.

use std::process::ExitCode;

use knowledge::{Catalog, Provider};

use crate::cli::{CatalogArgs, CatalogWhat};
use crate::table;

pub fn run(args: &CatalogArgs) -> anyhow::Result<ExitCode> {
    let c = Catalog::embedded()?;
    let what = args.what.clone().unwrap_or(CatalogWhat::Providers);
    let (json, text) = match &what {
        CatalogWhat::Providers => (
            serde_json::to_value(&c.providers)?,
            table::render(
                &[
                    "PROVIDER",
                    "TITLE",
                    "CURRENCY",
                    "PLANS",
                    "ZONES",
                    "CREDENTIALS",
                ],
                &c.providers
                    .values()
                    .map(|p| {
                        vec![
                            p.name.clone(),
                            p.title.clone(),
                            p.currency.clone(),
                            p.plans.len().to_string(),
                            p.zones.len().to_string(),
                            if p.credentials.is_empty() {
                                "none".into()
                            } else {
                                p.credentials.join(", ")
                            },
                        ]
                    })
                    .collect::<Vec<_>>(),
            ),
        ),
        CatalogWhat::Plans { provider } => {
            let p = provider_named(c, provider)?;
            let rows = p
                .plans
                .iter()
                .map(|(name, plan)| {
                    let zones = plan
                        .zones
                        .as_ref()
                        .map_or_else(|| "all".to_owned(), |z| z.join(","));
                    let price = if plan.zone_prices.is_empty() {
                        format!("{:.2}", plan.monthly_price)
                    } else {
                        plan.zone_prices
                            .iter()
                            .map(|(z, p)| format!("{z} {p:.2}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    };
                    vec![
                        name.clone(),
                        plan.cores.to_string(),
                        format!("{} GB", plan.memory_gb),
                        if plan.disk_gb == 0 {
                            "-".into()
                        } else {
                            format!("{} GB", plan.disk_gb)
                        },
                        plan.arch.clone(),
                        price,
                        zones,
                    ]
                })
                .collect::<Vec<_>>();
            let header = [
                "PLAN",
                "CORES",
                "MEMORY",
                "DISK",
                "ARCH",
                &format!("{}/MONTH", p.currency),
                "ZONES",
            ];
            (
                serde_json::to_value(&p.plans)?,
                format!(
                    "{}\nPrices: {}. Source: {}\n",
                    table::render(&header, &rows),
                    p.price_note,
                    p.source
                ),
            )
        }
        CatalogWhat::Zones { provider } => {
            let p = provider_named(c, provider)?;
            (
                serde_json::to_value(&p.zones)?,
                table::render(
                    &["ZONE", "LOCATION", "COUNTRY", "REGION"],
                    &p.zones
                        .iter()
                        .map(|(n, z)| {
                            vec![
                                n.clone(),
                                z.title.clone(),
                                z.country.clone(),
                                z.region.clone(),
                            ]
                        })
                        .collect::<Vec<_>>(),
                ),
            )
        }
        CatalogWhat::Taskservs => (
            serde_json::to_value(&c.taskservs)?,
            table::render(
                &[
                    "TASKSERV", "CATEGORY", "DEFAULT", "VERSIONS", "REQUIRES", "LOCAL",
                ],
                &c.taskservs
                    .iter()
                    .map(|(n, t)| {
                        vec![
                            n.clone(),
                            t.category.clone(),
                            t.default_version.clone(),
                            t.versions.join(", "),
                            if t.requires.is_empty() {
                                "-".into()
                            } else {
                                t.requires.join(", ")
                            },
                            if t.local { "yes".into() } else { "-".into() },
                        ]
                    })
                    .collect::<Vec<_>>(),
            ),
        ),
        CatalogWhat::Templates => (
            serde_json::to_value(&c.templates)?,
            table::render(
                &["TEMPLATE", "MIN SERVERS", "ROLES", "DESCRIPTION"],
                &c.templates
                    .iter()
                    .map(|(n, t)| {
                        let roles = t
                            .roles
                            .iter()
                            .map(|r| {
                                format!("{} (>= {}: {})", r.name, r.min, r.taskservs.join("+"))
                            })
                            .collect::<Vec<_>>()
                            .join("; ");
                        vec![
                            n.clone(),
                            t.min_servers().to_string(),
                            roles,
                            t.description.clone(),
                        ]
                    })
                    .collect::<Vec<_>>(),
            ),
        ),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&json)?);
    } else {
        print!("{text}");
    }
    Ok(ExitCode::SUCCESS)
}

fn provider_named<'c>(c: &'c Catalog, name: &str) -> anyhow::Result<&'c Provider> {
    c.provider(name).ok_or_else(|| {
        let hint = service::model::did_you_mean(name, c.providers.keys().map(String::as_str))
            .map(|m| format!(" (did you mean `{m}`?)"))
            .unwrap_or_default();
        anyhow::anyhow!(
            "unknown provider `{name}`{hint}; expected one of {}",
            c.providers
                .keys()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    })
}
