//! Sealing data to the backend: hybrid encryption to an RSA public key, so that the terminal
//! can keep something it must not be able to read back (the signing certificate, which holds
//! the holder's basic-4 information) until the backend takes it.
//!
//! Per message: a fresh random AES-256-GCM key and 96-bit nonce encrypt the plaintext; the key
//! is wrapped with RSA-OAEP (SHA-256, MGF1-SHA-256, empty label). The caller's associated data
//! is authenticated but not stored: the opener must supply the same bytes (the outbox uses the
//! statement's SHA-256, so a sealed certificate cannot be moved onto another statement).
//!
//! JSON form, binary fields standard base64:
//! `{"alg":"RSA-OAEP-256+A256GCM","key_id":<hex SHA-256 of the recipient's SPKI DER>,
//!   "wrapped_key":…,"nonce":…,"ciphertext":<AES-GCM output including the 16-byte tag>}`

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use rand::rngs::OsRng;
use rand::{CryptoRng, RngCore};
use rsa::pkcs8::{DecodePublicKey, EncodePublicKey};
use rsa::traits::PublicKeyParts;
use rsa::{Oaep, RsaPrivateKey, RsaPublicKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// The only algorithm identifier this module writes or accepts.
pub const ALG: &str = "RSA-OAEP-256+A256GCM";

/// Recipient keys below this size are refused: the wrapped key would be weaker than AES-256
/// by a wide margin.
pub const MIN_RSA_BITS: usize = 2048;

const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// Every message is fixed text: nothing sealed, opened or parsed ever ends up in an error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("the recipient public key is not an RSA SubjectPublicKeyInfo in PEM or DER")]
    InvalidPublicKey,
    #[error("the recipient RSA key has {bits} bits; at least {MIN_RSA_BITS} are required")]
    KeyTooSmall { bits: usize },
    #[error("the sealed box uses an unsupported algorithm")]
    UnsupportedAlgorithm,
    #[error("the sealed box was sealed to a different key")]
    WrongKey,
    #[error("the sealed box is malformed: {0}")]
    Format(&'static str),
    #[error("sealing failed")]
    Seal,
    // One variant for every authentication failure (wrapped key, nonce, ciphertext, AAD):
    // telling them apart would only help an attacker probing the opener.
    #[error("the sealed box could not be opened: it was altered or the associated data differs")]
    Open,
}

/// A message sealed to one RSA key. Its `Debug` shows sizes only.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedBox {
    pub alg: String,
    pub key_id: String,
    #[serde(with = "b64")]
    pub wrapped_key: Vec<u8>,
    #[serde(with = "b64")]
    pub nonce: Vec<u8>,
    #[serde(with = "b64")]
    pub ciphertext: Vec<u8>,
}

impl std::fmt::Debug for SealedBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedBox")
            .field("alg", &self.alg)
            .field("key_id", &self.key_id)
            .field("wrapped_key_len", &self.wrapped_key.len())
            .field("nonce_len", &self.nonce.len())
            .field("ciphertext_len", &self.ciphertext.len())
            .finish()
    }
}

impl SealedBox {
    pub fn to_json(&self) -> String {
        // A struct of strings cannot fail to serialise; the fallback is unreachable.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Parses the JSON form and checks the shape (algorithm, field sizes), not the crypto.
    pub fn from_json(json: &str) -> Result<SealedBox, SealError> {
        // serde_json's messages can quote the input, so they are not passed on.
        let sealed: SealedBox = serde_json::from_str(json)
            .map_err(|_| SealError::Format("not a sealed-box JSON object"))?;
        sealed.check_shape()?;
        Ok(sealed)
    }

    fn check_shape(&self) -> Result<(), SealError> {
        if self.alg != ALG {
            return Err(SealError::UnsupportedAlgorithm);
        }
        if self.key_id.len() != 64 || hex::decode(&self.key_id).is_err() {
            return Err(SealError::Format("key_id is not a hex SHA-256"));
        }
        if self.nonce.len() != NONCE_LEN {
            return Err(SealError::Format("nonce is not 96 bits"));
        }
        if self.ciphertext.len() < TAG_LEN {
            return Err(SealError::Format("ciphertext is shorter than its tag"));
        }
        if self.wrapped_key.is_empty() {
            return Err(SealError::Format("wrapped key is empty"));
        }
        Ok(())
    }
}

/// Reads a recipient key: SubjectPublicKeyInfo, PEM (`BEGIN PUBLIC KEY`) or DER.
pub fn parse_public_key(bytes: &[u8]) -> Result<RsaPublicKey, SealError> {
    let key = match std::str::from_utf8(bytes) {
        Ok(text) if text.contains("-----BEGIN") => RsaPublicKey::from_public_key_pem(text.trim()),
        _ => RsaPublicKey::from_public_key_der(bytes),
    }
    .map_err(|_| SealError::InvalidPublicKey)?;
    check_size(&key)?;
    Ok(key)
}

/// Lower-case hex SHA-256 of the key's SubjectPublicKeyInfo DER.
pub fn key_id(key: &RsaPublicKey) -> Result<String, SealError> {
    let der = key
        .to_public_key_der()
        .map_err(|_| SealError::InvalidPublicKey)?;
    Ok(hex::encode(Sha256::digest(der.as_bytes())))
}

fn check_size(key: &RsaPublicKey) -> Result<(), SealError> {
    let bits = key.n().bits();
    if bits < MIN_RSA_BITS {
        return Err(SealError::KeyTooSmall { bits });
    }
    Ok(())
}

/// Seals `plaintext` to `recipient`, authenticating `aad` alongside it.
pub fn seal(
    recipient: &RsaPublicKey,
    plaintext: &[u8],
    aad: &[u8],
) -> Result<SealedBox, SealError> {
    seal_with_rng(&mut OsRng, recipient, plaintext, aad)
}

/// [`seal`] with the caller's randomness (which must be cryptographically secure).
pub fn seal_with_rng<R: RngCore + CryptoRng>(
    rng: &mut R,
    recipient: &RsaPublicKey,
    plaintext: &[u8],
    aad: &[u8],
) -> Result<SealedBox, SealError> {
    check_size(recipient)?;
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    rng.fill_bytes(key.as_mut());
    let mut nonce = [0u8; NONCE_LEN];
    rng.fill_bytes(&mut nonce);

    let cipher = Aes256Gcm::new_from_slice(key.as_ref()).map_err(|_| SealError::Seal)?;
    let ciphertext = cipher
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .map_err(|_| SealError::Seal)?;
    let wrapped_key = recipient
        .encrypt(rng, Oaep::new::<Sha256>(), key.as_ref())
        .map_err(|_| SealError::Seal)?;

    Ok(SealedBox {
        alg: ALG.into(),
        key_id: key_id(recipient)?,
        wrapped_key,
        nonce: nonce.to_vec(),
        ciphertext,
    })
}

/// Opens a box sealed to `private`'s public key with the same `aad`.
pub fn open(
    private: &RsaPrivateKey,
    sealed: &SealedBox,
    aad: &[u8],
) -> Result<Zeroizing<Vec<u8>>, SealError> {
    sealed.check_shape()?;
    if key_id(&private.to_public_key())? != sealed.key_id {
        return Err(SealError::WrongKey);
    }
    if sealed.wrapped_key.len() != private.size() {
        return Err(SealError::Open);
    }
    let key = Zeroizing::new(
        private
            .decrypt(Oaep::new::<Sha256>(), &sealed.wrapped_key)
            .map_err(|_| SealError::Open)?,
    );
    if key.len() != KEY_LEN {
        return Err(SealError::Open);
    }
    let cipher = Aes256Gcm::new_from_slice(&key).map_err(|_| SealError::Open)?;
    let plaintext = cipher
        .decrypt(
            Nonce::from_slice(&sealed.nonce),
            Payload {
                msg: &sealed.ciphertext,
                aad,
            },
        )
        .map_err(|_| SealError::Open)?;
    Ok(Zeroizing::new(plaintext))
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
