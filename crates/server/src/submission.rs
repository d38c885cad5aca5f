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
use mynalink_link::certificate::{CertificateError, SigningCertificate, Validity, MAX_DER_LEN};
use mynalink_link::license::{LicenseNumber, LicenseNumberError};
use mynalink_link::statement::{format_time, Statement};
use mynalink_link::trust::{TrustError, TrustStore};
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};

use std::sync::Arc;

use mynalink_link::trust::TrustedChain;

use crate::code::{Code, Rejection, RevocationDetail};
use crate::identity::{self, IdentityMatch};
use crate::pool::{PoolError, StorePool};
use crate::revocation::{Finding, Mode, Revocation};
use crate::store::{
    AuditEntry, Binding, FailureCount, IdentityCheck, InsertOutcome, NewBinding, Operation,
    RevocationCheck, RevocationResult, Store, StoreError, SubjectKind, Tx,
};

/// Upper bound for the canonical statement; a real one is about 600 bytes.
pub const MAX_STATEMENT_LEN: usize = 4096;
/// RSA-4096 at most; JPKI signatures are 256 bytes today (RSA-2048), 96 on the next-generation
/// card (P-384 `r ‖ s`).
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
    /// How many license status reads each caller has answered.
    pub status_reads: crate::status::StatusReadPolicy,
    /// The key the card-info basic-4 is hashed with (`--basic4-key`); without it the
    /// second stage is refused.
    pub basic4_key: Option<crate::basic4_key::Basic4Key>,
    /// Whether and how a certificate's revocation status is checked before its binding is
    /// stored (off by default).
    pub revocation: Revocation,
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
            status_reads: crate::status::StatusReadPolicy::default(),
            basic4_key: None,
            revocation: Revocation::off(),
        }
    }
}

/// The backend's private key for sealed certificates; never printed.
#[derive(Clone)]
pub struct SealKey(pub std::sync::Arc<mynalink_link::seal::SealPrivateKey>);

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
            // A key the server does not hold is not a decision about the binding: the
            // terminal keeps the entry for an operator on its own code.
            let key = config.seal_key.as_ref().ok_or_else(|| {
                Rejection::with_detail(
                    Code::SealKeyMismatch,
                    "sealed certificates are not accepted by this server",
                )
            })?;
            let sealed = mynalink_link::seal::SealedBox::from_json(sealed).map_err(|e| {
                Rejection::with_detail(Code::MalformedRequest, format!("sealed_certificate: {e}"))
            })?;
            let aad = mynalink_link::outbox::certificate_aad(statement_bytes);
            let der = mynalink_link::seal::open(&key.0, &sealed, &aad).map_err(|e| {
                let code = match e {
                    mynalink_link::seal::SealError::WrongKey => Code::SealKeyMismatch,
                    _ => Code::MalformedRequest,
                };
                Rejection::with_detail(code, format!("sealed_certificate: {e}"))
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

/// What the checks that need no database found.
enum Examined {
    /// Refused before the statement's signature and chain verified: nothing shows that the
    /// holder of the license it names had anything to do with it, so it counts against the
    /// terminal that sent it and never against that license (§8 limits would otherwise let
    /// any terminal lock any license with garbage).
    Unverified {
        rejection: Rejection,
        /// The license number the statement names, for the audit only.
        license: Option<String>,
    },
    /// Signed by a card whose certificate chains to a trusted root.
    Verified(Box<Verified>),
}

struct Verified {
    license: LicenseNumber,
    statement: Statement,
    statement_time: OffsetDateTime,
    statement_sha256: String,
    certificate: SigningCertificate,
    /// The CA that issued the certificate (the chain's anchor), and its certificate when it
    /// came from the card: what the revocation check names and verifies against.
    anchor_sha256: [u8; 32],
    card_ca: Option<Vec<u8>>,
    staff_confirmed_identity: bool,
    /// A refusal found after the signature verified (a statement signed for another
    /// terminal); it counts against the license too.
    refusal: Option<Rejection>,
}

/// Checks one submission from `terminal_id` (as authenticated by the transport) at `now`
/// and stores its binding if every check passes. `Err` only for storage failures.
///
/// The checks that need no database (decoding, the statement's form, the certificate, the
/// card's signature, the chain to a trusted root) run first and outside any transaction.
/// Everything that reads or writes the database — the rate limits, the rules against
/// stored records, and the decision with the failures it charges — runs in one write
/// transaction, so a limit checked is still the limit when the failure is counted, also
/// with many requests at once.
///
/// The certificate's revocation status is the last check: it is network I/O, so it is
/// asked only for a submission that passed every other check, between two transactions
/// ([`Begun::NeedsRevocation`]); the second transaction evaluates everything again with
/// the answer. Here the check blocks the calling thread (tests, tools); the server uses
/// [`submit_async`], which holds no database connection while it waits.
pub fn submit(
    store: &mut Store,
    config: &SubmissionConfig,
    request: &BindingRequest,
    terminal_id: &str,
    now: OffsetDateTime,
) -> Result<Outcome, StoreError> {
    match begin(store, config, request, terminal_id, now)? {
        Begun::Done(outcome) => Ok(outcome),
        Begun::NeedsRevocation(pending) => {
            let finding = match pending.issuer(config) {
                Ok((issuer, serial)) => config.revocation.check_blocking(&issuer, &serial, now),
                Err(finding) => finding,
            };
            finish(store, config, &pending, &finding, now)
        }
    }
}

/// [`submit`] for the server: the database work on the pool's blocking threads, the
/// revocation check in between without a connection.
pub async fn submit_async(
    pool: &StorePool,
    config: Arc<SubmissionConfig>,
    request: BindingRequest,
    terminal_id: String,
    now: OffsetDateTime,
) -> Result<Outcome, PoolError> {
    let first = Arc::clone(&config);
    let begun = pool
        .run(move |store| begin(store, &first, &request, &terminal_id, now))
        .await?;
    let pending = match begun {
        Begun::Done(outcome) => return Ok(outcome),
        Begun::NeedsRevocation(pending) => pending,
    };
    let finding = match pending.issuer(&config) {
        Ok((issuer, serial)) => config.revocation.check(&issuer, &serial, now).await,
        Err(finding) => finding,
    };
    pool.run(move |store| finish(store, &config, &pending, &finding, now))
        .await
}

/// The first pass of a submission.
pub enum Begun {
    /// Decided and recorded.
    Done(Outcome),
    /// Everything passed but the revocation check, which is to be asked now; nothing was
    /// written.
    NeedsRevocation(Box<Pending>),
}

/// A submission waiting for its revocation check.
pub struct Pending {
    examined: Examined,
    audit: AuditEntry,
    window_start: String,
}

impl Pending {
    /// The certificate's issuer and serial, or the finding that no status can be had.
    fn issuer(
        &self,
        config: &SubmissionConfig,
    ) -> Result<(Arc<crate::revocation::Issuer>, Vec<u8>), Finding> {
        let Examined::Verified(verified) = &self.examined else {
            return Err(Finding::Off);
        };
        config
            .revocation
            .issuer(&verified.anchor_sha256, verified.card_ca.as_deref())
            .map(|issuer| (issuer, verified.certificate.serial_bytes().to_vec()))
            .map_err(|detail| {
                Finding::Unavailable(vec![crate::revocation::Problem {
                    kind: crate::revocation::ProblemKind::NoSource,
                    source: "revocation".into(),
                    detail,
                }])
            })
    }
}

/// Everything up to the revocation check.
pub fn begin(
    store: &mut Store,
    config: &SubmissionConfig,
    request: &BindingRequest,
    terminal_id: &str,
    now: OffsetDateTime,
) -> Result<Begun, StoreError> {
    let (window_start, audit) = opening(config, now);
    if !is_plausible_terminal_id(terminal_id) {
        // Not a terminal the transport could have authenticated: nothing to count against.
        let rejection = Rejection::with_detail(
            Code::MalformedRequest,
            "the authenticated terminal id is empty, too long or has control characters",
        );
        return store
            .transaction(|tx| reject(tx, config, audit.clone(), rejection.clone(), &window_start))
            .map(Begun::Done);
    }
    let mut audit = audit;
    audit.terminal_id = Some(terminal_id.to_string());

    // A terminal over its limit costs no verification; the transaction checks again.
    if store.failures_since(SubjectKind::Terminal, terminal_id, &window_start)?
        >= config.abuse.max_failures_per_terminal
    {
        return store
            .transaction(|tx| {
                reject(
                    tx,
                    config,
                    audit.clone(),
                    terminal_rate_limited(),
                    &window_start,
                )
            })
            .map(Begun::Done);
    }

    let examined = examine(config, request, terminal_id);
    let decision = store.transaction(|tx| {
        decide(
            tx,
            config,
            &examined,
            now,
            &window_start,
            audit.clone(),
            None,
        )
    })?;
    Ok(match decision {
        Decision::Done(outcome) => Begun::Done(outcome),
        Decision::NeedsRevocation => Begun::NeedsRevocation(Box::new(Pending {
            examined,
            audit,
            window_start,
        })),
    })
}

/// Decides a [`Pending`] submission with what the revocation check found.
pub fn finish(
    store: &mut Store,
    config: &SubmissionConfig,
    pending: &Pending,
    finding: &Finding,
    now: OffsetDateTime,
) -> Result<Outcome, StoreError> {
    let decision = store.transaction(|tx| {
        decide(
            tx,
            config,
            &pending.examined,
            now,
            &pending.window_start,
            pending.audit.clone(),
            Some(finding),
        )
    })?;
    Ok(match decision {
        Decision::Done(outcome) => outcome,
        // Not reached: with a finding every path decides.
        Decision::NeedsRevocation => Outcome::Rejected(Rejection::new(Code::RevocationUnavailable)),
    })
}

/// What a transaction of [`decide`] came to.
enum Decision {
    Done(Outcome),
    NeedsRevocation,
}

fn is_plausible_terminal_id(terminal_id: &str) -> bool {
    !terminal_id.is_empty()
        && terminal_id.len() <= MAX_TERMINAL_ID_LEN
        && !terminal_id.chars().any(char::is_control)
}

fn terminal_rate_limited() -> Rejection {
    Rejection::with_detail(
        Code::RateLimited,
        "too many failed submissions from this terminal",
    )
}

fn license_rate_limited() -> Rejection {
    Rejection::with_detail(
        Code::RateLimited,
        "too many failed attempts for this license number",
    )
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
    Ok((failures >= config.abuse.max_failures_per_license).then(license_rate_limited))
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
    let rejection = Rejection::with_detail(Code::MalformedRequest, detail);
    let plausible = is_plausible_terminal_id(terminal_id);
    if plausible {
        audit.terminal_id = Some(terminal_id.to_string());
    }
    store.transaction(|tx| {
        if plausible
            && tx.failures_since(SubjectKind::Terminal, terminal_id, &window_start)?
                >= config.abuse.max_failures_per_terminal
        {
            return reject(
                tx,
                config,
                audit.clone(),
                terminal_rate_limited(),
                &window_start,
            );
        }
        reject(tx, config, audit.clone(), rejection.clone(), &window_start)
    })
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

/// Audits a rejection and, for failures that count, charges the terminal and — only when
/// the audit names a license whose card signed (see [`Examined`]) — the license.
fn reject(
    tx: &mut Tx<'_>,
    config: &SubmissionConfig,
    audit: AuditEntry,
    rejection: Rejection,
    window_start: &str,
) -> Result<Outcome, StoreError> {
    reject_charging(tx, config, audit, rejection, window_start, false)
}

fn reject_charging(
    tx: &mut Tx<'_>,
    config: &SubmissionConfig,
    mut audit: AuditEntry,
    rejection: Rejection,
    window_start: &str,
    charge_license: bool,
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
        if let Some(license) = audit.license_number.as_deref().filter(|_| charge_license) {
            failures.push(FailureCount {
                kind: SubjectKind::License,
                subject: license,
                threshold: config.abuse.max_failures_per_license,
            });
        }
    }
    tx.record_decision(&audit, &failures, window_start)?;
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
    // The decoder's message can quote the offending character: only the field is named.
    let bytes = BASE64.decode(text.as_bytes()).map_err(|_| {
        Rejection::with_detail(
            Code::MalformedRequest,
            format!("{field} is not standard base64"),
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

/// The checks that need no database. Details never carry a value from the request: they
/// name the field or the check, so an answer cannot be made to reflect what was sent.
fn examine(config: &SubmissionConfig, request: &BindingRequest, terminal_id: &str) -> Examined {
    let mut license = None;
    match verify(config, request, terminal_id, &mut license) {
        Ok(verified) => Examined::Verified(Box::new(verified)),
        Err(rejection) => Examined::Unverified { rejection, license },
    }
}

fn verify(
    config: &SubmissionConfig,
    request: &BindingRequest,
    terminal_id: &str,
    license_seen: &mut Option<String>,
) -> Result<Verified, Rejection> {
    let statement_bytes = decode("statement", &request.statement, MAX_STATEMENT_LEN)?;
    let signature = decode("signature", &request.signature, MAX_SIGNATURE_LEN)?;
    let certificate_der = certificate_der(config, request, &statement_bytes)?;
    let ca_der = match &request.ca_certificate {
        Some(text) => Some(decode("ca_certificate", text, MAX_DER_LEN)?),
        None => None,
    };

    let statement = Statement::from_canonical_bytes(&statement_bytes).map_err(|_| {
        Rejection::with_detail(
            Code::StatementInvalid,
            "the statement is not a canonical first-stage statement of a supported version",
        )
    })?;
    let statement_time = statement_time(&statement)?;
    let license = canonical_license_number(&statement.license_number)?;
    *license_seen = Some(license.as_str().to_string());

    let certificate = SigningCertificate::parse(&certificate_der)
        .map_err(|e| Rejection::with_detail(Code::CertificateInvalid, certificate_detail(&e)))?;
    statement_names_certificate(&statement, &certificate)?;
    let chain = verify_signed_statement(
        config,
        &certificate,
        &statement_bytes,
        &signature,
        ca_der.as_deref(),
        statement_time,
    )?;
    let refusal = (statement.terminal_id != terminal_id).then(|| {
        Rejection::with_detail(
            Code::TerminalMismatch,
            "the statement was signed for another terminal",
        )
    });
    Ok(Verified {
        license,
        statement_sha256: hex::encode(Sha256::digest(&statement_bytes)),
        statement,
        statement_time,
        certificate,
        anchor_sha256: chain.anchor_sha256,
        card_ca: if chain.from_card { ca_der } else { None },
        staff_confirmed_identity: request.staff_confirmed_identity,
        refusal,
    })
}

/// The statement's time, which the client writes as RFC 3339 UTC with whole seconds;
/// anything else did not come from it.
fn statement_time(statement: &Statement) -> Result<OffsetDateTime, Rejection> {
    let invalid = || {
        Rejection::with_detail(
            Code::StatementInvalid,
            "time is not RFC 3339 UTC with whole seconds (e.g. 2026-11-26T09:00:00Z)",
        )
    };
    let time = statement.time().map_err(|_| invalid())?;
    if time
        .checked_to_offset(time::UtcOffset::UTC)
        .map(format_time)
        .as_deref()
        != Some(statement.time.as_str())
    {
        return Err(invalid());
    }
    Ok(time)
}

/// What the database decides, in the caller's write transaction. `revocation`: what the
/// revocation check found, `None` before it was asked: a submission that would be stored
/// then returns [`Decision::NeedsRevocation`] without writing anything (unless checks are
/// off).
fn decide(
    tx: &mut Tx<'_>,
    config: &SubmissionConfig,
    examined: &Examined,
    now: OffsetDateTime,
    window_start: &str,
    mut audit: AuditEntry,
    revocation: Option<&Finding>,
) -> Result<Decision, StoreError> {
    if let Some(terminal) = audit.terminal_id.as_deref() {
        if tx.failures_since(SubjectKind::Terminal, terminal, window_start)?
            >= config.abuse.max_failures_per_terminal
        {
            return reject(tx, config, audit, terminal_rate_limited(), window_start)
                .map(Decision::Done);
        }
    }
    let verified = match examined {
        Examined::Unverified { rejection, license } => {
            audit.license_number = license.clone();
            return reject(tx, config, audit, rejection.clone(), window_start).map(Decision::Done);
        }
        Examined::Verified(verified) => verified,
    };
    let license = verified.license.as_str();
    audit.license_number = Some(license.to_string());
    if tx.failures_since(SubjectKind::License, license, window_start)?
        >= config.abuse.max_failures_per_license
    {
        return reject(tx, config, audit, license_rate_limited(), window_start).map(Decision::Done);
    }
    // §8: while an administrator has linking suspended for the license, nothing is stored.
    if tx.suspension(license)?.is_some() {
        return reject(
            tx,
            config,
            audit,
            crate::measures::service_suspended(),
            window_start,
        )
        .map(Decision::Done);
    }
    let outcome = match evaluate(tx, config, verified, now)? {
        Verdict::Reject(rejection) => {
            reject_charging(tx, config, audit, rejection, window_start, true)
        }
        Verdict::Repeated(binding) => {
            audit.code = Code::Repeated;
            audit.binding_id = Some(binding.binding_id.clone());
            tx.record_decision(&audit, &[], window_start)?;
            Ok(Outcome::Accepted(accepted(false, &binding)))
        }
        Verdict::Store(mut new) => {
            let finding = match (revocation, config.revocation.is_off()) {
                (_, true) => &Finding::Off,
                (Some(finding), false) => finding,
                (None, false) => return Ok(Decision::NeedsRevocation),
            };
            match revocation_record(config, finding, now) {
                Ok(record) => new.revocation = record,
                Err(rejection) => {
                    return reject_charging(tx, config, audit, rejection, window_start, true)
                        .map(Decision::Done)
                }
            }
            audit.code = Code::Created;
            audit.binding_id = Some(new.binding_id.clone());
            // In the same transaction as the checks, so the outcomes other than `Created`
            // only arise from another process's commit racing this one's.
            let rejection = match tx.insert_binding(&new, &audit)? {
                InsertOutcome::Created(binding) => {
                    return Ok(Decision::Done(Outcome::Accepted(accepted(true, &binding))))
                }
                InsertOutcome::Repeated(binding) => {
                    audit.code = Code::Repeated;
                    audit.binding_id = Some(binding.binding_id.clone());
                    tx.record_decision(&audit, &[], window_start)?;
                    return Ok(Decision::Done(Outcome::Accepted(accepted(false, &binding))));
                }
                InsertOutcome::StatementReused(_) => Rejection::new(Code::StatementReused),
                InsertOutcome::AlreadyLinked(binding) => already_linked(&binding),
            };
            audit.binding_id = None;
            reject_charging(tx, config, audit, rejection, window_start, true)
        }
    };
    outcome.map(Decision::Done)
}

/// What the binding records about its revocation check, or the refusal the finding calls
/// for: `certificate_revoked`, or under `require` `revocation_unavailable`.
fn revocation_record(
    config: &SubmissionConfig,
    finding: &Finding,
    now: OffsetDateTime,
) -> Result<RevocationCheck, Rejection> {
    let checked_at = Some(format_time(now));
    match finding {
        Finding::Off => Ok(RevocationCheck::off()),
        Finding::Good { source } => Ok(RevocationCheck {
            result: RevocationResult::Good,
            source: Some(source.clone()),
            checked_at,
        }),
        Finding::Revoked(revoked) => {
            let revoked_at = format_time(revoked.at);
            let reason = revoked.reason.map(|r| r.as_str().to_string());
            let mut rejection = Rejection::with_detail(
                Code::CertificateRevoked,
                format!(
                    "{} reports the certificate revoked at {revoked_at}{}",
                    revoked.source,
                    reason
                        .as_deref()
                        .map(|r| format!(" ({r})"))
                        .unwrap_or_default()
                ),
            );
            rejection.revocation = Some(RevocationDetail {
                reason,
                revoked_at: Some(revoked_at),
                problem: None,
            });
            Err(rejection)
        }
        Finding::Unavailable(problems) => {
            let tried = problems
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ");
            if config.revocation.mode() == Mode::Prefer {
                return Ok(RevocationCheck {
                    result: RevocationResult::Unchecked,
                    source: Some(tried),
                    checked_at,
                });
            }
            let mut rejection = Rejection::with_detail(Code::RevocationUnavailable, tried);
            rejection.revocation = Some(RevocationDetail {
                problem: problems.first().map(|p| p.kind.as_str().to_string()),
                ..RevocationDetail::default()
            });
            Err(rejection)
        }
    }
}

/// What the rules against stored records decided, before anything is written.
enum Verdict {
    Reject(Rejection),
    Repeated(Box<Binding>),
    Store(Box<NewBinding>),
}

fn evaluate(
    tx: &mut Tx<'_>,
    config: &SubmissionConfig,
    verified: &Verified,
    now: OffsetDateTime,
) -> Result<Verdict, StoreError> {
    if let Some(refusal) = &verified.refusal {
        return Ok(Verdict::Reject(refusal.clone()));
    }
    let statement = &verified.statement;
    let statement_time = verified.statement_time;
    let statement_sha256 = &verified.statement_sha256;
    let license = verified.license.as_str();

    // A repeat of an accepted statement is answered before the freshness check, so that a
    // terminal's outbox can retry long after signing.
    if let Some(existing) = tx.binding_by_statement(statement_sha256)? {
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
                "signed more than {} hours ago",
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
            "signed ahead of the server's clock",
        )));
    }

    let Some(stored) = tx.license(license)? else {
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

    let certificate = &verified.certificate;
    let identity_check = {
        // The basic-4 lives only in this block; Basic4 wipes itself when dropped.
        let basic4 = match certificate.basic4() {
            Ok(basic4) => basic4,
            Err(e) => {
                return Ok(Verdict::Reject(Rejection::with_detail(
                    Code::CertificateInvalid,
                    certificate_detail(&e),
                )))
            }
        };
        match identity::compare(&basic4, &record.name, &record.birth_date) {
            IdentityMatch::Matches => IdentityCheck::Automatic,
            IdentityMatch::NeedsConfirmation if verified.staff_confirmed_identity => {
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

    // Only an active binding whose certificate is still valid stands in the way; a stale
    // one (or one whose certificate expired) is superseded by this submission.
    if let Some(active) = tx
        .active_binding(license)?
        .filter(|b| b.is_active_and_valid(&format_time(now)))
    {
        return Ok(Verdict::Reject(already_linked(&active)));
    }

    Ok(Verdict::Store(Box::new(NewBinding {
        binding_id: new_binding_id(),
        license_number: license.to_string(),
        issuer_key_id: certificate.authority_key_id().map(hex::encode),
        certificate_serial: certificate.serial_hex(),
        certificate_not_before: format_time(certificate.not_before()),
        certificate_not_after: format_time(certificate.not_after()),
        terminal_id: statement.terminal_id.clone(),
        operator_id: statement.operator_id.clone(),
        linked_via: LinkedVia::Counter,
        holding_at_link: record.holding,
        identity_check,
        linked_at: format_time(now),
        statement_time: Some(statement.time.clone()),
        statement_sha256: Some(statement_sha256.clone()),
        // Filled in by `decide` from the revocation check.
        revocation: RevocationCheck::off(),
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
        // The parser's messages quote digits of the number: only the kind of fault is named.
        Err(e) => Err(Rejection::with_detail(
            Code::LicenseNumberInvalid,
            license_number_detail(&e),
        )),
    }
}

fn license_number_detail(e: &LicenseNumberError) -> &'static str {
    match e {
        LicenseNumberError::Empty => "the statement's license number is empty",
        LicenseNumberError::WrongLength { .. } => {
            "the statement's license number does not have 12 digits"
        }
        LicenseNumberError::NotADigit { .. } => {
            "the statement's license number has a character that is not a digit"
        }
        LicenseNumberError::UnknownCommissionCode { .. } => {
            "the statement's license number does not start with a prefectural commission code"
        }
        LicenseNumberError::CheckDigitMismatch { .. } => {
            "the statement's license number has a wrong check digit"
        }
    }
}

/// Which check the certificate failed, without any of its values (its basic-4 least of all).
pub(crate) fn certificate_detail(e: &CertificateError) -> &'static str {
    match e {
        CertificateError::Empty => "the certificate is empty",
        CertificateError::TooLarge { .. } => "the certificate is larger than accepted",
        CertificateError::NotDer { .. } | CertificateError::TrailingData { .. } => {
            "the certificate is not one DER-encoded X.509 certificate"
        }
        CertificateError::Malformed { .. } => "the certificate is malformed",
        CertificateError::UnsupportedKey { .. } => {
            "the certificate's key is not one accepted (RSA 2048–4096 bits, ECDSA P-256 or P-384)"
        }
        CertificateError::NoBasic4 | CertificateError::MissingName => {
            "the certificate carries no basic-4 information: not a JPKI signing certificate"
        }
        CertificateError::InvalidBasic4 { .. } => {
            "the certificate's basic-4 information is malformed"
        }
        CertificateError::CaCertificate => {
            "the certificate is a CA certificate, not a holder's signing certificate"
        }
        CertificateError::KeyUsage => "the certificate's keyUsage does not allow signatures",
        CertificateError::UnknownCriticalExtension { .. } => {
            "the certificate has a critical extension that is not known"
        }
    }
}

fn trust_detail(e: &TrustError) -> &'static str {
    match e {
        TrustError::NoAuthorityKeyId => {
            "the certificate has no authorityKeyIdentifier, so its issuer cannot be identified"
        }
        TrustError::UnknownIssuer { .. } => {
            "no trusted J-LIS signing root has the certificate's issuer key"
        }
        TrustError::CardCaInvalid { .. } => "the CA certificate sent is unusable",
        TrustError::CardCaNotPinned { .. } => {
            "the CA certificate sent is neither a pinned J-LIS signing root nor a configured \
             trust anchor"
        }
        TrustError::CardCaNotIssuer { .. } => {
            "the CA certificate sent is not the certificate's issuer"
        }
        TrustError::UnsupportedSignatureAlgorithm { .. } => {
            "the certificate is signed with an algorithm that is not accepted (weak or unknown)"
        }
        TrustError::IssuerSignatureInvalid { .. } => {
            "the issuer's signature on the certificate does not verify"
        }
        TrustError::IssuerNotYetValid { .. } | TrustError::IssuerExpired { .. } => {
            "the issuing CA was not valid at the statement's time"
        }
        TrustError::IssuerNameMismatch { .. } => {
            "the certificate names another issuer than the CA that signed it"
        }
        TrustError::BadAnchor { .. } | TrustError::NotPinned { .. } => {
            "the certificate does not chain to a trusted J-LIS signing root"
        }
    }
}

/// What both stages check once the statement names the certificate: the card's signature
/// over the statement, the chain to a trusted root, and validity at the statement's time.
///
/// The signature's algorithm follows from the certificate's key: RSA keys are checked with
/// PKCS#1 v1.5 and PSS over SHA-256/384/512 (today's card: PKCS#1 v1.5, SHA-256), EC keys
/// with ECDSA over SHA-384 and SHA-256, the signature as `r ‖ s` the way the card gives it.
pub(crate) fn verify_signed_statement(
    config: &SubmissionConfig,
    certificate: &SigningCertificate,
    statement_bytes: &[u8],
    signature: &[u8],
    ca_der: Option<&[u8]>,
    statement_time: OffsetDateTime,
) -> Result<TrustedChain, Rejection> {
    certificate
        .verify_any_signature(statement_bytes, signature)
        .map_err(|_| {
            Rejection::with_detail(
                Code::SignatureInvalid,
                "the signature does not verify under the certificate's public key",
            )
        })?;
    let chain = config
        .trust
        .evaluate(certificate, ca_der, statement_time)
        .map_err(|e| {
            let code = if e.is_certificate_fault() {
                Code::CertificateInvalid
            } else {
                Code::CertificateUntrusted
            };
            Rejection::with_detail(code, trust_detail(&e))
        })?;
    match certificate.is_valid_at(statement_time) {
        Validity::Valid => Ok(chain),
        Validity::Expired => Err(Rejection::with_detail(
            Code::CertificateExpired,
            "the certificate had expired at the statement's time",
        )),
        Validity::NotYetValid => Err(Rejection::with_detail(
            Code::CertificateNotYetValid,
            "the certificate was not yet valid at the statement's time",
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
