//! License records, bindings and their cancellation.

use super::audit::insert_audit;
use super::model::*;
use super::sql::{args, Conn, Row};
use super::{Store, StoreError, Tx};
use crate::code::Code;

pub(crate) const BINDING_COLUMNS: &str = "binding_id, license_number, issuer_key_id, \
     certificate_serial, certificate_not_before, certificate_not_after, terminal_id, \
     operator_id, linked_via, holding_at_link, identity_check, linked_at, statement_time, \
     statement_sha256, cancelled_at, relinked_from, revocation_check, revocation_source, \
     revocation_checked_at, rechecked_at, stale_at, stale_reason, revocation_reason, revoked_at, \
     superseded_at, superseded_by";

/// A binding that is neither cancelled nor superseded (active or stale).
const CURRENT: &str = "cancelled_at IS NULL AND superseded_at IS NULL";

fn binding_from_row(mut row: Row) -> Result<Binding, StoreError> {
    let linked_via = row.text(8)?;
    let holding = row.text(9)?;
    let identity_check = row.text(10)?;
    Ok(Binding {
        binding_id: row.text(0)?,
        license_number: row.text(1)?,
        issuer_key_id: row.opt_text(2)?,
        certificate_serial: row.text(3)?,
        certificate_not_before: row.text(4)?,
        certificate_not_after: row.text(5)?,
        terminal_id: row.text(6)?,
        operator_id: row.opt_text(7)?,
        linked_via: parse_linked_via(&linked_via).ok_or(StoreError::Corrupt {
            column: "bindings.linked_via",
            value: linked_via.clone(),
        })?,
        holding_at_link: parse_holding(&holding).ok_or(StoreError::Corrupt {
            column: "bindings.holding_at_link",
            value: holding.clone(),
        })?,
        identity_check: IdentityCheck::parse(&identity_check).ok_or(StoreError::Corrupt {
            column: "bindings.identity_check",
            value: identity_check.clone(),
        })?,
        linked_at: row.text(11)?,
        statement_time: row.opt_text(12)?,
        statement_sha256: row.opt_text(13)?,
        cancelled_at: row.opt_text(14)?,
        relinked_from: row.opt_text(15)?,
        revocation_check: row.opt_text(16)?,
        revocation_source: row.opt_text(17)?,
        revocation_checked_at: row.opt_text(18)?,
        rechecked_at: row.opt_text(19)?,
        stale_at: row.opt_text(20)?,
        stale_reason: row.opt_text(21)?,
        revocation_reason: row.opt_text(22)?,
        revoked_at: row.opt_text(23)?,
        superseded_at: row.opt_text(24)?,
        superseded_by: row.opt_text(25)?,
    })
}

/// The binding a condition with one argument (`?1`) selects.
pub(crate) fn query_binding(
    conn: &mut Conn,
    condition: &str,
    value: &str,
) -> Result<Option<Binding>, StoreError> {
    conn.query_opt(
        &format!("SELECT {BINDING_COLUMNS} FROM bindings WHERE {condition}"),
        args![value],
    )?
    .map(binding_from_row)
    .transpose()
}

/// The license's current binding: active or stale (the database keeps at most one).
pub(crate) fn current_binding_in(
    conn: &mut Conn,
    license_number: &str,
) -> Result<Option<Binding>, StoreError> {
    query_binding(
        conn,
        &format!("license_number = ?1 AND {CURRENT}"),
        license_number,
    )
}

/// The license's active binding: current and not stale.
pub(crate) fn active_binding_in(
    conn: &mut Conn,
    license_number: &str,
) -> Result<Option<Binding>, StoreError> {
    Ok(current_binding_in(conn, license_number)?.filter(Binding::is_active))
}

pub(crate) fn last_cancelled_in(
    conn: &mut Conn,
    license_number: &str,
) -> Result<Option<Binding>, StoreError> {
    query_binding(
        conn,
        // An erased binding (§8) has nothing left to restore.
        "license_number = ?1 AND cancelled_at IS NOT NULL AND erased_at IS NULL
         ORDER BY cancelled_at DESC, linked_at DESC, binding_id DESC LIMIT 1",
        license_number,
    )
}

fn license_in(conn: &mut Conn, license_number: &str) -> Result<Option<StoredLicense>, StoreError> {
    let row = conn.query_opt(
        "SELECT license_number, holding, name, birth_date, status, lapsed_or_revoked_at,
             updated_at
         FROM license_records WHERE license_number = ?1",
        args![license_number],
    )?;
    let Some(mut row) = row else {
        return Ok(None);
    };
    let holding = row.text(1)?;
    let holding = parse_holding(&holding).ok_or(StoreError::Corrupt {
        column: "license_records.holding",
        value: holding,
    })?;
    let status = row.text(4)?;
    let state = parse_state(&status).ok_or(StoreError::Corrupt {
        column: "license_records.status",
        value: status,
    })?;
    Ok(Some(StoredLicense {
        record: LicenseRecord {
            license_number: row.text(0)?,
            holding,
            name: row.text(2)?,
            birth_date: row.text(3)?,
            state,
        },
        lapsed_or_revoked_at: row.opt_text(5)?,
        updated_at: row.text(6)?,
    }))
}

fn cancel_audit(
    now: &str,
    code: Code,
    terminal_id: Option<&str>,
    binding: Option<&Binding>,
) -> AuditEntry {
    AuditEntry {
        at: now.to_string(),
        operation: Operation::Cancel,
        code,
        terminal_id: terminal_id.map(str::to_string),
        license_number: binding.map(|b| b.license_number.clone()),
        binding_id: binding.map(|b| b.binding_id.clone()),
    }
}

fn insert_binding_in(
    conn: &mut Conn,
    new: &NewBinding,
    audit: &AuditEntry,
) -> Result<InsertOutcome, StoreError> {
    if let Some(sha) = &new.statement_sha256 {
        if let Some(existing) = query_binding(conn, "statement_sha256 = ?1", sha)? {
            return Ok(if existing.is_active() {
                InsertOutcome::Repeated(existing)
            } else {
                InsertOutcome::StatementReused(existing)
            });
        }
    }
    let superseded = match current_binding_in(conn, &new.license_number)? {
        Some(current) if current.is_active_and_valid(&new.linked_at) => {
            return Ok(InsertOutcome::AlreadyLinked(current));
        }
        // Stale, or active with an expired certificate: the new binding replaces it. It
        // leaves the current set first (the unique index), and names its successor once
        // that is stored.
        Some(current) => {
            conn.execute(
                "UPDATE bindings SET superseded_at = ?2, stale_at = COALESCE(stale_at, ?2),
                     stale_reason = COALESCE(stale_reason, 'certificate_expired')
                 WHERE binding_id = ?1",
                args![&current.binding_id, &new.linked_at],
            )?;
            Some(current)
        }
        None => None,
    };
    conn.execute(
        "INSERT INTO bindings (binding_id, license_number, issuer_key_id, certificate_serial,
             certificate_not_before, certificate_not_after, terminal_id, operator_id,
             linked_via, holding_at_link, identity_check, linked_at, statement_time,
             statement_sha256, revocation_check, revocation_source, revocation_checked_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)",
        args![
            &new.binding_id,
            &new.license_number,
            &new.issuer_key_id,
            &new.certificate_serial,
            &new.certificate_not_before,
            &new.certificate_not_after,
            &new.terminal_id,
            &new.operator_id,
            linked_via_str(new.linked_via),
            holding_str(new.holding_at_link),
            new.identity_check.as_str(),
            &new.linked_at,
            &new.statement_time,
            &new.statement_sha256,
            new.revocation.result.as_str(),
            &new.revocation.source,
            &new.revocation.checked_at,
        ],
    )?;
    if let Some(old) = superseded {
        conn.execute(
            "UPDATE bindings SET superseded_by = ?2 WHERE binding_id = ?1",
            args![&old.binding_id, &new.binding_id],
        )?;
        let mut superseding = audit.clone();
        superseding.code = Code::BindingSuperseded;
        superseding.binding_id = Some(old.binding_id.clone());
        insert_audit(conn, &superseding)?;
    }
    insert_audit(conn, audit)?;
    let created =
        query_binding(conn, "binding_id = ?1", &new.binding_id)?.ok_or(StoreError::NoRow)?;
    Ok(InsertOutcome::Created(created))
}

impl Tx<'_> {
    pub fn license(&mut self, license_number: &str) -> Result<Option<StoredLicense>, StoreError> {
        license_in(self.conn, license_number)
    }

    pub fn active_binding(&mut self, license_number: &str) -> Result<Option<Binding>, StoreError> {
        active_binding_in(self.conn, license_number)
    }

    pub fn current_binding(&mut self, license_number: &str) -> Result<Option<Binding>, StoreError> {
        current_binding_in(self.conn, license_number)
    }

    pub fn binding_by_statement(
        &mut self,
        sha256_hex: &str,
    ) -> Result<Option<Binding>, StoreError> {
        query_binding(self.conn, "statement_sha256 = ?1", sha256_hex)
    }

    /// [`Store::insert_binding`] inside this transaction.
    pub fn insert_binding(
        &mut self,
        new: &NewBinding,
        audit: &AuditEntry,
    ) -> Result<InsertOutcome, StoreError> {
        insert_binding_in(self.conn, new, audit)
    }
}

impl Store {
    // -- license records ----------------------------------------------------------------

    /// Inserts or updates license records in one transaction.
    pub fn upsert_licenses(
        &mut self,
        records: &[LicenseRecord],
        now: &str,
    ) -> Result<UpsertCounts, StoreError> {
        self.write(|conn| {
            let mut counts = UpsertCounts::default();
            for record in records {
                let existing = license_in(conn, &record.license_number)?;
                let ended_at = match &existing {
                    // Only a change into lapsed/revoked moves the time; staying there keeps it.
                    Some(old) if is_ended(old.record.state) && is_ended(record.state) => {
                        old.lapsed_or_revoked_at.clone()
                    }
                    _ if is_ended(record.state) => Some(now.to_string()),
                    Some(old) => old.lapsed_or_revoked_at.clone(),
                    None => None,
                };
                let values = args![
                    &record.license_number,
                    holding_str(record.holding),
                    &record.name,
                    &record.birth_date,
                    state_str(record.state),
                    &ended_at,
                    now
                ];
                match existing {
                    Some(old) if old.record == *record => counts.unchanged += 1,
                    Some(_) => {
                        conn.execute(
                            "UPDATE license_records SET holding = ?2, name = ?3, birth_date = ?4,
                                 status = ?5, lapsed_or_revoked_at = ?6, updated_at = ?7
                             WHERE license_number = ?1",
                            values,
                        )?;
                        counts.updated += 1;
                    }
                    None => {
                        conn.execute(
                            "INSERT INTO license_records (license_number, holding, name,
                                 birth_date, status, lapsed_or_revoked_at, updated_at)
                             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                            values,
                        )?;
                        counts.inserted += 1;
                    }
                }
            }
            Ok(counts)
        })
    }

    pub fn license(&mut self, license_number: &str) -> Result<Option<StoredLicense>, StoreError> {
        license_in(&mut self.conn, license_number)
    }

    // -- bindings -----------------------------------------------------------------------

    pub fn binding(&mut self, binding_id: &str) -> Result<Option<Binding>, StoreError> {
        query_binding(&mut self.conn, "binding_id = ?1", binding_id)
    }

    pub fn active_binding(&mut self, license_number: &str) -> Result<Option<Binding>, StoreError> {
        active_binding_in(&mut self.conn, license_number)
    }

    /// The license's current binding: active or stale.
    pub fn current_binding(&mut self, license_number: &str) -> Result<Option<Binding>, StoreError> {
        current_binding_in(&mut self.conn, license_number)
    }

    /// Up to `limit` active bindings with ids after `after`, in id order: what a re-check
    /// walks through.
    pub fn active_bindings_after(
        &mut self,
        after: &str,
        limit: u32,
    ) -> Result<Vec<Binding>, StoreError> {
        self.conn
            .query(
                &format!(
                    "SELECT {BINDING_COLUMNS} FROM bindings
                     WHERE {CURRENT} AND stale_at IS NULL AND binding_id > ?1
                     ORDER BY binding_id LIMIT ?2"
                ),
                args![after, limit],
            )?
            .into_iter()
            .map(binding_from_row)
            .collect()
    }

    /// A re-check's result for one active binding, audited when it goes stale: the binding
    /// becomes `stale` with `reason` (and for a revocation its RFC 5280 reason and time);
    /// with `None` only the time of the re-check is kept. Returns whether it changed (an
    /// active binding that was cancelled or replaced meanwhile stays as it is).
    pub fn record_recheck(
        &mut self,
        binding_id: &str,
        now: &str,
        stale: Option<(StaleReason, Option<&str>, Option<&str>)>,
    ) -> Result<bool, StoreError> {
        self.write(|conn| {
            let Some((reason, revocation_reason, revoked_at)) = stale else {
                conn.execute(
                    "UPDATE bindings SET rechecked_at = ?2 WHERE binding_id = ?1",
                    args![binding_id, now],
                )?;
                return Ok(false);
            };
            let changed = conn.execute(
                &format!(
                    "UPDATE bindings SET rechecked_at = ?2, stale_at = ?2, stale_reason = ?3,
                         revocation_reason = ?4, revoked_at = ?5
                     WHERE binding_id = ?1 AND {CURRENT} AND stale_at IS NULL"
                ),
                args![
                    binding_id,
                    now,
                    reason.as_str(),
                    revocation_reason,
                    revoked_at
                ],
            )? == 1;
            if changed {
                let binding =
                    query_binding(conn, "binding_id = ?1", binding_id)?.ok_or(StoreError::NoRow)?;
                insert_audit(
                    conn,
                    &AuditEntry {
                        at: now.to_string(),
                        operation: Operation::Recheck,
                        code: Code::BindingStale,
                        terminal_id: None,
                        license_number: Some(binding.license_number),
                        binding_id: Some(binding_id.to_string()),
                    },
                )?;
            }
            Ok(changed)
        })
    }

    /// The most recently cancelled binding of a license, if any.
    pub fn last_cancelled_binding(
        &mut self,
        license_number: &str,
    ) -> Result<Option<Binding>, StoreError> {
        last_cancelled_in(&mut self.conn, license_number)
    }

    pub fn binding_by_statement(
        &mut self,
        sha256_hex: &str,
    ) -> Result<Option<Binding>, StoreError> {
        query_binding(&mut self.conn, "statement_sha256 = ?1", sha256_hex)
    }

    /// How many bindings are active, and for how many distinct licenses (which the
    /// database keeps equal).
    pub fn active_binding_counts(&mut self) -> Result<(u64, u64), StoreError> {
        let mut row = self.conn.query_one(
            &format!(
                "SELECT COUNT(*), COUNT(DISTINCT license_number) FROM bindings WHERE {CURRENT}"
            ),
            &[],
        )?;
        Ok((row.int_as(0)?, row.int_as(1)?))
    }

    /// Stores a binding unless the statement was stored before or the license already has
    /// an active binding; a created binding and its audit row commit together. The unique
    /// constraints decide between concurrent submissions, also from other processes.
    pub fn insert_binding(
        &mut self,
        new: &NewBinding,
        audit: &AuditEntry,
    ) -> Result<InsertOutcome, StoreError> {
        self.write(|conn| insert_binding_in(conn, new, audit))
    }

    /// Cancels a binding (§6) and audits it in the same transaction.
    pub fn cancel_binding(
        &mut self,
        binding_id: &str,
        now: &str,
        terminal_id: Option<&str>,
    ) -> Result<CancelOutcome, StoreError> {
        self.write(|conn| {
            let Some(binding) = query_binding(conn, "binding_id = ?1", binding_id)? else {
                insert_audit(
                    conn,
                    &cancel_audit(now, Code::BindingNotFound, terminal_id, None),
                )?;
                return Ok(CancelOutcome::NotFound);
            };
            // A stale binding is still the license's and may be cancelled; a superseded one
            // was replaced already.
            if !binding.is_current() {
                insert_audit(
                    conn,
                    &cancel_audit(now, Code::AlreadyCancelled, terminal_id, Some(&binding)),
                )?;
                return Ok(CancelOutcome::AlreadyCancelled(binding));
            }
            conn.execute(
                "UPDATE bindings SET cancelled_at = ?2 WHERE binding_id = ?1",
                args![binding_id, now],
            )?;
            insert_audit(
                conn,
                &cancel_audit(now, Code::Cancelled, terminal_id, Some(&binding)),
            )?;
            let cancelled =
                query_binding(conn, "binding_id = ?1", binding_id)?.ok_or(StoreError::NoRow)?;
            Ok(CancelOutcome::Cancelled(cancelled))
        })
    }
}
