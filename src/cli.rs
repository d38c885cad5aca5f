//! Command-line interface. The headless contract is relied on by integrators and tests:
//! change it only compatibly.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use mynalink_simcard::SimKey;

#[derive(Parser, Debug)]
#[command(
    name = "mynalink",
    version,
    about = "マイナ免許証のマイナポータル連携（第1段階）/ First-stage Mynaportal linking for driving licenses"
)]
pub struct Cli {
    /// Settings file (TOML); default $XDG_CONFIG_HOME/mynalink/config.toml.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Open the staff window on the built-in simulated card and an embedded backend.
    #[arg(long)]
    pub demo: bool,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the first stage without a window: against a reader, the simulated card, or a trace.
    Headless(Box<HeadlessArgs>),
    /// List card readers, cards, JPKI tokens and signing-password tries left.
    Readers(ReadersArgs),
    /// Show the whole flow on the built-in simulated card.
    Demo(DemoArgs),
    /// Put the simulated card in the vpcd virtual reader of a running pcscd.
    Vcard(Box<VcardArgs>),
    /// Show, deliver or release the signed bindings waiting for the backend.
    Outbox(OutboxArgs),
    /// Check why this counter could not link: configuration, pcscd and readers, the Japanese
    /// font, CA certificates, backend and token, clock, outbox. Exits 1 when a check fails.
    Doctor(DoctorArgs),
    /// The full-screen self-service kiosk.
    Kiosk(KioskArgs),
    /// Make the `operator_password_hash` line for the config file.
    OperatorPassword(OperatorPasswordArgs),
    /// Write the manual pages (mynalink.1 and one per subcommand) into DIR (for packaging).
    #[command(hide = true)]
    GenerateManpages(GenerateManpagesArgs),
    /// Print the completion script for SHELL on standard output (for packaging).
    #[command(hide = true)]
    GenerateCompletions(GenerateCompletionsArgs),
}

#[derive(Args, Debug, Clone)]
pub struct GenerateManpagesArgs {
    /// The directory to write the pages into (created if missing).
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
}

#[derive(Args, Debug, Clone)]
pub struct GenerateCompletionsArgs {
    /// bash, zsh or fish.
    #[arg(value_name = "SHELL")]
    pub shell: CompletionShell,
}

/// The shells the Debian package ships completions for.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompletionShell {
    Bash,
    Zsh,
    Fish,
}

#[derive(Args, Debug, Clone)]
pub struct OperatorPasswordArgs {
    /// Read the password from one line of standard input instead of asking twice.
    #[arg(long)]
    pub stdin: bool,
}

#[derive(Args, Debug, Clone)]
pub struct KioskArgs {
    /// On the built-in simulated card and an embedded backend.
    #[arg(long)]
    pub demo: bool,
}

/// Where signed bindings go. Flags override the config file.
#[derive(Args, Debug, Clone, Default)]
pub struct BackendArgs {
    /// The backend's base URL (https; http only to a literal loopback address: 127.0.0.1, [::1]).
    #[arg(long, global = true, value_name = "URL")]
    pub backend: Option<String>,
    /// File holding this terminal's bearer token.
    #[arg(long, global = true, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// The root certificate (PEM) of the backend's TLS certificate, if not a public one; then
    /// the only root trusted.
    #[arg(long, global = true, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// The backend's public key (PEM): the outbox keeps certificates sealed to it.
    #[arg(long, global = true, value_name = "FILE")]
    pub backend_key: Option<PathBuf>,
    /// The outbox database (default: $XDG_DATA_HOME/mynalink/outbox.db).
    #[arg(long, global = true, value_name = "FILE")]
    pub outbox: Option<PathBuf>,
}

#[derive(Args, Debug, Clone)]
pub struct OutboxArgs {
    #[command(subcommand)]
    pub action: OutboxAction,
    #[command(flatten)]
    pub backend: BackendArgs,
    /// Print JSON.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Subcommand, Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboxAction {
    /// List the waiting bindings (no personal data).
    List,
    /// Deliver every waiting binding now, whatever its backoff says (an operator who sees the
    /// backend back wants it sent). Exits 1 when anything is left (queued or held for an
    /// operator).
    Flush {
        /// Only the bindings whose next attempt is due (what the background sender does).
        #[arg(long)]
        due_only: bool,
    },
    /// Put an entry held for an operator back in the queue once its cause is fixed (nothing
    /// is ever deleted).
    Retry {
        /// The entry's id, as `outbox list` shows it.
        id: i64,
    },
}

#[derive(Args, Debug, Clone)]
#[group(required = false, multiple = false, id = "card_source")]
pub struct CardSource {
    /// PC/SC reader name (exact, or a unique part of it). Without a name, or with "auto":
    /// the only reader holding a My Number card. Default: `reader` in the config file.
    #[arg(long, value_name = "NAME", num_args = 0..=1, default_missing_value = "auto")]
    pub reader: Option<String>,
    /// Use the built-in simulated card (its TEST root is trusted for this run).
    #[arg(long)]
    pub sim: bool,
    /// Answer from a recorded APDU trace (offline: a replay never uploads).
    #[arg(long, value_name = "FILE")]
    pub replay: Option<PathBuf>,
}

#[derive(Args, Debug, Clone)]
pub struct HeadlessArgs {
    #[command(flatten)]
    pub source: CardSource,

    /// The 12-digit driving-license number.
    #[arg(long, value_name = "NUMBER")]
    pub license: String,

    /// Stop after local verification; nothing is uploaded.
    #[arg(long, conflicts_with = "backend")]
    pub offline: bool,

    #[command(flatten)]
    pub delivery: BackendArgs,

    /// Read the signing password from one line of standard input (never from argv or the
    /// environment). Without it, the password is asked on the terminal with echo off.
    #[arg(long)]
    pub pin_stdin: bool,

    /// Allow the VERIFY when only one try is left.
    #[arg(long)]
    pub confirm_last_try: bool,

    /// Write an APDU trace of this run (mode 0600; password masked; from a reader, the
    /// signing certificate only as SHA-256).
    #[arg(long, value_name = "FILE")]
    pub record: Option<PathBuf>,

    /// Keep the signing certificate's bytes — the holder's name, address, birth date and
    /// sex — in the trace of a reader's card. Without it a replay stops at the certificate.
    #[arg(long, requires = "record")]
    pub record_certificate: bool,

    /// Extra trust anchor (PEM or DER), e.g. a test root. Repeatable.
    #[arg(long = "trust-anchor", value_name = "FILE")]
    pub trust_anchors: Vec<PathBuf>,

    /// J-LIS signing CA certificate (PEM or DER); must match a pinned fingerprint. Repeatable.
    /// Saves reading the CA certificate from the card.
    #[arg(long = "jpki-ca", value_name = "FILE")]
    pub jpki_ca: Vec<PathBuf>,

    /// This terminal's id, written into the signed statement (default: config, else
    /// "local-terminal").
    #[arg(long, value_name = "ID")]
    pub terminal_id: Option<String>,

    /// The operator's id, written into the signed statement.
    #[arg(long, value_name = "ID")]
    pub operator_id: Option<String>,

    /// Print exactly one JSON object on standard output.
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub sim: SimArgs,
}

/// Options of the built-in simulated card.
#[derive(Args, Debug, Clone, Default)]
pub struct SimArgs {
    /// Simulated card: signing-password tries left (0-5).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(0..=5))]
    pub sim_tries: Option<u8>,
    /// Simulated card: the signing password is blocked.
    #[arg(long)]
    pub sim_blocked: bool,
    /// Simulated card: no signing certificate (holder under 15).
    #[arg(long)]
    pub sim_no_certificate: bool,
    /// Simulated card: the signing certificate has expired.
    #[arg(long)]
    pub sim_expired: bool,
    /// Simulated card: latency added to every APDU, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pub sim_apdu_latency_ms: u64,
    /// Simulated card: latency added to each signature, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pub sim_sign_latency_ms: u64,
    /// Simulated card: answer like a T=0 card (61xx / 6Cxx).
    #[arg(long)]
    pub sim_t0: bool,
    /// Simulated card: refuse extended-length APDUs.
    #[arg(long)]
    pub sim_no_extended: bool,
    /// Simulated card: token label in EF 0006 (e.g. JPKIAPGPSETOKEN for a phone).
    #[arg(long, value_name = "LABEL")]
    pub sim_token: Option<String>,
    /// Simulated card: not a My Number card (no JPKI application).
    #[arg(long)]
    pub sim_not_jpki: bool,
    /// Simulated card: removed after this many APDUs.
    #[arg(long, value_name = "N")]
    pub sim_remove_after: Option<usize>,
    /// Simulated card: its signing key (default rsa2048). ec-p384 is a PROVISIONAL
    /// next-generation profile: J-LIS has not published that card's identifiers, files or
    /// SIGN format, so the simulated card assumes them.
    #[arg(long, value_name = "KEY", value_parser = sim_key_parser())]
    pub sim_key: Option<SimKey>,
}

/// `--sim-key`: the simulated card's key kinds, each with what it stands for.
fn sim_key_parser() -> impl clap::builder::TypedValueParser<Value = SimKey> {
    use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
    PossibleValuesParser::new(
        SimKey::ALL.map(|key| PossibleValue::new(key.name()).help(key.description())),
    )
    // Only the names above get here, so the fallback is never taken.
    .map(|name| SimKey::parse(&name).unwrap_or_default())
}

#[derive(Args, Debug, Clone)]
pub struct VcardArgs {
    /// vpcd's port: 35963 is `Virtual PCD 00 00`, 35964 is `Virtual PCD 00 01`.
    #[arg(long, default_value_t = mynalink_simcard::vpcd::DEFAULT_PORT)]
    pub port: u16,
    /// vpcd's host.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Remove the card (close the connection) when APDU N+1 of an insertion arrives.
    #[arg(long, value_name = "N")]
    pub remove_after: Option<usize>,
    /// After a removal, insert the card again after this many milliseconds.
    #[arg(long, value_name = "MS")]
    pub reinsert_after: Option<u64>,
    /// Stop after this many insertions.
    #[arg(long, value_name = "N")]
    pub max_insertions: Option<usize>,
    /// Print one JSON object per event on standard output.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub sim: SimArgs,
}

#[derive(Args, Debug, Clone)]
pub struct DoctorArgs {
    /// Print one JSON object (`ok`, `checks`) instead of one line per check.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug, Clone)]
pub struct ReadersArgs {
    /// Print JSON instead of a table (with --watch: one JSON object per line).
    #[arg(long)]
    pub json: bool,
    /// Keep running: print the current readers and cards, then one line per change
    /// (reader plugged or unplugged, card inserted or removed, PC/SC service lost or back).
    #[arg(long)]
    pub watch: bool,
}

#[derive(Args, Debug, Clone)]
pub struct DemoArgs {
    /// Run in the terminal instead of a window (the default without a display).
    #[arg(long)]
    pub headless: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn version_flag_prints_the_package_version() {
        let e = Cli::try_parse_from(["mynalink", "--version"]).expect_err("--version exits");
        assert_eq!(e.kind(), clap::error::ErrorKind::DisplayVersion);
        assert!(e.to_string().contains(env!("CARGO_PKG_VERSION")), "{e}");
    }

    #[test]
    fn exactly_one_card_source() {
        let parse = |args: &[&str]| Cli::try_parse_from(args);
        assert!(parse(&["mynalink", "headless", "--sim", "--license", "1"]).is_ok());
        assert!(parse(&["mynalink", "headless", "--license", "1"]).is_ok());
        assert!(parse(&["mynalink", "headless", "--reader", "--license", "1"]).is_ok());
        assert!(parse(&[
            "mynalink",
            "headless",
            "--sim",
            "--reader",
            "x",
            "--license",
            "1"
        ])
        .is_err());
    }

    #[test]
    fn sim_key_takes_the_three_kinds_and_labels_the_provisional_one() {
        let key = |value: &str| {
            Cli::try_parse_from([
                "mynalink",
                "headless",
                "--sim",
                "--license",
                "1",
                "--sim-key",
                value,
            ])
            .map(|cli| match cli.command {
                Some(Command::Headless(args)) => args.sim.sim_key,
                _ => None,
            })
        };
        assert_eq!(key("rsa2048").ok().flatten(), Some(SimKey::Rsa2048));
        assert_eq!(key("rsa3072").ok().flatten(), Some(SimKey::Rsa3072));
        assert_eq!(key("ec-p384").ok().flatten(), Some(SimKey::EcP384));
        assert!(key("ec-p256").is_err());
        assert!(key("rsa4096").is_err());
        let help = Cli::command()
            .find_subcommand_mut("headless")
            .map(|c| c.render_long_help().to_string())
            .unwrap_or_default();
        let line = help
            .lines()
            .find(|l| l.contains("ec-p384:"))
            .unwrap_or_default();
        assert!(line.contains("PROVISIONAL"), "{help}");
    }

    #[test]
    fn no_password_option_exists() {
        // The password must never come from argv.
        let help = Cli::command()
            .find_subcommand_mut("headless")
            .map(|c| c.render_long_help().to_string())
            .unwrap_or_default();
        assert!(help.contains("--pin-stdin"));
        assert!(!help.contains("--pin "));
        assert!(!help.contains("--password"));
    }
}
