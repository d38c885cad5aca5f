//! Is the signing certificate issued by a J-LIS signing CA?
//!
//! JPKI signing certificates are issued directly by a J-LIS root, so the chain is two
//! certificates long. All root generations share one subject DN, so the issuer is found by
//! key identifier (the certificate's authorityKeyIdentifier equals the root's
//! subjectKeyIdentifier) and trusted by SHA-256 fingerprint, never by name.
//!
//! Where the root comes from, in order:
//! 1. CA certificates configured by the operator (accepted only if pinned) and extra trust
//!    anchors (trusted because configured: test roots for the simulated card);
//! 2. otherwise the CA certificate read from the card (EF 0002), trusted only if its
//!    fingerprint is pinned or equals a configured extra anchor.
//!
//! Validity of the end-entity certificate itself is the caller's check
//! ([`SigningCertificate::is_valid_at`]); revocation cannot be checked here (J-LIS gives
//! revocation data only to registered verifiers).

use std::fmt;

use thiserror::Error;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use mynalink_card::SignatureAlgorithm;

use crate::certificate::{CertificateError, SigningCertificate};
use crate::public_key::EcdsaEncoding;

const fn hex_nibble(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        _ => panic!("fingerprint literal is not lower-case hex"),
    }
}

/// Compile-time decoding of a 64-character hex fingerprint.
const fn fingerprint(hex: &str) -> [u8; 32] {
    let bytes = hex.as_bytes();
    assert!(
        bytes.len() == 64,
        "fingerprint literal must have 64 hex digits"
    );
    let mut out = [0u8; 32];
    let mut i = 0;
    while i < 32 {
        out[i] = hex_nibble(bytes[2 * i]) << 4 | hex_nibble(bytes[2 * i + 1]);
        i += 1;
    }
    out
}

/// SHA-256 of the DER of each J-LIS signing-CA root (署名用認証局), as published by J-LIS.
pub const JLIS_SIGNING_ROOT_SHA256: [(&str, [u8; 32]); 3] = [
    (
        "2015 (signca01)",
        fingerprint("19645405a1fe14377434bd55957628ac4038557c542403a2243f21c706fc9355"),
    ),
    (
        "2019 (signca02)",
        fingerprint("79679c33e4cc9319440f1ad120a597ff1844e2ef217063adb176966fd5e6fbeb"),
    ),
    (
        "2023 (signca03)",
        fingerprint("d227f6cde11d35c5252178f106f843d24651944975413b539fa2fb68dbfa365f"),
    ),
];

/// SHA-256 of the simulated card's TEST signing root (`mynalink-simcard`). Its private key
/// comes from seeds in the project's public source, so anyone can issue certificates under
/// it: a backend must trust it only when told to, for demos and tests.
pub const PUBLIC_TEST_ROOT_SHA256: [u8; 32] =
    fingerprint("d500662b3377b7012a32a73bdb6ce2fc4b67044fa88f189eebac6532363ac554");

/// SHA-256 of the simulated card's P-384 TEST signing root (the provisional next-generation
/// profile, `--sim-key ec-p384`). Public like the RSA one: trusted only when told to.
pub const PUBLIC_TEST_ROOT_EC_P384_SHA256: [u8; 32] =
    fingerprint("11a12c9b3aaea72c538c1c5a6654be730a2d50906935b3dbf7b747bc1e8f2625");

/// Whether a root is one of the simulated card's TEST roots, whose private keys anyone has.
pub fn is_public_test_root(sha256: &[u8; 32]) -> bool {
    [PUBLIC_TEST_ROOT_SHA256, PUBLIC_TEST_ROOT_EC_P384_SHA256].contains(sha256)
}

/// The generation label of a pinned J-LIS signing root, e.g. "2023 (signca03)".
pub fn jlis_generation(sha256: &[u8; 32]) -> Option<&'static str> {
    JLIS_SIGNING_ROOT_SHA256
        .iter()
        .find(|(_, pin)| pin == sha256)
        .map(|(label, _)| *label)
}

/// Label for anchors that are trusted only because they were configured.
pub const CONFIGURED_ANCHOR_LABEL: &str = "configured trust anchor";

fn jlis_label(generation: &str) -> String {
    format!("J-LIS signing CA {generation}")
}

fn rfc3339(t: &OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_else(|_| t.to_string())
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TrustError {
    #[error("not a usable CA certificate: {detail}")]
    BadAnchor { detail: String },
    #[error(
        "the CA certificate (SHA-256 {sha256_hex}) is not one of the pinned J-LIS signing roots"
    )]
    NotPinned { sha256_hex: String },
    #[error("the certificate has no authorityKeyIdentifier, so its issuer cannot be identified")]
    NoAuthorityKeyId,
    #[error("no configured CA certificate or trust anchor has key identifier {authority_key_id_hex}, and no CA certificate was read from the card")]
    UnknownIssuer { authority_key_id_hex: String },
    #[error("the CA certificate read from the card is unusable: {detail}")]
    CardCaInvalid { detail: String },
    #[error("the CA certificate read from the card (SHA-256 {sha256_hex}) is neither a pinned J-LIS signing root nor a configured trust anchor")]
    CardCaNotPinned { sha256_hex: String },
    #[error("the CA certificate read from the card has key identifier {subject_key_id_hex}, but the certificate names issuer key {authority_key_id_hex}")]
    CardCaNotIssuer {
        authority_key_id_hex: String,
        subject_key_id_hex: String,
    },
    /// Weak (SHA-1, MD5), unknown, or with parameters this program does not take; or the
    /// outer and inner algorithm identifiers disagree. A fault of the certificate itself.
    #[error("the certificate's signature algorithm is not accepted: {oid}")]
    UnsupportedSignatureAlgorithm { oid: String },
    #[error(
        "the certificate's signature does not verify under the issuer CA's key ({anchor_label})"
    )]
    IssuerSignatureInvalid { anchor_label: String },
    #[error("the issuer CA ({anchor_label}) is not valid until {}", rfc3339(.not_before))]
    IssuerNotYetValid {
        anchor_label: String,
        not_before: OffsetDateTime,
    },
    #[error("the issuer CA ({anchor_label}) expired at {}", rfc3339(.not_after))]
    IssuerExpired {
        anchor_label: String,
        not_after: OffsetDateTime,
    },
    /// Not a trust question but a malformed certificate: reported as `certificate_invalid`.
    #[error("the certificate names an issuer other than the CA ({anchor_label}) that signed it")]
    IssuerNameMismatch { anchor_label: String },
}

impl TrustError {
    /// Whether the certificate itself is malformed or signed with an algorithm that is not
    /// accepted (`certificate_invalid`) rather than not trusted (`certificate_untrusted`).
    pub fn is_certificate_fault(&self) -> bool {
        matches!(
            self,
            TrustError::IssuerNameMismatch { .. }
                | TrustError::UnsupportedSignatureAlgorithm { .. }
        )
    }
}

/// A CA certificate usable as the issuer of signing certificates.
#[derive(Clone)]
pub struct TrustAnchor {
    cert: SigningCertificate,
    subject_key_id: Vec<u8>,
}

impl TrustAnchor {
    /// Reads one CA certificate, PEM (`-----BEGIN CERTIFICATE-----`) or DER. It must be a CA
    /// (basicConstraints cA, keyCertSign if keyUsage is present) with an accepted key (RSA
    /// 2048–4096 bits, ECDSA P-256 or P-384) and a subjectKeyIdentifier (issuers are matched
    /// by key identifier).
    pub fn from_pem_or_der(bytes: &[u8]) -> Result<Self, TrustError> {
        let der = pem_or_der(bytes).map_err(|detail| TrustError::BadAnchor { detail })?;
        Self::from_der(&der).map_err(|detail| TrustError::BadAnchor { detail })
    }

    fn from_der(der: &[u8]) -> Result<Self, String> {
        let cert =
            SigningCertificate::parse_any(der).map_err(|e: CertificateError| e.to_string())?;
        if !cert.is_ca {
            return Err("not a CA certificate (basicConstraints cA is not set)".into());
        }
        if cert.key_cert_sign == Some(false) {
            return Err("keyUsage does not allow certificate signing".into());
        }
        let subject_key_id = cert
            .subject_key_id
            .clone()
            .filter(|ski| !ski.is_empty())
            .ok_or("no subjectKeyIdentifier")?;
        Ok(TrustAnchor {
            cert,
            subject_key_id,
        })
    }

    pub fn sha256(&self) -> [u8; 32] {
        self.cert.sha256()
    }

    pub fn subject_key_id(&self) -> Option<Vec<u8>> {
        Some(self.subject_key_id.clone())
    }

    pub fn der(&self) -> &[u8] {
        self.cert.der()
    }

    pub fn not_before(&self) -> OffsetDateTime {
        self.cert.not_before()
    }

    pub fn not_after(&self) -> OffsetDateTime {
        self.cert.not_after()
    }

    /// The J-LIS generation if the fingerprint is pinned.
    pub fn jlis_generation(&self) -> Option<&'static str> {
        jlis_generation(&self.sha256())
    }

    fn issued(&self, cert: &SigningCertificate) -> bool {
        cert.authority_key_id().as_deref() == Some(self.subject_key_id.as_slice())
    }
}

impl fmt::Debug for TrustAnchor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrustAnchor")
            .field("sha256", &hex::encode(self.sha256()))
            .field("subject_key_id", &hex::encode(&self.subject_key_id))
            .field("jlis_generation", &self.jlis_generation())
            .finish()
    }
}

/// Where a verified chain ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedChain {
    pub anchor_sha256: [u8; 32],
    /// e.g. "J-LIS signing CA 2023 (signca03)" or "configured trust anchor".
    pub anchor_label: String,
    /// The CA certificate was read from the card rather than configured.
    pub from_card: bool,
}

/// The configured roots. Starts with only the pinned J-LIS fingerprints and no certificates.
#[derive(Debug, Clone, Default)]
pub struct TrustStore {
    /// Operator-configured J-LIS CA certificates; each matches a pinned fingerprint.
    ca_certificates: Vec<TrustAnchor>,
    /// Anchors trusted because they were configured (test roots).
    extra_anchors: Vec<TrustAnchor>,
}

impl TrustStore {
    pub fn new() -> Self {
        TrustStore::default()
    }

    /// Adds an operator-configured J-LIS CA certificate (PEM or DER). Refused unless its
    /// SHA-256 is one of [`JLIS_SIGNING_ROOT_SHA256`].
    pub fn add_ca_certificate(&mut self, bytes: &[u8]) -> Result<(), TrustError> {
        let anchor = TrustAnchor::from_pem_or_der(bytes)?;
        let sha256 = anchor.sha256();
        if jlis_generation(&sha256).is_none() {
            return Err(TrustError::NotPinned {
                sha256_hex: hex::encode(sha256),
            });
        }
        push_unique(&mut self.ca_certificates, anchor);
        Ok(())
    }

    /// Adds a trust anchor that is trusted because it is configured (e.g. the simulated
    /// card's test root). Never use this for certificates read from a card.
    pub fn add_trust_anchor(&mut self, bytes: &[u8]) -> Result<(), TrustError> {
        let anchor = TrustAnchor::from_pem_or_der(bytes)?;
        push_unique(&mut self.extra_anchors, anchor);
        Ok(())
    }

    fn configured(&self) -> impl Iterator<Item = &TrustAnchor> {
        self.ca_certificates.iter().chain(&self.extra_anchors)
    }

    /// The configured CA certificates and trust anchors, e.g. for checking revocation data
    /// (an OCSP CertID names its issuer by key hash; a CRL is signed by it).
    pub fn anchors(&self) -> impl Iterator<Item = &TrustAnchor> {
        self.configured()
    }

    /// Whether a configured CA or anchor has the certificate's issuer key identifier, i.e.
    /// the CA certificate need not be read from the card.
    pub fn has_issuer_for(&self, cert: &SigningCertificate) -> bool {
        self.configured().any(|anchor| anchor.issued(cert))
    }

    fn label_for(&self, anchor: &TrustAnchor) -> String {
        match anchor.jlis_generation() {
            Some(generation) => jlis_label(generation),
            None => CONFIGURED_ANCHOR_LABEL.to_string(),
        }
    }

    /// Finds the issuer of `cert` (configured first, else `card_ca_der`), checks that it is
    /// trusted, that it signed `cert`, and that it is valid at `at`.
    pub fn evaluate(
        &self,
        cert: &SigningCertificate,
        card_ca_der: Option<&[u8]>,
        at: OffsetDateTime,
    ) -> Result<TrustedChain, TrustError> {
        let aki = cert
            .authority_key_id()
            .filter(|aki| !aki.is_empty())
            .ok_or(TrustError::NoAuthorityKeyId)?;
        let algorithm = check_signature_algorithm(cert)?;

        let candidates: Vec<&TrustAnchor> = self
            .configured()
            .filter(|anchor| anchor.issued(cert))
            .collect();
        if !candidates.is_empty() {
            // Two anchors could share a key identifier; the issuer is the one whose key
            // verifies the signature.
            let mut first_error = None;
            for anchor in candidates {
                match self.accept(anchor, cert, algorithm, at, false) {
                    Ok(chain) => return Ok(chain),
                    Err(e) => {
                        first_error.get_or_insert(e);
                    }
                }
            }
            return Err(first_error.unwrap_or(TrustError::UnknownIssuer {
                authority_key_id_hex: hex::encode(&aki),
            }));
        }

        let Some(card_ca_der) = card_ca_der else {
            return Err(TrustError::UnknownIssuer {
                authority_key_id_hex: hex::encode(&aki),
            });
        };
        let card_ca = TrustAnchor::from_pem_or_der(card_ca_der).map_err(|e| match e {
            TrustError::BadAnchor { detail } => TrustError::CardCaInvalid { detail },
            other => other,
        })?;
        let sha256 = card_ca.sha256();
        let pinned = jlis_generation(&sha256).is_some();
        let configured = self.extra_anchors.iter().any(|a| a.sha256() == sha256);
        if !pinned && !configured {
            return Err(TrustError::CardCaNotPinned {
                sha256_hex: hex::encode(sha256),
            });
        }
        if !card_ca.issued(cert) {
            return Err(TrustError::CardCaNotIssuer {
                authority_key_id_hex: hex::encode(&aki),
                subject_key_id_hex: hex::encode(&card_ca.subject_key_id),
            });
        }
        self.accept(&card_ca, cert, algorithm, at, true)
    }

    fn accept(
        &self,
        anchor: &TrustAnchor,
        cert: &SigningCertificate,
        algorithm: SignatureAlgorithm,
        at: OffsetDateTime,
        from_card: bool,
    ) -> Result<TrustedChain, TrustError> {
        let anchor_label = self.label_for(anchor);
        // An algorithm that does not fit the anchor's key means the anchor did not sign it.
        anchor
            .cert
            .public_key()
            .verify(algorithm, &cert.tbs, &cert.signature, EcdsaEncoding::Der)
            .map_err(|_| TrustError::IssuerSignatureInvalid {
                anchor_label: anchor_label.clone(),
            })?;
        // Found by key identifier and signed with that key, the certificate must also name
        // its issuer as the anchor names itself (RFC 5280 §6.1.3, name chaining); every
        // J-LIS generation shares one name, so this cannot mix them up.
        if cert.issuer_der != anchor.cert.subject_der {
            return Err(TrustError::IssuerNameMismatch { anchor_label });
        }
        if at < anchor.not_before() {
            return Err(TrustError::IssuerNotYetValid {
                anchor_label,
                not_before: anchor.not_before(),
            });
        }
        if at > anchor.not_after() {
            return Err(TrustError::IssuerExpired {
                anchor_label,
                not_after: anchor.not_after(),
            });
        }
        Ok(TrustedChain {
            anchor_sha256: anchor.sha256(),
            anchor_label,
            from_card,
        })
    }
}

fn push_unique(list: &mut Vec<TrustAnchor>, anchor: TrustAnchor) {
    if !list.iter().any(|a| a.sha256() == anchor.sha256()) {
        list.push(anchor);
    }
}

/// The issuer's signature algorithm, if accepted: RSA PKCS#1 v1.5 or PSS with SHA-256/384/
/// 512, ECDSA with SHA-256/384; the outer and inner identifiers must agree (RFC 5280
/// §4.1.1.2). Today's J-LIS CAs use sha256WithRSAEncryption.
fn check_signature_algorithm(cert: &SigningCertificate) -> Result<SignatureAlgorithm, TrustError> {
    cert.signature_algorithm
        .clone()
        .map_err(|oid| TrustError::UnsupportedSignatureAlgorithm { oid })
}

// ---------------------------------------------------------------------------------------
// PEM

const PEM_BEGIN: &str = "-----BEGIN ";
const PEM_DASHES: &str = "-----";

/// DER as given, or the single CERTIFICATE block of a PEM text (RFC 7468; text outside the
/// block and whitespace inside it are ignored).
fn pem_or_der(bytes: &[u8]) -> Result<Vec<u8>, String> {
    if bytes.is_empty() {
        return Err("empty input".into());
    }
    if bytes[0] == 0x30 {
        return Ok(bytes.to_vec());
    }
    let text = std::str::from_utf8(bytes)
        .map_err(|_| "neither DER (does not start with a SEQUENCE) nor PEM text".to_string())?;
    if !text.contains(PEM_BEGIN) {
        return Err("neither DER (does not start with a SEQUENCE) nor PEM text".into());
    }
    let mut certificates = Vec::new();
    let mut other_labels = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(PEM_BEGIN) {
        let after_begin = &rest[start + PEM_BEGIN.len()..];
        let label_end = after_begin
            .find(PEM_DASHES)
            .ok_or("PEM BEGIN line is not closed with -----")?;
        let label = &after_begin[..label_end];
        if label.contains('\n') {
            return Err("PEM BEGIN line is not closed with -----".into());
        }
        let body_and_more = &after_begin[label_end + PEM_DASHES.len()..];
        let end_marker = format!("-----END {label}-----");
        let body_end = body_and_more
            .find(&end_marker)
            .ok_or_else(|| format!("PEM block {label} has no END line"))?;
        let body = &body_and_more[..body_end];
        if label == "CERTIFICATE" {
            certificates.push(base64_decode(body).map_err(|e| format!("PEM CERTIFICATE: {e}"))?);
        } else {
            other_labels.push(label.to_string());
        }
        rest = &body_and_more[body_end + end_marker.len()..];
    }
    match certificates.len() {
        1 => certificates
            .pop()
            .ok_or_else(|| "no certificate".to_string()),
        0 if other_labels.is_empty() => Err("no PEM block found".into()),
        0 => Err(format!(
            "PEM holds no CERTIFICATE block (found {})",
            other_labels.join(", ")
        )),
        n => Err(format!("PEM holds {n} certificates; give exactly one")),
    }
}

fn base64_value(c: u8) -> Option<u32> {
    Some(u32::from(match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => return None,
    }))
}

/// Standard base64 with padding; ASCII whitespace anywhere is skipped.
fn base64_decode(text: &str) -> Result<Vec<u8>, String> {
    let symbols: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if symbols.is_empty() {
        return Err("empty base64 body".into());
    }
    let incomplete_quad = symbols.len() % 4;
    if incomplete_quad != 0 {
        return Err("base64 length is not a multiple of 4".into());
    }
    let mut out = Vec::with_capacity(symbols.len() / 4 * 3);
    let quads = symbols.len() / 4;
    for (index, quad) in symbols.chunks_exact(4).enumerate() {
        let last = index + 1 == quads;
        let padding = quad.iter().rev().take_while(|&&b| b == b'=').count();
        if padding > 2 || (padding > 0 && !last) {
            return Err("misplaced base64 padding".into());
        }
        let mut acc = 0u32;
        for &b in &quad[..4 - padding] {
            let v = base64_value(b)
                .ok_or_else(|| format!("invalid base64 character {:?}", char::from(b)))?;
            acc = acc << 6 | v;
        }
        acc <<= 6 * padding as u32;
        let bytes = [(acc >> 16) as u8, (acc >> 8) as u8, acc as u8];
        out.extend_from_slice(&bytes[..3 - padding]);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_decode_as_written() {
        assert_eq!(
            hex::encode(JLIS_SIGNING_ROOT_SHA256[2].1),
            "d227f6cde11d35c5252178f106f843d24651944975413b539fa2fb68dbfa365f"
        );
        assert_eq!(
            jlis_generation(&JLIS_SIGNING_ROOT_SHA256[0].1),
            Some("2015 (signca01)")
        );
        assert_eq!(jlis_generation(&[0; 32]), None);
    }

    #[test]
    fn base64() {
        assert_eq!(base64_decode("TWFu").as_deref(), Ok(&b"Man"[..]));
        assert_eq!(base64_decode("TWE=").as_deref(), Ok(&b"Ma"[..]));
        assert_eq!(base64_decode(" T Q\r\n=\t= ").as_deref(), Ok(&b"M"[..]));
        assert!(base64_decode("TWE").is_err());
        assert!(base64_decode("TW==TWFu").is_err());
        assert!(base64_decode("T===").is_err());
        assert!(base64_decode("TW*u").is_err());
        assert!(base64_decode("").is_err());
    }

    #[test]
    fn pem_selection() {
        let block = |label: &str, body: &str| {
            format!("-----BEGIN {label}-----\n{body}\n-----END {label}-----\n")
        };
        let one = format!("leading text\n{}", block("CERTIFICATE", "MAEC"));
        assert_eq!(pem_or_der(one.as_bytes()), Ok(vec![0x30, 0x01, 0x02]));
        let key = block("PRIVATE KEY", "MAEC");
        assert!(pem_or_der(key.as_bytes())
            .unwrap_err()
            .contains("PRIVATE KEY"));
        let two = format!(
            "{}{}",
            block("CERTIFICATE", "MAEC"),
            block("CERTIFICATE", "MAEC")
        );
        assert!(pem_or_der(two.as_bytes())
            .unwrap_err()
            .contains("2 certificates"));
        assert!(pem_or_der(b"-----BEGIN CERTIFICATE-----\nMAEC\n").is_err());
        assert!(pem_or_der(b"hello").is_err());
        assert!(pem_or_der(&[0xFF, 0x00]).is_err());
        assert!(pem_or_der(b"").is_err());
    }
}
