//! The second stage (§4): Mynaportal's basic-4, as keyed hashes, waiting for the holder's
//! signature, and the binding's mark once the two were compared.

use super::audit::{charge_failures, insert_audit};
use super::bindings::{active_binding_in, current_binding_in, last_cancelled_in, query_binding};
use super::model::*;
use super::sql::{args, Conn};
use super::{Store, StoreError};
use crate::code::Code;

fn mynaportal_link_in(
    conn: &mut Conn,
    binding_id: &str,
) -> Result<Option<MynaportalLink>, StoreError> {
    let row = conn.query_opt(
        "SELECT mynaportal_linked_at, mynaportal_certificate_serial,
             mynaportal_issuer_key_id, mynaportal_statement_sha256
         FROM bindings WHERE binding_id = ?1",
        args![binding_id],
    )?;
    let Some(mut row) = row else {
        return Ok(None);
    };
    Ok(
        match (
            row.opt_text(0)?,
            row.opt_text(1)?,
            row.opt_text(2)?,
            row.opt_text(3)?,
        ) {
            (Some(linked_at), Some(certificate_serial), issuer_key_id, Some(sha)) => {
                Some(MynaportalLink {
                    linked_at,
                    certificate_serial,
                    issuer_key_id,
                    statement_sha256: sha,
                })
            }
            _ => None,
        },
    )
}

impl Store {
    /// Deletes pending second stages that expired at or before `now`; returns how many.
    pub fn purge_expired_second_stage(&mut self, now: &str) -> Result<usize, StoreError> {
        let deleted = self.conn.execute(
            "DELETE FROM second_stage_pending WHERE expires_at <= ?1",
            args![now],
        )?;
        Ok(usize::try_from(deleted).unwrap_or(usize::MAX))
    }

    /// Stores the hashes of Mynaportal's basic-4 for a license that has an active first-stage
    /// binding, replacing a pending one of the same license, and audits the decision with the
    /// code that fits the outcome (`audit.code` is used for a stored row). Without an active
    /// binding, `relink_from` (§6: the cancelled binding the rules allow to restore) is the
    /// binding the row waits for, as long as it is still the license's latest cancelled one.
    pub fn insert_second_stage(
        &mut self,
        new: &PendingSecondStage,
        audit: AuditEntry,
        missing: Code,
        done: Code,
        relink_from: Option<&str>,
    ) -> Result<PendingOutcome, StoreError> {
        self.write(|conn| {
            let mut audit = audit.clone();
            conn.execute(
                "DELETE FROM second_stage_pending WHERE expires_at <= ?1",
                args![&new.created_at],
            )?;
            let active = match active_binding_in(conn, &new.license_number)? {
                Some(active) => Some(active),
                // §6: no active binding, so the row restores the cancelled one.
                None => match relink_from {
                    Some(id) => last_cancelled_in(conn, &new.license_number)?
                        .filter(|cancelled| cancelled.binding_id == id),
                    None => None,
                },
            };
            let Some(active) = active else {
                // A row left from a binding cancelled since is of no use any more.
                conn.execute(
                    "DELETE FROM second_stage_pending WHERE license_number = ?1",
                    args![&new.license_number],
                )?;
                audit.code = missing;
                insert_audit(conn, &audit)?;
                return Ok(PendingOutcome::FirstStageMissing);
            };
            audit.binding_id = Some(active.binding_id.clone());
            // A cancelled binding may have completed the second stage before: it is
            // restored all the same.
            if active.is_active() && mynaportal_link_in(conn, &active.binding_id)?.is_some() {
                audit.code = done;
                insert_audit(conn, &audit)?;
                return Ok(PendingOutcome::AlreadyDone {
                    binding_id: active.binding_id,
                });
            }
            let replaced = conn.execute(
                "DELETE FROM second_stage_pending WHERE license_number = ?1",
                args![&new.license_number],
            )? > 0;
            let relink = i64::from(!active.is_active());
            conn.execute(
                "INSERT INTO second_stage_pending (second_stage_id, license_number, binding_id,
                     caller_id, basic4_key_id, name_hmac, address_hmac, birth_date_hmac,
                     sex_hmac, created_at, expires_at, relink)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                args![
                    &new.second_stage_id,
                    &new.license_number,
                    &active.binding_id,
                    &new.caller_id,
                    &new.basic4.key_id,
                    &new.basic4.name,
                    &new.basic4.address,
                    &new.basic4.birth_date,
                    &new.basic4.sex,
                    &new.created_at,
                    &new.expires_at,
                    relink
                ],
            )?;
            insert_audit(conn, &audit)?;
            Ok(PendingOutcome::Stored {
                binding_id: active.binding_id,
                replaced,
            })
        })
    }

    /// A pending second stage that has not expired at `now`.
    pub fn pending_second_stage(
        &mut self,
        second_stage_id: &str,
        now: &str,
    ) -> Result<Option<PendingSecondStage>, StoreError> {
        let row = self.conn.query_opt(
            "SELECT second_stage_id, license_number, binding_id, caller_id, basic4_key_id,
                 name_hmac, address_hmac, birth_date_hmac, sex_hmac, created_at, expires_at,
                 relink
             FROM second_stage_pending WHERE second_stage_id = ?1 AND expires_at > ?2",
            args![second_stage_id, now],
        )?;
        let Some(mut r) = row else {
            return Ok(None);
        };
        Ok(Some(PendingSecondStage {
            second_stage_id: r.text(0)?,
            license_number: r.text(1)?,
            binding_id: r.text(2)?,
            caller_id: r.text(3)?,
            basic4: Basic4Digests {
                key_id: r.text(4)?,
                name: r.text(5)?,
                address: r.text(6)?,
                birth_date: r.text(7)?,
                sex: r.text(8)?,
            },
            created_at: r.text(9)?,
            expires_at: r.text(10)?,
            relink: r.int(11)? != 0,
        }))
    }

    /// Decides a pending second stage in one transaction: its row (the hashes of the
    /// card-info basic-4) is deleted, the binding is marked
    /// when `link` is given, and the decision is audited. `audit.code` is used as given
    /// unless the row or the binding changed meanwhile, when `not_pending` or
    /// `binding_changed` is recorded instead. A refusal is counted against `failures` as
    /// [`Store::record_decision`] does.
    #[allow(clippy::too_many_arguments)]
    pub fn finish_second_stage(
        &mut self,
        second_stage_id: &str,
        link: Option<(&str, &MynaportalLink)>,
        audit: AuditEntry,
        not_pending: Code,
        binding_changed: Code,
        failures: &[FailureCount<'_>],
        window_start: &str,
    ) -> Result<FinishOutcome, StoreError> {
        self.write(|conn| {
            let mut audit = audit.clone();
            let deleted = conn.execute(
                "DELETE FROM second_stage_pending WHERE second_stage_id = ?1",
                args![second_stage_id],
            )?;
            let outcome = match link {
                _ if deleted == 0 => {
                    if link.is_some() {
                        audit.code = not_pending;
                    }
                    FinishOutcome::NotPending
                }
                None => FinishOutcome::Deleted,
                Some((binding_id, link)) => {
                    let updated = conn.execute(
                        "UPDATE bindings SET mynaportal_linked_at = ?2,
                             mynaportal_certificate_serial = ?3, mynaportal_issuer_key_id = ?4,
                             mynaportal_statement_sha256 = ?5
                         WHERE binding_id = ?1 AND cancelled_at IS NULL
                             AND superseded_at IS NULL AND stale_at IS NULL
                             AND mynaportal_linked_at IS NULL",
                        args![
                            binding_id,
                            &link.linked_at,
                            &link.certificate_serial,
                            &link.issuer_key_id,
                            &link.statement_sha256
                        ],
                    )?;
                    if updated == 1 {
                        FinishOutcome::Linked
                    } else {
                        audit.code = binding_changed;
                        FinishOutcome::BindingChanged
                    }
                }
            };
            insert_audit(conn, &audit)?;
            if link.is_none() {
                charge_failures(conn, &audit, failures, window_start)?;
            }
            Ok(outcome)
        })
    }

    /// §6: decides a pending second stage that restores a cancelled binding, in one
    /// transaction: the pending row is deleted, a new binding is stored from the cancelled
    /// one's first-stage identifiers and the second stage's (see [`Relink`]), and the
    /// decision is audited. Unless the license still has no active binding and the
    /// cancelled one is still its latest, nothing is stored (`BindingChanged`, audited with
    /// `binding_changed`); a missing row is `NotPending` (`not_pending`).
    pub fn relink_second_stage(
        &mut self,
        second_stage_id: &str,
        relink: &Relink,
        audit: AuditEntry,
        not_pending: Code,
        binding_changed: Code,
    ) -> Result<FinishOutcome, StoreError> {
        self.write(|conn| {
            let mut audit = audit.clone();
            let license = conn
                .query_opt(
                    "SELECT license_number FROM second_stage_pending WHERE second_stage_id = ?1",
                    args![second_stage_id],
                )?
                .map(|mut r| r.text(0))
                .transpose()?;
            conn.execute(
                "DELETE FROM second_stage_pending WHERE second_stage_id = ?1",
                args![second_stage_id],
            )?;
            let Some(license) = license else {
                audit.code = not_pending;
                insert_audit(conn, &audit)?;
                return Ok(FinishOutcome::NotPending);
            };
            let still_latest = last_cancelled_in(conn, &license)?
                .is_some_and(|b| b.binding_id == relink.cancelled_binding_id);
            // A stale binding still holds the license's one current place.
            if current_binding_in(conn, &license)?.is_some() || !still_latest {
                audit.code = binding_changed;
                insert_audit(conn, &audit)?;
                return Ok(FinishOutcome::BindingChanged);
            }
            conn.execute(
                "INSERT INTO bindings (binding_id, license_number, issuer_key_id,
                     certificate_serial, certificate_not_before, certificate_not_after,
                     terminal_id, operator_id, linked_via, holding_at_link, identity_check,
                     linked_at, statement_time, statement_sha256, cancelled_at,
                     mynaportal_linked_at, mynaportal_certificate_serial,
                     mynaportal_issuer_key_id, mynaportal_statement_sha256, relinked_from)
                 SELECT ?1, license_number, issuer_key_id, certificate_serial,
                     certificate_not_before, certificate_not_after, terminal_id, operator_id,
                     linked_via, ?2, identity_check, ?3, NULL, NULL, NULL, ?3, ?4, ?5, ?6,
                     binding_id
                 FROM bindings WHERE binding_id = ?7",
                args![
                    &relink.new_binding_id,
                    holding_str(relink.holding_at_link),
                    &relink.link.linked_at,
                    &relink.link.certificate_serial,
                    &relink.link.issuer_key_id,
                    &relink.link.statement_sha256,
                    &relink.cancelled_binding_id
                ],
            )?;
            audit.binding_id = Some(relink.new_binding_id.clone());
            audit.license_number = Some(license);
            insert_audit(conn, &audit)?;
            Ok(FinishOutcome::Linked)
        })
    }

    /// The second stage of a binding, if it was completed.
    pub fn mynaportal_link(
        &mut self,
        binding_id: &str,
    ) -> Result<Option<MynaportalLink>, StoreError> {
        mynaportal_link_in(&mut self.conn, binding_id)
    }

    /// The binding whose second stage was completed with this statement.
    pub fn binding_by_mynaportal_statement(
        &mut self,
        sha256_hex: &str,
    ) -> Result<Option<Binding>, StoreError> {
        query_binding(
            &mut self.conn,
            "mynaportal_statement_sha256 = ?1",
            sha256_hex,
        )
    }
}
