//! The reference pages in `docs/reference/` that say `<!-- generated-from: knowledge/schemas/X.ncl -->`
//! are checked against that schema file, so they cannot drift from the contracts:
//!
//! - every field a `lib.Shape` accepts, every top-level definition, every value a `lib.OneOf`
//!   allows (and the `environments` list) appears on the page in backticks;
//! - every row of a field table (`| field | ...`) names a field the schema accepts;
//! - a field with `| default = V` in the schema has V in its table row.
//!
//! A schema change that adds, renames or re-defaults a field fails here until the page says so.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// What a schema file declares, read from its text.
#[derive(Debug, Default)]
struct Declared {
    /// Fields accepted by `lib.Shape` calls.
    fields: BTreeSet<String>,
    /// Top-level definitions (`  Name = ...`).
    definitions: BTreeSet<String>,
    /// Values allowed by `lib.OneOf` lists and string-array definitions.
    values: BTreeSet<String>,
    /// `field | ... | default = VALUE` pairs.
    defaults: Vec<(String, String)>,
}

fn quoted(list: &str) -> Vec<String> {
    list.split(',')
        .map(|s| s.trim().trim_matches('"').to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// The `[...]` lists following `marker` on a line, each as its quoted strings.
fn lists_after(line: &str, marker: &str) -> Vec<Vec<String>> {
    let Some(at) = line.find(marker) else {
        return Vec::new();
    };
    let mut rest = &line[at + marker.len()..];
    let mut lists = Vec::new();
    while let Some(open) = rest.find('[') {
        let Some(close) = rest[open..].find(']') else {
            break;
        };
        lists.push(quoted(&rest[open + 1..open + close]));
        rest = &rest[open + close + 1..];
    }
    lists
}

fn declared(schema: &str) -> Declared {
    let mut d = Declared::default();
    for line in schema.lines() {
        if line.trim_start().starts_with('#') {
            continue;
        }
        for list in lists_after(line, "lib.Shape ") {
            d.fields.extend(list);
        }
        for list in lists_after(line, "lib.OneOf ") {
            d.values.extend(list);
        }
        // Top-level definitions are indented by exactly two spaces inside the file's record.
        if let Some(def) = line.strip_prefix("  ")
            && !def.starts_with(' ')
            && let Some((name, value)) = def.split_once(" = ")
            && !name.is_empty()
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            d.definitions.insert(name.to_string());
            let value = value.trim().trim_end_matches(',');
            if value.starts_with('[') && value.ends_with(']') && value.contains('"') {
                d.values.extend(quoted(&value[1..value.len() - 1]));
            }
        }
        if let Some((field, rest)) = line.trim().split_once(" | ")
            && field.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && let Some(at) = rest.find("default = ")
        {
            let value = rest[at + "default = ".len()..]
                .trim()
                .trim_end_matches(',')
                .trim_matches('"');
            d.defaults.push((field.to_string(), value.to_string()));
        }
    }
    d
}

/// The field named in the first cell of each row of tables whose header starts `| field |`.
fn table_rows(page: &str) -> Vec<(String, String)> {
    let mut rows = Vec::new();
    let mut in_fields = false;
    for line in page.lines() {
        let line = line.trim();
        if !line.starts_with('|') {
            in_fields = false;
            continue;
        }
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        if cells.first() == Some(&"field") {
            in_fields = true;
            continue;
        }
        if in_fields
            && let Some(first) = cells.first()
            && let Some(name) = first.strip_prefix('`').and_then(|s| s.split('`').next())
        {
            rows.push((name.to_string(), line.to_string()));
        }
    }
    rows
}

fn reference_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/reference")
}

/// Every problem found on one page, in words.
fn check_page(page_name: &str, page: &str, schema_name: &str, schema: &str) -> Vec<String> {
    let d = declared(schema);
    let mut problems = Vec::new();
    let in_backticks = |name: &str| page.contains(&format!("`{name}`"));
    let groups = [
        ("field", &d.fields),
        ("definition", &d.definitions),
        ("allowed value", &d.values),
    ];
    for (what, names) in groups {
        for name in names.iter().filter(|n| !in_backticks(n)) {
            problems.push(format!(
                "{page_name}: {what} `{name}` of {schema_name} is not documented"
            ));
        }
    }
    let rows = table_rows(page);
    for (name, _) in &rows {
        if !d.fields.contains(name) {
            problems.push(format!(
                "{page_name}: the field table lists `{name}`, which {schema_name} does not accept"
            ));
        }
    }
    for (field, value) in &d.defaults {
        match rows.iter().find(|(name, _)| name == field) {
            Some((_, row)) if row.contains(value.as_str()) => {}
            Some((_, row)) => problems.push(format!(
                "{page_name}: {schema_name} defaults `{field}` to {value}, the table says: {row}"
            )),
            None => problems.push(format!(
                "{page_name}: `{field}` (default {value} in {schema_name}) has no row in a field table"
            )),
        }
    }
    problems
}

#[test]
fn reference_pages_match_their_schema_files() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap_or(Path::new("."))
        .to_path_buf();
    // Pages grouped by the schema file they document (server.ncl has a server page and a
    // taskserv page); a group together must cover its schema.
    let mut groups: std::collections::BTreeMap<String, (Vec<String>, String)> = Default::default();
    let mut entries: Vec<_> = std::fs::read_dir(reference_dir())
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .collect();
    entries.sort();
    for path in entries {
        let Ok(page) = std::fs::read_to_string(&path) else {
            continue;
        };
        let Some(source) = page
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("<!-- generated-from: "))
            .and_then(|l| l.strip_suffix(" -->"))
        else {
            continue;
        };
        let group = groups.entry(source.to_string()).or_default();
        group.0.push(
            path.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        );
        group.1.push_str(&page);
        group.1.push('\n');
    }
    let mut problems = Vec::new();
    for (source, (pages, text)) in &groups {
        let schema = std::fs::read_to_string(root.join(source))
            .unwrap_or_else(|e| panic!("{pages:?} name {source}, which cannot be read: {e}"));
        problems.extend(check_page(&pages.join(" + "), text, source, &schema));
    }
    // Every schema file has a reference page.
    for name in crate::schema_names() {
        let source = format!("knowledge/schemas/{name}.ncl");
        if !groups.contains_key(&source) {
            problems.push(format!("no reference page says generated-from: {source}"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_check_catches_an_undocumented_field_a_stale_row_and_a_changed_default() {
    let schema = r#"{
  Retry = fun path =>
    std.contract.Sequence [
      lib.Shape path [] ["max_attempts", "backoff"],
      {
        max_attempts | lib.Int path 1 10 | default = 3,
        backoff | lib.OneOf (lib.join path "backoff") "backoff" ["linear", "exponential"] | default = "exponential",
      },
    ],
}"#;
    let good = "`Retry`\n\n| field | default |\n|---|---|\n| `max_attempts` | 3 |\n| `backoff` | `exponential` (or `linear`) |\n";
    assert_eq!(check_page("p", good, "s", schema), Vec::<String>::new());
    let missing = good.replace("| `backoff` | `exponential` (or `linear`) |\n", "");
    let problems = check_page("p", &missing, "s", schema);
    assert!(
        problems.iter().any(|p| p.contains("field `backoff`")),
        "{problems:?}"
    );
    assert!(
        problems.iter().any(|p| p.contains("value `linear`")),
        "{problems:?}"
    );
    let stale = format!("{good}| `jitter` | no |\n");
    let problems = check_page("p", &stale, "s", schema);
    assert!(
        problems.iter().any(|p| p.contains("lists `jitter`")),
        "{problems:?}"
    );
    let changed = good.replace("| `max_attempts` | 3 |", "| `max_attempts` | 5 |");
    let problems = check_page("p", &changed, "s", schema);
    assert!(
        problems
            .iter()
            .any(|p| p.contains("defaults `max_attempts` to 3")),
        "{problems:?}"
    );
}
