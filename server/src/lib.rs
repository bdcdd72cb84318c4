//! The composition root of Provisioning: command-line interface, settings (command line over
//! `PROVISIONING_*` environment variables over defaults) and the commands themselves.

mod api;
pub mod cli;
mod commands;
mod http;
mod logging;
mod remote;
mod settings;
mod table;

use std::process::ExitCode;

pub use settings::Settings;

/// Exit code for usage and I/O errors (1 is reserved for "the input is invalid").
pub const EXIT_USAGE: u8 = 2;
/// Exit code when policy, or a read-only server, refuses what was asked (as for a denied plan).
pub const EXIT_REFUSED: u8 = 4;

/// The exit code of a command that stopped with `e`, decided once from the application
/// layer's error kind: a refusal (policy, a read-only server) is [`EXIT_REFUSED`]; anything
/// else (a bad argument, an unknown id, a stale plan, a held lock, an unreachable server) is
/// [`EXIT_USAGE`], with the message saying which. Outcomes that are not errors (a failed run,
/// a plan waiting for approval) have their own codes where the commands report them.
pub fn exit_code(e: &anyhow::Error) -> u8 {
    let kind = e
        .chain()
        .find_map(|cause| cause.downcast_ref::<service::Error>())
        .map(service::Error::kind);
    match kind {
        Some(service::ErrorKind::Forbidden | service::ErrorKind::ReadOnly) => EXIT_REFUSED,
        _ => EXIT_USAGE,
    }
}

/// Runs a parsed command line and returns the process exit code.
pub fn run(cli: cli::Cli) -> ExitCode {
    let settings = match Settings::from_cli(&cli.global) {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let long_running = matches!(
        cli.command,
        cli::Command::Serve(_) | cli::Command::Daemon(_)
    );
    logging::init(
        cli.global.log_format,
        cli.global.log.as_deref(),
        // The dependencies' own info lines (the database's settings, each MCP session) are noise
        // at the default level, and so are the embedded database's complaints about its
        // background tasks when a command ends; `--log debug` shows them.
        if long_running {
            "info,surrealdb=warn,surrealdb_core::kvs::tasks=off,rmcp=warn"
        } else {
            "warn,surrealdb_core::kvs::tasks=off"
        },
        settings.secrets.redactor().clone(),
    );
    let result = match cli.command {
        cli::Command::Validate(args) => commands::validate::run(&settings, &args),
        cli::Command::Export(args) => commands::export::run(&settings, &args),
        cli::Command::Catalog(args) => commands::catalog::run(&args),
        cli::Command::Schema(args) => commands::schema::run(&args),
        cli::Command::Plan(args) => commands::plan::run(&settings, &args),
        cli::Command::Apply(args) => commands::apply::apply(&settings, &args),
        cli::Command::Destroy(args) => commands::apply::destroy(&settings, &args),
        cli::Command::Resume(args) => commands::apply::resume(&settings, &args),
        cli::Command::Rollback(args) => commands::apply::rollback(&settings, &args),
        cli::Command::Status(args) => commands::status::status(&settings, &args),
        cli::Command::Cancel(args) => commands::status::cancel(&settings, &args),
        cli::Command::Drift(args) => commands::state::drift(&settings, &args),
        cli::Command::State(args) => commands::state::state(&settings, &args),
        cli::Command::Policy(args) => commands::policy::run(&settings, &args),
        cli::Command::Approvals(args) => commands::approvals::run(&settings, &args),
        cli::Command::Serve(args) => commands::serve::run(&settings, &args),
        cli::Command::Daemon(args) => commands::daemon::run(&settings, &args),
        cli::Command::Audit(args) => commands::audit::run(&settings, &args),
        cli::Command::Docs(args) => commands::docs::run(&settings, &args),
        cli::Command::Init(args) => commands::init::run(&settings, &args),
        cli::Command::Token(args) => commands::token::run(&settings, &args),
        cli::Command::Doctor(args) => commands::doctor::run(&settings, &args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            let text = format!("{e:#}");
            eprintln!("error: {}", settings.secrets.redactor().redact(&text));
            ExitCode::from(exit_code(&e))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{EXIT_REFUSED, EXIT_USAGE, exit_code};
    use service::{Error, ErrorKind};

    #[test]
    fn the_exit_code_comes_from_the_error_kind_wherever_the_error_is_wrapped() {
        let refused = |kind| anyhow::Error::new(Error::new(kind, "t", "m"));
        assert_eq!(exit_code(&refused(ErrorKind::Forbidden)), EXIT_REFUSED);
        assert_eq!(exit_code(&refused(ErrorKind::ReadOnly)), EXIT_REFUSED);
        assert_eq!(
            exit_code(&refused(ErrorKind::Forbidden).context("while applying")),
            EXIT_REFUSED
        );
        for kind in [
            ErrorKind::NotFound,
            ErrorKind::Conflict,
            ErrorKind::BadInput,
        ] {
            assert_eq!(exit_code(&refused(kind)), EXIT_USAGE, "{kind:?}");
        }
        assert_eq!(
            exit_code(&anyhow::anyhow!("cannot read `x.ncl`")),
            EXIT_USAGE
        );
    }
}
