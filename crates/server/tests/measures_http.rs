//! §8 measures over the real server: only administrators may suspend, lift and erase; a
//! suspended license's first stage is refused `service_suspended`, and its status says so.

mod common;
mod http_support;

use common::{license, request_for, sim_signer, statement_for, TERMINAL};
use http_support::*;
use mynalink_server::scratch::Backend;
use mynalink_simcard::Validity;
use reqwest::StatusCode;
use serde_json::{json, Value};

mynalink_server::on_both_databases!(administrators_suspend_lift_and_erase_over_https);

fn now() -> time::OffsetDateTime {
    let now = time::OffsetDateTime::now_utc();
    now.replace_nanosecond(0).unwrap_or(now)
}

fn administrators_suspend_lift_and_erase_over_https(backend: Backend) {
    let number = license(140);
    let files = Files::new(
        backend,
        &format!("{number},myna_only,\"試験　花子\",1990-01-02,valid\n"),
    );
    let mut args = files.tls_args();
    args.extend(files.portal_and_admin_args());
    let server = Server::start(&args);
    let http = files.http();
    let url = |path: &str| format!("{}v1/licenses/{}", server.url, path);
    let suspension = url(&format!("{number}/suspension"));
    let send = |request: reqwest::blocking::RequestBuilder, token: &str| {
        let response = request.bearer_auth(token).send().expect("request");
        let status = response.status();
        let body: Value = response.json().expect("JSON body");
        (status, body)
    };

    // Only administrators.
    for token in [TOKEN, PORTAL_TOKEN] {
        let (status, body) = send(http.post(&suspension).json(&json!({"reason": "x"})), token);
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(body["code"], "credential_not_allowed");
        let (status, _) = send(http.delete(url(&format!("{number}/collected"))), token);
        assert_eq!(status, StatusCode::FORBIDDEN);
    }

    let (status, body) = send(
        http.post(&suspension)
            .json(&json!({"reason": "case 2026-0412"})),
        ADMIN_TOKEN,
    );
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["code"], "suspended");
    assert_eq!(body["suspended_by"], ADMIN);
    let (status, body) = send(
        http.post(&suspension).json(&json!({"reason": "other"})),
        ADMIN_TOKEN,
    );
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["reason"], "case 2026-0412");

    // A first stage is refused; the terminal's status says why, without the details.
    let signer = sim_signer(Validity::Current);
    let statement = statement_for(&signer, &number, TERMINAL, now());
    let (status, body) = send(
        http.post(format!("{}v1/bindings", server.url))
            .json(&request_for(&signer, &statement)),
        TOKEN,
    );
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["code"], "service_suspended");
    let (_, terminal_view) = send(http.get(url(&format!("{number}/status"))), TOKEN);
    assert_eq!(terminal_view["service_suspended"], true);
    assert_eq!(terminal_view["reason"], "service_suspended");
    assert!(terminal_view.get("suspension").is_none(), "{terminal_view}");
    let (_, admin_view) = send(http.get(url(&format!("{number}/status"))), ADMIN_TOKEN);
    assert_eq!(admin_view["suspension"]["reason"], "case 2026-0412");

    // Lifted, then nothing to lift; then the first stage links.
    let (status, body) = send(http.delete(&suspension), ADMIN_TOKEN);
    assert_eq!(
        (status, body["code"].clone()),
        (StatusCode::OK, json!("suspension_lifted"))
    );
    let (status, body) = send(http.delete(&suspension), ADMIN_TOKEN);
    assert_eq!(
        (status, body["code"].clone()),
        (StatusCode::NOT_FOUND, json!("not_suspended"))
    );
    let statement = statement_for(&signer, &number, TERMINAL, now());
    let (status, _) = send(
        http.post(format!("{}v1/bindings", server.url))
            .json(&request_for(&signer, &statement)),
        TOKEN,
    );
    assert_eq!(status, StatusCode::CREATED);

    // Erased: the binding is no longer active.
    let (status, body) = send(
        http.delete(url(&format!("{number}/collected"))),
        ADMIN_TOKEN,
    );
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["code"], "collected_erased");
    assert_eq!(body["bindings_erased"], 1);
    let (_, view) = send(http.get(url(&format!("{number}/status"))), TOKEN);
    assert_eq!(view["linked"], false);

    // Refusals: an unknown license, an impossible number, a body that is not the request.
    let (status, body) = send(
        http.post(url(&format!("{}/suspension", license(149))))
            .json(&json!({"reason": "x"})),
        ADMIN_TOKEN,
    );
    assert_eq!(
        (status, body["code"].clone()),
        (StatusCode::NOT_FOUND, json!("license_not_found"))
    );
    let (status, body) = send(http.delete(url("1234/collected")), ADMIN_TOKEN);
    assert_eq!(
        (status, body["code"].clone()),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            json!("license_number_invalid")
        )
    );
    let (status, body) = send(
        http.post(&suspension)
            .json(&json!({"reason": "x", "name": "試験"})),
        ADMIN_TOKEN,
    );
    assert_eq!(
        (status, body["code"].clone()),
        (StatusCode::UNPROCESSABLE_ENTITY, json!("malformed_request"))
    );
    assert!(server.terminate().success());
}
