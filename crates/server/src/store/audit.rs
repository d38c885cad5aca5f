//! The audit of every decision, and the failures counted towards rate limits.

use super::model::*;
use super::sql::{args, Conn};
use super::{Store, StoreError, Tx};
use crate::code::Code;

pub(crate) fn insert_audit(conn: &mut Conn, audit: &AuditEntry) -> Result<(), StoreError> {
    let decision = if audit.code.is_success() {
        "accepted"
    } else {
        "rejected"
    };
    conn.execute(
        "INSERT INTO audit (at, operation, decision, code, http_status, terminal_id,
             license_number, binding_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        args![
            &audit.at,
            audit.operation.as_str(),
            decision,
            audit.code.as_str(),
            audit.code.http_status(),
            &audit.terminal_id,
            &audit.license_number,
            &audit.binding_id
        ],
    )?;
    Ok(())
}

/// Counts a decision's failure against each subject and flags those whose failures since
/// `window_start` reach their threshold; returns the subjects flagged.
pub(crate) fn charge_failures(
    conn: &mut Conn,
    audit: &AuditEntry,
    failures: &[FailureCount<'_>],
    window_start: &str,
) -> Result<Vec<SubjectKind>, StoreError> {
    let mut flagged = Vec::new();
    for failure in failures {
        let kind = failure.kind.as_str();
        conn.execute(
            "DELETE FROM abuse_events WHERE subject_kind = ?1 AND subject = ?2 AND at <= ?3",
            args![kind, failure.subject, window_start],
        )?;
        conn.execute(
            "INSERT INTO abuse_events (subject_kind, subject, code, at) VALUES (?1, ?2, ?3, ?4)",
            args![kind, failure.subject, audit.code.as_str(), &audit.at],
        )?;
        let count = count_failures(conn, failure.kind, failure.subject, window_start)?;
        if count >= failure.threshold {
            conn.execute(
                "INSERT INTO abuse_flags (subject_kind, subject, first_flagged_at,
                     last_flagged_at, failures, last_code)
                 VALUES (?1, ?2, ?3, ?3, ?4, ?5)
                 ON CONFLICT (subject_kind, subject) DO UPDATE SET
                     last_flagged_at = excluded.last_flagged_at,
                     failures = excluded.failures,
                     last_code = excluded.last_code",
                args![kind, failure.subject, &audit.at, count, audit.code.as_str()],
            )?;
            flagged.push(failure.kind);
        }
    }
    Ok(flagged)
}

fn count_failures(
    conn: &mut Conn,
    kind: SubjectKind,
    subject: &str,
    window_start: &str,
) -> Result<u32, StoreError> {
    conn.query_one(
        "SELECT COUNT(*) FROM abuse_events WHERE subject_kind = ?1 AND subject = ?2 AND at > ?3",
        args![kind.as_str(), subject, window_start],
    )?
    .int_as(0)
}

impl Tx<'_> {
    /// [`Store::record_decision`] inside this transaction.
    pub fn record_decision(
        &mut self,
        audit: &AuditEntry,
        failures: &[FailureCount<'_>],
        window_start: &str,
    ) -> Result<Vec<SubjectKind>, StoreError> {
        insert_audit(self.conn, audit)?;
        charge_failures(self.conn, audit, failures, window_start)
    }

    /// [`Store::failures_since`] inside this transaction.
    pub fn failures_since(
        &mut self,
        kind: SubjectKind,
        subject: &str,
        window_start: &str,
    ) -> Result<u32, StoreError> {
        count_failures(self.conn, kind, subject, window_start)
    }
}

impl Store {
    /// Records a decision that stores nothing else, and counts the failure against each
    /// subject; a subject whose failures since `window_start` reach its threshold is
    /// flagged. Returns the subjects flagged by this call.
    pub fn record_decision(
        &mut self,
        audit: &AuditEntry,
        failures: &[FailureCount<'_>],
        window_start: &str,
    ) -> Result<Vec<SubjectKind>, StoreError> {
        self.transaction(|tx| tx.record_decision(audit, failures, window_start))
    }

    /// Audits a status read by the caller named in `audit.terminal_id`, unless the caller
    /// already had `limit` reads answered since `window_start`: then the refusal is audited
    /// instead (`rate_limited`). Counting and recording are one transaction, so callers
    /// reading at the same moment cannot pass the limit together. Returns whether the read
    /// was admitted.
    pub fn admit_status_read(
        &mut self,
        audit: &AuditEntry,
        window_start: &str,
        limit: u32,
    ) -> Result<bool, StoreError> {
        self.write(|conn| {
            let answered: u32 = conn
                .query_one(
                    "SELECT COUNT(*) FROM audit WHERE terminal_id = ?1 AND operation = ?2
                         AND at > ?3 AND code <> ?4",
                    args![
                        &audit.terminal_id,
                        Operation::Status.as_str(),
                        window_start,
                        Code::RateLimited.as_str()
                    ],
                )?
                .int_as(0)?;
            if answered >= limit {
                let mut refused = audit.clone();
                refused.code = Code::RateLimited;
                insert_audit(conn, &refused)?;
                return Ok(false);
            }
            insert_audit(conn, audit)?;
            Ok(true)
        })
    }

    /// Records a decision that touches no other row (e.g. a refused request for an
    /// unknown id).
    pub fn audit_only(&mut self, audit: &AuditEntry) -> Result<(), StoreError> {
        insert_audit(&mut self.conn, audit)
    }

    /// Failures counted against a subject after `window_start`.
    pub fn failures_since(
        &mut self,
        kind: SubjectKind,
        subject: &str,
        window_start: &str,
    ) -> Result<u32, StoreError> {
        count_failures(&mut self.conn, kind, subject, window_start)
    }

    pub fn abuse_flags(&mut self) -> Result<Vec<AbuseFlag>, StoreError> {
        let rows = self.conn.query(
            "SELECT subject_kind, subject, first_flagged_at, last_flagged_at, failures, last_code
             FROM abuse_flags ORDER BY first_flagged_at, subject_kind, subject",
            &[],
        )?;
        rows.into_iter()
            .map(|mut r| {
                Ok(AbuseFlag {
                    subject_kind: r.text(0)?,
                    subject: r.text(1)?,
                    first_flagged_at: r.text(2)?,
                    last_flagged_at: r.text(3)?,
                    failures: r.int_as(4)?,
                    last_code: r.text(5)?,
                })
            })
            .collect()
    }

    /// Clears a flag after review; the failure log is kept until it ages out.
    pub fn clear_flag(&mut self, kind: SubjectKind, subject: &str) -> Result<bool, StoreError> {
        let n = self.conn.execute(
            "DELETE FROM abuse_flags WHERE subject_kind = ?1 AND subject = ?2",
            args![kind.as_str(), subject],
        )?;
        Ok(n > 0)
    }

    pub fn audit_rows(&mut self) -> Result<Vec<AuditRow>, StoreError> {
        let rows = self.conn.query(
            "SELECT id, at, operation, decision, code, http_status, terminal_id, license_number,
                 binding_id
             FROM audit ORDER BY id",
            &[],
        )?;
        rows.into_iter()
            .map(|mut r| {
                Ok(AuditRow {
                    id: r.int(0)?,
                    at: r.text(1)?,
                    operation: r.text(2)?,
                    decision: r.text(3)?,
                    code: r.text(4)?,
                    http_status: r.int_as(5)?,
                    terminal_id: r.opt_text(6)?,
                    license_number: r.opt_text(7)?,
                    binding_id: r.opt_text(8)?,
                })
            })
            .collect()
    }
}
