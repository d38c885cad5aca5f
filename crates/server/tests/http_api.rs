//! The HTTP API end to end: the real binary over TLS on 127.0.0.1, driven by the
//! terminal's own client (`mynalink_link::backend::Backend`) with submissions signed by
//! the simulated card.

mod common;
mod http_support;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use common::{license, request_for, sim_signer, statement_for, TERMINAL};
use http_support::*;
use mynalink_link::api::{ApiError, BindingRequest, LicenseStatus, LinkedVia};
use mynalink_link::backend::Submitted;
use mynalink_simcard::Validity;
use reqwest::StatusCode;
use time::{Duration, OffsetDateTime};

use mynalink_server::scratch::Backend;

mynalink_server::on_both_databases!(
    the_api_over_tls_with_the_terminal_client,
    a_sealed_certificate_is_opened_with_the_seal_key,
    concurrent_submissions_of_one_statement_store_one_binding,
    two_server_processes_on_one_database_store_one_binding,
);

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .expect("whole seconds")
}

/// A fresh statement for `number` from `terminal`, signed by the simulated card.
fn signed(number: &str, terminal: &str) -> BindingRequest {
    let signer = sim_signer(Validity::Current);
    let statement = statement_for(&signer, number, terminal, now() - Duration::minutes(1));
    request_for(&signer, &statement)
}

fn rejected_code(outcome: Submitted) -> String {
    match outcome {
        Submitted::Rejected(error) => error.code,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

fn api_error(response: reqwest::blocking::Response) -> ApiError {
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    response.json().expect("ApiError body")
}

fn the_api_over_tls_with_the_terminal_client(backend: Backend) {
    let linked = license(1);
    let someone_else = license(2);
    let files = Files::new(
        backend,
        &format!(
            "{linked},myna_only,\"試験　花子\",1990-01-02,valid\n\
         {someone_else},myna_and_card,\"見本　太郎\",1985-04-01,valid\n"
        ),
    );
    let mut args = files.tls_args();
    args.extend(files.portal_and_admin_args());
    let server = Server::start(&args);
    assert!(
        server.url.starts_with("https://127.0.0.1:"),
        "{}",
        server.url
    );
    assert!(!server.url.ends_with(":0/"));

    let backend = files.backend(&server.url, TOKEN);
    let http = files.http();
    assert!(backend.healthy());
    let health = http
        .get(format!("{}healthz", server.url))
        .send()
        .expect("healthz");
    assert_eq!(health.status(), StatusCode::OK);
    assert_eq!(health.text().expect("body"), "ok");

    // The API description, without authentication.
    let doc: serde_json::Value = http
        .get(format!("{}openapi.json", server.url))
        .send()
        .expect("openapi")
        .json()
        .expect("openapi.json is JSON");
    assert!(doc["openapi"].as_str().expect("version").starts_with("3.1"));
    for path in [
        "/v1/bindings",
        "/v1/bindings/{id}",
        "/v1/licenses/{number}/status",
        "/healthz",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path}");
    }

    // Before linking: the first stage is required.
    let status = backend.license_status(&linked).expect("status");
    assert!(!status.linked && status.first_stage_needed && status.eligible);
    assert_eq!(status.reason, "required");

    // Submit: 201, then the same statement again: 200 with the same binding.
    let request = signed(&linked, TERMINAL);
    let Submitted::Linked { accepted, repeated } = backend.submit(&request).expect("submit") else {
        panic!("not linked");
    };
    assert!(!repeated);
    assert_eq!(accepted.license_number, linked);
    assert_eq!(accepted.certificate_serial, "9c4e21075a");
    let Submitted::Linked {
        accepted: again,
        repeated,
    } = backend.submit(&request).expect("submit again")
    else {
        panic!("not linked again");
    };
    assert!(repeated);
    assert_eq!(again.binding_id, accepted.binding_id);

    // A new statement for the linked record: 409 with how it was linked.
    assert_eq!(
        backend.submit(&signed(&linked, TERMINAL)).expect("submit"),
        Submitted::AlreadyLinked {
            via: Some(LinkedVia::Counter)
        }
    );
    // The same card for another person's license: 422 identity_mismatch.
    assert_eq!(
        rejected_code(
            backend
                .submit(&signed(&someone_else, TERMINAL))
                .expect("submit")
        ),
        "identity_mismatch"
    );
    // A license the server does not know: 422.
    assert_eq!(
        rejected_code(
            backend
                .submit(&signed(&license(3), TERMINAL))
                .expect("submit")
        ),
        "license_not_found"
    );
    // Another configured terminal sending a statement signed for this one.
    let kiosk = files.backend(&server.url, OTHER_TOKEN);
    assert_eq!(
        rejected_code(
            kiosk
                .submit(&signed(&license(4), TERMINAL))
                .expect("submit")
        ),
        "terminal_mismatch"
    );
    // A token no terminal has: 401 unauthenticated.
    let stranger = files.backend(&server.url, "not-a-configured-token");
    assert_eq!(
        rejected_code(stranger.submit(&request).expect("submit")),
        "unauthenticated"
    );
    assert!(stranger.license_status(&linked).is_err());
    let response = http
        .post(format!("{}v1/bindings", server.url))
        .json(&request)
        .send()
        .expect("no auth");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        response
            .headers()
            .get(reqwest::header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok()),
        Some("Bearer")
    );
    assert_eq!(api_error(response).code, "unauthenticated");
    // A sealed certificate to a server without a seal key: the terminal's key does not
    // match, which the terminal must tell apart from a decision about the binding.
    let mut sealed = request.clone();
    sealed.certificate = None;
    sealed.sealed_certificate = Some("{}".into());
    assert_eq!(
        rejected_code(backend.submit(&sealed).expect("submit")),
        "seal_key_mismatch"
    );

    // Bodies that are not a binding request: 422 malformed_request as ApiError JSON.
    let post = |body: Vec<u8>| {
        http.post(format!("{}v1/bindings", server.url))
            .bearer_auth(TOKEN)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .expect("post")
    };
    for body in [&b"{not json"[..], b"[]", b"{\"statement\": 5}", b""] {
        let response = post(body.to_vec());
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let error = api_error(response);
        assert_eq!(error.code, "malformed_request");
        assert!(error.detail.is_some() && !error.message_ja.is_empty());
    }
    let response = post(vec![b' '; 70 * 1024]);
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(api_error(response).code, "malformed_request");

    // Status: linked at the counter; unknown records are 404.
    let status: LicenseStatus = backend.license_status(&linked).expect("status");
    assert!(status.linked && !status.first_stage_needed);
    assert_eq!(status.linked_via, Some(LinkedVia::Counter));
    assert_eq!(status.reason, "already_linked");
    let response = http
        .get(format!("{}v1/licenses/{}/status", server.url, license(3)))
        .bearer_auth(TOKEN)
        .send()
        .expect("status");
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(api_error(response).code, "license_not_found");
    let response = http
        .get(format!("{}v1/licenses/123/status", server.url))
        .bearer_auth(TOKEN)
        .send()
        .expect("status");
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(api_error(response).code, "license_number_invalid");

    // Cancellation (§6) is Mynaportal's or an administrator's, never a terminal's: 200,
    // again 200 already_cancelled, unknown 404.
    let delete = |id: &str, token: &str| {
        http.delete(format!("{}v1/bindings/{id}", server.url))
            .bearer_auth(token)
            .send()
            .expect("delete")
    };
    let response = delete(&accepted.binding_id, "wrong");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    for terminal in [TOKEN, OTHER_TOKEN] {
        let response = delete(&accepted.binding_id, terminal);
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        assert_eq!(api_error(response).code, "credential_not_allowed");
    }
    assert!(backend.license_status(&linked).expect("status").linked);
    // Both other kinds of caller may read a status.
    for token in [PORTAL_TOKEN, ADMIN_TOKEN] {
        let response = http
            .get(format!("{}v1/licenses/{linked}/status", server.url))
            .bearer_auth(token)
            .send()
            .expect("status");
        assert_eq!(response.status(), StatusCode::OK);
    }
    // An administrator cannot submit.
    let response = http
        .post(format!("{}v1/bindings", server.url))
        .bearer_auth(ADMIN_TOKEN)
        .json(&signed(&someone_else, TERMINAL))
        .send()
        .expect("post");
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let response = delete(&accepted.binding_id, PORTAL_TOKEN);
    assert_eq!(response.status(), StatusCode::OK);
    let body: serde_json::Value = response.json().expect("json");
    assert_eq!(body["code"], "cancelled");
    assert_eq!(body["binding_id"], accepted.binding_id.as_str());
    assert_eq!(body["license_number"], linked.as_str());
    assert!(body["cancelled_at"].is_string());
    let response = delete(&accepted.binding_id, ADMIN_TOKEN);
    assert_eq!(response.status(), StatusCode::OK);
    let body: serde_json::Value = response.json().expect("json");
    assert_eq!(body["code"], "already_cancelled");
    let response = delete("00000000000000000000000000000000", ADMIN_TOKEN);
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(api_error(response).code, "binding_not_found");

    // After cancelling: the old statement is spent and the holder relinks from Mynaportal.
    assert_eq!(
        rejected_code(backend.submit(&request).expect("submit")),
        "statement_reused"
    );
    let status = backend.license_status(&linked).expect("status");
    assert!(!status.linked && !status.first_stage_needed);
    assert_eq!(status.reason, "relink_from_mynaportal");

    // Every decision was audited under the authenticated terminal.
    let created = common::count(
        &files.db,
        &format!(
            "SELECT COUNT(*) FROM audit WHERE code = 'created' AND terminal_id = '{TERMINAL}'"
        ),
    );
    assert_eq!(created, 1);
    let malformed = common::count(
        &files.db,
        &format!(
            "SELECT COUNT(*) FROM audit WHERE code = 'malformed_request' AND terminal_id = '{TERMINAL}'"
        ),
    );
    assert_eq!(malformed, 4);
    let mismatched = common::count(
        &files.db,
        &format!(
            "SELECT COUNT(*) FROM audit WHERE code = 'seal_key_mismatch' AND terminal_id = '{TERMINAL}'"
        ),
    );
    assert_eq!(mismatched, 1);

    // SIGTERM: a graceful stop with status 0.
    let status = server.terminate();
    assert!(status.success(), "{status}");
}

fn a_sealed_certificate_is_opened_with_the_seal_key(backend: Backend) {
    let number = license(11);
    let files = Files::new(
        backend,
        &format!("{number},history_myna_only,\"試験　花子\",1990-01-02,valid\n"),
    );
    let key_path = files.path("seal.pem");
    let generated = std::process::Command::new(env!("CARGO_BIN_EXE_mynalink-server"))
        .args(["seal-key", "generate", "--out"])
        .arg(&key_path)
        .output()
        .expect("seal-key generate");
    assert!(generated.status.success(), "{generated:?}");
    let public = std::process::Command::new(env!("CARGO_BIN_EXE_mynalink-server"))
        .args(["seal-key", "public"])
        .arg(&key_path)
        .output()
        .expect("seal-key public");
    assert!(public.status.success(), "{public:?}");
    let recipient = mynalink_link::seal::parse_public_key(&public.stdout).expect("public key");
    assert_eq!(
        String::from_utf8_lossy(&generated.stdout).trim(),
        format!("key id: {}", recipient.key_id())
    );

    let mut args = files.tls_args();
    args.extend(["--seal-key".to_string(), path_arg(&key_path)]);
    let server = Server::start(&args);
    let backend = files.backend(&server.url, TOKEN);

    let signer = sim_signer(Validity::Current);
    let statement = statement_for(&signer, &number, TERMINAL, now() - Duration::minutes(1));
    let bytes = statement.canonical_bytes();
    let sealed = mynalink_link::seal::seal(
        &recipient,
        &signer.cert_der,
        &mynalink_link::outbox::certificate_aad(&bytes),
    )
    .expect("seal");
    let mut request = common::request_for_bytes(&signer, &bytes);
    request.certificate = None;
    request.sealed_certificate = Some(sealed.to_json());

    let Submitted::Linked { accepted, repeated } = backend.submit(&request).expect("submit") else {
        panic!("sealed submission not linked");
    };
    assert!(!repeated);
    assert_eq!(accepted.license_number, number);

    // Sealed for another statement (the associated data differs): refused.
    let other = statement_for(&signer, &number, TERMINAL, now() - Duration::minutes(2));
    let mut moved = common::request_for(&signer, &other);
    moved.certificate = None;
    moved.sealed_certificate = request.sealed_certificate.clone();
    let error = match backend.submit(&moved).expect("submit") {
        Submitted::Rejected(error) => error,
        other => panic!("{other:?}"),
    };
    assert_eq!(error.code, "malformed_request");
    assert!(error
        .detail
        .unwrap_or_default()
        .contains("sealed_certificate"));

    // Sealed to another key: its own code, so that the terminal keeps the entry.
    let other_key = mynalink_link::seal::SealPrivateKey::generate().expect("other key");
    let elsewhere = statement_for(&signer, &number, TERMINAL, now() - Duration::minutes(3));
    let elsewhere_bytes = elsewhere.canonical_bytes();
    let mut mismatched = common::request_for_bytes(&signer, &elsewhere_bytes);
    mismatched.certificate = None;
    mismatched.sealed_certificate = Some(
        mynalink_link::seal::seal(
            other_key.public_key(),
            &signer.cert_der,
            &mynalink_link::outbox::certificate_aad(&elsewhere_bytes),
        )
        .expect("seal")
        .to_json(),
    );
    let error = match backend.submit(&mismatched).expect("submit") {
        Submitted::Rejected(error) => error,
        other => panic!("{other:?}"),
    };
    assert_eq!(error.code, "seal_key_mismatch");
    assert!(error
        .detail
        .unwrap_or_default()
        .contains("sealed to a different key"));

    // Plain and sealed together is not a request either.
    let mut both = request.clone();
    both.certificate = Some(BASE64.encode(&signer.cert_der));
    assert_eq!(
        rejected_code(backend.submit(&both).expect("submit")),
        "malformed_request"
    );
    assert!(server.terminate().success());
}

fn concurrent_submissions_of_one_statement_store_one_binding(backend: Backend) {
    let number = license(21);
    let files = Files::new(
        backend,
        &format!("{number},myna_only,\"試験　花子\",1990-01-02,valid\n"),
    );
    let server = Server::start(&files.tls_args());
    let request = signed(&number, TERMINAL);
    let results: Vec<(bool, String)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                scope.spawn(|| {
                    let backend = files.backend(&server.url, TOKEN);
                    match backend.submit(&request).expect("submit") {
                        Submitted::Linked { accepted, repeated } => (repeated, accepted.binding_id),
                        other => panic!("{other:?}"),
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    assert_eq!(results.iter().filter(|(repeated, _)| !repeated).count(), 1);
    assert!(results.iter().all(|(_, id)| *id == results[0].1));
    assert!(server.terminate().success());
}

/// Two `mynalink-server` processes on the same database (as behind a load balancer) get
/// the same signed statement at the same moment, twice each, round after round: exactly
/// one binding per statement, and every answer names it.
fn two_server_processes_on_one_database_store_one_binding(backend: Backend) {
    const ROUNDS: u32 = 6;
    const PER_SERVER: usize = 2;
    let numbers: Vec<String> = (0..ROUNDS).map(|i| license(40 + i)).collect();
    let rows: String = numbers
        .iter()
        .map(|n| format!("{n},myna_only,\"試験　花子\",1990-01-02,valid\n"))
        .collect();
    let files = Files::new(backend, &rows);
    let servers = [
        Server::start(&files.tls_args()),
        Server::start(&files.tls_args()),
    ];
    assert_ne!(servers[0].url, servers[1].url);
    let clients: Vec<_> = servers
        .iter()
        .flat_map(|server| (0..PER_SERVER).map(|_| files.backend(&server.url, TOKEN)))
        .collect();
    for number in &numbers {
        let request = signed(number, TERMINAL);
        let barrier = std::sync::Barrier::new(clients.len());
        let results: Vec<(bool, String)> = std::thread::scope(|scope| {
            let handles: Vec<_> = clients
                .iter()
                .map(|client| {
                    let (request, barrier) = (&request, &barrier);
                    scope.spawn(move || {
                        barrier.wait();
                        match client.submit(request).expect("submit") {
                            Submitted::Linked { accepted, repeated } => {
                                (repeated, accepted.binding_id)
                            }
                            other => panic!("{other:?}"),
                        }
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("thread"))
                .collect()
        });
        assert_eq!(
            results.iter().filter(|(repeated, _)| !repeated).count(),
            1,
            "{number}: {results:?}"
        );
        assert!(
            results.iter().all(|(_, id)| *id == results[0].1),
            "{results:?}"
        );
        assert_eq!(
            common::count(
                &files.db,
                &format!("SELECT COUNT(*) FROM bindings WHERE license_number = '{number}'")
            ),
            1
        );
    }
    assert_eq!(
        common::count(&files.db, "SELECT COUNT(*) FROM bindings"),
        i64::from(ROUNDS)
    );
    assert_eq!(
        common::count(
            &files.db,
            "SELECT COUNT(*) FROM audit WHERE code = 'created'"
        ),
        i64::from(ROUNDS)
    );
    for server in servers {
        assert!(server.terminate().success());
    }
}
