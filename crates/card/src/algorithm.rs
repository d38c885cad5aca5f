//! The words for keys and signatures that the card layer and the verifiers above it share:
//! hash algorithms, key kinds and signature algorithms, with their stable names (headless
//! JSON, traces, logs). The card layer needs them to know what a SIGN command carries and how
//! long the answer is; the certificate layer verifies with them.

use std::fmt;

use sha2::{Digest, Sha256, Sha384, Sha512};

/// The SHA-2 hashes the JPKI profiles and their verifiers use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HashAlgorithm {
    Sha256,
    Sha384,
    Sha512,
}

// DigestInfo prefixes (RFC 8017 §9.2, note 1): SEQUENCE { AlgorithmIdentifier, OCTET STRING }
// up to the hash value. Spelled out so the encoding does not depend on a digest crate feature.
const SHA256_DIGEST_INFO_PREFIX: [u8; 19] = [
    0x30, 0x31, 0x30, 0x0D, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05,
    0x00, 0x04, 0x20,
];
const SHA384_DIGEST_INFO_PREFIX: [u8; 19] = [
    0x30, 0x41, 0x30, 0x0D, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05,
    0x00, 0x04, 0x30,
];
const SHA512_DIGEST_INFO_PREFIX: [u8; 19] = [
    0x30, 0x51, 0x30, 0x0D, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03, 0x05,
    0x00, 0x04, 0x40,
];

impl HashAlgorithm {
    pub const ALL: [HashAlgorithm; 3] = [
        HashAlgorithm::Sha256,
        HashAlgorithm::Sha384,
        HashAlgorithm::Sha512,
    ];

    /// `sha256`, `sha384`, `sha512`.
    pub fn name(self) -> &'static str {
        match self {
            HashAlgorithm::Sha256 => "sha256",
            HashAlgorithm::Sha384 => "sha384",
            HashAlgorithm::Sha512 => "sha512",
        }
    }

    /// Length of the hash value in bytes.
    pub fn output_len(self) -> usize {
        match self {
            HashAlgorithm::Sha256 => 32,
            HashAlgorithm::Sha384 => 48,
            HashAlgorithm::Sha512 => 64,
        }
    }

    pub fn digest(self, message: &[u8]) -> Vec<u8> {
        match self {
            HashAlgorithm::Sha256 => Sha256::digest(message).to_vec(),
            HashAlgorithm::Sha384 => Sha384::digest(message).to_vec(),
            HashAlgorithm::Sha512 => Sha512::digest(message).to_vec(),
        }
    }

    /// The DER of a DigestInfo up to the hash value.
    pub fn digest_info_prefix(self) -> &'static [u8] {
        match self {
            HashAlgorithm::Sha256 => &SHA256_DIGEST_INFO_PREFIX,
            HashAlgorithm::Sha384 => &SHA384_DIGEST_INFO_PREFIX,
            HashAlgorithm::Sha512 => &SHA512_DIGEST_INFO_PREFIX,
        }
    }

    /// The DER DigestInfo of a hash value (what a card that pads PKCS#1 v1.5 itself signs).
    pub fn digest_info(self, digest: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(19 + digest.len());
        out.extend_from_slice(self.digest_info_prefix());
        out.extend_from_slice(digest);
        out
    }
}

/// The kind of a signing key, as its certificate gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyKind {
    /// RSA with a modulus of `bits` bits.
    Rsa { bits: usize },
    /// ECDSA on NIST P-256 (secp256r1).
    EcP256,
    /// ECDSA on NIST P-384 (secp384r1), the planned next-generation card's key.
    EcP384,
}

impl KeyKind {
    /// Bytes of one signature by this key: the modulus length for RSA, `r ‖ s` (two field
    /// elements) for ECDSA.
    pub fn signature_len(self) -> usize {
        match self {
            KeyKind::Rsa { bits } => bits.div_ceil(8),
            KeyKind::EcP256 => 64,
            KeyKind::EcP384 => 96,
        }
    }

    pub fn is_rsa(self) -> bool {
        matches!(self, KeyKind::Rsa { .. })
    }

    /// `rsa-2048`, `rsa-3072`, `ec-p256`, `ec-p384`.
    pub fn name(self) -> String {
        match self {
            KeyKind::Rsa { bits } => format!("rsa-{bits}"),
            KeyKind::EcP256 => "ec-p256".into(),
            KeyKind::EcP384 => "ec-p384".into(),
        }
    }
}

impl fmt::Display for KeyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// A signature algorithm: the padding or scheme and its hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SignatureAlgorithm {
    /// RSASSA-PKCS1-v1_5 (RFC 8017 §8.2).
    RsaPkcs1(HashAlgorithm),
    /// RSASSA-PSS (RFC 8017 §8.1) with MGF1 over the same hash and a salt as long as the hash.
    RsaPss(HashAlgorithm),
    /// ECDSA (FIPS 186-4).
    Ecdsa(HashAlgorithm),
}

impl SignatureAlgorithm {
    /// Every algorithm some key kind accepts, in the order a verifier tries them.
    pub const ALL: [SignatureAlgorithm; 8] = [
        SignatureAlgorithm::RsaPkcs1(HashAlgorithm::Sha256),
        SignatureAlgorithm::RsaPkcs1(HashAlgorithm::Sha384),
        SignatureAlgorithm::RsaPkcs1(HashAlgorithm::Sha512),
        SignatureAlgorithm::RsaPss(HashAlgorithm::Sha256),
        SignatureAlgorithm::RsaPss(HashAlgorithm::Sha384),
        SignatureAlgorithm::RsaPss(HashAlgorithm::Sha512),
        SignatureAlgorithm::Ecdsa(HashAlgorithm::Sha384),
        SignatureAlgorithm::Ecdsa(HashAlgorithm::Sha256),
    ];

    pub fn hash(self) -> HashAlgorithm {
        match self {
            SignatureAlgorithm::RsaPkcs1(h)
            | SignatureAlgorithm::RsaPss(h)
            | SignatureAlgorithm::Ecdsa(h) => h,
        }
    }

    /// `rsa-pkcs1-sha256`, `rsa-pss-sha384`, `ecdsa-sha384`, …
    pub fn name(self) -> String {
        match self {
            SignatureAlgorithm::RsaPkcs1(h) => format!("rsa-pkcs1-{}", h.name()),
            SignatureAlgorithm::RsaPss(h) => format!("rsa-pss-{}", h.name()),
            SignatureAlgorithm::Ecdsa(h) => format!("ecdsa-{}", h.name()),
        }
    }

    /// Whether a key of this kind may make signatures of this algorithm: the RSA schemes
    /// with RSA keys, ECDSA with SHA-256 or SHA-384 on P-256 and P-384.
    pub fn fits(self, key: KeyKind) -> bool {
        match self {
            SignatureAlgorithm::RsaPkcs1(_) | SignatureAlgorithm::RsaPss(_) => key.is_rsa(),
            SignatureAlgorithm::Ecdsa(h) => {
                !key.is_rsa() && matches!(h, HashAlgorithm::Sha256 | HashAlgorithm::Sha384)
            }
        }
    }
}

impl fmt::Display for SignatureAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_info_prefixes_announce_their_lengths() {
        for hash in HashAlgorithm::ALL {
            let info = hash.digest_info(&hash.digest(b"x"));
            // SEQUENCE length covers everything after the two header bytes.
            assert_eq!(usize::from(info[1]), info.len() - 2, "{hash:?}");
            // The OCTET STRING holds exactly the hash.
            assert_eq!(usize::from(info[18]), hash.output_len(), "{hash:?}");
            assert_eq!(info.len(), 19 + hash.output_len());
        }
        // The NIST hash arcs 2.16.840.1.101.3.4.2.{1,2,3}.
        assert_eq!(HashAlgorithm::Sha256.digest_info_prefix()[14], 1);
        assert_eq!(HashAlgorithm::Sha384.digest_info_prefix()[14], 2);
        assert_eq!(HashAlgorithm::Sha512.digest_info_prefix()[14], 3);
    }

    #[test]
    fn key_kinds_give_signature_lengths_and_names() {
        assert_eq!(KeyKind::Rsa { bits: 2048 }.signature_len(), 256);
        assert_eq!(KeyKind::Rsa { bits: 3072 }.signature_len(), 384);
        assert_eq!(KeyKind::Rsa { bits: 4096 }.signature_len(), 512);
        assert_eq!(KeyKind::EcP256.signature_len(), 64);
        assert_eq!(KeyKind::EcP384.signature_len(), 96);
        assert_eq!(KeyKind::Rsa { bits: 2048 }.name(), "rsa-2048");
        assert_eq!(KeyKind::EcP384.to_string(), "ec-p384");
    }

    #[test]
    fn algorithms_fit_their_keys() {
        let rsa = KeyKind::Rsa { bits: 2048 };
        for algorithm in SignatureAlgorithm::ALL {
            let is_rsa = !matches!(algorithm, SignatureAlgorithm::Ecdsa(_));
            assert_eq!(algorithm.fits(rsa), is_rsa, "{algorithm}");
            assert_eq!(algorithm.fits(KeyKind::EcP384), !is_rsa, "{algorithm}");
        }
        assert!(!SignatureAlgorithm::Ecdsa(HashAlgorithm::Sha512).fits(KeyKind::EcP384));
        assert_eq!(
            SignatureAlgorithm::RsaPkcs1(HashAlgorithm::Sha256).name(),
            "rsa-pkcs1-sha256"
        );
        assert_eq!(
            SignatureAlgorithm::Ecdsa(HashAlgorithm::Sha384).name(),
            "ecdsa-sha384"
        );
    }
}
