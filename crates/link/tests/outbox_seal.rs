//! Sealing to the backend's key (HPKE, X25519): what one key seals only that key opens, with
//! the same context, any change to the box is refused, boxes of the retired RSA sealing are
//! recognised, and the keys are the standard formats OpenSSL reads and writes.

use std::process::Command;
use std::sync::OnceLock;

use mynalink_link::seal::{self, RecipientKey, SealError, SealPrivateKey, SealedBox, ALG};
use rsa::pkcs8::{EncodePublicKey, LineEnding};
use sha2::{Digest, Sha256};

fn backend() -> &'static SealPrivateKey {
    static KEY: OnceLock<SealPrivateKey> = OnceLock::new();
    KEY.get_or_init(|| SealPrivateKey::generate().expect("keygen"))
}

fn other() -> &'static SealPrivateKey {
    static KEY: OnceLock<SealPrivateKey> = OnceLock::new();
    KEY.get_or_init(|| SealPrivateKey::generate().expect("keygen"))
}

const PLAINTEXT: &[u8] = b"\x30\x82\x05\x00 certificate DER stand-in \xe8\xa9\xa6\xe9\xa8\x93";
const CONTEXT: &[u8] = &[0x5a; 32];

fn sealed() -> SealedBox {
    seal::seal(backend().public_key(), PLAINTEXT, CONTEXT).expect("seal")
}

/// The X25519 SubjectPublicKeyInfo of RFC 8410 is a fixed 12-byte header and the raw key.
const SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x6e, 0x03, 0x21, 0x00,
];

fn public_der(key: &RecipientKey) -> Vec<u8> {
    let pem = key.to_pem().expect("pem");
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .expect("base64")
}

#[test]
fn round_trip_through_json() {
    let sealed = sealed();
    assert_eq!(sealed.alg, ALG);
    assert_eq!(sealed.enc.len(), 32);
    assert_eq!(sealed.ciphertext.len(), PLAINTEXT.len() + 16);
    let json = sealed.to_json();
    let value: serde_json::Value = serde_json::from_str(&json).expect("json");
    for field in ["alg", "key_id", "enc", "ciphertext"] {
        assert!(value[field].is_string(), "{field} in {json}");
    }
    assert_eq!(value.as_object().expect("object").len(), 4, "{json}");
    let parsed = SealedBox::from_json(&json).expect("parse");
    assert_eq!(parsed, sealed);
    let opened = seal::open(backend(), &parsed, CONTEXT).expect("open");
    assert_eq!(&opened[..], PLAINTEXT);
}

#[test]
fn key_id_is_the_spki_sha256() {
    let der = public_der(backend().public_key());
    assert_eq!(der.len(), 44);
    assert_eq!(der[..12], SPKI_PREFIX);
    let expected = hex::encode(Sha256::digest(&der));
    assert_eq!(sealed().key_id, expected);
    assert_eq!(backend().key_id(), expected);
    assert_ne!(other().key_id(), expected);
}

#[test]
fn every_seal_uses_a_fresh_ephemeral_key() {
    let a = sealed();
    let b = sealed();
    assert_ne!(a.enc, b.enc);
    assert_ne!(a.ciphertext, b.ciphertext);
}

#[test]
fn plaintext_is_not_in_the_box() {
    let json = sealed().to_json();
    let needle = "certificate DER stand-in";
    assert!(!json.contains(needle));
    let all: Vec<u8> = [sealed().enc, sealed().ciphertext].concat();
    assert!(!all.windows(needle.len()).any(|w| w == needle.as_bytes()));
}

#[test]
fn wrong_key_is_refused() {
    assert_eq!(
        seal::open(other(), &sealed(), CONTEXT).expect_err("other key"),
        SealError::WrongKey
    );
    // Even with the key id forged to match, the other key cannot open it.
    let mut forged = sealed();
    forged.key_id = other().key_id().to_string();
    assert_eq!(
        seal::open(other(), &forged, CONTEXT).expect_err("forged id"),
        SealError::Open
    );
}

#[test]
fn wrong_context_is_refused() {
    let sealed = sealed();
    assert_eq!(
        seal::open(backend(), &sealed, &[0x5b; 32]).expect_err("context"),
        SealError::Open
    );
    assert_eq!(
        seal::open(backend(), &sealed, b"").expect_err("empty context"),
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
        |b| b.enc[5] ^= 1,
        // A low-order point: the Diffie-Hellman result is all zero, which HPKE refuses.
        |b| b.enc = vec![0; 32],
        |b| {
            b.ciphertext.pop();
        },
    ];
    for (i, flip) in flips.iter().enumerate() {
        let mut tampered = original.clone();
        flip(&mut tampered);
        assert_eq!(
            seal::open(backend(), &tampered, CONTEXT).expect_err("tampered"),
            SealError::Open,
            "case {i}"
        );
    }
    let mut short_enc = original.clone();
    short_enc.enc.pop();
    assert!(matches!(
        seal::open(backend(), &short_enc, CONTEXT),
        Err(SealError::Format(_))
    ));
    let mut other_alg = original.clone();
    other_alg.alg = "RSA1_5+A128CBC".into();
    assert_eq!(
        seal::open(backend(), &other_alg, CONTEXT).expect_err("alg"),
        SealError::UnsupportedAlgorithm
    );
}

#[test]
fn boxes_of_the_retired_rsa_sealing_are_recognised() {
    let json = serde_json::json!({
        "alg": seal::RETIRED_RSA_ALG,
        "key_id": "ab".repeat(32),
        "wrapped_key": "AAAA",
        "nonce": "AAAAAAAAAAAAAAAA",
        "ciphertext": "AAAAAAAAAAAAAAAAAAAAAA==",
    })
    .to_string();
    assert_eq!(
        SealedBox::from_json(&json).expect_err("retired"),
        SealError::RetiredAlgorithm
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
    bad_b64["enc"] = "SECRET-試験花子!!".into();
    let mut wrong_type = good.clone();
    wrong_type["enc"] = 12.into();
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
fn keys_round_trip_through_pem_and_der() {
    let public = backend().public_key();
    let pem = public.to_pem().expect("pem");
    assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----\n"), "{pem}");
    assert_eq!(
        &seal::parse_public_key(pem.as_bytes()).expect("pem"),
        public
    );
    assert_eq!(
        &seal::parse_public_key(&public_der(public)).expect("der"),
        public
    );

    let private_pem = backend().to_pkcs8_pem().expect("pkcs8");
    assert!(private_pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
    let again = SealPrivateKey::parse(private_pem.as_bytes()).expect("parse");
    assert_eq!(again.public_key(), public);
    let opened = seal::open(&again, &sealed(), CONTEXT).expect("open with the reread key");
    assert_eq!(&opened[..], PLAINTEXT);
    // A private key's Debug shows its id only.
    let debug = format!("{again:?}");
    assert!(
        debug.contains(again.key_id()) && !debug.contains("PRIVATE"),
        "{debug}"
    );
}

#[test]
fn garbage_and_foreign_keys_are_refused() {
    assert_eq!(
        seal::parse_public_key(b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
            .expect_err("garbage pem"),
        SealError::InvalidPublicKey
    );
    assert_eq!(
        seal::parse_public_key(&[0x30, 0x03, 0x02, 0x01, 0x00]).expect_err("garbage der"),
        SealError::InvalidPublicKey
    );
    // A private key where the public one belongs, and the reverse.
    let private_pem = backend().to_pkcs8_pem().expect("pkcs8");
    assert_eq!(
        seal::parse_public_key(private_pem.as_bytes()).expect_err("private as public"),
        SealError::InvalidPublicKey
    );
    let public_pem = backend().public_key().to_pem().expect("pem");
    assert_eq!(
        SealPrivateKey::parse(public_pem.as_bytes()).expect_err("public as private"),
        SealError::InvalidPrivateKey
    );
    // The RSA keys of the retired sealing are named as such.
    use rand::SeedableRng;
    let rsa = rsa::RsaPrivateKey::new(&mut rand_chacha::ChaCha20Rng::seed_from_u64(3), 1024)
        .expect("keygen");
    let rsa_pem = rsa
        .to_public_key()
        .to_public_key_pem(LineEnding::LF)
        .expect("pem");
    assert_eq!(
        seal::parse_public_key(rsa_pem.as_bytes()).expect_err("rsa"),
        SealError::RetiredRsaKey
    );
    let rsa_private =
        rsa::pkcs8::EncodePrivateKey::to_pkcs8_pem(&rsa, LineEnding::LF).expect("pem");
    assert_eq!(
        SealPrivateKey::parse(rsa_private.as_bytes()).expect_err("rsa private"),
        SealError::RetiredRsaKey
    );
}

fn openssl(args: &[&str], input: Option<&std::path::Path>) -> String {
    let mut command = Command::new("openssl");
    command.args(args);
    if let Some(path) = input {
        command.arg("-in").arg(path);
    }
    let output = command
        .output()
        .expect("openssl (Debian's openssl package)");
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8")
}

#[test]
fn openssl_reads_and_writes_the_same_keys() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A key made by OpenSSL opens what is sealed to OpenSSL's public half.
    let theirs = dir.path().join("openssl.pem");
    let generated = openssl(&["genpkey", "-algorithm", "X25519"], None);
    std::fs::write(&theirs, &generated).expect("write");
    let their_public = openssl(&["pkey", "-pubout"], Some(&theirs));
    let private = SealPrivateKey::parse(generated.as_bytes()).expect("OpenSSL's private key");
    assert_eq!(private.public_key().to_pem().expect("pem"), their_public);
    let recipient = seal::parse_public_key(their_public.as_bytes()).expect("OpenSSL's public key");
    let sealed = seal::seal(&recipient, PLAINTEXT, CONTEXT).expect("seal");
    assert_eq!(
        &seal::open(&private, &sealed, CONTEXT).expect("open")[..],
        PLAINTEXT
    );

    // OpenSSL reads ours and derives the same public key.
    let ours = dir.path().join("ours.pem");
    std::fs::write(&ours, backend().to_pkcs8_pem().expect("pkcs8").as_bytes()).expect("write");
    assert_eq!(
        openssl(&["pkey", "-pubout"], Some(&ours)),
        backend().public_key().to_pem().expect("pem")
    );
}
