//! The schema and its numbered migrations, one text per dialect side by side. A database
//! records each applied version in `schema_migrations`; a version once released never
//! changes. Both dialects keep the same tables, columns, constraints and indexes: text and
//! integer columns, CHECK constraints, a partial unique index for the one active binding
//! of a license. They differ only where the SQL must (SQLite's rowid keys against
//! PostgreSQL's identity columns; SQLite rebuilds a table to change a CHECK constraint).
//! Times are RFC 3339 UTC with whole seconds, which sort as text.

use super::sql::{args, Conn, Dialect};
use super::StoreError;

pub(crate) struct Migration {
    pub version: i64,
    pub sqlite: &'static str,
    pub postgres: &'static str,
}

impl Migration {
    fn sql(&self, dialect: Dialect) -> &'static str {
        match dialect {
            Dialect::Sqlite => self.sqlite,
            Dialect::Postgres => self.postgres,
        }
    }
}

pub(crate) const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        sqlite: r#"
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
        postgres: r#"
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
    id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    at TEXT NOT NULL,
    operation TEXT NOT NULL CONSTRAINT audit_operation_check
        CHECK (operation IN ('submit', 'cancel', 'one_stop')),
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
    id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
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
    failures BIGINT NOT NULL,
    last_code TEXT NOT NULL,
    PRIMARY KEY (subject_kind, subject)
);
"#,
    },
    Migration {
        version: 2,
        sqlite: r#"
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
        postgres: r#"
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

-- New audit operations: the CHECK constraint is replaced.
ALTER TABLE audit DROP CONSTRAINT audit_operation_check;
ALTER TABLE audit ADD CONSTRAINT audit_operation_check CHECK (operation IN ('submit', 'cancel',
    'one_stop', 'second_stage_basic4', 'second_stage_signature'));
"#,
    },
    Migration {
        version: 3,
        sqlite: MIGRATION_3,
        postgres: MIGRATION_3,
    },
    Migration {
        version: 4,
        sqlite: MIGRATION_4,
        postgres: MIGRATION_4,
    },
    Migration {
        version: 5,
        sqlite: r#"
-- Status reads are audited too; the CHECK constraint is rebuilt with the table.
CREATE TABLE audit_v5 (
    id INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    operation TEXT NOT NULL CHECK (operation IN ('submit', 'cancel', 'one_stop',
        'second_stage_basic4', 'second_stage_signature', 'status')),
    decision TEXT NOT NULL CHECK (decision IN ('accepted', 'rejected')),
    code TEXT NOT NULL,
    http_status INTEGER NOT NULL,
    terminal_id TEXT,
    license_number TEXT,
    binding_id TEXT
);
INSERT INTO audit_v5 (id, at, operation, decision, code, http_status, terminal_id,
    license_number, binding_id)
    SELECT id, at, operation, decision, code, http_status, terminal_id, license_number,
        binding_id FROM audit;
DROP TABLE audit;
ALTER TABLE audit_v5 RENAME TO audit;
CREATE INDEX audit_at ON audit (at);
-- A caller's reads within the rate-limit window are counted with this index.
CREATE INDEX audit_caller ON audit (terminal_id, operation, at);
"#,
        postgres: r#"
-- Status reads are audited too: the CHECK constraint is replaced.
ALTER TABLE audit DROP CONSTRAINT audit_operation_check;
ALTER TABLE audit ADD CONSTRAINT audit_operation_check CHECK (operation IN ('submit', 'cancel',
    'one_stop', 'second_stage_basic4', 'second_stage_signature', 'status'));
-- A caller's reads within the rate-limit window are counted with this index.
CREATE INDEX audit_caller ON audit (terminal_id, operation, at);
"#,
    },
    Migration {
        version: 6,
        sqlite: r#"
-- §8: linking suspended for a license by an administrator, until lifted.
CREATE TABLE suspensions (
    license_number TEXT PRIMARY KEY REFERENCES license_records (license_number),
    suspended_at TEXT NOT NULL,
    reason TEXT NOT NULL,
    suspended_by TEXT NOT NULL
);
-- §8: when what was collected for a binding was erased.
ALTER TABLE bindings ADD COLUMN erased_at TEXT;
-- The administrators' actions are audited too; the CHECK constraint is rebuilt with the table.
CREATE TABLE audit_v6 (
    id INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    operation TEXT NOT NULL CHECK (operation IN ('submit', 'cancel', 'one_stop',
        'second_stage_basic4', 'second_stage_signature', 'status', 'suspend',
        'lift_suspension', 'erase')),
    decision TEXT NOT NULL CHECK (decision IN ('accepted', 'rejected')),
    code TEXT NOT NULL,
    http_status INTEGER NOT NULL,
    terminal_id TEXT,
    license_number TEXT,
    binding_id TEXT
);
INSERT INTO audit_v6 (id, at, operation, decision, code, http_status, terminal_id,
    license_number, binding_id)
    SELECT id, at, operation, decision, code, http_status, terminal_id, license_number,
        binding_id FROM audit;
DROP TABLE audit;
ALTER TABLE audit_v6 RENAME TO audit;
CREATE INDEX audit_at ON audit (at);
CREATE INDEX audit_caller ON audit (terminal_id, operation, at);
"#,
        postgres: r#"
-- §8: linking suspended for a license by an administrator, until lifted.
CREATE TABLE suspensions (
    license_number TEXT PRIMARY KEY REFERENCES license_records (license_number),
    suspended_at TEXT NOT NULL,
    reason TEXT NOT NULL,
    suspended_by TEXT NOT NULL
);
-- §8: when what was collected for a binding was erased.
ALTER TABLE bindings ADD COLUMN erased_at TEXT;
-- The administrators' actions are audited too: the CHECK constraint is replaced.
ALTER TABLE audit DROP CONSTRAINT audit_operation_check;
ALTER TABLE audit ADD CONSTRAINT audit_operation_check CHECK (operation IN ('submit', 'cancel',
    'one_stop', 'second_stage_basic4', 'second_stage_signature', 'status', 'suspend',
    'lift_suspension', 'erase'));
"#,
    },
    Migration {
        version: 7,
        sqlite: r#"
-- Re-checks of bindings are audited too; the CHECK constraint is rebuilt with the table.
CREATE TABLE audit_v7 (
    id INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    operation TEXT NOT NULL CHECK (operation IN ('submit', 'cancel', 'one_stop',
        'second_stage_basic4', 'second_stage_signature', 'status', 'suspend',
        'lift_suspension', 'erase', 'recheck')),
    decision TEXT NOT NULL CHECK (decision IN ('accepted', 'rejected')),
    code TEXT NOT NULL,
    http_status INTEGER NOT NULL,
    terminal_id TEXT,
    license_number TEXT,
    binding_id TEXT
);
INSERT INTO audit_v7 (id, at, operation, decision, code, http_status, terminal_id,
    license_number, binding_id)
    SELECT id, at, operation, decision, code, http_status, terminal_id, license_number,
        binding_id FROM audit;
DROP TABLE audit;
ALTER TABLE audit_v7 RENAME TO audit;
CREATE INDEX audit_at ON audit (at);
CREATE INDEX audit_caller ON audit (terminal_id, operation, at);
"#,
        postgres: r#"
-- Re-checks of bindings are audited too: the CHECK constraint is replaced.
ALTER TABLE audit DROP CONSTRAINT audit_operation_check;
ALTER TABLE audit ADD CONSTRAINT audit_operation_check CHECK (operation IN ('submit', 'cancel',
    'one_stop', 'second_stage_basic4', 'second_stage_signature', 'status', 'suspend',
    'lift_suspension', 'erase', 'recheck'));
"#,
    },
    Migration {
        version: 8,
        sqlite: MIGRATION_8,
        postgres: MIGRATION_8,
    },
];

/// The certificate lifecycle: how each binding's revocation status was checked when it was
/// stored (`good` from a source, `unchecked` under `--revocation prefer` when no source
/// answered, `off`; NULL for bindings stored before), a binding gone stale (its certificate
/// revoked or expired, found by a re-check) and one superseded by a new first stage. A
/// superseded binding leaves the license's one current binding: the unique index now
/// excludes it (`superseded_at` is set before the new binding is stored, `superseded_by`
/// after, so that the reference always points at a stored row).
const MIGRATION_8: &str = r#"
ALTER TABLE bindings ADD COLUMN revocation_check TEXT
    CHECK (revocation_check IN ('good', 'unchecked', 'off'));
ALTER TABLE bindings ADD COLUMN revocation_source TEXT;
ALTER TABLE bindings ADD COLUMN revocation_checked_at TEXT;
ALTER TABLE bindings ADD COLUMN rechecked_at TEXT;
ALTER TABLE bindings ADD COLUMN stale_at TEXT;
ALTER TABLE bindings ADD COLUMN stale_reason TEXT
    CHECK (stale_reason IN ('certificate_revoked', 'certificate_expired'));
ALTER TABLE bindings ADD COLUMN revocation_reason TEXT;
ALTER TABLE bindings ADD COLUMN revoked_at TEXT;
ALTER TABLE bindings ADD COLUMN superseded_at TEXT;
ALTER TABLE bindings ADD COLUMN superseded_by TEXT REFERENCES bindings (binding_id);
DROP INDEX bindings_one_active;
CREATE UNIQUE INDEX bindings_one_current ON bindings (license_number)
    WHERE cancelled_at IS NULL AND superseded_at IS NULL;
"#;

/// §6: a binding restored from Mynaportal after a cancellation names the cancelled one;
/// a pending second stage knows whether it was begun to restore one.
const MIGRATION_3: &str = r#"
ALTER TABLE bindings ADD COLUMN relinked_from TEXT REFERENCES bindings (binding_id);
ALTER TABLE second_stage_pending ADD COLUMN relink INTEGER NOT NULL DEFAULT 0
    CHECK (relink IN (0, 1));
"#;

/// The card-info basic-4 of a pending second stage is kept as keyed hashes only (see
/// `basic4_key`): the value columns go, and with them the rows that hold values (they would
/// expire within 30 minutes anyway). The table is dropped rather than altered, so that
/// PostgreSQL removes its files instead of keeping the old tuples, and SQLite (with
/// `secure_delete`) overwrites its pages. Each hash is 64 hexadecimal digits;
/// `basic4_key_id` names the key they were made with.
const MIGRATION_4: &str = r#"
DROP TABLE second_stage_pending;
CREATE TABLE second_stage_pending (
    second_stage_id TEXT PRIMARY KEY,
    license_number TEXT NOT NULL UNIQUE REFERENCES license_records (license_number),
    binding_id TEXT NOT NULL REFERENCES bindings (binding_id),
    caller_id TEXT NOT NULL,
    basic4_key_id TEXT NOT NULL,
    name_hmac TEXT NOT NULL CHECK (length(name_hmac) = 64),
    address_hmac TEXT NOT NULL CHECK (length(address_hmac) = 64),
    birth_date_hmac TEXT NOT NULL CHECK (length(birth_date_hmac) = 64),
    sex_hmac TEXT NOT NULL CHECK (length(sex_hmac) = 64),
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    relink INTEGER NOT NULL DEFAULT 0 CHECK (relink IN (0, 1))
);
CREATE INDEX second_stage_pending_expires ON second_stage_pending (expires_at);
"#;

/// The newest schema version this build knows.
pub fn latest_schema_version() -> i64 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

/// An arbitrary, fixed key of the PostgreSQL advisory lock that makes processes starting at
/// the same time migrate one after the other.
const MIGRATION_LOCK: i64 = 0x6d79_6e61_6c69_6e6b;

/// The version from which the second stage's basic-4 is stored as hashes only.
pub(crate) const BASIC4_HASHED: i64 = 4;

/// Brings the schema up to date inside the caller's write transaction; returns the version
/// the database had before.
pub(crate) fn migrate(conn: &mut Conn) -> Result<i64, StoreError> {
    match conn.dialect() {
        Dialect::Sqlite => conn.batch(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                 version INTEGER PRIMARY KEY,
                 applied_at TEXT NOT NULL
             )",
        )?,
        Dialect::Postgres => {
            conn.execute("SELECT pg_advisory_xact_lock(?1)", args![MIGRATION_LOCK])?;
            conn.batch(
                "CREATE TABLE IF NOT EXISTS schema_migrations (
                     version BIGINT PRIMARY KEY,
                     applied_at TEXT NOT NULL
                 )",
            )?
        }
    }
    let current = schema_version(conn)?;
    let supported = latest_schema_version();
    if current > supported {
        return Err(StoreError::SchemaTooNew {
            found: current,
            supported,
        });
    }
    let now = crate::now_text();
    let dialect = conn.dialect();
    for migration in MIGRATIONS.iter().filter(|m| m.version > current) {
        conn.batch(migration.sql(dialect))?;
        conn.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, ?2)",
            args![migration.version, &now],
        )?;
    }
    Ok(current)
}

pub(crate) fn schema_version(conn: &mut Conn) -> Result<i64, StoreError> {
    conn.query_one(
        "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
        &[],
    )?
    .int(0)
}
