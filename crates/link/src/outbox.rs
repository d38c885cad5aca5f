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
//! An entry that cannot be delivered without a person is *held* for an operator
//! ([`HoldReason`]): a row that cannot be read, a certificate sealed to a key the backend does
//! not hold, or one sealed in a retired format. A held entry is listed with its reason, never
//! deleted, never retried automatically, and never stands in the way of the other entries or
//! of new runs; `release` puts it back in the queue once the cause is fixed.
//!
//! Room for the next entry: the card signs only after [`Outbox::ensure_room`] has made sure a
//! reserve file of [`RESERVE_BYTES`] exists beside the outbox. Should the disk fill up while
//! the holder types the password, the write of the signed binding frees the reserve and tries
//! again, so a signature is never made that cannot be kept.
//!
//! Storage: one SQLite file (WAL, `synchronous=FULL` so that a returned commit survives power
//! loss), mode 0600 for the file and its `-wal`/`-shm` companions. A statement's SHA-256 is
//! unique, so adding the same signed statement twice keeps a single entry. Files written by an
//! older version are migrated in place when opened; no entry is lost.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rand::{Rng, RngCore};
use rusqlite::types::Value;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::error::{ErrorCode, FlowError};
use crate::seal::{self, RecipientKey, SealError, SealedBox};
use crate::session::SignedStatement;
use crate::statement::Statement;

/// The schema this code writes and reads.
///
/// 1. entries with the statement, signature and sealed certificate;
/// 2. plus `staff_confirmed_identity` and `ca_certificate` (rows of version 1 read as not
///    confirmed, without a CA certificate: what they were sent with before);
/// 3. plus `held_reason` and `held_at` (rows of version 2 start queued).
pub const SCHEMA_VERSION: i64 = 3;

/// First retry window of the backoff.
pub const BACKOFF_BASE: Duration = Duration::from_secs(2);
/// Longest wait between two attempts.
pub const BACKOFF_CAP: Duration = Duration::from_secs(300);

/// The size of the reserve file kept beside the outbox (`<outbox>.reserve`). One entry takes
/// a few kilobytes, and its write-ahead-log frames some tens; a mebibyte leaves a wide
/// margin and costs nothing worth mentioning.
pub const RESERVE_BYTES: u64 = 1 << 20;

/// Sealing algorithms earlier versions wrote and this one no longer opens. An entry sealed
/// with one of them is held ([`HoldReason::RetiredSealFormat`]) unless it is the current
/// [`seal::ALG`].
pub const RETIRED_SEAL_ALGS: [&str; 1] = [seal::RETIRED_RSA_ALG];

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
    #[error("outbox entry {0} does not exist")]
    NotFound(EntryId),
    #[error("no room is kept for the next entry beside the outbox ({path}): {source}")]
    NoRoom {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("outbox entry {0} is not held")]
    NotHeld(EntryId),
    #[error("outbox entry {id} is still held: {reason}")]
    StillHeld { id: EntryId, reason: HoldReason },
}

impl OutboxError {
    /// Whether the disk (or SQLite's page limit) was full: the reserve can help.
    fn is_disk_full(&self) -> bool {
        matches!(
            self,
            OutboxError::Database {
                source: rusqlite::Error::SqliteFailure(e, _),
                ..
            } if matches!(
                e.code,
                rusqlite::ErrorCode::DiskFull | rusqlite::ErrorCode::SystemIoFailure
            )
        )
    }

    /// The error as the person at the counter meets it: always `outbox_unavailable`; a full
    /// disk says so and what to do.
    pub fn to_flow_error(&self) -> FlowError {
        let mut error = FlowError::new(ErrorCode::OutboxUnavailable).with_detail(self.to_string());
        if matches!(self, OutboxError::NoRoom { .. }) {
            error.message_ja = "送信箱のあるディスクに空きがありません。カードで署名する前に止めました（署名はしていません）。システム担当者がディスクの空きを作ってから、もう一度やり直してください。".into();
            error.message_en = "The disk holding the outbox is full. Stopped before the card signed (nothing was signed). The system administrator must free disk space; then start again.".into();
        } else if self.is_disk_full() {
            error.message_ja = "送信箱のあるディスクに空きがありません。システム担当者がディスクの空きを作ってから、もう一度やり直してください。".into();
            error.message_en = "The disk holding the outbox is full. The system administrator must free disk space; then try again.".into();
        }
        error
    }
}

fn db(action: &'static str) -> impl FnOnce(rusqlite::Error) -> OutboxError {
    move |source| OutboxError::Database { action, source }
}

/// Why an entry is held for an operator instead of being delivered. The snake_case name is
/// stored in the outbox and shown by `outbox list`; it never changes for an existing reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HoldReason {
    /// The row cannot be read (a damaged file, a column that is not what was written).
    Unreadable,
    /// The backend answered that the certificate was sealed to a key it does not hold.
    SealKeyMismatch,
    /// The certificate was sealed in a format this version no longer writes or sends.
    RetiredSealFormat,
}

impl HoldReason {
    pub const ALL: [HoldReason; 3] = [
        HoldReason::Unreadable,
        HoldReason::SealKeyMismatch,
        HoldReason::RetiredSealFormat,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            HoldReason::Unreadable => "unreadable",
            HoldReason::SealKeyMismatch => "seal_key_mismatch",
            HoldReason::RetiredSealFormat => "retired_seal_format",
        }
    }

    pub fn parse(text: &str) -> Option<HoldReason> {
        HoldReason::ALL.into_iter().find(|r| r.as_str() == text)
    }

    /// What the operator reads, and what to do about it: (ja, en).
    pub fn text(self) -> (&'static str, &'static str) {
        match self {
            HoldReason::Unreadable => (
                "この記録は読み取れません（ファイルの破損など）。削除せずに保管しています。システム担当者に連絡してください。",
                "This entry cannot be read (a damaged file). It is kept, not deleted; contact the system administrator.",
            ),
            HoldReason::SealKeyMismatch => (
                "バックエンドが、この記録を封をした鍵を持っていません。バックエンドの鍵（backend_key）を確かめ、直してから mynalink outbox retry ID で送信待ちに戻してください。",
                "The backend does not hold the key this entry was sealed to. Check the backend's key (backend_key), fix it, then put the entry back with `mynalink outbox retry ID`.",
            ),
            HoldReason::RetiredSealFormat => (
                "この記録は廃止された方式（RSA）で封をされており、バックエンドでは開けません。削除せずに保管しています。システム担当者に連絡してください。",
                "This entry was sealed in the retired RSA format, which the backend no longer opens. It is kept, not deleted; contact the system administrator.",
            ),
        }
    }
}

impl std::fmt::Display for HoldReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An entry held for an operator: why, and since when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    pub reason: HoldReason,
    pub since: OffsetDateTime,
}

/// How many entries wait in the queue and how many are held for an operator.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub queued: usize,
    pub held: usize,
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
    /// Set when the entry waits for an operator rather than for the backend.
    pub held: Option<Held>,
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
    /// Should the disk be full, the reserve made by [`Outbox::ensure_room`] is freed and the
    /// write tried once more.
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
        let sealed = seal::seal(recipient, &signed.certificate_der, &aad)?;
        let new = NewEntry {
            digest: hex::encode(aad),
            signed,
            sealed: sealed.to_json(),
            license_number: &statement.license_number,
            options,
            now_ms: unix_ms(now),
        };
        match self.store(&new) {
            // The disk filled up after `ensure_room`: the reserve is there for this entry.
            Err(e) if e.is_disk_full() && self.release_reserve() => self.store(&new),
            stored => stored,
        }
    }

    fn store(&mut self, new: &NewEntry<'_>) -> Result<(EntryId, bool), OutboxError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db("starting to add an entry"))?;
        let existing: Option<i64> = tx
            .query_row(
                "SELECT id FROM entries WHERE statement_sha256 = ?1",
                [&new.digest],
                |row| row.get(0),
            )
            .optional()
            .map_err(db("adding an entry"))?;
        let (id, fresh) = match existing {
            Some(id) => {
                tx.execute(
                    "UPDATE entries
                     SET staff_confirmed_identity = MAX(staff_confirmed_identity, ?2),
                         ca_certificate = COALESCE(ca_certificate, ?3)
                     WHERE id = ?1",
                    params![
                        id,
                        new.options.staff_confirmed_identity,
                        new.options.ca_certificate
                    ],
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
                        new.digest,
                        new.signed.bytes,
                        new.signed.signature,
                        new.sealed,
                        new.license_number,
                        new.now_ms,
                        new.options.staff_confirmed_identity,
                        new.options.ca_certificate
                    ],
                )
                .map_err(db("adding an entry"))?;
                (tx.last_insert_rowid(), true)
            }
        };
        tx.commit().map_err(db("committing a new entry"))?;
        Ok((EntryId(id), fresh))
    }

    /// Every entry, queued or held, oldest first. An entry found unreadable here is held
    /// from now on.
    pub fn list(&self) -> Result<Vec<EntrySummary>, OutboxError> {
        let now = OffsetDateTime::now_utc();
        let rows = self.scan("id > ?1", 0, "created_at, id")?;
        Ok(rows
            .iter()
            .map(|row| {
                let mut summary = row.summary();
                if summary.held.is_none() {
                    if let Err(reason) = row.decode() {
                        // Shown as held even if recording it fails (read-only file system).
                        let _ = self.set_aside(row.id, reason, now);
                        summary.held = Some(Held { reason, since: now });
                    }
                }
                summary
            })
            .collect())
    }

    /// The queued entries whose next attempt is at or before `now`, the most overdue first.
    /// Held entries are not among them.
    pub fn due(&self, now: OffsetDateTime) -> Result<Vec<PendingEntry>, OutboxError> {
        // A time that is not a number is damage: looked at (and held) rather than never due.
        self.pending_where(
            "(next_attempt_at <= ?1 OR typeof(next_attempt_at) != 'integer')",
            unix_ms(now),
        )
    }

    /// Every queued entry, due or not, in the order they would become due (an operator's
    /// "send now"). Held entries are not among them.
    pub fn all_pending(&self) -> Result<Vec<PendingEntry>, OutboxError> {
        self.pending_where("id > ?1", 0)
    }

    /// One entry, if it is still queued (not delivered, not held).
    pub fn get(&self, id: EntryId) -> Result<Option<PendingEntry>, OutboxError> {
        Ok(self.pending_where("id = ?1", id.0)?.into_iter().next())
    }

    /// The hold on an entry; `None` when it is queued or does not exist.
    pub fn held(&self, id: EntryId) -> Result<Option<Held>, OutboxError> {
        Ok(self
            .scan("id = ?1", id.0, "id")?
            .first()
            .and_then(StoredRow::held))
    }

    /// Queued entries matching `condition` (one `?1` parameter). A row that cannot be
    /// decoded is held for an operator and left out: one damaged entry never stops the
    /// others.
    fn pending_where(&self, condition: &str, value: i64) -> Result<Vec<PendingEntry>, OutboxError> {
        let rows = self.scan(
            &format!("held_reason IS NULL AND {condition}"),
            value,
            "next_attempt_at, id",
        )?;
        let now = OffsetDateTime::now_utc();
        let mut entries = Vec::with_capacity(rows.len());
        for row in rows {
            match row.decode() {
                Ok(entry) => entries.push(entry),
                // Left out even if recording the hold fails; it is recorded at the next look.
                Err(reason) => {
                    let _ = self.set_aside(row.id, reason, now);
                }
            }
        }
        Ok(entries)
    }

    /// Every column of the rows matching `condition`, as stored: decoding is left to
    /// [`StoredRow::decode`], so a damaged row cannot fail the query.
    fn scan(
        &self,
        condition: &str,
        value: i64,
        order: &str,
    ) -> Result<Vec<StoredRow>, OutboxError> {
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT id, statement_sha256, statement, signature, sealed_certificate,
                        license_number, created_at, attempts, next_attempt_at, last_error,
                        staff_confirmed_identity, ca_certificate, held_reason, held_at
                 FROM entries WHERE {condition} ORDER BY {order}"
            ))
            .map_err(db("reading entries"))?;
        let rows = stmt
            .query_map([value], |row| {
                Ok(StoredRow {
                    id: EntryId(row.get(0)?),
                    statement_sha256: row.get(1)?,
                    statement: row.get(2)?,
                    signature: row.get(3)?,
                    sealed_certificate: row.get(4)?,
                    license_number: row.get(5)?,
                    created_at: row.get(6)?,
                    attempts: row.get(7)?,
                    next_attempt_at: row.get(8)?,
                    last_error: row.get(9)?,
                    staff_confirmed_identity: row.get(10)?,
                    ca_certificate: row.get(11)?,
                    held_reason: row.get(12)?,
                    held_at: row.get(13)?,
                })
            })
            .map_err(db("reading entries"))?;
        rows.collect::<Result<_, _>>()
            .map_err(db("reading entries"))
    }

    /// Holds a queued entry found unreadable (or in a retired format). Returns whether it
    /// was queued.
    fn set_aside(
        &self,
        id: EntryId,
        reason: HoldReason,
        now: OffsetDateTime,
    ) -> Result<bool, OutboxError> {
        let changed = self
            .conn
            .execute(
                "UPDATE entries SET held_reason = ?2, held_at = ?3
                 WHERE id = ?1 AND held_reason IS NULL",
                params![id.0, reason.as_str(), unix_ms(now)],
            )
            .map_err(db("holding an entry"))?;
        Ok(changed > 0)
    }

    /// Holds an entry for an operator after the backend's answer showed that it cannot be
    /// delivered as it is. `error` (the backend's code, for the operator) is kept like a
    /// failed attempt's; the entry is not tried again until [`Outbox::release`].
    pub fn hold(
        &mut self,
        id: EntryId,
        reason: HoldReason,
        error: &str,
        now: OffsetDateTime,
    ) -> Result<(), OutboxError> {
        let error: String = error.chars().take(MAX_ERROR_CHARS).collect();
        let changed = self
            .conn
            .execute(
                "UPDATE entries
                 SET held_reason = ?2, held_at = ?3, last_error = ?4, attempts = attempts + 1
                 WHERE id = ?1",
                params![id.0, reason.as_str(), unix_ms(now), error],
            )
            .map_err(db("holding an entry"))?;
        if changed == 0 {
            return Err(OutboxError::NotFound(id));
        }
        Ok(())
    }

    /// Puts a held entry back in the queue, due at `now`, once the operator has fixed the
    /// cause (e.g. the backend holds the key again). Returns why it was held. An entry that
    /// still cannot be read or sent as stored stays held ([`OutboxError::StillHeld`]).
    pub fn release(&mut self, id: EntryId, now: OffsetDateTime) -> Result<HoldReason, OutboxError> {
        let row = self
            .scan("id = ?1", id.0, "id")?
            .into_iter()
            .next()
            .ok_or(OutboxError::NotFound(id))?;
        let held = row.held().ok_or(OutboxError::NotHeld(id))?;
        if let Err(reason) = row.decode() {
            return Err(OutboxError::StillHeld { id, reason });
        }
        self.conn
            .execute(
                "UPDATE entries SET held_reason = NULL, held_at = NULL, next_attempt_at = ?2
                 WHERE id = ?1",
                params![id.0, unix_ms(now)],
            )
            .map_err(db("releasing an entry"))?;
        Ok(held.reason)
    }

    /// When the earliest queued entry becomes due, or `None` when none is queued.
    pub fn next_due_at(&self) -> Result<Option<OffsetDateTime>, OutboxError> {
        let at: Option<i64> = self
            .conn
            .query_row(
                "SELECT MIN(next_attempt_at) FROM entries
                 WHERE held_reason IS NULL AND typeof(next_attempt_at) = 'integer'",
                [],
                |row| row.get(0),
            )
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
    /// (removing twice is harmless). A held entry is never removed.
    pub fn remove(&mut self, id: EntryId) -> Result<bool, OutboxError> {
        let removed = self
            .conn
            .execute(
                "DELETE FROM entries WHERE id = ?1 AND held_reason IS NULL",
                [id.0],
            )
            .map_err(db("removing an entry"))?;
        Ok(removed > 0)
    }

    /// Every entry, queued or held.
    pub fn len(&self) -> Result<usize, OutboxError> {
        let counts = self.counts()?;
        Ok(counts.queued + counts.held)
    }

    pub fn is_empty(&self) -> Result<bool, OutboxError> {
        Ok(self.len()? == 0)
    }

    /// How many entries are queued and how many held for an operator.
    pub fn counts(&self) -> Result<Counts, OutboxError> {
        let (all, held): (i64, i64) = self
            .conn
            .query_row(
                "SELECT COUNT(*), COUNT(held_reason) FROM entries",
                [],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .map_err(db("counting entries"))?;
        let held = usize::try_from(held).unwrap_or(0);
        Ok(Counts {
            queued: usize::try_from(all).unwrap_or(0).saturating_sub(held),
            held,
        })
    }

    /// The reserve file beside the outbox (`<outbox>.reserve`).
    pub fn reserve_path(&self) -> PathBuf {
        let mut path = self.path.clone().into_os_string();
        path.push(".reserve");
        PathBuf::from(path)
    }

    /// Makes sure the next entry can be written whatever happens to the disk meanwhile:
    /// keeps a reserve file of [`RESERVE_BYTES`] beside the outbox, which
    /// [`Outbox::add_with`] frees should the disk be full when it writes. Call it before the
    /// card signs; [`OutboxError::NoRoom`] (the reserve cannot be made: the disk is full)
    /// means no signature should be asked for.
    ///
    /// A reserve rather than a look at the free space: the space it holds cannot be taken
    /// by anything else between this check and the write, however long the holder takes.
    pub fn ensure_room(&self) -> Result<(), OutboxError> {
        let path = self.reserve_path();
        if reserve_complete(&path) {
            return Ok(());
        }
        write_reserve(&path).map_err(|source| {
            // A partial reserve is no reserve; its space goes back to the disk.
            let _ = std::fs::remove_file(&path);
            OutboxError::NoRoom { path, source }
        })
    }

    /// Frees the reserve for the write in progress. Returns whether there was one.
    fn release_reserve(&self) -> bool {
        std::fs::remove_file(self.reserve_path()).is_ok()
    }

    /// Moves the WAL's contents into the main file (also done by SQLite on its own).
    pub fn checkpoint(&self) -> Result<(), OutboxError> {
        self.conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .map_err(db("checkpointing"))
    }
}

/// A new entry, ready to be written.
struct NewEntry<'a> {
    digest: String,
    signed: &'a SignedStatement,
    sealed: String,
    license_number: &'a str,
    options: &'a EntryOptions,
    now_ms: i64,
}

/// A row as stored, each column whatever SQLite holds.
struct StoredRow {
    id: EntryId,
    statement_sha256: Value,
    statement: Value,
    signature: Value,
    sealed_certificate: Value,
    license_number: Value,
    created_at: Value,
    attempts: Value,
    next_attempt_at: Value,
    last_error: Value,
    staff_confirmed_identity: Value,
    ca_certificate: Value,
    held_reason: Value,
    held_at: Value,
}

fn text(value: &Value) -> Option<&str> {
    match value {
        Value::Text(text) => Some(text),
        _ => None,
    }
}

fn blob(value: &Value) -> Option<&[u8]> {
    match value {
        Value::Blob(bytes) => Some(bytes),
        _ => None,
    }
}

fn integer(value: &Value) -> Option<i64> {
    match value {
        Value::Integer(n) => Some(*n),
        _ => None,
    }
}

impl StoredRow {
    fn held(&self) -> Option<Held> {
        match &self.held_reason {
            Value::Null => None,
            // A reason this version does not know still holds the entry: kept, not sent.
            reason => Some(Held {
                reason: text(reason)
                    .and_then(HoldReason::parse)
                    .unwrap_or(HoldReason::Unreadable),
                since: integer(&self.held_at).map_or(OffsetDateTime::UNIX_EPOCH, from_unix_ms),
            }),
        }
    }

    /// What the operator sees, from whatever can be read.
    fn summary(&self) -> EntrySummary {
        EntrySummary {
            id: self.id,
            statement_sha256: text(&self.statement_sha256).unwrap_or("").to_string(),
            license_number: text(&self.license_number).unwrap_or("").to_string(),
            created_at: integer(&self.created_at).map_or(OffsetDateTime::UNIX_EPOCH, from_unix_ms),
            attempts: integer(&self.attempts)
                .and_then(|n| u32::try_from(n).ok())
                .unwrap_or(0),
            next_attempt_at: integer(&self.next_attempt_at)
                .map_or(OffsetDateTime::UNIX_EPOCH, from_unix_ms),
            last_error: text(&self.last_error).map(str::to_string),
            staff_confirmed_identity: integer(&self.staff_confirmed_identity) == Some(1),
            held: self.held(),
        }
    }

    /// The entry as an upload needs it, or why it cannot be sent as stored.
    fn decode(&self) -> Result<PendingEntry, HoldReason> {
        use HoldReason::Unreadable;
        let statement = blob(&self.statement).ok_or(Unreadable)?;
        let statement_sha256 = text(&self.statement_sha256).ok_or(Unreadable)?;
        // The digest names the statement and binds the sealed certificate to it: a mismatch
        // means the row was damaged.
        if hex::encode(Sha256::digest(statement)) != statement_sha256 {
            return Err(Unreadable);
        }
        let signature = blob(&self.signature)
            .filter(|s| !s.is_empty())
            .ok_or(Unreadable)?;
        let sealed_json = text(&self.sealed_certificate).ok_or(Unreadable)?;
        seal_format(sealed_json, seal::ALG)?;
        let sealed_certificate = SealedBox::from_json(sealed_json).map_err(|_| Unreadable)?;
        let license_number = text(&self.license_number)
            .filter(|l| !l.is_empty())
            .ok_or(Unreadable)?;
        let attempts = integer(&self.attempts)
            .and_then(|n| u32::try_from(n).ok())
            .ok_or(Unreadable)?;
        integer(&self.next_attempt_at).ok_or(Unreadable)?;
        let staff_confirmed_identity = match integer(&self.staff_confirmed_identity) {
            Some(0) => false,
            Some(1) => true,
            _ => return Err(Unreadable),
        };
        let ca_certificate = match &self.ca_certificate {
            Value::Null => None,
            Value::Blob(der) if !der.is_empty() => Some(der.clone()),
            _ => return Err(Unreadable),
        };
        Ok(PendingEntry {
            id: self.id,
            statement_sha256: statement_sha256.to_string(),
            statement: statement.to_vec(),
            signature: signature.to_vec(),
            sealed_certificate,
            license_number: license_number.to_string(),
            attempts,
            staff_confirmed_identity,
            ca_certificate,
        })
    }
}

/// Whether a stored sealed certificate is in the `current` format. Its `alg` is read from
/// the JSON as a plain value, so a retired format is recognised whatever shape the current
/// one has.
fn seal_format(json: &str, current: &str) -> Result<(), HoldReason> {
    let value: serde_json::Value =
        serde_json::from_str(json).map_err(|_| HoldReason::Unreadable)?;
    match value.get("alg").and_then(serde_json::Value::as_str) {
        Some(alg) if alg == current => Ok(()),
        Some(alg) if RETIRED_SEAL_ALGS.contains(&alg) => Err(HoldReason::RetiredSealFormat),
        _ => Err(HoldReason::Unreadable),
    }
}

/// Whether the reserve file is there at full size, its blocks allocated.
fn reserve_complete(path: &Path) -> bool {
    let Ok(meta) = std::fs::metadata(path) else {
        return false;
    };
    #[cfg(unix)]
    let allocated = std::os::unix::fs::MetadataExt::blocks(&meta).saturating_mul(512);
    #[cfg(not(unix))]
    let allocated = meta.len();
    meta.is_file() && meta.len() == RESERVE_BYTES && allocated >= RESERVE_BYTES
}

/// Writes the reserve file: random bytes (zeros may be stored as holes or compressed and
/// hold no space), synced (some file systems report a full disk only on write-back).
fn write_reserve(path: &Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    let mut chunk = vec![0u8; 64 * 1024];
    let mut rng = rand::thread_rng();
    let mut left = RESERVE_BYTES;
    while left > 0 {
        let n = usize::try_from(left).map_or(chunk.len(), |left| left.min(chunk.len()));
        rng.fill_bytes(&mut chunk[..n]);
        file.write_all(&chunk[..n])?;
        left -= n as u64;
    }
    file.sync_all()
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
            // NULL: queued. Otherwise the entry waits for an operator (`HoldReason`).
            2 => (
                "adding holds for an operator to the schema",
                "ALTER TABLE entries ADD COLUMN held_reason TEXT;
                 ALTER TABLE entries ADD COLUMN held_at INTEGER;",
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

    /// SHA-256 of `{}`, the statement of the entry written by older versions below.
    const EMPTY_OBJECT_SHA256: &str =
        "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";

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
             VALUES (?2, x'7b7d', x'0102', ?1, '729913281070', 1000, 3, 2000, 'timed out')",
            [sealed.to_json(), EMPTY_OBJECT_SHA256.to_string()],
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
        assert_eq!(listed[0].statement_sha256, EMPTY_OBJECT_SHA256);
        assert_eq!(listed[0].held, None);
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
        assert_eq!(versions, 3);
        assert!(outbox.is_empty().expect("len"));
    }

    /// A file exactly as version 2 wrote it, with one confirmed entry and a CA certificate.
    fn write_version_2(path: &Path, sealed: &SealedBox) {
        write_version_1(path, sealed);
        let conn = Connection::open(path).expect("sqlite");
        conn.execute_batch(
            "ALTER TABLE entries
                 ADD COLUMN staff_confirmed_identity INTEGER NOT NULL DEFAULT 0;
             ALTER TABLE entries ADD COLUMN ca_certificate BLOB;
             INSERT INTO schema_version (version) VALUES (2);
             UPDATE entries SET staff_confirmed_identity = 1, ca_certificate = x'3003020101';",
        )
        .expect("version 2");
    }

    #[test]
    fn a_version_2_outbox_is_migrated_and_its_entries_stay_queued() {
        let sealed = seal::seal(&recipient(), b"certificate", &[7u8; 32]).expect("seal");
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("outbox.db");
        write_version_2(&path, &sealed);

        let outbox = Outbox::open(&path).expect("open migrates");
        let listed = outbox.list().expect("list");
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].held, None);
        assert!(listed[0].staff_confirmed_identity);
        let entry = outbox.get(listed[0].id).expect("get").expect("queued");
        assert_eq!(
            entry.ca_certificate.as_deref(),
            Some(&[0x30, 3, 2, 1, 1][..])
        );
        assert_eq!(entry.attempts, 3);
        assert_eq!(
            outbox.counts().expect("counts"),
            Counts { queued: 1, held: 0 }
        );
    }

    fn recipient() -> RecipientKey {
        static KEY: std::sync::OnceLock<seal::SealPrivateKey> = std::sync::OnceLock::new();
        KEY.get_or_init(|| seal::SealPrivateKey::generate().expect("keygen"))
            .public_key()
            .clone()
    }

    /// A binding signed by the simulated card (a fresh statement each time).
    fn sign_fresh() -> SignedStatement {
        let mut trust = crate::trust::TrustStore::new();
        trust
            .add_trust_anchor(mynalink_simcard::sign_test_root_der())
            .expect("test root");
        let inputs = crate::FlowInputs::fresh("729913281070", "test-terminal", None, None);
        let transport =
            mynalink_simcard::SimTransport::new(mynalink_simcard::SimOptions::default());
        let mut flow = crate::FirstStage::new(transport, inputs, trust).expect("flow");
        flow.check_card().expect("card");
        let password = mynalink_card::SigningPassword::parse("TEST1234").expect("format");
        flow.verify_password(&password, false).expect("verify");
        flow.read_certificate().expect("certificate");
        let signed = flow.sign().expect("sign").clone();
        flow.end();
        signed
    }

    struct Bench {
        _dir: tempfile::TempDir,
        outbox: Outbox,
    }

    impl Bench {
        fn new() -> Bench {
            let dir = tempfile::tempdir().expect("tempdir");
            let outbox = Outbox::open(dir.path().join("outbox.db")).expect("open");
            Bench { _dir: dir, outbox }
        }

        fn add(&mut self) -> EntryId {
            self.outbox.add(&sign_fresh(), &recipient()).expect("add").0
        }

        /// Every column of a row, as stored.
        fn row(&self, id: EntryId) -> Vec<Value> {
            self.outbox
                .conn
                .query_row(
                    "SELECT statement_sha256, statement, signature, sealed_certificate,
                            license_number, created_at, attempts, next_attempt_at, last_error,
                            staff_confirmed_identity, ca_certificate
                     FROM entries WHERE id = ?1",
                    [id.0],
                    |row| (0..11).map(|i| row.get::<_, Value>(i)).collect(),
                )
                .expect("row")
        }

        fn set(&self, id: EntryId, assignment: &str) {
            self.outbox
                .conn
                .execute(
                    &format!("UPDATE entries SET {assignment} WHERE id = ?1"),
                    [id.0],
                )
                .expect("damage a row");
        }
    }

    #[test]
    fn an_unreadable_entry_is_held_untouched_and_the_others_go_on() {
        let mut bench = Bench::new();
        let damaged = bench.add();
        let sound = bench.add();
        bench.set(damaged, "sealed_certificate = 'garbage {'");
        let before = bench.row(damaged);

        let now = OffsetDateTime::now_utc();
        let due: Vec<EntryId> = bench
            .outbox
            .due(now)
            .expect("due")
            .iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(due, [sound]);
        let all: Vec<EntryId> = bench
            .outbox
            .all_pending()
            .expect("all")
            .iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(all, [sound]);
        assert!(bench.outbox.get(damaged).expect("get").is_none());
        let held = bench.outbox.held(damaged).expect("held").expect("is held");
        assert_eq!(held.reason, HoldReason::Unreadable);
        assert_eq!(
            bench.outbox.counts().expect("counts"),
            Counts { queued: 1, held: 1 }
        );
        let listed = bench.outbox.list().expect("list");
        assert_eq!(listed.len(), 2);
        assert_eq!(listed[0].id, damaged);
        assert_eq!(
            listed[0].held.map(|h| h.reason),
            Some(HoldReason::Unreadable)
        );
        assert_eq!(listed[1].held, None);

        // Never deleted, never released while it stays unreadable, never changed.
        assert!(!bench.outbox.remove(damaged).expect("remove"));
        assert!(matches!(
            bench.outbox.release(damaged, now),
            Err(OutboxError::StillHeld {
                reason: HoldReason::Unreadable,
                ..
            })
        ));
        assert_eq!(bench.row(damaged), before);
        assert!(bench.outbox.remove(sound).expect("remove"));
        assert_eq!(bench.outbox.next_due_at().expect("next"), None);
        assert_eq!(bench.outbox.len().expect("len"), 1);
    }

    #[test]
    fn every_kind_of_damage_holds_only_the_damaged_entry() {
        for damage in [
            "sealed_certificate = '{\"alg\":\"nope\"}'",
            "sealed_certificate = x'00ff'",
            "statement = x'7b7d'",
            "statement = 'text, not bytes'",
            "statement_sha256 = 'ab'",
            "signature = x''",
            "signature = 42",
            "license_number = x'01'",
            "attempts = 'many'",
            "attempts = -1",
            "next_attempt_at = 'soon'",
            "staff_confirmed_identity = 7",
            "ca_certificate = x''",
            "ca_certificate = 'text'",
        ] {
            let mut bench = Bench::new();
            let damaged = bench.add();
            let sound = bench.add();
            bench.set(damaged, damage);
            let due: Vec<EntryId> = bench
                .outbox
                .due(OffsetDateTime::now_utc())
                .expect(damage)
                .iter()
                .map(|e| e.id)
                .collect();
            assert_eq!(due, [sound], "{damage}");
            assert!(
                bench.outbox.held(damaged).expect(damage).is_some(),
                "{damage}"
            );
            let all: Vec<EntryId> = bench
                .outbox
                .all_pending()
                .expect(damage)
                .iter()
                .map(|e| e.id)
                .collect();
            assert_eq!(all, [sound], "{damage}");
            assert_eq!(
                bench.outbox.held(damaged).expect(damage).map(|h| h.reason),
                Some(HoldReason::Unreadable),
                "{damage}"
            );
            assert_eq!(bench.outbox.list().expect(damage).len(), 2, "{damage}");
            assert_eq!(
                bench.outbox.next_due_at().map(|n| n.is_some()).ok(),
                Some(true)
            );
        }
    }

    #[test]
    fn a_sealed_certificate_in_a_retired_format_is_held_as_such() {
        let retired = serde_json::json!({
            "alg": "RSA-OAEP-256+A256GCM",
            "key_id": "00".repeat(32),
            "wrapped_key": "AAAA",
            "nonce": "AAAAAAAAAAAAAAAA",
            "ciphertext": "AAAAAAAAAAAAAAAAAAAAAA==",
        })
        .to_string();
        // Once RSA is not the current format, its entries are held and not sent.
        assert_eq!(
            seal_format(&retired, "HPKE-Base-X25519-SHA256-AES256GCM"),
            Err(HoldReason::RetiredSealFormat)
        );
        assert_eq!(seal_format(&retired, "RSA-OAEP-256+A256GCM"), Ok(()));
        for unknown in ["{\"alg\":\"ROT13\"}", "{\"alg\":7}", "{}", "[1]", "garbage"] {
            assert_eq!(
                seal_format(unknown, seal::ALG),
                Err(HoldReason::Unreadable),
                "{unknown}"
            );
        }
    }

    /// A sealed certificate as the RSA sealing of earlier versions wrote it.
    fn rsa_sealed_json() -> String {
        serde_json::json!({
            "alg": "RSA-OAEP-256+A256GCM",
            "key_id": "ab".repeat(32),
            "wrapped_key": "AAAA".repeat(64),
            "nonce": "AAAAAAAAAAAAAAAA",
            "ciphertext": "AAAAAAAAAAAAAAAAAAAAAA==",
        })
        .to_string()
    }

    #[test]
    fn an_older_outbox_with_rsa_sealed_entries_keeps_them_for_an_operator() {
        let sealed = seal::seal(&recipient(), b"certificate", &[7u8; 32]).expect("seal");
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("outbox.db");
        write_version_2(&path, &sealed);
        // The previous release wrote its entries sealed with RSA.
        let statement = b"{ }";
        Connection::open(&path)
            .expect("sqlite")
            .execute(
                "INSERT INTO entries (statement_sha256, statement, signature, sealed_certificate,
                                      license_number, created_at, attempts, next_attempt_at)
                 VALUES (?1, ?2, x'0102', ?3, '729913281074', 1500, 0, 1500)",
                params![
                    hex::encode(Sha256::digest(statement)),
                    statement.to_vec(),
                    rsa_sealed_json()
                ],
            )
            .expect("an RSA-sealed row");

        let mut outbox = Outbox::open(&path).expect("open migrates");
        let due = outbox.due(OffsetDateTime::now_utc()).expect("due");
        assert_eq!(due.len(), 1, "only the HPKE-sealed entry is sent");
        assert_eq!(due[0].statement, b"{}");
        let listed = outbox.list().expect("list");
        assert_eq!(listed.len(), 2);
        let retired = listed
            .iter()
            .find(|e| e.license_number == "729913281074")
            .expect("the RSA-sealed entry is listed");
        assert_eq!(
            retired.held.map(|h| h.reason),
            Some(HoldReason::RetiredSealFormat)
        );
        assert!(matches!(
            outbox.release(retired.id, OffsetDateTime::now_utc()),
            Err(OutboxError::StillHeld {
                reason: HoldReason::RetiredSealFormat,
                ..
            })
        ));
        assert!(!outbox.remove(retired.id).expect("remove"));
        let kept: String = outbox
            .conn
            .query_row(
                "SELECT sealed_certificate FROM entries WHERE id = ?1",
                [retired.id.0],
                |r| r.get(0),
            )
            .expect("still there");
        assert_eq!(kept, rsa_sealed_json());
        assert_eq!(
            outbox.counts().expect("counts"),
            Counts { queued: 1, held: 1 }
        );
    }

    #[test]
    fn a_held_entry_waits_for_release_and_keeps_its_reason() {
        let mut bench = Bench::new();
        let id = bench.add();
        let now = OffsetDateTime::now_utc();
        bench
            .outbox
            .hold(
                id,
                HoldReason::SealKeyMismatch,
                "seal_key_mismatch: another key",
                now,
            )
            .expect("hold");
        assert!(bench.outbox.all_pending().expect("all").is_empty());
        assert!(bench.outbox.get(id).expect("get").is_none());
        assert!(!bench.outbox.remove(id).expect("remove"));
        let listed = bench.outbox.list().expect("list");
        assert_eq!(
            listed[0].held,
            Some(Held {
                reason: HoldReason::SealKeyMismatch,
                since: from_unix_ms(unix_ms(now)),
            })
        );
        assert_eq!(listed[0].attempts, 1);
        assert_eq!(
            listed[0].last_error.as_deref(),
            Some("seal_key_mismatch: another key")
        );
        assert_eq!(bench.outbox.next_due_at().expect("next"), None);

        // The operator fixed the cause: back in the queue, due at once.
        let later = now + time::Duration::seconds(5);
        assert_eq!(
            bench.outbox.release(id, later).expect("release"),
            HoldReason::SealKeyMismatch
        );
        assert_eq!(bench.outbox.held(id).expect("held"), None);
        assert_eq!(bench.outbox.due(later).expect("due").len(), 1);
        assert!(matches!(
            bench.outbox.release(id, later),
            Err(OutboxError::NotHeld(i)) if i == id
        ));
        assert!(matches!(
            bench.outbox.release(EntryId(999), later),
            Err(OutboxError::NotFound(_))
        ));
        assert!(matches!(
            bench
                .outbox
                .hold(EntryId(999), HoldReason::SealKeyMismatch, "", later),
            Err(OutboxError::NotFound(_))
        ));
    }

    #[test]
    fn the_same_statement_again_keeps_its_hold() {
        let mut bench = Bench::new();
        let signed = sign_fresh();
        let (id, _) = bench.outbox.add(&signed, &recipient()).expect("add");
        let now = OffsetDateTime::now_utc();
        bench
            .outbox
            .hold(id, HoldReason::SealKeyMismatch, "seal_key_mismatch", now)
            .expect("hold");
        assert_eq!(
            bench.outbox.add(&signed, &recipient()).expect("again"),
            (id, false)
        );
        assert!(bench.outbox.held(id).expect("held").is_some());
    }

    #[test]
    fn the_reserve_is_made_once_at_full_size_and_privately() {
        let bench = Bench::new();
        let path = bench.outbox.reserve_path();
        assert_eq!(
            path.file_name().and_then(|n| n.to_str()),
            Some("outbox.db.reserve")
        );
        bench.outbox.ensure_room().expect("room");
        let meta = std::fs::metadata(&path).expect("reserve");
        assert_eq!(meta.len(), RESERVE_BYTES);
        #[cfg(unix)]
        {
            use std::os::unix::fs::{MetadataExt, PermissionsExt};
            assert_eq!(meta.permissions().mode() & 0o777, 0o600);
            assert!(
                meta.blocks() * 512 >= RESERVE_BYTES,
                "the blocks are allocated"
            );
        }
        let first = std::fs::read(&path).expect("read");
        assert!(first.iter().any(|&b| b != 0), "not a run of zeros");
        bench.outbox.ensure_room().expect("room again");
        assert_eq!(
            std::fs::read(&path).expect("read"),
            first,
            "kept, not rewritten"
        );

        // A reserve cut short is made whole again.
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .and_then(|f| f.set_len(10))
            .expect("truncate");
        bench.outbox.ensure_room().expect("room after truncation");
        assert_eq!(
            std::fs::metadata(&path).expect("reserve").len(),
            RESERVE_BYTES
        );
    }

    #[test]
    fn no_room_for_the_reserve_stops_with_outbox_unavailable_before_signing() {
        let bench = Bench::new();
        // Something in the way of the reserve, as a full disk would be.
        std::fs::create_dir(bench.outbox.reserve_path()).expect("dir");
        let e = bench.outbox.ensure_room().expect_err("no room");
        assert!(matches!(e, OutboxError::NoRoom { .. }), "{e}");
        let flow = e.to_flow_error();
        assert_eq!(flow.code, ErrorCode::OutboxUnavailable);
        assert!(
            flow.message_en.contains("disk holding the outbox is full"),
            "{flow}"
        );
        assert!(flow.message_en.contains("before the card signed"), "{flow}");
        assert!(flow.message_ja.contains("署名する前に止めました"), "{flow}");
    }

    #[test]
    fn a_full_database_frees_the_reserve_for_the_entry_being_written() {
        let mut bench = Bench::new();
        bench.add();
        bench.outbox.ensure_room().expect("room");
        let reserve = bench.outbox.reserve_path();
        // SQLite answers SQLITE_FULL at its page limit, as it does on a full disk.
        let pages: i64 = bench
            .outbox
            .conn
            .query_row("PRAGMA page_count", [], |r| r.get(0))
            .expect("pages");
        bench
            .outbox
            .conn
            .query_row(&format!("PRAGMA max_page_count = {pages}"), [], |_| Ok(()))
            .expect("limit");
        let e = bench
            .outbox
            .add(&sign_fresh(), &recipient())
            .expect_err("the database is full");
        assert!(e.is_disk_full(), "{e}");
        assert!(!reserve.exists(), "the reserve was given up for the entry");
        let flow = e.to_flow_error();
        assert_eq!(flow.code, ErrorCode::OutboxUnavailable);
        assert!(
            flow.message_en.contains("disk holding the outbox is full"),
            "{flow}"
        );
    }

    #[test]
    fn times_round_trip_in_milliseconds() {
        let t = OffsetDateTime::from_unix_timestamp(1_795_000_000).expect("time")
            + time::Duration::milliseconds(250);
        assert_eq!(from_unix_ms(unix_ms(t)), t);
    }
}
