//! Sealing to the backend's key: what one key seals only that key opens, with the same
//! associated data, and any change to the box is refused.

use std::sync::OnceLock;

use mynalink_link::seal::{self, SealError, SealedBox, ALG};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use rsa::pkcs8::{EncodePublicKey, LineEnding};
use rsa::{RsaPrivateKey, RsaPublicKey};
use sha2::{Digest, Sha256};

fn key(seed: u64) -> RsaPrivateKey {
    RsaPrivateKey::new(&mut ChaCha20Rng::seed_from_u64(seed), 2048).expect("keygen")
}

fn backend() -> &'static RsaPrivateKey {
    static KEY: OnceLock<RsaPrivateKey> = OnceLock::new();
    KEY.get_or_init(|| key(1))
}

fn other() -> &'static RsaPrivateKey {
    static KEY: OnceLock<RsaPrivateKey> = OnceLock::new();
    KEY.get_or_init(|| key(2))
}

const PLAINTEXT: &[u8] = b"\x30\x82\x05\x00 certificate DER stand-in \xe8\xa9\xa6\xe9\xa8\x93";
const AAD: &[u8] = &[0x5a; 32];

fn sealed() -> SealedBox {
    seal::seal(&backend().to_public_key(), PLAINTEXT, AAD).expect("seal")
}

#[test]
fn round_trip_through_json() {
    let sealed = sealed();
    assert_eq!(sealed.alg, ALG);
    assert_eq!(sealed.nonce.len(), 12);
    assert_eq!(sealed.wrapped_key.len(), 256);
    assert_eq!(sealed.ciphertext.len(), PLAINTEXT.len() + 16);
    let json = sealed.to_json();
    let value: serde_json::Value = serde_json::from_str(&json).expect("json");
    for field in ["alg", "key_id", "wrapped_key", "nonce", "ciphertext"] {
        assert!(value[field].is_string(), "{field} in {json}");
    }
    let parsed = SealedBox::from_json(&json).expect("parse");
    assert_eq!(parsed, sealed);
    let opened = seal::open(backend(), &parsed, AAD).expect("open");
    assert_eq!(&opened[..], PLAINTEXT);
}

#[test]
fn key_id_is_the_spki_sha256() {
    let public = backend().to_public_key();
    let der = public.to_public_key_der().expect("der");
    let expected = hex::encode(Sha256::digest(der.as_bytes()));
    assert_eq!(sealed().key_id, expected);
    assert_eq!(seal::key_id(&public).expect("id"), expected);
}

#[test]
fn every_seal_uses_a_fresh_key_and_nonce() {
    let a = sealed();
    let b = sealed();
    assert_ne!(a.nonce, b.nonce);
    assert_ne!(a.wrapped_key, b.wrapped_key);
    assert_ne!(a.ciphertext, b.ciphertext);
}

#[test]
fn plaintext_is_not_in_the_box() {
    let json = sealed().to_json();
    let needle = "certificate DER stand-in";
    assert!(!json.contains(needle));
    let all: Vec<u8> = [sealed().wrapped_key, sealed().nonce, sealed().ciphertext].concat();
    assert!(!all.windows(needle.len()).any(|w| w == needle.as_bytes()));
}

#[test]
fn wrong_key_is_refused() {
    assert_eq!(
        seal::open(other(), &sealed(), AAD).expect_err("other key"),
        SealError::WrongKey
    );
    // Even with the key id forged to match, the other key cannot unwrap.
    let mut forged = sealed();
    forged.key_id = seal::key_id(&other().to_public_key()).expect("id");
    assert_eq!(
        seal::open(other(), &forged, AAD).expect_err("forged id"),
        SealError::Open
    );
}

#[test]
fn wrong_associated_data_is_refused() {
    let sealed = sealed();
    assert_eq!(
        seal::open(backend(), &sealed, &[0x5b; 32]).expect_err("aad"),
        SealError::Open
    );
    assert_eq!(
        seal::open(backend(), &sealed, b"").expect_err("empty aad"),
        SealError::Open
    );
}

#[test]
fn tampering_is_refused() {
    let original = sealed();
    let flips: [fn(&mut SealedBox); 5] = [
        |b| b.ciphertext[0] ^= 1,
        |b| {
            let last = b.ciphertext.len() - 1;
            b.ciphertext[last] ^= 0x80 // the tag
        },
        |b| b.nonce[11] ^= 1,
        |b| b.wrapped_key[100] ^= 1,
        |b| b.wrapped_key.truncate(255),
    ];
    for (i, flip) in flips.iter().enumerate() {
        let mut tampered = original.clone();
        flip(&mut tampered);
        assert_eq!(
            seal::open(backend(), &tampered, AAD).expect_err("tampered"),
            SealError::Open,
            "case {i}"
        );
    }
    let mut short_nonce = original.clone();
    short_nonce.nonce.pop();
    assert!(matches!(
        seal::open(backend(), &short_nonce, AAD),
        Err(SealError::Format(_))
    ));
    let mut other_alg = original.clone();
    other_alg.alg = "RSA1_5+A128CBC".into();
    assert_eq!(
        seal::open(backend(), &other_alg, AAD).expect_err("alg"),
        SealError::UnsupportedAlgorithm
    );
}

#[test]
fn garbage_json_is_refused_without_echoing_it() {
    let good: serde_json::Value = serde_json::from_str(&sealed().to_json()).expect("json");
    let mut missing = good.clone();
    missing
        .as_object_mut()
        .expect("object")
        .remove("ciphertext");
    let mut bad_b64 = good.clone();
    bad_b64["nonce"] = "SECRET-試験花子!!".into();
    let mut wrong_type = good.clone();
    wrong_type["wrapped_key"] = 12.into();
    let mut bad_alg = good.clone();
    bad_alg["alg"] = "none".into();
    let mut bad_id = good.clone();
    bad_id["key_id"] = "SECRET-試験花子".into();
    let cases = [
        String::new(),
        "null".into(),
        "[1,2,3]".into(),
        "{\"alg\":\"SECRET-試験花子\"".into(),
        "\u{0}\u{1}garbage".into(),
        missing.to_string(),
        bad_b64.to_string(),
        wrong_type.to_string(),
        bad_alg.to_string(),
        bad_id.to_string(),
    ];
    for case in &cases {
        let e = SealedBox::from_json(case).expect_err(case);
        let text = format!("{e} {e:?}");
        assert!(!text.contains("SECRET"), "{text}");
        assert!(!text.contains("試験"), "{text}");
    }
}

#[test]
fn recipient_keys_parse_from_pem_and_der() {
    let public = backend().to_public_key();
    let pem = public.to_public_key_pem(LineEnding::LF).expect("pem");
    let der = public.to_public_key_der().expect("der");
    assert_eq!(seal::parse_public_key(pem.as_bytes()).expect("pem"), public);
    assert_eq!(seal::parse_public_key(der.as_bytes()).expect("der"), public);
    assert_eq!(
        seal::parse_public_key(b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
            .expect_err("garbage pem"),
        SealError::InvalidPublicKey
    );
    assert_eq!(
        seal::parse_public_key(&[0x30, 0x03, 0x02, 0x01, 0x00]).expect_err("garbage der"),
        SealError::InvalidPublicKey
    );
}

#[test]
fn small_keys_are_refused() {
    let small = RsaPrivateKey::new(&mut ChaCha20Rng::seed_from_u64(3), 1024).expect("keygen");
    let public: RsaPublicKey = small.to_public_key();
    assert_eq!(
        seal::seal(&public, PLAINTEXT, AAD).expect_err("small"),
        SealError::KeyTooSmall { bits: 1024 }
    );
    let der = public.to_public_key_der().expect("der");
    assert!(matches!(
        seal::parse_public_key(der.as_bytes()),
        Err(SealError::KeyTooSmall { .. })
    ));
}
