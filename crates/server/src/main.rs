//! `mynalink-server`: the reference backend's command line.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use mynalink_link::seal::SealPrivateKey;
use mynalink_server::basic4_key::Basic4Key;
use mynalink_server::import::{self, ImportError};
use mynalink_server::secret_file::{read_secret, write_new_secret};
use mynalink_server::serve::{self as server, ServeError, ServeOptions};
use mynalink_server::token_admin::{self, TokenCommand};
use mynalink_server::{DatabaseUrl, Store};

const USAGE: &str = "usage:
  mynalink-server import-licenses --database URL [--database-password-file FILE] FILE.csv
  mynalink-server seal-key generate --out FILE
  mynalink-server seal-key public FILE [--out PUB]
  mynalink-server basic4-key generate --out FILE
  mynalink-server token add --file FILE --id ID
  mynalink-server token revoke --file FILE --id ID
  mynalink-server token list --file FILE
  mynalink-server --version
  mynalink-server serve --listen ADDR --database URL [--database-password-file FILE]
        [--tls-cert FILE --tls-key FILE]
        [--terminal-tokens FILE] [--mynaportal-tokens FILE --basic4-key FILE]
        [--admin-tokens FILE] [--trust-anchor FILE]... [--seal-key FILE]
        [--insecure-loopback-http] [--freshness-hours N] [--allow-test-root]
        [--max-connections N] [--max-connections-per-ip N]
        [--log-format text|json] [--metrics-listen ADDR [--metrics-allow-remote]]
        (--ocsp URL | --crl FILE_OR_URL)... [--ocsp-signer FILE]... | --revocation off
        [--revocation require|prefer|off] [--crl-refresh-minutes N] [--recheck-hours N]
  mynalink-server recheck --database URL [--database-password-file FILE]
        [--trust-anchor FILE]... [--allow-test-root] (revocation options as for serve)

URL is sqlite:PATH or postgres://USER@HOST[:PORT]/DB (the database must exist; its schema
is created and migrated at start). A password in the URL is refused: it comes from the first
line of --database-password-file FILE, or else from PGPASSFILE or ~/.pgpass
(host:port:database:user:password); each must be mode 0600 or stricter. PostgreSQL
statements time out after 5 s, lock waits after 2 s; a request waits at most 3 s for a
database connection, else it is answered 503 server_busy with Retry-After.
The CSV needs the header license_number,holding,name,birth_date,status.
ADDR is IP:PORT (port 0 picks a free one; the line `listening on URL` tells which).
TLS is required unless --insecure-loopback-http is given with a loopback ADDR.
The simulated card's TEST root (its private key is public) is refused as a --trust-anchor
unless --allow-test-root is given: demos and tests only.
The tokens files have one `ID SHA256_HEX_OF_TOKEN` per line (# comments). Terminals submit
first stages; Mynaportal runs the second stage and cancels; admins may cancel; all read status.
`token add` makes a random token (256 bits, base64url), prints it once and appends its
hash to FILE (created 0600); `token revoke` removes the id's line; `token list` prints the
ids. A running server re-reads its token files on SIGHUP (a bad file keeps the old tokens).
--log-format: text (default, one plain line per event for journald) or json (one object per
line), on standard error. --metrics-listen ADDR (IP:PORT, or PORT on 127.0.0.1) serves
Prometheus metrics at /metrics over plain HTTP; off unless given; a non-loopback address
needs --metrics-allow-remote. GET /readyz is 200 only when the database answers and its
schema is current; GET /healthz is liveness.
--seal-key is the X25519 private key (PKCS#8 PEM) terminals seal certificates to (HPKE).
`seal-key generate` writes a new one (mode 0600, never over an existing file) and prints its
key id; `seal-key public` writes its public key (to PUB or standard output), the file
terminals configure as backend_key.
--basic4-key (required with --mynaportal-tokens) is the key the second stage's card-info
basic-4 is hashed with (HMAC-SHA-256 per field; the database never holds the values): 64
hexadecimal characters on one line. `basic4-key generate` writes a new random one.
Secret files (TLS key, seal key, basic-4 key, token files) must not be readable or writable
by group or others (mode 0600); new ones are written 0600 and never over an existing file.
--max-connections caps open connections (default: from the descriptor limit, ulimit -n, with
a quarter of it, at least 64, kept for the database and files; at most 4096);
--max-connections-per-ip caps them per source address (default 32; IPv6 per /64). A connection
over a cap is closed at once. A request head must arrive within 10 s (also the idle keep-alive
timeout), its body within 20 s more (else 408 request_timeout).
Revocation: every holder's certificate is checked before its binding is stored, with OCSP
responders (--ocsp, http:// only, asked in order; responses signed by the issuing CA or by a
responder it certified for OCSP signing, which --ocsp-signer gives when responses do not carry
it) and CRLs (--crl, a file or an http:// URL, verified against the issuing --trust-anchor,
refreshed every --crl-refresh-minutes, default 60, and on SIGHUP). --revocation require (the
default with a source): no status means 503 revocation_unavailable (Retry-After); prefer:
stored and recorded as unchecked; off: never checked, the only way to start without a source
(demos, tests). --recheck-hours N re-checks active bindings every N hours; `recheck` does it
once (exit 1 when some status could not be obtained). A binding whose certificate is revoked
or expired becomes stale; a new first stage for its license supersedes it.";

/// Exit status for usage and configuration errors, as the client uses.
const EXIT_USAGE: u8 = 2;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("import-licenses") => match parse_import(&args[1..]) {
            Ok(import) => import_licenses(&import),
            Err(message) => usage_error(&message),
        },
        Some("serve") => match ServeOptions::parse(&args[1..]) {
            Ok(options) => serve(options),
            Err(message) => usage_error(&message),
        },
        Some("recheck") => match mynalink_server::recheck::RecheckOptions::parse(&args[1..]) {
            Ok(options) => recheck(&options),
            Err(message) => usage_error(&message),
        },
        Some("seal-key") => seal_key(&args[1..]),
        Some("token") => match TokenCommand::parse(&args[1..]) {
            Ok(command) => token(command),
            Err(message) => usage_error(&message),
        },
        Some("basic4-key") => match parse_basic4_key(&args[1..]) {
            Ok(out) => generate_basic4_key(&out),
            Err(message) => usage_error(&message),
        },
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        Some("-V" | "--version") => {
            println!("mynalink-server {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Some(other) => usage_error(&format!("unknown command {other:?}")),
        None => usage_error("no command given"),
    }
}

fn serve(options: ServeOptions) -> ExitCode {
    mynalink_server::logging::init(options.log_format);
    let prepared = match server::prepare(&options) {
        Ok(prepared) => prepared,
        Err(e) => {
            eprintln!("mynalink-server: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("mynalink-server: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(server::run(options, prepared)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e @ ServeError::Config(_)) => {
            eprintln!("mynalink-server: {e}");
            ExitCode::from(EXIT_USAGE)
        }
        Err(e @ ServeError::Runtime(_)) => {
            eprintln!("mynalink-server: {e}");
            ExitCode::FAILURE
        }
    }
}

fn token(command: TokenCommand) -> ExitCode {
    let done = match &command {
        TokenCommand::Add { file, id } => token_admin::add(file, id).map(|new| {
            println!("{}", new.token.as_str());
            eprintln!(
                "mynalink-server: token for {id:?} added to {}; it is shown only this once. \
                 A running server takes it on SIGHUP (systemctl reload mynalink-server).",
                file.display()
            );
        }),
        TokenCommand::Revoke { file, id } => token_admin::revoke(file, id).map(|()| {
            eprintln!(
                "mynalink-server: the token of {id:?} was removed from {}. A running server \
                 refuses it after SIGHUP (systemctl reload mynalink-server).",
                file.display()
            );
        }),
        TokenCommand::List { file } => token_admin::list(file).map(|ids| {
            for id in ids {
                println!("{id}");
            }
        }),
    };
    match done {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mynalink-server: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `recheck`: one pass over the active bindings.
fn recheck(options: &mynalink_server::recheck::RecheckOptions) -> ExitCode {
    let prepared = server::trust_store(&options.trust_anchors, options.allow_test_root)
        .and_then(|trust| server::configure_revocation(&options.revocation, &trust))
        .and_then(|revocation| {
            DatabaseUrl::resolve(&options.database, options.database_password_file.as_deref())
                .and_then(mynalink_server::pool::StorePool::open)
                .map(|pool| (revocation, pool))
                .map_err(|e| ServeError::Config(e.to_string()))
        });
    let (revocation, pool) = match prepared {
        Ok(prepared) => prepared,
        Err(e) => {
            eprintln!("mynalink-server: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    eprintln!("mynalink-server: {}", revocation.describe());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("mynalink-server: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(mynalink_server::recheck::recheck(
        &pool,
        &revocation,
        time::OffsetDateTime::now_utc(),
    ));
    // The pool closes its PostgreSQL connections outside the runtime.
    drop(runtime);
    drop(pool);
    match result {
        Ok(summary) => {
            println!("{summary}");
            if summary.unavailable == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("mynalink-server: recheck: {e}");
            ExitCode::FAILURE
        }
    }
}

fn usage_error(message: &str) -> ExitCode {
    eprintln!("mynalink-server: {message}\n{USAGE}");
    ExitCode::from(EXIT_USAGE)
}

fn seal_key(args: &[String]) -> ExitCode {
    match args.first().map(String::as_str) {
        Some("generate") => match parse_seal_generate(&args[1..]) {
            Ok(out) => seal_key_generate(&out),
            Err(message) => usage_error(&message),
        },
        Some("public") => match parse_seal_public(&args[1..]) {
            Ok((file, out)) => seal_key_public(&file, out.as_deref()),
            Err(message) => usage_error(&message),
        },
        Some(other) => usage_error(&format!("unknown seal-key command {other:?}")),
        None => usage_error("seal-key needs generate or public"),
    }
}

/// `--out FILE` (or `--out=FILE`) at most once, plus positional arguments.
fn parse_out(args: &[String]) -> Result<(Option<PathBuf>, Vec<PathBuf>), String> {
    let mut out = None;
    let mut positional = Vec::new();
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        let value = if arg == "--out" {
            Some(iter.next().ok_or("--out needs a file")?.clone())
        } else {
            arg.strip_prefix("--out=").map(str::to_string)
        };
        match value {
            Some(value) => {
                if out.replace(PathBuf::from(value)).is_some() {
                    return Err("--out given twice".into());
                }
            }
            None if arg.starts_with('-') && arg.len() > 1 => {
                return Err(format!("unknown option {arg:?}"))
            }
            None => positional.push(PathBuf::from(arg)),
        }
    }
    Ok((out, positional))
}

fn parse_seal_generate(args: &[String]) -> Result<PathBuf, String> {
    let (out, positional) = parse_out(args)?;
    if !positional.is_empty() {
        return Err("seal-key generate takes only --out FILE".into());
    }
    out.ok_or_else(|| "seal-key generate needs --out FILE".into())
}

fn parse_seal_public(args: &[String]) -> Result<(PathBuf, Option<PathBuf>), String> {
    let (out, mut positional) = parse_out(args)?;
    match positional.len() {
        1 => Ok((positional.remove(0), out)),
        _ => Err("seal-key public needs exactly one private key FILE".into()),
    }
}

fn seal_key_generate(out: &std::path::Path) -> ExitCode {
    let key = match SealPrivateKey::generate() {
        Ok(key) => key,
        Err(e) => {
            eprintln!("mynalink-server: {e}");
            return ExitCode::FAILURE;
        }
    };
    let written = key
        .to_pkcs8_pem()
        .map_err(|e| e.to_string())
        .and_then(|pem| {
            write_new_secret(out, "seal key", pem.as_bytes()).map_err(|e| e.to_string())
        });
    match written {
        Ok(()) => {
            println!("key id: {}", key.key_id());
            eprintln!(
                "mynalink-server: seal key written to {} (mode 0600); give terminals its public \
                 key: mynalink-server seal-key public {} --out backend-seal.pem",
                out.display(),
                out.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("mynalink-server: {e}");
            ExitCode::FAILURE
        }
    }
}

fn seal_key_public(file: &std::path::Path, out: Option<&std::path::Path>) -> ExitCode {
    let key = read_secret(file, "seal key")
        .map_err(|e| e.to_string())
        .and_then(|bytes| {
            SealPrivateKey::parse(&bytes).map_err(|e| format!("seal key {}: {e}", file.display()))
        });
    let pem = key.and_then(|key| {
        key.public_key()
            .to_pem()
            .map(|pem| (pem, key.key_id().to_string()))
            .map_err(|e| e.to_string())
    });
    let (pem, key_id) = match pem {
        Ok(pair) => pair,
        Err(e) => {
            eprintln!("mynalink-server: {e}");
            return ExitCode::FAILURE;
        }
    };
    match out {
        Some(path) => {
            if let Err(e) = std::fs::write(path, &pem) {
                eprintln!("mynalink-server: public key {}: {e}", path.display());
                return ExitCode::FAILURE;
            }
            println!("key id: {key_id}");
        }
        None => print!("{pem}"),
    }
    ExitCode::SUCCESS
}

/// The `import-licenses` command line.
struct Import {
    database: String,
    password_file: Option<PathBuf>,
    file: PathBuf,
}

fn parse_import(args: &[String]) -> Result<Import, String> {
    let mut database = None;
    let mut password_file = None;
    let mut file = None;
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((name, value)) if name.starts_with("--") => (name, Some(value.to_string())),
            _ => (arg.as_str(), None),
        };
        let slot = match name {
            "--database" => Some(&mut database),
            "--database-password-file" => Some(&mut password_file),
            _ => None,
        };
        if let Some(slot) = slot {
            let value = match inline {
                Some(value) => value,
                None => iter
                    .next()
                    .cloned()
                    .ok_or(format!("{name} needs a value"))?,
            };
            if slot.replace(value).is_some() {
                return Err(format!("{name} given twice"));
            }
        } else if arg.starts_with('-') && arg.len() > 1 {
            return Err(format!("unknown option {arg:?}"));
        } else if file.replace(PathBuf::from(arg)).is_some() {
            return Err("give exactly one CSV file".into());
        }
    }
    Ok(Import {
        database: database.ok_or("--database URL is required")?,
        password_file: password_file.map(PathBuf::from),
        file: file.ok_or("the CSV file is required")?,
    })
}

/// `basic4-key generate --out FILE`: the file to write.
fn parse_basic4_key(args: &[String]) -> Result<PathBuf, String> {
    match args.first().map(String::as_str) {
        Some("generate") => {}
        Some(other) => return Err(format!("unknown basic4-key command {other:?}")),
        None => return Err("basic4-key needs a command: generate --out FILE".into()),
    }
    let mut out = None;
    let mut iter = args[1..].iter();
    while let Some(arg) = iter.next() {
        let value = if arg == "--out" {
            iter.next().ok_or("--out needs a FILE")?.clone()
        } else if let Some(value) = arg.strip_prefix("--out=") {
            value.to_string()
        } else {
            return Err(format!("unknown option {arg:?}"));
        };
        if out.replace(PathBuf::from(value)).is_some() {
            return Err("--out given twice".into());
        }
    }
    out.ok_or_else(|| "basic4-key generate needs --out FILE".into())
}

fn generate_basic4_key(out: &std::path::Path) -> ExitCode {
    let key = Basic4Key::generate();
    match key.write_new(out) {
        Ok(()) => {
            println!("wrote basic-4 key {} (key id {})", out.display(), key.id());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("mynalink-server: {e}");
            ExitCode::FAILURE
        }
    }
}

fn import_licenses(import: &Import) -> ExitCode {
    let file: &Path = &import.file;
    let opened = DatabaseUrl::resolve(&import.database, import.password_file.as_deref())
        .and_then(|url| Store::open(&url));
    let mut store = match opened {
        Ok(store) => store,
        Err(e) => {
            eprintln!("mynalink-server: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    match import::import_file(&mut store, file, &mynalink_server::now_text()) {
        Ok(counts) => {
            println!(
                "imported {}: {} new, {} updated, {} unchanged",
                file.display(),
                counts.inserted,
                counts.updated,
                counts.unchanged
            );
            ExitCode::SUCCESS
        }
        Err(ImportError::Invalid(errors)) => {
            for e in &errors {
                eprintln!("{}:{}: {}", file.display(), e.line, e.message);
            }
            eprintln!(
                "mynalink-server: errors in {}; nothing was imported",
                file.display()
            );
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("mynalink-server: {}: {e}", file.display());
            ExitCode::FAILURE
        }
    }
}
