//! §8 rate limits under concurrency, through the real server: checking a limit and counting
//! the failure it guards happen in one transaction, so requests that arrive together cannot
//! all pass a check that only one of them should have passed.

mod common;
mod http_support;

use std::sync::Barrier;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use common::{count, license, request_for, sim_signer, statement_for, TERMINAL};
use http_support::*;
use mynalink_link::api::BindingRequest;
use mynalink_server::scratch::Backend;
use mynalink_simcard::Validity;

mynalink_server::on_both_databases!(
    concurrent_garbage_from_a_terminal_is_held_to_its_limit,
    concurrent_refusals_for_a_license_are_held_to_its_limit,
);

fn now() -> time::OffsetDateTime {
    let now = time::OffsetDateTime::now_utc();
    now.replace_nanosecond(0).unwrap_or(now)
}

const REQUESTS: usize = 40;
/// The server's defaults (`AbusePolicy::default`).
const TERMINAL_LIMIT: usize = 20;
const LICENSE_LIMIT: usize = 5;

/// The usual arguments, with room for all the clients on one address.
fn serve_args(files: &Files) -> Vec<String> {
    let mut args = files.tls_args();
    args.extend([
        "--max-connections-per-ip".into(),
        (2 * REQUESTS).to_string(),
    ]);
    args
}

/// Sends `request` from `REQUESTS` clients released together; returns the error codes.
fn send_together(files: &Files, url: &str, token: &str, request: &BindingRequest) -> Vec<String> {
    let barrier = Barrier::new(REQUESTS);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..REQUESTS)
            .map(|_| {
                let client = files.http();
                let barrier = &barrier;
                scope.spawn(move || {
                    barrier.wait();
                    let response = client
                        .post(format!("{url}v1/bindings"))
                        .bearer_auth(token)
                        .json(request)
                        .send()
                        .expect("submit");
                    let status = response.status().as_u16();
                    let body: serde_json::Value = response.json().expect("JSON error body");
                    let code = body["code"].as_str().unwrap_or_default().to_string();
                    match code.as_str() {
                        "rate_limited" => assert_eq!(status, 429),
                        _ => assert_eq!(status, 422, "{body}"),
                    }
                    code
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    })
}

/// A bench with one license record and a server that fits all the clients.
fn bench(backend: Backend, number: &str) -> (Files, Server) {
    let files = Files::new(
        backend,
        &format!("{number},myna_only,\"試験　花子\",1990-01-02,valid\n"),
    );
    let server = Server::start(&serve_args(&files));
    (files, server)
}

/// Of the answers, those processed (`code`) are at least one and at most `limit`, the rest
/// `rate_limited`; as many failures were charged to `subject` (a terminal or a license).
fn assert_held_to(
    files: &Files,
    codes: &[String],
    code: &str,
    limit: usize,
    subject: (&str, &str),
) {
    let processed = codes.iter().filter(|c| *c == code).count();
    let limited = codes.iter().filter(|c| *c == "rate_limited").count();
    assert_eq!(processed + limited, REQUESTS, "{codes:?}");
    assert!(
        (1..=limit).contains(&processed),
        "{processed} of {REQUESTS} processed with a limit of {limit}"
    );
    let (kind, name) = subject;
    let charged = count(
        &files.db,
        &format!(
            "SELECT COUNT(*) FROM abuse_events WHERE subject_kind = '{kind}' \
             AND subject = '{name}'"
        ),
    );
    assert_eq!(charged, processed as i64);
}

fn concurrent_garbage_from_a_terminal_is_held_to_its_limit(backend: Backend) {
    let number = license(80);
    let (files, server) = bench(backend, &number);
    let signer = sim_signer(Validity::Current);
    let statement = statement_for(&signer, &number, TERMINAL, now());
    let mut garbage = request_for(&signer, &statement);
    garbage.signature = BASE64.encode([0x5a; 256]);

    let codes = send_together(&files, &server.url, TOKEN, &garbage);
    assert_held_to(
        &files,
        &codes,
        "signature_invalid",
        TERMINAL_LIMIT,
        ("terminal", TERMINAL),
    );
    // Unsigned garbage never counts against the license it names.
    let license_charges = count(
        &files.db,
        "SELECT COUNT(*) FROM abuse_events WHERE subject_kind = 'license'",
    );
    assert_eq!(license_charges, 0);
    assert!(server.terminate().success());
}

fn concurrent_refusals_for_a_license_are_held_to_its_limit(backend: Backend) {
    let number = license(81);
    let (files, server) = bench(backend, &number);
    let signer = sim_signer(Validity::Current);
    // The holder's card signed it for another terminal: a refusal that counts against the
    // license (and the terminal, whose limit is higher).
    let relayed = statement_for(&signer, &number, "elsewhere", now());
    let request = request_for(&signer, &relayed);

    let codes = send_together(&files, &server.url, TOKEN, &request);
    assert_held_to(
        &files,
        &codes,
        "terminal_mismatch",
        LICENSE_LIMIT,
        ("license", &number),
    );
    assert!(server.terminate().success());
}
