//! Getting a signed binding to the backend without ever losing it: written to the outbox
//! first, uploaded, and removed only when the backend has decided (linked, already linked, or
//! a final rejection). When the backend cannot decide now, the entry stays for a later
//! attempt with backoff.

use base64::Engine;
use rsa::RsaPublicKey;
use time::OffsetDateTime;

use crate::api::{ApiError, BindingRequest, LinkedVia};
use crate::backend::{Backend, Submitted};
use crate::outbox::{EntryId, Outbox, OutboxError, PendingEntry};
use crate::session::SignedStatement;

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
    Rejected(ApiError),
    /// Still in the outbox; the reason is for the operator.
    Queued {
        reason: String,
    },
}

impl Delivery {
    /// The headless `outcome`.
    pub fn outcome(&self) -> &'static str {
        match self {
            Delivery::Linked { .. } => "linked",
            Delivery::AlreadyLinked { .. } => "already_linked",
            Delivery::Rejected(_) => "failed",
            Delivery::Queued { .. } => "queued",
        }
    }
}

/// The upload body for an outbox entry: the certificate stays sealed to the backend.
pub fn request_for(entry: &PendingEntry, staff_confirmed_identity: bool) -> BindingRequest {
    let b64 = base64::engine::general_purpose::STANDARD;
    BindingRequest {
        statement: b64.encode(&entry.statement),
        signature: b64.encode(&entry.signature),
        certificate: None,
        sealed_certificate: Some(entry.sealed_certificate.to_json()),
        ca_certificate: None,
        staff_confirmed_identity,
    }
}

/// Writes the binding to the outbox (durably) and then tries to upload it once.
pub fn submit(
    outbox: &mut Outbox,
    backend: &Backend,
    signed: &SignedStatement,
    recipient: &RsaPublicKey,
    staff_confirmed_identity: bool,
) -> Result<(EntryId, Delivery), OutboxError> {
    let (id, _) = outbox.add(signed, recipient)?;
    let entry = outbox
        .due(far_future())?
        .into_iter()
        .find(|e| e.id == id)
        .ok_or(OutboxError::NotFound(id))?;
    let delivery = deliver(outbox, backend, &entry, staff_confirmed_identity)?;
    Ok((id, delivery))
}

/// Uploads one entry and settles it in the outbox according to the answer.
pub fn deliver(
    outbox: &mut Outbox,
    backend: &Backend,
    entry: &PendingEntry,
    staff_confirmed_identity: bool,
) -> Result<Delivery, OutboxError> {
    let delivery = match backend.submit(&request_for(entry, staff_confirmed_identity)) {
        Ok(Submitted::Linked { accepted, repeated }) => Delivery::Linked {
            binding_id: accepted.binding_id,
            repeated,
        },
        Ok(Submitted::AlreadyLinked { via }) => Delivery::AlreadyLinked { via },
        Ok(Submitted::Rejected(error)) => Delivery::Rejected(error),
        Err(unavailable) => {
            outbox.record_failure(
                entry.id,
                &unavailable.0,
                OffsetDateTime::now_utc(),
                &mut rand::thread_rng(),
            )?;
            return Ok(Delivery::Queued {
                reason: unavailable.0,
            });
        }
    };
    // The backend decided: nothing is left to retry.
    outbox.remove(entry.id)?;
    Ok(delivery)
}

/// Uploads every entry that is due now (`mynalink outbox flush`, the background sender).
pub fn flush(
    outbox: &mut Outbox,
    backend: &Backend,
    now: OffsetDateTime,
) -> Result<Vec<(EntryId, Delivery)>, OutboxError> {
    let mut results = Vec::new();
    for entry in outbox.due(now)? {
        let delivery = deliver(outbox, backend, &entry, false)?;
        results.push((entry.id, delivery));
    }
    Ok(results)
}

fn far_future() -> OffsetDateTime {
    OffsetDateTime::now_utc() + time::Duration::days(3650)
}
