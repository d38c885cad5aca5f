//! The second stage over HTTPS with the real binary: Mynaportal's own credential, kept
//! apart from the terminals' in both directions.

mod common;
mod http_support;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use common::{good_request, license, sim_signer, Bench};
use http_support::*;
use mynalink_link::api::{ApiError, LicenseStatus};
use mynalink_link::certificate::{Sex, SigningCertificate};
use mynalink_link::statement::{format_time, Statement, VERSION};
use mynalink_simcard::Validity;
use reqwest::StatusCode;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use mynalink_server::scratch::Backend;

mynalink_server::on_both_databases!(
    second_stage_over_https_with_separate_credentials,
    overlapping_credentials_are_refused_at_start,
);

const PORTAL: &str = "mynaportal";
const PORTAL_TOKEN: &str = "mynaportal-token-00112233445566778899";

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .expect("whole seconds")
}

fn basic4_body() -> serde_json::Value {
    let cert = SigningCertificate::parse(&sim_signer(Validity::Current).cert_der).expect("cert");
    let b4 = cert.basic4().expect("basic4");
    let sex = match b4.sex {
        Some(Sex::Male) => "1",
        Some(Sex::Female) => "2",
        _ => "9",
    };
    serde_json::json!({
        "name": b4.name.clone(),
        "address": b4.address.clone().expect("address"),
        "birth_date": "19900102",
        "sex": sex,
    })
}

fn signature_body(number: &str, id: &str) -> serde_json::Value {
    let signer = sim_signer(Validity::Current);
    let cert = SigningCertificate::parse(&signer.cert_der).expect("cert");
    let statement = Statement {
        purpose: mynalink_server::second_stage::PURPOSE.into(),
        version: VERSION,
        license_number: number.into(),
        certificate_sha256: hex::encode(cert.sha256()),
        certificate_serial: cert.serial_hex(),
        issuer_key_id: cert.authority_key_id().map(hex::encode),
        terminal_id: PORTAL.into(),
        operator_id: None,
        nonce: id.into(),
        time: format_time(now()),
        terms: None,
    };
    let bytes = statement.canonical_bytes();
    serde_json::json!({
        "statement": BASE64.encode(&bytes),
        "signature": BASE64.encode(common::sign(&signer.key, &bytes)),
        "certificate": BASE64.encode(&signer.cert_der),
    })
}

fn post(
    http: &reqwest::blocking::Client,
    url: String,
    token: &str,
    body: &serde_json::Value,
) -> reqwest::blocking::Response {
    http.post(url)
        .bearer_auth(token)
        .json(body)
        .send()
        .expect("request")
}

fn second_stage_over_https_with_separate_credentials(backend: Backend) {
    let number = license(40);
    let files = Files::new(
        backend,
        &format!("{number},myna_only,\"試験　花子\",1990-01-02,valid\n"),
    );
    let portal_tokens = files.path("mynaportal-tokens");
    write_secret(
        &portal_tokens,
        format!("{PORTAL} {}\n", hex::encode(Sha256::digest(PORTAL_TOKEN))),
    );
    let mut args = files.tls_args();
    args.extend(["--mynaportal-tokens".to_string(), path_arg(&portal_tokens)]);
    args.extend(files.basic4_key_args());
    let server = Server::start(&args);
    let http = files.http();
    let basic4_url = format!("{}v1/second-stage/{number}/basic4", server.url);

    // Before the first stage: 409 first_stage_missing.
    let r = post(&http, basic4_url.clone(), PORTAL_TOKEN, &basic4_body());
    assert_eq!(r.status(), StatusCode::CONFLICT);
    assert_eq!(
        r.json::<ApiError>().expect("error").code,
        "first_stage_missing"
    );

    // Mynaportal cannot submit a first stage; the terminal can.
    let bench = Bench::new(backend);
    let first = good_request(&bench, &number);
    let r = http
        .post(format!("{}v1/bindings", server.url))
        .bearer_auth(PORTAL_TOKEN)
        .json(&first)
        .send()
        .expect("post");
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        r.json::<ApiError>().expect("error").code,
        "credential_not_allowed"
    );
    let r = http
        .post(format!("{}v1/bindings", server.url))
        .bearer_auth(TOKEN)
        .json(&first)
        .send()
        .expect("post");
    assert_eq!(r.status(), StatusCode::CREATED);

    // A terminal cannot call the second stage; no token at all is 401.
    let r = post(&http, basic4_url.clone(), TOKEN, &basic4_body());
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = http
        .post(basic4_url.clone())
        .json(&basic4_body())
        .send()
        .expect("post");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // Step 1, then step 2.
    let r = post(&http, basic4_url.clone(), PORTAL_TOKEN, &basic4_body());
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let accepted: serde_json::Value = r.json().expect("body");
    let id = accepted["second_stage_id"]
        .as_str()
        .expect("id")
        .to_string();
    let signature_url = format!("{}v1/second-stage/{id}/signature", server.url);
    let body = signature_body(&number, &id);
    let r = post(&http, signature_url.clone(), TOKEN, &body);
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = post(&http, signature_url.clone(), PORTAL_TOKEN, &body);
    assert_eq!(r.status(), StatusCode::OK);
    let linked: serde_json::Value = r.json().expect("body");
    assert_eq!(linked["code"], "mynaportal_linked");
    assert_eq!(linked["same_certificate_as_first_stage"], true);
    // Repeat: 200 again.
    let r = post(&http, signature_url, PORTAL_TOKEN, &body);
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.json::<serde_json::Value>().expect("body")["code"],
        "second_stage_repeated"
    );

    // Status shows it to Mynaportal; a terminal is told the record is linked, not
    // Mynaportal's side of it.
    let status_for = |token: &str| -> LicenseStatus {
        http.get(format!("{}v1/licenses/{number}/status", server.url))
            .bearer_auth(token)
            .send()
            .expect("status")
            .json()
            .expect("status body")
    };
    let portal = status_for(PORTAL_TOKEN);
    assert!(portal.linked && portal.second_stage_done == Some(true));
    assert_eq!((portal.holding, portal.state), (None, None));
    let terminal = status_for(TOKEN);
    assert!(terminal.linked && terminal.holding.is_some());
    assert_eq!((terminal.state, terminal.second_stage_done), (None, None));

    // §6: Mynaportal cancels, then the holder relinks from Mynaportal alone.
    let binding_id = linked["binding_id"]
        .as_str()
        .expect("binding id")
        .to_string();
    let r = http
        .delete(format!("{}v1/bindings/{binding_id}", server.url))
        .bearer_auth(PORTAL_TOKEN)
        .send()
        .expect("delete");
    assert_eq!(r.status(), StatusCode::OK);
    let r = post(&http, basic4_url.clone(), PORTAL_TOKEN, &basic4_body());
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let id = r.json::<serde_json::Value>().expect("body")["second_stage_id"]
        .as_str()
        .expect("id")
        .to_string();
    let r = post(
        &http,
        format!("{}v1/second-stage/{id}/signature", server.url),
        PORTAL_TOKEN,
        &signature_body(&number, &id),
    );
    assert_eq!(r.status(), StatusCode::OK);
    let relinked: serde_json::Value = r.json().expect("body");
    assert_eq!(relinked["code"], "mynaportal_relinked");
    assert_eq!(relinked["relinked_from"], binding_id.as_str());
    assert_ne!(relinked["binding_id"], binding_id.as_str());
    let status = status_for(PORTAL_TOKEN);
    assert!(status.linked && status.second_stage_done == Some(true));
    assert!(!status.first_stage_needed);

    // A body that is not the expected JSON: 422 without echoing it.
    let r = post(
        &http,
        basic4_url,
        PORTAL_TOKEN,
        &serde_json::json!({"name": "試験　花子"}),
    );
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let error = r.json::<ApiError>().expect("error");
    assert!(!error.detail.unwrap_or_default().contains("花子"));
    server.terminate();
}

fn overlapping_credentials_are_refused_at_start(backend: Backend) {
    let files = Files::new(backend, "");
    let portal_tokens = files.path("mynaportal-tokens");
    write_secret(
        &portal_tokens,
        format!("{PORTAL} {}\n", hex::encode(Sha256::digest(TOKEN))),
    );
    let mut args = files.tls_args();
    args.extend(["--mynaportal-tokens".to_string(), path_arg(&portal_tokens)]);
    args.extend(files.basic4_key_args());
    let (code, stderr) = serve_refused(&args);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("share"), "{stderr}");
}

#[test]
fn admin_credentials_must_be_their_own() {
    let files = Files::new(Backend::Sqlite, "");
    let admin_tokens = files.path("admin-tokens");
    // The admin file reuses the kiosk terminal's token under another id.
    write_secret(
        &admin_tokens,
        format!("ops-01 {}\n", hex::encode(Sha256::digest(OTHER_TOKEN))),
    );
    let mut args = files.tls_args();
    args.extend(["--admin-tokens".to_string(), path_arg(&admin_tokens)]);
    let (code, stderr) = serve_refused(&args);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("terminal and admin token files share"),
        "{stderr}"
    );
}
