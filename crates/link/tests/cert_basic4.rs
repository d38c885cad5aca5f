//! The basic-4 information (基本4情報) in the signing certificate's subjectAltName, and
//! signatures made with the certificate's key.

mod cert_support;

use cert_support::{general_names, other_name, other_name_raw, with_san};
use mynalink_link::certificate::{
    Basic4, CertificateError, Era, Sex, SignatureError, SigningCertificate,
};
use mynalink_simcard::{der, test_identity, Validity};
use rsa::Pkcs1v15Sign;
use sha2::{Digest, Sha256};

fn simulated() -> SigningCertificate {
    SigningCertificate::parse(&test_identity(Validity::Current).sign_cert_der).expect("parses")
}

/// The simulated certificate with its subjectAltName replaced by `names`.
fn with_names(names: &[Vec<u8>]) -> SigningCertificate {
    let base = &test_identity(Validity::Current).sign_cert_der;
    SigningCertificate::parse(&with_san(base, Some(&general_names(names)))).expect("parses")
}

#[test]
fn basic4_of_the_simulated_card() {
    let id = test_identity(Validity::Current);
    let b = simulated().basic4().expect("basic-4");
    assert_eq!(b.name, "試験\u{3000}花子");
    assert_eq!(b.name, id.holder.name);
    assert_eq!(
        b.name_substitute_flags.as_deref(),
        Some(id.holder.name_substitute_flags.as_str())
    );
    assert_eq!(b.sex, Some(Sex::Female));
    let birth = b.birth_date.expect("birth date");
    assert_eq!(
        (birth.era, birth.year, birth.month, birth.day),
        (Era::Heisei, 1990, 1, 2)
    );
    assert_eq!(birth.to_string(), "1990-01-02");
    assert_eq!(b.address.as_deref(), Some(id.holder.address.as_str()));
    assert_eq!(
        b.address_substitute_flags.as_deref(),
        Some(id.holder.address_substitute_flags.as_str())
    );
    assert!(!b.uses_substitute_characters());
}

#[test]
fn debug_is_redacted() {
    let b = simulated().basic4().expect("basic-4");
    assert_eq!(format!("{b:?}"), "Basic4 { .. redacted }");
    assert_eq!(format!("{b:#?}"), "Basic4 { .. redacted }");
    // Wrapped in other types, too.
    let wrapped = format!("{:?}", Some(Ok::<Basic4, CertificateError>(b)));
    assert!(!wrapped.contains("試験"), "{wrapped}");
}

#[test]
fn basic4_wipes_itself() {
    fn assert_zeroize_on_drop<T: zeroize::ZeroizeOnDrop>() {}
    assert_zeroize_on_drop::<Basic4>();
    use zeroize::Zeroize;
    let mut b = simulated().basic4().expect("basic-4");
    b.zeroize();
    assert!(b.name.is_empty());
    assert_eq!(b.address, None);
    assert_eq!(b.birth_date, None);
    assert_eq!(b.sex, None);
}

#[test]
fn found_by_oid_in_any_order() {
    let b = with_names(&[
        other_name(6, "000"),
        other_name(5, "大阪府大阪市"),
        // A foreign otherName and another kind of GeneralName are ignored.
        {
            let oid = der::oid(&[1, 3, 6, 1, 4, 1, 99999, 1]).expect("oid");
            let mut contents = oid;
            contents.extend_from_slice(&der::tlv(0xA0, &der::utf8_string("x")));
            der::tlv(0xA0, &contents)
        },
        der::tlv(0x82, b"example.test"),
        other_name(3, "1"),
        other_name(4, "319641010"),
        other_name(2, "01000"),
        other_name(1, "山田\u{3000}𠮷郎"),
    ])
    .basic4()
    .expect("basic-4");
    assert_eq!(b.name, "山田\u{3000}𠮷郎");
    assert_eq!(b.name_substitute_flags.as_deref(), Some("01000"));
    assert_eq!(b.sex, Some(Sex::Male));
    let birth = b.birth_date.expect("birth");
    assert_eq!(
        (birth.era, birth.year, birth.month, birth.day),
        (Era::Showa, 1964, 10, 10)
    );
    assert_eq!(b.address.as_deref(), Some("大阪府大阪市"));
    assert_eq!(b.address_substitute_flags.as_deref(), Some("000"));
    assert!(b.uses_substitute_characters());
}

#[test]
fn only_the_name_is_required() {
    let b = with_names(&[other_name(1, "試験\u{3000}一郎")])
        .basic4()
        .expect("basic-4");
    assert_eq!(b.name, "試験\u{3000}一郎");
    assert_eq!((b.sex, b.birth_date, b.address.clone()), (None, None, None));
    assert_eq!(
        with_names(&[other_name(3, "3")]).basic4().map(|_| ()),
        Err(CertificateError::MissingName)
    );
    let sex = with_names(&[other_name(1, "a"), other_name(3, "3")])
        .basic4()
        .expect("basic-4")
        .sex;
    assert_eq!(sex, Some(Sex::Unknown));
}

#[test]
fn missing_basic4() {
    let base = &test_identity(Validity::Current).sign_cert_der;
    let no_san = SigningCertificate::parse(&with_san(base, None)).expect("parses");
    assert_eq!(no_san.basic4().map(|_| ()), Err(CertificateError::NoBasic4));
    let dns_only = with_names(&[der::tlv(0x82, b"example.test")]);
    assert_eq!(
        dns_only.basic4().map(|_| ()),
        Err(CertificateError::NoBasic4)
    );
}

fn basic4_error(names: &[Vec<u8>]) -> CertificateError {
    match with_names(names).basic4() {
        Ok(_) => panic!("accepted"),
        Err(e) => e,
    }
}

#[test]
fn invalid_fields_are_named() {
    let name = || other_name(1, "試験\u{3000}花子");
    let cases: Vec<(Vec<Vec<u8>>, &str)> = vec![
        (vec![name(), other_name(3, "9")], "sex"),
        (vec![name(), other_name(3, "")], "sex"),
        (vec![name(), other_name(4, "419900230")], "birth_date"),
        (vec![name(), other_name(4, "919900102")], "birth_date"),
        (vec![name(), other_name(4, "H19900102")], "birth_date"),
        (vec![name(), other_name(4, "1990-01-02")], "birth_date"),
        (vec![other_name(1, "")], "name"),
        (vec![name(), name()], "name"),
        (
            vec![name(), other_name(5, "a"), other_name(5, "b")],
            "address",
        ),
        // The value must be [0] EXPLICIT UTF8String.
        (
            vec![
                name(),
                other_name_raw(5, &der::printable_string("Tokyo").expect("ps")),
            ],
            "address",
        ),
        (
            vec![name(), {
                // UTF8String without the [0] wrapper.
                let mut contents = der::oid(&[1, 2, 392, 200149, 8, 5, 5, 3]).expect("oid");
                contents.extend_from_slice(&der::utf8_string("1"));
                der::tlv(0xA0, &contents)
            }],
            "sex",
        ),
        (
            vec![name(), other_name_raw(3, &der::tlv(0x0C, &[0xFF]))],
            "sex",
        ),
        (
            vec![other_name_raw(1, &der::tlv(0x0C, &[0xE8, 0xA9]))],
            "name",
        ),
    ];
    for (names, field) in cases {
        match basic4_error(&names) {
            CertificateError::InvalidBasic4 {
                field: f, detail, ..
            } => assert_eq!(f, field, "{detail}"),
            other => panic!("expected InvalidBasic4 for {field}, got {other:?}"),
        }
    }
}

#[test]
fn error_messages_do_not_leak_values() {
    let e = basic4_error(&[
        other_name(1, "秘密\u{3000}太郎"),
        other_name(4, "419909999"),
    ]);
    let text = e.to_string();
    assert!(
        text.contains("birth_date") && text.contains("1.2.392.200149.8.5.5.4"),
        "{text}"
    );
    assert!(
        !text.contains("19909999") && !text.contains("秘密"),
        "{text}"
    );
}

#[test]
fn unreadable_other_name_is_an_error() {
    // An otherName whose type-id is not an OID (x509-parser itself would read these
    // OCTET STRING bytes as an OID).
    let broken = der::tlv(0xA0, &der::tlv(0x04, b"no oid"));
    let e = basic4_error(&[other_name(1, "a"), broken]);
    assert!(matches!(e, CertificateError::Malformed { .. }), "{e:?}");

    // The name's OID bytes disguised as an OCTET STRING are not the name.
    let mut disguised = der::tlv(
        0x04,
        &der::oid(&[1, 2, 392, 200149, 8, 5, 5, 1]).expect("oid")[2..],
    );
    disguised.extend_from_slice(&der::tlv(0xA0, &der::utf8_string("偽")));
    let e = basic4_error(&[der::tlv(0xA0, &disguised)]);
    assert!(matches!(e, CertificateError::Malformed { .. }), "{e:?}");

    // An otherName with no type-id at all.
    let e = basic4_error(&[other_name(1, "a"), der::tlv(0xA0, &[])]);
    assert!(matches!(e, CertificateError::Malformed { .. }), "{e:?}");
}

// ---------------------------------------------------------------------------------------
// Signatures with the certificate's key

fn sign(message: &[u8]) -> Vec<u8> {
    test_identity(Validity::Current)
        .sign_key
        .rsa()
        .expect("RSA identity")
        .sign(Pkcs1v15Sign::new::<Sha256>(), &Sha256::digest(message))
        .expect("signs")
}

#[test]
fn a_good_signature_verifies() {
    let cert = simulated();
    let message = br#"{"purpose":"test"}"#;
    cert.verify_sha256_signature(message, &sign(message))
        .expect("verifies");
}

#[test]
fn tampered_signatures_and_messages_fail() {
    let cert = simulated();
    let message = b"statement";
    let good = sign(message);

    assert_eq!(
        cert.verify_sha256_signature(b"statemenT", &good),
        Err(SignatureError::Mismatch)
    );
    for at in [0, 1, 128, 255] {
        let mut bad = good.clone();
        bad[at] ^= 0x01;
        assert_eq!(
            cert.verify_sha256_signature(message, &bad),
            Err(SignatureError::Mismatch),
            "byte {at}"
        );
    }
    assert_eq!(
        cert.verify_sha256_signature(message, &[0u8; 256]),
        Err(SignatureError::Mismatch)
    );
    assert_eq!(
        cert.verify_sha256_signature(message, &[0xFFu8; 256]),
        Err(SignatureError::Mismatch)
    );
    assert_eq!(
        cert.verify_sha256_signature(message, &good[..255]),
        Err(SignatureError::WrongLength { length: 255 })
    );
    let mut long = good.clone();
    long.push(0);
    assert_eq!(
        cert.verify_sha256_signature(message, &long),
        Err(SignatureError::WrongLength { length: 257 })
    );
    assert_eq!(
        cert.verify_sha256_signature(message, &[]),
        Err(SignatureError::WrongLength { length: 0 })
    );

    // A signature by another key (the signing test root's certificate key is not the holder's).
    let other = test_identity(Validity::Current)
        .auth_key
        .sign(Pkcs1v15Sign::new::<Sha256>(), &Sha256::digest(message))
        .expect("signs");
    assert_eq!(
        cert.verify_sha256_signature(message, &other),
        Err(SignatureError::Mismatch)
    );
}

#[test]
fn signature_must_be_sha256_pkcs1() {
    let cert = simulated();
    let message = b"statement";
    let identity = test_identity(Validity::Current);
    let key = identity.sign_key.rsa().expect("RSA identity");
    // Raw PKCS#1 v1.5 padding without the DigestInfo prefix.
    let unprefixed = key
        .sign(Pkcs1v15Sign::new_unprefixed(), &Sha256::digest(message))
        .expect("signs");
    assert_eq!(
        cert.verify_sha256_signature(message, &unprefixed),
        Err(SignatureError::Mismatch)
    );
    // PSS over the same hash.
    let mut rng = rand::thread_rng();
    let pss = key
        .sign_with_rng(
            &mut rng,
            rsa::Pss::new::<Sha256>(),
            &Sha256::digest(message),
        )
        .expect("signs");
    assert_eq!(
        cert.verify_sha256_signature(message, &pss),
        Err(SignatureError::Mismatch)
    );
}
