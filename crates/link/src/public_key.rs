//! Public keys of certificates and the signatures they verify.
//!
//! Accepted keys: RSA with a 2048–4096-bit modulus, ECDSA on P-256 and P-384. Accepted
//! signatures: RSASSA-PKCS1-v1_5 and RSASSA-PSS with SHA-256/384/512, ECDSA with SHA-256/384.
//! Anything else (SHA-1, MD5, smaller RSA moduli, other curves, PSS with unusual parameters)
//! is refused with a message that names it.
//!
//! Two places use them: the issuer's signature on a certificate, whose algorithm the
//! certificate names (ECDSA encoded as DER), and the card's signature on the statement,
//! whose algorithm follows from the key (ECDSA as `r ‖ s`, the card's output).

use mynalink_card::{HashAlgorithm, KeyKind, SignatureAlgorithm};
use p256::ecdsa::signature::hazmat::PrehashVerifier;
use rsa::traits::PublicKeyParts;
use rsa::{BigUint, Pkcs1v15Sign, Pss, RsaPublicKey};
use sha2::{Sha256, Sha384, Sha512};
use x509_parser::der_parser::oid::Oid;
use x509_parser::public_key::PublicKey as ParsedKey;
use x509_parser::signature_algorithm::RsaSsaPssParams;
use x509_parser::x509::{AlgorithmIdentifier, SubjectPublicKeyInfo};

/// The RSA moduli accepted, in bits.
pub const RSA_MIN_BITS: usize = 2048;
pub const RSA_MAX_BITS: usize = 4096;

const OID_RSA_ENCRYPTION: &str = "1.2.840.113549.1.1.1";
const OID_EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const OID_P256: &str = "1.2.840.10045.3.1.7";
const OID_P384: &str = "1.3.132.0.34";

const OID_SHA256_WITH_RSA: &str = "1.2.840.113549.1.1.11";
const OID_SHA384_WITH_RSA: &str = "1.2.840.113549.1.1.12";
const OID_SHA512_WITH_RSA: &str = "1.2.840.113549.1.1.13";
const OID_RSASSA_PSS: &str = "1.2.840.113549.1.1.10";
const OID_MGF1: &str = "1.2.840.113549.1.1.8";
const OID_ECDSA_WITH_SHA256: &str = "1.2.840.10045.4.3.2";
const OID_ECDSA_WITH_SHA384: &str = "1.2.840.10045.4.3.3";
const OID_SHA256: &str = "2.16.840.1.101.3.4.2.1";
const OID_SHA384: &str = "2.16.840.1.101.3.4.2.2";
const OID_SHA512: &str = "2.16.840.1.101.3.4.2.3";

/// A certificate's public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublicKey {
    Rsa(RsaPublicKey),
    EcP256(p256::ecdsa::VerifyingKey),
    EcP384(p384::ecdsa::VerifyingKey),
}

/// How an ECDSA signature is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EcdsaEncoding {
    /// `Ecdsa-Sig-Value` DER, as in certificates (RFC 5480 §2.2.3 of RFC 3279).
    Der,
    /// `r ‖ s`, each as long as the field: what a card answers.
    Fixed,
}

/// Why a signature does not verify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerifyError {
    /// The algorithm cannot be used with this key (e.g. ECDSA with an RSA key).
    AlgorithmDoesNotFit,
    /// A fixed-size signature of the wrong length.
    WrongLength { length: usize },
    /// Well-formed, but not made by this key over this message.
    Mismatch,
}

impl PublicKey {
    /// The key of a SubjectPublicKeyInfo, if it is one this program accepts; otherwise a
    /// description of what it is.
    pub(crate) fn from_spki(spki: &SubjectPublicKeyInfo<'_>) -> Result<PublicKey, String> {
        let algorithm = spki.algorithm.algorithm.to_id_string();
        match algorithm.as_str() {
            OID_RSA_ENCRYPTION => {
                let key = match spki.parsed() {
                    Ok(ParsedKey::RSA(key)) => key,
                    _ => return Err("an RSA public key that cannot be read".into()),
                };
                let n = BigUint::from_bytes_be(key.modulus);
                let e = BigUint::from_bytes_be(key.exponent);
                let bits = n.bits();
                if !(RSA_MIN_BITS..=RSA_MAX_BITS).contains(&bits) {
                    return Err(format!("RSA-{bits}"));
                }
                RsaPublicKey::new(n, e)
                    .map(PublicKey::Rsa)
                    .map_err(|err| format!("an unusable RSA-{bits} key: {err}"))
            }
            OID_EC_PUBLIC_KEY => {
                let curve = spki
                    .algorithm
                    .parameters
                    .as_ref()
                    .and_then(|p| p.as_oid().ok())
                    .map(|oid| oid.to_id_string())
                    .ok_or("an EC key without a named curve")?;
                let point = spki.subject_public_key.data.as_ref();
                match curve.as_str() {
                    OID_P256 => p256::ecdsa::VerifyingKey::from_sec1_bytes(point)
                        .map(PublicKey::EcP256)
                        .map_err(|_| "a P-256 key whose point is not on the curve".into()),
                    OID_P384 => p384::ecdsa::VerifyingKey::from_sec1_bytes(point)
                        .map(PublicKey::EcP384)
                        .map_err(|_| "a P-384 key whose point is not on the curve".into()),
                    other => Err(format!("an EC key on curve {other}")),
                }
            }
            other => Err(format!("key algorithm {other}")),
        }
    }

    pub fn kind(&self) -> KeyKind {
        match self {
            PublicKey::Rsa(key) => KeyKind::Rsa {
                bits: key.n().bits(),
            },
            PublicKey::EcP256(_) => KeyKind::EcP256,
            PublicKey::EcP384(_) => KeyKind::EcP384,
        }
    }

    /// The RSA key, for callers that need its numbers.
    pub fn rsa(&self) -> Option<&RsaPublicKey> {
        match self {
            PublicKey::Rsa(key) => Some(key),
            _ => None,
        }
    }

    /// Checks `signature` over `message` with `algorithm`.
    pub fn verify(
        &self,
        algorithm: SignatureAlgorithm,
        message: &[u8],
        signature: &[u8],
        encoding: EcdsaEncoding,
    ) -> Result<(), VerifyError> {
        if !algorithm.fits(self.kind()) {
            return Err(VerifyError::AlgorithmDoesNotFit);
        }
        let digest = algorithm.hash().digest(message);
        match (self, algorithm) {
            (PublicKey::Rsa(key), SignatureAlgorithm::RsaPkcs1(hash)) => {
                if signature.len() != key.size() {
                    return Err(VerifyError::WrongLength {
                        length: signature.len(),
                    });
                }
                let scheme = Pkcs1v15Sign {
                    hash_len: Some(hash.output_len()),
                    prefix: hash.digest_info_prefix().to_vec().into_boxed_slice(),
                };
                key.verify(scheme, &digest, signature)
                    .map_err(|_| VerifyError::Mismatch)
            }
            (PublicKey::Rsa(key), SignatureAlgorithm::RsaPss(hash)) => {
                if signature.len() != key.size() {
                    return Err(VerifyError::WrongLength {
                        length: signature.len(),
                    });
                }
                let scheme = match hash {
                    HashAlgorithm::Sha256 => Pss::new::<Sha256>(),
                    HashAlgorithm::Sha384 => Pss::new::<Sha384>(),
                    HashAlgorithm::Sha512 => Pss::new::<Sha512>(),
                };
                key.verify(scheme, &digest, signature)
                    .map_err(|_| VerifyError::Mismatch)
            }
            (PublicKey::EcP256(key), SignatureAlgorithm::Ecdsa(_)) => {
                let signature = match encoding {
                    EcdsaEncoding::Der => p256::ecdsa::Signature::from_der(signature),
                    EcdsaEncoding::Fixed if signature.len() != 64 => {
                        return Err(VerifyError::WrongLength {
                            length: signature.len(),
                        })
                    }
                    EcdsaEncoding::Fixed => p256::ecdsa::Signature::from_slice(signature),
                }
                .map_err(|_| VerifyError::Mismatch)?;
                key.verify_prehash(&digest, &signature)
                    .map_err(|_| VerifyError::Mismatch)
            }
            (PublicKey::EcP384(key), SignatureAlgorithm::Ecdsa(_)) => {
                let signature = match encoding {
                    EcdsaEncoding::Der => p384::ecdsa::Signature::from_der(signature),
                    EcdsaEncoding::Fixed if signature.len() != 96 => {
                        return Err(VerifyError::WrongLength {
                            length: signature.len(),
                        })
                    }
                    EcdsaEncoding::Fixed => p384::ecdsa::Signature::from_slice(signature),
                }
                .map_err(|_| VerifyError::Mismatch)?;
                key.verify_prehash(&digest, &signature)
                    .map_err(|_| VerifyError::Mismatch)
            }
            _ => Err(VerifyError::AlgorithmDoesNotFit),
        }
    }
}

fn hash_of_oid(oid: &Oid<'_>) -> Option<HashAlgorithm> {
    match oid.to_id_string().as_str() {
        OID_SHA256 => Some(HashAlgorithm::Sha256),
        OID_SHA384 => Some(HashAlgorithm::Sha384),
        OID_SHA512 => Some(HashAlgorithm::Sha512),
        _ => None,
    }
}

/// The signature algorithm a certificate names, if it is one this program accepts;
/// otherwise why not.
pub(crate) fn certificate_signature_algorithm(
    identifier: &AlgorithmIdentifier<'_>,
) -> Result<SignatureAlgorithm, String> {
    let oid = identifier.algorithm.to_id_string();
    let parameters = identifier.parameters.as_ref();
    // RFC 4055 §5: NULL parameters for the PKCS#1 v1.5 algorithms (absent is tolerated, as
    // most verifiers do); RFC 5758 §3.2: no parameters for ECDSA.
    let null_or_absent = parameters.is_none_or(|p| p.as_null().is_ok());
    let absent = parameters.is_none();
    let unsupported = |why: &str| format!("{oid} ({why})");
    match oid.as_str() {
        OID_SHA256_WITH_RSA | OID_SHA384_WITH_RSA | OID_SHA512_WITH_RSA if !null_or_absent => {
            Err(unsupported("with parameters other than NULL"))
        }
        OID_SHA256_WITH_RSA => Ok(SignatureAlgorithm::RsaPkcs1(HashAlgorithm::Sha256)),
        OID_SHA384_WITH_RSA => Ok(SignatureAlgorithm::RsaPkcs1(HashAlgorithm::Sha384)),
        OID_SHA512_WITH_RSA => Ok(SignatureAlgorithm::RsaPkcs1(HashAlgorithm::Sha512)),
        OID_ECDSA_WITH_SHA256 | OID_ECDSA_WITH_SHA384 if !absent => {
            Err(unsupported("with parameters"))
        }
        OID_ECDSA_WITH_SHA256 => Ok(SignatureAlgorithm::Ecdsa(HashAlgorithm::Sha256)),
        OID_ECDSA_WITH_SHA384 => Ok(SignatureAlgorithm::Ecdsa(HashAlgorithm::Sha384)),
        OID_RSASSA_PSS => {
            let parameters =
                parameters.ok_or_else(|| unsupported("RSASSA-PSS without parameters"))?;
            let params = RsaSsaPssParams::try_from(parameters)
                .map_err(|_| unsupported("RSASSA-PSS parameters that cannot be read"))?;
            // Only the parameters every PSS signer uses by default with SHA-2: MGF1 over the
            // same hash, a salt as long as the hash, trailer 1.
            let hash = hash_of_oid(params.hash_algorithm_oid())
                .ok_or_else(|| unsupported("RSASSA-PSS with a hash other than SHA-2"))?;
            let mgf = params
                .mask_gen_algorithm()
                .map_err(|_| unsupported("RSASSA-PSS with an unreadable mask generation"))?;
            if mgf.mgf.to_id_string() != OID_MGF1 || hash_of_oid(&mgf.hash) != Some(hash) {
                return Err(unsupported(
                    "RSASSA-PSS whose mask generation is not MGF1 with the same hash",
                ));
            }
            if params.salt_length() as usize != hash.output_len() || params.trailer_field() != 1 {
                return Err(unsupported(
                    "RSASSA-PSS with a salt length other than the hash length",
                ));
            }
            Ok(SignatureAlgorithm::RsaPss(hash))
        }
        _ => Err(unsupported(
            "not RSA PKCS#1 v1.5 or PSS with SHA-256/384/512, nor ECDSA with SHA-256/384",
        )),
    }
}
