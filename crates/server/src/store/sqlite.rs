//! The embedded database: SQLite in WAL mode with `synchronous=FULL`, so that a commit
//! survives a power cut; readers run beside the one writer.
//!
//! The file and its `-wal`, `-shm` and `-journal` companions are the owner's only (0600,
//! whatever the umask), as the client's outbox is, and `secure_delete` overwrites what a
//! deletion frees: a deleted row does not live on in free pages.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{params_from_iter, Connection, ToSql};

use super::sql::{Arg, Row, Value};
use super::StoreError;

/// How long a writer of another process waits for the one in progress before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// Prepared statements kept per connection: every statement the store runs fits.
const STATEMENT_CACHE: usize = 64;

pub(crate) struct SqliteConn {
    conn: Connection,
    path: PathBuf,
}

impl SqliteConn {
    pub(crate) fn open(path: &Path) -> Result<SqliteConn, StoreError> {
        create_private_file(path)?;
        let conn = Connection::open(path)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        // Before anything is written through this connection.
        let _on: i64 = conn.pragma_update_and_check(None, "secure_delete", "ON", |r| r.get(0))?;
        // journal_mode answers with the mode in force; WAL lets readers run beside a writer.
        let _mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        // SQLite gives the companions it creates the main file's mode; older ones are
        // tightened here.
        for suffix in COMPANIONS {
            let mut companion = path.as_os_str().to_os_string();
            companion.push(suffix);
            restrict_existing(Path::new(&companion))?;
        }
        Ok(SqliteConn {
            conn,
            path: path.to_path_buf(),
        })
    }

    /// Copies the WAL into the database and empties the WAL file, so that the pages of rows
    /// deleted before (which `secure_delete` overwrote in the database) leave its old frames
    /// too. Readers of other connections may make it wait (the busy timeout).
    pub(crate) fn truncate_wal(&self) -> Result<(), StoreError> {
        let _: (i64, i64, i64) =
            self.conn
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })?;
        Ok(())
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn execute(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<u64, StoreError> {
        let mut statement = self.conn.prepare_cached(sql)?;
        let changed = statement.execute(params_from_iter(args))?;
        Ok(changed as u64)
    }

    pub(crate) fn query(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<Vec<Row>, StoreError> {
        let mut statement = self.conn.prepare_cached(sql)?;
        let columns = statement.column_count();
        let mut rows = statement.query(params_from_iter(args))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            let mut values = Vec::with_capacity(columns);
            for index in 0..columns {
                values.push(match row.get_ref(index)? {
                    ValueRef::Null => Value::Null,
                    ValueRef::Integer(i) => Value::Int(i),
                    ValueRef::Text(bytes) => Value::Text(
                        std::str::from_utf8(bytes)
                            .map_err(|_| StoreError::UnexpectedValue {
                                index,
                                expected: "UTF-8 text",
                            })?
                            .to_string(),
                    ),
                    ValueRef::Real(_) | ValueRef::Blob(_) => {
                        return Err(StoreError::UnexpectedValue {
                            index,
                            expected: "text, an integer or NULL",
                        })
                    }
                });
            }
            out.push(Row(values));
        }
        Ok(out)
    }

    pub(crate) fn batch(&mut self, sql: &str) -> Result<(), StoreError> {
        Ok(self.conn.execute_batch(sql)?)
    }

    /// The value of a PRAGMA, as text.
    pub(crate) fn pragma(&self, name: &str) -> Result<String, StoreError> {
        let value: rusqlite::types::Value =
            self.conn.pragma_query_value(None, name, |r| r.get(0))?;
        Ok(match value {
            rusqlite::types::Value::Integer(i) => i.to_string(),
            rusqlite::types::Value::Text(t) => t,
            other => format!("{other:?}"),
        })
    }
}

/// The files SQLite keeps beside the database.
const COMPANIONS: [&str; 3] = ["-wal", "-shm", "-journal"];

/// Creates the database file with mode 0600 regardless of the umask (SQLite would use 0644
/// less the umask), and tightens an existing one. An existing file is never opened here:
/// closing a descriptor of it would drop the POSIX locks that this process's SQLite
/// connections hold on it.
fn create_private_file(path: &Path) -> Result<(), StoreError> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true).write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(source) => {
            return Err(StoreError::File {
                path: path.to_path_buf(),
                source,
            })
        }
    }
    restrict_existing(path)
}

#[cfg(unix)]
fn restrict_existing(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(StoreError::File {
            path: path.to_path_buf(),
            source,
        }),
    }
}

#[cfg(not(unix))]
fn restrict_existing(_path: &Path) -> Result<(), StoreError> {
    Ok(())
}

impl ToSql for Arg<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match *self {
            Arg::Null => ToSqlOutput::Owned(rusqlite::types::Value::Null),
            Arg::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
            Arg::Int(i) => ToSqlOutput::Owned(rusqlite::types::Value::Integer(i)),
        })
    }
}
