//! The catalogs as typed data: providers with their plans, zones and prices, taskservs, and
//! cluster templates. Parsed from the same TOML files the Nickel contracts import.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use crate::KnowledgeError;
use crate::files::CATALOG;

/// A zone (Hetzner location, UpCloud zone, AWS region) where servers can run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Zone {
    pub title: String,
    pub city: String,
    /// ISO 3166 country code, `--` for the local and simulated providers.
    pub country: String,
    pub region: String,
}

/// A server size offered by a provider.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Plan {
    pub description: String,
    pub cores: u32,
    pub memory_gb: u32,
    /// Included local disk; 0 when storage is billed separately (AWS EBS).
    pub disk_gb: u32,
    pub arch: String,
    /// Monthly price in the provider's currency, in zones without a `zone_prices` entry.
    pub monthly_price: f64,
    /// Zones offering this plan; all of the provider's zones when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zones: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub zone_prices: BTreeMap<String, f64>,
}

impl Plan {
    /// Whether this plan can be ordered in `zone`.
    pub fn offered_in(&self, zone: &str) -> bool {
        self.zones
            .as_ref()
            .is_none_or(|z| z.iter().any(|z| z == zone))
    }

    /// Monthly price in `zone`.
    pub fn price_in(&self, zone: &str) -> f64 {
        self.zone_prices
            .get(zone)
            .copied()
            .unwrap_or(self.monthly_price)
    }
}

/// A provider catalog.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Provider {
    pub name: String,
    pub title: String,
    pub currency: String,
    pub source: String,
    pub price_note: String,
    /// Environment variables holding the provider's credentials (names only).
    pub credentials: Vec<String>,
    pub zones: BTreeMap<String, Zone>,
    pub plans: BTreeMap<String, Plan>,
    /// The images (operating systems) a config may name for this provider's servers.
    #[serde(default)]
    pub images: BTreeMap<String, Image>,
    /// The image of a server whose config names none (a current Debian).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_image: Option<String>,
    /// Whether this build can apply configs on this provider (else: validate and plan only).
    #[serde(default = "yes")]
    pub apply: bool,
    /// Whether this build installs taskservs on this provider's servers.
    #[serde(default = "yes")]
    pub taskservs: bool,
}

fn yes() -> bool {
    true
}

/// An operating system image of a provider.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Image {
    pub title: String,
    /// What the provider's API takes: an image name (Hetzner), a storage template UUID
    /// (UpCloud).
    pub api: String,
    /// The account the image lets in with the SSH key, where it is not the provider's
    /// `ssh_user` setting (`admin` on Debian's AMIs, `ubuntu` on Ubuntu's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The operating system as the taskserv scripts name it (`ID-MAJOR` from `/etc/os-release`:
    /// `debian-12`, `ubuntu-24`), so validation knows before any server exists whether a
    /// taskserv installs on this image.
    pub os: String,
}

impl Provider {
    /// The catalog name of the image a server gets: `image`, else the provider's default.
    pub fn image_name<'a>(&'a self, image: Option<&'a str>) -> Option<&'a str> {
        image.or(self.default_image.as_deref())
    }

    /// The image a server gets (`image`, else the default), with its catalog name.
    pub fn image<'a>(&'a self, image: Option<&'a str>) -> Option<(&'a str, &'a Image)> {
        let name = self.image_name(image)?;
        self.images.get(name).map(|i| (name, i))
    }
}

/// A task service: software installed on a server.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Taskserv {
    pub category: String,
    pub description: String,
    /// Supported versions, oldest first.
    pub versions: Vec<String>,
    pub default_version: String,
    /// Taskservs that must run on the same server first.
    pub requires: Vec<String>,
    /// Whether the `local` provider can run it as a real process.
    #[serde(default)]
    pub local: bool,
}

/// A role in a cluster template.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Role {
    pub name: String,
    /// Servers this role needs at least.
    pub min: u32,
    pub taskservs: Vec<String>,
}

/// A cluster template.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Template {
    pub description: String,
    pub roles: Vec<Role>,
}

impl Template {
    /// Servers the template needs at least.
    pub fn min_servers(&self) -> u32 {
        self.roles.iter().map(|r| r.min).sum()
    }
}

/// All catalogs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Catalog {
    pub providers: BTreeMap<String, Provider>,
    pub taskservs: BTreeMap<String, Taskserv>,
    pub templates: BTreeMap<String, Template>,
}

impl Catalog {
    /// The embedded catalogs, parsed once.
    pub fn embedded() -> Result<&'static Catalog, KnowledgeError> {
        static CELL: OnceLock<Result<Catalog, KnowledgeError>> = OnceLock::new();
        CELL.get_or_init(Catalog::parse)
            .as_ref()
            .map_err(|e| match e {
                KnowledgeError::Catalog { path, message } => KnowledgeError::Catalog {
                    path: path.clone(),
                    message: message.clone(),
                },
                other => KnowledgeError::Catalog {
                    path: String::new(),
                    message: other.to_string(),
                },
            })
    }

    fn parse() -> Result<Catalog, KnowledgeError> {
        let mut providers = BTreeMap::new();
        if let Some(dir) = CATALOG.get_dir("providers") {
            for file in dir.files() {
                let p: Provider = parse_toml(file)?;
                providers.insert(p.name.clone(), p);
            }
        }
        let get = |name: &str| {
            CATALOG
                .get_file(name)
                .ok_or_else(|| KnowledgeError::Catalog {
                    path: name.to_owned(),
                    message: "missing".to_owned(),
                })
        };
        let catalog = Catalog {
            providers,
            taskservs: parse_toml(get("taskservs.toml")?)?,
            templates: parse_toml(get("templates.toml")?)?,
        };
        catalog.check()?;
        Ok(catalog)
    }

    /// Internal consistency: references between catalogs resolve.
    fn check(&self) -> Result<(), KnowledgeError> {
        let bad = |path: &str, message: String| KnowledgeError::Catalog {
            path: path.to_owned(),
            message,
        };
        for (name, p) in &self.providers {
            for (plan_name, plan) in &p.plans {
                for z in plan.zones.iter().flatten().chain(plan.zone_prices.keys()) {
                    if !p.zones.contains_key(z) {
                        return Err(bad(
                            name,
                            format!("plan `{plan_name}` names unknown zone `{z}`"),
                        ));
                    }
                }
            }
            if p.images.is_empty() != p.default_image.is_none()
                || p.default_image
                    .as_ref()
                    .is_some_and(|d| !p.images.contains_key(d))
            {
                return Err(bad(
                    name,
                    "`default_image` must name one of `images` (and goes with them)".into(),
                ));
            }
        }
        for (name, t) in &self.taskservs {
            if !t.versions.contains(&t.default_version) {
                return Err(bad(
                    "taskservs.toml",
                    format!("`{name}` default version not in versions"),
                ));
            }
            if let Some(r) = t.requires.iter().find(|r| !self.taskservs.contains_key(*r)) {
                return Err(bad(
                    "taskservs.toml",
                    format!("`{name}` requires unknown `{r}`"),
                ));
            }
        }
        for (name, t) in &self.templates {
            for r in &t.roles {
                if let Some(ts) = r
                    .taskservs
                    .iter()
                    .find(|t| !self.taskservs.contains_key(*t))
                {
                    return Err(bad(
                        "templates.toml",
                        format!("`{name}` uses unknown taskserv `{ts}`"),
                    ));
                }
            }
        }
        Ok(())
    }

    pub fn provider(&self, name: &str) -> Option<&Provider> {
        self.providers.get(name)
    }

    pub fn taskserv(&self, name: &str) -> Option<&Taskserv> {
        self.taskservs.get(name)
    }

    pub fn template(&self, name: &str) -> Option<&Template> {
        self.templates.get(name)
    }
}

fn parse_toml<T: serde::de::DeserializeOwned>(
    file: &include_dir::File<'_>,
) -> Result<T, KnowledgeError> {
    let path = file.path().display().to_string();
    let text = file
        .contents_utf8()
        .ok_or_else(|| KnowledgeError::Catalog {
            path: path.clone(),
            message: "not UTF-8".to_owned(),
        })?;
    toml::from_str(text).map_err(|e| KnowledgeError::Catalog {
        path,
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn required_catalog_names_exist() {
        let c = Catalog::embedded().unwrap();
        let must = [
            (
                "hetzner",
                &["cx22", "cx32", "cx42"][..],
                &["fsn1", "nbg1", "hel1"][..],
            ),
            (
                "upcloud",
                &["1xCPU-2GB", "2xCPU-4GB", "4xCPU-8GB"],
                &["de-fra1", "fi-hel1", "nl-ams1"],
            ),
            (
                "aws",
                &["t3.micro", "t3.medium", "m6i.large"],
                &["eu-central-1", "us-east-1"],
            ),
            ("local", &["small", "medium", "large"], &["local"]),
            ("sim", &["small", "medium", "large"], &["sim-1"]),
        ];
        for (p, plans, zones) in must {
            let prov = c.provider(p).unwrap();
            for plan in plans {
                let plan = prov
                    .plans
                    .get(*plan)
                    .unwrap_or_else(|| panic!("{p}: {plan}"));
                for z in zones {
                    assert!(plan.offered_in(z), "{p}: plan not offered in {z}");
                }
            }
        }
        for t in [
            "containerd",
            "kubernetes",
            "etcd",
            "cilium",
            "coredns",
            "postgres",
            "redis",
            "nginx",
            "prometheus",
            "grafana",
        ] {
            assert!(c.taskserv(t).is_some(), "{t}");
        }
        let k8s = c.taskserv("kubernetes").unwrap();
        assert!(
            k8s.requires.contains(&"containerd".to_owned())
                && k8s.requires.contains(&"etcd".to_owned())
        );
        assert_eq!(c.template("k8s-ha").unwrap().roles[0].min, 3);
        for t in ["web", "postgresql"] {
            assert!(c.template(t).is_some());
        }
    }

    #[test]
    fn regional_prices_differ_where_published() {
        let c = Catalog::embedded().unwrap();
        let t3 = &c.provider("aws").unwrap().plans["t3.medium"];
        assert!(t3.price_in("eu-central-1") > t3.price_in("us-east-1"));
        assert!(
            (c.provider("hetzner").unwrap().plans["cx22"].price_in("hel1") - 3.79).abs() < 1e-9
        );
    }
}
