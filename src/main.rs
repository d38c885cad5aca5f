//! mynalink: the first stage of linking a driving-license record with Mynaportal, at the
//! license center. See README.md for the modes.

mod cli;
mod config;
mod delivery;
mod demo;
mod headless;
mod password_input;
mod readers;
mod report;
mod source;
mod vcard;

use clap::Parser;

fn main() {
    let cli = cli::Cli::parse();
    let code = match cli.command {
        Some(cli::Command::Headless(args)) => headless::run(&args, cli.config.as_deref()),
        Some(cli::Command::Readers(args)) => readers::run(&args),
        Some(cli::Command::Demo(args)) => demo::run(&args),
        Some(cli::Command::Vcard(args)) => vcard::run(&args),
        Some(cli::Command::Outbox(args)) => delivery::run(&args, cli.config.as_deref()),
        None => {
            eprintln!(
                "mynalink: the window (staff and kiosk modes) is not part of this build yet; \
                 use `mynalink headless`, `mynalink readers` or `mynalink demo --headless`."
            );
            2
        }
    };
    std::process::exit(code);
}
