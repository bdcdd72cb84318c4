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
            ExitCode::from(EXIT_USAGE)
        }
    }
}
