//! Place names → catalog zones: zone codes, cities, states from zone titles, countries, regions
//! and continents, each with how specific it is. Built from the catalog, so a new zone is
//! understood by its code, city and country without code changes.

use std::collections::BTreeMap;

use knowledge::Catalog;

use super::lexer::{Tok, lex};

/// A (provider, zone) pair.
pub(crate) type ZoneRef = (String, String);

/// How specific a place name is; a more specific one wins when two describe the same servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Level {
    Continent,
    Region,
    Country,
    State,
    City,
    Code,
}

/// A place name for messages: `New York`, `hel1`, `US east`.
pub(crate) fn display(name: &str) -> String {
    name.split(' ')
        .map(|w| {
            if w.chars().any(|c| c.is_ascii_digit() || c == '-') {
                w.to_owned()
            } else if matches!(w, "us" | "eu" | "uk" | "usa" | "apac") {
                w.to_uppercase()
            } else {
                let mut c = w.chars();
                c.next()
                    .map(|f| f.to_uppercase().chain(c).collect())
                    .unwrap_or_default()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Place {
    /// The words as the gazetteer knows them, e.g. `new york`.
    pub name: String,
    pub zones: Vec<ZoneRef>,
    pub level: Level,
}

#[derive(Debug, Clone)]
pub(crate) struct Gazetteer {
    places: Vec<Place>,
}

const COUNTRIES: &[(&str, &[&str])] = &[
    ("DE", &["germany", "deutschland"]),
    ("FI", &["finland"]),
    (
        "US",
        &[
            "usa",
            "united states",
            "united states of america",
            "america",
            "the us",
            "the u.s",
            "the states",
        ],
    ),
    ("SG", &["singapore"]),
    ("IE", &["ireland"]),
    ("NL", &["netherlands", "the netherlands", "holland"]),
    (
        "GB",
        &[
            "uk",
            "united kingdom",
            "britain",
            "great britain",
            "england",
        ],
    ),
    ("PL", &["poland"]),
    ("ES", &["spain"]),
    ("SE", &["sweden"]),
    ("DK", &["denmark"]),
    ("AU", &["australia"]),
];

const REGIONS: &[(&str, &[&str])] = &[
    (
        "us-east",
        &[
            "us-east",
            "us east",
            "east coast",
            "us east coast",
            "eastern us",
        ],
    ),
    (
        "us-west",
        &[
            "us-west",
            "us west",
            "west coast",
            "us west coast",
            "western us",
        ],
    ),
    (
        "us-central",
        &["us-central", "us central", "central us", "midwest"],
    ),
    (
        "eu-central",
        &["eu-central", "eu central", "central europe"],
    ),
    (
        "eu-west",
        &["eu-west", "eu west", "western europe", "west europe"],
    ),
    (
        "eu-north",
        &[
            "eu-north",
            "eu north",
            "northern europe",
            "nordics",
            "scandinavia",
        ],
    ),
    ("eu-south", &["eu-south", "eu south", "southern europe"]),
    (
        "ap-southeast",
        &[
            "ap-southeast",
            "southeast asia",
            "south-east asia",
            "apac",
            "asia pacific",
        ],
    ),
];

const CONTINENTS: &[(&str, &[&str])] = &[
    ("eu-", &["europe", "eu", "the eu"]),
    ("ap-", &["asia"]),
    ("us-", &["north america", "the americas"]),
];

/// Other spellings and nearby places: (alias, a name the gazetteer already has). The alias
/// gets the target's zones in addition to any of its own.
const ALIASES: &[(&str, &str)] = &[
    ("virginia", "n virginia"),
    ("nurnberg", "nuremberg"),
    ("nürnberg", "nuremberg"),
    ("nuernberg", "nuremberg"),
    ("frankfurt am main", "frankfurt"),
    ("nyc", "new york"),
    ("new york city", "new york"),
    ("north virginia", "virginia"),
    ("northern virginia", "virginia"),
    ("california", "san jose"),
    ("silicon valley", "san jose"),
    ("bay area", "san jose"),
    ("berlin", "germany"),
    ("munich", "germany"),
    ("hamburg", "germany"),
];

impl Gazetteer {
    pub(crate) fn new(catalog: &Catalog) -> Gazetteer {
        let mut by_name: BTreeMap<String, Place> = BTreeMap::new();
        let mut add = |name: &str, zone: ZoneRef, level: Level| {
            let name = normalise(name);
            if name.is_empty() {
                return;
            }
            let place = by_name.entry(name.clone()).or_insert(Place {
                name,
                zones: Vec::new(),
                level,
            });
            place.level = place.level.max(level);
            if !place.zones.contains(&zone) {
                place.zones.push(zone);
            }
        };
        let generic: Vec<String> = REGIONS
            .iter()
            .chain(CONTINENTS)
            .chain(COUNTRIES)
            .flat_map(|(_, names)| names.iter().map(|n| normalise(n)))
            .collect();
        for (provider, p) in &catalog.providers {
            for (code, z) in &p.zones {
                let zone = (provider.clone(), code.clone());
                if code != "local" {
                    add(code, zone.clone(), Level::Code);
                }
                if z.country == "--" {
                    continue;
                }
                add(&z.city, zone.clone(), Level::City);
                for part in z.title.split([',', '(', ')']) {
                    let part = normalise(part);
                    if !part.is_empty() && !generic.contains(&part) {
                        add(&part, zone.clone(), Level::State);
                    }
                }
                for (iso, names) in COUNTRIES {
                    if *iso == z.country {
                        for n in *names {
                            add(n, zone.clone(), Level::Country);
                        }
                    }
                }
                for (region, names) in REGIONS {
                    if *region == z.region {
                        for n in *names {
                            add(n, zone.clone(), Level::Region);
                        }
                    }
                }
                for (prefix, names) in CONTINENTS {
                    if z.region.starts_with(prefix) {
                        for n in *names {
                            add(n, zone.clone(), Level::Continent);
                        }
                    }
                }
            }
        }
        for (alias, target) in ALIASES {
            if let Some(t) = by_name.get(*target).cloned() {
                let place = by_name.entry((*alias).to_owned()).or_insert(Place {
                    name: (*alias).to_owned(),
                    zones: Vec::new(),
                    level: t.level,
                });
                for z in t.zones {
                    if !place.zones.contains(&z) {
                        place.zones.push(z);
                    }
                }
                place.zones.sort();
            }
        }
        Gazetteer {
            places: by_name.into_values().collect(),
        }
    }

    pub(crate) fn places(&self) -> impl Iterator<Item = (usize, &Place)> {
        self.places.iter().enumerate()
    }

    pub(crate) fn get(&self, index: usize) -> Option<&Place> {
        self.places.get(index)
    }

    /// A place named by the whole of `text` (an elicitation answer such as `Helsinki`).
    pub(crate) fn lookup(&self, text: &str) -> Option<&Place> {
        let name = normalise(text);
        self.places.iter().find(|p| p.name == name)
    }
}

/// Lowercase words separated by single spaces, as the lexer sees them.
fn normalise(text: &str) -> String {
    lex(text)
        .iter()
        .filter_map(Tok::word)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Zones of `provider` closest to `zones` (of other providers): same country, else same region,
/// else same continent.
pub(crate) fn nearest(catalog: &Catalog, zones: &[ZoneRef], provider: &str) -> Vec<String> {
    let Some(p) = catalog.provider(provider) else {
        return Vec::new();
    };
    let info: Vec<&knowledge::Zone> = zones
        .iter()
        .filter_map(|(pr, z)| catalog.provider(pr)?.zones.get(z))
        .collect();
    let continent = |r: &str| r.split('-').next().unwrap_or("").to_owned();
    // 0: same country, 1: same region, 2: same continent.
    let same = |how: u8, a: &knowledge::Zone, b: &knowledge::Zone| match how {
        0 => a.country == b.country && a.country != "--",
        1 => a.region == b.region,
        _ => continent(&a.region) == continent(&b.region),
    };
    for how in 0..3 {
        let found: Vec<String> = p
            .zones
            .iter()
            .filter(|(_, z)| info.iter().any(|i| same(how, z, i)))
            .map(|(code, _)| code.clone())
            .collect();
        if !found.is_empty() {
            return found;
        }
    }
    Vec::new()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn zones(g: &Gazetteer, name: &str) -> Vec<String> {
        let p = g.lookup(name).unwrap();
        p.zones.iter().map(|(p, z)| format!("{p}/{z}")).collect()
    }

    #[test]
    fn cities_countries_states_and_regions_resolve_to_zones() {
        let c = Catalog::embedded().unwrap();
        let g = Gazetteer::new(c);
        assert_eq!(zones(&g, "Falkenstein"), ["hetzner/fsn1"]);
        assert_eq!(
            zones(&g, "Helsinki"),
            ["hetzner/hel1", "upcloud/fi-hel1", "upcloud/fi-hel2"]
        );
        assert_eq!(
            zones(&g, "Frankfurt"),
            ["aws/eu-central-1", "upcloud/de-fra1"]
        );
        assert_eq!(zones(&g, "virginia"), ["aws/us-east-1", "hetzner/ash"]);
        assert_eq!(zones(&g, "Oregon"), ["aws/us-west-2", "hetzner/hil"]);
        assert_eq!(zones(&g, "ireland"), ["aws/eu-west-1"]);
        assert_eq!(zones(&g, "Nürnberg"), ["hetzner/nbg1"]);
        assert_eq!(g.lookup("germany").unwrap().level, Level::Country);
        assert_eq!(g.lookup("hel1").unwrap().level, Level::Code);
        assert_eq!(g.lookup("us east").unwrap().level, Level::Region);
        assert!(zones(&g, "europe").contains(&"upcloud/es-mad1".to_owned()));
        assert!(!zones(&g, "europe").iter().any(|z| z.contains("us-")));
        assert!(g.lookup("local").is_none());
        assert!(g.lookup("atlantis").is_none());
        assert_eq!(display("new york"), "New York");
        assert_eq!(display("us east"), "US East");
        assert_eq!(display("hel1"), "hel1");
    }

    #[test]
    fn nearest_zone_of_another_provider() {
        let c = Catalog::embedded().unwrap();
        let hel = [("hetzner".to_owned(), "hel1".to_owned())];
        assert_eq!(nearest(c, &hel, "upcloud"), ["fi-hel1", "fi-hel2"]);
        assert_eq!(nearest(c, &hel, "aws"), ["eu-central-1"]);
        let syd = [("upcloud".to_owned(), "au-syd1".to_owned())];
        assert_eq!(nearest(c, &syd, "hetzner"), ["sin"]);
        assert!(nearest(c, &syd, "local").is_empty());
    }
}
