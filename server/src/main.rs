//! The `provisioning` binary: parses the command line and hands over to the command.

use std::process::ExitCode;

fn main() -> ExitCode {
    // The Nickel sandbox child: no CLI parsing, no output but the protocol.
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == engine::sandbox::CHILD_COMMAND)
    {
        return engine::sandbox::child_main();
    }
    server::run(server::cli::parse())
}
