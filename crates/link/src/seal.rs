//! Sealing data to the backend, so that the terminal can keep something it must not be able to
//! read back (the signing certificate, which holds the holder's basic-4 information) until the
//! backend takes it.
//!
//! HPKE (RFC 9180) in base mode with DHKEM(X25519, HKDF-SHA256), HKDF-SHA256 and AES-256-GCM,
//! single-shot. The backend's key pair is X25519; only its public half is on the terminals.
//! Opening is a Diffie-Hellman and an AEAD check: unlike the RSA decryption this replaces, there
//! is no padding oracle and no secret-dependent timing for an attacker to measure.
//!
//! The caller's context bytes (the outbox uses the statement's SHA-256) are bound twice: in
//! HPKE's `info` (after a fixed label, so the key schedule is this protocol's alone) and as the
//! AEAD's associated data. They are not stored: the opener must supply the same bytes, so a
//! sealed certificate cannot be moved onto another statement.
//!
//! JSON form, binary fields standard base64:
//! `{"alg":"HPKE-Base-X25519-SHA256-AES256GCM","key_id":<hex SHA-256 of the recipient's SPKI
//!   DER>,"enc":<the 32-byte encapsulated key>,"ciphertext":<AES-GCM output with its 16-byte tag>}`
//!
//! Keys are the standard formats of RFC 8410, so OpenSSL reads and writes them too: the public
//! key as a SubjectPublicKeyInfo (`BEGIN PUBLIC KEY`), the private key as PKCS#8
//! (`BEGIN PRIVATE KEY`), algorithm id-X25519 (1.3.101.110).

use hpke::aead::AesGcm256;
use hpke::kdf::HkdfSha256;
use hpke::kem::X25519HkdfSha256;
use hpke::{Deserializable, Kem, OpModeR, OpModeS, Serializable};
use pkcs8::der::asn1::{BitStringRef, OctetStringRef};
use pkcs8::der::{Decode, Encode};
use pkcs8::spki::{AlgorithmIdentifierRef, ObjectIdentifier, SubjectPublicKeyInfoRef};
use pkcs8::{LineEnding, PrivateKeyInfo};
use rand_core::{CryptoRng, OsRng, RngCore, TryRngCore};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, Zeroizing};

/// The only algorithm identifier this module writes or accepts.
pub const ALG: &str = "HPKE-Base-X25519-SHA256-AES256GCM";

/// The identifier of the RSA-OAEP sealing this module used to write. Boxes that carry it can no
/// longer be opened by a backend; an outbox keeps them for an operator.
pub const RETIRED_RSA_ALG: &str = "RSA-OAEP-256+A256GCM";

/// id-X25519 (RFC 8410).
pub const X25519_OID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.110");
/// rsaEncryption: recognised only to say that an old key is configured.
const RSA_OID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");

/// Prefix of HPKE's `info`; the context bytes follow it.
const INFO_LABEL: &[u8] = b"mynalink sealed certificate v1\0";

const KEY_LEN: usize = 32;
const TAG_LEN: usize = 16;

type SuiteKem = X25519HkdfSha256;
type PublicKeyBytes = <SuiteKem as Kem>::PublicKey;
type PrivateKeyBytes = <SuiteKem as Kem>::PrivateKey;
type EncappedKey = <SuiteKem as Kem>::EncappedKey;

/// Every message is fixed text: nothing sealed, opened or parsed ever ends up in an error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("the recipient public key is not an X25519 SubjectPublicKeyInfo in PEM or DER")]
    InvalidPublicKey,
    #[error(
        "the key is an RSA key, which is no longer used for sealing; configure the backend's \
         X25519 public key (mynalink-server seal-key public)"
    )]
    RetiredRsaKey,
    #[error("the private key is not an X25519 key in PKCS#8 PEM or DER (BEGIN PRIVATE KEY)")]
    InvalidPrivateKey,
    #[error("the sealed box uses an unsupported algorithm")]
    UnsupportedAlgorithm,
    #[error("the sealed box uses the retired RSA sealing, which this backend cannot open")]
    RetiredAlgorithm,
    #[error("the sealed box was sealed to a different key")]
    WrongKey,
    #[error("the sealed box is malformed: {0}")]
    Format(&'static str),
    #[error("sealing failed")]
    Seal,
    // One variant for every authentication failure (encapsulated key, ciphertext, context):
    // telling them apart would only help an attacker probing the opener.
    #[error("the sealed box could not be opened: it was altered or the associated data differs")]
    Open,
}

/// A message sealed to one X25519 key. Its `Debug` shows sizes only.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedBox {
    pub alg: String,
    pub key_id: String,
    #[serde(with = "b64")]
    pub enc: Vec<u8>,
    #[serde(with = "b64")]
    pub ciphertext: Vec<u8>,
}

impl std::fmt::Debug for SealedBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedBox")
            .field("alg", &self.alg)
            .field("key_id", &self.key_id)
            .field("enc_len", &self.enc.len())
            .field("ciphertext_len", &self.ciphertext.len())
            .finish()
    }
}

/// Just the algorithm of a sealed box's JSON, read before its shape is.
#[derive(Deserialize)]
struct AlgOnly {
    alg: String,
}

impl SealedBox {
    pub fn to_json(&self) -> String {
        // A struct of strings cannot fail to serialise; the fallback is unreachable.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Parses the JSON form and checks the shape (algorithm, field sizes), not the crypto.
    /// A box of the retired RSA sealing is [`SealError::RetiredAlgorithm`].
    pub fn from_json(json: &str) -> Result<SealedBox, SealError> {
        // serde_json's messages can quote the input, so they are not passed on.
        if let Ok(AlgOnly { alg }) = serde_json::from_str::<AlgOnly>(json) {
            if alg == RETIRED_RSA_ALG {
                return Err(SealError::RetiredAlgorithm);
            }
            if alg != ALG {
                return Err(SealError::UnsupportedAlgorithm);
            }
        }
        let sealed: SealedBox = serde_json::from_str(json)
            .map_err(|_| SealError::Format("not a sealed-box JSON object"))?;
        sealed.check_shape()?;
        Ok(sealed)
    }

    fn check_shape(&self) -> Result<(), SealError> {
        if self.alg == RETIRED_RSA_ALG {
            return Err(SealError::RetiredAlgorithm);
        }
        if self.alg != ALG {
            return Err(SealError::UnsupportedAlgorithm);
        }
        if self.key_id.len() != 64 || hex::decode(&self.key_id).is_err() {
            return Err(SealError::Format("key_id is not a hex SHA-256"));
        }
        if self.enc.len() != KEY_LEN {
            return Err(SealError::Format("enc is not a 32-byte X25519 public key"));
        }
        if self.ciphertext.len() < TAG_LEN {
            return Err(SealError::Format("ciphertext is shorter than its tag"));
        }
        Ok(())
    }
}

/// The backend's public key, which terminals seal to (`backend_key`).
#[derive(Clone)]
pub struct RecipientKey {
    key: PublicKeyBytes,
    bytes: [u8; KEY_LEN],
    key_id: String,
}

impl PartialEq for RecipientKey {
    fn eq(&self, other: &Self) -> bool {
        self.bytes == other.bytes
    }
}

impl Eq for RecipientKey {}

impl std::fmt::Debug for RecipientKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecipientKey")
            .field("key_id", &self.key_id)
            .finish()
    }
}

impl RecipientKey {
    fn from_raw(bytes: [u8; KEY_LEN]) -> Result<RecipientKey, SealError> {
        let key = PublicKeyBytes::from_bytes(&bytes).map_err(|_| SealError::InvalidPublicKey)?;
        let key_id = hex::encode(Sha256::digest(spki_der(&bytes)?));
        Ok(RecipientKey { key, bytes, key_id })
    }

    /// Reads a SubjectPublicKeyInfo for id-X25519, PEM (`BEGIN PUBLIC KEY`) or DER.
    pub fn parse(input: &[u8]) -> Result<RecipientKey, SealError> {
        let der = match std::str::from_utf8(input) {
            Ok(text) if text.contains("-----BEGIN") => {
                let (label, der) = pkcs8::der::pem::decode_vec(text.trim().as_bytes())
                    .map_err(|_| SealError::InvalidPublicKey)?;
                if label != "PUBLIC KEY" {
                    return Err(SealError::InvalidPublicKey);
                }
                der
            }
            _ => input.to_vec(),
        };
        let spki =
            SubjectPublicKeyInfoRef::from_der(&der).map_err(|_| SealError::InvalidPublicKey)?;
        if spki.algorithm.oid == RSA_OID {
            return Err(SealError::RetiredRsaKey);
        }
        if spki.algorithm.oid != X25519_OID || spki.algorithm.parameters.is_some() {
            return Err(SealError::InvalidPublicKey);
        }
        let raw: [u8; KEY_LEN] = spki
            .subject_public_key
            .as_bytes()
            .and_then(|b| b.try_into().ok())
            .ok_or(SealError::InvalidPublicKey)?;
        RecipientKey::from_raw(raw)
    }

    /// Lower-case hex SHA-256 of the key's SubjectPublicKeyInfo DER.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The SubjectPublicKeyInfo in PEM, as `backend_key` files hold it.
    pub fn to_pem(&self) -> Result<String, SealError> {
        let der = spki_der(&self.bytes)?;
        pkcs8::der::pem::encode_string("PUBLIC KEY", LineEnding::LF, &der)
            .map_err(|_| SealError::InvalidPublicKey)
    }
}

fn spki_der(raw: &[u8; KEY_LEN]) -> Result<Vec<u8>, SealError> {
    SubjectPublicKeyInfoRef {
        algorithm: AlgorithmIdentifierRef {
            oid: X25519_OID,
            parameters: None,
        },
        subject_public_key: BitStringRef::from_bytes(raw)
            .map_err(|_| SealError::InvalidPublicKey)?,
    }
    .to_der()
    .map_err(|_| SealError::InvalidPublicKey)
}

/// Reads a recipient key: SubjectPublicKeyInfo, PEM or DER (see [`RecipientKey::parse`]).
pub fn parse_public_key(bytes: &[u8]) -> Result<RecipientKey, SealError> {
    RecipientKey::parse(bytes)
}

/// The backend's private key. Never printed; its bytes are wiped when dropped.
pub struct SealPrivateKey {
    key: PrivateKeyBytes,
    public: RecipientKey,
}

impl std::fmt::Debug for SealPrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealPrivateKey")
            .field("key_id", &self.public.key_id)
            .finish_non_exhaustive()
    }
}

impl SealPrivateKey {
    /// A new key from the operating system's randomness.
    pub fn generate() -> Result<SealPrivateKey, SealError> {
        let mut rng = OsRng.unwrap_err();
        SealPrivateKey::generate_with_rng(&mut rng)
    }

    /// A new key from the caller's randomness (which must be cryptographically secure).
    pub fn generate_with_rng<R: RngCore + CryptoRng>(
        rng: &mut R,
    ) -> Result<SealPrivateKey, SealError> {
        let (key, public) = SuiteKem::gen_keypair(rng);
        SealPrivateKey::from_parts(key, &public)
    }

    fn from_parts(
        key: PrivateKeyBytes,
        public: &PublicKeyBytes,
    ) -> Result<SealPrivateKey, SealError> {
        let mut raw = [0u8; KEY_LEN];
        raw.copy_from_slice(&public.to_bytes());
        Ok(SealPrivateKey {
            key,
            public: RecipientKey::from_raw(raw)?,
        })
    }

    /// Reads a PKCS#8 private key for id-X25519 (RFC 8410), PEM (`BEGIN PRIVATE KEY`) or DER.
    pub fn parse(input: &[u8]) -> Result<SealPrivateKey, SealError> {
        let der = match std::str::from_utf8(input) {
            Ok(text) if text.contains("-----BEGIN") => {
                let (label, der) = pkcs8::der::pem::decode_vec(text.trim().as_bytes())
                    .map_err(|_| SealError::InvalidPrivateKey)?;
                if label != "PRIVATE KEY" {
                    return Err(SealError::InvalidPrivateKey);
                }
                Zeroizing::new(der)
            }
            _ => Zeroizing::new(input.to_vec()),
        };
        let info = PrivateKeyInfo::from_der(&der).map_err(|_| SealError::InvalidPrivateKey)?;
        if info.algorithm.oid == RSA_OID {
            return Err(SealError::RetiredRsaKey);
        }
        if info.algorithm.oid != X25519_OID || info.algorithm.parameters.is_some() {
            return Err(SealError::InvalidPrivateKey);
        }
        // CurvePrivateKey ::= OCTET STRING, inside PKCS#8's privateKey OCTET STRING.
        let inner =
            OctetStringRef::from_der(info.private_key).map_err(|_| SealError::InvalidPrivateKey)?;
        let key = PrivateKeyBytes::from_bytes(inner.as_bytes())
            .map_err(|_| SealError::InvalidPrivateKey)?;
        let public = SuiteKem::sk_to_pk(&key);
        SealPrivateKey::from_parts(key, &public)
    }

    /// The key as PKCS#8 PEM (`BEGIN PRIVATE KEY`), for a file of mode 0600.
    pub fn to_pkcs8_pem(&self) -> Result<Zeroizing<String>, SealError> {
        let mut raw = self.key.to_bytes();
        let result = (|| {
            let inner = OctetStringRef::new(&raw)
                .and_then(|octets| octets.to_der())
                .map(Zeroizing::new)
                .map_err(|_| SealError::InvalidPrivateKey)?;
            let info = PrivateKeyInfo::new(
                AlgorithmIdentifierRef {
                    oid: X25519_OID,
                    parameters: None,
                },
                &inner,
            );
            let der = info
                .to_der()
                .map(Zeroizing::new)
                .map_err(|_| SealError::InvalidPrivateKey)?;
            pkcs8::der::pem::encode_string("PRIVATE KEY", LineEnding::LF, &der)
                .map(Zeroizing::new)
                .map_err(|_| SealError::InvalidPrivateKey)
        })();
        raw.as_mut_slice().zeroize();
        result
    }

    pub fn public_key(&self) -> &RecipientKey {
        &self.public
    }

    pub fn key_id(&self) -> &str {
        self.public.key_id()
    }
}

fn info_for(context: &[u8]) -> Vec<u8> {
    let mut info = Vec::with_capacity(INFO_LABEL.len() + context.len());
    info.extend_from_slice(INFO_LABEL);
    info.extend_from_slice(context);
    info
}

/// Seals `plaintext` to `recipient`, binding `context` (in HPKE's info and as associated data).
pub fn seal(
    recipient: &RecipientKey,
    plaintext: &[u8],
    context: &[u8],
) -> Result<SealedBox, SealError> {
    let mut rng = OsRng.unwrap_err();
    seal_with_rng(&mut rng, recipient, plaintext, context)
}

/// [`seal`] with the caller's randomness (which must be cryptographically secure).
pub fn seal_with_rng<R: RngCore + CryptoRng>(
    rng: &mut R,
    recipient: &RecipientKey,
    plaintext: &[u8],
    context: &[u8],
) -> Result<SealedBox, SealError> {
    let (enc, ciphertext) = hpke::single_shot_seal::<AesGcm256, HkdfSha256, SuiteKem, R>(
        &OpModeS::Base,
        &recipient.key,
        &info_for(context),
        plaintext,
        context,
        rng,
    )
    .map_err(|_| SealError::Seal)?;
    Ok(SealedBox {
        alg: ALG.into(),
        key_id: recipient.key_id.clone(),
        enc: enc.to_bytes().to_vec(),
        ciphertext,
    })
}

/// Opens a box sealed to `private`'s public key with the same `context`.
pub fn open(
    private: &SealPrivateKey,
    sealed: &SealedBox,
    context: &[u8],
) -> Result<Zeroizing<Vec<u8>>, SealError> {
    sealed.check_shape()?;
    if private.key_id() != sealed.key_id {
        return Err(SealError::WrongKey);
    }
    let enc = EncappedKey::from_bytes(&sealed.enc).map_err(|_| SealError::Open)?;
    hpke::single_shot_open::<AesGcm256, HkdfSha256, SuiteKem>(
        &OpModeR::Base,
        &private.key,
        &enc,
        &info_for(context),
        &sealed.ciphertext,
        context,
    )
    .map(Zeroizing::new)
    .map_err(|_| SealError::Open)
}

mod b64 {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        STANDARD
            .decode(text.as_bytes())
            .map_err(|_| serde::de::Error::custom("invalid base64"))
    }
}
