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
    // The supervisor of a local taskserv process: outlives the command that started it.
    let args: Vec<String> = std::env::args().collect();
    if args
        .get(1)
        .is_some_and(|a| a == engine::provider::local::SUPERVISE_COMMAND)
    {
        let code = engine::provider::local::supervise_main(&args[2..]);
        return std::process::ExitCode::from(u8::try_from(code).unwrap_or(1));
    }
    quiet_on_broken_pipe();
    server::run(server::cli::parse())
}

/// `provisioning plan FILE | head`: when the reader goes away, stop quietly with the status a
/// SIGPIPE would give (141) instead of a panic message from `println!`.
fn quiet_on_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if message.contains("Broken pipe") {
            std::process::exit(141);
        }
        default(info);
    }));
}
