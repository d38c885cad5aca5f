//! §8 of the terms in the store: suspensions of linking for a license, and the erasure of
//! what was collected for one. Each change and its audit row commit together.

use super::audit::insert_audit;
use super::model::*;
use super::sql::{args, Conn};
use super::{Store, StoreError, Tx};

/// Linking suspended for a license by an administrator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suspension {
    pub license_number: String,
    pub suspended_at: String,
    pub reason: String,
    pub suspended_by: String,
}

/// What [`Store::suspend`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SuspendOutcome {
    Suspended(Suspension),
    /// It was suspended already: the first suspension (its time and reason) stands.
    AlreadySuspended(Suspension),
}

/// What [`Store::erase_collected`] erased.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Erasure {
    /// Bindings whose certificate identifiers were erased (and that are no longer active).
    pub bindings: u64,
    /// Pending second stages deleted (their card-info basic-4 hashes with them).
    pub second_stages: u64,
}

fn suspension_in(conn: &mut Conn, license_number: &str) -> Result<Option<Suspension>, StoreError> {
    conn.query_opt(
        "SELECT license_number, suspended_at, reason, suspended_by FROM suspensions
         WHERE license_number = ?1",
        args![license_number],
    )?
    .map(|mut row| {
        Ok(Suspension {
            license_number: row.text(0)?,
            suspended_at: row.text(1)?,
            reason: row.text(2)?,
            suspended_by: row.text(3)?,
        })
    })
    .transpose()
}

impl Tx<'_> {
    pub fn suspension(&mut self, license_number: &str) -> Result<Option<Suspension>, StoreError> {
        suspension_in(self.conn, license_number)
    }
}

impl Store {
    pub fn suspension(&mut self, license_number: &str) -> Result<Option<Suspension>, StoreError> {
        suspension_in(&mut self.conn, license_number)
    }

    /// Suspends linking for a license (which must exist), audited with `audit`.
    pub fn suspend(
        &mut self,
        suspension: &Suspension,
        audit: &AuditEntry,
    ) -> Result<SuspendOutcome, StoreError> {
        self.transaction(|tx| {
            if let Some(existing) = suspension_in(tx.conn, &suspension.license_number)? {
                insert_audit(tx.conn, audit)?;
                return Ok(SuspendOutcome::AlreadySuspended(existing));
            }
            tx.conn.execute(
                "INSERT INTO suspensions (license_number, suspended_at, reason, suspended_by)
                 VALUES (?1, ?2, ?3, ?4)",
                args![
                    &suspension.license_number,
                    &suspension.suspended_at,
                    &suspension.reason,
                    &suspension.suspended_by
                ],
            )?;
            insert_audit(tx.conn, audit)?;
            Ok(SuspendOutcome::Suspended(suspension.clone()))
        })
    }

    /// Lifts a suspension; `None` when there was none. Audited with `audit` either way (its
    /// code is the caller's: lifted or not suspended).
    pub fn lift_suspension(
        &mut self,
        license_number: &str,
        lifted: &AuditEntry,
        not_suspended: &AuditEntry,
    ) -> Result<Option<Suspension>, StoreError> {
        self.transaction(|tx| {
            let existing = suspension_in(tx.conn, license_number)?;
            match &existing {
                Some(_) => {
                    tx.conn.execute(
                        "DELETE FROM suspensions WHERE license_number = ?1",
                        args![license_number],
                    )?;
                    insert_audit(tx.conn, lifted)?;
                }
                None => insert_audit(tx.conn, not_suspended)?,
            }
            Ok(existing)
        })
    }

    /// Erases what was collected from the holder for a license: the certificate identifiers
    /// of its bindings (which stop being active) and its pending second stages. The bindings'
    /// rows stay, without those values, so that the audit's binding ids still lead somewhere.
    pub fn erase_collected(
        &mut self,
        license_number: &str,
        now: &str,
        audit: &AuditEntry,
    ) -> Result<Erasure, StoreError> {
        self.transaction(|tx| {
            let second_stages = tx.conn.execute(
                "DELETE FROM second_stage_pending WHERE license_number = ?1",
                args![license_number],
            )?;
            let bindings = tx.conn.execute(
                "UPDATE bindings SET
                     issuer_key_id = NULL,
                     certificate_serial = '',
                     certificate_not_before = '',
                     certificate_not_after = '',
                     statement_time = NULL,
                     statement_sha256 = NULL,
                     mynaportal_linked_at = NULL,
                     mynaportal_certificate_serial = NULL,
                     mynaportal_issuer_key_id = NULL,
                     mynaportal_statement_sha256 = NULL,
                     revocation_check = NULL,
                     revocation_source = NULL,
                     revocation_checked_at = NULL,
                     rechecked_at = NULL,
                     stale_reason = NULL,
                     revocation_reason = NULL,
                     revoked_at = NULL,
                     cancelled_at = COALESCE(cancelled_at, ?2),
                     erased_at = ?2
                 WHERE license_number = ?1 AND erased_at IS NULL",
                args![license_number, now],
            )?;
            insert_audit(tx.conn, audit)?;
            Ok(Erasure {
                bindings,
                second_stages,
            })
        })
    }
}
