//! Persistence: the schema and its migrations, and every read and write the linking rules
//! need, each write in one transaction.
//!
//! Two databases with the same schema and the same numbered migrations ([`schema`]):
//! SQLite, embedded (WAL, `synchronous=FULL` so that a commit survives a power cut), and
//! PostgreSQL for production (durable commits, `SERIALIZABLE` write transactions). The
//! operations are written once, against a connection that runs either ([`sql`]); what one
//! statement must guarantee under concurrency — one binding per statement, one active
//! binding per license — the database enforces with unique constraints, across processes.
//!
//! What is stored about a binding identifies the certificate (issuer key id, serial,
//! validity) and the submission (terminal, operator, times, statement hash), never the
//! certificate itself or its basic-4 information. License records hold the name and birth
//! date the police record has; they are the reference the certificate is compared with.

mod audit;
mod bindings;
mod model;
mod password;
mod pg;
mod schema;
mod second_stage;
mod sql;
mod sqlite;
mod suspension;
#[cfg(test)]
mod tests;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rand::Rng;
use thiserror::Error;

pub use model::*;
pub use password::Password;
pub use pg::{connect as postgres_client, redact_url, PgTarget};
pub use schema::latest_schema_version;
pub use suspension::{Erasure, SuspendOutcome, Suspension};

use sql::{Conn, Dialect};

/// One SQLite writer at a time within this process (see `Store::write`).
static SQLITE_WRITERS: Mutex<()> = Mutex::new(());

/// How often a PostgreSQL write transaction that lost a conflict is run again.
const CONFLICT_RETRIES: u32 = 20;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] rusqlite::Error),
    #[error("database error: {}", pg::describe(.0))]
    Postgres(#[from] postgres::Error),
    #[error("cannot connect to the database {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error("database URL {0:?} is not supported (use sqlite:PATH or postgres://…)")]
    UnsupportedUrl(String),
    #[error("the database has schema version {found}; this build knows up to {supported}")]
    SchemaTooNew { found: i64, supported: i64 },
    #[error("the database holds an invalid {column}: {value:?}")]
    Corrupt { column: &'static str, value: String },
    #[error("the database returned an unexpected value in column {index}: expected {expected}")]
    UnexpectedValue {
        index: usize,
        expected: &'static str,
    },
    #[error("the database returned no row where one was expected")]
    NoRow,
    #[error("{0} is an SQLite setting")]
    NotSqlite(String),
    #[error("database file {}: {source}", .path.display())]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the database URL {url} holds a password, which every user of this machine can read \
         on the command line: remove it from the URL and give it with \
         --database-password-file FILE (mode 0600), or in PGPASSFILE or ~/.pgpass \
         (host:port:database:user:password, mode 0600)"
    )]
    PasswordInUrl { url: String },
    #[error("{what} {}: {reason}", .path.display())]
    PasswordFile {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error(
        "{what} {} may be read by other users (mode {mode:04o}); run chmod 600 {}",
        .path.display(),
        .path.display()
    )]
    NotPrivate {
        what: &'static str,
        path: PathBuf,
        mode: u32,
    },
    #[error("--database-password-file is for PostgreSQL; an SQLite database has no password")]
    PasswordForSqlite,
}

impl StoreError {
    /// A conflict with a concurrent transaction that a new attempt resolves.
    fn is_conflict(&self) -> bool {
        match self {
            StoreError::Postgres(e) => pg::is_conflict(e),
            _ => false,
        }
    }

    /// The database waited too long (a lock, a statement, a busy SQLite file): nothing was
    /// changed, and the same request may well succeed later.
    pub fn is_busy(&self) -> bool {
        match self {
            StoreError::Postgres(e) => pg::is_timeout(e),
            StoreError::Database(rusqlite::Error::SqliteFailure(e, _)) => matches!(
                e.code,
                rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
            ),
            _ => false,
        }
    }
}

/// Where the data lives: `sqlite:PATH` (also `sqlite://PATH`) or `postgres://…`
/// (`postgresql://…`), the latter in the form libpq and the `postgres` crate read, e.g.
/// `postgres://USER@HOST:PORT/DB` or `postgres://USER@/DB?host=/run/postgresql`, without a
/// password: that comes from a file ([`DatabaseUrl::resolve`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    Sqlite(PathBuf),
    Postgres(PgTarget),
}

impl DatabaseUrl {
    /// The URL as given, with no password; one in the URL is refused.
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
            return Ok(DatabaseUrl::Postgres(PgTarget::parse(url)?));
        }
        Err(StoreError::UnsupportedUrl(redact_url(url)))
    }

    /// The URL with the PostgreSQL password from `password_file`, or else from the first
    /// matching `PGPASSFILE` / `~/.pgpass` entry (none: the server may not ask for one).
    pub fn resolve(url: &str, password_file: Option<&Path>) -> Result<DatabaseUrl, StoreError> {
        match DatabaseUrl::parse(url)? {
            DatabaseUrl::Sqlite(_) if password_file.is_some() => Err(StoreError::PasswordForSqlite),
            DatabaseUrl::Sqlite(path) => Ok(DatabaseUrl::Sqlite(path)),
            DatabaseUrl::Postgres(target) => {
                let password = match password_file {
                    Some(path) => Some(password::read_password_file(path)?),
                    None => password::from_pgpass(&target.pgpass_target()?)?,
                };
                Ok(DatabaseUrl::Postgres(target.with_password(password)))
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// The store

/// The store inside one write transaction ([`Store::transaction`]).
pub struct Tx<'a> {
    conn: &'a mut Conn,
}

pub struct Store {
    conn: Conn,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.conn {
            Conn::Sqlite(c) => f.debug_struct("Store").field("sqlite", &c.path()).finish(),
            Conn::Postgres(c) => f.debug_struct("Store").field("postgres", &c.url()).finish(),
        }
    }
}

impl Store {
    /// Opens the database a URL names, creating and migrating it as needed.
    pub fn open_url(url: &str) -> Result<Store, StoreError> {
        Store::open(&DatabaseUrl::parse(url)?)
    }

    pub fn open(url: &DatabaseUrl) -> Result<Store, StoreError> {
        match url {
            DatabaseUrl::Sqlite(path) => Store::open_sqlite(path),
            DatabaseUrl::Postgres(target) => Store::open_postgres_target(target),
        }
    }

    /// Opens (or creates) an SQLite database file and brings its schema up to date.
    pub fn open_sqlite(path: &Path) -> Result<Store, StoreError> {
        Store::migrated(Conn::Sqlite(sqlite::SqliteConn::open(path)?))
    }

    /// Connects to a PostgreSQL database (which must exist) and brings its schema up to
    /// date; processes starting together migrate one after the other.
    pub fn open_postgres(url: &str) -> Result<Store, StoreError> {
        Store::open_postgres_target(&PgTarget::parse(url)?)
    }

    /// The same with a password. Migrations run without time limits (they may take long on
    /// a big database, and wait for another process's); then every statement has
    /// `statement_timeout` and `lock_timeout` (see [`pg`]).
    pub fn open_postgres_target(target: &PgTarget) -> Result<Store, StoreError> {
        let mut store = Store::migrated(Conn::Postgres(Box::new(pg::PgConn::connect(target)?)))?;
        if let Conn::Postgres(conn) = &mut store.conn {
            conn.limit_waits()?;
        }
        Ok(store)
    }

    fn migrated(conn: Conn) -> Result<Store, StoreError> {
        let mut store = Store { conn };
        let before = store.write(schema::migrate)?;
        // The migration to hashed basic-4 deleted rows that held values: their old pages go
        // from the WAL file too.
        if let Conn::Sqlite(c) = &store.conn {
            if (1..schema::BASIC4_HASHED).contains(&before) {
                c.truncate_wal()?;
            }
        }
        Ok(store)
    }

    /// Whether this store is PostgreSQL (else SQLite).
    pub fn is_postgres(&self) -> bool {
        self.conn.dialect() == Dialect::Postgres
    }

    pub fn schema_version(&mut self) -> Result<i64, StoreError> {
        schema::schema_version(&mut self.conn)
    }

    /// The value of an SQLite PRAGMA, for checking the connection's settings.
    pub fn pragma(&self, name: &str) -> Result<String, StoreError> {
        match &self.conn {
            Conn::Sqlite(c) => c.pragma(name),
            Conn::Postgres(_) => Err(StoreError::NotSqlite(format!("PRAGMA {name}"))),
        }
    }

    /// The value of a PostgreSQL setting (`current_setting`), or of an SQLite PRAGMA.
    pub fn setting(&mut self, name: &str) -> Result<String, StoreError> {
        if let Conn::Sqlite(c) = &self.conn {
            return c.pragma(name);
        }
        self.conn
            .query_one("SELECT current_setting(?1)", sql::args![name])?
            .text(0)
    }

    /// Runs `f` in one write transaction with the reads and writes a decision needs, so
    /// that what it checked still holds when it writes (a rate limit's count and the
    /// failure it charges, say); commits what it did, an error rolls it back. On PostgreSQL
    /// `f` may run more than once (see [`Store::write`]), so it must be repeatable.
    pub fn transaction<T>(
        &mut self,
        mut f: impl FnMut(&mut Tx<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.write(|conn| f(&mut Tx { conn }))
    }

    /// Runs `f` in a write transaction and commits what it did; an error rolls it back.
    ///
    /// SQLite: writers of this process queue on an in-process lock first (SQLite's own
    /// busy handler sleeps in growing steps instead of waking the next writer, which made
    /// the latency tail under load); other processes wait through the busy timeout.
    /// PostgreSQL: `SERIALIZABLE`; a transaction that conflicts with a concurrent one (in
    /// any process) fails, is rolled back and runs again, so `f` must be repeatable.
    fn write<T>(
        &mut self,
        mut f: impl FnMut(&mut Conn) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let _writer: Option<MutexGuard<'static, ()>> = match self.conn.dialect() {
            Dialect::Sqlite => Some(
                SQLITE_WRITERS
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner),
            ),
            Dialect::Postgres => None,
        };
        let mut attempt = 0;
        loop {
            let result = self.conn.begin_write().and_then(|()| {
                let value = f(&mut self.conn)?;
                self.conn.commit()?;
                Ok(value)
            });
            match result {
                Ok(value) => return Ok(value),
                Err(e) => {
                    // After a failed COMMIT there is no transaction left; that is fine too.
                    let _ = self.conn.rollback();
                    if !e.is_conflict() || attempt >= CONFLICT_RETRIES {
                        return Err(e);
                    }
                    attempt += 1;
                    // A short random pause, growing a little, so that the rivals part.
                    let ceiling = 1 + u64::from(attempt.min(8)) * 2;
                    let pause = rand::thread_rng().gen_range(0..=ceiling * 1000);
                    std::thread::sleep(Duration::from_micros(pause));
                }
            }
        }
    }
}
