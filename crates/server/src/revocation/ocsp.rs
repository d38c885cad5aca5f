//! OCSP (RFC 6960): one request per certificate, with a fresh nonce, POSTed to a responder;
//! the answer counts only when it is a successful basic response, signed by the
//! certificate's CA or by a responder that CA certified for OCSP signing (sent in the
//! response, or configured with `--ocsp-signer`), about exactly the certificate asked for,
//! current (`thisUpdate`/`nextUpdate`), and with our nonce when the responder echoes one.

use std::time::Duration;

use der::asn1::{Null, ObjectIdentifier, OctetString};
use der::{Decode, Encode};
use sha1::Sha1;
use sha2::{Digest, Sha256, Sha384, Sha512};
use time::OffsetDateTime;
use x509_cert::ext::Extension;
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::AlgorithmIdentifierOwned;
use x509_cert::Certificate;
use x509_ocsp::{
    BasicOcspResponse, CertId, CertStatus, OcspRequest, OcspResponse, OcspResponseStatus, Request,
    TbsRequest, Version,
};

use super::fetch::{fetch, FetchError, HttpUrl};
use super::issuer::{unix, Issuer, Signed};
use super::{Problem, ProblemKind, Reason};

/// How long one exchange with a responder may take.
pub const OCSP_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest response read.
const MAX_RESPONSE: usize = 64 * 1024;
/// Clock difference allowed between the responder and this server.
pub const CLOCK_SKEW: time::Duration = time::Duration::minutes(5);
/// A response without `nextUpdate` (RFC 6960: newer information is always available) is
/// used only this soon after its `thisUpdate`.
pub const MAX_AGE_WITHOUT_NEXT_UPDATE: time::Duration = time::Duration::hours(1);

const ID_SHA1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.14.3.2.26");
const ID_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1");
const ID_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.2");
const ID_SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.3");
const ID_PKIX_OCSP_BASIC: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.1.1");
const ID_PKIX_OCSP_NONCE: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.1.2");

/// A responder from `--ocsp URL`.
#[derive(Debug, Clone)]
pub struct Responder {
    pub url: HttpUrl,
}

/// What a responder said about the certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Good,
    Revoked {
        at: OffsetDateTime,
        reason: Option<Reason>,
    },
}

fn hash(algorithm: &ObjectIdentifier, bytes: &[u8]) -> Option<Vec<u8>> {
    Some(if *algorithm == ID_SHA1 {
        Sha1::digest(bytes).to_vec()
    } else if *algorithm == ID_SHA256 {
        Sha256::digest(bytes).to_vec()
    } else if *algorithm == ID_SHA384 {
        Sha384::digest(bytes).to_vec()
    } else if *algorithm == ID_SHA512 {
        Sha512::digest(bytes).to_vec()
    } else {
        return None;
    })
}

/// The serial as a magnitude, without leading zero bytes.
fn magnitude(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    &bytes[start..]
}

/// Whether `id` names the certificate `serial` of `issuer` (under whichever hash it uses).
fn names(id: &CertId, issuer: &Issuer, serial: &[u8]) -> bool {
    let algorithm = &id.hash_algorithm.oid;
    let (Some(name), Some(key)) = (
        hash(algorithm, &issuer.subject_der),
        hash(algorithm, &issuer.key_bits),
    ) else {
        return false;
    };
    id.issuer_name_hash.as_bytes() == name.as_slice()
        && id.issuer_key_hash.as_bytes() == key.as_slice()
        && magnitude(id.serial_number.as_bytes()) == magnitude(serial)
}

/// The DER request for one certificate, with `nonce`.
pub fn request(issuer: &Issuer, serial: &[u8], nonce: &[u8]) -> Result<Vec<u8>, der::Error> {
    let cert_id = CertId {
        hash_algorithm: AlgorithmIdentifierOwned {
            oid: ID_SHA1,
            parameters: Some(Null.into()),
        },
        issuer_name_hash: OctetString::new(Sha1::digest(&issuer.subject_der).to_vec())?,
        issuer_key_hash: OctetString::new(Sha1::digest(&issuer.key_bits).to_vec())?,
        serial_number: SerialNumber::new(magnitude(serial))?,
    };
    // RFC 8954: the extension's value is the DER of an OCTET STRING holding the nonce.
    let nonce = Extension {
        extn_id: ID_PKIX_OCSP_NONCE,
        critical: false,
        extn_value: OctetString::new(OctetString::new(nonce.to_vec())?.to_der()?)?,
    };
    OcspRequest {
        tbs_request: TbsRequest {
            version: Version::V1,
            requestor_name: None,
            request_list: vec![Request {
                req_cert: cert_id,
                single_request_extensions: None,
            }],
            request_extensions: Some(vec![nonce]),
        },
        optional_signature: None,
    }
    .to_der()
}

impl Responder {
    /// Asks about certificate `serial` of `issuer`. `signers`: configured delegated
    /// responder certificates (DER).
    pub async fn ask(
        &self,
        issuer: &Issuer,
        serial: &[u8],
        signers: &[Vec<u8>],
        now: OffsetDateTime,
    ) -> Result<Answer, Problem> {
        let nonce: [u8; 16] = rand::random();
        let problem = |kind: ProblemKind, detail: String| Problem {
            kind,
            source: format!("ocsp {}", self.url),
            detail,
        };
        let body = request(issuer, serial, &nonce)
            .map_err(|e| problem(ProblemKind::ResponseInvalid, format!("request: {e}")))?;
        let bytes = fetch(
            &self.url,
            Some(("application/ocsp-request", body)),
            "application/ocsp-response",
            MAX_RESPONSE,
            OCSP_TIMEOUT,
        )
        .await
        .map_err(|e| {
            let kind = match e {
                FetchError::Status(_) => ProblemKind::ResponderError,
                FetchError::TooLarge(_) => ProblemKind::ResponseInvalid,
                _ => ProblemKind::ResponderUnreachable,
            };
            problem(kind, e.to_string())
        })?;
        evaluate(&bytes, issuer, serial, &nonce, signers, now)
            .map_err(|(kind, detail)| problem(kind, detail))
    }
}

/// Checks a response to a request for (`issuer`, `serial`) with `nonce`.
pub fn evaluate(
    bytes: &[u8],
    issuer: &Issuer,
    serial: &[u8],
    nonce: &[u8],
    signers: &[Vec<u8>],
    now: OffsetDateTime,
) -> Result<Answer, (ProblemKind, String)> {
    let invalid = |detail: String| (ProblemKind::ResponseInvalid, detail);
    let response =
        OcspResponse::from_der(bytes).map_err(|e| invalid(format!("not an OCSP response: {e}")))?;
    if response.response_status != OcspResponseStatus::Successful {
        return Err((
            ProblemKind::ResponderError,
            format!("the responder answered {:?}", response.response_status),
        ));
    }
    let response_bytes = response
        .response_bytes
        .ok_or_else(|| invalid("a successful response without a body".into()))?;
    if response_bytes.response_type != ID_PKIX_OCSP_BASIC {
        return Err(invalid("not a basic OCSP response".into()));
    }
    let der = response_bytes.response.as_bytes();
    let signed = Signed::from_der(der).map_err(|e| invalid(format!("basic response: {e}")))?;
    let basic =
        BasicOcspResponse::from_der(der).map_err(|e| invalid(format!("basic response: {e}")))?;

    // Signed by the CA itself, or by a responder it certified (sent along or configured).
    let mut refusals = Vec::new();
    let mut verified = signed.verified_by(issuer.key());
    if !verified {
        let sent = basic.certs.iter().flatten().filter_map(|c| c.to_der().ok());
        for candidate in sent.chain(signers.iter().cloned()) {
            match issuer.authorized_responder(&candidate, now) {
                Ok(key) if signed.verified_by(&key) => {
                    verified = true;
                    break;
                }
                Ok(_) => refusals.push("a responder certificate whose key did not sign it".into()),
                Err(why) => refusals.push(why),
            }
        }
    }
    if !verified {
        let why = if refusals.is_empty() {
            "it is not signed by the certificate's CA, and no responder certificate came with it"
                .to_string()
        } else {
            format!(
                "it is not signed by the certificate's CA or by a responder it certified: {}",
                refusals.join("; ")
            )
        };
        return Err((ProblemKind::ResponseSignerUntrusted, why));
    }

    let data = &basic.tbs_response_data;
    if let Some(extension) = data
        .response_extensions
        .iter()
        .flatten()
        .find(|e| e.extn_id == ID_PKIX_OCSP_NONCE)
    {
        let echoed = OctetString::from_der(extension.extn_value.as_bytes())
            .map(|o| o.as_bytes().to_vec())
            .unwrap_or_else(|_| extension.extn_value.as_bytes().to_vec());
        if echoed != nonce {
            return Err((
                ProblemKind::NonceMismatch,
                "the response carries another request's nonce (a replay?)".into(),
            ));
        }
    }

    let single = data
        .responses
        .iter()
        .find(|r| names(&r.cert_id, issuer, serial))
        .ok_or((
            ProblemKind::ResponseForAnotherCertificate,
            "the response is about another certificate".to_string(),
        ))?;

    let this_update = unix(single.this_update.0.to_unix_duration());
    if this_update > now + CLOCK_SKEW {
        return Err((
            ProblemKind::ResponseStale,
            format!(
                "thisUpdate {} is ahead of this server's clock",
                crate::revocation::text(this_update)
            ),
        ));
    }
    match single.next_update {
        Some(next) => {
            let next = unix(next.0.to_unix_duration());
            if now > next + CLOCK_SKEW {
                return Err((
                    ProblemKind::ResponseStale,
                    format!("nextUpdate {} has passed", crate::revocation::text(next)),
                ));
            }
        }
        None if now > this_update + MAX_AGE_WITHOUT_NEXT_UPDATE + CLOCK_SKEW => {
            return Err((
                ProblemKind::ResponseStale,
                format!(
                    "no nextUpdate, and thisUpdate {} is more than {} minutes old",
                    crate::revocation::text(this_update),
                    MAX_AGE_WITHOUT_NEXT_UPDATE.whole_minutes()
                ),
            ))
        }
        None => {}
    }

    match single.cert_status {
        CertStatus::Good(_) => Ok(Answer::Good),
        CertStatus::Revoked(info) => Ok(Answer::Revoked {
            at: unix(info.revocation_time.0.to_unix_duration()),
            reason: info.revocation_reason.map(Reason::from),
        }),
        CertStatus::Unknown(_) => Err((
            ProblemKind::CertificateUnknown,
            "the responder does not know the certificate".into(),
        )),
    }
}

/// A delegated responder certificate from `--ocsp-signer FILE` (PEM or DER).
pub fn read_signer(bytes: &[u8]) -> Result<Vec<u8>, String> {
    let der = super::pem_or_der(bytes, "CERTIFICATE")?;
    Certificate::from_der(&der).map_err(|e| format!("not an X.509 certificate: {e}"))?;
    Ok(der)
}
