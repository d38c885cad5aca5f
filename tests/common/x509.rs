//! Certificates made at test time: a TLS CA and a server certificate for 127.0.0.1, and a
//! JPKI-profile signing certificate (with its own test root) for a holder whose name uses
//! substitute characters, which the simulated card does not have. One RSA key per test
//! process serves every certificate and the holder's signatures; one X25519 key is the
//! backend's seal key.
#![allow(dead_code)]

use std::sync::OnceLock;

use mynalink_simcard::der;
use rsa::traits::PublicKeyParts;
use rsa::{Pkcs1v15Sign, RsaPrivateKey};
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};

/// The simulated card's authentication key, which it ships stored: generating an RSA key
/// here would run the prime search unoptimised (generic code is compiled in the test crate),
/// which took minutes on a loaded machine.
pub fn key() -> &'static RsaPrivateKey {
    static KEY: OnceLock<RsaPrivateKey> = OnceLock::new();
    KEY.get_or_init(|| {
        mynalink_simcard::test_identity(mynalink_simcard::Validity::Current)
            .auth_key
            .clone()
    })
}

/// The RSA key in PKCS#8 PEM (the TLS server's key).
fn private_key_pem() -> String {
    use rsa::pkcs8::{EncodePrivateKey, LineEnding};
    key()
        .to_pkcs8_pem(LineEnding::LF)
        .expect("PKCS#8 PEM")
        .to_string()
}

/// The backend's X25519 seal key, one per test process.
pub fn seal_key() -> &'static mynalink_link::seal::SealPrivateKey {
    static KEY: OnceLock<mynalink_link::seal::SealPrivateKey> = OnceLock::new();
    KEY.get_or_init(|| mynalink_link::seal::SealPrivateKey::generate().expect("seal key"))
}

/// RSASSA-PKCS1-v1_5 with SHA-256, as the card signs.
pub fn sign(bytes: &[u8]) -> Vec<u8> {
    key()
        .sign(Pkcs1v15Sign::new::<Sha256>(), &Sha256::digest(bytes))
        .expect("sign")
}

pub fn pem(label: &str, der: &[u8]) -> String {
    let text = base64(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in text.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Standard base64 with padding.
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn oid(arcs: &[u64]) -> Vec<u8> {
    der::oid(arcs).expect("OID")
}

fn extension(id: &[u64], critical: bool, value: &[u8]) -> Vec<u8> {
    let value = der::octet_string(value);
    if critical {
        der::sequence(&[&oid(id), &der::boolean(true), &value])
    } else {
        der::sequence(&[&oid(id), &value])
    }
}

fn name(common_name: &str) -> Vec<u8> {
    let country = der::sequence(&[
        &oid(&[2, 5, 4, 6]),
        &der::printable_string("JP").expect("printable"),
    ]);
    let cn = der::sequence(&[&oid(&[2, 5, 4, 3]), &der::utf8_string(common_name)]);
    der::sequence(&[&der::set_of(&[&country]), &der::set_of(&[&cn])])
}

fn key_id() -> Vec<u8> {
    Sha256::digest(key().to_public_key().n().to_bytes_be())[..20].to_vec()
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .expect("whole seconds")
}

/// A v3 certificate signed (sha256WithRSAEncryption) with [`key`], which it also certifies.
fn certificate(
    serial: &[u8],
    issuer: &[u8],
    subject: &[u8],
    validity: (OffsetDateTime, OffsetDateTime),
    extensions: &[Vec<u8>],
) -> Vec<u8> {
    let algorithm = der::sequence(&[&oid(&[1, 2, 840, 113549, 1, 1, 11]), &der::null()]);
    let public = key().to_public_key();
    let rsa_key = der::sequence(&[
        &der::integer_unsigned(&public.n().to_bytes_be()),
        &der::integer_unsigned(&public.e().to_bytes_be()),
    ]);
    let spki = der::sequence(&[
        &der::sequence(&[&oid(&[1, 2, 840, 113549, 1, 1, 1]), &der::null()]),
        &der::bit_string(&rsa_key, 0).expect("bit string"),
    ]);
    let validity = der::sequence(&[
        &der::x509_time(validity.0).expect("time"),
        &der::x509_time(validity.1).expect("time"),
    ]);
    let parts: Vec<&[u8]> = extensions.iter().map(Vec::as_slice).collect();
    let tbs = der::sequence(&[
        &der::explicit(0, &der::integer_u64(2)).expect("version"),
        &der::integer_unsigned(serial),
        &algorithm,
        issuer,
        &validity,
        subject,
        &spki,
        &der::explicit(3, &der::sequence(&parts)).expect("extensions"),
    ]);
    let signature = sign(&tbs);
    der::sequence(&[
        &tbs,
        &algorithm,
        &der::bit_string(&signature, 0).expect("signature"),
    ])
}

fn ca(common_name: &str) -> Vec<u8> {
    let dn = name(common_name);
    let t = now();
    certificate(
        &[0x01],
        &dn,
        &dn,
        (t - Duration::days(365), t + Duration::days(3650)),
        &[
            extension(
                &[2, 5, 29, 19],
                true,
                &der::sequence(&[&der::boolean(true)]),
            ),
            extension(&[2, 5, 29, 15], true, &der::named_bits(&[5, 6])),
            extension(&[2, 5, 29, 14], false, &der::octet_string(&key_id())),
        ],
    )
}

fn authority_key_id() -> Vec<u8> {
    extension(
        &[2, 5, 29, 35],
        false,
        &der::sequence(&[&der::implicit_primitive(0, &key_id()).expect("AKI")]),
    )
}

/// TLS material for a server on 127.0.0.1: (CA PEM, server certificate PEM, key PEM).
pub fn tls() -> (String, String, String) {
    const CA_NAME: &str = "mynalink reliability TLS CA";
    let ca = ca(CA_NAME);
    let t = now();
    let san = der::sequence(&[
        &der::implicit_primitive(2, b"localhost").expect("dNSName"),
        &der::implicit_primitive(7, &[127, 0, 0, 1]).expect("iPAddress"),
    ]);
    let server_auth = der::sequence(&[&oid(&[1, 3, 6, 1, 5, 5, 7, 3, 1])]);
    let leaf = certificate(
        &[0x02],
        &name(CA_NAME),
        &name("localhost"),
        (t - Duration::days(1), t + Duration::days(30)),
        &[
            extension(&[2, 5, 29, 19], true, &der::sequence(&[])),
            extension(&[2, 5, 29, 15], true, &der::named_bits(&[0, 2])),
            extension(&[2, 5, 29, 37], false, &server_auth),
            extension(&[2, 5, 29, 17], false, &san),
            authority_key_id(),
        ],
    );
    (
        pem("CERTIFICATE", &ca),
        pem("CERTIFICATE", &leaf),
        private_key_pem(),
    )
}

/// A signing CA of its own (DER) and a JPKI-profile signing certificate (DER) for a holder
/// with this name, substitute-character flags and birth date (`EYYYYMMDD`).
pub fn jpki_holder(holder_name: &str, name_flags: &str, birth: &str) -> (Vec<u8>, Vec<u8>) {
    const ROOT_NAME: &str = "mynalink reliability signing CA";
    let root = ca(ROOT_NAME);
    let other_name = |arc: u64, value: &str| {
        der::implicit_constructed(
            0,
            &[
                &oid(&[1, 2, 392, 200149, 8, 5, 5, arc]),
                &der::explicit(0, &der::utf8_string(value)).expect("explicit"),
            ],
        )
        .expect("otherName")
    };
    let names = [
        other_name(1, holder_name),
        other_name(4, birth),
        other_name(3, "2"),
        other_name(5, "東京都千代田区試験町一丁目２番３号"),
        other_name(2, name_flags),
        other_name(6, &"0".repeat(17)),
    ];
    let parts: Vec<&[u8]> = names.iter().map(Vec::as_slice).collect();
    let t = now();
    let holder = certificate(
        &[0x5E, 0x77, 0x01],
        &name(ROOT_NAME),
        &name("mynalink reliability holder"),
        (t - Duration::days(30), t + Duration::days(1000)),
        &[
            extension(&[2, 5, 29, 15], true, &der::named_bits(&[0, 1])),
            extension(&[2, 5, 29, 17], false, &der::sequence(&parts)),
            authority_key_id(),
        ],
    );
    (root, holder)
}
