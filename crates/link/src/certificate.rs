//! The holder's JPKI signing certificate (署名用電子証明書) as read from the card.
//!
//! The DER comes from the card, i.e. from outside: parsing is bounded in size, never panics,
//! and rejects anything that is not exactly one certificate with a key this program accepts
//! (RSA 2048–4096 bits, ECDSA P-256 or P-384; see [`crate::public_key`]). The certificate is
//! personal data (its subjectAltName carries the basic-4 information), so [`Debug`] shows
//! only non-personal fields.

use std::fmt;

use mynalink_card::{HashAlgorithm, KeyKind, SignatureAlgorithm};
use rsa::BigUint;
use sha2::{Digest, Sha256};
use thiserror::Error;
use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::ParsedExtension;
use x509_parser::prelude::FromDer;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::public_key::{certificate_signature_algorithm, EcdsaEncoding, PublicKey, VerifyError};

/// Upper bound for a certificate's DER. Real signing certificates are about 1.3–2 KB.
pub const MAX_DER_LEN: usize = 8192;

const OID_SUBJECT_ALT_NAME: &str = "2.5.29.17";

/// Extensions this program understands when they are marked critical: basicConstraints,
/// keyUsage, extendedKeyUsage, certificatePolicies (critical on the JPKI signing
/// certificate), subjectAltName, issuerAltName, and the key identifiers. Any other
/// critical extension makes a holder's certificate unusable (RFC 5280 §4.2).
const KNOWN_CRITICAL_EXTENSIONS: [&str; 8] = [
    "2.5.29.19",
    "2.5.29.15",
    "2.5.29.37",
    "2.5.29.32",
    OID_SUBJECT_ALT_NAME,
    "2.5.29.18",
    "2.5.29.35",
    "2.5.29.14",
];

/// DER content octets of `1.2.392.200149.8.5.5`; the basic-4 type-ids add one arc 1–6.
const BASIC4_OID_PREFIX: [u8; 9] = [0x2a, 0x83, 0x08, 0x8c, 0x9b, 0x55, 0x08, 0x05, 0x05];

/// Basic-4 otherName type ids, `1.2.392.200149.8.5.5.<n>`.
const OID_NAME: &str = "1.2.392.200149.8.5.5.1";
const OID_NAME_FLAGS: &str = "1.2.392.200149.8.5.5.2";
const OID_SEX: &str = "1.2.392.200149.8.5.5.3";
const OID_BIRTH_DATE: &str = "1.2.392.200149.8.5.5.4";
const OID_ADDRESS: &str = "1.2.392.200149.8.5.5.5";
const OID_ADDRESS_FLAGS: &str = "1.2.392.200149.8.5.5.6";

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CertificateError {
    #[error("the certificate is empty")]
    Empty,
    #[error("the certificate is {length} bytes; more than {max} is not accepted")]
    TooLarge { length: usize, max: usize },
    #[error("not a DER certificate: {detail}")]
    NotDer { detail: String },
    #[error("{count} bytes follow the certificate")]
    TrailingData { count: usize },
    #[error("malformed certificate: {detail}")]
    Malformed { detail: String },
    #[error("the public key is not one this program accepts (RSA 2048–4096 bits, ECDSA P-256 or P-384): {found}")]
    UnsupportedKey { found: String },
    #[error("the certificate carries no basic-4 information (no otherName 1.2.392.200149.8.5.5.x in a subjectAltName): not a JPKI signing certificate")]
    NoBasic4,
    #[error("the basic-4 information has no name (氏名, otherName 1.2.392.200149.8.5.5.1)")]
    MissingName,
    #[error("basic-4 field {field} ({oid}) is invalid: {detail}")]
    InvalidBasic4 {
        field: &'static str,
        oid: &'static str,
        detail: String,
    },
    #[error("the certificate is a CA certificate (basicConstraints cA), not a holder's signing certificate")]
    CaCertificate,
    #[error("the certificate's keyUsage does not allow signatures (digitalSignature or nonRepudiation), or allows a CA's uses")]
    KeyUsage,
    #[error("the certificate has a critical extension {oid} that this program does not know")]
    UnknownCriticalExtension { oid: String },
}

fn malformed(detail: impl Into<String>) -> CertificateError {
    CertificateError::Malformed {
        detail: detail.into(),
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SignatureError {
    #[error("the signature is {length} bytes, not the length the certificate's key gives")]
    WrongLength { length: usize },
    #[error("the signature does not verify under the certificate's public key")]
    Mismatch,
    #[error("a {algorithm} signature cannot be made with the certificate's {key} key")]
    AlgorithmDoesNotFit { algorithm: String, key: String },
}

/// Where a time stands relative to the certificate's validity period (bounds inclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validity {
    NotYetValid,
    Valid,
    Expired,
}

// ---------------------------------------------------------------------------------------
// A minimal DER TLV reader for the two places where x509-parser's view is not enough: the
// outer envelope (to tell "not DER", "truncated" and "trailing bytes" apart) and otherName
// values.

struct Tlv<'a> {
    tag: u8,
    content: &'a [u8],
    rest: &'a [u8],
}

fn read_tlv(input: &[u8]) -> Result<Tlv<'_>, String> {
    let (&tag, after_tag) = input.split_first().ok_or("no data")?;
    if tag & 0x1F == 0x1F {
        return Err(format!("tag 0x{tag:02x} uses the multi-byte form"));
    }
    let (&first, after_len) = after_tag.split_first().ok_or("no length byte")?;
    let (length, after_len) = if first < 0x80 {
        (usize::from(first), after_len)
    } else if first == 0x80 {
        return Err("indefinite length (BER, not DER)".into());
    } else {
        let count = usize::from(first & 0x7F);
        if count > 4 {
            return Err(format!("{count}-byte length field"));
        }
        let bytes = after_len.get(..count).ok_or("length field is truncated")?;
        if bytes.first() == Some(&0) {
            return Err("length is not minimally encoded".into());
        }
        let length = bytes
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        if length < 0x80 {
            return Err("length is not minimally encoded".into());
        }
        (length, &after_len[count..])
    };
    if after_len.len() < length {
        return Err(format!(
            "truncated: {length} content bytes announced, {} present",
            after_len.len()
        ));
    }
    let (content, rest) = after_len.split_at(length);
    Ok(Tlv { tag, content, rest })
}

// ---------------------------------------------------------------------------------------
// Certificate

/// A parsed certificate that owns its DER. Used for the holder's signing certificate and,
/// inside the crate, for CA certificates.
#[derive(Clone)]
pub struct SigningCertificate {
    der: Vec<u8>,
    /// Serial magnitude, leading zero bytes removed (empty for zero).
    serial: Vec<u8>,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    issuer: String,
    authority_key_id: Option<Vec<u8>>,
    pub(crate) subject_key_id: Option<Vec<u8>>,
    /// basicConstraints cA.
    pub(crate) is_ca: bool,
    /// keyUsage keyCertSign, `None` when there is no keyUsage extension.
    pub(crate) key_cert_sign: Option<bool>,
    /// keyUsage allows signing documents: digitalSignature or nonRepudiation (`None`
    /// without keyUsage), and none of a CA's uses (keyCertSign, cRLSign).
    signing_key_usage: Option<bool>,
    /// The first critical extension this program does not know, if any.
    unknown_critical: Option<String>,
    /// The issuer and subject names as encoded (DER), compared byte for byte.
    pub(crate) issuer_der: Vec<u8>,
    pub(crate) subject_der: Vec<u8>,
    sha256: [u8; 32],
    public_key: PublicKey,
    pub(crate) tbs: Vec<u8>,
    /// The algorithm of the issuer's signature, or why it is not accepted (weak, unknown,
    /// or the outer and inner algorithm identifiers disagree).
    pub(crate) signature_algorithm: Result<SignatureAlgorithm, String>,
    pub(crate) signature: Vec<u8>,
}

impl SigningCertificate {
    /// Parses the DER of one holder's signing certificate: X.509 with an accepted key, an
    /// end entity (not a CA) whose keyUsage allows signatures, and no critical extension
    /// this program does not know (RFC 5280 §4.2: such a certificate must be refused).
    pub fn parse(der: &[u8]) -> Result<Self, CertificateError> {
        let cert = Self::parse_any(der)?;
        if cert.is_ca {
            return Err(CertificateError::CaCertificate);
        }
        if cert.signing_key_usage != Some(true) {
            return Err(CertificateError::KeyUsage);
        }
        if let Some(oid) = &cert.unknown_critical {
            return Err(CertificateError::UnknownCriticalExtension { oid: oid.clone() });
        }
        Ok(cert)
    }

    /// Parses any X.509 certificate with an accepted key, CA or end entity, without the
    /// checks that make it usable as a holder's signing certificate (for inspecting CA
    /// certificates).
    pub fn parse_any(der: &[u8]) -> Result<Self, CertificateError> {
        if der.is_empty() {
            return Err(CertificateError::Empty);
        }
        if der.len() > MAX_DER_LEN {
            return Err(CertificateError::TooLarge {
                length: der.len(),
                max: MAX_DER_LEN,
            });
        }
        if der.starts_with(b"-----BEGIN") {
            return Err(CertificateError::NotDer {
                detail: "PEM text; DER bytes were expected".into(),
            });
        }
        let envelope = read_tlv(der).map_err(|detail| CertificateError::NotDer { detail })?;
        if envelope.tag != 0x30 {
            return Err(CertificateError::NotDer {
                detail: format!("starts with tag 0x{:02x}, not a SEQUENCE", envelope.tag),
            });
        }
        if !envelope.rest.is_empty() {
            return Err(CertificateError::TrailingData {
                count: envelope.rest.len(),
            });
        }

        let (rest, x509) = X509Certificate::from_der(der).map_err(|e| malformed(format!("{e}")))?;
        if !rest.is_empty() {
            // The envelope check above makes this unreachable unless the parser disagrees
            // with it about lengths; refuse rather than guess.
            return Err(CertificateError::TrailingData { count: rest.len() });
        }
        let tbs = &x509.tbs_certificate;

        let raw_serial = tbs.raw_serial();
        if raw_serial.is_empty() {
            return Err(malformed("serialNumber is an empty INTEGER"));
        }
        // The serial is read as an unsigned magnitude, as issued (a CA that forgot the
        // leading 00 of a high-bit serial still means the positive number).
        let serial: Vec<u8> = raw_serial.iter().copied().skip_while(|&b| b == 0).collect();

        let public_key = PublicKey::from_spki(x509.public_key())
            .map_err(|found| CertificateError::UnsupportedKey { found })?;
        // RFC 5280 §4.1.1.2: the outer algorithm must be the one inside the signed part.
        let signature_algorithm = if x509.signature_algorithm == tbs.signature {
            certificate_signature_algorithm(&x509.signature_algorithm)
        } else {
            Err(format!(
                "{} outside the signed part but {} inside it",
                x509.signature_algorithm.algorithm.to_id_string(),
                tbs.signature.algorithm.to_id_string()
            ))
        };

        let mut seen: Vec<String> = Vec::new();
        let mut authority_key_id = None;
        let mut subject_key_id = None;
        let mut is_ca = false;
        let mut key_cert_sign = None;
        let mut signing_key_usage = None;
        let mut unknown_critical = None;
        for ext in tbs.extensions() {
            let oid = ext.oid.to_id_string();
            if seen.contains(&oid) {
                return Err(malformed(format!("extension {oid} appears twice")));
            }
            if ext.critical && !KNOWN_CRITICAL_EXTENSIONS.contains(&oid.as_str()) {
                unknown_critical.get_or_insert_with(|| oid.clone());
            }
            match ext.parsed_extension() {
                ParsedExtension::AuthorityKeyIdentifier(aki) => {
                    authority_key_id = aki.key_identifier.as_ref().map(|k| k.0.to_vec());
                }
                ParsedExtension::SubjectKeyIdentifier(ski) => {
                    subject_key_id = Some(ski.0.to_vec());
                }
                ParsedExtension::BasicConstraints(bc) => is_ca = bc.ca,
                ParsedExtension::KeyUsage(ku) => {
                    key_cert_sign = Some(ku.key_cert_sign());
                    signing_key_usage = Some(
                        (ku.digital_signature() || ku.non_repudiation())
                            && !ku.key_cert_sign()
                            && !ku.crl_sign(),
                    );
                }
                // A broken subjectAltName only affects basic4(), which reports it there.
                ParsedExtension::ParseError { error } if oid != OID_SUBJECT_ALT_NAME => {
                    return Err(malformed(format!("extension {oid}: {error}")));
                }
                _ => {}
            }
            seen.push(oid);
        }

        Ok(SigningCertificate {
            der: der.to_vec(),
            serial,
            not_before: tbs.validity.not_before.to_datetime(),
            not_after: tbs.validity.not_after.to_datetime(),
            issuer: tbs.issuer.to_string(),
            authority_key_id,
            subject_key_id,
            is_ca,
            key_cert_sign,
            signing_key_usage,
            unknown_critical,
            issuer_der: tbs.issuer.as_raw().to_vec(),
            subject_der: tbs.subject.as_raw().to_vec(),
            sha256: Sha256::digest(der).into(),
            public_key,
            tbs: tbs.as_ref().to_vec(),
            signature_algorithm,
            signature: x509.signature_value.data.to_vec(),
        })
    }

    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// The serial number (発行番号) as an unsigned big-endian integer in lower-case hex,
    /// without leading zero bytes; "00" for zero.
    pub fn serial_hex(&self) -> String {
        if self.serial.is_empty() {
            "00".into()
        } else {
            hex::encode(&self.serial)
        }
    }

    /// The same integer in decimal.
    pub fn serial_decimal(&self) -> String {
        BigUint::from_bytes_be(&self.serial).to_string()
    }

    /// The serial's magnitude bytes (no leading zeros; empty for zero).
    pub fn serial_bytes(&self) -> &[u8] {
        &self.serial
    }

    pub fn not_before(&self) -> OffsetDateTime {
        self.not_before
    }

    pub fn not_after(&self) -> OffsetDateTime {
        self.not_after
    }

    /// The issuer DN as x509-parser renders it (RFC 4514 style). All J-LIS signing CA
    /// generations share one DN: use [`authority_key_id`](Self::authority_key_id) to tell
    /// them apart.
    pub fn issuer(&self) -> String {
        self.issuer.clone()
    }

    /// keyIdentifier of the authorityKeyIdentifier extension.
    pub fn authority_key_id(&self) -> Option<Vec<u8>> {
        self.authority_key_id.clone()
    }

    /// SHA-256 of the DER.
    pub fn sha256(&self) -> [u8; 32] {
        self.sha256
    }

    pub fn public_key(&self) -> &PublicKey {
        &self.public_key
    }

    /// The kind of the certificate's key, e.g. RSA-2048 or EC P-384.
    pub fn key_kind(&self) -> KeyKind {
        self.public_key.kind()
    }

    /// Checks a signature over `message` made with `algorithm` by the certificate's key
    /// (ECDSA as `r ‖ s`, the way a card answers).
    pub fn verify_signature(
        &self,
        algorithm: SignatureAlgorithm,
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), SignatureError> {
        self.public_key
            .verify(algorithm, message, signature, EcdsaEncoding::Fixed)
            .map_err(|e| match e {
                VerifyError::WrongLength { length } => SignatureError::WrongLength { length },
                VerifyError::Mismatch => SignatureError::Mismatch,
                VerifyError::AlgorithmDoesNotFit => SignatureError::AlgorithmDoesNotFit {
                    algorithm: algorithm.name(),
                    key: self.key_kind().name(),
                },
            })
    }

    /// Checks a signature over `message` by the certificate's key with any algorithm the key
    /// can make (RSA: PKCS#1 v1.5, then PSS, each with SHA-256/384/512; ECDSA: SHA-384, then
    /// SHA-256), and says which one verified. A signature of the wrong length for the key is
    /// refused before any is tried.
    pub fn verify_any_signature(
        &self,
        message: &[u8],
        signature: &[u8],
    ) -> Result<SignatureAlgorithm, SignatureError> {
        let key = self.key_kind();
        if signature.len() != key.signature_len() {
            return Err(SignatureError::WrongLength {
                length: signature.len(),
            });
        }
        SignatureAlgorithm::ALL
            .into_iter()
            .filter(|algorithm| algorithm.fits(key))
            .find(|&algorithm| self.verify_signature(algorithm, message, signature).is_ok())
            .ok_or(SignatureError::Mismatch)
    }

    /// Checks an RSASSA-PKCS1-v1_5 / SHA-256 signature over `message` (today's card).
    pub fn verify_sha256_signature(
        &self,
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), SignatureError> {
        self.verify_signature(
            SignatureAlgorithm::RsaPkcs1(HashAlgorithm::Sha256),
            message,
            signature,
        )
    }

    pub fn is_valid_at(&self, at: OffsetDateTime) -> Validity {
        if at < self.not_before {
            Validity::NotYetValid
        } else if at > self.not_after {
            Validity::Expired
        } else {
            Validity::Valid
        }
    }

    /// Whole days from `at` until notAfter, rounded down: 0 on the last day, negative once
    /// expired (−1 during the first day after).
    pub fn days_left(&self, at: OffsetDateTime) -> i64 {
        (self.not_after - at).whole_seconds().div_euclid(86_400)
    }

    /// The basic-4 information (基本4情報) from the subjectAltName otherNames, found by OID.
    pub fn basic4(&self) -> Result<Basic4, CertificateError> {
        let (_, x509) =
            X509Certificate::from_der(&self.der).map_err(|e| malformed(format!("{e}")))?;
        let mut san = None;
        for ext in x509.tbs_certificate.extensions() {
            if ext.oid.to_id_string() != OID_SUBJECT_ALT_NAME {
                continue;
            }
            if let ParsedExtension::ParseError { error } = ext.parsed_extension() {
                return Err(malformed(format!("subjectAltName: {error}")));
            }
            san = Some(ext.value);
        }
        let san = san.ok_or(CertificateError::NoBasic4)?;

        // The GeneralNames are read here rather than through x509-parser's GeneralName:
        // that one does not check the type-id's tag (any TLV decodes as an OID) and does
        // not return the otherName's raw encoding.
        let names = read_tlv(san).map_err(|e| malformed(format!("subjectAltName: {e}")))?;
        if names.tag != 0x30 || !names.rest.is_empty() {
            return Err(malformed("subjectAltName is not one SEQUENCE"));
        }
        let mut raw = RawBasic4::default();
        let mut rest = names.content;
        while !rest.is_empty() {
            let name = read_tlv(rest).map_err(|e| malformed(format!("subjectAltName: {e}")))?;
            rest = name.rest;
            // otherName is [0] IMPLICIT SEQUENCE { type-id OID, value [0] EXPLICIT ANY }.
            if name.tag != 0xA0 {
                continue;
            }
            let type_id = read_tlv(name.content)
                .map_err(|e| malformed(format!("subjectAltName otherName: {e}")))?;
            if type_id.tag != 0x06 {
                return Err(malformed(format!(
                    "subjectAltName otherName type-id has tag 0x{:02x}, not an OID",
                    type_id.tag
                )));
            }
            if let Some(slot) = raw.slot(type_id.content) {
                let (field, oid) = slot.0;
                if slot.1.is_some() {
                    return Err(invalid(field, oid, "appears more than once"));
                }
                *slot.1 = Some(other_name_utf8(type_id.rest).map_err(|d| invalid(field, oid, d))?);
            }
        }
        raw.into_basic4()
    }
}

/// Reads an otherName value: what follows the type-id inside the otherName, i.e.
/// `A0 len 0C len <UTF-8>` (`[0] EXPLICIT UTF8String`). x509-parser's
/// `GeneralName::OtherName` hands out these same bytes, wrapper included.
fn other_name_utf8(value: &[u8]) -> Result<String, String> {
    let wrapper = read_tlv(value)?;
    if wrapper.tag != 0xA0 {
        return Err(format!(
            "value starts with tag 0x{:02x}, expected [0] EXPLICIT (0xa0)",
            wrapper.tag
        ));
    }
    if !wrapper.rest.is_empty() {
        return Err("bytes follow the value".into());
    }
    let inner = read_tlv(wrapper.content)?;
    if inner.tag != 0x0C {
        return Err(format!(
            "value has tag 0x{:02x}, expected UTF8String (0x0c)",
            inner.tag
        ));
    }
    if !inner.rest.is_empty() {
        return Err("more than one value inside [0]".into());
    }
    String::from_utf8(inner.content.to_vec()).map_err(|_| "value is not valid UTF-8".to_string())
}

fn invalid(field: &'static str, oid: &'static str, detail: impl Into<String>) -> CertificateError {
    CertificateError::InvalidBasic4 {
        field,
        oid,
        detail: detail.into(),
    }
}

type FieldId = (&'static str, &'static str);

const NAME: FieldId = ("name", OID_NAME);
const NAME_FLAGS: FieldId = ("name_substitute_flags", OID_NAME_FLAGS);
const SEX: FieldId = ("sex", OID_SEX);
const BIRTH_DATE: FieldId = ("birth_date", OID_BIRTH_DATE);
const ADDRESS: FieldId = ("address", OID_ADDRESS);
const ADDRESS_FLAGS: FieldId = ("address_substitute_flags", OID_ADDRESS_FLAGS);

/// The six otherName strings before interpretation; wiped when dropped.
#[derive(Default, Zeroize, ZeroizeOnDrop)]
struct RawBasic4 {
    name: Option<String>,
    name_flags: Option<String>,
    sex: Option<String>,
    birth_date: Option<String>,
    address: Option<String>,
    address_flags: Option<String>,
}

impl RawBasic4 {
    /// The field for an otherName type-id given as OID content octets.
    fn slot(&mut self, oid_content: &[u8]) -> Option<(FieldId, &mut Option<String>)> {
        let arc = match oid_content.split_last() {
            Some((&last, prefix)) if prefix == BASIC4_OID_PREFIX => last,
            _ => return None,
        };
        Some(match arc {
            1 => (NAME, &mut self.name),
            2 => (NAME_FLAGS, &mut self.name_flags),
            3 => (SEX, &mut self.sex),
            4 => (BIRTH_DATE, &mut self.birth_date),
            5 => (ADDRESS, &mut self.address),
            6 => (ADDRESS_FLAGS, &mut self.address_flags),
            _ => return None,
        })
    }

    fn is_empty(&self) -> bool {
        [
            &self.name,
            &self.name_flags,
            &self.sex,
            &self.birth_date,
            &self.address,
            &self.address_flags,
        ]
        .iter()
        .all(|field| field.is_none())
    }

    fn into_basic4(mut self) -> Result<Basic4, CertificateError> {
        if self.is_empty() {
            return Err(CertificateError::NoBasic4);
        }
        let name = self.name.take().ok_or(CertificateError::MissingName)?;
        if name.is_empty() {
            return Err(invalid(NAME.0, NAME.1, "empty"));
        }
        let sex = self.sex.as_deref().map(Sex::from_code).transpose()?;
        let birth_date = self
            .birth_date
            .as_deref()
            .map(BirthDate::from_code)
            .transpose()?;
        Ok(Basic4 {
            name,
            name_substitute_flags: self.name_flags.take(),
            sex,
            birth_date,
            address: self.address.take(),
            address_substitute_flags: self.address_flags.take(),
        })
    }
}

impl fmt::Debug for SigningCertificate {
    // The DER and the subject carry personal data; show only what identifies the certificate.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningCertificate")
            .field("serial", &self.serial_hex())
            .field("issuer", &self.issuer)
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .field("sha256", &hex::encode(self.sha256))
            .finish_non_exhaustive()
    }
}

impl PartialEq for SigningCertificate {
    fn eq(&self, other: &Self) -> bool {
        self.der == other.der
    }
}

impl Eq for SigningCertificate {}

// ---------------------------------------------------------------------------------------
// Basic-4 information

/// 基本4情報 from the signing certificate. Personal data: not printed by `Debug`, not
/// serialisable, wiped from memory when dropped.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct Basic4 {
    /// 氏名; family and given name separated by U+3000.
    pub name: String,
    /// 氏名代替文字の使用位置情報: one `0`/`1` per name character (`1` = substitute character).
    pub name_substitute_flags: Option<String>,
    pub sex: Option<Sex>,
    pub birth_date: Option<BirthDate>,
    /// 住所, from the prefecture on.
    pub address: Option<String>,
    /// 住所代替文字の使用位置情報.
    pub address_substitute_flags: Option<String>,
}

impl Basic4 {
    /// Whether the name or address contains substitute characters (外字 replaced), which the
    /// holder may need to know about.
    pub fn uses_substitute_characters(&self) -> bool {
        [&self.name_substitute_flags, &self.address_substitute_flags]
            .into_iter()
            .flatten()
            .any(|flags| flags.contains('1'))
    }
}

impl fmt::Debug for Basic4 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Basic4 { .. redacted }")
    }
}

/// 性別 as coded in the certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Sex {
    /// "1"
    Male,
    /// "2"
    Female,
    /// "3"
    Unknown,
}

impl Sex {
    fn from_code(code: &str) -> Result<Sex, CertificateError> {
        match code {
            "1" => Ok(Sex::Male),
            "2" => Ok(Sex::Female),
            "3" => Ok(Sex::Unknown),
            _ => Err(invalid(SEX.0, SEX.1, "expected \"1\", \"2\" or \"3\"")),
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Sex::Male => "1",
            Sex::Female => "2",
            Sex::Unknown => "3",
        }
    }

    pub fn name_ja(self) -> &'static str {
        match self {
            Sex::Male => "男",
            Sex::Female => "女",
            Sex::Unknown => "不明",
        }
    }
}

impl Zeroize for Sex {
    // A fieldless enum has no bytes of its own to wipe beyond its discriminant; the
    // enclosing Option is wiped bytewise by zeroize.
    fn zeroize(&mut self) {
        *self = Sex::Unknown;
    }
}

/// The era digit of the birth date. The date itself is Gregorian; the era is informative.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Era {
    /// "0"
    Unknown,
    /// "1" 明治
    Meiji,
    /// "2" 大正
    Taisho,
    /// "3" 昭和
    Showa,
    /// "4" 平成
    Heisei,
    /// "5" 令和
    Reiwa,
}

impl Era {
    fn from_digit(d: u8) -> Option<Era> {
        Some(match d {
            0 => Era::Unknown,
            1 => Era::Meiji,
            2 => Era::Taisho,
            3 => Era::Showa,
            4 => Era::Heisei,
            5 => Era::Reiwa,
            _ => return None,
        })
    }

    pub fn digit(self) -> u8 {
        match self {
            Era::Unknown => 0,
            Era::Meiji => 1,
            Era::Taisho => 2,
            Era::Showa => 3,
            Era::Heisei => 4,
            Era::Reiwa => 5,
        }
    }

    pub fn name_ja(self) -> &'static str {
        match self {
            Era::Unknown => "不明",
            Era::Meiji => "明治",
            Era::Taisho => "大正",
            Era::Showa => "昭和",
            Era::Heisei => "平成",
            Era::Reiwa => "令和",
        }
    }
}

impl Zeroize for Era {
    fn zeroize(&mut self) {
        *self = Era::Unknown;
    }
}

/// 生年月日 from `EYYYYMMDD`: era digit, then the Gregorian date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Zeroize)]
pub struct BirthDate {
    pub era: Era,
    pub year: u16,
    pub month: u8,
    pub day: u8,
}

impl BirthDate {
    fn from_code(code: &str) -> Result<BirthDate, CertificateError> {
        let bad = |detail: &str| invalid(BIRTH_DATE.0, BIRTH_DATE.1, detail);
        let bytes = code.as_bytes();
        if bytes.len() != 9 || !bytes.iter().all(u8::is_ascii_digit) {
            return Err(bad("expected 9 digits EYYYYMMDD"));
        }
        let number = |range: std::ops::Range<usize>| {
            bytes[range]
                .iter()
                .fold(0u16, |acc, &b| acc * 10 + u16::from(b - b'0'))
        };
        let era = Era::from_digit(bytes[0] - b'0').ok_or_else(|| bad("era digit is not 0–5"))?;
        let year = number(1..5);
        // Both are at most 99 after two digits.
        let month = number(5..7) as u8;
        let day = number(7..9) as u8;
        let date = BirthDate {
            era,
            year,
            month,
            day,
        };
        if year == 0 || date.to_date().is_none() {
            return Err(bad("not a valid Gregorian date"));
        }
        Ok(date)
    }

    /// The date as a calendar date.
    pub fn to_date(&self) -> Option<time::Date> {
        let month = time::Month::try_from(self.month).ok()?;
        time::Date::from_calendar_date(i32::from(self.year), month, self.day).ok()
    }
}

impl fmt::Display for BirthDate {
    /// ISO 8601, e.g. `1990-01-02`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tlv_reader_rejects_non_der_lengths() {
        assert!(read_tlv(&[0x30, 0x80, 0, 0]).is_err());
        assert!(read_tlv(&[0x30, 0x81, 0x05, 1, 2, 3, 4, 5]).is_err());
        assert!(read_tlv(&[0x30, 0x82, 0x00, 0x80]).is_err());
        assert!(read_tlv(&[0x30, 0x03, 1, 2]).is_err());
        assert!(read_tlv(&[0x1F, 0x01, 0x00]).is_err());
        let t = read_tlv(&[0x04, 0x01, 0xAA, 0xBB]).expect("tlv");
        assert_eq!((t.tag, t.content, t.rest), (0x04, &[0xAA][..], &[0xBB][..]));
    }

    #[test]
    fn other_name_value_requires_the_explicit_wrapper() {
        let mut ok = vec![0xA0, 0x05, 0x0C, 0x03];
        ok.extend_from_slice("試".as_bytes());
        assert_eq!(other_name_utf8(&ok).as_deref(), Ok("試"));
        // Bare UTF8String without [0].
        assert!(other_name_utf8(&[0x0C, 0x01, b'1']).is_err());
        // PrintableString inside [0].
        assert!(other_name_utf8(&[0xA0, 0x03, 0x13, 0x01, b'1']).is_err());
        // Two values inside [0].
        assert!(other_name_utf8(&[0xA0, 0x06, 0x0C, 0x01, b'1', 0x0C, 0x01, b'2']).is_err());
        // Trailing bytes after [0].
        assert!(other_name_utf8(&[0xA0, 0x03, 0x0C, 0x01, b'1', 0x00]).is_err());
        // Invalid UTF-8.
        assert!(other_name_utf8(&[0xA0, 0x03, 0x0C, 0x01, 0xFF]).is_err());
        assert!(other_name_utf8(&[]).is_err());
    }

    #[test]
    fn basic4_oid_prefix_matches_the_dotted_oids() {
        use x509_parser::der_parser::oid::Oid;
        for (n, dotted) in [
            (1u8, OID_NAME),
            (2, OID_NAME_FLAGS),
            (3, OID_SEX),
            (4, OID_BIRTH_DATE),
            (5, OID_ADDRESS),
            (6, OID_ADDRESS_FLAGS),
        ] {
            let mut content = BASIC4_OID_PREFIX.to_vec();
            content.push(n);
            assert_eq!(Oid::new(content.into()).to_id_string(), dotted);
        }
    }

    #[test]
    fn birth_dates() {
        let d = BirthDate::from_code("419900102").expect("date");
        assert_eq!((d.era, d.year, d.month, d.day), (Era::Heisei, 1990, 1, 2));
        assert_eq!(d.to_string(), "1990-01-02");
        assert!(BirthDate::from_code("019990229").is_err()); // not a leap year
        assert!(BirthDate::from_code("520000229").is_ok()); // leap year
        assert!(BirthDate::from_code("619900102").is_err()); // era 6
        assert!(BirthDate::from_code("41990010").is_err());
        assert!(BirthDate::from_code("4199001022").is_err());
        assert!(BirthDate::from_code("41990130a").is_err());
        assert!(BirthDate::from_code("419901301").is_err()); // month 13
        assert!(BirthDate::from_code("400000101").is_err()); // year 0
        assert!(BirthDate::from_code("４19900102").is_err());
    }

    #[test]
    fn sex_codes() {
        assert_eq!(Sex::from_code("1"), Ok(Sex::Male));
        assert_eq!(Sex::from_code("2"), Ok(Sex::Female));
        assert_eq!(Sex::from_code("3"), Ok(Sex::Unknown));
        assert!(Sex::from_code("0").is_err());
        assert!(Sex::from_code("").is_err());
        assert!(Sex::from_code("12").is_err());
    }
}
