//! Test keys and the signatures they make, for the simulated card's identities and for tests
//! that need certificates with other keys or algorithms: RSA (PKCS#1 v1.5 or PSS with
//! SHA-256/384/512) and ECDSA on P-256 and P-384 (SHA-256/384).
//!
//! Everything here is for TEST identities: keys come from public seeds.

use mynalink_card::{HashAlgorithm, KeyKind, SignatureAlgorithm};
use p256::ecdsa::signature::hazmat::PrehashSigner;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use rsa::traits::PublicKeyParts;
use rsa::{Pkcs1v15Sign, Pss, RsaPrivateKey};
use sha1::Sha1;
use sha2::{Digest, Sha256, Sha384, Sha512};

use crate::der::{self, DerError};

const OID_RSA_ENCRYPTION: &[u64] = &[1, 2, 840, 113549, 1, 1, 1];
const OID_EC_PUBLIC_KEY: &[u64] = &[1, 2, 840, 10045, 2, 1];
const OID_P256: &[u64] = &[1, 2, 840, 10045, 3, 1, 7];
const OID_P384: &[u64] = &[1, 3, 132, 0, 34];
const OID_RSASSA_PSS: &[u64] = &[1, 2, 840, 113549, 1, 1, 10];
const OID_MGF1: &[u64] = &[1, 2, 840, 113549, 1, 1, 8];

fn pkcs1_oid(hash: HashAlgorithm) -> &'static [u64] {
    match hash {
        HashAlgorithm::Sha256 => &[1, 2, 840, 113549, 1, 1, 11],
        HashAlgorithm::Sha384 => &[1, 2, 840, 113549, 1, 1, 12],
        HashAlgorithm::Sha512 => &[1, 2, 840, 113549, 1, 1, 13],
    }
}

fn ecdsa_oid(hash: HashAlgorithm) -> &'static [u64] {
    match hash {
        HashAlgorithm::Sha256 => &[1, 2, 840, 10045, 4, 3, 2],
        HashAlgorithm::Sha384 => &[1, 2, 840, 10045, 4, 3, 3],
        HashAlgorithm::Sha512 => &[1, 2, 840, 10045, 4, 3, 4],
    }
}

fn hash_oid(hash: HashAlgorithm) -> &'static [u64] {
    match hash {
        HashAlgorithm::Sha256 => &[2, 16, 840, 1, 101, 3, 4, 2, 1],
        HashAlgorithm::Sha384 => &[2, 16, 840, 1, 101, 3, 4, 2, 2],
        HashAlgorithm::Sha512 => &[2, 16, 840, 1, 101, 3, 4, 2, 3],
    }
}

/// The AlgorithmIdentifier of a certificate signature: NULL parameters for PKCS#1 v1.5
/// (RFC 4055 §5), none for ECDSA (RFC 5758 §3.2), RSASSA-PSS-params with MGF1 over the same
/// hash and a salt as long as the hash (RFC 4055 §3.1).
pub fn algorithm_identifier(algorithm: SignatureAlgorithm) -> Result<Vec<u8>, DerError> {
    Ok(match algorithm {
        SignatureAlgorithm::RsaPkcs1(hash) => {
            der::sequence(&[&der::oid(pkcs1_oid(hash))?, &der::null()])
        }
        SignatureAlgorithm::Ecdsa(hash) => der::sequence(&[&der::oid(ecdsa_oid(hash))?]),
        SignatureAlgorithm::RsaPss(hash) => {
            let hash_id = der::sequence(&[&der::oid(hash_oid(hash))?, &der::null()]);
            let mgf = der::sequence(&[&der::oid(OID_MGF1)?, &hash_id]);
            let params = der::sequence(&[
                &der::explicit(0, &hash_id)?,
                &der::explicit(1, &mgf)?,
                &der::explicit(2, &der::integer_u64(hash.output_len() as u64))?,
            ]);
            der::sequence(&[&der::oid(OID_RSASSA_PSS)?, &params])
        }
    })
}

/// A private key of a test identity.
#[derive(Clone)]
pub enum TestKey {
    Rsa(RsaPrivateKey),
    EcP256(p256::ecdsa::SigningKey),
    EcP384(p384::ecdsa::SigningKey),
}

impl std::fmt::Debug for TestKey {
    // Keys stay out of debug output.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TestKey({})", self.kind())
    }
}

impl PartialEq for TestKey {
    fn eq(&self, other: &Self) -> bool {
        self.subject_public_key() == other.subject_public_key()
    }
}

/// A deterministic scalar from a label: SHA-512 of the label and a counter, the first value
/// the curve accepts as a secret key.
fn scalar_bytes(label: &str, len: usize, accept: impl Fn(&[u8]) -> bool) -> Vec<u8> {
    let mut counter = 0u32;
    loop {
        let mut hasher = Sha512::new();
        hasher.update(label.as_bytes());
        hasher.update(counter.to_be_bytes());
        let bytes = hasher.finalize()[..len].to_vec();
        if accept(&bytes) {
            return bytes;
        }
        counter = counter.wrapping_add(1);
    }
}

impl TestKey {
    /// A P-256 key derived from `label` (cheap and deterministic).
    pub fn ec_p256(label: &str) -> TestKey {
        let bytes = scalar_bytes(label, 32, |b| {
            p256::ecdsa::SigningKey::from_slice(b).is_ok()
        });
        match p256::ecdsa::SigningKey::from_slice(&bytes) {
            Ok(key) => TestKey::EcP256(key),
            Err(_) => unreachable!("scalar_bytes returns an accepted scalar"),
        }
    }

    /// A P-384 key derived from `label` (cheap and deterministic).
    pub fn ec_p384(label: &str) -> TestKey {
        let bytes = scalar_bytes(label, 48, |b| {
            p384::ecdsa::SigningKey::from_slice(b).is_ok()
        });
        match p384::ecdsa::SigningKey::from_slice(&bytes) {
            Ok(key) => TestKey::EcP384(key),
            Err(_) => unreachable!("scalar_bytes returns an accepted scalar"),
        }
    }

    pub fn kind(&self) -> KeyKind {
        match self {
            TestKey::Rsa(key) => KeyKind::Rsa {
                bits: key.n().bits(),
            },
            TestKey::EcP256(_) => KeyKind::EcP256,
            TestKey::EcP384(_) => KeyKind::EcP384,
        }
    }

    pub fn rsa(&self) -> Option<&RsaPrivateKey> {
        match self {
            TestKey::Rsa(key) => Some(key),
            _ => None,
        }
    }

    /// The algorithm a CA with this key signs certificates with by default: PKCS#1 v1.5 with
    /// SHA-256 for RSA, ECDSA with the curve's hash.
    pub fn default_algorithm(&self) -> SignatureAlgorithm {
        match self {
            TestKey::Rsa(_) => SignatureAlgorithm::RsaPkcs1(HashAlgorithm::Sha256),
            TestKey::EcP256(_) => SignatureAlgorithm::Ecdsa(HashAlgorithm::Sha256),
            TestKey::EcP384(_) => SignatureAlgorithm::Ecdsa(HashAlgorithm::Sha384),
        }
    }

    /// The subjectPublicKey BIT STRING's contents: RSAPublicKey DER, or the uncompressed EC
    /// point.
    pub fn subject_public_key(&self) -> Vec<u8> {
        match self {
            TestKey::Rsa(key) => {
                let public = key.to_public_key();
                der::sequence(&[
                    &der::integer_unsigned(&public.n().to_bytes_be()),
                    &der::integer_unsigned(&public.e().to_bytes_be()),
                ])
            }
            TestKey::EcP256(key) => key
                .verifying_key()
                .to_encoded_point(false)
                .as_bytes()
                .to_vec(),
            TestKey::EcP384(key) => key
                .verifying_key()
                .to_encoded_point(false)
                .as_bytes()
                .to_vec(),
        }
    }

    pub fn subject_public_key_info(&self) -> Result<Vec<u8>, DerError> {
        let algorithm = match self {
            TestKey::Rsa(_) => der::sequence(&[&der::oid(OID_RSA_ENCRYPTION)?, &der::null()]),
            TestKey::EcP256(_) => {
                der::sequence(&[&der::oid(OID_EC_PUBLIC_KEY)?, &der::oid(OID_P256)?])
            }
            TestKey::EcP384(_) => {
                der::sequence(&[&der::oid(OID_EC_PUBLIC_KEY)?, &der::oid(OID_P384)?])
            }
        };
        Ok(der::sequence(&[
            &algorithm,
            &der::bit_string(&self.subject_public_key(), 0)?,
        ]))
    }

    /// RFC 5280 §4.2.1.2 method 1: SHA-1 of the subjectPublicKey BIT STRING contents.
    pub fn key_identifier(&self) -> Vec<u8> {
        Sha1::digest(self.subject_public_key()).to_vec()
    }

    /// Signs `message` with `algorithm` for a certificate (ECDSA as DER). `None` when the
    /// algorithm does not fit the key.
    pub fn sign_certificate(
        &self,
        algorithm: SignatureAlgorithm,
        message: &[u8],
    ) -> Option<Vec<u8>> {
        self.sign(algorithm, message, true)
    }

    /// Signs `message` with `algorithm` the way a card answers (ECDSA as `r ‖ s`). `None`
    /// when the algorithm does not fit the key.
    pub fn sign_raw(&self, algorithm: SignatureAlgorithm, message: &[u8]) -> Option<Vec<u8>> {
        self.sign(algorithm, message, false)
    }

    fn sign(&self, algorithm: SignatureAlgorithm, message: &[u8], der: bool) -> Option<Vec<u8>> {
        let hash = algorithm.hash();
        let digest = hash.digest(message);
        match (self, algorithm) {
            (TestKey::Rsa(key), SignatureAlgorithm::RsaPkcs1(_)) => {
                let scheme = Pkcs1v15Sign {
                    hash_len: Some(hash.output_len()),
                    prefix: hash.digest_info_prefix().to_vec().into_boxed_slice(),
                };
                key.sign(scheme, &digest).ok()
            }
            (TestKey::Rsa(key), SignatureAlgorithm::RsaPss(_)) => {
                // A salt from the message: test signatures stay reproducible.
                let mut rng = ChaCha20Rng::from_seed(Sha256::digest(message).into());
                let scheme = match hash {
                    HashAlgorithm::Sha256 => Pss::new::<Sha256>(),
                    HashAlgorithm::Sha384 => Pss::new::<Sha384>(),
                    HashAlgorithm::Sha512 => Pss::new::<Sha512>(),
                };
                key.sign_with_rng(&mut rng, scheme, &digest).ok()
            }
            (TestKey::EcP256(key), SignatureAlgorithm::Ecdsa(_)) => {
                let signature: p256::ecdsa::Signature = key.sign_prehash(&digest).ok()?;
                Some(if der {
                    signature.to_der().as_bytes().to_vec()
                } else {
                    signature.to_bytes().to_vec()
                })
            }
            (TestKey::EcP384(key), SignatureAlgorithm::Ecdsa(_)) => {
                let signature: p384::ecdsa::Signature = key.sign_prehash(&digest).ok()?;
                Some(if der {
                    signature.to_der().as_bytes().to_vec()
                } else {
                    signature.to_bytes().to_vec()
                })
            }
            _ => None,
        }
    }

    /// ECDSA over a hash the caller computed (the simulated card's SIGN), as `r ‖ s`.
    pub fn sign_ecdsa_prehash(&self, prehash: &[u8]) -> Option<Vec<u8>> {
        match self {
            TestKey::EcP256(key) => {
                let signature: p256::ecdsa::Signature = key.sign_prehash(prehash).ok()?;
                Some(signature.to_bytes().to_vec())
            }
            TestKey::EcP384(key) => {
                let signature: p384::ecdsa::Signature = key.sign_prehash(prehash).ok()?;
                Some(signature.to_bytes().to_vec())
            }
            TestKey::Rsa(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_ec_keys_are_deterministic_and_distinct() {
        assert_eq!(TestKey::ec_p384("a"), TestKey::ec_p384("a"));
        assert_ne!(TestKey::ec_p384("a"), TestKey::ec_p384("b"));
        assert_eq!(TestKey::ec_p256("a").kind(), KeyKind::EcP256);
        assert_eq!(TestKey::ec_p384("a").subject_public_key().len(), 97);
        assert_eq!(TestKey::ec_p256("a").subject_public_key()[0], 0x04);
    }

    #[test]
    fn algorithms_that_do_not_fit_the_key_sign_nothing() {
        let ec = TestKey::ec_p384("x");
        assert!(ec
            .sign_raw(SignatureAlgorithm::RsaPkcs1(HashAlgorithm::Sha256), b"m")
            .is_none());
        let raw = ec
            .sign_raw(SignatureAlgorithm::Ecdsa(HashAlgorithm::Sha384), b"m")
            .expect("signs");
        assert_eq!(raw.len(), 96);
        let der = ec
            .sign_certificate(SignatureAlgorithm::Ecdsa(HashAlgorithm::Sha384), b"m")
            .expect("signs");
        assert_eq!(der[0], 0x30);
        // RFC 6979: the same message gives the same signature.
        assert_eq!(
            Some(raw),
            ec.sign_raw(SignatureAlgorithm::Ecdsa(HashAlgorithm::Sha384), b"m")
        );
    }

    #[test]
    fn pss_identifier_carries_the_parameters() {
        let id = algorithm_identifier(SignatureAlgorithm::RsaPss(HashAlgorithm::Sha384))
            .expect("encodes");
        let sha384 = der::oid(hash_oid(HashAlgorithm::Sha384)).expect("oid");
        // The hash appears twice: hashAlgorithm and MGF1's parameter.
        let count = id.windows(sha384.len()).filter(|w| *w == sha384).count();
        assert_eq!(count, 2);
        assert!(id.ends_with(&[0xA2, 0x03, 0x02, 0x01, 48]));
    }
}
