//! §8 of the terms: the police's defensive measures, taken by administrators when a prohibited
//! act is evident or suspected. Linking can be suspended for a license (first and second
//! stages are then refused `service_suspended` until an administrator lifts it), and what was
//! collected from the holder for a license can be erased. Every action, and every refusal of
//! one, is audited with the administrator's id; the audit records that an erasure happened
//! and how much it erased, never the erased values.

use mynalink_link::license::LicenseNumber;
use mynalink_link::statement::format_time;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::code::{Code, Rejection};
use crate::store::{AuditEntry, Operation, Store, StoreError, SuspendOutcome, Suspension};

/// Longest reason kept with a suspension, in characters.
pub const MAX_REASON_CHARS: usize = 500;

/// `POST /v1/licenses/{number}/suspension`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuspensionRequest {
    /// Why, for the administrators who read it later (a case number, not personal data).
    pub reason: String,
}

/// The suspension in force: the answer to a suspension, and part of an administrator's
/// status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SuspensionBody {
    pub code: String,
    pub license_number: String,
    pub suspended_at: String,
    pub reason: String,
    pub suspended_by: String,
}

/// `DELETE /v1/licenses/{number}/suspension`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiftedBody {
    pub code: String,
    pub license_number: String,
    pub lifted_at: String,
}

/// `DELETE /v1/licenses/{number}/collected`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErasedBody {
    pub code: String,
    pub license_number: String,
    pub erased_at: String,
    pub bindings_erased: u64,
    pub second_stages_erased: u64,
}

/// A suspension answered: `created` when it is new (201), else the one in force (200).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suspended {
    pub created: bool,
    pub body: SuspensionBody,
}

fn audit(operation: Operation, admin: &str, now: &str) -> AuditEntry {
    AuditEntry {
        at: now.to_string(),
        operation,
        code: Code::MalformedRequest,
        terminal_id: Some(admin.to_string()),
        license_number: None,
        binding_id: None,
    }
}

/// The license the path names: canonical and on record; a refusal is audited.
fn license_on_record(
    store: &mut Store,
    number: &str,
    entry: &mut AuditEntry,
) -> Result<Result<String, Rejection>, StoreError> {
    let license = match LicenseNumber::parse(number) {
        Ok((license, _)) if license.as_str() == number => license.as_str().to_string(),
        _ => {
            return refuse(
                store,
                entry,
                Rejection::with_detail(
                    Code::LicenseNumberInvalid,
                    "the path needs the canonical 12-digit license number",
                ),
            )
        }
    };
    entry.license_number = Some(license.clone());
    if store.license(&license)?.is_none() {
        return refuse(store, entry, Rejection::new(Code::LicenseNotFound));
    }
    Ok(Ok(license))
}

fn refuse<T>(
    store: &mut Store,
    entry: &mut AuditEntry,
    rejection: Rejection,
) -> Result<Result<T, Rejection>, StoreError> {
    entry.code = rejection.code;
    store.audit_only(entry)?;
    Ok(Err(rejection))
}

fn suspension_body(suspension: Suspension) -> SuspensionBody {
    SuspensionBody {
        code: Code::Suspended.as_str().to_string(),
        license_number: suspension.license_number,
        suspended_at: suspension.suspended_at,
        reason: suspension.reason,
        suspended_by: suspension.suspended_by,
    }
}

/// Suspends linking for a license. Suspending it again changes nothing: the first
/// suspension's time and reason stand.
pub fn suspend(
    store: &mut Store,
    number: &str,
    request: &SuspensionRequest,
    admin: &str,
    now: OffsetDateTime,
) -> Result<Result<Suspended, Rejection>, StoreError> {
    let now = format_time(now);
    let mut entry = audit(Operation::Suspend, admin, &now);
    let license = match license_on_record(store, number, &mut entry)? {
        Ok(license) => license,
        Err(rejection) => return Ok(Err(rejection)),
    };
    let reason = request.reason.trim();
    if reason.is_empty()
        || reason.chars().count() > MAX_REASON_CHARS
        || reason.chars().any(char::is_control)
    {
        return refuse(
            store,
            &mut entry,
            Rejection::with_detail(
                Code::MalformedRequest,
                format!(
                    "reason must be 1 to {MAX_REASON_CHARS} characters on one line (a case \
                     reference, not personal data)"
                ),
            ),
        );
    }
    entry.code = Code::Suspended;
    let suspension = Suspension {
        license_number: license,
        suspended_at: now,
        reason: reason.to_string(),
        suspended_by: admin.to_string(),
    };
    Ok(Ok(match store.suspend(&suspension, &entry)? {
        SuspendOutcome::Suspended(s) => Suspended {
            created: true,
            body: suspension_body(s),
        },
        SuspendOutcome::AlreadySuspended(s) => Suspended {
            created: false,
            body: suspension_body(s),
        },
    }))
}

/// Lifts a suspension; `not_suspended` (404) when there is none.
pub fn lift(
    store: &mut Store,
    number: &str,
    admin: &str,
    now: OffsetDateTime,
) -> Result<Result<LiftedBody, Rejection>, StoreError> {
    let now = format_time(now);
    let mut entry = audit(Operation::LiftSuspension, admin, &now);
    let license = match license_on_record(store, number, &mut entry)? {
        Ok(license) => license,
        Err(rejection) => return Ok(Err(rejection)),
    };
    let mut lifted = entry.clone();
    lifted.code = Code::SuspensionLifted;
    let mut not_suspended = entry;
    not_suspended.code = Code::NotSuspended;
    Ok(
        match store.lift_suspension(&license, &lifted, &not_suspended)? {
            Some(_) => Ok(LiftedBody {
                code: Code::SuspensionLifted.as_str().to_string(),
                license_number: license,
                lifted_at: now,
            }),
            None => Err(Rejection::new(Code::NotSuspended)),
        },
    )
}

/// Erases what was collected for a license (see [`Store::erase_collected`]).
pub fn erase(
    store: &mut Store,
    number: &str,
    admin: &str,
    now: OffsetDateTime,
) -> Result<Result<ErasedBody, Rejection>, StoreError> {
    let now = format_time(now);
    let mut entry = audit(Operation::Erase, admin, &now);
    let license = match license_on_record(store, number, &mut entry)? {
        Ok(license) => license,
        Err(rejection) => return Ok(Err(rejection)),
    };
    entry.code = Code::CollectedErased;
    let erased = store.erase_collected(&license, &now, &entry)?;
    Ok(Ok(ErasedBody {
        code: Code::CollectedErased.as_str().to_string(),
        license_number: license,
        erased_at: now,
        bindings_erased: erased.bindings,
        second_stages_erased: erased.second_stages,
    }))
}

/// The refusal for a first or second stage of a suspended license.
pub fn service_suspended() -> Rejection {
    Rejection::with_detail(
        Code::ServiceSuspended,
        "linking for this license is suspended (§8); the license center can say more",
    )
}
