//! `GET /v1/licenses/{number}/status` and `DELETE /v1/bindings/{id}`.
//!
//! Whether the first stage is needed follows the terms of use:
//! - §2(1): only holders of a マイナ免許証 or マイナ経歴証明書 can link (`not_eligible`);
//! - §4: a record linked by the counter or by the address-change one-stop start procedure
//!   needs nothing more (`already_linked`);
//! - §5: the link stays with the record when what the holder carries changes, so a record
//!   linked under another holding needs nothing either (`carried_over`);
//! - §6: after a cancellation the holder relinks from Mynaportal without the counter
//!   (`relink_from_mynaportal`), unless the license lapsed or was revoked since, in which
//!   case the counter is needed again (`required`);
//! - a binding whose certificate was revoked or expired is stale: the first stage is needed
//!   again (`binding_stale`), and a new one supersedes it;
//! - otherwise the first stage is `required`.
//!
//! Every read is audited (caller, license, time, answer) and limited per caller
//! ([`StatusReadPolicy`]), and each kind of credential is answered what it needs
//! ([`view_for`]): a license's status says whether a holder's license is suspended or
//! revoked, which is not everyone's business.

use mynalink_link::api::{
    BindingState as WireState, Holding, LicenseStatus, ServiceStatus, SuspensionInfo,
};
use mynalink_link::license::LicenseNumber;
use mynalink_link::statement::format_time;
use time::{Duration, OffsetDateTime};

use crate::code::{Code, Rejection};
use crate::store::{
    is_ended, AuditEntry, Binding, CancelOutcome, Operation, StaleReason, Store, StoreError,
    StoredLicense,
};

/// Who asks: the answer and the limit depend on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallerKind {
    Terminal,
    Mynaportal,
    Admin,
}

/// How many status reads each kind of caller has answered per window. A counter looks up
/// one holder every few minutes; Mynaportal is one caller for every holder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusReadPolicy {
    pub window: Duration,
    pub per_terminal: u32,
    pub per_mynaportal: u32,
    pub per_admin: u32,
}

impl Default for StatusReadPolicy {
    fn default() -> Self {
        StatusReadPolicy {
            window: Duration::hours(1),
            per_terminal: 120,
            per_mynaportal: 36_000,
            per_admin: 600,
        }
    }
}

impl StatusReadPolicy {
    pub fn limit(&self, kind: CallerKind) -> u32 {
        match kind {
            CallerKind::Terminal => self.per_terminal,
            CallerKind::Mynaportal => self.per_mynaportal,
            CallerKind::Admin => self.per_admin,
        }
    }
}

/// What each kind of credential is told:
/// - a terminal: whether the holder can and must link, how the record is linked, the
///   holding pattern and the services (§2) to explain at the counter — not the license's
///   state as such, nor Mynaportal's side;
/// - Mynaportal: whether the first stage is done and its own second stage, the services —
///   not the holding pattern or the state;
/// - an administrator: everything.
pub fn view_for(kind: CallerKind, mut status: LicenseStatus) -> LicenseStatus {
    match kind {
        CallerKind::Terminal => {
            status.state = None;
            status.second_stage_done = None;
            status.suspension = None;
        }
        CallerKind::Mynaportal => {
            status.holding = None;
            status.state = None;
            status.suspension = None;
        }
        CallerKind::Admin => {}
    }
    status
}

/// `GET /v1/licenses/{number}/status` for a caller: the status as [`view_for`] shapes it,
/// the read audited, and `rate_limited` past the caller's limit. `Ok(Err(_))` is
/// `license_number_invalid`, `license_not_found` or `rate_limited`.
pub fn answer_status(
    store: &mut Store,
    policy: &StatusReadPolicy,
    kind: CallerKind,
    caller: &str,
    number: &str,
    now: OffsetDateTime,
) -> Result<Result<LicenseStatus, Rejection>, StoreError> {
    let result = license_status(store, number, now)?;
    let audit = AuditEntry {
        at: format_time(now),
        operation: Operation::Status,
        code: match &result {
            Ok(_) => Code::StatusAnswered,
            Err(rejection) => rejection.code,
        },
        terminal_id: Some(caller.to_string()),
        // Only a number in its canonical form is recorded, never the raw path text.
        license_number: LicenseNumber::parse(number)
            .ok()
            .map(|(license, _)| license.as_str().to_string()),
        binding_id: None,
    };
    let window_start = format_time(now.checked_sub(policy.window).unwrap_or(now));
    if !store.admit_status_read(&audit, &window_start, policy.limit(kind))? {
        return Ok(Err(Rejection::with_detail(
            Code::RateLimited,
            "too many status reads by this caller; try again later",
        )));
    }
    Ok(result.map(|status| view_for(kind, status)))
}

/// The stable reason codes of [`LicenseStatus::reason`].
pub mod reason {
    pub const NOT_ELIGIBLE: &str = "not_eligible";
    pub const ALREADY_LINKED: &str = "already_linked";
    pub const CARRIED_OVER: &str = "carried_over";
    pub const RELINK_FROM_MYNAPORTAL: &str = "relink_from_mynaportal";
    pub const BINDING_STALE: &str = "binding_stale";
    pub const REQUIRED: &str = "required";
    pub const SERVICE_SUSPENDED: &str = "service_suspended";
}

/// License or driving history: moving between the two is a §5 carry-over.
fn is_history(holding: Holding) -> bool {
    matches!(
        holding,
        Holding::HistoryMynaOnly | Holding::HistoryMynaAndCard | Holding::HistoryCardOnly
    )
}

/// The status of a license record. `Ok(Err(_))` is `license_number_invalid` or
/// `license_not_found` (answered 404 on this endpoint).
pub fn license_status(
    store: &mut Store,
    number: &str,
    now: OffsetDateTime,
) -> Result<Result<LicenseStatus, Rejection>, StoreError> {
    let license = match LicenseNumber::parse(number) {
        Ok((license, _)) => license,
        Err(e) => {
            return Ok(Err(Rejection::with_detail(
                Code::LicenseNumberInvalid,
                e.to_string(),
            )))
        }
    };
    let Some(stored) = store.license(license.as_str())? else {
        return Ok(Err(Rejection::new(Code::LicenseNotFound)));
    };
    let holding = stored.record.holding;
    let state = stored.record.state;
    let eligible = holding.can_link();

    let current = store.current_binding(license.as_str())?;
    // An active binding whose certificate expired since the last re-check is stale too.
    let today = format_time(now);
    let stale = current
        .as_ref()
        .filter(|b| !b.is_active_and_valid(&today))
        .map(|b| {
            b.stale_reason
                .clone()
                .unwrap_or_else(|| StaleReason::CertificateExpired.as_str().to_string())
        });
    let active = current.clone().filter(|_| stale.is_none());
    let binding_state = match (&current, &stale) {
        (Some(_), Some(_)) => Some(WireState::Stale),
        (Some(_), None) => Some(WireState::Active),
        (None, _) => store
            .last_cancelled_binding(license.as_str())?
            .map(|_| WireState::Cancelled),
    };
    let (linked_via, first_stage_needed, reason) = match &active {
        Some(binding) => {
            let same_kind = is_history(binding.holding_at_link) == is_history(holding);
            let reason = if eligible && same_kind {
                reason::ALREADY_LINKED
            } else {
                // Kept with the record while the holder carries no マイナ card, or
                // moved between license and driving history (§5).
                reason::CARRIED_OVER
            };
            (Some(binding.linked_via), false, reason)
        }
        None if !eligible => (None, false, reason::NOT_ELIGIBLE),
        None if stale.is_some() => (None, true, reason::BINDING_STALE),
        None => match relink_candidate(store, &stored)? {
            Some(_) => (None, false, reason::RELINK_FROM_MYNAPORTAL),
            None => (None, true, reason::REQUIRED),
        },
    };

    let second_stage_done = match &active {
        Some(binding) => store.mynaportal_link(&binding.binding_id)?.is_some(),
        None => false,
    };
    // §8: while linking is suspended, no stage can be done.
    let suspension = store.suspension(license.as_str())?;
    let (first_stage_needed, reason) = match &suspension {
        Some(_) => (false, reason::SERVICE_SUSPENDED),
        None => (first_stage_needed, reason),
    };

    Ok(Ok(LicenseStatus {
        license_number: license.as_str().to_string(),
        holding: Some(holding),
        state: Some(state),
        eligible,
        linked: active.is_some(),
        linked_via,
        first_stage_needed,
        reason: reason.to_string(),
        services: ServiceStatus::for_holder(holding, state),
        second_stage_done: Some(second_stage_done),
        service_suspended: suspension.is_some(),
        suspension: suspension.map(|s| SuspensionInfo {
            suspended_at: s.suspended_at,
            reason: s.reason,
            suspended_by: s.suspended_by,
        }),
        binding_state,
        stale_reason: stale,
    }))
}

/// §6: the cancelled binding the holder may restore from Mynaportal with the second stage
/// alone — the license's latest cancelled one, when the license has no active binding, its
/// holder can link, and it has not lapsed or been revoked since the cancellation.
pub fn relink_candidate(
    store: &mut Store,
    stored: &StoredLicense,
) -> Result<Option<Binding>, StoreError> {
    let number = stored.record.license_number.as_str();
    // A stale binding is still the license's: its holder needs the first stage again.
    if !stored.record.holding.can_link() || store.current_binding(number)?.is_some() {
        return Ok(None);
    }
    Ok(store
        .last_cancelled_binding(number)?
        .filter(|cancelled| !ended_since(cancelled, stored)))
}

/// §6: the license lapsed or was revoked after the binding was cancelled (or is so now).
fn ended_since(cancelled: &Binding, stored: &StoredLicense) -> bool {
    if is_ended(stored.record.state) {
        return true;
    }
    match (&stored.lapsed_or_revoked_at, &cancelled.cancelled_at) {
        // Both are RFC 3339 UTC with whole seconds, which order as text.
        (Some(ended), Some(cancelled_at)) => ended > cancelled_at,
        _ => false,
    }
}

/// The result of `DELETE /v1/bindings/{id}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cancellation {
    /// `cancelled`, `already_cancelled` (both 200) or `binding_not_found` (404).
    pub code: Code,
    pub binding: Option<Binding>,
}

/// Cancels a binding (§6); audited with the caller's terminal id when there is one.
pub fn cancel_binding(
    store: &mut Store,
    binding_id: &str,
    caller: Option<&str>,
    now: OffsetDateTime,
) -> Result<Cancellation, StoreError> {
    let now = mynalink_link::statement::format_time(now);
    Ok(match store.cancel_binding(binding_id, &now, caller)? {
        CancelOutcome::Cancelled(b) => Cancellation {
            code: Code::Cancelled,
            binding: Some(b),
        },
        CancelOutcome::AlreadyCancelled(b) => Cancellation {
            code: Code::AlreadyCancelled,
            binding: Some(b),
        },
        CancelOutcome::NotFound => Cancellation {
            code: Code::BindingNotFound,
            binding: None,
        },
    })
}
