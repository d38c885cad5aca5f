//! `POST /v1/bindings`: the checks a first-stage submission passes before its binding is
//! stored.
//!
//! Order matters for what a caller learns: nothing about the license record is revealed
//! until the statement is shown to be signed by a trusted certificate for the
//! authenticated terminal. A repeat of an accepted statement is answered before the
//! freshness check, so that a terminal's outbox can retry long after signing.
//!
//! Every decision is audited (code, terminal, license number, time). Failures that point
//! at forgery or probing are counted per terminal and per license in a sliding window;
//! past the threshold a subject is refused with `rate_limited` and flagged for review
//! (§8). Request content is never stored: a rejected submission leaves only its audit row
//! and its failure count, and an accepted one only the binding's identifiers.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use mynalink_link::api::{BindingAccepted, BindingRequest, LinkedVia};
use mynalink_link::certificate::{SigningCertificate, Validity, MAX_DER_LEN};
use mynalink_link::license::LicenseNumber;
use mynalink_link::statement::{format_time, Statement};
use mynalink_link::trust::TrustStore;
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};

use crate::code::{Code, Rejection};
use crate::identity::{self, IdentityMatch};
use crate::store::{
    AuditEntry, Binding, FailureCount, IdentityCheck, InsertOutcome, NewBinding, Operation, Store,
    StoreError, SubjectKind,
};

/// Upper bound for the canonical statement; a real one is about 600 bytes.
pub const MAX_STATEMENT_LEN: usize = 4096;
/// RSA-4096 at most; JPKI signatures are 256 bytes.
pub const MAX_SIGNATURE_LEN: usize = 512;
/// Longest authenticated terminal id accepted.
pub const MAX_TERMINAL_ID_LEN: usize = 128;

/// Where a window reaching before the representable dates starts.
const EARLIEST: OffsetDateTime = time::macros::datetime!(0001-01-01 00:00:00 UTC);

/// §8 limits: failures (see [`Code::counts_as_abuse`]) allowed per subject in the window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AbusePolicy {
    pub window: Duration,
    pub max_failures_per_terminal: u32,
    pub max_failures_per_license: u32,
}

impl Default for AbusePolicy {
    fn default() -> Self {
        AbusePolicy {
            window: Duration::hours(1),
            max_failures_per_terminal: 20,
            max_failures_per_license: 5,
        }
    }
}

#[derive(Debug, Clone)]
pub struct SubmissionConfig {
    /// Roots the signing certificate must chain to: the pinned J-LIS fingerprints, plus
    /// test roots only where configured.
    pub trust: TrustStore,
    /// The key terminals seal certificates to (their outboxes must not hold basic-4 in the
    /// clear); without it only plain certificates are accepted.
    pub seal_key: Option<SealKey>,
    /// How old a statement may be. Long enough for a terminal's outbox to deliver a
    /// statement signed while the backend was unreachable.
    pub freshness_window: Duration,
    /// How far a statement's time may be ahead of the server's clock.
    pub future_tolerance: Duration,
    pub abuse: AbusePolicy,
    /// How long Mynaportal's card-info basic-4 waits for the second-stage signature.
    pub second_stage_ttl: Duration,
    /// The key the card-info basic-4 is hashed with (`--basic4-key`); without it the
    /// second stage is refused.
    pub basic4_key: Option<crate::basic4_key::Basic4Key>,
}

impl SubmissionConfig {
    pub fn new(trust: TrustStore) -> Self {
        SubmissionConfig {
            trust,
            seal_key: None,
            freshness_window: Duration::hours(72),
            future_tolerance: Duration::minutes(5),
            abuse: AbusePolicy::default(),
            second_stage_ttl: Duration::minutes(30),
            basic4_key: None,
        }
    }
}

/// The backend's private key for sealed certificates; never printed.
#[derive(Clone)]
pub struct SealKey(pub std::sync::Arc<rsa::RsaPrivateKey>);

impl std::fmt::Debug for SealKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealKey(..)")
    }
}

/// The certificate DER from a request: sent as is, or sealed to this backend's key.
fn certificate_der(
    config: &SubmissionConfig,
    request: &BindingRequest,
    statement_bytes: &[u8],
) -> Result<Vec<u8>, Rejection> {
    match (&request.certificate, &request.sealed_certificate) {
        (Some(plain), None) => decode("certificate", plain, MAX_DER_LEN),
        (None, Some(sealed)) => {
            let key = config.seal_key.as_ref().ok_or_else(|| {
                Rejection::with_detail(
                    Code::MalformedRequest,
                    "sealed certificates are not accepted by this server",
                )
            })?;
            let sealed = mynalink_link::seal::SealedBox::from_json(sealed).map_err(|e| {
                Rejection::with_detail(Code::MalformedRequest, format!("sealed_certificate: {e}"))
            })?;
            let aad = mynalink_link::outbox::certificate_aad(statement_bytes);
            let der = mynalink_link::seal::open(&key.0, &sealed, &aad).map_err(|e| {
                Rejection::with_detail(Code::MalformedRequest, format!("sealed_certificate: {e}"))
            })?;
            if der.len() > MAX_DER_LEN {
                return Err(Rejection::with_detail(
                    Code::MalformedRequest,
                    "sealed_certificate: too large",
                ));
            }
            Ok(der.to_vec())
        }
        _ => Err(Rejection::with_detail(
            Code::MalformedRequest,
            "exactly one of certificate and sealed_certificate is required",
        )),
    }
}

/// A stored binding: 201 when `created`, 200 for the same statement again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub created: bool,
    pub body: BindingAccepted,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Accepted(Accepted),
    Rejected(Rejection),
}

impl Outcome {
    pub fn code(&self) -> Code {
        match self {
            Outcome::Accepted(a) if a.created => Code::Created,
            Outcome::Accepted(_) => Code::Repeated,
            Outcome::Rejected(r) => r.code,
        }
    }

    pub fn http_status(&self) -> u16 {
        self.code().http_status()
    }
}

/// What the checks decided, before anything is written.
enum Verdict {
    Reject(Rejection),
    Repeated(Box<Binding>),
    Store(Box<NewBinding>),
}

/// Checks one submission from `terminal_id` (as authenticated by the transport) at `now`
/// and stores its binding if every check passes. `Err` only for storage failures.
pub fn submit(
    store: &mut Store,
    config: &SubmissionConfig,
    request: &BindingRequest,
    terminal_id: &str,
    now: OffsetDateTime,
) -> Result<Outcome, StoreError> {
    let now_text = format_time(now);
    let (window_start, mut audit) = opening(config, now);

    if terminal_id.is_empty()
        || terminal_id.len() > MAX_TERMINAL_ID_LEN
        || terminal_id.chars().any(char::is_control)
    {
        // Not a terminal the transport could have authenticated: nothing to count against.
        let rejection = Rejection::with_detail(
            Code::MalformedRequest,
            "the authenticated terminal id is empty, too long or has control characters",
        );
        return reject(store, config, audit, rejection, &window_start);
    }
    audit.terminal_id = Some(terminal_id.to_string());

    if let Some(rejection) = terminal_limited(store, config, terminal_id, &window_start)? {
        return reject(store, config, audit, rejection, &window_start);
    }

    let verdict = evaluate(
        store,
        config,
        request,
        terminal_id,
        now,
        &now_text,
        &window_start,
        &mut audit,
    )?;
    match verdict {
        Verdict::Reject(rejection) => reject(store, config, audit, rejection, &window_start),
        Verdict::Repeated(binding) => {
            audit.code = Code::Repeated;
            audit.binding_id = Some(binding.binding_id.clone());
            store.record_decision(&audit, &[], &window_start)?;
            Ok(Outcome::Accepted(accepted(false, &binding)))
        }
        Verdict::Store(new) => {
            audit.code = Code::Created;
            audit.binding_id = Some(new.binding_id.clone());
            match store.insert_binding(&new, &audit)? {
                InsertOutcome::Created(binding) => Ok(Outcome::Accepted(accepted(true, &binding))),
                // The checks above saw neither; another request got there in between.
                InsertOutcome::Repeated(binding) => {
                    audit.code = Code::Repeated;
                    audit.binding_id = Some(binding.binding_id.clone());
                    store.record_decision(&audit, &[], &window_start)?;
                    Ok(Outcome::Accepted(accepted(false, &binding)))
                }
                InsertOutcome::StatementReused(_) => {
                    audit.binding_id = None;
                    reject(
                        store,
                        config,
                        audit,
                        Rejection::new(Code::StatementReused),
                        &window_start,
                    )
                }
                InsertOutcome::AlreadyLinked(binding) => {
                    audit.binding_id = None;
                    reject(
                        store,
                        config,
                        audit,
                        already_linked(&binding),
                        &window_start,
                    )
                }
            }
        }
    }
}

/// Where the rate-limit window that ends `now` starts.
pub(crate) fn window_start(config: &SubmissionConfig, now: OffsetDateTime) -> String {
    format_time(now.checked_sub(config.abuse.window).unwrap_or(EARLIEST))
}

/// The start of the rate-limit window and a fresh audit entry, as both entry points begin.
fn opening(config: &SubmissionConfig, now: OffsetDateTime) -> (String, AuditEntry) {
    let window_start = window_start(config, now);
    let audit = AuditEntry {
        at: format_time(now),
        operation: Operation::Submit,
        code: Code::MalformedRequest,
        terminal_id: None,
        license_number: None,
        binding_id: None,
    };
    (window_start, audit)
}

/// `Some(rate_limited)` when the license failed too often within the window (both stages
/// count against it).
pub(crate) fn license_limited(
    store: &mut Store,
    config: &SubmissionConfig,
    license: &str,
    window_start: &str,
) -> Result<Option<Rejection>, StoreError> {
    let failures = store.failures_since(SubjectKind::License, license, window_start)?;
    Ok(
        (failures >= config.abuse.max_failures_per_license).then(|| {
            Rejection::with_detail(
                Code::RateLimited,
                "too many failed attempts for this license number",
            )
        }),
    )
}

/// `Some(rate_limited)` when the terminal failed too often within the window.
fn terminal_limited(
    store: &mut Store,
    config: &SubmissionConfig,
    terminal_id: &str,
    window_start: &str,
) -> Result<Option<Rejection>, StoreError> {
    let failures = store.failures_since(SubjectKind::Terminal, terminal_id, window_start)?;
    Ok(
        (failures >= config.abuse.max_failures_per_terminal).then(|| {
            Rejection::with_detail(
                Code::RateLimited,
                "too many failed submissions from this terminal",
            )
        }),
    )
}

/// A body that is not a [`BindingRequest`] at all (not JSON, wrong shape): audited and
/// counted against the terminal like any other `malformed_request`, so that a terminal
/// sending garbage meets the same rate limit as one sending forged statements.
pub fn reject_unreadable(
    store: &mut Store,
    config: &SubmissionConfig,
    terminal_id: &str,
    detail: String,
    now: OffsetDateTime,
) -> Result<Outcome, StoreError> {
    let (window_start, mut audit) = opening(config, now);
    if !terminal_id.is_empty()
        && terminal_id.len() <= MAX_TERMINAL_ID_LEN
        && !terminal_id.chars().any(char::is_control)
    {
        audit.terminal_id = Some(terminal_id.to_string());
        if let Some(rejection) = terminal_limited(store, config, terminal_id, &window_start)? {
            return reject(store, config, audit, rejection, &window_start);
        }
    }
    let rejection = Rejection::with_detail(Code::MalformedRequest, detail);
    reject(store, config, audit, rejection, &window_start)
}

fn accepted(created: bool, binding: &Binding) -> Accepted {
    Accepted {
        created,
        body: BindingAccepted {
            binding_id: binding.binding_id.clone(),
            license_number: binding.license_number.clone(),
            certificate_serial: binding.certificate_serial.clone(),
            linked_at: binding.linked_at.clone(),
        },
    }
}

fn already_linked(binding: &Binding) -> Rejection {
    let mut rejection = Rejection::new(Code::AlreadyLinked);
    rejection.linked_via = Some(binding.linked_via);
    rejection.detail = Some(match binding.linked_via {
        LinkedVia::Counter => "linked at a license center".to_string(),
        LinkedVia::OneStop => "linked by the address-change one-stop start procedure".to_string(),
    });
    rejection
}

/// Audits a rejection and, for failures that count, charges the terminal and the license.
fn reject(
    store: &mut Store,
    config: &SubmissionConfig,
    mut audit: AuditEntry,
    rejection: Rejection,
    window_start: &str,
) -> Result<Outcome, StoreError> {
    audit.code = rejection.code;
    let mut failures = Vec::new();
    if rejection.code.counts_as_abuse() {
        if let Some(terminal) = audit.terminal_id.as_deref() {
            failures.push(FailureCount {
                kind: SubjectKind::Terminal,
                subject: terminal,
                threshold: config.abuse.max_failures_per_terminal,
            });
        }
        if let Some(license) = audit.license_number.as_deref() {
            failures.push(FailureCount {
                kind: SubjectKind::License,
                subject: license,
                threshold: config.abuse.max_failures_per_license,
            });
        }
    }
    store.record_decision(&audit, &failures, window_start)?;
    Ok(Outcome::Rejected(rejection))
}

fn decode(field: &str, text: &str, max: usize) -> Result<Vec<u8>, Rejection> {
    // Bound the work before decoding: base64 turns 3 bytes into 4 characters.
    if text.len() > max.div_ceil(3) * 4 {
        return Err(Rejection::with_detail(
            Code::MalformedRequest,
            format!("{field} is longer than {max} bytes"),
        ));
    }
    let bytes = BASE64.decode(text.as_bytes()).map_err(|e| {
        Rejection::with_detail(
            Code::MalformedRequest,
            format!("{field} is not standard base64: {e}"),
        )
    })?;
    if bytes.is_empty() {
        return Err(Rejection::with_detail(
            Code::MalformedRequest,
            format!("{field} is empty"),
        ));
    }
    if bytes.len() > max {
        return Err(Rejection::with_detail(
            Code::MalformedRequest,
            format!("{field} is longer than {max} bytes"),
        ));
    }
    Ok(bytes)
}

macro_rules! check {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(rejection) => return Ok(Verdict::Reject(rejection)),
        }
    };
}

#[allow(clippy::too_many_arguments)]
fn evaluate(
    store: &mut Store,
    config: &SubmissionConfig,
    request: &BindingRequest,
    terminal_id: &str,
    now: OffsetDateTime,
    now_text: &str,
    window_start: &str,
    audit: &mut AuditEntry,
) -> Result<Verdict, StoreError> {
    let statement_bytes = check!(decode("statement", &request.statement, MAX_STATEMENT_LEN));
    let signature = check!(decode("signature", &request.signature, MAX_SIGNATURE_LEN));
    let certificate_der = check!(certificate_der(config, request, &statement_bytes));
    let ca_der = match &request.ca_certificate {
        Some(text) => Some(check!(decode("ca_certificate", text, MAX_DER_LEN))),
        None => None,
    };

    let statement = check!(Statement::from_canonical_bytes(&statement_bytes)
        .map_err(|e| Rejection::with_detail(Code::StatementInvalid, e)));
    let statement_time = check!(statement
        .time()
        .map_err(|e| Rejection::with_detail(Code::StatementInvalid, format!("time: {e}"))));

    // The client writes UTC with whole seconds; anything else did not come from it.
    if statement_time
        .checked_to_offset(time::UtcOffset::UTC)
        .map(format_time)
        .as_deref()
        != Some(statement.time.as_str())
    {
        return Ok(Verdict::Reject(Rejection::with_detail(
            Code::StatementInvalid,
            "time is not RFC 3339 UTC with whole seconds (e.g. 2026-11-26T09:00:00Z)",
        )));
    }

    let license = check!(canonical_license_number(&statement.license_number));
    audit.license_number = Some(license.as_str().to_string());
    if let Some(rejection) = license_limited(store, config, license.as_str(), window_start)? {
        return Ok(Verdict::Reject(rejection));
    }

    let certificate = check!(SigningCertificate::parse(&certificate_der)
        .map_err(|e| Rejection::with_detail(Code::CertificateInvalid, e.to_string())));
    check!(statement_names_certificate(&statement, &certificate));
    check!(verify_signed_statement(
        config,
        &certificate,
        &statement_bytes,
        &signature,
        ca_der.as_deref(),
        statement_time
    ));
    if statement.terminal_id != terminal_id {
        return Ok(Verdict::Reject(Rejection::with_detail(
            Code::TerminalMismatch,
            "the statement was signed for another terminal",
        )));
    }

    let statement_sha256 = hex::encode(Sha256::digest(&statement_bytes));
    if let Some(existing) = store.binding_by_statement(&statement_sha256)? {
        return Ok(if existing.is_active() {
            Verdict::Repeated(Box::new(existing))
        } else {
            Verdict::Reject(Rejection::new(Code::StatementReused))
        });
    }

    if now
        .checked_sub(config.freshness_window)
        .is_some_and(|oldest| statement_time < oldest)
    {
        return Ok(Verdict::Reject(Rejection::with_detail(
            Code::StatementStale,
            format!(
                "signed at {}, more than {} hours ago",
                statement.time,
                config.freshness_window.whole_hours()
            ),
        )));
    }
    if now
        .checked_add(config.future_tolerance)
        .is_some_and(|latest| statement_time > latest)
    {
        return Ok(Verdict::Reject(Rejection::with_detail(
            Code::StatementStale,
            format!("signed at {}, ahead of the server's clock", statement.time),
        )));
    }

    let Some(stored) = store.license(license.as_str())? else {
        return Ok(Verdict::Reject(Rejection::new(Code::LicenseNotFound)));
    };
    let record = &stored.record;
    if !record.holding.can_link() {
        return Ok(Verdict::Reject(Rejection::with_detail(
            Code::NotEligible,
            "the holder has neither a My Number card with license information nor one with \
             driving-history information",
        )));
    }

    let identity_check = {
        // The basic-4 lives only in this block; Basic4 wipes itself when dropped.
        let basic4 = check!(certificate
            .basic4()
            .map_err(|e| Rejection::with_detail(Code::CertificateInvalid, e.to_string())));
        match identity::compare(&basic4, &record.name, &record.birth_date) {
            IdentityMatch::Matches => IdentityCheck::Automatic,
            IdentityMatch::NeedsConfirmation if request.staff_confirmed_identity => {
                IdentityCheck::StaffConfirmed
            }
            IdentityMatch::NeedsConfirmation => {
                return Ok(Verdict::Reject(Rejection::with_detail(
                    Code::IdentityNeedsConfirmation,
                    "the certificate's name uses substitute characters; resend with \
                     staff_confirmed_identity after checking the holder",
                )))
            }
            IdentityMatch::Mismatch(field) => {
                return Ok(Verdict::Reject(Rejection::with_detail(
                    Code::IdentityMismatch,
                    format!("{} differs", field.as_str()),
                )))
            }
        }
    };

    if let Some(active) = store.active_binding(license.as_str())? {
        // Stored by a concurrent request with this very statement since the check above.
        if active.statement_sha256.as_deref() == Some(statement_sha256.as_str()) {
            return Ok(Verdict::Repeated(Box::new(active)));
        }
        return Ok(Verdict::Reject(already_linked(&active)));
    }

    Ok(Verdict::Store(Box::new(NewBinding {
        binding_id: new_binding_id(),
        license_number: license.as_str().to_string(),
        issuer_key_id: certificate.authority_key_id().map(hex::encode),
        certificate_serial: certificate.serial_hex(),
        certificate_not_before: format_time(certificate.not_before()),
        certificate_not_after: format_time(certificate.not_after()),
        terminal_id: terminal_id.to_string(),
        operator_id: statement.operator_id.clone(),
        linked_via: LinkedVia::Counter,
        holding_at_link: record.holding,
        identity_check,
        linked_at: now_text.to_string(),
        statement_time: Some(statement.time.clone()),
        statement_sha256: Some(statement_sha256),
    })))
}

/// The statement must carry the number in its canonical 12-digit form.
fn canonical_license_number(text: &str) -> Result<LicenseNumber, Rejection> {
    match LicenseNumber::parse(text) {
        Ok((number, _)) if number.as_str() == text => Ok(number),
        Ok(_) => Err(Rejection::with_detail(
            Code::LicenseNumberInvalid,
            "the statement's license number is not in canonical 12-digit form",
        )),
        Err(e) => Err(Rejection::with_detail(
            Code::LicenseNumberInvalid,
            e.to_string(),
        )),
    }
}

/// What both stages check once the statement names the certificate: the card's signature
/// over the statement, the chain to a trusted root, and validity at the statement's time.
pub(crate) fn verify_signed_statement(
    config: &SubmissionConfig,
    certificate: &SigningCertificate,
    statement_bytes: &[u8],
    signature: &[u8],
    ca_der: Option<&[u8]>,
    statement_time: OffsetDateTime,
) -> Result<(), Rejection> {
    certificate
        .verify_sha256_signature(statement_bytes, signature)
        .map_err(|e| Rejection::with_detail(Code::SignatureInvalid, e.to_string()))?;
    config
        .trust
        .evaluate(certificate, ca_der, statement_time)
        .map_err(|e| Rejection::with_detail(Code::CertificateUntrusted, e.to_string()))?;
    match certificate.is_valid_at(statement_time) {
        Validity::Valid => Ok(()),
        Validity::Expired => Err(Rejection::with_detail(
            Code::CertificateExpired,
            format!("expired at {}", format_time(certificate.not_after())),
        )),
        Validity::NotYetValid => Err(Rejection::with_detail(
            Code::CertificateNotYetValid,
            format!("valid from {}", format_time(certificate.not_before())),
        )),
    }
}

/// The statement names the certificate it was signed with; a signature by one card over a
/// statement naming another is refused.
pub(crate) fn statement_names_certificate(
    statement: &Statement,
    certificate: &SigningCertificate,
) -> Result<(), Rejection> {
    let mismatch = |field: &str| {
        Rejection::with_detail(
            Code::StatementInvalid,
            format!("the statement's {field} does not match the certificate sent"),
        )
    };
    if statement.certificate_sha256 != hex::encode(certificate.sha256()) {
        return Err(mismatch("certificate_sha256"));
    }
    if statement.certificate_serial != certificate.serial_hex() {
        return Err(mismatch("certificate_serial"));
    }
    if statement.issuer_key_id != certificate.authority_key_id().map(hex::encode) {
        return Err(mismatch("issuer_key_id"));
    }
    Ok(())
}

fn new_binding_id() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoding_bounds_and_errors() {
        assert_eq!(decode("f", "TWFu", 3).as_deref(), Ok(&b"Man"[..]));
        assert_eq!(
            decode("f", "TWFuTWFu", 3).map_err(|r| r.code),
            Err(Code::MalformedRequest)
        );
        assert_eq!(
            decode("f", "TW*u", 3).map_err(|r| r.code),
            Err(Code::MalformedRequest)
        );
        assert_eq!(
            decode("f", "", 3).map_err(|r| r.code),
            Err(Code::MalformedRequest)
        );
        // 4 characters may decode to 3 bytes while the limit is 2.
        assert_eq!(
            decode("f", "TWFu", 2).map_err(|r| r.code),
            Err(Code::MalformedRequest)
        );
    }

    #[test]
    fn license_numbers_must_be_canonical() {
        // 30 15 123456 check 0.
        let first_ten = [3, 0, 1, 5, 1, 2, 3, 4, 5, 6];
        let check = mynalink_link::license::expected_check_digit(&first_ten);
        let number = format!("3015123456{check}0");
        assert!(canonical_license_number(&number).is_ok());
        let spaced = format!("3015 123456 {check}0");
        assert_eq!(
            canonical_license_number(&spaced).map_err(|r| r.code).err(),
            Some(Code::LicenseNumberInvalid)
        );
        assert!(canonical_license_number("123").is_err());
    }

    #[test]
    fn binding_ids_are_random_hex() {
        let a = new_binding_id();
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(a, new_binding_id());
    }
}
