//! Getting a signed binding to the backend without ever losing it: written to the outbox
//! first, uploaded, and removed only when the backend has decided (linked, already linked, or
//! a final rejection). When the backend cannot decide now, the entry stays for a later
//! attempt with backoff.
//!
//! A refusal of the terminal's own credentials (`unauthenticated`, `credential_not_allowed`)
//! is not a decision about the binding: the entry stays queued until the terminal is
//! configured correctly. Nor is `seal_key_mismatch` (the backend does not hold the key the
//! certificate was sealed to): the entry is held for an operator, never deleted.

use crate::seal::RecipientKey;
use base64::Engine;
use time::OffsetDateTime;

use crate::api::{ApiError, BindingRequest, LinkedVia};
use crate::backend::{Backend, Submitted};
use crate::outbox::{EntryId, EntryOptions, HoldReason, Outbox, OutboxError, PendingEntry};
use crate::session::SignedStatement;

/// Backend codes that refuse the terminal rather than the binding.
pub const CREDENTIAL_CODES: [&str; 2] = ["unauthenticated", "credential_not_allowed"];

/// The backend's code for a sealed certificate it cannot open because it was sealed to
/// another key (or the backend has no seal key): not a decision about the binding.
pub const SEAL_KEY_MISMATCH: &str = "seal_key_mismatch";

/// What became of one binding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    Linked {
        binding_id: String,
        repeated: bool,
    },
    AlreadyLinked {
        via: Option<LinkedVia>,
    },
    /// A final decision: the entry was removed.
    Rejected(ApiError),
    /// Still in the outbox (backend unreachable, 5xx, 429); the reason is for the operator.
    Queued {
        reason: String,
        next_attempt_at: OffsetDateTime,
    },
    /// The backend refused this terminal's credentials; the binding stays in the outbox
    /// and goes out once the terminal's token is fixed.
    CredentialsRefused {
        error: ApiError,
        next_attempt_at: OffsetDateTime,
    },
    /// Kept in the outbox for an operator and not retried on its own (`error`: the
    /// backend's answer that made it so, when there was one).
    Held {
        reason: HoldReason,
        error: Option<ApiError>,
    },
}

impl Delivery {
    /// The headless `outcome`.
    pub fn outcome(&self) -> &'static str {
        match self {
            Delivery::Linked { .. } => "linked",
            Delivery::AlreadyLinked { .. } => "already_linked",
            Delivery::Rejected(_) | Delivery::CredentialsRefused { .. } => "failed",
            Delivery::Queued { .. } => "queued",
            Delivery::Held { .. } => "held",
        }
    }

    /// Whether the entry is still queued after this delivery (a held entry is in the
    /// outbox too, but waits for an operator).
    pub fn still_queued(&self) -> bool {
        matches!(
            self,
            Delivery::Queued { .. } | Delivery::CredentialsRefused { .. }
        )
    }
}

/// The upload body for an outbox entry: the certificate stays sealed to the backend; the
/// staff confirmation and the CA certificate are the ones stored with the entry.
pub fn request_for(entry: &PendingEntry) -> BindingRequest {
    let b64 = base64::engine::general_purpose::STANDARD;
    BindingRequest {
        statement: b64.encode(&entry.statement),
        signature: b64.encode(&entry.signature),
        certificate: None,
        sealed_certificate: Some(entry.sealed_certificate.to_json()),
        ca_certificate: entry.ca_certificate.as_ref().map(|der| b64.encode(der)),
        staff_confirmed_identity: entry.staff_confirmed_identity,
    }
}

/// Writes the binding to the outbox (durably, with `options`) and then tries to upload it
/// once. The same statement held for an operator earlier stays held and is not sent.
pub fn submit(
    outbox: &mut Outbox,
    backend: &Backend,
    signed: &SignedStatement,
    recipient: &RecipientKey,
    options: &EntryOptions,
) -> Result<(EntryId, Delivery), OutboxError> {
    let (id, _) = outbox.add_with(signed, recipient, options, OffsetDateTime::now_utc())?;
    match outbox.get(id)? {
        Some(entry) => Ok((id, deliver(outbox, backend, &entry)?)),
        None => match outbox.held(id)? {
            Some(held) => Ok((
                id,
                Delivery::Held {
                    reason: held.reason,
                    error: None,
                },
            )),
            None => Err(OutboxError::NotFound(id)),
        },
    }
}

/// Uploads one entry and settles it in the outbox according to the answer; logs the
/// attempt (entry id, outcome, the backend's code, time), never the entry's content.
pub fn deliver(
    outbox: &mut Outbox,
    backend: &Backend,
    entry: &PendingEntry,
) -> Result<Delivery, OutboxError> {
    let started = std::time::Instant::now();
    let result = settle(outbox, backend, entry);
    let ms = started.elapsed().as_millis() as u64;
    match &result {
        Ok(delivery) => {
            let code = match delivery {
                Delivery::Rejected(error) | Delivery::CredentialsRefused { error, .. } => {
                    Some(error.code.as_str())
                }
                Delivery::Held { reason, .. } => Some(reason.as_str()),
                Delivery::Queued { reason, .. } => Some(reason.as_str()),
                Delivery::Linked { .. } | Delivery::AlreadyLinked { .. } => None,
            };
            tracing::info!(
                target: "mynalink::upload",
                entry = %entry.id,
                outcome = delivery.outcome(),
                code,
                ms,
                "upload"
            );
        }
        Err(e) => tracing::error!(
            target: "mynalink::upload",
            entry = %entry.id,
            ms,
            error = %e,
            "outbox failed while settling an upload"
        ),
    }
    result
}

fn settle(
    outbox: &mut Outbox,
    backend: &Backend,
    entry: &PendingEntry,
) -> Result<Delivery, OutboxError> {
    let delivery = match backend.submit(&request_for(entry)) {
        Ok(Submitted::Linked { accepted, repeated }) => Delivery::Linked {
            binding_id: accepted.binding_id,
            repeated,
        },
        Ok(Submitted::AlreadyLinked { via }) => Delivery::AlreadyLinked { via },
        Ok(Submitted::Rejected(error)) if CREDENTIAL_CODES.contains(&error.code.as_str()) => {
            let next_attempt_at = postpone(outbox, entry.id, &error.code)?;
            return Ok(Delivery::CredentialsRefused {
                error,
                next_attempt_at,
            });
        }
        Ok(Submitted::Rejected(error)) if error.code == SEAL_KEY_MISMATCH => {
            let note = match &error.detail {
                Some(detail) => format!("{}: {detail}", error.code),
                None => error.code.clone(),
            };
            let reason = HoldReason::SealKeyMismatch;
            outbox.hold(entry.id, reason, &note, OffsetDateTime::now_utc())?;
            return Ok(Delivery::Held {
                reason,
                error: Some(error),
            });
        }
        Ok(Submitted::Rejected(error)) => Delivery::Rejected(error),
        Err(unavailable) => {
            let next_attempt_at = postpone(outbox, entry.id, &unavailable.0)?;
            return Ok(Delivery::Queued {
                reason: unavailable.0,
                next_attempt_at,
            });
        }
    };
    // The backend decided: nothing is left to retry.
    outbox.remove(entry.id)?;
    Ok(delivery)
}

fn postpone(outbox: &mut Outbox, id: EntryId, reason: &str) -> Result<OffsetDateTime, OutboxError> {
    outbox.record_failure(
        id,
        reason,
        OffsetDateTime::now_utc(),
        &mut rand::thread_rng(),
    )
}

/// Uploads every entry that is due at `now` (`mynalink outbox flush`, the next run).
pub fn flush(
    outbox: &mut Outbox,
    backend: &Backend,
    now: OffsetDateTime,
) -> Result<Vec<(EntryId, Delivery)>, OutboxError> {
    deliver_all(outbox, backend, outbox.due(now)?)
}

/// Uploads every entry now, whether its next attempt is due or not (an operator's
/// "send now").
pub fn flush_all(
    outbox: &mut Outbox,
    backend: &Backend,
) -> Result<Vec<(EntryId, Delivery)>, OutboxError> {
    deliver_all(outbox, backend, outbox.all_pending()?)
}

fn deliver_all(
    outbox: &mut Outbox,
    backend: &Backend,
    entries: Vec<PendingEntry>,
) -> Result<Vec<(EntryId, Delivery)>, OutboxError> {
    let mut results = Vec::with_capacity(entries.len());
    for entry in entries {
        let delivery = deliver(outbox, backend, &entry)?;
        results.push((entry.id, delivery));
    }
    Ok(results)
}
