//! "Did you mean" suggestions for misspelled names.

/// The candidate closest to `got`, if one is close enough to be a likely typo: a small edit
/// distance, or `got` being a distinctive part of exactly one candidate (`fra` in `de-fra1`).
pub fn did_you_mean<'a>(
    got: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let got_l = got.to_lowercase();
    let candidates: Vec<&str> = candidates.into_iter().collect();
    if let Some(exact) = candidates.iter().find(|c| c.to_lowercase() == got_l) {
        return Some(exact);
    }
    let best = candidates
        .iter()
        .map(|c| (strsim::damerau_levenshtein(&got_l, &c.to_lowercase()), *c))
        .min_by_key(|(d, c)| (*d, c.len()));
    if let Some((d, c)) = best {
        let allowed = (got.chars().count().max(c.chars().count()) / 3).max(1);
        if d <= allowed {
            return Some(c);
        }
    }
    let mut prefixes = candidates
        .iter()
        .filter(|c| c.len() >= 3 && got_l.starts_with(&c.to_lowercase()));
    if let (Some(one), None) = (prefixes.next(), prefixes.next()) {
        return Some(one);
    }
    let stem = got_l.trim_end_matches(|c: char| c.is_ascii_digit() || c == '-');
    if stem.len() >= 3 {
        let mut hits = candidates
            .iter()
            .filter(|c| c.to_lowercase().contains(stem));
        if let (Some(one), None) = (hits.next(), hits.next()) {
            return Some(one);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::did_you_mean;

    #[test]
    fn typos_and_fragments() {
        let zones = ["de-fra1", "fi-hel1", "nl-ams1", "uk-lon1"];
        assert_eq!(did_you_mean("de-fra2", zones), Some("de-fra1"));
        assert_eq!(did_you_mean("fra9", zones), Some("de-fra1"));
        assert_eq!(did_you_mean("DE-FRA1", zones), Some("de-fra1"));
        assert_eq!(did_you_mean("tokyo", zones), None);
        assert_eq!(did_you_mean("rediss", ["redis", "nginx"]), Some("redis"));
        assert_eq!(
            did_you_mean("postgresql", ["postgres", "mysql"]),
            Some("postgres")
        );
        assert_eq!(
            did_you_mean("cx21", ["cx22", "cx32", "cpx21"]),
            Some("cx22")
        );
        assert_eq!(did_you_mean("x", ["redis", "nginx"]), None);
        assert_eq!(
            did_you_mean("production", ["dev", "staging", "prod"]),
            Some("prod")
        );
        assert_eq!(did_you_mean("k8s", ["k8s-ha", "web"]), Some("k8s-ha"));
    }
}
