//! Open-loop load on an embedded backend (plain HTTP on loopback) with durable commits:
//! SQLite (WAL, `synchronous=FULL`) or, with `--postgres ADMIN_URL`, a fresh database on that
//! PostgreSQL server (`synchronous_commit=on`), dropped afterwards. N license records, N
//! distinct correctly signed binding requests from the simulated card, sent at a fixed
//! offered rate from T threads, each with a blocking client. Every request has a start time
//! on the schedule; its latency runs from that time, so a thread that falls behind counts
//! the wait too. Prints one JSON line, then checks that the store holds exactly N bindings
//! (exit status 1 if not).
//!
//! With `--ocsp`, every binding is checked for revocation first (`--revocation require`)
//! against OpenSSL's OCSP responder (`openssl ocsp`) on loopback, run for the simulated
//! card's TEST root: the revocation check in the path.
//!
//! `cargo run --release -p mynalink-server --example load -- --requests N --rate R --threads T
//!  [--postgres ADMIN_URL] [--ocsp]`

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use mynalink_link::api::{BindingRequest, LicenseStatus};
use mynalink_link::certificate::SigningCertificate;
use mynalink_link::statement::{format_time, Statement, TermsRef, PURPOSE, VERSION};
use mynalink_server::embedded::{EmbeddedBackend, Setup};
use mynalink_server::revocation::testing::{OcspResponder, ResponderSigner, TestCa};
use mynalink_server::scratch::ScratchDatabase;
use mynalink_server::Store;
use mynalink_simcard::{test_identity, Validity};
use rsa::Pkcs1v15Sign;
use sha2::{Digest, Sha256};

const TERMINAL: &str = "load-terminal-01";
const HOLDER_NAME: &str = "試験 花子";
const HOLDER_BIRTH: &str = "1990-01-02";
/// Lets every thread be waiting for its first slot when the schedule starts.
const LEAD_IN: Duration = Duration::from_millis(200);

struct Options {
    requests: usize,
    rate: f64,
    threads: usize,
    /// An administrative URL of a PostgreSQL server; SQLite when absent.
    postgres: Option<String>,
    /// Check every certificate with a local OCSP responder.
    ocsp: bool,
}

fn parse_options() -> Result<Options, String> {
    let mut options = Options {
        requests: 3000,
        rate: 1000.0,
        threads: 8,
        postgres: None,
        ocsp: false,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        if flag == "--ocsp" {
            options.ocsp = true;
            continue;
        }
        let value = it
            .next()
            .ok_or_else(|| format!("{flag} needs a value"))?
            .as_str();
        let bad = || format!("{flag}: not a positive number: {value:?}");
        match flag.as_str() {
            "--requests" => options.requests = value.parse().map_err(|_| bad())?,
            "--rate" => options.rate = value.parse().map_err(|_| bad())?,
            "--threads" => options.threads = value.parse().map_err(|_| bad())?,
            "--postgres" => options.postgres = Some(value.to_string()),
            _ => {
                return Err(format!(
                    "unknown option {flag}; usage: load [--requests N] [--rate R] [--threads T] \
                     [--postgres ADMIN_URL] [--ocsp]"
                ))
            }
        }
    }
    // 999,999 serials under one commission and year.
    if options.requests == 0 || options.requests > 999_999 {
        return Err("--requests must be 1..=999999".into());
    }
    if !(options.rate.is_finite() && options.rate > 0.0) || options.threads == 0 {
        return Err("--rate and --threads must be positive".into());
    }
    Ok(options)
}

/// A valid license number: commission 30 (Tokyo), first issued in '24, the given serial,
/// the computed check digit, reissue 0.
fn license(serial: usize) -> String {
    let first_ten = format!("3024{serial:06}");
    let mut digits = [0u8; 10];
    for (d, b) in digits.iter_mut().zip(first_ten.bytes()) {
        *d = b - b'0';
    }
    let check = mynalink_link::license::expected_check_digit(&digits);
    format!("{first_ten}{check}0")
}

/// The JSON body of a signed request for `license`.
fn request_body(license: &str) -> Vec<u8> {
    let identity = test_identity(Validity::Current);
    let cert = SigningCertificate::parse(&identity.sign_cert_der).expect("simulated certificate");
    let nonce: [u8; 16] = rand::random();
    let time = time::OffsetDateTime::now_utc() - time::Duration::minutes(1);
    let statement = Statement {
        purpose: PURPOSE.into(),
        version: VERSION,
        license_number: license.into(),
        certificate_sha256: hex::encode(cert.sha256()),
        certificate_serial: cert.serial_hex(),
        issuer_key_id: cert.authority_key_id().map(hex::encode),
        terminal_id: TERMINAL.into(),
        operator_id: Some("staff-0042".into()),
        nonce: hex::encode(nonce),
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
    let request = BindingRequest {
        statement: BASE64.encode(&bytes),
        signature: BASE64.encode(signature),
        certificate: Some(BASE64.encode(&identity.sign_cert_der)),
        sealed_certificate: None,
        ca_certificate: None,
        staff_confirmed_identity: false,
    };
    serde_json::to_vec(&request).expect("request JSON")
}

/// What one request came to: HTTP status (0 for a transport error), latency from the
/// scheduled start, and service time from the actual send.
struct Sample {
    status: u16,
    latency: Duration,
    service: Duration,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn main() -> ExitCode {
    let options = match parse_options() {
        Ok(options) => options,
        Err(e) => {
            eprintln!("load: {e}");
            return ExitCode::from(2);
        }
    };
    match run(&options) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("load: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(options: &Options) -> Result<bool, String> {
    let n = options.requests;
    let licenses: Vec<String> = (1..=n).map(license).collect();
    let mut csv = String::from("license_number,holding,name,birth_date,status\n");
    for number in &licenses {
        csv.push_str(&format!(
            "{number},myna_only,{HOLDER_NAME},{HOLDER_BIRTH},valid\n"
        ));
    }
    let anchors: [&[u8]; 1] = [mynalink_simcard::sign_test_root_der()];
    // Dropped after the backend has stopped: the database goes last.
    let scratch = match &options.postgres {
        Some(admin) => Some(ScratchDatabase::postgres(admin)?),
        None => None,
    };
    // The responder stops when dropped, after the backend.
    let responder = if options.ocsp {
        Some(start_responder()?)
    } else {
        None
    };
    let revocation: Vec<String> = match &responder {
        Some((_, responder)) => vec!["--ocsp".into(), responder.url.clone()],
        None => Vec::new(),
    };
    let backend = EmbeddedBackend::start_checking(
        &Setup {
            dir: EmbeddedBackend::temp_dir("mynalink-load"),
            trust_anchors: &anchors,
            records_csv: &csv,
            terminal_id: TERMINAL,
            port: 0,
        },
        scratch.as_ref().map(ScratchDatabase::url),
        &revocation,
    )?;
    let result = drive(options, &backend, &licenses);
    backend.remove();
    drop(scratch);
    result
}

/// `openssl ocsp` for the simulated card's TEST root, which knows its signing certificate
/// as valid; with the directory it runs in.
fn start_responder() -> Result<(tempfile::TempDir, OcspResponder), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let ca = TestCa::adopt(
        &dir.path().join("ca"),
        mynalink_simcard::sign_test_root_der(),
        include_bytes!("../../simcard/keys/sign_root.der"),
    )?;
    ca.register_valid(&test_identity(Validity::Current).sign_cert_der)?;
    let responder = ca.responder(&ca, ResponderSigner::Ca, 60, None)?;
    eprintln!("load: OCSP responder (openssl ocsp) at {}", responder.url);
    Ok((dir, responder))
}

fn drive(
    options: &Options,
    backend: &EmbeddedBackend,
    licenses: &[String],
) -> Result<bool, String> {
    let n = licenses.len();
    let threads = options.threads.min(n);

    // Signing is the card's work, not the backend's: done before the clock starts.
    let prepared = Instant::now();
    let bodies: Vec<Vec<u8>> = std::thread::scope(|s| {
        let chunk = n.div_ceil(threads);
        let handles: Vec<_> = licenses
            .chunks(chunk)
            .map(|part| s.spawn(move || part.iter().map(|l| request_body(l)).collect::<Vec<_>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("signing thread"))
            .collect()
    });
    eprintln!(
        "load: {n} requests signed in {:.1} s; sending at {}/s from {threads} threads",
        prepared.elapsed().as_secs_f64(),
        options.rate
    );

    let url = format!("{}v1/bindings", backend.url);
    let token = backend.token.as_str();
    let interval = Duration::from_secs_f64(1.0 / options.rate);
    let clients: Vec<reqwest::blocking::Client> = (0..threads)
        .map(|_| {
            reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .map_err(|e| format!("client: {e}"))
        })
        .collect::<Result<_, _>>()?;
    let start = Instant::now() + LEAD_IN;
    let bodies = &bodies;
    let url = url.as_str();
    let (samples, end) = std::thread::scope(|s| {
        let handles: Vec<_> = clients
            .into_iter()
            .enumerate()
            .map(|(t, client)| {
                s.spawn(move || {
                    let mut samples = Vec::new();
                    let mut last = start;
                    for i in (t..n).step_by(threads) {
                        let due = start + interval.mul_f64(i as f64);
                        let now = Instant::now();
                        if due > now {
                            std::thread::sleep(due - now);
                        }
                        let sent = Instant::now();
                        let status = client
                            .post(url)
                            .bearer_auth(token)
                            .header("content-type", "application/json")
                            .body(bodies[i].clone())
                            .send()
                            .and_then(|r| {
                                let status = r.status().as_u16();
                                r.bytes().map(|_| status)
                            })
                            .unwrap_or(0);
                        last = Instant::now();
                        samples.push(Sample {
                            status,
                            latency: last - due,
                            service: last - sent,
                        });
                    }
                    (samples, last)
                })
            })
            .collect();
        let mut all = Vec::with_capacity(n);
        let mut end = start;
        for h in handles {
            let (samples, last) = h.join().expect("load thread");
            all.extend(samples);
            end = end.max(last);
        }
        (all, end)
    });
    let wall = (end - start).as_secs_f64();

    let mut by_status: BTreeMap<String, usize> = BTreeMap::new();
    for sample in &samples {
        let key = match sample.status {
            0 => "transport_error".to_string(),
            s => s.to_string(),
        };
        *by_status.entry(key).or_default() += 1;
    }
    let created = by_status.get("201").copied().unwrap_or(0);
    let sorted_ms = |f: fn(&Sample) -> Duration| {
        let mut ms: Vec<f64> = samples
            .iter()
            .map(|s| f(s).as_secs_f64() * 1000.0)
            .collect();
        ms.sort_by(f64::total_cmp);
        ms
    };
    let latencies = sorted_ms(|s| s.latency);
    let service = sorted_ms(|s| s.service);

    // Afterwards: the database itself, and the API for a sample of licenses.
    let (stored, distinct) = Store::open_url(&backend.database)
        .and_then(|mut store| store.active_binding_counts())
        .map_err(|e| format!("count bindings: {e}"))?;
    let client = reqwest::blocking::Client::new();
    let step = (n / 10).max(1);
    let mut sample_ok = 0usize;
    let mut sampled = 0usize;
    for number in licenses.iter().step_by(step) {
        sampled += 1;
        let answer = client
            .get(format!("{}v1/licenses/{number}/status", backend.url))
            .bearer_auth(token)
            .send()
            .and_then(|r| r.error_for_status())
            .and_then(|r| r.json::<LicenseStatus>());
        if answer.is_ok_and(|status| status.linked) {
            sample_ok += 1;
        }
    }
    let verified = stored == n as u64 && distinct == n as u64 && sample_ok == sampled;

    let report = serde_json::json!({
        "database": if options.postgres.is_some() { "postgresql" } else { "sqlite" },
        "revocation": if options.ocsp { "ocsp" } else { "off" },
        "requests": n,
        "threads": threads,
        "offered_rate_per_s": options.rate,
        "wall_s": round2(wall),
        "achieved_bindings_per_s": round2(created as f64 / wall),
        "status_counts": by_status,
        "latency_ms": {
            "p50": round2(percentile(&latencies, 50.0)),
            "p90": round2(percentile(&latencies, 90.0)),
            "p99": round2(percentile(&latencies, 99.0)),
            "max": round2(latencies.last().copied().unwrap_or(0.0)),
        },
        "service_ms": {
            "p50": round2(percentile(&service, 50.0)),
            "p99": round2(percentile(&service, 99.0)),
        },
        "stored_bindings": stored,
        "status_sample": { "checked": sampled, "linked": sample_ok },
        "verified": verified,
    });
    println!("{report}");
    if !verified {
        eprintln!(
            "load: the store holds {stored} active bindings ({distinct} licenses), expected \
             {n}; {sample_ok} of {sampled} sampled licenses show as linked"
        );
    }
    Ok(verified)
}
