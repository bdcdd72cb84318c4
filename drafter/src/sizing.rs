//! Sizes → plans: the cheapest plan offered in every chosen zone that has at least the asked
//! cores, memory and disk, on x86 unless ARM was asked for.

use knowledge::Provider;

/// What a server needs from its plan.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Need {
    pub cores: u32,
    pub memory_gb: u32,
    pub disk_gb: u32,
    pub arm: bool,
    pub dedicated: bool,
}

impl Need {
    pub(crate) fn describe(&self) -> String {
        let mut parts = Vec::new();
        if self.cores > 0 {
            parts.push(format!("{} cores", self.cores));
        }
        if self.memory_gb > 0 {
            parts.push(format!("{} GB memory", self.memory_gb));
        }
        if self.disk_gb > 0 {
            parts.push(format!("{} GB disk", self.disk_gb));
        }
        if self.arm {
            parts.push("ARM".to_owned());
        }
        if self.dedicated {
            parts.push("dedicated vCPUs".to_owned());
        }
        if parts.is_empty() {
            "any size".to_owned()
        } else {
            parts.join(", ")
        }
    }
}

fn fits(plan: &knowledge::Plan, need: &Need) -> bool {
    let arch_ok = if need.arm {
        plan.arch == "aarch64"
    } else {
        plan.arch == "x86_64"
    };
    // A disk of 0 means storage is billed separately (AWS EBS): any size can be attached.
    let disk_ok = plan.disk_gb == 0 || plan.disk_gb >= need.disk_gb;
    arch_ok
        && disk_ok
        && plan.cores >= need.cores
        && plan.memory_gb >= need.memory_gb
        && (!need.dedicated || plan.description.to_lowercase().contains("dedicated"))
}

/// Total monthly price of one server of `plan` per zone in `zones`.
fn price(plan: &knowledge::Plan, zones: &[String]) -> f64 {
    zones.iter().map(|z| plan.price_in(z)).sum()
}

/// The cheapest plan of `provider` offered in all `zones` that fits `need`, with its price.
pub(crate) fn cheapest(
    provider: &Provider,
    zones: &[String],
    need: &Need,
) -> Option<(String, f64)> {
    provider
        .plans
        .iter()
        .filter(|(_, p)| zones.iter().all(|z| p.offered_in(z)) && fits(p, need))
        .map(|(name, p)| (name, p, price(p, zones)))
        .min_by(|a, b| {
            a.2.total_cmp(&b.2)
                .then(a.1.cores.cmp(&b.1.cores))
                .then(a.1.memory_gb.cmp(&b.1.memory_gb))
                .then(a.0.cmp(b.0))
        })
        .map(|(name, _, price)| (name.clone(), price))
}

/// The biggest plans offered in all `zones`, biggest first, for a question's choices.
pub(crate) fn largest(provider: &Provider, zones: &[String], arm: bool, n: usize) -> Vec<String> {
    let mut plans: Vec<(&String, &knowledge::Plan)> = provider
        .plans
        .iter()
        .filter(|(_, p)| zones.iter().all(|z| p.offered_in(z)))
        .collect();
    let other_arch = |p: &knowledge::Plan| (p.arch == "aarch64") != arm;
    plans.sort_by(|a, b| {
        (b.1.cores, b.1.memory_gb)
            .cmp(&(a.1.cores, a.1.memory_gb))
            .then(other_arch(a.1).cmp(&other_arch(b.1)))
            .then(price(a.1, zones).total_cmp(&price(b.1, zones)))
            .then(a.0.cmp(b.0))
    });
    plans.into_iter().take(n).map(|(n, _)| n.clone()).collect()
}

/// "cx22 (2 cores, 4 GB)".
pub(crate) fn describe_plan(provider: &Provider, plan: &str) -> String {
    match provider.plans.get(plan) {
        Some(p) => format!("{plan} ({} cores, {} GB)", p.cores, p.memory_gb),
        None => plan.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use knowledge::Catalog;

    fn pick(provider: &str, zone: &str, need: Need) -> Option<String> {
        let c = Catalog::embedded().unwrap();
        cheapest(c.provider(provider).unwrap(), &[zone.to_owned()], &need).map(|p| p.0)
    }

    fn need(cores: u32, memory_gb: u32) -> Need {
        Need {
            cores,
            memory_gb,
            ..Need::default()
        }
    }

    #[test]
    fn cheapest_fitting_plan_per_zone() {
        assert_eq!(pick("hetzner", "fsn1", need(4, 8)).as_deref(), Some("cx32"));
        assert_eq!(pick("hetzner", "hil", need(2, 2)).as_deref(), Some("cpx11"));
        // cx plans are EU-only.
        assert_eq!(pick("hetzner", "ash", need(2, 4)).as_deref(), Some("cpx21"));
        assert_eq!(
            pick("upcloud", "us-chi1", need(12, 48)).as_deref(),
            Some("12xCPU-48GB")
        );
        assert_eq!(
            pick("aws", "us-east-1", need(2, 4)).as_deref(),
            Some("t3.medium")
        );
        assert_eq!(
            pick("aws", "eu-central-1", need(1, 16)).as_deref(),
            Some("r6i.large")
        );
        assert_eq!(pick("local", "local", need(1, 1)).as_deref(), Some("small"));
        assert_eq!(pick("hetzner", "hel1", need(512, 1)), None);
    }

    #[test]
    fn arm_dedicated_and_disk() {
        let arm = Need {
            arm: true,
            ..need(2, 4)
        };
        assert_eq!(pick("hetzner", "fsn1", arm).as_deref(), Some("cax11"));
        assert_eq!(pick("hetzner", "ash", arm), None);
        let dedicated = Need {
            dedicated: true,
            ..need(8, 32)
        };
        assert_eq!(pick("hetzner", "hel1", dedicated).as_deref(), Some("ccx33"));
        let disk = Need {
            disk_gb: 300,
            ..need(2, 4)
        };
        assert_eq!(pick("hetzner", "hel1", disk).as_deref(), Some("cx52"));
        assert_eq!(pick("aws", "us-east-1", disk).as_deref(), Some("t3.medium"));
    }

    #[test]
    fn largest_plans_first() {
        let c = Catalog::embedded().unwrap();
        let l = largest(
            c.provider("hetzner").unwrap(),
            &["ash".to_owned()],
            false,
            2,
        );
        assert_eq!(l, ["cpx51", "ccx33"]);
        let l = largest(
            c.provider("hetzner").unwrap(),
            &["hel1".to_owned()],
            false,
            2,
        );
        assert_eq!(l, ["cx52", "cpx51"]);
        let l = largest(
            c.provider("hetzner").unwrap(),
            &["ash".to_owned()],
            false,
            2,
        );
        assert_eq!(l, ["cpx51", "ccx33"]);
    }
}
