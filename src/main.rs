//! mynalink: the first stage of linking a driving-license record with Mynaportal, at the
//! license center. See README.md for the modes.

mod cli;
mod config;
mod delivery;
mod demo;
mod doctor;
mod gui;
mod headless;
mod logging;
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
    let logged = match &cli.command {
        Some(cli::Command::Headless(_)) => Some("headless"),
        Some(cli::Command::Readers(_)) => Some("readers"),
        Some(cli::Command::Demo(_)) => Some("demo"),
        Some(cli::Command::Kiosk(_)) => Some("kiosk"),
        Some(cli::Command::Vcard(_)) => Some("vcard"),
        Some(cli::Command::Outbox(_)) => Some("outbox"),
        Some(cli::Command::OperatorPassword(_)) => Some("operator-password"),
        Some(cli::Command::Doctor(_)) => Some("doctor"),
        // Run when the package is built, by whoever builds it: no log file in their home.
        Some(cli::Command::GenerateManpages(_) | cli::Command::GenerateCompletions(_)) => None,
        None => Some("staff"),
    };
    if let Some(command) = logged {
        logging::init(command);
    }
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
        Some(cli::Command::Doctor(args)) => doctor::run(&args, cli.config.as_deref()),
        Some(cli::Command::GenerateManpages(args)) => manuals::write_manpages(&args.dir),
        Some(cli::Command::GenerateCompletions(args)) => manuals::write_completions(args.shell),
        None => gui::run(gui::Mode::Staff, cli.demo, cli.config.as_deref()),
    };
    std::process::exit(code);
}
