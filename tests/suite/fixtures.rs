//! Invalid-config fixtures: `tests/fixtures/invalid/*.ncl`, each starting with `# expect-*:`
//! lines (what diagnostic must come out) and optional `# limit-*:` lines (limits to run with).
//! `expect-line` counts from the first line after the header. The rendered diagnostics are
//! snapshotted in `tests/snapshots`.

use std::path::{Path, PathBuf};

use libtest_mimic::Trial;
use serde_json::Value;
use tests::{root, run};

struct Fixture {
    path: PathBuf,
    header_lines: usize,
    expect: Vec<(String, String)>,
    args: Vec<String>,
}

fn parse(path: &Path) -> Fixture {
    let text = std::fs::read_to_string(path).unwrap();
    let mut f = Fixture {
        path: path.to_owned(),
        header_lines: 0,
        expect: Vec::new(),
        args: Vec::new(),
    };
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("# ") else {
            break;
        };
        let Some((key, value)) = rest.split_once(": ") else {
            break;
        };
        if let Some(k) = key.strip_prefix("expect-") {
            f.expect.push((k.to_owned(), value.to_owned()));
        } else if let Some(k) = key.strip_prefix("limit-") {
            f.args.push(format!("--{k}={value}"));
        } else {
            break;
        }
        f.header_lines += 1;
    }
    f
}

pub fn trials() -> Vec<Trial> {
    crate::file_trials(
        &root().join("tests/fixtures/invalid"),
        "fixture",
        25,
        |path| run_fixture(&parse(path)),
    )
}

fn run_fixture(f: &Fixture) {
    assert!(
        !f.expect.is_empty(),
        "{}: no `# expect-*:` header",
        f.path.display()
    );
    let dir = f.path.parent().unwrap();
    let file = f.path.file_name().unwrap().to_str().unwrap();
    let mut args = vec!["validate", file, "--json"];
    args.extend(f.args.iter().map(String::as_str));
    let out = run(dir, &args, None);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "exit code; stdout: {stdout}; stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["valid"], false);
    let diags = report["diagnostics"].as_array().unwrap();
    let matching = diags.iter().find(|d| {
        f.expect
            .iter()
            .all(|(k, v)| matches(d, k, v, f.header_lines))
    });
    assert!(
        matching.is_some(),
        "no diagnostic satisfies {:?} (line numbers after a {}-line header); got {}",
        f.expect,
        f.header_lines,
        serde_json::to_string_pretty(diags).unwrap()
    );
    // What a person sees.
    let args: Vec<&str> = args.iter().copied().filter(|a| *a != "--json").collect();
    let human = run(dir, &args, None);
    let text = String::from_utf8_lossy(&human.stdout).into_owned();
    assert_eq!(human.status.code(), Some(1));
    let name = f.path.file_stem().unwrap().to_string_lossy().into_owned();
    insta::with_settings!({ snapshot_path => "../snapshots", prepend_module_to_snapshot => false, omit_expression => true }, {
        insta::assert_snapshot!(format!("fixture-{name}"), text);
    });
}

fn matches(d: &Value, key: &str, want: &str, header: usize) -> bool {
    let s = |k: &str| d[k].as_str().unwrap_or_default().to_owned();
    match key {
        "code" => s("code") == want,
        "path" => s("path") == want,
        "message" => s("message").contains(want),
        "expected" => s("expected").contains(want),
        "suggestion" => s("suggestion").contains(&format!("`{want}`")),
        "line" => d["span"]["line"].as_u64() == want.parse::<u64>().ok().map(|l| l + header as u64),
        other => panic!("unknown expectation `expect-{other}`"),
    }
}
