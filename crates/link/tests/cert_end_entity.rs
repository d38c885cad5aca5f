//! A holder's signing certificate must be an end entity fit for signatures: a CA
//! certificate, one whose keyUsage does not allow signing, one with a critical extension this
//! program does not know, or one naming another issuer than the CA that signed it is refused
//! as `certificate_invalid` — on the terminal and on the server alike, since both parse and
//! evaluate with this crate.

mod cert_support;

use std::sync::OnceLock;

use cert_support::{field, resign, with_extension, with_field};
use mynalink_link::certificate::{CertificateError, SigningCertificate};
use mynalink_link::error::{ErrorCode, FlowError};
use mynalink_link::trust::{TrustError, TrustStore, CONFIGURED_ANCHOR_LABEL};
use mynalink_simcard::{der, sign_test_root_der, test_identity, Validity};
use rsa::pkcs8::EncodePublicKey;
use rsa::RsaPrivateKey;
use time::OffsetDateTime;

const BASIC_CONSTRAINTS: &[u64] = &[2, 5, 29, 19];
const KEY_USAGE: &[u64] = &[2, 5, 29, 15];
/// An extension OID nobody defined: 1.3.6.1.4.1.55555.1 under a private enterprise arc.
const UNKNOWN: &[u64] = &[1, 3, 6, 1, 4, 1, 55555, 1];

/// The test root, re-keyed to a key the tests hold, so that they can issue certificates
/// under it; the holder's certificate as the simulated card has it.
struct Issuer {
    key: RsaPrivateKey,
    root: Vec<u8>,
}

fn issuer() -> &'static Issuer {
    static ISSUER: OnceLock<Issuer> = OnceLock::new();
    ISSUER.get_or_init(|| {
        // A key the simulated card ships stored (its authentication key), not the test
        // root's: generating one here would run unoptimised.
        let key = test_identity(Validity::Current).auth_key.clone();
        let spki = key.to_public_key().to_public_key_der().expect("spki");
        let root = with_field(sign_test_root_der(), 6, spki.as_bytes());
        Issuer {
            root: resign(&root, &key),
            key,
        }
    })
}

fn holder() -> Vec<u8> {
    test_identity(Validity::Current).sign_cert_der.clone()
}

/// The holder's certificate with `edit` applied, issued by the re-keyed root.
fn issued(edit: impl FnOnce(Vec<u8>) -> Vec<u8>) -> Vec<u8> {
    resign(&edit(holder()), &issuer().key)
}

fn store() -> TrustStore {
    let mut store = TrustStore::new();
    store.add_trust_anchor(&issuer().root).expect("anchor");
    store
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

#[test]
fn the_unchanged_certificate_is_accepted() {
    let cert = SigningCertificate::parse(&issued(|c| c)).expect("parses");
    store()
        .evaluate(&cert, None, now())
        .expect("chains to the re-keyed root");
}

#[test]
fn a_ca_certificate_is_refused() {
    let ca = issued(|c| {
        with_extension(
            &c,
            BASIC_CONSTRAINTS,
            Some((true, &der::sequence(&[&der::boolean(true)]))),
        )
    });
    assert_eq!(
        SigningCertificate::parse(&ca),
        Err(CertificateError::CaCertificate)
    );
    // cA false, written out, is an end entity.
    let explicit_false =
        issued(|c| with_extension(&c, BASIC_CONSTRAINTS, Some((true, &der::sequence(&[])))));
    assert!(SigningCertificate::parse(&explicit_false).is_ok());
}

#[test]
fn key_usage_must_allow_signatures_and_nothing_of_a_ca() {
    // keyUsage bits: 0 digitalSignature, 1 nonRepudiation, 2 keyEncipherment,
    // 5 keyCertSign, 6 cRLSign.
    for (bits, accepted) in [
        (&[0u8, 1][..], true),
        (&[1][..], true),
        (&[0][..], true),
        (&[2][..], false),
        (&[0, 1, 5][..], false),
        (&[0, 6][..], false),
    ] {
        let cert = issued(|c| with_extension(&c, KEY_USAGE, Some((true, &der::named_bits(bits)))));
        let parsed = SigningCertificate::parse(&cert);
        if accepted {
            assert!(parsed.is_ok(), "{bits:?}: {parsed:?}");
        } else {
            assert_eq!(parsed, Err(CertificateError::KeyUsage), "{bits:?}");
        }
    }
    let without = issued(|c| with_extension(&c, KEY_USAGE, None));
    assert_eq!(
        SigningCertificate::parse(&without),
        Err(CertificateError::KeyUsage)
    );
}

#[test]
fn an_unknown_critical_extension_is_refused_and_a_non_critical_one_is_not() {
    let value = der::utf8_string("x");
    let critical = issued(|c| with_extension(&c, UNKNOWN, Some((true, &value))));
    assert_eq!(
        SigningCertificate::parse(&critical),
        Err(CertificateError::UnknownCriticalExtension {
            oid: "1.3.6.1.4.1.55555.1".into()
        })
    );
    let harmless = issued(|c| with_extension(&c, UNKNOWN, Some((false, &value))));
    assert!(SigningCertificate::parse(&harmless).is_ok());
}

#[test]
fn an_issuer_name_other_than_the_anchors_is_refused() {
    // Same key identifier, signed by the anchor's key, but naming the holder as issuer.
    let renamed = issued(|c| {
        let subject = field(&c, 5);
        with_field(&c, 3, &subject)
    });
    let cert = SigningCertificate::parse(&renamed).expect("parses");
    let e = store()
        .evaluate(&cert, None, now())
        .expect_err("renamed issuer");
    assert_eq!(
        e,
        TrustError::IssuerNameMismatch {
            anchor_label: CONFIGURED_ANCHOR_LABEL.into()
        }
    );
    assert!(e.is_certificate_fault());
    // Not signed by the anchor at all: that stays a trust failure, checked first.
    let identity = test_identity(Validity::Current);
    let forged = resign(&renamed, identity.sign_key.rsa().expect("RSA identity"));
    let cert = SigningCertificate::parse(&forged).expect("parses");
    assert!(matches!(
        store().evaluate(&cert, None, now()),
        Err(TrustError::IssuerSignatureInvalid { .. })
    ));
}

#[test]
fn the_terminal_reports_each_as_certificate_invalid() {
    let ca = issued(|c| {
        with_extension(
            &c,
            BASIC_CONSTRAINTS,
            Some((true, &der::sequence(&[&der::boolean(true)]))),
        )
    });
    let error = FlowError::from(SigningCertificate::parse(&ca).expect_err("refused"));
    assert_eq!(error.code, ErrorCode::CertificateInvalid);
    let renamed = issued(|c| {
        let subject = field(&c, 5);
        with_field(&c, 3, &subject)
    });
    let cert = SigningCertificate::parse(&renamed).expect("parses");
    let error = FlowError::from(store().evaluate(&cert, None, now()).expect_err("renamed"));
    assert_eq!(error.code, ErrorCode::CertificateInvalid);
}
