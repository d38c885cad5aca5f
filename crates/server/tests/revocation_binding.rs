//! Revocation at binding time and afterwards, on SQLite and PostgreSQL, with real
//! components: the simulated card's TEST root run as a CA by `openssl ca`, OpenSSL's OCSP
//! responder on loopback and CRLs from `openssl ca -gencrl`.
//!
//! - A revoked certificate is refused `certificate_revoked` with its RFC 5280 reason and
//!   time, and nothing is stored; a good one is stored with how it was checked.
//! - No status: `require` refuses for now (`revocation_unavailable`, nothing stored, no
//!   failure charged), `prefer` stores the binding as unchecked.
//! - A re-check makes a binding whose certificate was revoked stale; the status says so; a
//!   new first stage with the renewed certificate supersedes it (audited), while an active
//!   binding with a valid certificate still makes it `already_linked`.

mod common;

use common::*;
use mynalink_link::api::{BindingState, Holding, LicenseState};
use mynalink_link::trust::TrustStore;
use mynalink_server::pool::StorePool;
use mynalink_server::recheck::recheck;
use mynalink_server::revocation::testing::{OcspResponder, ResponderSigner, TestCa};
use mynalink_server::revocation::{Mode, Revocation, RevocationOptions};
use mynalink_server::scratch::Backend;
use mynalink_server::status::license_status;
use mynalink_server::store::{BindingState as StoredState, DatabaseUrl};
use mynalink_server::{Code, Outcome};
use mynalink_simcard::Validity;
use rsa::pkcs8::EncodePrivateKey;
use time::Duration;

mynalink_server::on_both_databases!(
    a_revoked_certificate_is_refused_with_its_reason_and_time,
    a_good_certificate_is_stored_with_how_it_was_checked,
    a_crl_refuses_certificates_revoked_for_several_reasons,
    without_a_status_require_refuses_for_now_and_prefer_stores_unchecked,
    a_recheck_makes_a_revoked_binding_stale_and_a_new_first_stage_supersedes_it,
);

/// The simulated card's signing TEST root as an OpenSSL CA (its key ships with the
/// simulated card, which is why it is only ever a test root).
fn sim_ca(dir: &std::path::Path) -> TestCa {
    let key = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../simcard/keys/sign_root.der"
    ))
    .expect("the simulated card's root key");
    TestCa::adopt(dir, mynalink_simcard::sign_test_root_der(), &key).expect("adopt the root")
}

/// The sources in `options`, checked against the simulated card's root.
fn configure(options: RevocationOptions) -> Revocation {
    let mut trust = TrustStore::new();
    trust
        .add_trust_anchor(mynalink_simcard::sign_test_root_der())
        .expect("test root");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut warnings = Vec::new();
    runtime
        .block_on(Revocation::configure(&options, &trust, &mut warnings))
        .expect("configure")
}

fn ocsp(url: &str, mode: Option<Mode>) -> Revocation {
    configure(RevocationOptions {
        ocsp: vec![url.to_string()],
        mode,
        ..RevocationOptions::default()
    })
}

struct Pki {
    _dir: tempfile::TempDir,
    ca: TestCa,
}

fn pki() -> Pki {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = sim_ca(&dir.path().join("ca"));
    Pki { _dir: dir, ca }
}

fn sim_cert() -> Vec<u8> {
    sim_signer(Validity::Current).cert_der
}

fn responder(pki: &Pki) -> OcspResponder {
    pki.ca
        .responder(&pki.ca, ResponderSigner::Ca, 60, None)
        .expect("openssl ocsp")
}

/// A renewed certificate for the simulated holder (same key, new serial), as the municipal
/// office would issue after a move.
fn renewed_signer(pki: &Pki) -> Signer {
    let key = sim_signer(Validity::Current).key;
    let pem = key
        .to_pkcs8_pem(rsa::pkcs8::LineEnding::LF)
        .expect("PEM")
        .to_string();
    let cert_der = pki
        .ca
        .issue_holder(&pem, 1000)
        .expect("renewed certificate");
    Signer { cert_der, key }
}

fn request_from(
    bench: &Bench,
    signer: &Signer,
    license: &str,
) -> mynalink_link::api::BindingRequest {
    let statement = statement_for(signer, license, TERMINAL, bench.now - Duration::minutes(1));
    request_for(signer, &statement)
}

fn rejected(outcome: Outcome) -> mynalink_server::Rejection {
    match outcome {
        Outcome::Rejected(r) => r,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// `mynalink_revocation_checks_total{result}` as the metrics endpoint would show it now.
fn revocation_checks(result: &str) -> u64 {
    let text = mynalink_server::metrics::global().render(0);
    let prefix = format!("mynalink_revocation_checks_total{{result=\"{result}\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .map_or(0, |n| n.trim().parse().expect("a count"))
}

fn a_revoked_certificate_is_refused_with_its_reason_and_time(backend: Backend) {
    let pki = pki();
    pki.ca
        .revoke(&sim_cert(), "affiliationChanged")
        .expect("revoke");
    let responder = responder(&pki);
    let mut bench = Bench::new(backend);
    bench.config.revocation = ocsp(&responder.url, None);
    let number = license(1);
    bench.record(&number, Holding::MynaOnly, LicenseState::Valid);

    let revoked_before = revocation_checks("revoked");
    let refusal = rejected(bench.submit(&good_request(&bench, &number)));
    assert_eq!(refusal.code, Code::CertificateRevoked);
    // Counted for /metrics (other tests in this process may count too: at least one more).
    assert!(revocation_checks("revoked") > revoked_before);
    assert_eq!(refusal.http_status(), 422);
    let body = refusal.to_api_error();
    assert_eq!(
        body.revocation_reason.as_deref(),
        Some("affiliationChanged")
    );
    let at = body.revoked_at.expect("revoked_at");
    let at = time::OffsetDateTime::parse(&at, &time::format_description::well_known::Rfc3339)
        .expect("RFC 3339");
    assert!((bench.now - at).abs() < Duration::minutes(5), "{at}");
    assert!(body.message_ja.contains("市区町村"), "{}", body.message_ja);
    assert!(body.message_en.contains("municipal office"));
    // Nothing stored; the refusal is audited with the license.
    assert_eq!(bench.count("SELECT COUNT(*) FROM bindings"), 0);
    assert_eq!(
        bench.count(
            "SELECT COUNT(*) FROM audit WHERE code = 'certificate_revoked' AND http_status = 422"
        ),
        1
    );
}

fn a_good_certificate_is_stored_with_how_it_was_checked(backend: Backend) {
    let pki = pki();
    pki.ca.register_valid(&sim_cert()).expect("register");
    let responder = responder(&pki);
    let mut bench = Bench::new(backend);
    bench.config.revocation = ocsp(&responder.url, None);
    let number = license(2);
    bench.record(&number, Holding::MynaOnly, LicenseState::Valid);

    assert_eq!(
        bench.submit(&good_request(&bench, &number)).code(),
        Code::Created
    );
    let binding = bench
        .store
        .active_binding(&number)
        .expect("store")
        .expect("bound");
    assert_eq!(binding.revocation_check.as_deref(), Some("good"));
    assert_eq!(
        binding.revocation_source.as_deref(),
        Some(format!("ocsp {}", responder.url).as_str())
    );
    assert_eq!(
        binding.revocation_checked_at,
        Some(mynalink_link::statement::format_time(bench.now))
    );
    assert_eq!(binding.state(), StoredState::Active);
}

fn a_crl_refuses_certificates_revoked_for_several_reasons(backend: Backend) {
    let pki = pki();
    let holder_key = sim_signer(Validity::Current)
        .key
        .to_pkcs8_pem(rsa::pkcs8::LineEnding::LF)
        .expect("PEM")
        .to_string();
    let reasons = ["keyCompromise", "superseded", "cessationOfOperation"];
    let certificates: Vec<Vec<u8>> = reasons
        .iter()
        .map(|reason| {
            let der = pki.ca.issue_holder(&holder_key, 1000).expect("issue");
            pki.ca.revoke(&der, reason).expect("revoke");
            der
        })
        .collect();
    let good = pki.ca.issue_holder(&holder_key, 1000).expect("issue");
    let crl = pki.ca.crl(3600, "sim.crl").expect("gencrl");
    let mut bench = Bench::new(backend);
    bench.config.revocation = configure(RevocationOptions {
        crls: vec![crl.display().to_string()],
        ..RevocationOptions::default()
    });
    let key = sim_signer(Validity::Current).key;
    for (i, (der, reason)) in certificates.iter().zip(reasons).enumerate() {
        let number = license(10 + i as u32);
        bench.record(&number, Holding::MynaOnly, LicenseState::Valid);
        let signer = Signer {
            cert_der: der.clone(),
            key: key.clone(),
        };
        let refusal = rejected(bench.submit(&request_from(&bench, &signer, &number)));
        assert_eq!(
            refusal.code,
            Code::CertificateRevoked,
            "{reason}: {refusal:?}"
        );
        assert_eq!(
            refusal.to_api_error().revocation_reason.as_deref(),
            Some(reason)
        );
    }
    let number = license(20);
    bench.record(&number, Holding::MynaOnly, LicenseState::Valid);
    let signer = Signer {
        cert_der: good,
        key,
    };
    assert_eq!(
        bench.submit(&request_from(&bench, &signer, &number)).code(),
        Code::Created
    );
    let binding = bench
        .store
        .active_binding(&number)
        .expect("store")
        .expect("bound");
    assert_eq!(
        binding.revocation_source,
        Some(format!("crl {}", crl.display()))
    );
}

fn without_a_status_require_refuses_for_now_and_prefer_stores_unchecked(backend: Backend) {
    // A port where nobody listens.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let url = format!("http://127.0.0.1:{port}/");
    let mut bench = Bench::new(backend);
    bench.config.revocation = ocsp(&url, Some(Mode::Require));
    let number = license(3);
    bench.record(&number, Holding::MynaOnly, LicenseState::Valid);

    for _ in 0..3 {
        let refusal = rejected(bench.submit(&good_request(&bench, &number)));
        assert_eq!(refusal.code, Code::RevocationUnavailable);
        assert_eq!(refusal.http_status(), 503);
        assert_eq!(
            refusal.to_api_error().revocation_problem.as_deref(),
            Some("responder_unreachable")
        );
    }
    assert_eq!(bench.count("SELECT COUNT(*) FROM bindings"), 0);
    // Ours, not the terminal's: nothing is charged against it or the license.
    assert_eq!(bench.count("SELECT COUNT(*) FROM abuse_events"), 0);

    bench.config.revocation = ocsp(&url, Some(Mode::Prefer));
    assert_eq!(
        bench.submit(&good_request(&bench, &number)).code(),
        Code::Created
    );
    let binding = bench
        .store
        .active_binding(&number)
        .expect("store")
        .expect("bound");
    assert_eq!(binding.revocation_check.as_deref(), Some("unchecked"));
    let tried = binding.revocation_source.expect("what was tried");
    assert!(tried.contains("responder_unreachable"), "{tried}");
}

fn a_recheck_makes_a_revoked_binding_stale_and_a_new_first_stage_supersedes_it(backend: Backend) {
    let pki = pki();
    pki.ca.register_valid(&sim_cert()).expect("register");
    let responder = responder(&pki);
    let mut bench = Bench::new(backend);
    bench.config.revocation = ocsp(&responder.url, None);
    let number = license(4);
    bench.record(&number, Holding::MynaOnly, LicenseState::Valid);
    assert_eq!(
        bench.submit(&good_request(&bench, &number)).code(),
        Code::Created
    );
    let first = bench
        .store
        .active_binding(&number)
        .expect("store")
        .expect("bound");

    // The renewed certificate while the first one is still good: already linked.
    let renewed = renewed_signer(&pki);
    assert_eq!(
        bench
            .submit(&request_from(&bench, &renewed, &number))
            .code(),
        Code::AlreadyLinked
    );

    let pool =
        StorePool::open(DatabaseUrl::parse(bench.database.url()).expect("url")).expect("pool");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let revocation = bench.config.revocation.clone();
    let summary = runtime
        .block_on(recheck(&pool, &revocation, bench.now))
        .expect("recheck");
    assert_eq!((summary.checked, summary.still_good), (1, 1), "{summary}");

    // The holder moves: J-LIS revokes the certificate.
    pki.ca
        .revoke(&sim_cert(), "affiliationChanged")
        .expect("revoke");
    responder.reload_index().expect("reload");
    let summary = runtime
        .block_on(recheck(&pool, &revocation, bench.now))
        .expect("recheck");
    assert_eq!((summary.checked, summary.revoked), (1, 1), "{summary}");
    // A stale binding is not re-checked again.
    let summary = runtime
        .block_on(recheck(&pool, &revocation, bench.now))
        .expect("recheck");
    assert_eq!(summary.checked, 0, "{summary}");
    drop(runtime);
    drop(pool);

    let stale = bench
        .store
        .binding(&first.binding_id)
        .expect("store")
        .expect("kept");
    assert_eq!(stale.state(), StoredState::Stale);
    assert_eq!(stale.stale_reason.as_deref(), Some("certificate_revoked"));
    assert_eq!(
        stale.revocation_reason.as_deref(),
        Some("affiliationChanged")
    );
    assert!(stale.revoked_at.is_some());
    let status = license_status(&mut bench.store, &number, bench.now)
        .expect("store")
        .expect("status");
    assert_eq!(status.binding_state, Some(BindingState::Stale));
    assert_eq!(status.stale_reason.as_deref(), Some("certificate_revoked"));
    assert!(status.first_stage_needed && !status.linked, "{status:?}");
    assert_eq!(status.reason, "binding_stale");
    assert_eq!(
        bench.count("SELECT COUNT(*) FROM audit WHERE code = 'binding_stale'"),
        1
    );

    // The old certificate is refused; the renewed one supersedes the stale binding.
    assert_eq!(
        rejected(bench.submit(&good_request(&bench, &number))).code,
        Code::CertificateRevoked
    );
    let accepted = match bench.submit(&request_from(&bench, &renewed, &number)) {
        Outcome::Accepted(a) => a,
        other => panic!("{other:?}"),
    };
    assert!(accepted.created);
    let old = bench
        .store
        .binding(&first.binding_id)
        .expect("store")
        .expect("kept");
    assert_eq!(old.state(), StoredState::Superseded);
    assert_eq!(
        old.superseded_by.as_deref(),
        Some(accepted.body.binding_id.as_str())
    );
    let new = bench
        .store
        .active_binding(&number)
        .expect("store")
        .expect("bound");
    assert_eq!(new.binding_id, accepted.body.binding_id);
    assert_eq!(
        bench.count(&format!(
            "SELECT COUNT(*) FROM audit WHERE code = 'binding_superseded' AND binding_id = '{}'",
            first.binding_id
        )),
        1
    );
    let status = license_status(&mut bench.store, &number, bench.now)
        .expect("store")
        .expect("status");
    assert_eq!(status.binding_state, Some(BindingState::Active));
    assert!(status.linked && !status.first_stage_needed);
}
