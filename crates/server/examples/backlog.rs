//! A backlog after an outage, flushed: N license records on an embedded backend on SQLite
//! (WAL, `synchronous=FULL`), an outbox holding N bindings from the simulated card that each
//! failed once while the backend was away (so none is due), then the real client,
//! `mynalink outbox flush --json`, sending them all. Prints one JSON line with the time and
//! the rate, then checks that the flush linked every entry, the outbox is empty and the store
//! holds exactly N bindings (exit status 1 if not).
//!
//! `cargo run --release -p mynalink-server --example backlog -- --client PATH [--entries N]`

use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::Instant;

use mynalink_card::algorithm::{HashAlgorithm, SignatureAlgorithm};
use mynalink_link::certificate::SigningCertificate;
use mynalink_link::outbox::{EntryOptions, Outbox};
use mynalink_link::statement::{format_time, Statement, TermsRef, PURPOSE, VERSION};
use mynalink_link::SignedStatement;
use mynalink_server::embedded::{EmbeddedBackend, Setup};
use mynalink_server::Store;
use mynalink_simcard::{test_identity, Validity};
use rsa::Pkcs1v15Sign;
use serde_json::Value;
use sha2::{Digest, Sha256};

const TERMINAL: &str = "backlog-terminal-01";

struct Options {
    client: PathBuf,
    entries: usize,
}

fn parse_options() -> Result<Options, String> {
    let usage = "usage: backlog --client PATH [--entries N]";
    let (mut client, mut entries) = (None, 2000usize);
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(usage)?;
        match flag.as_str() {
            "--client" => client = Some(PathBuf::from(value)),
            "--entries" => {
                entries = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=999_999).contains(n))
                    .ok_or_else(|| format!("--entries must be 1..=999999, not {value:?}"))?
            }
            _ => return Err(usage.into()),
        }
    }
    Ok(Options {
        client: client.ok_or(usage)?,
        entries,
    })
}

/// A valid license number: commission 30, first issued in '25, the given serial, its check
/// digit, reissue 0.
fn license(serial: usize) -> String {
    let first_ten = format!("3025{serial:06}");
    let mut digits = [0u8; 10];
    for (d, b) in digits.iter_mut().zip(first_ten.bytes()) {
        *d = b - b'0';
    }
    let check = mynalink_link::license::expected_check_digit(&digits);
    format!("{first_ten}{check}0")
}

/// What the card would have signed for `license` an hour ago, before the outage ended.
fn signed(license: &str) -> SignedStatement {
    let identity = test_identity(Validity::Current);
    let cert = SigningCertificate::parse(&identity.sign_cert_der).expect("simulated certificate");
    let time = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
    let statement = Statement {
        purpose: PURPOSE.into(),
        version: VERSION,
        license_number: license.into(),
        certificate_sha256: hex::encode(cert.sha256()),
        certificate_serial: cert.serial_hex(),
        issuer_key_id: cert.authority_key_id().map(hex::encode),
        terminal_id: TERMINAL.into(),
        operator_id: Some("staff-0042".into()),
        nonce: hex::encode(rand::random::<[u8; 16]>()),
        time: format_time(time.replace_nanosecond(0).unwrap_or(time)),
        terms: Some(TermsRef {
            version: "2025-03".into(),
            sha256: "cd".repeat(32),
        }),
    };
    let bytes = statement.canonical_bytes();
    let signature = identity
        .sign_key
        .rsa()
        .expect("RSA identity")
        .sign(Pkcs1v15Sign::new::<Sha256>(), &Sha256::digest(&bytes))
        .expect("sign");
    SignedStatement {
        statement,
        bytes,
        signature,
        algorithm: SignatureAlgorithm::RsaPkcs1(HashAlgorithm::Sha256),
        certificate_der: identity.sign_cert_der.clone(),
    }
}

fn main() -> ExitCode {
    let options = match parse_options() {
        Ok(options) => options,
        Err(e) => {
            eprintln!("backlog: {e}");
            return ExitCode::from(2);
        }
    };
    match run(&options) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("backlog: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(options: &Options) -> Result<bool, String> {
    let n = options.entries;
    let licenses: Vec<String> = (1..=n).map(license).collect();
    let mut csv = String::from("license_number,holding,name,birth_date,status\n");
    for number in &licenses {
        csv.push_str(&format!("{number},myna_only,試験 花子,1990-01-02,valid\n"));
    }
    let anchors: [&[u8]; 1] = [mynalink_simcard::sign_test_root_der()];
    let dir = EmbeddedBackend::temp_dir("mynalink-backlog");
    let backend = EmbeddedBackend::start(&Setup {
        dir: dir.clone(),
        trust_anchors: &anchors,
        records_csv: &csv,
        terminal_id: TERMINAL,
        port: 0,
    })?;
    let result = fill_and_flush(options, &backend, &licenses);
    backend.remove();
    result
}

fn fill_and_flush(
    options: &Options,
    backend: &EmbeddedBackend,
    licenses: &[String],
) -> Result<bool, String> {
    let n = licenses.len();
    let outbox_path = backend.dir.join("client-outbox.db");
    let filled = Instant::now();
    {
        let mut outbox = Outbox::open(&outbox_path).map_err(|e| format!("outbox: {e}"))?;
        let now = time::OffsetDateTime::now_utc();
        let mut rng = rand::thread_rng();
        for number in licenses {
            let (id, _) = outbox
                .add_with(
                    &signed(number),
                    &backend.public_key,
                    &EntryOptions::default(),
                    now,
                )
                .map_err(|e| format!("outbox add: {e}"))?;
            // The outage: every entry failed once and waits for its backoff.
            outbox
                .record_failure(id, "backend_unreachable", now, &mut rng)
                .map_err(|e| format!("outbox failure: {e}"))?;
        }
    }
    eprintln!(
        "backlog: {n} entries queued in {:.1} s; flushing",
        filled.elapsed().as_secs_f64()
    );

    let path = |p: PathBuf| p.display().to_string();
    let started = Instant::now();
    let output = Command::new(&options.client)
        .args(["outbox", "flush", "--json", "--backend", &backend.url])
        .args(["--token-file", &path(backend.dir.join("token"))])
        .args(["--backend-key", &path(backend.dir.join("seal-public.pem"))])
        .args(["--outbox", &path(outbox_path.clone())])
        .env("XDG_CONFIG_HOME", "/nonexistent/mynalink-backlog")
        .env("MYNALINK_LOG", "off")
        .output()
        .map_err(|e| format!("cannot start {}: {e}", options.client.display()))?;
    let seconds = started.elapsed().as_secs_f64();
    let report: Value = serde_json::from_slice(&output.stdout).map_err(|e| {
        format!(
            "flush printed no JSON ({e}): {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })?;
    let entries = report["entries"].as_array().cloned().unwrap_or_default();
    let linked = entries.iter().filter(|e| e["outcome"] == "linked").count();
    let left = Outbox::open(&outbox_path)
        .and_then(|o| o.len())
        .map_err(|e| format!("outbox: {e}"))?;
    let (stored, distinct) = Store::open_url(&backend.database)
        .and_then(|mut store| store.active_binding_counts())
        .map_err(|e| format!("count bindings: {e}"))?;
    let verified = output.status.success()
        && linked == n
        && left == 0
        && stored == n as u64
        && distinct == n as u64;
    println!(
        "{}",
        serde_json::json!({
            "entries": n,
            "seconds": (seconds * 100.0).round() / 100.0,
            "per_second": (n as f64 / seconds).round(),
            "linked": linked,
            "left_in_outbox": left,
            "stored": stored,
            "verified": verified,
        })
    );
    Ok(verified)
}
