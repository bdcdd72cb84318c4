//! Turns Nickel's own diagnostics (codespan JSON) into [`Diagnostic`]s: positions mapped back
//! into the user's source, the field path and accepted values read from the notes our contracts
//! attach (`@path`, `@expected`, `@candidates`, `@got`, `@provider`), and a suggestion.

use knowledge::Catalog;
use serde::Deserialize;

use crate::suggest::did_you_mean;
use crate::{Diagnostic, Span};

/// Nickel numbers files in the order it loads them; the main source comes right after the
/// standard library's files.
const MAIN_FILE_ID: u64 = 2;

#[derive(Deserialize)]
struct Report {
    diagnostics: Vec<NickelDiagnostic>,
}

#[derive(Deserialize)]
struct NickelDiagnostic {
    message: String,
    #[serde(default)]
    labels: Vec<Label>,
    #[serde(default)]
    notes: Vec<String>,
}

#[derive(Deserialize)]
struct Label {
    style: String,
    file_id: u64,
    range: Range,
}

#[derive(Deserialize)]
struct Range {
    start: usize,
    end: usize,
}

/// Where the user's source sits inside the evaluated text.
pub(crate) struct Placement<'a> {
    pub user_source: &'a str,
    /// Bytes before the user's source (the wrapper's opening parenthesis).
    pub prefix_len: usize,
}

pub(crate) fn convert(
    report: &serde_json::Value,
    at: &Placement<'_>,
    catalog: &Catalog,
) -> Vec<Diagnostic> {
    let Ok(report) = Report::deserialize(report) else {
        return vec![Diagnostic::error(
            "evaluation",
            "Nickel reported an error that could not be read",
        )];
    };
    report
        .diagnostics
        .iter()
        .map(|d| one(d, at, catalog))
        .collect()
}

fn one(d: &NickelDiagnostic, at: &Placement<'_>, catalog: &Catalog) -> Diagnostic {
    let mut path = None;
    let mut expected = None;
    let mut candidates: Vec<String> = Vec::new();
    let mut got = None;
    let mut provider = None;
    let mut notes = Vec::new();
    for note in &d.notes {
        if let Some(v) = note.strip_prefix("@path ") {
            path = Some(v.to_owned());
        } else if let Some(v) = note.strip_prefix("@expected ") {
            expected = Some(v.to_owned());
        } else if let Some(v) = note.strip_prefix("@candidates ") {
            candidates = v.split(',').map(str::to_owned).collect();
        } else if let Some(v) = note.strip_prefix("@got ") {
            got = Some(v.to_owned());
        } else if let Some(v) = note.strip_prefix("@provider ") {
            provider = Some(v.to_owned());
        } else if !note.starts_with("Have you misspelled")
            && !note.starts_with("The record contract might")
        {
            notes.push(note.clone());
        }
    }
    let (head, custom) = match d.message.split_once('\n') {
        Some((h, rest)) => (h.to_owned(), Some(rest.trim().to_owned())),
        None => (d.message.clone(), None),
    };
    if path.is_none()
        && (head.starts_with("contract broken by the value of")
            || head.starts_with("missing definition for"))
    {
        path = backticked(&head);
    }
    let span = span_of(d, at);
    let at_end = span.is_some_and(|(s, _)| s >= at.user_source.trim_end().len());
    let (code, message) = classify(
        &head,
        custom,
        span.map(|(s, e)| &at.user_source[s..e]),
        got.is_some(),
        at_end,
    );
    let mut diag = Diagnostic::error(code, message);
    diag.path = path;
    diag.span = span.map(|(s, e)| Span::from_offsets(at.user_source, s, e));
    diag.expected =
        expected.or_else(|| (code == "syntax").then(|| syntax_expectation(&d.message, at_end)));
    diag.notes = notes;
    if let Some(got) = got {
        diag.suggestion = did_you_mean(&got, candidates.iter().map(String::as_str))
            .map(str::to_owned)
            .or_else(|| zone_by_place(&got, provider.as_deref(), &diag.message, catalog))
            .map(|s| format!("did you mean `{s}`?"));
    }
    diag
}

fn classify(
    head: &str,
    custom: Option<String>,
    token: Option<&str>,
    named: bool,
    at_end: bool,
) -> (&'static str, String) {
    if let Some(m) = custom {
        let code = if named && m.starts_with("unknown ") {
            "unknown-name"
        } else {
            "contract"
        };
        return (code, m);
    }
    if head.starts_with("unexpected")
        || head.contains("parse error")
        || head.starts_with("unmatched")
    {
        if at_end {
            return (
                "syntax",
                "syntax error: the config ends before its last expression is complete".to_owned(),
            );
        }
        let msg = match token.filter(|t| !t.is_empty() && t.len() <= 24 && !t.contains('\n')) {
            Some(t) => format!("syntax error: {head} `{t}`"),
            None => format!("syntax error: {head}"),
        };
        return ("syntax", msg);
    }
    if head.starts_with("contract broken") {
        return ("contract", head.to_owned());
    }
    if head.contains("incompatible types") || head.contains("type error") {
        return ("type", head.to_owned());
    }
    ("evaluation", head.to_owned())
}

fn syntax_expectation(message: &str, at_end: bool) -> String {
    if at_end || message.contains("end of file") {
        "the rest of the expression: an unclosed `{`, `[`, `(` or string?".to_owned()
    } else {
        "a Nickel record such as `{ workspace = { .. }, servers = [ .. ] }`: check for a missing `,` or `=` or an unbalanced bracket near here".to_owned()
    }
}

/// The primary label in the user's source, else any label there, as user-source byte offsets.
fn span_of(d: &NickelDiagnostic, at: &Placement<'_>) -> Option<(usize, usize)> {
    // The contracts follow the user's text in the same source: labels there are not the user's.
    // The wrapper right after the text, up to where the contracts begin, still marks the text's
    // end: a missing field is reported at the contract application `(...).Config`.
    let user_end = at.prefix_len + at.user_source.len() + "\n) | (".len();
    let in_user = |l: &&Label| {
        l.file_id == MAIN_FILE_ID && l.range.start >= at.prefix_len && l.range.start <= user_end
    };
    let label = d
        .labels
        .iter()
        .filter(in_user)
        .find(|l| l.style == "Primary")
        .or_else(|| d.labels.iter().find(|l| in_user(l)))?;
    let len = at.user_source.len();
    let mut start = (label.range.start - at.prefix_len).min(len);
    let mut end = (label.range.end.saturating_sub(at.prefix_len)).clamp(start, len);
    while !at.user_source.is_char_boundary(start) {
        start -= 1;
    }
    while !at.user_source.is_char_boundary(end) {
        end += 1;
    }
    Some((start, end))
}

fn backticked(s: &str) -> Option<String> {
    let start = s.find('`')? + 1;
    let len = s[start..].find('`')?;
    Some(s[start..start + len].to_owned())
}

/// A zone named by its city or country (`helsinki` → `hel1`), when exactly one zone matches.
fn zone_by_place(
    got: &str,
    provider: Option<&str>,
    message: &str,
    catalog: &Catalog,
) -> Option<String> {
    if !message.starts_with("unknown zone") {
        return None;
    }
    let p = catalog.provider(provider?)?;
    let g = got.to_lowercase();
    let mut hits = p.zones.iter().filter(|(_, z)| {
        z.city.to_lowercase() == g
            || z.country.to_lowercase() == g
            || z.title.to_lowercase().contains(&g)
    });
    match (hits.next(), hits.next()) {
        (Some((name, _)), None) => Some(name.clone()),
        _ => None,
    }
}
