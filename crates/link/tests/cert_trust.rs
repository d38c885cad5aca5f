//! Trust: pinned J-LIS roots, configured test anchors, the CA read from the card, and the
//! issuer's signature and validity.

mod cert_support;

use cert_support::{jlis_der, jlis_pem, resign};
use mynalink_link::certificate::SigningCertificate;
use mynalink_link::trust::{
    TrustAnchor, TrustError, TrustStore, TrustedChain, CONFIGURED_ANCHOR_LABEL,
    JLIS_SIGNING_ROOT_SHA256,
};
use mynalink_simcard::{sign_test_root_der, test_identity, Validity};
use sha2::{Digest, Sha256};
use time::macros::datetime;
use time::OffsetDateTime;

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

fn simulated() -> SigningCertificate {
    SigningCertificate::parse(&test_identity(Validity::Current).sign_cert_der).expect("parses")
}

fn test_root() -> Vec<u8> {
    test_identity(Validity::Current).sign_root_der.clone()
}

fn with_test_anchor() -> TrustStore {
    let mut store = TrustStore::new();
    store.add_trust_anchor(&test_root()).expect("test root");
    store
}

#[test]
fn pinned_fingerprints_match_the_files() {
    assert_eq!(JLIS_SIGNING_ROOT_SHA256[0].0, "2015 (signca01)");
    assert_eq!(JLIS_SIGNING_ROOT_SHA256[1].0, "2019 (signca02)");
    assert_eq!(JLIS_SIGNING_ROOT_SHA256[2].0, "2023 (signca03)");
    for (file, index) in [("sign_ca_2015.pem", 0), ("sign_ca_2023.pem", 2)] {
        let digest: [u8; 32] = Sha256::digest(jlis_der(file)).into();
        assert_eq!(digest, JLIS_SIGNING_ROOT_SHA256[index].1, "{file}");
    }
    assert_eq!(
        hex::encode(JLIS_SIGNING_ROOT_SHA256[1].1),
        "79679c33e4cc9319440f1ad120a597ff1844e2ef217063adb176966fd5e6fbeb"
    );
}

#[test]
fn real_roots_are_accepted_as_ca_certificates() {
    let mut store = TrustStore::new();
    store
        .add_ca_certificate(&jlis_pem("sign_ca_2023.pem"))
        .expect("2023 root is pinned");
    // The 2015 root is pinned too (it expired in 2025, but adding it is not using it).
    store
        .add_ca_certificate(&jlis_der("sign_ca_2015.pem"))
        .expect("2015 root is pinned");
    // Adding the same one again is harmless.
    store
        .add_ca_certificate(&jlis_pem("sign_ca_2023.pem"))
        .expect("again");

    let anchor = TrustAnchor::from_pem_or_der(&jlis_pem("sign_ca_2023.pem")).expect("anchor");
    assert_eq!(anchor.sha256(), JLIS_SIGNING_ROOT_SHA256[2].1);
    assert_eq!(anchor.jlis_generation(), Some("2023 (signca03)"));
    assert_eq!(
        anchor.subject_key_id().map(hex::encode).as_deref(),
        Some("d21ea55895617e93adbf966b941ab4edf653f08f")
    );
    assert_eq!(anchor.der(), jlis_der("sign_ca_2023.pem").as_slice());

    // The simulated certificate was not issued by it.
    assert!(!store.has_issuer_for(&simulated()));
}

#[test]
fn a_self_made_root_is_refused_as_ca_but_accepted_as_anchor() {
    let root = test_root();
    let mut store = TrustStore::new();
    let e = store.add_ca_certificate(&root).expect_err("not pinned");
    let expected = hex::encode(Sha256::digest(&root));
    assert_eq!(
        e,
        TrustError::NotPinned {
            sha256_hex: expected.clone()
        }
    );
    assert!(e.to_string().contains(&expected));
    assert!(!store.has_issuer_for(&simulated()));

    store.add_trust_anchor(&root).expect("configured anchor");
    assert!(store.has_issuer_for(&simulated()));
    assert_eq!(sign_test_root_der(), root.as_slice());
}

#[test]
fn chain_with_a_configured_anchor() {
    let root = test_root();
    let chain = with_test_anchor()
        .evaluate(&simulated(), None, now())
        .expect("trusted");
    assert_eq!(
        chain,
        TrustedChain {
            anchor_sha256: Sha256::digest(&root).into(),
            anchor_label: CONFIGURED_ANCHOR_LABEL.into(),
            from_card: false,
        }
    );
    assert_eq!(chain.anchor_label, "configured trust anchor");

    // With a configured issuer, the card's CA certificate is not used at all, even garbage.
    let chain = with_test_anchor()
        .evaluate(&simulated(), Some(b"garbage"), now())
        .expect("trusted");
    assert!(!chain.from_card);
    let chain = with_test_anchor()
        .evaluate(&simulated(), Some(&root), now())
        .expect("trusted");
    assert!(!chain.from_card);
}

#[test]
fn nothing_configured_and_no_card_ca_is_unknown_issuer() {
    let cert = simulated();
    let aki = hex::encode(cert.authority_key_id().expect("aki"));
    let store = TrustStore::new();
    assert!(!store.has_issuer_for(&cert));
    assert_eq!(
        store.evaluate(&cert, None, now()),
        Err(TrustError::UnknownIssuer {
            authority_key_id_hex: aki.clone()
        })
    );

    // A configured J-LIS root with another key identifier changes nothing.
    let mut store = TrustStore::new();
    store
        .add_ca_certificate(&jlis_pem("sign_ca_2023.pem"))
        .expect("pinned");
    assert_eq!(
        store.evaluate(&cert, None, now()),
        Err(TrustError::UnknownIssuer {
            authority_key_id_hex: aki
        })
    );
}

#[test]
fn a_test_root_from_the_card_is_not_trusted_unless_configured() {
    let root = test_root();
    let e = TrustStore::new()
        .evaluate(&simulated(), Some(&root), now())
        .expect_err("untrusted card CA");
    assert_eq!(
        e,
        TrustError::CardCaNotPinned {
            sha256_hex: hex::encode(Sha256::digest(&root))
        }
    );
    // Also when a real root is configured (it is not the issuer).
    let mut store = TrustStore::new();
    store
        .add_ca_certificate(&jlis_pem("sign_ca_2023.pem"))
        .expect("pinned");
    assert!(matches!(
        store.evaluate(&simulated(), Some(&root), now()),
        Err(TrustError::CardCaNotPinned { .. })
    ));
}

#[test]
fn a_pinned_card_ca_that_is_not_the_issuer() {
    // The card offers the real 2023 root, but the certificate names another issuer key.
    let cert = simulated();
    match TrustStore::new().evaluate(&cert, Some(&jlis_der("sign_ca_2023.pem")), now()) {
        Err(TrustError::CardCaNotIssuer {
            authority_key_id_hex,
            subject_key_id_hex,
        }) => {
            assert_eq!(
                authority_key_id_hex,
                hex::encode(cert.authority_key_id().expect("aki"))
            );
            assert_eq!(
                subject_key_id_hex,
                "d21ea55895617e93adbf966b941ab4edf653f08f"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_unusable_card_ca() {
    for bad in [&b""[..], b"garbage", &[0x30, 0x03, 0x02, 0x01, 0x00]] {
        assert!(matches!(
            TrustStore::new().evaluate(&simulated(), Some(bad), now()),
            Err(TrustError::CardCaInvalid { .. })
        ));
    }
    // The end-entity certificate offered as a CA.
    let ee = test_identity(Validity::Current).sign_cert_der.clone();
    match TrustStore::new().evaluate(&simulated(), Some(&ee), now()) {
        Err(TrustError::CardCaInvalid { detail }) => {
            assert!(detail.contains("not a CA"), "{detail}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn signed_by_another_key_is_refused() {
    let id = test_identity(Validity::Current);
    // Same issuer key identifier, but signed with the holder's own key.
    let forged = resign(&id.sign_cert_der, id.sign_key.rsa().expect("RSA identity"));
    let cert = SigningCertificate::parse(&forged).expect("parses");
    let store = with_test_anchor();
    assert!(store.has_issuer_for(&cert));
    assert_eq!(
        store.evaluate(&cert, None, now()),
        Err(TrustError::IssuerSignatureInvalid {
            anchor_label: CONFIGURED_ANCHOR_LABEL.into()
        })
    );

    // A flipped bit in the tbsCertificate breaks the issuer's signature too.
    let serial_changed = cert_support::with_serial_contents(&id.sign_cert_der, &[0x01]);
    let cert = SigningCertificate::parse(&serial_changed).expect("parses");
    assert!(matches!(
        store.evaluate(&cert, None, now()),
        Err(TrustError::IssuerSignatureInvalid { .. })
    ));

    // Re-signing with the right key would fix it; the auth root key is another wrong one.
    let other = resign(&id.sign_cert_der, &id.auth_key);
    let cert = SigningCertificate::parse(&other).expect("parses");
    assert!(matches!(
        store.evaluate(&cert, None, now()),
        Err(TrustError::IssuerSignatureInvalid { .. })
    ));
}

#[test]
fn the_issuer_must_be_valid_at_the_time() {
    let store = with_test_anchor();
    let cert = simulated();
    // The test root is valid 2019-01-01 – 2044-12-31.
    match store.evaluate(&cert, None, datetime!(2045-01-01 00:00 UTC)) {
        Err(TrustError::IssuerExpired { not_after, .. }) => {
            assert_eq!(not_after, datetime!(2044-12-31 23:59:59 UTC));
        }
        other => panic!("{other:?}"),
    }
    match store.evaluate(&cert, None, datetime!(2018-12-31 23:59:59 UTC)) {
        Err(TrustError::IssuerNotYetValid { not_before, .. }) => {
            assert_eq!(not_before, datetime!(2019-01-01 00:00 UTC));
        }
        other => panic!("{other:?}"),
    }
    let text = store
        .evaluate(&cert, None, datetime!(2045-01-01 00:00 UTC))
        .expect_err("expired")
        .to_string();
    assert!(text.contains("2044-12-31T23:59:59Z"), "{text}");
}

#[test]
fn end_entity_validity_is_the_callers_check() {
    // An expired end-entity certificate still chains; the session refuses it separately.
    let expired =
        SigningCertificate::parse(&test_identity(Validity::Expired).sign_cert_der).expect("parses");
    assert!(with_test_anchor().evaluate(&expired, None, now()).is_ok());
}

#[test]
fn a_certificate_without_aki() {
    // A J-LIS root has no authorityKeyIdentifier.
    let root = SigningCertificate::parse_any(&jlis_der("sign_ca_2023.pem")).expect("parses");
    let mut store = TrustStore::new();
    store
        .add_ca_certificate(&jlis_pem("sign_ca_2023.pem"))
        .expect("pinned");
    assert!(!store.has_issuer_for(&root));
    assert_eq!(
        store.evaluate(&root, None, now()),
        Err(TrustError::NoAuthorityKeyId)
    );
}

#[test]
fn pem_with_extra_whitespace() {
    let pem = String::from_utf8(jlis_pem("sign_ca_2023.pem")).expect("ascii");
    let expected = JLIS_SIGNING_ROOT_SHA256[2].1;
    let variants = [
        format!("\n\n  {pem}\n\n"),
        pem.replace('\n', "\r\n"),
        pem.replace('\n', " \t\n   "),
        format!("Subject: J-LIS signing CA 2023\nexplanatory text\n{pem}trailer\n"),
        format!("\u{feff}{pem}"),
        // Base64 all on one line.
        {
            let mut lines: Vec<&str> = pem.lines().collect();
            let body: String = lines[1..lines.len() - 1].concat();
            let (first, last) = (lines.remove(0), lines.pop().expect("end line"));
            format!("{first}\n{body}\n{last}")
        },
    ];
    for (i, text) in variants.iter().enumerate() {
        let anchor = TrustAnchor::from_pem_or_der(text.as_bytes())
            .unwrap_or_else(|e| panic!("variant {i}: {e}"));
        assert_eq!(anchor.sha256(), expected, "variant {i}");
        let mut store = TrustStore::new();
        store
            .add_ca_certificate(text.as_bytes())
            .unwrap_or_else(|e| panic!("variant {i}: {e}"));
    }
}

fn bad_anchor(bytes: &[u8]) -> String {
    match TrustAnchor::from_pem_or_der(bytes) {
        Err(TrustError::BadAnchor { detail }) => detail,
        other => panic!("{other:?}"),
    }
}

#[test]
fn garbage_pem_and_der_give_clear_errors() {
    assert!(bad_anchor(b"").contains("empty"));
    assert!(bad_anchor(b"hello world").contains("neither DER"));
    assert!(bad_anchor(&[0xFF, 0xFE, 0x00]).contains("neither DER"));
    let pem = String::from_utf8(jlis_pem("sign_ca_2023.pem")).expect("ascii");
    assert!(bad_anchor(pem.replace("MII", "M*I").as_bytes()).contains("base64"));
    assert!(bad_anchor(pem.replace("-----END CERTIFICATE-----", "").as_bytes()).contains("END"));
    assert!(
        bad_anchor(pem.replace("CERTIFICATE", "PRIVATE KEY").as_bytes()).contains("PRIVATE KEY")
    );
    assert!(bad_anchor(format!("{pem}{pem}").as_bytes()).contains("2 certificates"));
    // Well-formed base64 that is not a certificate.
    assert!(
        bad_anchor(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
            .contains("DER")
    );
    // Truncated DER.
    let der = jlis_der("sign_ca_2023.pem");
    assert!(bad_anchor(&der[..der.len() / 2]).contains("truncated"));
    // Not a CA.
    let ee = test_identity(Validity::Current).sign_cert_der.clone();
    assert!(bad_anchor(&ee).contains("not a CA"));
    // The same errors through the store.
    let mut store = TrustStore::new();
    assert!(matches!(
        store.add_ca_certificate(b"garbage"),
        Err(TrustError::BadAnchor { .. })
    ));
    assert!(matches!(
        store.add_trust_anchor(b"garbage"),
        Err(TrustError::BadAnchor { .. })
    ));
}

#[test]
fn hostile_card_ca_bytes_never_panic() {
    let root = test_root();
    let store = TrustStore::new();
    let cert = simulated();
    for len in 0..root.len() {
        assert!(store.evaluate(&cert, Some(&root[..len]), now()).is_err());
    }
    let mut state = 0x1234_5678_9ABC_DEF0u64;
    for _ in 0..2000 {
        let mut der = root.clone();
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let at = (state % der.len() as u64) as usize;
        der[at] ^= (state >> 32) as u8 | 1;
        assert!(store.evaluate(&cert, Some(&der), now()).is_err());
    }
}

/// The simulated holder's certificate naming `aki` as its issuer's key and the J-LIS
/// signing CAs' (shared) name as its issuer.
fn naming_jlis_key(aki: &[u8]) -> SigningCertificate {
    use mynalink_simcard::der;
    let jlis = jlis_der("sign_ca_2023.pem");
    let jlis_name = cert_support::field(&jlis, 5);
    let id = test_identity(Validity::Current);
    let with_aki = cert_support::with_extension(
        &id.sign_cert_der,
        &[2, 5, 29, 35],
        Some((
            false,
            &der::sequence(&[&der::implicit_primitive(0, aki).expect("[0]")]),
        )),
    );
    let renamed = cert_support::with_field(&with_aki, 3, &jlis_name);
    SigningCertificate::parse(&renamed).expect("parses")
}

#[test]
fn each_jlis_generation_is_found_by_its_key() {
    // 2015 and 2023 share one name; both configured at once, a certificate naming either's
    // key identifier is checked against that generation (the test certificate is not
    // really signed by J-LIS, so the answer is the issuer signature, naming the root).
    let mut both = TrustStore::new();
    for file in ["sign_ca_2015.pem", "sign_ca_2023.pem"] {
        both.add_ca_certificate(&jlis_pem(file)).expect("pinned");
    }
    for (file, generation) in [
        ("sign_ca_2015.pem", "2015 (signca01)"),
        ("sign_ca_2023.pem", "2023 (signca03)"),
    ] {
        let anchor = TrustAnchor::from_pem_or_der(&jlis_pem(file)).expect("anchor");
        assert_eq!(anchor.jlis_generation(), Some(generation));
        let ski = anchor.subject_key_id().expect("ski");
        let cert = naming_jlis_key(&ski);
        assert!(both.has_issuer_for(&cert), "{generation}");
        let label = format!("J-LIS signing CA {generation}");
        assert_eq!(
            both.evaluate(&cert, None, now()),
            Err(TrustError::IssuerSignatureInvalid {
                anchor_label: label.clone()
            })
        );
        // Read from the card instead: pinned, so it gets as far as the signature too.
        assert_eq!(
            TrustStore::new().evaluate(&cert, Some(&jlis_der(file)), now()),
            Err(TrustError::IssuerSignatureInvalid {
                anchor_label: label
            })
        );
    }
    // The same name with a key identifier no generation has: unknown, never "same name".
    let cert = naming_jlis_key(&[0x5A; 20]);
    assert!(matches!(
        both.evaluate(&cert, None, now()),
        Err(TrustError::UnknownIssuer { .. })
    ));
    // The 2019 generation (signca02) is pinned by its published fingerprint; its
    // certificate is not among the fixtures, so only the pin is checked here.
    assert_eq!(
        mynalink_link::trust::jlis_generation(&JLIS_SIGNING_ROOT_SHA256[1].1),
        Some("2019 (signca02)")
    );
}

#[test]
fn jpki_test_roots_are_trusted_only_as_configured_anchors() {
    use mynalink_simcard::{test_identity_with, SimKey};
    for key in [SimKey::Rsa2048, SimKey::EcP384] {
        let id = test_identity_with(key, Validity::Current);
        let root = SigningCertificate::parse_any(&id.sign_root_der).expect("root");
        let (_, x509) =
            <x509_parser::certificate::X509Certificate as x509_parser::prelude::FromDer<_>>::from_der(
                &id.sign_root_der,
            )
            .expect("parses");
        assert!(x509.subject().to_string().contains("O=JPKI-TEST"));
        let cert = SigningCertificate::parse(&id.sign_cert_der).expect("holder");
        // Offered by the card: refused, whatever else is configured.
        let mut jlis = TrustStore::new();
        jlis.add_ca_certificate(&jlis_pem("sign_ca_2023.pem"))
            .expect("pinned");
        for store in [TrustStore::new(), jlis] {
            assert_eq!(
                store.evaluate(&cert, Some(&id.sign_root_der), now()),
                Err(TrustError::CardCaNotPinned {
                    sha256_hex: hex::encode(root.sha256())
                }),
                "{key:?}"
            );
        }
        // Configured as a J-LIS CA certificate: refused (not pinned).
        assert!(matches!(
            TrustStore::new().add_ca_certificate(&id.sign_root_der),
            Err(TrustError::NotPinned { .. })
        ));
        // Configured as a trust anchor: trusted.
        let mut configured = TrustStore::new();
        configured
            .add_trust_anchor(&id.sign_root_der)
            .expect("anchor");
        let chain = configured.evaluate(&cert, None, now()).expect("trusted");
        assert_eq!(chain.anchor_label, CONFIGURED_ANCHOR_LABEL);
    }
}
