//! The revocation sources against real components: OpenSSL's OCSP responder on loopback and
//! CRLs made with `openssl ca -gencrl`, for a test CA that issues JPKI-profile signing
//! certificates. What each source answers, and why an answer is not used.

use std::sync::Arc;

use mynalink_link::trust::TrustStore;
use mynalink_server::revocation::testing::{record_response, FixedHttp, ResponderSigner, TestCa};
use mynalink_server::revocation::{
    Finding, Issuer, Mode, ProblemKind, Reason, Revocation, RevocationOptions,
};
use rsa::pkcs8::EncodePrivateKey;
use time::OffsetDateTime;

fn holder_key_pem() -> String {
    let identity = mynalink_simcard::test_identity(mynalink_simcard::Validity::Current);
    identity
        .sign_key
        .rsa()
        .expect("RSA identity")
        .to_pkcs8_pem(rsa::pkcs8::LineEnding::LF)
        .expect("PEM")
        .to_string()
}

struct Pki {
    _dir: tempfile::TempDir,
    ca: TestCa,
    other: TestCa,
    trust: TrustStore,
}

fn pki() -> Pki {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = TestCa::create(&dir.path().join("ca"), "mynalink revocation test CA").expect("CA");
    let other = TestCa::create(&dir.path().join("other"), "mynalink other CA").expect("CA");
    let mut trust = TrustStore::new();
    trust
        .add_trust_anchor(&ca.ca_der().expect("CA DER"))
        .expect("anchor");
    Pki {
        _dir: dir,
        ca,
        other,
        trust,
    }
}

fn serial_of(der: &[u8]) -> Vec<u8> {
    mynalink_link::certificate::SigningCertificate::parse(der)
        .expect("a JPKI signing certificate the server accepts")
        .serial_bytes()
        .to_vec()
}

fn configure(pki: &Pki, options: RevocationOptions) -> Result<Revocation, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut warnings = Vec::new();
    runtime.block_on(Revocation::configure(&options, &pki.trust, &mut warnings))
}

fn ocsp(url: &str) -> RevocationOptions {
    RevocationOptions {
        ocsp: vec![url.to_string()],
        ..RevocationOptions::default()
    }
}

fn check(pki: &Pki, revocation: &Revocation, cert: &[u8]) -> Finding {
    let issuer = Issuer::from_der(&pki.ca.ca_der().expect("CA")).expect("issuer");
    revocation.check_blocking(&issuer, &serial_of(cert), OffsetDateTime::now_utc())
}

fn problem(finding: &Finding) -> ProblemKind {
    match finding {
        Finding::Unavailable(problems) => problems[0].kind,
        other => panic!("expected no status, got {other:?}"),
    }
}

#[test]
fn ocsp_good_revoked_and_unknown() {
    let pki = pki();
    let good = pki.ca.issue_holder(&holder_key_pem(), 1000).expect("good");
    let revoked = pki
        .ca
        .issue_holder(&holder_key_pem(), 1000)
        .expect("revoked");
    pki.ca.revoke(&revoked, "keyCompromise").expect("revoke");
    let responder = pki
        .ca
        .responder(&pki.ca, ResponderSigner::Ca, 60, None)
        .expect("responder");
    let revocation = configure(&pki, ocsp(&responder.url)).expect("configure");
    assert_eq!(revocation.mode(), Mode::Require);
    match check(&pki, &revocation, &good) {
        Finding::Good { source } => assert_eq!(source, format!("ocsp {}", responder.url)),
        other => panic!("{other:?}"),
    }
    match check(&pki, &revocation, &revoked) {
        Finding::Revoked(r) => {
            assert_eq!(r.reason, Some(Reason::KeyCompromise));
            assert!(OffsetDateTime::now_utc() - r.at < time::Duration::minutes(5));
        }
        other => panic!("{other:?}"),
    }
    // A certificate the CA's index does not have: the responder says unknown.
    let other_ca_cert = pki
        .other
        .issue_holder(&holder_key_pem(), 1000)
        .expect("other");
    let mut serial = serial_of(&other_ca_cert);
    serial.push(0x77);
    let issuer = Issuer::from_der(&pki.ca.ca_der().expect("CA")).expect("issuer");
    let finding = revocation.check_blocking(&issuer, &serial, OffsetDateTime::now_utc());
    assert_eq!(problem(&finding), ProblemKind::CertificateUnknown);
    let _ = Arc::new(());
}

#[test]
fn delegated_responder_and_crl() {
    let pki = pki();
    let good = pki.ca.issue_holder(&holder_key_pem(), 1000).expect("good");
    let moved = pki.ca.issue_holder(&holder_key_pem(), 1000).expect("moved");
    pki.ca.revoke(&moved, "affiliationChanged").expect("revoke");
    let responder = pki
        .ca
        .responder(&pki.ca, ResponderSigner::Delegated, 60, None)
        .expect("responder");
    let revocation = configure(&pki, ocsp(&responder.url)).expect("configure");
    assert!(matches!(
        check(&pki, &revocation, &good),
        Finding::Good { .. }
    ));
    match check(&pki, &revocation, &moved) {
        Finding::Revoked(r) => assert_eq!(r.reason, Some(Reason::AffiliationChanged)),
        other => panic!("{other:?}"),
    }

    let crl = pki.ca.crl(3600, "ca.crl").expect("crl");
    let options = RevocationOptions {
        crls: vec![crl.display().to_string()],
        ..RevocationOptions::default()
    };
    let revocation = configure(&pki, options).expect("configure");
    assert!(matches!(
        check(&pki, &revocation, &good),
        Finding::Good { .. }
    ));
    match check(&pki, &revocation, &moved) {
        Finding::Revoked(r) => assert_eq!(r.reason, Some(Reason::AffiliationChanged)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn answers_that_are_not_used() {
    let pki = pki();
    let good = pki.ca.issue_holder(&holder_key_pem(), 1000).expect("good");
    let other_good = pki
        .ca
        .issue_holder(&holder_key_pem(), 1000)
        .expect("good too");

    // Signed by another CA.
    let foreign = pki
        .ca
        .responder(&pki.other, ResponderSigner::Ca, 60, None)
        .expect("responder");
    let revocation = configure(&pki, ocsp(&foreign.url)).expect("configure");
    assert_eq!(
        problem(&check(&pki, &revocation, &good)),
        ProblemKind::ResponseSignerUntrusted
    );

    // A responder certificate of the other CA, sent along, certifies nothing here.
    let foreign = pki
        .ca
        .responder(&pki.other, ResponderSigner::Delegated, 60, None)
        .expect("responder");
    let revocation = configure(&pki, ocsp(&foreign.url)).expect("configure");
    assert_eq!(
        problem(&check(&pki, &revocation, &good)),
        ProblemKind::ResponseSignerUntrusted
    );

    // Out of date: a responder whose clock is two days behind.
    let stale = pki
        .ca
        .responder(&pki.ca, ResponderSigner::Ca, 60, Some("-2d"))
        .expect("stale responder");
    let revocation = configure(&pki, ocsp(&stale.url)).expect("configure");
    assert_eq!(
        problem(&check(&pki, &revocation, &good)),
        ProblemKind::ResponseStale
    );

    // A recorded answer about another certificate, replayed.
    let real = pki
        .ca
        .responder(&pki.ca, ResponderSigner::Ca, 60, None)
        .expect("responder");
    let recorded = record_response(&pki.ca, &other_good, &real.url, false).expect("record");
    let replay = FixedHttp::start(recorded, "application/ocsp-response").expect("replay");
    let revocation = configure(&pki, ocsp(&replay.url)).expect("configure");
    assert_eq!(
        problem(&check(&pki, &revocation, &good)),
        ProblemKind::ResponseForAnotherCertificate
    );
    // A recorded answer about this certificate, with another request's nonce.
    let recorded = record_response(&pki.ca, &good, &real.url, true).expect("record");
    let replay = FixedHttp::start(recorded, "application/ocsp-response").expect("replay");
    let revocation = configure(&pki, ocsp(&replay.url)).expect("configure");
    assert_eq!(
        problem(&check(&pki, &revocation, &good)),
        ProblemKind::NonceMismatch
    );

    // Nobody listening.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let revocation =
        configure(&pki, ocsp(&format!("http://127.0.0.1:{port}/"))).expect("configure");
    assert_eq!(
        problem(&check(&pki, &revocation, &good)),
        ProblemKind::ResponderUnreachable
    );
}

#[test]
fn crls_that_are_not_used() {
    let pki = pki();
    let good = pki.ca.issue_holder(&holder_key_pem(), 1000).expect("good");
    // Signed by the other CA: refused at start as a file.
    let foreign = pki.other.crl(3600, "other.crl").expect("crl");
    let e = configure(
        &pki,
        RevocationOptions {
            crls: vec![foreign.display().to_string()],
            ..RevocationOptions::default()
        },
    )
    .expect_err("a CRL that does not verify");
    assert!(e.contains("does not verify"), "{e}");
    // The same from a URL: the server starts, and the status cannot be obtained.
    let served = FixedHttp::start(
        std::fs::read(&foreign).expect("crl"),
        "application/pkix-crl",
    )
    .expect("serve");
    let revocation = configure(
        &pki,
        RevocationOptions {
            crls: vec![served.url.clone()],
            ..RevocationOptions::default()
        },
    )
    .expect("configure");
    assert_eq!(
        problem(&check(&pki, &revocation, &good)),
        ProblemKind::CrlInvalid
    );
    // Past its nextUpdate.
    let short = pki.ca.crl(1, "short.crl").expect("crl");
    let revocation = configure(
        &pki,
        RevocationOptions {
            crls: vec![short.display().to_string()],
            ..RevocationOptions::default()
        },
    )
    .expect("configure");
    std::thread::sleep(std::time::Duration::from_millis(1500));
    // Within the clock skew allowed it still answers; past it, it no longer does.
    let issuer = Issuer::from_der(&pki.ca.ca_der().expect("CA")).expect("issuer");
    let later = OffsetDateTime::now_utc() + time::Duration::minutes(6);
    let finding = revocation.check_blocking(&issuer, &serial_of(&good), later);
    assert_eq!(problem(&finding), ProblemKind::CrlStale);
}
