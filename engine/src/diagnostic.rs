//! Structured diagnostics: what is wrong, where (field path and source position), what would be
//! accepted, and a suggestion. Rendered for people like compiler errors, serialized for tools.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// A source range, 1-based lines and columns (columns count characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Span {
    pub line: usize,
    pub column: usize,
    pub end_line: usize,
    pub end_column: usize,
}

impl Span {
    /// The span of bytes `start..end` of `source`, clamped to it.
    pub fn from_offsets(source: &str, start: usize, end: usize) -> Span {
        let (line, column) = line_col(source, start);
        let (end_line, end_column) = line_col(source, end.max(start));
        Span {
            line,
            column,
            end_line,
            end_column,
        }
    }
}

fn line_col(source: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(source.len());
    while !source.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &source[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

/// One finding about a configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Diagnostic {
    pub severity: Severity,
    /// Stable kind: `syntax`, `contract`, `unknown-name`, `duplicate-name`, `dependency-cycle`,
    /// `reference`, `limit`, `evaluation`, `forbidden-import`, `type`, `requirement`.
    pub code: String,
    pub message: String,
    /// Field path, e.g. `servers[1].zone`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub span: Option<Span>,
    /// What would be accepted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected: Option<String>,
    /// A likely fix, e.g. "did you mean `de-fra1`?".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suggestion: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl Diagnostic {
    pub fn error(code: &str, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            code: code.to_owned(),
            message: message.into(),
            path: None,
            span: None,
            expected: None,
            suggestion: None,
            notes: Vec::new(),
        }
    }

    pub fn warning(code: &str, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(code, message)
        }
    }

    pub fn at(mut self, path: impl Into<String>) -> Self {
        self.path = Some(path.into());
        self
    }

    pub fn with_span(mut self, span: Option<Span>) -> Self {
        self.span = span;
        self
    }

    pub fn expected(mut self, expected: impl Into<String>) -> Self {
        self.expected = Some(expected.into());
        self
    }

    pub fn suggest(mut self, suggestion: Option<String>) -> Self {
        self.suggestion = suggestion;
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// Renders like a compiler message, quoting the offending source line when known:
    ///
    /// ```text
    /// error: unknown zone `fra9` for provider `upcloud`
    ///   --> stack.ncl:7:12 (servers[1].zone)
    ///    |
    ///  7 |     zone = "fra9",
    ///    |            ^^^^^^
    ///    = expected: one of `de-fra1`, `fi-hel1`
    ///    = help: did you mean `de-fra1`?
    /// ```
    pub fn render(&self, file: &str, source: Option<&str>) -> String {
        let mut out = String::new();
        let level = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        let _ = writeln!(out, "{level}: {}", self.message);
        let path = self
            .path
            .as_deref()
            .map(|p| format!(" ({p})"))
            .unwrap_or_default();
        let line_text = self
            .span
            .and_then(|s| source.and_then(|src| src.lines().nth(s.line.saturating_sub(1))));
        let gutter = self.span.map_or(1, |s| s.line.to_string().len());
        let pad = " ".repeat(gutter);
        match self.span {
            Some(s) => {
                let _ = writeln!(out, "{pad}--> {file}:{}:{}{path}", s.line, s.column);
            }
            None => {
                let _ = writeln!(out, "{pad}--> {file}{path}");
            }
        }
        if let (Some(s), Some(text)) = (self.span, line_text) {
            let width = if s.end_line == s.line {
                s.end_column.saturating_sub(s.column).max(1)
            } else {
                text.chars().count().saturating_sub(s.column - 1).max(1)
            };
            let _ = writeln!(out, "{pad} |");
            let _ = writeln!(out, "{} | {text}", s.line);
            let _ = writeln!(
                out,
                "{pad} | {}{}",
                " ".repeat(s.column - 1),
                "^".repeat(width)
            );
        }
        if let Some(e) = &self.expected {
            let _ = writeln!(out, "{pad} = expected: {e}");
        }
        if let Some(h) = &self.suggestion {
            let _ = writeln!(out, "{pad} = help: {h}");
        }
        for n in &self.notes {
            let _ = writeln!(out, "{pad} = note: {n}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_count_lines_and_characters() {
        let src = "{\n  zone = \"fräu\",\n}";
        let start = src.find("\"fräu\"").unwrap();
        let s = Span::from_offsets(src, start, start + "\"fräu\"".len());
        assert_eq!((s.line, s.column, s.end_line, s.end_column), (2, 10, 2, 16));
    }

    #[test]
    fn render_points_at_the_value() {
        let src = "{\n  zone = \"fra9\",\n}";
        let d = Diagnostic::error("unknown-name", "unknown zone `fra9`")
            .at("servers[0].zone")
            .with_span(Some(Span {
                line: 2,
                column: 10,
                end_line: 2,
                end_column: 16,
            }))
            .expected("one of `de-fra1`")
            .suggest(Some("did you mean `de-fra1`?".into()));
        let text = d.render("x.ncl", Some(src));
        assert!(text.contains("--> x.ncl:2:10 (servers[0].zone)"), "{text}");
        assert!(text.contains("2 |   zone = \"fra9\","), "{text}");
        assert!(text.contains("  |          ^^^^^^\n"), "{text}");
        assert!(text.contains("= help: did you mean `de-fra1`?"), "{text}");
    }
}
