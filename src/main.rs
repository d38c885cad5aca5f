//! mynalink: the first stage of linking a driving-license record with Mynaportal, at the
//! license center. See README.md for the modes.

mod cli;
mod config;
mod delivery;
mod demo;
mod gui;
mod headless;
mod manuals;
mod operator_password;
mod password_input;
mod readers;
mod report;
mod source;
mod vcard;

use clap::Parser;

fn main() {
    gui::mark_process_start();
    let cli = cli::Cli::parse();
    let code = match cli.command {
        Some(cli::Command::Headless(args)) => headless::run(&args, cli.config.as_deref()),
        Some(cli::Command::Readers(args)) => readers::run(&args),
        Some(cli::Command::Demo(args)) => demo::run(&args, cli.config.as_deref()),
        Some(cli::Command::Kiosk(args)) => {
            gui::run(gui::Mode::Kiosk, args.demo, cli.config.as_deref())
        }
        Some(cli::Command::Vcard(args)) => vcard::run(&args),
        Some(cli::Command::Outbox(args)) => delivery::run(&args, cli.config.as_deref()),
        Some(cli::Command::OperatorPassword(args)) => operator_password::run(args.stdin),
        Some(cli::Command::GenerateManpages(args)) => manuals::write_manpages(&args.dir),
        Some(cli::Command::GenerateCompletions(args)) => manuals::write_completions(args.shell),
        None => gui::run(gui::Mode::Staff, cli.demo, cli.config.as_deref()),
    };
    std::process::exit(code);
}
