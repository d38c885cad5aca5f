//! The durable outbox: every signed binding is written here before its upload starts and
//! removed only once the backend has acknowledged it, so a crash, a kill or an unreachable
//! backend never loses one. A background sender takes the [`Outbox::due`] entries, uploads
//! them, and calls [`Outbox::remove`] on success or [`Outbox::record_failure`] to schedule the
//! next attempt (exponential backoff with full jitter).
//!
//! The signing certificate carries the holder's basic-4 information, which must never be
//! stored on the terminal; the outbox keeps it only sealed to the backend's public key
//! ([`crate::seal`]), bound to the statement's SHA-256, so the terminal cannot read it back.
//!
//! Each entry also keeps what the upload needs besides the signed statement: whether staff
//! confirmed the holder's identity (a certificate name with substitute characters cannot be
//! matched by machine) and the issuing CA certificate when the terminal read it from the card.
//! A delivery after a restart therefore sends exactly what the first attempt would have.
//!
//! Storage: one SQLite file (WAL, `synchronous=FULL` so that a returned commit survives power
//! loss), mode 0600 for the file and its `-wal`/`-shm` companions. A statement's SHA-256 is
//! unique, so adding the same signed statement twice keeps a single entry. Files written by an
//! older version are migrated in place when opened; no entry is lost.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rand::Rng;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::seal::{self, RecipientKey, SealError, SealedBox};
use crate::session::SignedStatement;
use crate::statement::Statement;

/// The schema this code writes and reads.
///
/// 1. entries with the statement, signature and sealed certificate;
/// 2. plus `staff_confirmed_identity` and `ca_certificate` (rows of version 1 read as not
///    confirmed, without a CA certificate: what they were sent with before).
pub const SCHEMA_VERSION: i64 = 2;

/// First retry window of the backoff.
pub const BACKOFF_BASE: Duration = Duration::from_secs(2);
/// Longest wait between two attempts.
pub const BACKOFF_CAP: Duration = Duration::from_secs(300);

/// Longest stored `last_error`, in characters; it is for the operator's overview only.
const MAX_ERROR_CHARS: usize = 500;

/// How long a connection waits for another one (the sender, a second window) to finish.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The row id of an entry. Ids are never reused, so a stale id cannot hit a newer entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EntryId(pub i64);

impl std::fmt::Display for EntryId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Errors name the operation and never carry a statement, signature or certificate.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("cannot prepare the outbox file {path}: {source}")]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("outbox database error while {action}: {source}")]
    Database {
        action: &'static str,
        #[source]
        source: rusqlite::Error,
    },
    #[error("the outbox file system does not support SQLite's write-ahead log")]
    NoWriteAheadLog,
    #[error("the outbox has schema version {found}; this program supports up to {supported}")]
    UnsupportedSchema { found: i64, supported: i64 },
    #[error("the signed statement cannot be queued: {0}")]
    InvalidStatement(&'static str),
    #[error("cannot seal the signing certificate: {0}")]
    Seal(#[from] SealError),
    #[error("outbox entry {0} holds a sealed certificate that cannot be read")]
    CorruptEntry(EntryId),
    #[error("outbox entry {0} does not exist")]
    NotFound(EntryId),
}

fn db(action: &'static str) -> impl FnOnce(rusqlite::Error) -> OutboxError {
    move |source| OutboxError::Database { action, source }
}

/// An entry as the operator sees it: no statement, signature or certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntrySummary {
    pub id: EntryId,
    /// Lower-case hex.
    pub statement_sha256: String,
    pub license_number: String,
    pub created_at: OffsetDateTime,
    pub attempts: u32,
    pub next_attempt_at: OffsetDateTime,
    pub last_error: Option<String>,
    pub staff_confirmed_identity: bool,
}

/// What an upload needs besides the signed statement, kept with the entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EntryOptions {
    /// Staff checked the holder against the license record because the certificate's name
    /// uses substitute characters (the backend asks for this instead of a name match).
    pub staff_confirmed_identity: bool,
    /// The issuing CA certificate (DER), when it was read from the card. Public data.
    pub ca_certificate: Option<Vec<u8>>,
}

/// An entry ready for upload.
#[derive(Debug, Clone)]
pub struct PendingEntry {
    pub id: EntryId,
    pub statement_sha256: String,
    /// The canonical statement bytes the card signed.
    pub statement: Vec<u8>,
    pub signature: Vec<u8>,
    /// The signing certificate, sealed to the backend with [`certificate_aad`] of the
    /// statement bytes as associated data.
    pub sealed_certificate: SealedBox,
    pub license_number: String,
    pub attempts: u32,
    pub staff_confirmed_identity: bool,
    pub ca_certificate: Option<Vec<u8>>,
}

impl PendingEntry {
    /// The options the entry was added with.
    pub fn options(&self) -> EntryOptions {
        EntryOptions {
            staff_confirmed_identity: self.staff_confirmed_identity,
            ca_certificate: self.ca_certificate.clone(),
        }
    }
}

/// The associated data a sealed certificate is bound to: the SHA-256 of the canonical
/// statement bytes. The backend passes the same to [`seal::open`].
pub fn certificate_aad(statement_bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(statement_bytes).into()
}

/// The wait after the `attempts`-th consecutive failure: full jitter, uniform in
/// `[0, min(cap, base · 2^(attempts−1))]`, with millisecond resolution. Zero attempts, zero wait.
pub fn backoff<R: Rng + ?Sized>(attempts: u32, rng: &mut R) -> Duration {
    if attempts == 0 {
        return Duration::ZERO;
    }
    let base = BACKOFF_BASE.as_millis() as u64;
    let cap = BACKOFF_CAP.as_millis() as u64;
    // 2^(attempts−1) overflows long after the cap is reached; saturate instead.
    let ceiling = 1u64
        .checked_shl(attempts - 1)
        .and_then(|factor| base.checked_mul(factor))
        .map_or(cap, |window| window.min(cap));
    Duration::from_millis(rng.gen_range(0..=ceiling))
}

pub struct Outbox {
    conn: Connection,
    path: PathBuf,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox").field("path", &self.path).finish()
    }
}

impl Outbox {
    /// Opens (creating if needed) the outbox at `path`. The parent directory must exist.
    pub fn open(path: impl AsRef<Path>) -> Result<Outbox, OutboxError> {
        let path = path.as_ref().to_path_buf();
        create_private_file(&path)?;

        let mut conn = Connection::open(&path).map_err(db("opening the database"))?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(db("setting the busy timeout"))?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode=WAL", [], |row| row.get(0))
            .map_err(db("enabling write-ahead logging"))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(OutboxError::NoWriteAheadLog);
        }
        // FULL also syncs the WAL on every commit: an acknowledged `add` survives power loss.
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(db("setting synchronous=FULL"))?;

        migrate(&mut conn)?;
        // SQLite gives -wal/-shm the main file's mode; chmod anyway in case they predate it.
        for suffix in ["-wal", "-shm"] {
            let mut companion = path.clone().into_os_string();
            companion.push(suffix);
            restrict_existing(Path::new(&companion))?;
        }
        Ok(Outbox { conn, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Queues a signed binding, sealing its certificate to `recipient` (the backend's key).
    /// Returns the entry and whether it is new; the same statement again returns the existing
    /// entry. When this returns `Ok`, the entry is on disk. Staff confirmation is not
    /// recorded; see [`Outbox::add_with`].
    pub fn add(
        &mut self,
        signed: &SignedStatement,
        recipient: &RecipientKey,
    ) -> Result<(EntryId, bool), OutboxError> {
        self.add_with(
            signed,
            recipient,
            &EntryOptions::default(),
            OffsetDateTime::now_utc(),
        )
    }

    /// [`Outbox::add`] at a given time (the entry is due from then on).
    pub fn add_at(
        &mut self,
        signed: &SignedStatement,
        recipient: &RecipientKey,
        now: OffsetDateTime,
    ) -> Result<(EntryId, bool), OutboxError> {
        self.add_with(signed, recipient, &EntryOptions::default(), now)
    }

    /// Queues a signed binding with what its upload needs (`options`), due from `now`.
    /// Adding a statement that is already queued keeps the one entry; a staff confirmation
    /// or a CA certificate given now is added to it (a confirmation is never withdrawn).
    pub fn add_with(
        &mut self,
        signed: &SignedStatement,
        recipient: &RecipientKey,
        options: &EntryOptions,
        now: OffsetDateTime,
    ) -> Result<(EntryId, bool), OutboxError> {
        // The bytes are what the card signed and what the backend verifies, so they are the
        // source of truth; the certificate must be the one the statement names.
        let statement = Statement::from_canonical_bytes(&signed.bytes).map_err(|_| {
            OutboxError::InvalidStatement("the statement bytes are not a canonical statement")
        })?;
        if statement.certificate_sha256 != hex::encode(Sha256::digest(&signed.certificate_der)) {
            return Err(OutboxError::InvalidStatement(
                "the certificate is not the one the statement names",
            ));
        }
        if signed.signature.is_empty() {
            return Err(OutboxError::InvalidStatement("the signature is empty"));
        }
        if options.ca_certificate.as_ref().is_some_and(Vec::is_empty) {
            return Err(OutboxError::InvalidStatement("the CA certificate is empty"));
        }
        let aad = certificate_aad(&signed.bytes);
        let digest = hex::encode(aad);
        let sealed = seal::seal(recipient, &signed.certificate_der, &aad)?;
        let now_ms = unix_ms(now);

        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db("starting to add an entry"))?;
        let existing: Option<i64> = tx
            .query_row(
                "SELECT id FROM entries WHERE statement_sha256 = ?1",
                [&digest],
                |row| row.get(0),
            )
            .optional()
            .map_err(db("adding an entry"))?;
        let (id, new) = match existing {
            Some(id) => {
                tx.execute(
                    "UPDATE entries
                     SET staff_confirmed_identity = MAX(staff_confirmed_identity, ?2),
                         ca_certificate = COALESCE(ca_certificate, ?3)
                     WHERE id = ?1",
                    params![id, options.staff_confirmed_identity, options.ca_certificate],
                )
                .map_err(db("updating an entry"))?;
                (id, false)
            }
            None => {
                tx.execute(
                    "INSERT INTO entries (statement_sha256, statement, signature,
                                          sealed_certificate, license_number, created_at,
                                          attempts, next_attempt_at,
                                          staff_confirmed_identity, ca_certificate)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, ?6, ?7, ?8)",
                    params![
                        digest,
                        signed.bytes,
                        signed.signature,
                        sealed.to_json(),
                        statement.license_number,
                        now_ms,
                        options.staff_confirmed_identity,
                        options.ca_certificate
                    ],
                )
                .map_err(db("adding an entry"))?;
                (tx.last_insert_rowid(), true)
            }
        };
        tx.commit().map_err(db("committing a new entry"))?;
        Ok((EntryId(id), new))
    }

    /// Every entry, oldest first.
    pub fn list(&self) -> Result<Vec<EntrySummary>, OutboxError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT id, statement_sha256, license_number, created_at, attempts,
                        next_attempt_at, last_error, staff_confirmed_identity
                 FROM entries ORDER BY created_at, id",
            )
            .map_err(db("listing entries"))?;
        let rows = stmt
            .query_map([], |row| {
                Ok(EntrySummary {
                    id: EntryId(row.get(0)?),
                    statement_sha256: row.get(1)?,
                    license_number: row.get(2)?,
                    created_at: from_unix_ms(row.get(3)?),
                    attempts: row.get(4)?,
                    next_attempt_at: from_unix_ms(row.get(5)?),
                    last_error: row.get(6)?,
                    staff_confirmed_identity: row.get(7)?,
                })
            })
            .map_err(db("listing entries"))?;
        rows.collect::<Result<_, _>>()
            .map_err(db("listing entries"))
    }

    /// The entries whose next attempt is at or before `now`, the most overdue first.
    pub fn due(&self, now: OffsetDateTime) -> Result<Vec<PendingEntry>, OutboxError> {
        self.pending_where("next_attempt_at <= ?1", unix_ms(now))
    }

    /// Every entry, due or not, in the order they would become due (an operator's "send
    /// now").
    pub fn all_pending(&self) -> Result<Vec<PendingEntry>, OutboxError> {
        self.pending_where("id > ?1", 0)
    }

    /// One entry, if it is still queued.
    pub fn get(&self, id: EntryId) -> Result<Option<PendingEntry>, OutboxError> {
        Ok(self.pending_where("id = ?1", id.0)?.into_iter().next())
    }

    fn pending_where(&self, condition: &str, value: i64) -> Result<Vec<PendingEntry>, OutboxError> {
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT id, statement_sha256, statement, signature, sealed_certificate,
                        license_number, attempts, staff_confirmed_identity, ca_certificate
                 FROM entries WHERE {condition} ORDER BY next_attempt_at, id"
            ))
            .map_err(db("reading queued entries"))?;
        let rows = stmt
            .query_map([value], |row| {
                Ok((
                    EntryId(row.get(0)?),
                    row.get::<_, String>(1)?,
                    row.get::<_, Vec<u8>>(2)?,
                    row.get::<_, Vec<u8>>(3)?,
                    row.get::<_, String>(4)?,
                    row.get::<_, String>(5)?,
                    row.get::<_, u32>(6)?,
                    row.get::<_, bool>(7)?,
                    row.get::<_, Option<Vec<u8>>>(8)?,
                ))
            })
            .map_err(db("reading queued entries"))?;
        let mut entries = Vec::new();
        for row in rows {
            let (
                id,
                statement_sha256,
                statement,
                signature,
                sealed,
                license_number,
                attempts,
                staff_confirmed_identity,
                ca_certificate,
            ) = row.map_err(db("reading queued entries"))?;
            let sealed_certificate =
                SealedBox::from_json(&sealed).map_err(|_| OutboxError::CorruptEntry(id))?;
            entries.push(PendingEntry {
                id,
                statement_sha256,
                statement,
                signature,
                sealed_certificate,
                license_number,
                attempts,
                staff_confirmed_identity,
                ca_certificate,
            });
        }
        Ok(entries)
    }

    /// When the earliest entry becomes due, or `None` when the outbox is empty.
    pub fn next_due_at(&self) -> Result<Option<OffsetDateTime>, OutboxError> {
        let at: Option<i64> = self
            .conn
            .query_row("SELECT MIN(next_attempt_at) FROM entries", [], |row| {
                row.get(0)
            })
            .map_err(db("reading the next due time"))?;
        Ok(at.map(from_unix_ms))
    }

    /// Records a failed upload and schedules the next attempt `backoff(attempts)` after `now`.
    /// `error` is for the operator (a code or short message, never a response body); it is
    /// truncated. Returns the time of the next attempt.
    pub fn record_failure<R: Rng + ?Sized>(
        &mut self,
        id: EntryId,
        error: &str,
        now: OffsetDateTime,
        rng: &mut R,
    ) -> Result<OffsetDateTime, OutboxError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db("starting to record a failure"))?;
        let attempts: u32 = tx
            .query_row(
                "SELECT attempts FROM entries WHERE id = ?1",
                [id.0],
                |row| row.get(0),
            )
            .optional()
            .map_err(db("recording a failure"))?
            .ok_or(OutboxError::NotFound(id))?;
        let attempts = attempts.saturating_add(1);
        let wait = backoff(attempts, rng);
        let next_ms = unix_ms(now).saturating_add(wait.as_millis() as i64);
        let error: String = error.chars().take(MAX_ERROR_CHARS).collect();
        tx.execute(
            "UPDATE entries SET attempts = ?2, next_attempt_at = ?3, last_error = ?4
             WHERE id = ?1",
            params![id.0, attempts, next_ms, error],
        )
        .map_err(db("recording a failure"))?;
        tx.commit().map_err(db("committing a failure"))?;
        Ok(from_unix_ms(next_ms))
    }

    /// Removes an entry once the backend has acknowledged it. Returns whether it was there
    /// (removing twice is harmless).
    pub fn remove(&mut self, id: EntryId) -> Result<bool, OutboxError> {
        let removed = self
            .conn
            .execute("DELETE FROM entries WHERE id = ?1", [id.0])
            .map_err(db("removing an entry"))?;
        Ok(removed > 0)
    }

    pub fn len(&self) -> Result<usize, OutboxError> {
        let n: i64 = self
            .conn
            .query_row("SELECT COUNT(*) FROM entries", [], |row| row.get(0))
            .map_err(db("counting entries"))?;
        Ok(usize::try_from(n).unwrap_or(0))
    }

    pub fn is_empty(&self) -> Result<bool, OutboxError> {
        Ok(self.len()? == 0)
    }

    /// Moves the WAL's contents into the main file (also done by SQLite on its own).
    pub fn checkpoint(&self) -> Result<(), OutboxError> {
        self.conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .map_err(db("checkpointing"))
    }
}

fn migrate(conn: &mut Connection) -> Result<(), OutboxError> {
    // IMMEDIATE: two processes opening a fresh (or older) file must not both change the
    // schema. Every step runs in this one transaction: a crash leaves the old version intact.
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(db("starting the schema check"))?;
    tx.execute_batch("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);")
        .map_err(db("creating the version table"))?;
    let found: Option<i64> = tx
        .query_row("SELECT MAX(version) FROM schema_version", [], |row| {
            row.get(0)
        })
        .map_err(db("reading the schema version"))?;
    let mut version = match found {
        Some(v) if v > SCHEMA_VERSION => {
            return Err(OutboxError::UnsupportedSchema {
                found: v,
                supported: SCHEMA_VERSION,
            })
        }
        Some(v) => v,
        None => 0,
    };
    while version < SCHEMA_VERSION {
        let (action, sql) = match version {
            // AUTOINCREMENT keeps ids from being reused after a removal.
            0 => (
                "creating the schema",
                "CREATE TABLE entries (
                     id INTEGER PRIMARY KEY AUTOINCREMENT,
                     statement_sha256 TEXT NOT NULL UNIQUE,
                     statement BLOB NOT NULL,
                     signature BLOB NOT NULL,
                     sealed_certificate TEXT NOT NULL,
                     license_number TEXT NOT NULL,
                     created_at INTEGER NOT NULL,
                     attempts INTEGER NOT NULL DEFAULT 0,
                     next_attempt_at INTEGER NOT NULL,
                     last_error TEXT
                 );
                 CREATE INDEX entries_next_attempt ON entries (next_attempt_at);",
            ),
            1 => (
                "adding the upload options to the schema",
                "ALTER TABLE entries
                     ADD COLUMN staff_confirmed_identity INTEGER NOT NULL DEFAULT 0;
                 ALTER TABLE entries ADD COLUMN ca_certificate BLOB;",
            ),
            _ => ("migrating the schema", ""),
        };
        tx.execute_batch(sql).map_err(db(action))?;
        version += 1;
        tx.execute(
            "INSERT INTO schema_version (version) VALUES (?1)",
            [version],
        )
        .map_err(db("recording the schema version"))?;
    }
    tx.commit().map_err(db("committing the schema"))
}

/// Creates the database file with mode 0600 regardless of the umask (SQLite would use 0644
/// less the umask), and tightens an existing one.
fn create_private_file(path: &Path) -> Result<(), OutboxError> {
    let file_error = |source| OutboxError::File {
        path: path.to_path_buf(),
        source,
    };
    let mut options = std::fs::OpenOptions::new();
    options.read(true).write(true).create(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path).map_err(file_error)?;
    restrict_existing(path)
}

#[cfg(unix)]
fn restrict_existing(path: &Path) -> Result<(), OutboxError> {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(OutboxError::File {
            path: path.to_path_buf(),
            source,
        }),
    }
}

#[cfg(not(unix))]
fn restrict_existing(_path: &Path) -> Result<(), OutboxError> {
    Ok(())
}

fn unix_ms(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

fn from_unix_ms(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn backoff_stays_within_its_window() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        assert_eq!(backoff(0, &mut rng), Duration::ZERO);
        for attempts in 1..=100u32 {
            let window = BACKOFF_BASE
                .checked_mul(1u32.checked_shl(attempts - 1).unwrap_or(u32::MAX))
                .map_or(BACKOFF_CAP, |w| w.min(BACKOFF_CAP));
            for _ in 0..200 {
                let wait = backoff(attempts, &mut rng);
                assert!(wait <= window, "attempt {attempts}: {wait:?} > {window:?}");
            }
        }
        assert!(backoff(u32::MAX, &mut rng) <= BACKOFF_CAP);
    }

    /// A file exactly as version 1 wrote it, with one entry.
    fn write_version_1(path: &Path, sealed: &SealedBox) {
        let conn = Connection::open(path).expect("sqlite");
        conn.execute_batch(
            "PRAGMA journal_mode=WAL;
             CREATE TABLE schema_version (version INTEGER NOT NULL);
             INSERT INTO schema_version (version) VALUES (1);
             CREATE TABLE entries (
                 id INTEGER PRIMARY KEY AUTOINCREMENT,
                 statement_sha256 TEXT NOT NULL UNIQUE,
                 statement BLOB NOT NULL,
                 signature BLOB NOT NULL,
                 sealed_certificate TEXT NOT NULL,
                 license_number TEXT NOT NULL,
                 created_at INTEGER NOT NULL,
                 attempts INTEGER NOT NULL DEFAULT 0,
                 next_attempt_at INTEGER NOT NULL,
                 last_error TEXT
             );
             CREATE INDEX entries_next_attempt ON entries (next_attempt_at);",
        )
        .expect("version 1 schema");
        conn.execute(
            "INSERT INTO entries (statement_sha256, statement, signature, sealed_certificate,
                                  license_number, created_at, attempts, next_attempt_at,
                                  last_error)
             VALUES ('ab', x'7b7d', x'0102', ?1, '729913281070', 1000, 3, 2000, 'timed out')",
            [sealed.to_json()],
        )
        .expect("version 1 row");
    }

    #[test]
    fn a_version_1_outbox_is_migrated_without_losing_its_entries() {
        let key = seal::SealPrivateKey::generate().expect("keygen");
        let sealed = seal::seal(key.public_key(), b"certificate", &[7u8; 32]).expect("seal");
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("outbox.db");
        write_version_1(&path, &sealed);

        let mut outbox = Outbox::open(&path).expect("open migrates");
        let version: i64 = outbox
            .conn
            .query_row("SELECT MAX(version) FROM schema_version", [], |r| r.get(0))
            .expect("version");
        assert_eq!(version, SCHEMA_VERSION);
        let listed = outbox.list().expect("list");
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].statement_sha256, "ab");
        assert_eq!(listed[0].attempts, 3);
        assert_eq!(listed[0].last_error.as_deref(), Some("timed out"));
        assert!(!listed[0].staff_confirmed_identity);
        let entry = outbox.get(listed[0].id).expect("get").expect("still there");
        assert_eq!(entry.statement, b"{}");
        assert_eq!(entry.signature, [1, 2]);
        assert_eq!(entry.sealed_certificate, sealed);
        assert_eq!(entry.options(), EntryOptions::default());
        assert_eq!(outbox.due(from_unix_ms(2000)).expect("due").len(), 1);
        assert_eq!(outbox.due(from_unix_ms(1999)).expect("due").len(), 0);
        assert_eq!(outbox.all_pending().expect("all").len(), 1);

        // New ids continue after the old ones; reopening does not migrate twice.
        assert!(outbox.remove(entry.id).expect("remove"));
        drop(outbox);
        let outbox = Outbox::open(&path).expect("reopen");
        let versions: i64 = outbox
            .conn
            .query_row("SELECT COUNT(*) FROM schema_version", [], |r| r.get(0))
            .expect("versions");
        assert_eq!(versions, 2);
        assert!(outbox.is_empty().expect("len"));
    }

    #[test]
    fn times_round_trip_in_milliseconds() {
        let t = OffsetDateTime::from_unix_timestamp(1_795_000_000).expect("time")
            + time::Duration::milliseconds(250);
        assert_eq!(from_unix_ms(unix_ms(t)), t);
    }
}
