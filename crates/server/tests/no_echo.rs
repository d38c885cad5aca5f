//! `POST /v1/bindings` never echoes what was sent: an error names the field or the check
//! that failed, never a value from the request (a log or a proxy that keeps answers must
//! not end up holding statement contents, and an answer must not reflect input back).

mod common;
mod http_support;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use common::{license, request_for, sim_signer, statement_for, TERMINAL};
use http_support::*;
use mynalink_link::statement::Statement;
use mynalink_server::scratch::Backend;
use mynalink_simcard::Validity;
use time::{Duration, OffsetDateTime};

const MARKER: &str = "ECHO7f3a試験";

fn now() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    now.replace_nanosecond(0).unwrap_or(now)
}

/// The values of a statement that must not come back in an answer.
fn values(statement: &Statement) -> Vec<String> {
    let mut values = vec![
        statement.license_number.clone(),
        statement.time.clone(),
        statement.nonce.clone(),
        statement.certificate_sha256.clone(),
    ];
    values.extend(statement.operator_id.clone());
    values
}

#[test]
fn refusals_never_echo_the_request() {
    let number = license(90);
    let files = Files::new(
        Backend::Sqlite,
        &format!("{number},myna_only,\"試験　花子\",1990-01-02,valid\n"),
    );
    let server = Server::start(&files.tls_args());
    let client = files.http();
    let signer = sim_signer(Validity::Current);

    let good = statement_for(&signer, &number, TERMINAL, now());
    let good_request = request_for(&signer, &good);
    let as_json = |request: &mynalink_link::api::BindingRequest| {
        serde_json::to_value(request).expect("request JSON")
    };

    let mut cases: Vec<(&str, Vec<u8>, Vec<String>)> = vec![(
        "not JSON",
        format!("{{\"statement\": \"{MARKER}").into_bytes(),
        vec![],
    )];
    let mut add = |what: &'static str, body: serde_json::Value, extra: Vec<String>| {
        cases.push((what, body.to_string().into_bytes(), extra));
    };

    // The JSON layer: wrong types and unknown shapes carrying the marker.
    let mut wrong_type = as_json(&good_request);
    wrong_type["staff_confirmed_identity"] = MARKER.into();
    add("a string where a boolean belongs", wrong_type, vec![]);
    let mut number_field = as_json(&good_request);
    number_field["statement"] = serde_json::json!({ "license_number": MARKER });
    add("an object where base64 belongs", number_field, vec![]);

    // The base64 fields.
    for field in ["statement", "signature", "certificate", "ca_certificate"] {
        let mut bad = as_json(&good_request);
        bad[field] = format!("{MARKER}!!").into();
        add("text that is not base64", bad, vec![]);
    }
    let mut not_a_certificate = as_json(&good_request);
    not_a_certificate["certificate"] = BASE64.encode(MARKER.repeat(8)).into();
    add("a certificate that is not DER", not_a_certificate, vec![]);
    let mut sealed = as_json(&good_request);
    sealed["certificate"] = serde_json::Value::Null;
    sealed["sealed_certificate"] = format!("{{\"alg\":\"{MARKER}\"}}").into();
    add(
        "a sealed certificate of an unknown algorithm",
        sealed,
        vec![],
    );

    // Statements: not canonical, with a bad license number, and signed but stale.
    let mut not_canonical = as_json(&good_request);
    not_canonical["statement"] = BASE64
        .encode(format!("{{\"purpose\":\"{MARKER}\"}}"))
        .into();
    add("a statement that is not canonical", not_canonical, vec![]);
    for bad_number in ["990000000000", "1234", "3015-123456-00"] {
        let statement = statement_for(&signer, bad_number, TERMINAL, now());
        add(
            "a statement with an impossible license number",
            as_json(&request_for(&signer, &statement)),
            values(&statement),
        );
    }
    let stale = statement_for(&signer, &number, TERMINAL, now() - Duration::hours(80));
    add(
        "a signed statement that is too old",
        as_json(&request_for(&signer, &stale)),
        values(&stale),
    );
    let mut unsigned = request_for(&signer, &good);
    unsigned.signature = BASE64.encode([0x11; 256]);
    add("an unsigned statement", as_json(&unsigned), values(&good));

    for (what, body, extra) in &cases {
        let response = client
            .post(format!("{}v1/bindings", server.url))
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .expect("send");
        let status = response.status().as_u16();
        let text = response.text().expect("body");
        assert!((400..500).contains(&status), "{what}: {status} {text}");
        assert!(!text.contains(MARKER), "{what}: {text}");
        assert!(!text.contains("ECHO7f3a"), "{what}: {text}");
        for value in extra {
            assert!(
                !text.contains(value.as_str()),
                "{what}: {value:?} in {text}"
            );
        }
    }
    assert!(server.terminate().success());
}
