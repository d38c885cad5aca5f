//! Persistence: the schema and its migrations, and every read and write the linking rules
//! need, each write in one transaction.
//!
//! The embedded store is SQLite (WAL, `synchronous=FULL` so that a commit survives a power
//! cut, a busy timeout so that concurrent writers wait instead of failing). The SQL keeps to
//! what PostgreSQL accepts as well (TEXT/INTEGER columns, CHECK constraints, partial unique
//! indexes); times are RFC 3339 UTC with whole seconds, which sort as text.
//!
//! What is stored about a binding identifies the certificate (issuer key id, serial,
//! validity) and the submission (terminal, operator, times, statement hash), never the
//! certificate itself or its basic-4 information. License records hold the name and birth
//! date the police record has; they are the reference the certificate is compared with.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use mynalink_link::api::{Holding, LicenseState, LinkedVia};
use rusqlite::{params, Connection, OptionalExtension, Row, Transaction, TransactionBehavior};
use std::sync::{Mutex, MutexGuard, PoisonError};

/// One writer at a time within this process (see `Store::immediate`).
static WRITERS: Mutex<()> = Mutex::new(());
use thiserror::Error;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::code::Code;

/// How long a writer waits for another one before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] rusqlite::Error),
    #[error("database URL {0:?} is not supported (use sqlite:PATH)")]
    UnsupportedUrl(String),
    #[error("PostgreSQL is not available in this build")]
    PostgresUnavailable,
    #[error("the database has schema version {found}; this build knows up to {supported}")]
    SchemaTooNew { found: i64, supported: i64 },
    #[error("the database holds an invalid {column}: {value:?}")]
    Corrupt { column: &'static str, value: String },
}

/// Where the data lives: `sqlite:PATH` (also `sqlite://PATH`), later `postgres://…`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    Sqlite(PathBuf),
    Postgres(String),
}

impl DatabaseUrl {
    pub fn parse(url: &str) -> Result<DatabaseUrl, StoreError> {
        if let Some(path) = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
        {
            if path.is_empty() {
                return Err(StoreError::UnsupportedUrl(url.to_string()));
            }
            return Ok(DatabaseUrl::Sqlite(PathBuf::from(path)));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(DatabaseUrl::Postgres(url.to_string()));
        }
        Err(StoreError::UnsupportedUrl(url.to_string()))
    }
}

/// The migrations, in order. A database records each applied version in
/// `schema_migrations`; a version once released never changes.
const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        r#"
CREATE TABLE license_records (
    license_number TEXT PRIMARY KEY,
    holding TEXT NOT NULL CHECK (holding IN ('myna_only', 'myna_and_card', 'card_only',
        'history_myna_only', 'history_myna_and_card', 'history_card_only')),
    name TEXT NOT NULL,
    birth_date TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('valid', 'suspended', 'provisionally_suspended',
        'lapsed', 'revoked')),
    -- When the record last became lapsed or revoked: a relink after cancellation needs the
    -- first stage again if this happened after the cancellation (section 6).
    lapsed_or_revoked_at TEXT,
    updated_at TEXT NOT NULL
);

CREATE TABLE bindings (
    binding_id TEXT PRIMARY KEY,
    license_number TEXT NOT NULL REFERENCES license_records (license_number),
    issuer_key_id TEXT,
    certificate_serial TEXT NOT NULL,
    certificate_not_before TEXT NOT NULL,
    certificate_not_after TEXT NOT NULL,
    terminal_id TEXT NOT NULL,
    operator_id TEXT,
    linked_via TEXT NOT NULL CHECK (linked_via IN ('counter', 'one_stop')),
    holding_at_link TEXT NOT NULL,
    identity_check TEXT NOT NULL CHECK (identity_check IN ('automatic', 'staff_confirmed',
        'external')),
    linked_at TEXT NOT NULL,
    statement_time TEXT,
    statement_sha256 TEXT UNIQUE,
    cancelled_at TEXT
);
-- One active binding per license record; cancelled ones stay as history.
CREATE UNIQUE INDEX bindings_one_active ON bindings (license_number)
    WHERE cancelled_at IS NULL;

CREATE TABLE audit (
    id INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    operation TEXT NOT NULL CHECK (operation IN ('submit', 'cancel', 'one_stop')),
    decision TEXT NOT NULL CHECK (decision IN ('accepted', 'rejected')),
    code TEXT NOT NULL,
    http_status INTEGER NOT NULL,
    terminal_id TEXT,
    license_number TEXT,
    binding_id TEXT
);
CREATE INDEX audit_at ON audit (at);

-- Failures that count towards the rate limit, one row each; rows older than the window
-- are pruned when the subject fails again.
CREATE TABLE abuse_events (
    id INTEGER PRIMARY KEY,
    subject_kind TEXT NOT NULL CHECK (subject_kind IN ('terminal', 'license')),
    subject TEXT NOT NULL,
    code TEXT NOT NULL,
    at TEXT NOT NULL
);
CREATE INDEX abuse_events_subject ON abuse_events (subject_kind, subject, at);

CREATE TABLE abuse_flags (
    subject_kind TEXT NOT NULL CHECK (subject_kind IN ('terminal', 'license')),
    subject TEXT NOT NULL,
    first_flagged_at TEXT NOT NULL,
    last_flagged_at TEXT NOT NULL,
    failures INTEGER NOT NULL,
    last_code TEXT NOT NULL,
    PRIMARY KEY (subject_kind, subject)
);
"#,
    ),
    (
        2,
        r#"
-- Second stage (§4): the basic-4 information Mynaportal read from the card-info AP, kept
-- only until the holder's signature is checked against it or the row expires. At most one
-- pending row per license; the row is deleted in the transaction that decides it.
CREATE TABLE second_stage_pending (
    second_stage_id TEXT PRIMARY KEY,
    license_number TEXT NOT NULL UNIQUE REFERENCES license_records (license_number),
    binding_id TEXT NOT NULL REFERENCES bindings (binding_id),
    caller_id TEXT NOT NULL,
    name TEXT NOT NULL,
    address TEXT NOT NULL,
    birth_date TEXT NOT NULL,
    sex TEXT NOT NULL CHECK (sex IN ('1', '2', '9')),
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL
);
CREATE INDEX second_stage_pending_expires ON second_stage_pending (expires_at);

-- The binding's second stage: identifiers of the certificate and statement only.
ALTER TABLE bindings ADD COLUMN mynaportal_linked_at TEXT;
ALTER TABLE bindings ADD COLUMN mynaportal_certificate_serial TEXT;
ALTER TABLE bindings ADD COLUMN mynaportal_issuer_key_id TEXT;
ALTER TABLE bindings ADD COLUMN mynaportal_statement_sha256 TEXT;
CREATE UNIQUE INDEX bindings_mynaportal_statement ON bindings (mynaportal_statement_sha256)
    WHERE mynaportal_statement_sha256 IS NOT NULL;

-- New audit operations: the CHECK constraint is rebuilt with the table.
CREATE TABLE audit_v2 (
    id INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    operation TEXT NOT NULL CHECK (operation IN ('submit', 'cancel', 'one_stop',
        'second_stage_basic4', 'second_stage_signature')),
    decision TEXT NOT NULL CHECK (decision IN ('accepted', 'rejected')),
    code TEXT NOT NULL,
    http_status INTEGER NOT NULL,
    terminal_id TEXT,
    license_number TEXT,
    binding_id TEXT
);
INSERT INTO audit_v2 (id, at, operation, decision, code, http_status, terminal_id,
    license_number, binding_id)
    SELECT id, at, operation, decision, code, http_status, terminal_id, license_number,
        binding_id FROM audit;
DROP TABLE audit;
ALTER TABLE audit_v2 RENAME TO audit;
CREATE INDEX audit_at ON audit (at);
"#,
    ),
];

/// The newest schema version this build knows.
pub fn latest_schema_version() -> i64 {
    MIGRATIONS.last().map_or(0, |(v, _)| *v)
}

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

fn linked_via_str(v: LinkedVia) -> &'static str {
    match v {
        LinkedVia::Counter => "counter",
        LinkedVia::OneStop => "one_stop",
    }
}

fn parse_linked_via(s: &str) -> Option<LinkedVia> {
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

    fn parse(s: &str) -> Option<IdentityCheck> {
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
}

impl Binding {
    pub fn is_active(&self) -> bool {
        self.cancelled_at.is_none()
    }
}

const BINDING_COLUMNS: &str = "binding_id, license_number, issuer_key_id, certificate_serial, \
     certificate_not_before, certificate_not_after, terminal_id, operator_id, linked_via, \
     holding_at_link, identity_check, linked_at, statement_time, statement_sha256, cancelled_at";

fn corrupt(column: &'static str, value: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        0,
        rusqlite::types::Type::Text,
        Box::new(StoreError::Corrupt {
            column,
            value: value.to_string(),
        }),
    )
}

fn binding_from_row(row: &Row<'_>) -> rusqlite::Result<Binding> {
    let linked_via: String = row.get(8)?;
    let holding: String = row.get(9)?;
    let identity_check: String = row.get(10)?;
    Ok(Binding {
        binding_id: row.get(0)?,
        license_number: row.get(1)?,
        issuer_key_id: row.get(2)?,
        certificate_serial: row.get(3)?,
        certificate_not_before: row.get(4)?,
        certificate_not_after: row.get(5)?,
        terminal_id: row.get(6)?,
        operator_id: row.get(7)?,
        linked_via: parse_linked_via(&linked_via)
            .ok_or_else(|| corrupt("bindings.linked_via", &linked_via))?,
        holding_at_link: parse_holding(&holding)
            .ok_or_else(|| corrupt("bindings.holding_at_link", &holding))?,
        identity_check: IdentityCheck::parse(&identity_check)
            .ok_or_else(|| corrupt("bindings.identity_check", &identity_check))?,
        linked_at: row.get(11)?,
        statement_time: row.get(12)?,
        statement_sha256: row.get(13)?,
        cancelled_at: row.get(14)?,
    })
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
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Submit => "submit",
            Operation::Cancel => "cancel",
            Operation::OneStop => "one_stop",
            Operation::SecondStageBasic4 => "second_stage_basic4",
            Operation::SecondStageSignature => "second_stage_signature",
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

/// The basic-4 information as the card-info AP (券面事項入力補助AP) holds it, sent by
/// Mynaportal for the second stage. Personal data: `Debug` hides it and it is wiped when
/// dropped.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct CardBasic4 {
    pub name: String,
    pub address: String,
    /// `YYYYMMDD`, Gregorian.
    pub birth_date: String,
    /// `1` male, `2` female, `9` not applicable.
    pub sex: String,
}

impl fmt::Debug for CardBasic4 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CardBasic4 { .. redacted }")
    }
}

/// A second stage waiting for the holder's signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingSecondStage {
    pub second_stage_id: String,
    pub license_number: String,
    /// The active first-stage binding when the basic-4 arrived.
    pub binding_id: String,
    /// The authenticated Mynaportal caller.
    pub caller_id: String,
    pub basic4: CardBasic4,
    pub created_at: String,
    pub expires_at: String,
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

// ---------------------------------------------------------------------------------------
// The store

pub struct Store {
    conn: Connection,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.conn.path())
            .finish()
    }
}

impl Store {
    /// Opens the database a URL names, creating and migrating it as needed.
    pub fn open_url(url: &str) -> Result<Store, StoreError> {
        match DatabaseUrl::parse(url)? {
            DatabaseUrl::Sqlite(path) => Store::open_sqlite(&path),
            DatabaseUrl::Postgres(_) => Err(StoreError::PostgresUnavailable),
        }
    }

    /// Opens (or creates) an SQLite database file and brings its schema up to date.
    pub fn open_sqlite(path: &Path) -> Result<Store, StoreError> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        // journal_mode answers with the mode in force; WAL lets readers run beside a writer.
        let _mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        let mut store = Store { conn };
        store.migrate()?;
        Ok(store)
    }

    fn migrate(&mut self) -> Result<(), StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute_batch(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                 version INTEGER PRIMARY KEY,
                 applied_at TEXT NOT NULL
             )",
        )?;
        let current: i64 = tx.query_row(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            [],
            |r| r.get(0),
        )?;
        let supported = latest_schema_version();
        if current > supported {
            return Err(StoreError::SchemaTooNew {
                found: current,
                supported,
            });
        }
        let now = crate::now_text();
        for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
            tx.execute_batch(sql)?;
            tx.execute(
                "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, ?2)",
                params![version, now],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    pub fn schema_version(&self) -> Result<i64, StoreError> {
        Ok(self.conn.query_row(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            [],
            |r| r.get(0),
        )?)
    }

    /// The values of a PRAGMA, for checking the connection's settings.
    pub fn pragma(&self, name: &str) -> Result<String, StoreError> {
        let value: rusqlite::types::Value =
            self.conn.pragma_query_value(None, name, |r| r.get(0))?;
        Ok(match value {
            rusqlite::types::Value::Integer(i) => i.to_string(),
            rusqlite::types::Value::Text(t) => t,
            other => format!("{other:?}"),
        })
    }

    /// A write transaction. Writers of this process queue on an in-process lock first:
    /// SQLite's own busy handler sleeps in growing steps (1, 2, 5, 10 ms …) instead of
    /// waking the next writer, which made the latency tail under load.
    fn immediate(&mut self) -> Result<(MutexGuard<'static, ()>, Transaction<'_>), StoreError> {
        let writer = WRITERS.lock().unwrap_or_else(PoisonError::into_inner);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        Ok((writer, tx))
    }

    // -- license records ----------------------------------------------------------------

    /// Inserts or updates license records in one transaction.
    pub fn upsert_licenses(
        &mut self,
        records: &[LicenseRecord],
        now: &str,
    ) -> Result<UpsertCounts, StoreError> {
        let (_writer, tx) = self.immediate()?;
        let mut counts = UpsertCounts::default();
        for record in records {
            let existing = license_in(&tx, &record.license_number)?;
            let ended_at = match &existing {
                // Only a change into lapsed/revoked moves the time; staying there keeps it.
                Some(old) if is_ended(old.record.state) && is_ended(record.state) => {
                    old.lapsed_or_revoked_at.clone()
                }
                _ if is_ended(record.state) => Some(now.to_string()),
                Some(old) => old.lapsed_or_revoked_at.clone(),
                None => None,
            };
            match existing {
                Some(old) if old.record == *record => counts.unchanged += 1,
                Some(_) => {
                    tx.execute(
                        "UPDATE license_records SET holding = ?2, name = ?3, birth_date = ?4,
                             status = ?5, lapsed_or_revoked_at = ?6, updated_at = ?7
                         WHERE license_number = ?1",
                        params![
                            record.license_number,
                            holding_str(record.holding),
                            record.name,
                            record.birth_date,
                            state_str(record.state),
                            ended_at,
                            now
                        ],
                    )?;
                    counts.updated += 1;
                }
                None => {
                    tx.execute(
                        "INSERT INTO license_records (license_number, holding, name, birth_date,
                             status, lapsed_or_revoked_at, updated_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                        params![
                            record.license_number,
                            holding_str(record.holding),
                            record.name,
                            record.birth_date,
                            state_str(record.state),
                            ended_at,
                            now
                        ],
                    )?;
                    counts.inserted += 1;
                }
            }
        }
        tx.commit()?;
        Ok(counts)
    }

    pub fn license(&self, license_number: &str) -> Result<Option<StoredLicense>, StoreError> {
        license_in(&self.conn, license_number)
    }

    // -- bindings -----------------------------------------------------------------------

    pub fn binding(&self, binding_id: &str) -> Result<Option<Binding>, StoreError> {
        query_binding(&self.conn, "binding_id = ?1", binding_id)
    }

    pub fn active_binding(&self, license_number: &str) -> Result<Option<Binding>, StoreError> {
        query_binding(
            &self.conn,
            "license_number = ?1 AND cancelled_at IS NULL",
            license_number,
        )
    }

    /// The most recently cancelled binding of a license, if any.
    pub fn last_cancelled_binding(
        &self,
        license_number: &str,
    ) -> Result<Option<Binding>, StoreError> {
        query_binding(
            &self.conn,
            "license_number = ?1 AND cancelled_at IS NOT NULL
             ORDER BY cancelled_at DESC, linked_at DESC LIMIT 1",
            license_number,
        )
    }

    pub fn binding_by_statement(&self, sha256_hex: &str) -> Result<Option<Binding>, StoreError> {
        query_binding(&self.conn, "statement_sha256 = ?1", sha256_hex)
    }

    /// Stores a binding unless the statement was stored before or the license already has
    /// an active binding; a created binding and its audit row commit together.
    pub fn insert_binding(
        &mut self,
        new: &NewBinding,
        audit: &AuditEntry,
    ) -> Result<InsertOutcome, StoreError> {
        let (_writer, tx) = self.immediate()?;
        if let Some(sha) = &new.statement_sha256 {
            if let Some(existing) = query_binding(&tx, "statement_sha256 = ?1", sha)? {
                return Ok(if existing.is_active() {
                    InsertOutcome::Repeated(existing)
                } else {
                    InsertOutcome::StatementReused(existing)
                });
            }
        }
        if let Some(active) = query_binding(
            &tx,
            "license_number = ?1 AND cancelled_at IS NULL",
            &new.license_number,
        )? {
            return Ok(InsertOutcome::AlreadyLinked(active));
        }
        tx.execute(
            &format!(
                "INSERT INTO bindings ({BINDING_COLUMNS})
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, NULL)"
            ),
            params![
                new.binding_id,
                new.license_number,
                new.issuer_key_id,
                new.certificate_serial,
                new.certificate_not_before,
                new.certificate_not_after,
                new.terminal_id,
                new.operator_id,
                linked_via_str(new.linked_via),
                holding_str(new.holding_at_link),
                new.identity_check.as_str(),
                new.linked_at,
                new.statement_time,
                new.statement_sha256,
            ],
        )?;
        insert_audit(&tx, audit)?;
        let created = query_binding(&tx, "binding_id = ?1", &new.binding_id)?
            .ok_or(rusqlite::Error::QueryReturnedNoRows)?;
        tx.commit()?;
        Ok(InsertOutcome::Created(created))
    }

    /// Cancels a binding (§6) and audits it in the same transaction.
    pub fn cancel_binding(
        &mut self,
        binding_id: &str,
        now: &str,
        terminal_id: Option<&str>,
    ) -> Result<CancelOutcome, StoreError> {
        let (_writer, tx) = self.immediate()?;
        let Some(binding) = query_binding(&tx, "binding_id = ?1", binding_id)? else {
            insert_audit(
                &tx,
                &AuditEntry {
                    at: now.to_string(),
                    operation: Operation::Cancel,
                    code: Code::BindingNotFound,
                    terminal_id: terminal_id.map(str::to_string),
                    license_number: None,
                    binding_id: None,
                },
            )?;
            tx.commit()?;
            return Ok(CancelOutcome::NotFound);
        };
        if !binding.is_active() {
            insert_audit(
                &tx,
                &AuditEntry {
                    at: now.to_string(),
                    operation: Operation::Cancel,
                    code: Code::AlreadyCancelled,
                    terminal_id: terminal_id.map(str::to_string),
                    license_number: Some(binding.license_number.clone()),
                    binding_id: Some(binding.binding_id.clone()),
                },
            )?;
            tx.commit()?;
            return Ok(CancelOutcome::AlreadyCancelled(binding));
        }
        tx.execute(
            "UPDATE bindings SET cancelled_at = ?2 WHERE binding_id = ?1",
            params![binding_id, now],
        )?;
        insert_audit(
            &tx,
            &AuditEntry {
                at: now.to_string(),
                operation: Operation::Cancel,
                code: Code::Cancelled,
                terminal_id: terminal_id.map(str::to_string),
                license_number: Some(binding.license_number.clone()),
                binding_id: Some(binding.binding_id.clone()),
            },
        )?;
        let cancelled = query_binding(&tx, "binding_id = ?1", binding_id)?
            .ok_or(rusqlite::Error::QueryReturnedNoRows)?;
        tx.commit()?;
        Ok(CancelOutcome::Cancelled(cancelled))
    }

    // -- audit and abuse ----------------------------------------------------------------

    /// Records a decision that stores nothing else, and counts the failure against each
    /// subject; a subject whose failures since `window_start` reach its threshold is
    /// flagged. Returns the subjects flagged by this call.
    pub fn record_decision(
        &mut self,
        audit: &AuditEntry,
        failures: &[FailureCount<'_>],
        window_start: &str,
    ) -> Result<Vec<SubjectKind>, StoreError> {
        let (_writer, tx) = self.immediate()?;
        insert_audit(&tx, audit)?;
        let mut flagged = Vec::new();
        for failure in failures {
            let kind = failure.kind.as_str();
            tx.execute(
                "DELETE FROM abuse_events WHERE subject_kind = ?1 AND subject = ?2 AND at <= ?3",
                params![kind, failure.subject, window_start],
            )?;
            tx.execute(
                "INSERT INTO abuse_events (subject_kind, subject, code, at) VALUES (?1, ?2, ?3, ?4)",
                params![kind, failure.subject, audit.code.as_str(), audit.at],
            )?;
            let count = count_failures(&tx, failure.kind, failure.subject, window_start)?;
            if count >= failure.threshold {
                tx.execute(
                    "INSERT INTO abuse_flags (subject_kind, subject, first_flagged_at,
                         last_flagged_at, failures, last_code)
                     VALUES (?1, ?2, ?3, ?3, ?4, ?5)
                     ON CONFLICT (subject_kind, subject) DO UPDATE SET
                         last_flagged_at = excluded.last_flagged_at,
                         failures = excluded.failures,
                         last_code = excluded.last_code",
                    params![kind, failure.subject, audit.at, count, audit.code.as_str()],
                )?;
                flagged.push(failure.kind);
            }
        }
        tx.commit()?;
        Ok(flagged)
    }

    /// Failures counted against a subject after `window_start`.
    pub fn failures_since(
        &self,
        kind: SubjectKind,
        subject: &str,
        window_start: &str,
    ) -> Result<u32, StoreError> {
        count_failures(&self.conn, kind, subject, window_start)
    }

    pub fn abuse_flags(&self) -> Result<Vec<AbuseFlag>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT subject_kind, subject, first_flagged_at, last_flagged_at, failures, last_code
             FROM abuse_flags ORDER BY first_flagged_at, subject_kind, subject",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(AbuseFlag {
                subject_kind: r.get(0)?,
                subject: r.get(1)?,
                first_flagged_at: r.get(2)?,
                last_flagged_at: r.get(3)?,
                failures: r.get(4)?,
                last_code: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Clears a flag after review; the failure log is kept until it ages out.
    pub fn clear_flag(&mut self, kind: SubjectKind, subject: &str) -> Result<bool, StoreError> {
        let n = self.conn.execute(
            "DELETE FROM abuse_flags WHERE subject_kind = ?1 AND subject = ?2",
            params![kind.as_str(), subject],
        )?;
        Ok(n > 0)
    }

    pub fn audit_rows(&self) -> Result<Vec<AuditRow>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT id, at, operation, decision, code, http_status, terminal_id, license_number,
                 binding_id
             FROM audit ORDER BY id",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(AuditRow {
                id: r.get(0)?,
                at: r.get(1)?,
                operation: r.get(2)?,
                decision: r.get(3)?,
                code: r.get(4)?,
                http_status: r.get(5)?,
                terminal_id: r.get(6)?,
                license_number: r.get(7)?,
                binding_id: r.get(8)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

impl Store {
    // -- second stage (§4) --------------------------------------------------------------

    /// Deletes pending second stages that expired at or before `now`; returns how many.
    pub fn purge_expired_second_stage(&mut self, now: &str) -> Result<usize, StoreError> {
        Ok(self.conn.execute(
            "DELETE FROM second_stage_pending WHERE expires_at <= ?1",
            params![now],
        )?)
    }

    /// Stores Mynaportal's basic-4 for a license that has an active first-stage binding,
    /// replacing a pending one of the same license, and audits the decision with the code
    /// that fits the outcome (`audit.code` is used for a stored row).
    pub fn insert_second_stage(
        &mut self,
        new: &PendingSecondStage,
        mut audit: AuditEntry,
        missing: Code,
        done: Code,
    ) -> Result<PendingOutcome, StoreError> {
        let (_writer, tx) = self.immediate()?;
        tx.execute(
            "DELETE FROM second_stage_pending WHERE expires_at <= ?1",
            params![new.created_at],
        )?;
        let active = query_binding(
            &tx,
            "license_number = ?1 AND cancelled_at IS NULL",
            &new.license_number,
        )?;
        let Some(active) = active else {
            // A row left from a binding cancelled since is of no use any more.
            tx.execute(
                "DELETE FROM second_stage_pending WHERE license_number = ?1",
                params![new.license_number],
            )?;
            audit.code = missing;
            insert_audit(&tx, &audit)?;
            tx.commit()?;
            return Ok(PendingOutcome::FirstStageMissing);
        };
        audit.binding_id = Some(active.binding_id.clone());
        if mynaportal_link_in(&tx, &active.binding_id)?.is_some() {
            audit.code = done;
            insert_audit(&tx, &audit)?;
            tx.commit()?;
            return Ok(PendingOutcome::AlreadyDone {
                binding_id: active.binding_id,
            });
        }
        let replaced = tx.execute(
            "DELETE FROM second_stage_pending WHERE license_number = ?1",
            params![new.license_number],
        )? > 0;
        tx.execute(
            "INSERT INTO second_stage_pending (second_stage_id, license_number, binding_id,
                 caller_id, name, address, birth_date, sex, created_at, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            params![
                new.second_stage_id,
                new.license_number,
                active.binding_id,
                new.caller_id,
                new.basic4.name,
                new.basic4.address,
                new.basic4.birth_date,
                new.basic4.sex,
                new.created_at,
                new.expires_at
            ],
        )?;
        insert_audit(&tx, &audit)?;
        tx.commit()?;
        Ok(PendingOutcome::Stored {
            binding_id: active.binding_id,
            replaced,
        })
    }

    /// A pending second stage that has not expired at `now`.
    pub fn pending_second_stage(
        &self,
        second_stage_id: &str,
        now: &str,
    ) -> Result<Option<PendingSecondStage>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT second_stage_id, license_number, binding_id, caller_id, name, address,
                     birth_date, sex, created_at, expires_at
                 FROM second_stage_pending WHERE second_stage_id = ?1 AND expires_at > ?2",
                params![second_stage_id, now],
                |r| {
                    Ok(PendingSecondStage {
                        second_stage_id: r.get(0)?,
                        license_number: r.get(1)?,
                        binding_id: r.get(2)?,
                        caller_id: r.get(3)?,
                        basic4: CardBasic4 {
                            name: r.get(4)?,
                            address: r.get(5)?,
                            birth_date: r.get(6)?,
                            sex: r.get(7)?,
                        },
                        created_at: r.get(8)?,
                        expires_at: r.get(9)?,
                    })
                },
            )
            .optional()?)
    }

    /// Decides a pending second stage in one transaction: its row (and so both sets of
    /// basic-4 as far as this system ever held them) is deleted, the binding is marked
    /// when `link` is given, and the decision is audited. `audit.code` is used as given
    /// unless the row or the binding changed meanwhile, when `not_pending` or
    /// `binding_changed` is recorded instead.
    pub fn finish_second_stage(
        &mut self,
        second_stage_id: &str,
        link: Option<(&str, &MynaportalLink)>,
        mut audit: AuditEntry,
        not_pending: Code,
        binding_changed: Code,
    ) -> Result<FinishOutcome, StoreError> {
        let (_writer, tx) = self.immediate()?;
        let deleted = tx.execute(
            "DELETE FROM second_stage_pending WHERE second_stage_id = ?1",
            params![second_stage_id],
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
                let updated = tx.execute(
                    "UPDATE bindings SET mynaportal_linked_at = ?2,
                         mynaportal_certificate_serial = ?3, mynaportal_issuer_key_id = ?4,
                         mynaportal_statement_sha256 = ?5
                     WHERE binding_id = ?1 AND cancelled_at IS NULL
                         AND mynaportal_linked_at IS NULL",
                    params![
                        binding_id,
                        link.linked_at,
                        link.certificate_serial,
                        link.issuer_key_id,
                        link.statement_sha256
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
        insert_audit(&tx, &audit)?;
        tx.commit()?;
        Ok(outcome)
    }

    /// The second stage of a binding, if it was completed.
    pub fn mynaportal_link(&self, binding_id: &str) -> Result<Option<MynaportalLink>, StoreError> {
        mynaportal_link_in(&self.conn, binding_id)
    }

    /// The binding whose second stage was completed with this statement.
    pub fn binding_by_mynaportal_statement(
        &self,
        sha256_hex: &str,
    ) -> Result<Option<Binding>, StoreError> {
        query_binding(&self.conn, "mynaportal_statement_sha256 = ?1", sha256_hex)
    }

    /// Records a decision of the second stage that touches no row (e.g. a refused request
    /// for an unknown id).
    pub fn audit_only(&mut self, audit: &AuditEntry) -> Result<(), StoreError> {
        insert_audit(&self.conn, audit)
    }
}

fn mynaportal_link_in(
    conn: &Connection,
    binding_id: &str,
) -> Result<Option<MynaportalLink>, StoreError> {
    let row = conn
        .query_row(
            "SELECT mynaportal_linked_at, mynaportal_certificate_serial,
                 mynaportal_issuer_key_id, mynaportal_statement_sha256
             FROM bindings WHERE binding_id = ?1",
            params![binding_id],
            |r| {
                Ok((
                    r.get::<_, Option<String>>(0)?,
                    r.get::<_, Option<String>>(1)?,
                    r.get::<_, Option<String>>(2)?,
                    r.get::<_, Option<String>>(3)?,
                ))
            },
        )
        .optional()?;
    Ok(match row {
        Some((Some(linked_at), Some(certificate_serial), issuer_key_id, Some(sha))) => {
            Some(MynaportalLink {
                linked_at,
                certificate_serial,
                issuer_key_id,
                statement_sha256: sha,
            })
        }
        _ => None,
    })
}

fn license_in(
    conn: &Connection,
    license_number: &str,
) -> Result<Option<StoredLicense>, StoreError> {
    let row = conn
        .query_row(
            "SELECT license_number, holding, name, birth_date, status, lapsed_or_revoked_at,
                 updated_at
             FROM license_records WHERE license_number = ?1",
            params![license_number],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, Option<String>>(5)?,
                    r.get::<_, String>(6)?,
                ))
            },
        )
        .optional()?;
    let Some((number, holding, name, birth_date, status, ended_at, updated_at)) = row else {
        return Ok(None);
    };
    let holding = parse_holding(&holding).ok_or(StoreError::Corrupt {
        column: "license_records.holding",
        value: holding,
    })?;
    let state = parse_state(&status).ok_or(StoreError::Corrupt {
        column: "license_records.status",
        value: status,
    })?;
    Ok(Some(StoredLicense {
        record: LicenseRecord {
            license_number: number,
            holding,
            name,
            birth_date,
            state,
        },
        lapsed_or_revoked_at: ended_at,
        updated_at,
    }))
}

fn query_binding(
    conn: &Connection,
    condition: &str,
    value: &str,
) -> Result<Option<Binding>, StoreError> {
    Ok(conn
        .query_row(
            &format!("SELECT {BINDING_COLUMNS} FROM bindings WHERE {condition}"),
            params![value],
            binding_from_row,
        )
        .optional()?)
}

fn insert_audit(conn: &Connection, audit: &AuditEntry) -> Result<(), StoreError> {
    let decision = if audit.code.is_success() {
        "accepted"
    } else {
        "rejected"
    };
    conn.execute(
        "INSERT INTO audit (at, operation, decision, code, http_status, terminal_id,
             license_number, binding_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            audit.at,
            audit.operation.as_str(),
            decision,
            audit.code.as_str(),
            audit.code.http_status(),
            audit.terminal_id,
            audit.license_number,
            audit.binding_id
        ],
    )?;
    Ok(())
}

fn count_failures(
    conn: &Connection,
    kind: SubjectKind,
    subject: &str,
    window_start: &str,
) -> Result<u32, StoreError> {
    Ok(conn.query_row(
        "SELECT COUNT(*) FROM abuse_events WHERE subject_kind = ?1 AND subject = ?2 AND at > ?3",
        params![kind.as_str(), subject, window_start],
        |r| r.get(0),
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open_sqlite(&dir.path().join("db.sqlite")).expect("open");
        (dir, store)
    }

    fn record(number: &str, holding: Holding, state: LicenseState) -> LicenseRecord {
        LicenseRecord {
            license_number: number.into(),
            holding,
            name: "名前".into(),
            birth_date: "1990-01-02".into(),
            state,
        }
    }

    fn new_binding(id: &str, number: &str, sha: Option<&str>) -> NewBinding {
        NewBinding {
            binding_id: id.into(),
            license_number: number.into(),
            issuer_key_id: Some("aa".into()),
            certificate_serial: "0102".into(),
            certificate_not_before: "2026-01-01T00:00:00Z".into(),
            certificate_not_after: "2030-01-01T00:00:00Z".into(),
            terminal_id: "t1".into(),
            operator_id: None,
            linked_via: LinkedVia::Counter,
            holding_at_link: Holding::MynaOnly,
            identity_check: IdentityCheck::Automatic,
            linked_at: "2026-11-26T09:00:00Z".into(),
            statement_time: Some("2026-11-26T09:00:00Z".into()),
            statement_sha256: sha.map(str::to_string),
        }
    }

    fn audit(code: Code) -> AuditEntry {
        AuditEntry {
            at: "2026-11-26T09:00:00Z".into(),
            operation: Operation::Submit,
            code,
            terminal_id: Some("t1".into()),
            license_number: None,
            binding_id: None,
        }
    }

    #[test]
    fn opens_with_wal_full_sync_and_latest_schema() {
        let (dir, store) = temp_store();
        assert_eq!(store.pragma("journal_mode").expect("pragma"), "wal");
        // FULL = 2.
        assert_eq!(store.pragma("synchronous").expect("pragma"), "2");
        assert_eq!(store.pragma("foreign_keys").expect("pragma"), "1");
        assert_eq!(store.schema_version().expect("v"), latest_schema_version());
        drop(store);
        // Reopening applies nothing twice.
        let again = Store::open_sqlite(&dir.path().join("db.sqlite")).expect("reopen");
        assert_eq!(again.schema_version().expect("v"), latest_schema_version());
    }

    #[test]
    fn refuses_a_newer_schema() {
        let (dir, store) = temp_store();
        store
            .conn
            .execute(
                "INSERT INTO schema_migrations (version, applied_at) VALUES (999, 'x')",
                [],
            )
            .expect("insert");
        drop(store);
        let err = Store::open_sqlite(&dir.path().join("db.sqlite")).expect_err("too new");
        assert!(matches!(err, StoreError::SchemaTooNew { found: 999, .. }));
    }

    #[test]
    fn database_urls() {
        assert_eq!(
            DatabaseUrl::parse("sqlite:/tmp/x.db").expect("url"),
            DatabaseUrl::Sqlite("/tmp/x.db".into())
        );
        assert_eq!(
            DatabaseUrl::parse("sqlite:///tmp/x.db").expect("url"),
            DatabaseUrl::Sqlite("/tmp/x.db".into())
        );
        assert!(matches!(
            DatabaseUrl::parse("postgres://h/db"),
            Ok(DatabaseUrl::Postgres(_))
        ));
        assert!(DatabaseUrl::parse("mysql://h").is_err());
        assert!(DatabaseUrl::parse("sqlite:").is_err());
        assert!(matches!(
            Store::open_url("postgres://h/db"),
            Err(StoreError::PostgresUnavailable)
        ));
    }

    #[test]
    fn upsert_tracks_when_a_license_ended() {
        let (_dir, mut store) = temp_store();
        let n = "301512345670";
        let c = store
            .upsert_licenses(&[record(n, Holding::MynaOnly, LicenseState::Valid)], "t0")
            .expect("upsert");
        assert_eq!(c.inserted, 1);
        let c = store
            .upsert_licenses(&[record(n, Holding::MynaOnly, LicenseState::Valid)], "t1")
            .expect("upsert");
        assert_eq!(c.unchanged, 1);
        store
            .upsert_licenses(&[record(n, Holding::MynaOnly, LicenseState::Lapsed)], "t2")
            .expect("upsert");
        store
            .upsert_licenses(&[record(n, Holding::MynaOnly, LicenseState::Revoked)], "t3")
            .expect("upsert");
        let l = store.license(n).expect("read").expect("exists");
        assert_eq!(l.lapsed_or_revoked_at.as_deref(), Some("t2"));
        let c = store
            .upsert_licenses(&[record(n, Holding::MynaOnly, LicenseState::Valid)], "t4")
            .expect("upsert");
        assert_eq!(c.updated, 1);
        let l = store.license(n).expect("read").expect("exists");
        assert_eq!(l.record.state, LicenseState::Valid);
        assert_eq!(l.lapsed_or_revoked_at.as_deref(), Some("t2"));
        assert_eq!(l.updated_at, "t4");
    }

    #[test]
    fn insert_is_idempotent_and_one_active_per_license() {
        let (_dir, mut store) = temp_store();
        let n = "301512345670";
        store
            .upsert_licenses(&[record(n, Holding::MynaOnly, LicenseState::Valid)], "t0")
            .expect("upsert");
        let created = store
            .insert_binding(&new_binding("b1", n, Some("s1")), &audit(Code::Created))
            .expect("insert");
        assert!(matches!(created, InsertOutcome::Created(ref b) if b.binding_id == "b1"));
        let again = store
            .insert_binding(&new_binding("b2", n, Some("s1")), &audit(Code::Created))
            .expect("insert");
        assert!(matches!(again, InsertOutcome::Repeated(ref b) if b.binding_id == "b1"));
        let other = store
            .insert_binding(&new_binding("b3", n, Some("s2")), &audit(Code::Created))
            .expect("insert");
        assert!(matches!(other, InsertOutcome::AlreadyLinked(ref b) if b.binding_id == "b1"));
        assert!(matches!(
            store.cancel_binding("b1", "t5", None).expect("cancel"),
            CancelOutcome::Cancelled(ref b) if b.cancelled_at.as_deref() == Some("t5")
        ));
        assert!(matches!(
            store.cancel_binding("b1", "t6", None).expect("cancel"),
            CancelOutcome::AlreadyCancelled(_)
        ));
        assert_eq!(
            store.cancel_binding("nope", "t6", None).expect("cancel"),
            CancelOutcome::NotFound
        );
        let reused = store
            .insert_binding(&new_binding("b4", n, Some("s1")), &audit(Code::Created))
            .expect("insert");
        assert!(matches!(reused, InsertOutcome::StatementReused(_)));
        let relinked = store
            .insert_binding(&new_binding("b5", n, Some("s3")), &audit(Code::Created))
            .expect("insert");
        assert!(matches!(relinked, InsertOutcome::Created(_)));
        assert_eq!(
            store
                .last_cancelled_binding(n)
                .expect("read")
                .map(|b| b.binding_id),
            Some("b1".to_string())
        );
        // Created (2), cancelled, already cancelled, not found.
        assert_eq!(store.audit_rows().expect("audit").len(), 5);
    }

    #[test]
    fn the_database_enforces_one_active_binding() {
        let (_dir, mut store) = temp_store();
        let n = "301512345670";
        store
            .upsert_licenses(&[record(n, Holding::MynaOnly, LicenseState::Valid)], "t0")
            .expect("upsert");
        store
            .insert_binding(&new_binding("b1", n, Some("s1")), &audit(Code::Created))
            .expect("insert");
        let b = new_binding("b2", n, Some("s2"));
        let direct = store.conn.execute(
            &format!(
                "INSERT INTO bindings ({BINDING_COLUMNS})
                 VALUES (?1, ?2, NULL, 'x', 'x', 'x', 't', NULL, 'counter', 'myna_only',
                     'automatic', 'x', NULL, ?3, NULL)"
            ),
            params![b.binding_id, b.license_number, b.statement_sha256],
        );
        assert!(direct.is_err());
    }

    #[test]
    fn failures_are_counted_in_a_window_and_flagged() {
        let (_dir, mut store) = temp_store();
        let failure = [FailureCount {
            kind: SubjectKind::Terminal,
            subject: "t1",
            threshold: 2,
        }];
        let mut entry = audit(Code::SignatureInvalid);
        entry.at = "2026-11-26T09:00:00Z".into();
        let flagged = store
            .record_decision(&entry, &failure, "2026-11-26T08:00:00Z")
            .expect("record");
        assert!(flagged.is_empty());
        entry.at = "2026-11-26T09:10:00Z".into();
        let flagged = store
            .record_decision(&entry, &failure, "2026-11-26T08:10:00Z")
            .expect("record");
        assert_eq!(flagged, [SubjectKind::Terminal]);
        assert_eq!(
            store
                .failures_since(SubjectKind::Terminal, "t1", "2026-11-26T09:05:00Z")
                .expect("count"),
            1
        );
        let flags = store.abuse_flags().expect("flags");
        assert_eq!(flags.len(), 1);
        assert_eq!(flags[0].failures, 2);
        assert!(store
            .clear_flag(SubjectKind::Terminal, "t1")
            .expect("clear"));
        assert!(store.abuse_flags().expect("flags").is_empty());
    }
}
