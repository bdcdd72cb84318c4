//! The log: `tracing` events on standard error, as human lines or JSON objects, each line passed
//! through the redactor (every secret the server knows becomes `[redacted]`) before it is
//! written. Library crates only emit events; this is the one place that prints them.

use std::io::Write;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use crate::cli::LogFormat;

/// Sets the process's log up. `filter` is `--log` (or `PROVISIONING_LOG`); without it `RUST_LOG`,
/// then `default`. A filter that does not parse is reported and the default used instead.
pub fn init(
    format: LogFormat,
    filter: Option<&str>,
    default: &str,
    redactor: service::model::Redactor,
) {
    let (filter, problem) =
        pick_filter(filter, crate::settings::var("RUST_LOG").as_deref(), default);
    let writer = Redacting { redactor };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_target(true);
    let installed = match format {
        LogFormat::Human => builder.with_ansi(false).compact().try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(true)
            .try_init(),
    };
    // A second init (tests that run commands in one process) keeps the first.
    let _ = installed;
    if let Some(problem) = problem {
        tracing::warn!("{problem}");
    }
}

/// The filter to use and, when one given was refused, why.
fn pick_filter(
    flag: Option<&str>,
    env: Option<&str>,
    default: &str,
) -> (EnvFilter, Option<String>) {
    let chosen = flag.or(env).filter(|f| !f.trim().is_empty());
    match chosen.map(EnvFilter::try_new) {
        Some(Ok(filter)) => (filter, None),
        Some(Err(e)) => (
            EnvFilter::new(default),
            Some(format!(
                "the log filter `{}` is not valid ({e}); logging at `{default}`. A level (error, warn, info, debug, trace) or a filter such as `info,engine=debug` is accepted",
                chosen.unwrap_or_default()
            )),
        ),
        None => (EnvFilter::new(default), None),
    }
}

/// Standard error, with every known secret replaced in each formatted event.
#[derive(Clone)]
struct Redacting {
    redactor: service::model::Redactor,
}

impl<'a> MakeWriter<'a> for Redacting {
    type Writer = RedactingLine;

    fn make_writer(&'a self) -> Self::Writer {
        RedactingLine {
            redactor: self.redactor.clone(),
            buf: Vec::new(),
        }
    }
}

/// One event: collected whole (the formatter writes it in pieces), redacted and written in one
/// call when dropped, so a secret split across pieces is still found.
struct RedactingLine {
    redactor: service::model::Redactor,
    buf: Vec<u8>,
}

impl Write for RedactingLine {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for RedactingLine {
    fn drop(&mut self) {
        emit(&self.redactor, &self.buf, &mut std::io::stderr().lock());
    }
}

/// Writes one collected event to `out`, redacted.
fn emit(redactor: &service::model::Redactor, event: &[u8], out: &mut dyn Write) {
    if event.is_empty() {
        return;
    }
    let text = String::from_utf8_lossy(event);
    let _ = out.write_all(redactor.redact(&text).as_bytes());
    let _ = out.flush();
}

#[cfg(test)]
mod tests {
    use super::{RedactingLine, emit, pick_filter};
    use std::io::Write;

    #[test]
    fn a_bad_filter_falls_back_to_the_default_and_says_why() {
        let (_, problem) = pick_filter(Some("info,engine=loud"), None, "warn");
        let problem = problem.unwrap();
        assert!(
            problem.contains("`info,engine=loud` is not valid") && problem.contains("`warn`"),
            "{problem}"
        );
        let (filter, problem) = pick_filter(None, Some("debug"), "warn");
        assert!(problem.is_none());
        assert_eq!(filter.to_string(), "debug");
        let (filter, _) = pick_filter(Some("error"), Some("debug"), "warn");
        assert_eq!(filter.to_string(), "error");
        let (filter, _) = pick_filter(None, None, "info");
        assert_eq!(filter.to_string(), "info");
    }

    #[test]
    fn a_secret_split_across_writes_is_redacted_in_the_line() {
        let redactor = service::model::Redactor::new();
        redactor.register("hunter2-very-secret-token");
        let mut line = RedactingLine {
            redactor: redactor.clone(),
            buf: Vec::new(),
        };
        line.write_all(b"connect failed: token hunter2-very")
            .unwrap();
        line.write_all(b"-secret-token rejected\n").unwrap();
        let mut out = Vec::new();
        emit(&redactor, &line.buf, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "connect failed: token [redacted] rejected\n"
        );
        line.buf.clear();
    }
}
