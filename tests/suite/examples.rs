//! Every example validates, and its export is stable: the same bytes twice, and YAML and TOML
//! exports carry the same value as the JSON one.

use libtest_mimic::Trial;
use serde_json::Value;
use std::path::Path;

use tests::{root, run};

pub fn trials() -> Vec<Trial> {
    crate::file_trials(&root().join("examples"), "example", 5, check_example)
}

fn check_example(path: &Path) {
    let dir = path.parent().unwrap();
    let file = path.file_name().unwrap().to_str().unwrap();
    let v = run(dir, &["validate", file, "--json"], None);
    let report: Value = serde_json::from_slice(&v.stdout).unwrap();
    assert_eq!(v.status.code(), Some(0), "{report:#}");
    // An example may warn only as its header declares (`# expect-warning: TEXT`), and then must.
    let source = std::fs::read_to_string(path).unwrap();
    let declared: Vec<&str> = source
        .lines()
        .take_while(|l| l.starts_with('#'))
        .filter_map(|l| l.strip_prefix("# expect-warning: "))
        .collect();
    let diagnostics = report["diagnostics"].as_array().unwrap();
    for d in diagnostics {
        let message = d["message"].as_str().unwrap_or_default();
        assert!(
            d["severity"] == "warning" && declared.iter().any(|w| message.contains(w)),
            "a diagnostic the example does not declare: {d:#}"
        );
    }
    for w in &declared {
        assert!(
            diagnostics
                .iter()
                .any(|d| d["message"].as_str().unwrap_or_default().contains(w)),
            "the example declares a warning it no longer gets: {w}"
        );
    }

    let a = run(dir, &["export", file], None);
    let b = run(dir, &["export", file, "--format", "json"], None);
    assert_eq!(
        a.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&a.stderr)
    );
    assert_eq!(a.stdout, b.stdout, "export is not stable");
    let json: Value = serde_json::from_slice(&a.stdout).unwrap();
    assert!(json["servers"].as_array().is_some_and(|s| !s.is_empty()));
    assert!(
        json["workflow"]["retry"]["max_attempts"].is_u64(),
        "defaults are filled in"
    );

    let yaml = run(dir, &["export", file, "--format", "yaml"], None);
    let from_yaml: Value = serde_yaml::from_slice(&yaml.stdout).unwrap();
    assert_eq!(from_yaml, json, "YAML export differs");
    let toml_out = run(dir, &["export", file, "--format", "toml"], None);
    let from_toml: Value = toml::from_str(&String::from_utf8_lossy(&toml_out.stdout)).unwrap();
    assert_eq!(from_toml, json, "TOML export differs");
}
