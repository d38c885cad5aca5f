//! Parsing the signing certificate: real J-LIS roots, the simulated card's certificate,
//! hostile input (prefixes, mutations, trailing bytes) and serial-number edge cases.

mod cert_support;

use cert_support::{jlis_der, split_certificate, with_serial_contents};
use mynalink_link::certificate::{CertificateError, SigningCertificate, Validity, MAX_DER_LEN};
use mynalink_simcard::{test_identity, Validity as SimValidity};
use rand::SeedableRng;
use rsa::traits::PublicKeyParts;
use time::macros::datetime;
use time::Duration;
use x509_parser::prelude::FromDer;

const JLIS_ISSUER_OU: &str = "JPKI for digital signature";

#[test]
fn real_jlis_2023_root() {
    let der = jlis_der("sign_ca_2023.pem");
    assert_eq!(der.len(), 1304);
    let cert = SigningCertificate::parse_any(&der).expect("parses");
    assert_eq!(cert.der(), der.as_slice());
    assert_eq!(cert.serial_hex(), "067c6a21");
    assert_eq!(cert.serial_decimal(), "108816929");
    assert_eq!(cert.not_before(), datetime!(2023-07-16 00:50:27 UTC));
    assert_eq!(cert.not_after(), datetime!(2033-07-15 14:59:59 UTC));
    let issuer = cert.issuer();
    assert!(issuer.contains("C=JP"), "{issuer}");
    assert!(issuer.contains("O=JPKI"), "{issuer}");
    assert!(issuer.contains(JLIS_ISSUER_OU), "{issuer}");
    assert!(issuer.contains("Japan Agency for Local Authority Information Systems"));
    assert_eq!(
        hex::encode(cert.sha256()),
        "d227f6cde11d35c5252178f106f843d24651944975413b539fa2fb68dbfa365f"
    );
    // A self-signed root carries no authorityKeyIdentifier.
    assert_eq!(cert.authority_key_id(), None);
    let key = cert.public_key().rsa().expect("an RSA key");
    assert_eq!(key.n().bits(), 2048);
    assert_eq!(key.e().to_bytes_be(), vec![1, 0, 1]);
}

#[test]
fn real_jlis_2015_root() {
    let der = jlis_der("sign_ca_2015.pem");
    assert_eq!(der.len(), 1301);
    let cert = SigningCertificate::parse_any(&der).expect("parses");
    assert_eq!(cert.serial_hex(), "01");
    assert_eq!(cert.serial_decimal(), "1");
    assert_eq!(cert.not_before(), datetime!(2015-10-20 02:40:28 UTC));
    assert_eq!(cert.not_after(), datetime!(2025-10-19 14:59:59 UTC));
    assert_eq!(
        hex::encode(cert.sha256()),
        "19645405a1fe14377434bd55957628ac4038557c542403a2243f21c706fc9355"
    );
    // Same issuer DN as the 2023 generation: the DN cannot tell them apart.
    let other = SigningCertificate::parse_any(&jlis_der("sign_ca_2023.pem")).expect("parses");
    assert_eq!(cert.issuer(), other.issuer());
    assert_ne!(cert.sha256(), other.sha256());
}

#[test]
fn ca_certificates_have_no_basic4() {
    // The J-LIS roots have a subjectAltName (a directoryName), but no basic-4 otherNames.
    for file in ["sign_ca_2015.pem", "sign_ca_2023.pem"] {
        let cert = SigningCertificate::parse_any(&jlis_der(file)).expect("parses");
        let e = cert.basic4().expect_err("no basic-4 on a CA certificate");
        assert_eq!(e, CertificateError::NoBasic4);
        assert!(e.to_string().contains("not a JPKI signing certificate"));
    }
}

#[test]
fn validity_and_days_left() {
    let cert = SigningCertificate::parse_any(&jlis_der("sign_ca_2023.pem")).expect("parses");
    let not_before = cert.not_before();
    let not_after = cert.not_after();
    assert_eq!(
        cert.is_valid_at(not_before - Duration::seconds(1)),
        Validity::NotYetValid
    );
    assert_eq!(cert.is_valid_at(not_before), Validity::Valid);
    assert_eq!(cert.is_valid_at(not_after), Validity::Valid);
    assert_eq!(
        cert.is_valid_at(not_after + Duration::seconds(1)),
        Validity::Expired
    );

    assert_eq!(cert.days_left(not_after), 0);
    assert_eq!(cert.days_left(not_after - Duration::hours(23)), 0);
    assert_eq!(cert.days_left(not_after - Duration::days(1)), 1);
    assert_eq!(
        cert.days_left(not_after - Duration::days(30) - Duration::hours(1)),
        30
    );
    assert_eq!(cert.days_left(not_after + Duration::seconds(1)), -1);
    assert_eq!(cert.days_left(not_after + Duration::days(2)), -2);
}

#[test]
fn simulated_signing_certificate() {
    let id = test_identity(SimValidity::Current);
    let cert = SigningCertificate::parse(&id.sign_cert_der).expect("parses");
    assert_eq!(
        cert.is_valid_at(time::OffsetDateTime::now_utc()),
        Validity::Valid
    );
    assert!(cert.days_left(time::OffsetDateTime::now_utc()) > 365);
    assert_eq!(
        cert.public_key().rsa().expect("an RSA key"),
        &id.sign_key.rsa().expect("RSA identity").to_public_key()
    );
    assert!(cert.authority_key_id().is_some_and(|aki| aki.len() == 20));

    // The simulated serial has its high bit set, so DER carries a leading 00 that the
    // serial number (発行番号) does not include.
    let (_, x509) = x509_parser::certificate::X509Certificate::from_der(&id.sign_cert_der)
        .expect("x509-parser reads it");
    let raw = x509.tbs_certificate.raw_serial();
    assert_eq!(raw[0], 0x00);
    assert!(raw[1] & 0x80 != 0);
    assert_eq!(cert.serial_hex(), hex::encode(&raw[1..]));
    assert_eq!(
        cert.serial_decimal(),
        x509.tbs_certificate.serial.to_str_radix(10)
    );

    // Debug output identifies the certificate without personal data.
    let debug = format!("{cert:?}");
    assert!(debug.contains(&cert.serial_hex()), "{debug}");
    assert!(!debug.contains("Chiyoda"), "{debug}");
}

#[test]
fn serial_edge_cases() {
    let base = test_identity(SimValidity::Current).sign_cert_der.clone();
    let cases: &[(&[u8], &str, &str)] = &[
        (&[0x00], "00", "0"),
        (&[0x01], "01", "1"),
        (&[0x7F], "7f", "127"),
        (&[0x00, 0x80], "80", "128"),
        (&[0x00, 0xFF, 0xFF], "ffff", "65535"),
        // A high-bit serial without the leading 00 is a negative INTEGER in DER; CAs that
        // do this mean the unsigned number, as x509-parser also reads it.
        (&[0x80], "80", "128"),
        (&[0x06, 0x7C, 0x6A, 0x21], "067c6a21", "108816929"),
        (&[0x01, 0x00], "0100", "256"),
        (
            &[0xFF; 20],
            "ffffffffffffffffffffffffffffffffffffffff",
            "1461501637330902918203684832716283019655932542975",
        ),
        (
            &[0x00, 0x9C, 0x4E, 0x21, 0x07, 0x5A],
            "9c4e21075a",
            "671325685594",
        ),
    ];
    for &(contents, hex, decimal) in cases {
        let der = with_serial_contents(&base, contents);
        let cert = SigningCertificate::parse(&der).expect("parses");
        assert_eq!(cert.serial_hex(), hex, "{contents:02x?}");
        assert_eq!(cert.serial_decimal(), decimal, "{contents:02x?}");
    }
    // An INTEGER with no content octets is not an integer.
    let der = with_serial_contents(&base, &[]);
    assert!(SigningCertificate::parse(&der).is_err());
}

#[test]
fn empty_too_large_pem_and_not_der() {
    assert_eq!(SigningCertificate::parse(&[]), Err(CertificateError::Empty));
    let huge = vec![0x30; MAX_DER_LEN + 1];
    assert_eq!(
        SigningCertificate::parse(&huge),
        Err(CertificateError::TooLarge {
            length: MAX_DER_LEN + 1,
            max: MAX_DER_LEN
        })
    );
    let pem = cert_support::jlis_pem("sign_ca_2023.pem");
    assert!(matches!(
        SigningCertificate::parse(&pem),
        Err(CertificateError::NotDer { detail }) if detail.contains("PEM")
    ));
    assert!(matches!(
        SigningCertificate::parse(&[0x04, 0x02, 0x30, 0x00]),
        Err(CertificateError::NotDer { .. })
    ));
    assert!(matches!(
        SigningCertificate::parse(&[0x30, 0x80, 0x00, 0x00]),
        Err(CertificateError::NotDer { .. })
    ));
    // A well-formed SEQUENCE that is not a certificate.
    assert!(matches!(
        SigningCertificate::parse(&[0x30, 0x03, 0x02, 0x01, 0x01]),
        Err(CertificateError::Malformed { .. })
    ));
}

#[test]
fn trailing_bytes_are_refused() {
    for mut der in [
        jlis_der("sign_ca_2023.pem"),
        test_identity(SimValidity::Current).sign_cert_der.clone(),
    ] {
        der.push(0x00);
        assert_eq!(
            SigningCertificate::parse(&der),
            Err(CertificateError::TrailingData { count: 1 })
        );
        der.extend_from_slice(&[0x30, 0x00]);
        assert_eq!(
            SigningCertificate::parse(&der),
            Err(CertificateError::TrailingData { count: 3 })
        );
    }
}

#[test]
fn every_prefix_is_an_error() {
    for der in [
        jlis_der("sign_ca_2023.pem"),
        jlis_der("sign_ca_2015.pem"),
        test_identity(SimValidity::Current).sign_cert_der.clone(),
    ] {
        for len in 0..der.len() {
            let result = SigningCertificate::parse_any(&der[..len]);
            assert!(result.is_err(), "prefix of {len} bytes accepted");
        }
        assert!(SigningCertificate::parse_any(&der).is_ok());
    }
}

/// Deterministic generator for the mutation test.
struct XorShift(u64);

impl XorShift {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

#[test]
fn mutated_certificates_never_panic() {
    let id = test_identity(SimValidity::Current);
    let originals = [id.sign_cert_der.clone(), jlis_der("sign_ca_2023.pem")];
    let mut rng = XorShift(0xC0FF_EE00_1234_5678);
    for original in &originals {
        for round in 0..3000 {
            let mut der = original.clone();
            for _ in 0..=rng.below(4) {
                let at = rng.below(der.len());
                match round % 3 {
                    0 => der[at] ^= 1 << rng.below(8),
                    1 => der[at] = rng.below(256) as u8,
                    _ => {
                        // Length bytes are the interesting targets: small values near tags.
                        der[at] = [0x00, 0x7F, 0x80, 0x81, 0x82, 0x84, 0xFF][rng.below(7)];
                    }
                }
            }
            if let Ok(cert) = SigningCertificate::parse(&der) {
                // Whatever parses must be fully usable without panicking.
                let _ = cert.serial_hex();
                let _ = cert.serial_decimal();
                let _ = cert.issuer();
                let _ = cert.basic4();
                let _ = cert.days_left(time::OffsetDateTime::now_utc());
                let _ = cert.verify_sha256_signature(b"x", &[0u8; 256]);
            }
        }
    }
}

/// The simulated certificate with another SubjectPublicKeyInfo.
fn with_spki(algorithm: &[u8], key_bits: &[u8]) -> Vec<u8> {
    use mynalink_simcard::der;
    let base = test_identity(SimValidity::Current).sign_cert_der.clone();
    cert_support::edit_tbs(&base, |fields| {
        let spki = der::sequence(&[algorithm, &der::bit_string(key_bits, 0).expect("bits")]);
        fields[6] = cert_support::one(&spki);
    })
}

fn rsa_key_bits(modulus: &[u8]) -> Vec<u8> {
    use mynalink_simcard::der;
    der::sequence(&[&der::integer_unsigned(modulus), &der::integer_u64(65537)])
}

#[test]
fn unsupported_keys_are_refused() {
    use mynalink_simcard::der;
    let oid = |arcs: &[u64]| der::oid(arcs).expect("oid");
    let rsa_algorithm = der::sequence(&[&oid(&[1, 2, 840, 113549, 1, 1, 1]), &der::null()]);
    let ec_algorithm =
        |curve: &[u64]| der::sequence(&[&oid(&[1, 2, 840, 10045, 2, 1]), &oid(curve)]);
    let point = mynalink_simcard::TestKey::ec_p384("k").subject_public_key();
    let unsupported = |der: Vec<u8>| match SigningCertificate::parse(&der) {
        Err(CertificateError::UnsupportedKey { found }) => found,
        other => panic!("{other:?}"),
    };

    // An RSA-1024 key.
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let small = rsa::RsaPrivateKey::new(&mut rng, 1024).expect("key");
    let found = unsupported(with_spki(
        &rsa_algorithm,
        &rsa_key_bits(&small.n().to_bytes_be()),
    ));
    assert_eq!(found, "RSA-1024");
    // RSA-8192: larger than accepted (the modulus need not be a real one to be refused).
    let mut huge = vec![0xC5; 1024];
    huge[1023] = 0x01;
    assert_eq!(
        unsupported(with_spki(&rsa_algorithm, &rsa_key_bits(&huge))),
        "RSA-8192"
    );
    // The id-ecPublicKey OID without a named curve.
    let bare_ec = der::sequence(&[&oid(&[1, 2, 840, 10045, 2, 1])]);
    assert!(unsupported(with_spki(&bare_ec, &point)).contains("named curve"));
    // P-521 and secp256k1 are not accepted curves.
    assert!(
        unsupported(with_spki(&ec_algorithm(&[1, 3, 132, 0, 35]), &point)).contains("1.3.132.0.35")
    );
    assert!(
        unsupported(with_spki(&ec_algorithm(&[1, 3, 132, 0, 10]), &point)).contains("1.3.132.0.10")
    );
    // A P-384 point labelled P-256, and a point that is not on the curve.
    assert!(unsupported(with_spki(
        &ec_algorithm(&[1, 2, 840, 10045, 3, 1, 7]),
        &point
    ))
    .contains("P-256"));
    let mut off_curve = point.clone();
    off_curve[96] ^= 1;
    assert!(
        unsupported(with_spki(&ec_algorithm(&[1, 3, 132, 0, 34]), &off_curve)).contains("P-384")
    );
    // Ed25519.
    let ed25519 = der::sequence(&[&oid(&[1, 3, 101, 112])]);
    assert!(unsupported(with_spki(&ed25519, &[7; 32])).contains("1.3.101.112"));

    // The message says what is accepted.
    let e = SigningCertificate::parse(&with_spki(
        &rsa_algorithm,
        &rsa_key_bits(&small.n().to_bytes_be()),
    ))
    .expect_err("refused");
    assert!(
        e.to_string()
            .contains("RSA 2048–4096 bits, ECDSA P-256 or P-384"),
        "{e}"
    );
}

#[test]
fn accepted_keys_parse_with_their_kind() {
    use mynalink_card::KeyKind;
    use mynalink_simcard::{test_identity_with, SimKey};
    for (key, kind) in [
        (SimKey::Rsa2048, KeyKind::Rsa { bits: 2048 }),
        (SimKey::Rsa3072, KeyKind::Rsa { bits: 3072 }),
        (SimKey::EcP384, KeyKind::EcP384),
    ] {
        let id = test_identity_with(key, SimValidity::Current);
        let cert = SigningCertificate::parse(&id.sign_cert_der).expect("parses");
        assert_eq!(cert.key_kind(), kind);
        let root = SigningCertificate::parse_any(&id.sign_root_der).expect("root parses");
        assert_eq!(root.key_kind().is_rsa(), key != SimKey::EcP384);
        assert!(cert.basic4().is_ok());
    }
    // A P-256 key.
    let p256 = mynalink_simcard::TestKey::ec_p256("p256 holder");
    let chain = mynalink_simcard::test_chain(&mynalink_simcard::ChainSpec {
        root_key: &p256,
        ee_key: &p256,
        algorithm: mynalink_card::SignatureAlgorithm::Ecdsa(mynalink_card::HashAlgorithm::Sha256),
        label: "p256",
        now: time::OffsetDateTime::now_utc(),
    })
    .expect("chain");
    let cert = SigningCertificate::parse(&chain.cert_der).expect("parses");
    assert_eq!(cert.key_kind(), KeyKind::EcP256);
}

#[test]
fn signature_parts_are_where_expected() {
    // Sanity check of the test helper against x509-parser.
    let der = test_identity(SimValidity::Current).sign_cert_der.clone();
    let (tbs, _, sig) = split_certificate(&der);
    let (_, x509) = x509_parser::certificate::X509Certificate::from_der(&der).expect("parses");
    assert_eq!(tbs.encode(), x509.tbs_certificate.as_ref());
    assert_eq!(&sig.contents[1..], x509.signature_value.data.as_ref());
}
