//! The issuing CA as revocation data needs it: its name and key name it in an OCSP
//! CertID, and its key signs the OCSP response (or certifies the responder that signs it)
//! and the CRL. Signatures are RSA PKCS#1 v1.5 with SHA-256/384/512, the algorithms of the
//! JPKI signing CA; anything else is refused, never skipped.

use der::asn1::{AnyRef, BitStringRef, ObjectIdentifier};
use der::{Decode, Encode, Sequence};
use rsa::pkcs8::DecodePublicKey;
use rsa::{Pkcs1v15Sign, RsaPublicKey};
use sha2::{Digest, Sha256, Sha384, Sha512};
use time::OffsetDateTime;
use x509_cert::spki::AlgorithmIdentifierRef;
use x509_cert::Certificate;

const SHA256_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11");
const SHA384_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.12");
const SHA512_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.13");
/// id-kp-OCSPSigning (RFC 6960 §4.2.2.2).
const OCSP_SIGNING: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.9");
const EXTENDED_KEY_USAGE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.37");

/// Any signed structure (certificate, CRL, basic OCSP response) seen as its parts, so that
/// the signed bytes are verified exactly as they arrived.
#[derive(Sequence)]
pub(crate) struct Signed<'a> {
    pub tbs: AnyRef<'a>,
    pub algorithm: AlgorithmIdentifierRef<'a>,
    pub signature: BitStringRef<'a>,
    /// The certificates of a basic OCSP response; absent elsewhere.
    #[asn1(context_specific = "0", optional = "true", tag_mode = "EXPLICIT")]
    pub certs: Option<AnyRef<'a>>,
}

impl Signed<'_> {
    /// Whether `key` signed these bytes.
    pub fn verified_by(&self, key: &RsaPublicKey) -> bool {
        let (Ok(tbs), Some(signature)) = (self.tbs.to_der(), self.signature.as_bytes()) else {
            return false;
        };
        verify_rsa(key, &self.algorithm.oid, &tbs, signature)
    }
}

/// RSA PKCS#1 v1.5 with the hash the algorithm names.
pub(crate) fn verify_rsa(
    key: &RsaPublicKey,
    algorithm: &ObjectIdentifier,
    message: &[u8],
    signature: &[u8],
) -> bool {
    let result = if *algorithm == SHA256_WITH_RSA {
        key.verify(
            Pkcs1v15Sign::new::<Sha256>(),
            &Sha256::digest(message),
            signature,
        )
    } else if *algorithm == SHA384_WITH_RSA {
        key.verify(
            Pkcs1v15Sign::new::<Sha384>(),
            &Sha384::digest(message),
            signature,
        )
    } else if *algorithm == SHA512_WITH_RSA {
        key.verify(
            Pkcs1v15Sign::new::<Sha512>(),
            &Sha512::digest(message),
            signature,
        )
    } else {
        return false;
    };
    result.is_ok()
}

fn rsa_key(certificate: &Certificate) -> Result<RsaPublicKey, String> {
    let spki = certificate
        .tbs_certificate
        .subject_public_key_info
        .to_der()
        .map_err(|e| format!("public key: {e}"))?;
    RsaPublicKey::from_public_key_der(&spki).map_err(|_| "the key is not an RSA key".to_string())
}

/// A CA that issues holders' signing certificates.
#[derive(Debug, Clone)]
pub struct Issuer {
    pub sha256: [u8; 32],
    /// The subject name as encoded: a holder's certificate names its issuer with these bytes.
    pub subject_der: Vec<u8>,
    /// The subjectPublicKey bits (the OCSP CertID hashes them).
    pub key_bits: Vec<u8>,
    pub subject_key_id: Option<Vec<u8>>,
    key: RsaPublicKey,
}

impl Issuer {
    pub fn from_der(der: &[u8]) -> Result<Issuer, String> {
        let certificate =
            Certificate::from_der(der).map_err(|e| format!("not an X.509 certificate: {e}"))?;
        let tbs = &certificate.tbs_certificate;
        let subject_key_id = tbs
            .extensions
            .iter()
            .flatten()
            .find(|e| e.extn_id == ObjectIdentifier::new_unwrap("2.5.29.14"))
            .and_then(|e| der::asn1::OctetString::from_der(e.extn_value.as_bytes()).ok())
            .map(|k| k.as_bytes().to_vec());
        Ok(Issuer {
            sha256: Sha256::digest(der).into(),
            subject_der: tbs.subject.to_der().map_err(|e| e.to_string())?,
            key_bits: tbs
                .subject_public_key_info
                .subject_public_key
                .raw_bytes()
                .to_vec(),
            subject_key_id,
            key: rsa_key(&certificate)?,
        })
    }

    pub fn key(&self) -> &RsaPublicKey {
        &self.key
    }

    /// The key of a delegated OCSP responder certificate (RFC 6960 §4.2.2.2): issued by this
    /// CA (its name, its signature), for `id-kp-OCSPSigning`, and valid at `now`.
    pub fn authorized_responder(
        &self,
        der: &[u8],
        now: OffsetDateTime,
    ) -> Result<RsaPublicKey, String> {
        let signed = Signed::from_der(der).map_err(|e| format!("not a certificate: {e}"))?;
        let certificate =
            Certificate::from_der(der).map_err(|e| format!("not a certificate: {e}"))?;
        let tbs = &certificate.tbs_certificate;
        if tbs.issuer.to_der().ok().as_deref() != Some(self.subject_der.as_slice()) {
            return Err("the responder certificate names another issuer".into());
        }
        if !signed.verified_by(&self.key) {
            return Err("the responder certificate is not signed by the certificate's CA".into());
        }
        let for_ocsp = tbs
            .extensions
            .iter()
            .flatten()
            .filter(|e| e.extn_id == EXTENDED_KEY_USAGE)
            .filter_map(|e| {
                x509_cert::ext::pkix::ExtendedKeyUsage::from_der(e.extn_value.as_bytes()).ok()
            })
            .any(|eku| eku.0.contains(&OCSP_SIGNING));
        if !for_ocsp {
            return Err("the responder certificate is not certified for OCSP signing".into());
        }
        let not_before = unix(tbs.validity.not_before.to_unix_duration());
        let not_after = unix(tbs.validity.not_after.to_unix_duration());
        if now < not_before || now > not_after {
            return Err("the responder certificate is not valid now".into());
        }
        rsa_key(&certificate)
    }
}

pub(crate) fn unix(duration: std::time::Duration) -> OffsetDateTime {
    i64::try_from(duration.as_secs())
        .ok()
        .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}
