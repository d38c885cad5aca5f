//! `mynalink-server`: the reference backend's command line.

use std::path::PathBuf;
use std::process::ExitCode;

use mynalink_server::import::{self, ImportError};
use mynalink_server::Store;

const USAGE: &str = "usage:
  mynalink-server import-licenses --database URL FILE.csv
  mynalink-server serve

URL is sqlite:PATH. The CSV needs the header license_number,holding,name,birth_date,status.";

/// Exit status for usage and configuration errors, as the client uses.
const EXIT_USAGE: u8 = 2;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("import-licenses") => match parse_import(&args[1..]) {
            Ok((database, file)) => import_licenses(&database, &file),
            Err(message) => usage_error(&message),
        },
        Some("serve") => {
            eprintln!("serve: not available in this build");
            ExitCode::from(EXIT_USAGE)
        }
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        Some(other) => usage_error(&format!("unknown command {other:?}")),
        None => usage_error("no command given"),
    }
}

fn usage_error(message: &str) -> ExitCode {
    eprintln!("mynalink-server: {message}\n{USAGE}");
    ExitCode::from(EXIT_USAGE)
}

fn parse_import(args: &[String]) -> Result<(String, PathBuf), String> {
    let mut database = None;
    let mut file = None;
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        if arg == "--database" {
            let value = iter.next().ok_or("--database needs a URL")?;
            if database.replace(value.clone()).is_some() {
                return Err("--database given twice".into());
            }
        } else if let Some(value) = arg.strip_prefix("--database=") {
            if database.replace(value.to_string()).is_some() {
                return Err("--database given twice".into());
            }
        } else if arg.starts_with('-') && arg.len() > 1 {
            return Err(format!("unknown option {arg:?}"));
        } else if file.replace(PathBuf::from(arg)).is_some() {
            return Err("give exactly one CSV file".into());
        }
    }
    let database = database.ok_or("--database URL is required")?;
    let file = file.ok_or("the CSV file is required")?;
    Ok((database, file))
}

fn import_licenses(database: &str, file: &std::path::Path) -> ExitCode {
    let mut store = match Store::open_url(database) {
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
