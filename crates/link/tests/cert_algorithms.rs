//! Every accepted key and signature algorithm, for chains (the issuer's signature on the
//! certificate) and for the statement (the card's signature): RSA PKCS#1 v1.5 and PSS with
//! SHA-256/384/512, ECDSA P-256 and P-384 with SHA-256/384; and the refusal of weak or
//! unknown ones with clear errors.

mod cert_support;

use cert_support::{edit_tbs, split_certificate, Element};
use mynalink_card::{HashAlgorithm, KeyKind, SignatureAlgorithm};
use mynalink_link::certificate::{SignatureError, SigningCertificate};
use mynalink_link::trust::{TrustError, TrustStore};
use mynalink_link::{ErrorCode, FlowError};
use mynalink_simcard::{der, test_chain, test_identity_with, ChainSpec, SimKey, TestKey, Validity};
use time::OffsetDateTime;

const SHA256: HashAlgorithm = HashAlgorithm::Sha256;
const SHA384: HashAlgorithm = HashAlgorithm::Sha384;
const SHA512: HashAlgorithm = HashAlgorithm::Sha512;

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

/// RSA keys without generating any: the simulated card's RSA-2048 and RSA-3072 keys.
fn rsa2048() -> TestKey {
    test_identity_with(SimKey::Rsa2048, Validity::Current)
        .sign_key
        .clone()
}

fn rsa3072() -> TestKey {
    test_identity_with(SimKey::Rsa3072, Validity::Current)
        .sign_key
        .clone()
}

fn chain(root: &TestKey, ee: &TestKey, algorithm: SignatureAlgorithm) -> (Vec<u8>, Vec<u8>) {
    let chain = test_chain(&ChainSpec {
        root_key: root,
        ee_key: ee,
        algorithm,
        label: "algorithm test",
        now: now(),
    })
    .expect("chain");
    (chain.root_der, chain.cert_der)
}

fn trusted(root: &[u8]) -> TrustStore {
    let mut store = TrustStore::new();
    store.add_trust_anchor(root).expect("anchor");
    store
}

#[test]
fn chains_verify_with_every_accepted_algorithm() {
    let p256 = TestKey::ec_p256("chain root p256");
    let p384 = TestKey::ec_p384("chain root p384");
    let holder = TestKey::ec_p384("chain holder");
    let cases = [
        (rsa2048(), SignatureAlgorithm::RsaPkcs1(SHA256)),
        (rsa2048(), SignatureAlgorithm::RsaPkcs1(SHA384)),
        (rsa2048(), SignatureAlgorithm::RsaPkcs1(SHA512)),
        (rsa3072(), SignatureAlgorithm::RsaPkcs1(SHA256)),
        (rsa2048(), SignatureAlgorithm::RsaPss(SHA256)),
        (rsa2048(), SignatureAlgorithm::RsaPss(SHA384)),
        (rsa3072(), SignatureAlgorithm::RsaPss(SHA512)),
        (p256.clone(), SignatureAlgorithm::Ecdsa(SHA256)),
        (p256, SignatureAlgorithm::Ecdsa(SHA384)),
        (p384.clone(), SignatureAlgorithm::Ecdsa(SHA384)),
        (p384, SignatureAlgorithm::Ecdsa(SHA256)),
    ];
    for (root_key, algorithm) in cases {
        let (root, cert) = chain(&root_key, &holder, algorithm);
        let cert = SigningCertificate::parse(&cert).expect("parses");
        let trust = trusted(&root);
        trust
            .evaluate(&cert, None, now())
            .unwrap_or_else(|e| panic!("{algorithm} with {}: {e}", root_key.kind()));
        // The same chain with the root read from the card is refused: a JPKI-TEST root is
        // trusted only when configured.
        assert!(matches!(
            TrustStore::new().evaluate(&cert, Some(&root), now()),
            Err(TrustError::CardCaNotPinned { .. })
        ));
        // Another key behind the same key identifier does not verify.
        let other = TestKey::ec_p384("another root");
        let forged = resign(cert.der(), &other, algorithm);
        if let Some(forged) = forged {
            let forged = SigningCertificate::parse(&forged).expect("parses");
            assert!(
                matches!(
                    trust.evaluate(&forged, None, now()),
                    Err(TrustError::IssuerSignatureInvalid { .. })
                ),
                "{algorithm}"
            );
        }
    }
}

/// The certificate signed again by `key` with `algorithm` (identifiers unchanged); `None`
/// when the key cannot make that algorithm.
fn resign(cert: &[u8], key: &TestKey, algorithm: SignatureAlgorithm) -> Option<Vec<u8>> {
    let (tbs, alg, _) = split_certificate(cert);
    let signature = key.sign_certificate(algorithm, &tbs.encode())?;
    let mut bits = vec![0u8];
    bits.extend_from_slice(&signature);
    let sig = Element {
        tag: 0x03,
        contents: bits,
    };
    let body: Vec<u8> = [tbs, alg, sig].iter().flat_map(Element::encode).collect();
    Some(der::tlv(0x30, &body))
}

/// The certificate with both algorithm identifiers replaced by `identifier` (whole DER).
fn with_algorithm(cert: &[u8], identifier: &[u8]) -> Vec<u8> {
    let edited = edit_tbs(cert, |fields| {
        fields[2] = cert_support::one(identifier);
    });
    let (tbs, _, sig) = split_certificate(&edited);
    let alg = cert_support::one(identifier);
    let body: Vec<u8> = [tbs, alg, sig].iter().flat_map(Element::encode).collect();
    der::tlv(0x30, &body)
}

fn oid(arcs: &[u64]) -> Vec<u8> {
    der::oid(arcs).expect("oid")
}

#[test]
fn weak_and_unknown_certificate_algorithms_are_certificate_faults() {
    let id = test_identity_with(SimKey::Rsa2048, Validity::Current);
    let trust = trusted(&id.sign_root_der);
    let null = der::null();
    let sha1 = der::sequence(&[&oid(&[1, 3, 14, 3, 2, 26]), &null]);
    let mgf1_sha256 = der::sequence(&[
        &oid(&[1, 2, 840, 113549, 1, 1, 8]),
        &der::sequence(&[&oid(&[2, 16, 840, 1, 101, 3, 4, 2, 1]), &null]),
    ]);
    let sha256_id = der::sequence(&[&oid(&[2, 16, 840, 1, 101, 3, 4, 2, 1]), &null]);
    let pss = |params: &[&[u8]]| {
        der::sequence(&[&oid(&[1, 2, 840, 113549, 1, 1, 10]), &der::sequence(params)])
    };
    let explicit = |n: u8, inner: &[u8]| der::explicit(n, inner).expect("explicit");
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "sha1WithRSAEncryption",
            der::sequence(&[&oid(&[1, 2, 840, 113549, 1, 1, 5]), &null]),
        ),
        (
            "md5WithRSAEncryption",
            der::sequence(&[&oid(&[1, 2, 840, 113549, 1, 1, 4]), &null]),
        ),
        (
            "ecdsa-with-SHA1",
            der::sequence(&[&oid(&[1, 2, 840, 10045, 4, 1])]),
        ),
        (
            "ecdsa-with-SHA512",
            der::sequence(&[&oid(&[1, 2, 840, 10045, 4, 3, 4])]),
        ),
        (
            "ecdsa-with-SHA256 with NULL parameters",
            der::sequence(&[&oid(&[1, 2, 840, 10045, 4, 3, 2]), &null]),
        ),
        (
            "sha256WithRSAEncryption with an OID as parameters",
            der::sequence(&[&oid(&[1, 2, 840, 113549, 1, 1, 11]), &oid(&[1, 2, 3])]),
        ),
        ("RSASSA-PSS with the SHA-1 defaults", pss(&[])),
        ("RSASSA-PSS with SHA-1 named", pss(&[&explicit(0, &sha1)])),
        (
            "RSASSA-PSS with SHA-256 and MGF1 over SHA-1",
            pss(&[
                &explicit(0, &sha256_id),
                &explicit(2, &der::integer_u64(32)),
            ]),
        ),
        (
            "RSASSA-PSS with a 20-byte salt",
            pss(&[
                &explicit(0, &sha256_id),
                &explicit(1, &mgf1_sha256),
                &explicit(2, &der::integer_u64(20)),
            ]),
        ),
        (
            "RSASSA-PSS without parameters",
            der::sequence(&[&oid(&[1, 2, 840, 113549, 1, 1, 10])]),
        ),
        (
            "dsa-with-sha256",
            der::sequence(&[&oid(&[2, 16, 840, 1, 101, 3, 4, 3, 2])]),
        ),
    ];
    for (what, identifier) in cases {
        let cert = SigningCertificate::parse(&with_algorithm(&id.sign_cert_der, &identifier))
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        let e = trust.evaluate(&cert, None, now()).expect_err(what);
        assert!(
            matches!(e, TrustError::UnsupportedSignatureAlgorithm { .. }),
            "{what}: {e:?}"
        );
        assert!(e.is_certificate_fault(), "{what}");
        assert_eq!(
            FlowError::from(e).code,
            ErrorCode::CertificateInvalid,
            "{what}"
        );
    }

    // The outer identifier must be the inner one (RFC 5280 §4.1.1.2).
    let sha384_rsa = der::sequence(&[&oid(&[1, 2, 840, 113549, 1, 1, 12]), &null]);
    let (tbs, _, sig) = split_certificate(&id.sign_cert_der);
    let body: Vec<u8> = [tbs, cert_support::one(&sha384_rsa), sig]
        .iter()
        .flat_map(Element::encode)
        .collect();
    let mismatched = SigningCertificate::parse(&der::tlv(0x30, &body)).expect("parses");
    match trust.evaluate(&mismatched, None, now()) {
        Err(e @ TrustError::UnsupportedSignatureAlgorithm { .. }) => {
            assert!(e.to_string().contains("inside"), "{e}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_algorithm_that_does_not_fit_the_issuers_key_is_not_its_signature() {
    // An ECDSA-signed certificate under an RSA root's key identifier.
    let id = test_identity_with(SimKey::Rsa2048, Validity::Current);
    let ec = TestKey::ec_p384("impostor");
    let ecdsa = der::sequence(&[&oid(&[1, 2, 840, 10045, 4, 3, 3])]);
    let relabelled = with_algorithm(&id.sign_cert_der, &ecdsa);
    let forged = resign(&relabelled, &ec, SignatureAlgorithm::Ecdsa(SHA384)).expect("signs");
    let cert = SigningCertificate::parse(&forged).expect("parses");
    assert!(matches!(
        trusted(&id.sign_root_der).evaluate(&cert, None, now()),
        Err(TrustError::IssuerSignatureInvalid { .. })
    ));
}

#[test]
fn statement_signatures_with_every_algorithm() {
    let message = br#"{"purpose":"mynalink/first-stage-binding"}"#;
    let keys = [
        rsa2048(),
        rsa3072(),
        TestKey::ec_p256("statement p256"),
        TestKey::ec_p384("statement p384"),
    ];
    for key in &keys {
        let (_, cert) = chain(
            &TestKey::ec_p384("statement root"),
            key,
            SignatureAlgorithm::Ecdsa(SHA384),
        );
        let cert = SigningCertificate::parse(&cert).expect("parses");
        assert_eq!(cert.key_kind(), key.kind());
        for algorithm in SignatureAlgorithm::ALL {
            let Some(signature) = key.sign_raw(algorithm, message) else {
                assert!(!algorithm.fits(key.kind()), "{algorithm} {}", key.kind());
                assert_eq!(
                    cert.verify_signature(algorithm, message, &[0; 8]),
                    Err(SignatureError::AlgorithmDoesNotFit {
                        algorithm: algorithm.name(),
                        key: key.kind().name(),
                    })
                );
                continue;
            };
            assert_eq!(signature.len(), key.kind().signature_len(), "{algorithm}");
            cert.verify_signature(algorithm, message, &signature)
                .unwrap_or_else(|e| panic!("{algorithm} {}: {e}", key.kind()));
            // The server's check finds the algorithm from the key.
            assert_eq!(
                cert.verify_any_signature(message, &signature),
                Ok(algorithm),
                "{}",
                key.kind()
            );
            // Another message, a flipped bit, another length.
            assert_eq!(
                cert.verify_any_signature(b"another statement", &signature),
                Err(SignatureError::Mismatch)
            );
            let mut flipped = signature.clone();
            flipped[signature.len() / 2] ^= 0x10;
            assert_eq!(
                cert.verify_signature(algorithm, message, &flipped),
                Err(SignatureError::Mismatch),
                "{algorithm}"
            );
            let mut longer = signature.clone();
            longer.push(0);
            assert_eq!(
                cert.verify_any_signature(message, &longer),
                Err(SignatureError::WrongLength {
                    length: signature.len() + 1
                })
            );
        }
    }
}

#[test]
fn ecdsa_statement_signatures_are_r_and_s_not_der() {
    let key = TestKey::ec_p384("der statement");
    let (_, cert) = chain(&key, &key, SignatureAlgorithm::Ecdsa(SHA384));
    let cert = SigningCertificate::parse(&cert).expect("parses");
    let message = b"statement";
    let der_signature = key
        .sign_certificate(SignatureAlgorithm::Ecdsa(SHA384), message)
        .expect("signs");
    assert!(matches!(
        cert.verify_any_signature(message, &der_signature),
        Err(SignatureError::WrongLength { .. }) | Err(SignatureError::Mismatch)
    ));
    // All zeros is not a signature (r = s = 0), and must not panic.
    assert_eq!(
        cert.verify_any_signature(message, &[0; 96]),
        Err(SignatureError::Mismatch)
    );
    assert_eq!(
        cert.verify_any_signature(message, &[0xFF; 96]),
        Err(SignatureError::Mismatch)
    );
    assert_eq!(cert.key_kind(), KeyKind::EcP384);
}

#[test]
fn the_simulated_next_generation_card_chains_to_its_own_root() {
    let id = test_identity_with(SimKey::EcP384, Validity::Current);
    let cert = SigningCertificate::parse(&id.sign_cert_der).expect("parses");
    let rsa_root = test_identity_with(SimKey::Rsa2048, Validity::Current)
        .sign_root_der
        .clone();
    // Only the RSA test root configured: the P-384 card's issuer is unknown.
    assert!(matches!(
        trusted(&rsa_root).evaluate(&cert, None, now()),
        Err(TrustError::UnknownIssuer { .. })
    ));
    let mut both = trusted(&rsa_root);
    both.add_trust_anchor(&id.sign_root_der).expect("anchor");
    both.evaluate(&cert, None, now()).expect("trusted");
    // Read from the card, the P-384 TEST root is trusted only because it is configured.
    assert!(both.evaluate(&cert, Some(&id.sign_root_der), now()).is_ok());
    assert!(matches!(
        TrustStore::new().evaluate(&cert, Some(&id.sign_root_der), now()),
        Err(TrustError::CardCaNotPinned { .. })
    ));
    assert!(mynalink_link::trust::is_public_test_root(
        &SigningCertificate::parse_any(&id.sign_root_der)
            .expect("root")
            .sha256()
    ));
}
