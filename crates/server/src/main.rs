//! `mynalink-server`: the reference backend's command line.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use mynalink_server::import::{self, ImportError};
use mynalink_server::serve::{self as server, ServeError, ServeOptions};
use mynalink_server::{DatabaseUrl, Store};

const USAGE: &str = "usage:
  mynalink-server import-licenses --database URL [--database-password-file FILE] FILE.csv
  mynalink-server serve --listen ADDR --database URL [--database-password-file FILE]
        [--tls-cert FILE --tls-key FILE]
        [--terminal-tokens FILE] [--mynaportal-tokens FILE] [--admin-tokens FILE]
        [--trust-anchor FILE]... [--seal-key FILE]
        [--insecure-loopback-http] [--freshness-hours N]
        [--max-connections N] [--max-connections-per-ip N]

URL is sqlite:PATH or postgres://USER@HOST[:PORT]/DB (the database must exist; its schema
is created and migrated at start). A password in the URL is refused: it comes from the first
line of --database-password-file FILE, or else from PGPASSFILE or ~/.pgpass
(host:port:database:user:password); each must be mode 0600 or stricter. PostgreSQL
statements time out after 5 s, lock waits after 2 s; a request waits at most 3 s for a
database connection, else it is answered 503 server_busy with Retry-After.
The CSV needs the header license_number,holding,name,birth_date,status.
ADDR is IP:PORT (port 0 picks a free one; the line `listening on URL` tells which).
TLS is required unless --insecure-loopback-http is given with a loopback ADDR.
The tokens files have one `ID SHA256_HEX_OF_TOKEN` per line (# comments). Terminals submit
first stages; Mynaportal runs the second stage and cancels; admins may cancel; all read status.
--seal-key is the RSA private key (PKCS#8 PEM) terminals seal certificates to.
--max-connections caps open connections (default: from the descriptor limit, ulimit -n, with
a quarter of it, at least 64, kept for the database and files; at most 4096);
--max-connections-per-ip caps them per source address (default 32; IPv6 per /64). A connection
over a cap is closed at once. A request head must arrive within 10 s (also the idle keep-alive
timeout), its body within 20 s more (else 408 request_timeout).";

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
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        Some(other) => usage_error(&format!("unknown command {other:?}")),
        None => usage_error("no command given"),
    }
}

fn serve(options: ServeOptions) -> ExitCode {
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

fn usage_error(message: &str) -> ExitCode {
    eprintln!("mynalink-server: {message}\n{USAGE}");
    ExitCode::from(EXIT_USAGE)
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
