//! The second stage of the linking (§4), called by Mynaportal only.
//!
//! 1. `POST /v1/second-stage/{license_number}/basic4`: the basic-4 Mynaportal read from the
//!    card-info AP. Kept in `second_stage_pending` until the signature arrives or the row
//!    expires, and only for a license with an active first-stage binding — or, after a
//!    cancellation (§6), with a cancelled one that the holder may restore from Mynaportal
//!    (see [`crate::status::relink_candidate`]): then a match stores a new binding with the
//!    cancelled one's first-stage identifiers (`mynaportal_relinked`).
//! 2. `POST /v1/second-stage/{second_stage_id}/signature`: the holder's statement, signed
//!    with a signing certificate for the card or for a smartphone. Checked like the first
//!    stage (signature, chain, validity at the statement's time, freshness); the statement
//!    has its own purpose, names the Mynaportal caller as `terminal_id` and carries the
//!    second-stage id as `nonce`, so a signature counts for this one session only.
//!
//! Matching rule: the certificate's basic-4 (name, address, birth date, sex) must equal the
//! card-info basic-4 after the same folding as the first stage's name check. Equality is all
//! the rule needs, so the card-info basic-4 is kept only as keyed hashes of the normalised
//! fields ([`crate::basic4_key`]): the certificate's fields are normalised and hashed the
//! same way, field by field, and a mismatch still names the field. The
//! certificate must also belong to the first-stage holder: either it is the certificate of
//! the first stage (same issuer key id and serial), or, since a renewed card or a smartphone
//! certificate has another serial, its name and birth date match the license record
//! automatically.
//!
//! Whatever the decision, the pending row goes in the transaction that records it: even the
//! hashes do not outlive the comparison, and the certificate's basic-4 is never stored. The
//! normalised values are wiped from memory once hashed or compared.
//!
//! Rate limits (§8), as for the first stage: a refusal that points at forgery or probing
//! ([`Code::counts_as_abuse`], which includes `basic4_mismatch`) counts against the
//! license, in the same window and towards the same limit as the first stage's failures;
//! a license at the limit is refused `rate_limited` in both steps until the window moves
//! on. Mynaportal itself is not limited: it is one caller for every holder.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use mynalink_link::certificate::{Basic4, Sex, SigningCertificate, MAX_DER_LEN};
use mynalink_link::license::LicenseNumber;
use mynalink_link::statement::{format_time, Statement, VERSION};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::basic4_key::Basic4Key;
use crate::code::{Code, Rejection};
use crate::identity::{self, IdentityMatch};
use crate::status::relink_candidate;
use crate::store::{
    AuditEntry, Basic4Digests, FailureCount, FinishOutcome, MynaportalLink, Operation,
    PendingOutcome, PendingSecondStage, Relink, Store, StoreError, SubjectKind,
};
use crate::submission::{
    license_limited, statement_names_certificate, verify_signed_statement, window_start,
    SubmissionConfig, MAX_SIGNATURE_LEN, MAX_STATEMENT_LEN,
};
use mynalink_link::api::Holding;

/// The statement purpose of the second stage; a first-stage statement is never accepted.
pub const PURPOSE: &str = "mynalink/second-stage-mynaportal";
/// Bounds of the card-info fields, in characters.
pub const MAX_NAME_CHARS: usize = 100;
pub const MAX_ADDRESS_CHARS: usize = 200;

/// The body of step 1. Personal data: `Debug` hides it, dropping wipes it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
#[serde(deny_unknown_fields)]
pub struct Basic4Request {
    pub name: String,
    pub address: String,
    /// `YYYYMMDD`, Gregorian.
    pub birth_date: String,
    /// `1` male, `2` female, `9` not applicable.
    pub sex: String,
}

impl std::fmt::Debug for Basic4Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Basic4Request { .. redacted }")
    }
}

/// 202 of step 1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Basic4Accepted {
    pub code: String,
    pub second_stage_id: String,
    pub license_number: String,
    pub expires_at: String,
}

/// The body of step 2. Binary fields are standard base64.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignatureRequest {
    /// Canonical statement bytes with purpose [`PURPOSE`].
    pub statement: String,
    pub signature: String,
    /// The signing certificate, DER (card or smartphone).
    pub certificate: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_certificate: Option<String>,
}

/// 200 of step 2.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecondStageLinked {
    /// `mynaportal_linked`, `mynaportal_relinked` (§6, a new binding in place of a
    /// cancelled one), or `second_stage_repeated` for the same statement again.
    pub code: String,
    pub binding_id: String,
    pub license_number: String,
    pub mynaportal_linked_at: String,
    /// Whether the certificate is the one of the first stage.
    pub same_certificate_as_first_stage: bool,
    /// §6: the cancelled binding this one restored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relinked_from: Option<String>,
}

fn audit(operation: Operation, caller: &str, now: &str) -> AuditEntry {
    AuditEntry {
        at: now.to_string(),
        operation,
        code: Code::MalformedRequest,
        terminal_id: Some(caller.to_string()),
        license_number: None,
        binding_id: None,
    }
}

/// The failures a refusal counts: against the license, when it is known and the code
/// counts.
fn charged<'a>(config: &SubmissionConfig, entry: &'a AuditEntry) -> Vec<FailureCount<'a>> {
    match entry.license_number.as_deref() {
        Some(license) if entry.code.counts_as_abuse() => vec![FailureCount {
            kind: SubjectKind::License,
            subject: license,
            threshold: config.abuse.max_failures_per_license,
        }],
        _ => Vec::new(),
    }
}

/// Step 1. `Ok(Err(_))` is a refusal, audited.
pub fn receive_basic4(
    store: &mut Store,
    config: &SubmissionConfig,
    license_number: &str,
    request: &Basic4Request,
    caller: &str,
    now: OffsetDateTime,
) -> Result<Result<Basic4Accepted, Rejection>, StoreError> {
    let now_text = format_time(now);
    let window = window_start(config, now);
    let mut entry = audit(Operation::SecondStageBasic4, caller, &now_text);
    let refuse = |store: &mut Store, mut entry: AuditEntry, rejection: Rejection| {
        entry.code = rejection.code;
        store
            .record_decision(&entry, &charged(config, &entry), &window)
            .map(|_| Err(rejection))
    };
    let Some(key) = config.basic4_key.as_ref() else {
        return refuse(store, entry, no_basic4_key());
    };

    let license = match LicenseNumber::parse(license_number) {
        Ok((n, _)) if n.as_str() == license_number => n,
        _ => {
            let r = Rejection::with_detail(
                Code::LicenseNumberInvalid,
                "the path needs the canonical 12-digit license number",
            );
            return refuse(store, entry, r);
        }
    };
    entry.license_number = Some(license.as_str().to_string());
    if let Some(r) = license_limited(store, config, license.as_str(), &window)? {
        return refuse(store, entry, r);
    }
    if store.suspension(license.as_str())?.is_some() {
        return refuse(store, entry, crate::measures::service_suspended());
    }
    if let Err(r) = validate_basic4(request) {
        return refuse(store, entry, r);
    }
    let Some(stored) = store.license(license.as_str())? else {
        return refuse(store, entry, Rejection::new(Code::LicenseNotFound));
    };
    let relink = relink_candidate(store, &stored)?;

    let expires = now + config.second_stage_ttl;
    let second_stage_id = hex::encode(rand::random::<[u8; 16]>());
    let Some(basic4) = card_digests(key, &second_stage_id, request) else {
        // validate_basic4 let it through: cannot happen, but is no reason to panic.
        let r = Rejection::with_detail(Code::MalformedRequest, "the basic-4 does not normalise");
        return refuse(store, entry, r);
    };
    let pending = PendingSecondStage {
        second_stage_id,
        license_number: license.as_str().to_string(),
        binding_id: String::new(),
        caller_id: caller.to_string(),
        basic4,
        created_at: now_text.clone(),
        expires_at: format_time(expires),
        relink: false,
    };
    entry.code = Code::Basic4Received;
    match store.insert_second_stage(
        &pending,
        entry,
        Code::FirstStageMissing,
        Code::SecondStageDone,
        relink.as_ref().map(|b| b.binding_id.as_str()),
    )? {
        PendingOutcome::Stored { .. } => Ok(Ok(Basic4Accepted {
            code: Code::Basic4Received.as_str().to_string(),
            second_stage_id: pending.second_stage_id.clone(),
            license_number: pending.license_number.clone(),
            expires_at: pending.expires_at.clone(),
        })),
        PendingOutcome::FirstStageMissing => Ok(Err(Rejection::new(Code::FirstStageMissing))),
        PendingOutcome::AlreadyDone { .. } => Ok(Err(Rejection::new(Code::SecondStageDone))),
    }
}

/// The card-info fields as the AP stores them; details name the field, never its value.
fn validate_basic4(request: &Basic4Request) -> Result<(), Rejection> {
    let bad = |field: &str, why: &str| {
        Err(Rejection::with_detail(
            Code::MalformedRequest,
            format!("{field}: {why}"),
        ))
    };
    for (field, value, max) in [
        ("name", &request.name, MAX_NAME_CHARS),
        ("address", &request.address, MAX_ADDRESS_CHARS),
    ] {
        if value.trim().is_empty() {
            return bad(field, "empty");
        }
        if value.chars().count() > max {
            return bad(field, "too long");
        }
        if value.chars().any(char::is_control) {
            return bad(field, "control characters");
        }
    }
    if request.birth_date.len() != 8 || identity::parse_record_date(&request.birth_date).is_none() {
        return bad("birth_date", "expected a Gregorian date YYYYMMDD");
    }
    if !matches!(request.sex.as_str(), "1" | "2" | "9") {
        return bad("sex", "expected \"1\", \"2\" or \"9\"");
    }
    Ok(())
}

/// Which basic-4 field differs (for the detail; never the values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Basic4Field {
    Name,
    Address,
    BirthDate,
    Sex,
}

impl Basic4Field {
    pub fn as_str(self) -> &'static str {
        match self {
            Basic4Field::Name => "name",
            Basic4Field::Address => "address",
            Basic4Field::BirthDate => "birth_date",
            Basic4Field::Sex => "sex",
        }
    }
}

/// Refused when the server has no basic-4 key: `serve` does not start with Mynaportal
/// credentials and without the key, so only a library caller meets this.
fn no_basic4_key() -> Rejection {
    Rejection::with_detail(
        Code::ServerError,
        "the second stage is not configured on this server (no --basic4-key)",
    )
}

/// A name or address as compared: folded as in the first stage (spaces dropped, full-width
/// ASCII to ASCII); nothing is left of an empty one.
fn normalised_text(text: &str) -> Option<Zeroizing<String>> {
    Some(identity::normalize_name(text)).filter(|t| !t.is_empty())
}

/// A birth date as compared: `YYYY-MM-DD`.
fn normalised_date(date: time::Date) -> Zeroizing<String> {
    Zeroizing::new(format!(
        "{:04}-{:02}-{:02}",
        date.year(),
        u8::from(date.month()),
        date.day()
    ))
}

/// The card-info basic-4 in the form that is hashed: name and address normalised, the
/// birth date as a calendar date, the sex code as sent (`1`, `2`, `9`). `None` for a field
/// that cannot match anything.
fn card_fields(request: &Basic4Request) -> [(Basic4Field, Option<Zeroizing<String>>); 4] {
    let sex = matches!(request.sex.as_str(), "1" | "2" | "9").then(|| request.sex.clone());
    [
        (Basic4Field::Name, normalised_text(&request.name)),
        (Basic4Field::Address, normalised_text(&request.address)),
        (
            Basic4Field::BirthDate,
            identity::parse_record_date(&request.birth_date).map(normalised_date),
        ),
        (Basic4Field::Sex, sex.map(Zeroizing::new)),
    ]
}

/// The certificate's basic-4 in the same form; its sex `3` (not applicable) is the
/// card-info `9`.
fn certificate_fields(cert: &Basic4) -> [(Basic4Field, Option<Zeroizing<String>>); 4] {
    let sex = match cert.sex {
        Some(Sex::Male) => Some("1"),
        Some(Sex::Female) => Some("2"),
        Some(Sex::Unknown) => Some("9"),
        None => None,
    };
    [
        (Basic4Field::Name, normalised_text(&cert.name)),
        (
            Basic4Field::Address,
            cert.address.as_deref().and_then(normalised_text),
        ),
        (
            Basic4Field::BirthDate,
            cert.birth_date
                .as_ref()
                .and_then(|d| d.to_date())
                .map(normalised_date),
        ),
        (Basic4Field::Sex, sex.map(|s| Zeroizing::new(s.to_string()))),
    ]
}

/// The hashes the store keeps of a (validated) card-info basic-4 for this second stage;
/// `None` if a field does not normalise.
pub fn card_digests(
    key: &Basic4Key,
    second_stage_id: &str,
    request: &Basic4Request,
) -> Option<Basic4Digests> {
    let [name, address, birth_date, sex] = card_fields(request).map(|(field, value)| {
        value.map(|v| key.digest(field.as_str(), second_stage_id, v.as_bytes()))
    });
    Some(Basic4Digests {
        key_id: key.id().to_string(),
        name: name?,
        address: address?,
        birth_date: birth_date?,
        sex: sex?,
    })
}

/// Compares the certificate's basic-4 with the hashes of the card-info basic-4, field by
/// field in the order name, address, birth date, sex; the first that differs is named.
pub fn compare_basic4(
    key: &Basic4Key,
    second_stage_id: &str,
    cert: &Basic4,
    card: &Basic4Digests,
) -> Result<(), Basic4Field> {
    for (field, value) in certificate_fields(cert) {
        let stored = match field {
            Basic4Field::Name => &card.name,
            Basic4Field::Address => &card.address,
            Basic4Field::BirthDate => &card.birth_date,
            Basic4Field::Sex => &card.sex,
        };
        let same = value
            .is_some_and(|v| key.matches(field.as_str(), second_stage_id, v.as_bytes(), stored));
        if !same {
            return Err(field);
        }
    }
    Ok(())
}

/// What the checks of step 2 decided.
enum Verdict {
    Reject(Rejection),
    Repeated(Box<SecondStageLinked>),
    Link {
        binding_id: String,
        license_number: String,
        link: MynaportalLink,
        same_certificate: bool,
        /// §6: `binding_id` is cancelled and a new binding restores it.
        relink: Option<Holding>,
    },
}

macro_rules! check {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(rejection) => return Ok(Verdict::Reject(rejection)),
        }
    };
}

/// Step 2. `Ok(Err(_))` is a refusal, audited; the pending row is gone afterwards in
/// every case.
pub fn submit_signature(
    store: &mut Store,
    config: &SubmissionConfig,
    second_stage_id: &str,
    request: &SignatureRequest,
    caller: &str,
    now: OffsetDateTime,
) -> Result<Result<SecondStageLinked, Rejection>, StoreError> {
    let now_text = format_time(now);
    let mut entry = audit(Operation::SecondStageSignature, caller, &now_text);
    let verdict = evaluate(
        store,
        config,
        second_stage_id,
        request,
        caller,
        now,
        &mut entry,
    )?;
    match verdict {
        Verdict::Reject(rejection) => {
            entry.code = rejection.code;
            let window = window_start(config, now);
            let failures = charged(config, &entry);
            if is_session_id(second_stage_id) {
                store.finish_second_stage(
                    second_stage_id,
                    None,
                    entry.clone(),
                    Code::SecondStageNotFound,
                    Code::FirstStageMissing,
                    &failures,
                    &window,
                )?;
            } else {
                store.record_decision(&entry, &failures, &window)?;
            }
            Ok(Err(rejection))
        }
        Verdict::Repeated(body) => {
            entry.code = Code::SecondStageRepeated;
            entry.binding_id = Some(body.binding_id.clone());
            store.audit_only(&entry)?;
            Ok(Ok(*body))
        }
        Verdict::Link {
            binding_id,
            license_number,
            link,
            same_certificate,
            relink,
        } => {
            let (outcome, code, linked_id, relinked_from) = match relink {
                None => {
                    entry.code = Code::MynaportalLinked;
                    entry.binding_id = Some(binding_id.clone());
                    let outcome = store.finish_second_stage(
                        second_stage_id,
                        Some((&binding_id, &link)),
                        entry,
                        Code::SecondStageNotFound,
                        Code::FirstStageMissing,
                        &[],
                        "",
                    )?;
                    (outcome, Code::MynaportalLinked, binding_id, None)
                }
                Some(holding) => {
                    entry.code = Code::MynaportalRelinked;
                    let relink = Relink {
                        new_binding_id: hex::encode(rand::random::<[u8; 16]>()),
                        cancelled_binding_id: binding_id.clone(),
                        holding_at_link: holding,
                        link: link.clone(),
                    };
                    let outcome = store.relink_second_stage(
                        second_stage_id,
                        &relink,
                        entry,
                        Code::SecondStageNotFound,
                        Code::FirstStageMissing,
                    )?;
                    let code = Code::MynaportalRelinked;
                    (outcome, code, relink.new_binding_id, Some(binding_id))
                }
            };
            match outcome {
                FinishOutcome::Linked => Ok(Ok(SecondStageLinked {
                    code: code.as_str().to_string(),
                    binding_id: linked_id,
                    license_number,
                    mynaportal_linked_at: link.linked_at,
                    same_certificate_as_first_stage: same_certificate,
                    relinked_from,
                })),
                FinishOutcome::NotPending | FinishOutcome::Deleted => {
                    Ok(Err(Rejection::new(Code::SecondStageNotFound)))
                }
                FinishOutcome::BindingChanged => Ok(Err(Rejection::with_detail(
                    Code::FirstStageMissing,
                    "the binding was cancelled or completed meanwhile",
                ))),
            }
        }
    }
}

/// Second-stage ids are 32 lower-case hex digits.
fn is_session_id(text: &str) -> bool {
    text.len() == 32 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn decode(field: &str, text: &str, max: usize) -> Result<Vec<u8>, Rejection> {
    let malformed =
        |why: &str| Rejection::with_detail(Code::MalformedRequest, format!("{field}: {why}"));
    if text.len() > max.div_ceil(3) * 4 {
        return Err(malformed("too long"));
    }
    let bytes = BASE64
        .decode(text.as_bytes())
        .map_err(|_| malformed("not standard base64"))?;
    if bytes.is_empty() || bytes.len() > max {
        return Err(malformed("empty or too long"));
    }
    Ok(bytes)
}

/// Parses a canonical second-stage statement.
fn parse_statement(bytes: &[u8]) -> Result<Statement, Rejection> {
    let invalid = |why: String| Rejection::with_detail(Code::StatementInvalid, why);
    let statement: Statement = serde_json::from_slice(bytes).map_err(|e| invalid(e.to_string()))?;
    if statement.canonical_bytes() != bytes {
        return Err(invalid("statement bytes are not in canonical form".into()));
    }
    if statement.purpose != PURPOSE || statement.version != VERSION {
        return Err(invalid(format!(
            "the purpose must be {PURPOSE} version {VERSION}"
        )));
    }
    Ok(statement)
}

fn evaluate(
    store: &mut Store,
    config: &SubmissionConfig,
    second_stage_id: &str,
    request: &SignatureRequest,
    caller: &str,
    now: OffsetDateTime,
    entry: &mut AuditEntry,
) -> Result<Verdict, StoreError> {
    if !is_session_id(second_stage_id) {
        return Ok(Verdict::Reject(Rejection::new(Code::SecondStageNotFound)));
    }
    // A license at its limit is refused before any work on the request.
    if let Some(pending) = store.pending_second_stage(second_stage_id, &format_time(now))? {
        entry.license_number = Some(pending.license_number.clone());
        let window = window_start(config, now);
        if let Some(r) = license_limited(store, config, &pending.license_number, &window)? {
            return Ok(Verdict::Reject(r));
        }
        // §8: a suspension ends a second stage begun before it.
        if store.suspension(&pending.license_number)?.is_some() {
            return Ok(Verdict::Reject(crate::measures::service_suspended()));
        }
    }
    let statement_bytes = check!(decode("statement", &request.statement, MAX_STATEMENT_LEN));
    let signature = check!(decode("signature", &request.signature, MAX_SIGNATURE_LEN));
    let certificate_der = check!(decode("certificate", &request.certificate, MAX_DER_LEN));
    let ca_der = match &request.ca_certificate {
        Some(text) => Some(check!(decode("ca_certificate", text, MAX_DER_LEN))),
        None => None,
    };
    let statement = check!(parse_statement(&statement_bytes));
    let statement_time = check!(statement
        .time()
        .map_err(|e| Rejection::with_detail(Code::StatementInvalid, format!("time: {e}"))));
    if format_time(statement_time) != statement.time {
        return Ok(Verdict::Reject(Rejection::with_detail(
            Code::StatementInvalid,
            "time is not RFC 3339 UTC with whole seconds",
        )));
    }
    if statement.nonce != second_stage_id {
        return Ok(Verdict::Reject(Rejection::with_detail(
            Code::StatementInvalid,
            "the statement's nonce must be the second-stage id",
        )));
    }
    if statement.terminal_id != caller {
        return Ok(Verdict::Reject(Rejection::with_detail(
            Code::TerminalMismatch,
            "the statement names another caller",
        )));
    }

    let certificate = check!(SigningCertificate::parse(&certificate_der)
        .map_err(|e| Rejection::with_detail(Code::CertificateInvalid, e.to_string())));
    check!(statement_names_certificate(&statement, &certificate));
    let serial = certificate.serial_hex();
    let issuer_key_id = certificate.authority_key_id().map(hex::encode);
    check!(verify_signed_statement(
        config,
        &certificate,
        &statement_bytes,
        &signature,
        ca_der.as_deref(),
        statement_time
    ));

    // The same statement again after it linked: answered without a pending row.
    let statement_sha256 = hex::encode(Sha256::digest(&statement_bytes));
    if let Some(binding) = store.binding_by_mynaportal_statement(&statement_sha256)? {
        entry.license_number = Some(binding.license_number.clone());
        if binding.is_active() {
            if let Some(link) = store.mynaportal_link(&binding.binding_id)? {
                return Ok(Verdict::Repeated(Box::new(SecondStageLinked {
                    code: Code::SecondStageRepeated.as_str().to_string(),
                    same_certificate_as_first_stage: binding.certificate_serial
                        == link.certificate_serial
                        && binding.issuer_key_id == link.issuer_key_id,
                    binding_id: binding.binding_id,
                    license_number: binding.license_number,
                    mynaportal_linked_at: link.linked_at,
                    relinked_from: binding.relinked_from,
                })));
            }
        }
        return Ok(Verdict::Reject(Rejection::new(Code::StatementReused)));
    }

    let Some(pending) = store.pending_second_stage(second_stage_id, &format_time(now))? else {
        return Ok(Verdict::Reject(Rejection::new(Code::SecondStageNotFound)));
    };
    entry.license_number = Some(pending.license_number.clone());
    entry.binding_id = Some(pending.binding_id.clone());
    if statement.license_number != pending.license_number {
        return Ok(Verdict::Reject(Rejection::with_detail(
            Code::StatementInvalid,
            "the statement names another license",
        )));
    }
    // Signed during this session: not before the basic-4 arrived, not ahead of the clock.
    let earliest = OffsetDateTime::parse(
        &pending.created_at,
        &time::format_description::well_known::Rfc3339,
    )
    .ok()
    .and_then(|t| t.checked_sub(config.future_tolerance));
    let too_early = earliest.is_none_or(|e| statement_time < e);
    let too_late = now
        .checked_add(config.future_tolerance)
        .is_some_and(|latest| statement_time > latest);
    if too_early || too_late {
        return Ok(Verdict::Reject(Rejection::with_detail(
            Code::StatementStale,
            "the statement was not signed during this second stage",
        )));
    }

    let Some(binding) = store.binding(&pending.binding_id)? else {
        return Ok(Verdict::Reject(Rejection::new(Code::FirstStageMissing)));
    };
    let Some(license) = store.license(&pending.license_number)? else {
        return Ok(Verdict::Reject(Rejection::new(Code::LicenseNotFound)));
    };
    // §6: a cancelled binding is restored only by a session begun to restore it (one begun
    // for the binding then active, which the holder has cancelled since, is over), and only
    // while the rules still allow it.
    let relink = if binding.is_active() {
        None
    } else {
        match relink_candidate(store, &license)? {
            Some(c) if pending.relink && c.binding_id == binding.binding_id => {
                Some(license.record.holding)
            }
            _ => {
                return Ok(Verdict::Reject(Rejection::with_detail(
                    Code::FirstStageMissing,
                    "the binding was cancelled and cannot be restored from Mynaportal any \
                     more: the first stage is needed",
                )))
            }
        }
    };
    let same_certificate =
        binding.certificate_serial == serial && binding.issuer_key_id == issuer_key_id;

    let Some(key) = config.basic4_key.as_ref() else {
        return Ok(Verdict::Reject(no_basic4_key()));
    };
    if pending.basic4.key_id != key.id() {
        // Hashed under a key this server no longer has: they cannot be compared, which
        // is not the holder's fault.
        return Ok(Verdict::Reject(Rejection::with_detail(
            Code::SecondStageNotFound,
            "the server's basic-4 key changed since this second stage began: send the \
             basic-4 again",
        )));
    }

    {
        // The certificate's basic-4 lives only in this block; Basic4 wipes itself.
        let basic4 = check!(certificate
            .basic4()
            .map_err(|e| Rejection::with_detail(Code::CertificateInvalid, e.to_string())));
        if let Err(field) = compare_basic4(key, second_stage_id, &basic4, &pending.basic4) {
            return Ok(Verdict::Reject(Rejection::with_detail(
                Code::Basic4Mismatch,
                format!("{} differs", field.as_str()),
            )));
        }
        if !same_certificate {
            match identity::compare(&basic4, &license.record.name, &license.record.birth_date) {
                IdentityMatch::Matches => {}
                IdentityMatch::NeedsConfirmation => {
                    return Ok(Verdict::Reject(Rejection::with_detail(
                        Code::IdentityNeedsConfirmation,
                        "another certificate than the first stage's, with substitute \
                         characters in the name",
                    )))
                }
                IdentityMatch::Mismatch(field) => {
                    return Ok(Verdict::Reject(Rejection::with_detail(
                        Code::IdentityMismatch,
                        format!("{} differs from the license record", field.as_str()),
                    )))
                }
            }
        }
    }

    Ok(Verdict::Link {
        binding_id: binding.binding_id,
        license_number: pending.license_number.clone(),
        link: MynaportalLink {
            linked_at: format_time(now),
            certificate_serial: serial,
            issuer_key_id,
            statement_sha256,
        },
        same_certificate,
        relink,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SESSION: &str = "0123456789abcdef0123456789abcdef";

    fn card(name: &str, address: &str, birth: &str, sex: &str) -> Basic4Request {
        Basic4Request {
            name: name.into(),
            address: address.into(),
            birth_date: birth.into(),
            sex: sex.into(),
        }
    }

    /// The certificate against the card-info basic-4, hashed and compared as the store
    /// keeps it.
    fn compare(cert: &Basic4, card: &Basic4Request) -> Result<(), Basic4Field> {
        let key = Basic4Key::from_bytes(&[0x42; 32]);
        let digests = card_digests(&key, SESSION, card).expect("normalises");
        compare_basic4(&key, SESSION, cert, &digests)
    }

    #[test]
    fn ids_and_inputs() {
        assert!(is_session_id(&"ab".repeat(16)));
        assert!(!is_session_id(&"AB".repeat(16)));
        assert!(!is_session_id("abc"));
        let ok = Basic4Request {
            name: "試験　花子".into(),
            address: "東京都".into(),
            birth_date: "19900102".into(),
            sex: "2".into(),
        };
        assert!(validate_basic4(&ok).is_ok());
        for (i, bad) in [
            ("", "東京都", "19900102", "2"),
            ("a", "東京都", "1990-01-02", "2"),
            ("a", "東京都", "19900230", "2"),
            ("a", "東京都", "19900102", "3"),
            ("a", "東\n京", "19900102", "1"),
        ]
        .into_iter()
        .enumerate()
        {
            let r = Basic4Request {
                name: bad.0.into(),
                address: bad.1.into(),
                birth_date: bad.2.into(),
                sex: bad.3.into(),
            };
            assert!(validate_basic4(&r).is_err(), "{i}");
        }
        assert!(!format!("{ok:?}").contains("花子"));
    }

    #[test]
    fn compares_with_the_simulated_certificate() {
        let id = mynalink_simcard::test_identity(mynalink_simcard::Validity::Current);
        let cert = SigningCertificate::parse(&id.sign_cert_der).expect("cert");
        let b4 = cert.basic4().expect("basic4");
        let address = b4.address.clone().expect("address");
        let sex = match b4.sex {
            Some(Sex::Male) => "1",
            Some(Sex::Female) => "2",
            _ => "9",
        };
        assert_eq!(
            compare(&b4, &card("試験 花子", &address, "19900102", sex)),
            Ok(())
        );
        assert_eq!(
            compare(&b4, &card("試験 花代", &address, "19900102", sex)),
            Err(Basic4Field::Name)
        );
        assert_eq!(
            compare(&b4, &card("試験花子", "大阪府", "19900102", sex)),
            Err(Basic4Field::Address)
        );
        assert_eq!(
            compare(&b4, &card("試験花子", &address, "19900103", sex)),
            Err(Basic4Field::BirthDate)
        );
        let other = if sex == "1" { "2" } else { "1" };
        assert_eq!(
            compare(&b4, &card("試験花子", &address, "19900102", other)),
            Err(Basic4Field::Sex)
        );
        // What the certificate lacks matches nothing; its sex 3 is the card-info 9.
        let mut lacking = b4.clone();
        lacking.address = None;
        assert_eq!(
            compare(&lacking, &card("試験花子", &address, "19900102", sex)),
            Err(Basic4Field::Address)
        );
        let mut lacking = b4.clone();
        lacking.birth_date = None;
        assert_eq!(
            compare(&lacking, &card("試験花子", &address, "19900102", sex)),
            Err(Basic4Field::BirthDate)
        );
        let mut lacking = b4.clone();
        lacking.sex = None;
        assert_eq!(
            compare(&lacking, &card("試験花子", &address, "19900102", sex)),
            Err(Basic4Field::Sex)
        );
        let mut unknown = b4.clone();
        unknown.sex = Some(Sex::Unknown);
        assert_eq!(
            compare(&unknown, &card("試験花子", &address, "19900102", "9")),
            Ok(())
        );
        let mut blank = b4.clone();
        blank.name = "\u{3000} ".into();
        assert_eq!(
            compare(&blank, &card("試験花子", &address, "19900102", sex)),
            Err(Basic4Field::Name)
        );
    }

    #[test]
    fn digests_hold_no_value_and_belong_to_one_session() {
        let key = Basic4Key::from_bytes(&[0x42; 32]);
        let request = card("試験　花子", "東京都千代田区１－２", "19900102", "2");
        let digests = card_digests(&key, SESSION, &request).expect("normalises");
        assert_eq!(digests.key_id, key.id());
        let all = [
            &digests.name,
            &digests.address,
            &digests.birth_date,
            &digests.sex,
        ];
        for d in all {
            assert_eq!(d.len(), 64);
            assert!(d.bytes().all(|b| b.is_ascii_hexdigit()));
        }
        // The same value in another field or session hashes differently.
        let twin = card("2", "2", "19900102", "2");
        let twin = card_digests(&key, SESSION, &twin).expect("normalises");
        assert_ne!(twin.name, twin.sex);
        let again = card_digests(&key, &"f".repeat(32), &request).expect("normalises");
        assert_ne!(again.sex, digests.sex);
        assert_ne!(again.name, digests.name);
        // Folded before hashing: width and spaces do not matter, the characters do.
        let folded = card("試験花子", "東京都千代田区1－2", "19900102", "2");
        let folded = card_digests(&key, SESSION, &folded).expect("normalises");
        assert_eq!(folded.name, digests.name);
        assert_eq!(folded.address, digests.address);
        assert!(card_digests(&key, SESSION, &card("試験", "東京", "19900230", "2")).is_none());
    }
}
