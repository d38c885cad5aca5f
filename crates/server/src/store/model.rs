//! What the store keeps and returns: the rows, the outcomes of its writes, and the wire
//! names of the enums stored as text.

use std::fmt;

use mynalink_link::api::{Holding, LicenseState, LinkedVia};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::code::Code;

// ---------------------------------------------------------------------------------------
// Wire names of the enums stored as text.

pub fn holding_str(h: Holding) -> &'static str {
    match h {
        Holding::MynaOnly => "myna_only",
        Holding::MynaAndCard => "myna_and_card",
        Holding::CardOnly => "card_only",
        Holding::HistoryMynaOnly => "history_myna_only",
        Holding::HistoryMynaAndCard => "history_myna_and_card",
        Holding::HistoryCardOnly => "history_card_only",
    }
}

pub fn parse_holding(s: &str) -> Option<Holding> {
    Holding::ALL.iter().copied().find(|h| holding_str(*h) == s)
}

pub const LICENSE_STATES: [LicenseState; 5] = [
    LicenseState::Valid,
    LicenseState::Suspended,
    LicenseState::ProvisionallySuspended,
    LicenseState::Lapsed,
    LicenseState::Revoked,
];

pub fn state_str(s: LicenseState) -> &'static str {
    match s {
        LicenseState::Valid => "valid",
        LicenseState::Suspended => "suspended",
        LicenseState::ProvisionallySuspended => "provisionally_suspended",
        LicenseState::Lapsed => "lapsed",
        LicenseState::Revoked => "revoked",
    }
}

pub fn parse_state(s: &str) -> Option<LicenseState> {
    LICENSE_STATES
        .iter()
        .copied()
        .find(|st| state_str(*st) == s)
}

/// Lapsed or revoked: the license ended, which matters for a relink after cancellation.
pub fn is_ended(state: LicenseState) -> bool {
    matches!(state, LicenseState::Lapsed | LicenseState::Revoked)
}

pub(crate) fn linked_via_str(v: LinkedVia) -> &'static str {
    match v {
        LinkedVia::Counter => "counter",
        LinkedVia::OneStop => "one_stop",
    }
}

pub(crate) fn parse_linked_via(s: &str) -> Option<LinkedVia> {
    match s {
        "counter" => Some(LinkedVia::Counter),
        "one_stop" => Some(LinkedVia::OneStop),
        _ => None,
    }
}

/// How the holder's identity was established for a binding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityCheck {
    /// Name and birth date matched automatically.
    Automatic,
    /// The name uses substitute characters; staff confirmed the holder.
    StaffConfirmed,
    /// Established by another procedure (the one-stop start procedure).
    External,
}

impl IdentityCheck {
    pub fn as_str(self) -> &'static str {
        match self {
            IdentityCheck::Automatic => "automatic",
            IdentityCheck::StaffConfirmed => "staff_confirmed",
            IdentityCheck::External => "external",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<IdentityCheck> {
        [
            IdentityCheck::Automatic,
            IdentityCheck::StaffConfirmed,
            IdentityCheck::External,
        ]
        .into_iter()
        .find(|c| c.as_str() == s)
    }
}

// ---------------------------------------------------------------------------------------
// Rows

/// A license record as the police system has it. The name and birth date are personal
/// data: `Debug` hides them and they are wiped when the value is dropped.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct LicenseRecord {
    /// The 12 ASCII digits.
    pub license_number: String,
    #[zeroize(skip)]
    pub holding: Holding,
    pub name: String,
    /// `YYYY-MM-DD`.
    pub birth_date: String,
    #[zeroize(skip)]
    pub state: LicenseState,
}

impl fmt::Debug for LicenseRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LicenseRecord")
            .field("license_number", &self.license_number)
            .field("holding", &self.holding)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

/// A license record with the store's bookkeeping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredLicense {
    pub record: LicenseRecord,
    pub lapsed_or_revoked_at: Option<String>,
    pub updated_at: String,
}

/// What a new binding stores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewBinding {
    pub binding_id: String,
    pub license_number: String,
    pub issuer_key_id: Option<String>,
    pub certificate_serial: String,
    pub certificate_not_before: String,
    pub certificate_not_after: String,
    pub terminal_id: String,
    pub operator_id: Option<String>,
    pub linked_via: LinkedVia,
    pub holding_at_link: Holding,
    pub identity_check: IdentityCheck,
    pub linked_at: String,
    pub statement_time: Option<String>,
    /// Lower-case hex; `None` for bindings that did not come through this API.
    pub statement_sha256: Option<String>,
    /// How the certificate's revocation status was checked when the binding was stored.
    pub revocation: RevocationCheck,
}

/// How a binding's certificate was checked for revocation when it was stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevocationCheck {
    pub result: RevocationResult,
    /// `ocsp URL` or `crl FILE_OR_URL` that answered; for `unchecked`, what was tried.
    pub source: Option<String>,
    pub checked_at: Option<String>,
}

impl RevocationCheck {
    pub fn off() -> RevocationCheck {
        RevocationCheck {
            result: RevocationResult::Off,
            source: None,
            checked_at: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevocationResult {
    /// A source said the certificate is good.
    Good,
    /// `--revocation prefer` and no source answered.
    Unchecked,
    /// `--revocation off`.
    Off,
}

impl RevocationResult {
    pub fn as_str(self) -> &'static str {
        match self {
            RevocationResult::Good => "good",
            RevocationResult::Unchecked => "unchecked",
            RevocationResult::Off => "off",
        }
    }
}

/// Where a binding stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindingState {
    Active,
    /// Its certificate was found revoked or expired: the first stage is needed again.
    Stale,
    /// Replaced by a new first stage (`superseded_by`).
    Superseded,
    Cancelled,
}

impl BindingState {
    pub fn as_str(self) -> &'static str {
        match self {
            BindingState::Active => "active",
            BindingState::Stale => "stale",
            BindingState::Superseded => "superseded",
            BindingState::Cancelled => "cancelled",
        }
    }
}

/// Why a binding went stale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StaleReason {
    CertificateRevoked,
    CertificateExpired,
}

impl StaleReason {
    pub fn as_str(self) -> &'static str {
        match self {
            StaleReason::CertificateRevoked => "certificate_revoked",
            StaleReason::CertificateExpired => "certificate_expired",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    pub binding_id: String,
    pub license_number: String,
    pub issuer_key_id: Option<String>,
    pub certificate_serial: String,
    pub certificate_not_before: String,
    pub certificate_not_after: String,
    pub terminal_id: String,
    pub operator_id: Option<String>,
    pub linked_via: LinkedVia,
    pub holding_at_link: Holding,
    pub identity_check: IdentityCheck,
    pub linked_at: String,
    pub statement_time: Option<String>,
    pub statement_sha256: Option<String>,
    pub cancelled_at: Option<String>,
    /// §6: the cancelled binding this one restored from Mynaportal.
    pub relinked_from: Option<String>,
    /// `good`, `unchecked` or `off`; `None` for bindings stored before revocation checks.
    pub revocation_check: Option<String>,
    pub revocation_source: Option<String>,
    pub revocation_checked_at: Option<String>,
    /// The last re-check ([`crate::recheck`]).
    pub rechecked_at: Option<String>,
    pub stale_at: Option<String>,
    /// `certificate_revoked` or `certificate_expired`.
    pub stale_reason: Option<String>,
    /// With `certificate_revoked`: the RFC 5280 reason and the time of the revocation.
    pub revocation_reason: Option<String>,
    pub revoked_at: Option<String>,
    pub superseded_at: Option<String>,
    /// The binding that replaced this one.
    pub superseded_by: Option<String>,
}

impl Binding {
    pub fn state(&self) -> BindingState {
        if self.cancelled_at.is_some() {
            BindingState::Cancelled
        } else if self.superseded_at.is_some() {
            BindingState::Superseded
        } else if self.stale_at.is_some() {
            BindingState::Stale
        } else {
            BindingState::Active
        }
    }

    pub fn is_active(&self) -> bool {
        self.state() == BindingState::Active
    }

    /// The license's current binding (active or stale): neither cancelled nor superseded.
    pub fn is_current(&self) -> bool {
        matches!(self.state(), BindingState::Active | BindingState::Stale)
    }

    /// Active, with a certificate that had not expired at `now` (RFC 3339 UTC text): only
    /// such a binding makes a new first stage `already_linked`.
    pub fn is_active_and_valid(&self, now: &str) -> bool {
        self.is_active() && self.certificate_not_after.as_str() >= now
    }
}

/// Which operation an audit row is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Submit,
    Cancel,
    OneStop,
    /// Mynaportal sent the card-info basic-4 (second stage).
    SecondStageBasic4,
    /// The holder's signed submission of the second stage.
    SecondStageSignature,
    /// A license's status was read (`GET /v1/licenses/{number}/status`).
    Status,
    /// §8: an administrator suspended linking for a license.
    Suspend,
    /// §8: an administrator lifted a suspension.
    LiftSuspension,
    /// §8: an administrator erased what was collected for a license.
    Erase,
    /// A binding's certificate was checked again ([`crate::recheck`]).
    Recheck,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Submit => "submit",
            Operation::Cancel => "cancel",
            Operation::OneStop => "one_stop",
            Operation::SecondStageBasic4 => "second_stage_basic4",
            Operation::SecondStageSignature => "second_stage_signature",
            Operation::Status => "status",
            Operation::Suspend => "suspend",
            Operation::LiftSuspension => "lift_suspension",
            Operation::Erase => "erase",
            Operation::Recheck => "recheck",
        }
    }
}

/// One decision. Identifiers only: no personal data, no request content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub at: String,
    pub operation: Operation,
    pub code: Code,
    pub terminal_id: Option<String>,
    pub license_number: Option<String>,
    pub binding_id: Option<String>,
}

/// An audit row as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRow {
    pub id: i64,
    pub at: String,
    pub operation: String,
    pub decision: String,
    pub code: String,
    pub http_status: u16,
    pub terminal_id: Option<String>,
    pub license_number: Option<String>,
    pub binding_id: Option<String>,
}

/// Who a rate limit applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SubjectKind {
    Terminal,
    License,
}

impl SubjectKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SubjectKind::Terminal => "terminal",
            SubjectKind::License => "license",
        }
    }
}

/// A failure to count against a subject, and the count at which it gets flagged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureCount<'a> {
    pub kind: SubjectKind,
    pub subject: &'a str,
    pub threshold: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AbuseFlag {
    pub subject_kind: String,
    pub subject: String,
    pub first_flagged_at: String,
    pub last_flagged_at: String,
    pub failures: u32,
    pub last_code: String,
}

/// What inserting a binding did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InsertOutcome {
    /// Stored; a stale binding of the license (or an active one whose certificate expired)
    /// is superseded by it in the same transaction.
    Created(Binding),
    /// The same statement was stored before and its binding is active.
    Repeated(Binding),
    /// The same statement belongs to a binding that was cancelled since.
    StatementReused(Binding),
    /// Another binding of this license is active.
    AlreadyLinked(Binding),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelOutcome {
    Cancelled(Binding),
    AlreadyCancelled(Binding),
    NotFound,
}

/// What an import changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UpsertCounts {
    pub inserted: usize,
    pub updated: usize,
    pub unchanged: usize,
}

/// Mynaportal's card-info basic-4 as the store keeps it: per field the HMAC-SHA-256
/// (hexadecimal) of the normalised value under the server's basic-4 key, and that key's id
/// ([`crate::basic4_key`]). Never the values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Basic4Digests {
    pub key_id: String,
    pub name: String,
    pub address: String,
    pub birth_date: String,
    pub sex: String,
}

/// A second stage waiting for the holder's signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingSecondStage {
    pub second_stage_id: String,
    pub license_number: String,
    /// The active first-stage binding when the basic-4 arrived, or for a relink the
    /// cancelled binding it restores.
    pub binding_id: String,
    /// The authenticated Mynaportal caller.
    pub caller_id: String,
    pub basic4: Basic4Digests,
    pub created_at: String,
    pub expires_at: String,
    /// §6: begun for a cancelled binding (set by the store when it stores the row).
    pub relink: bool,
}

/// What storing a pending second stage did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PendingOutcome {
    /// Stored; `replaced` when an earlier pending one of the license was deleted for it.
    Stored { binding_id: String, replaced: bool },
    /// The license has no active first-stage binding.
    FirstStageMissing,
    /// The active binding already completed the second stage.
    AlreadyDone { binding_id: String },
}

/// The second stage of a binding: identifiers only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MynaportalLink {
    pub linked_at: String,
    pub certificate_serial: String,
    pub issuer_key_id: Option<String>,
    pub statement_sha256: String,
}

/// §6: a cancelled binding restored by the second stage alone. The new binding keeps the
/// cancelled one's first-stage identifiers (certificate, terminal, how it was linked and how
/// the identity was established) and records the second stage's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relink {
    pub new_binding_id: String,
    /// The most recently cancelled binding of the license.
    pub cancelled_binding_id: String,
    /// What the holder carries now.
    pub holding_at_link: Holding,
    pub link: MynaportalLink,
}

/// What deciding a pending second stage did. Its row is gone in every case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FinishOutcome {
    /// The binding is now linked with Mynaportal.
    Linked,
    /// Deleted without linking (a rejection).
    Deleted,
    /// No such pending row (expired, decided by another request, or never existed).
    NotPending,
    /// The binding was cancelled or completed meanwhile; the row was deleted.
    BindingChanged,
}
