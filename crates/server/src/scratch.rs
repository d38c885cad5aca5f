//! Throw-away databases for tests and load tests: a fresh SQLite file in a directory of its
//! own, or a fresh, uniquely named database on a PostgreSQL server, created through an
//! administrative connection and dropped again (with its connections) when the value is
//! dropped.
//!
//! The PostgreSQL server comes from `MYNALINK_TEST_POSTGRES`, a URL of a database the user
//! may connect to with the right to create databases (e.g.
//! `postgres://USER@/postgres?host=/path/to/socket/dir&port=5432`). `cargo xtask test`
//! starts a private server and sets it. Without it, asking for a PostgreSQL database is an
//! error, never a reason to skip.

use std::fmt;
use std::path::{Path, PathBuf};

use rand::RngCore;

use crate::store::{postgres_client, redact_url};

/// The variable that names the PostgreSQL server for tests.
pub const POSTGRES_ENV: &str = "MYNALINK_TEST_POSTGRES";

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Sqlite => "SQLite",
            Backend::Postgres => "PostgreSQL",
        })
    }
}

/// A database that exists as long as this value.
pub struct ScratchDatabase {
    url: String,
    place: Place,
}

enum Place {
    Sqlite { dir: PathBuf, file: PathBuf },
    Postgres { admin_url: String, name: String },
}

impl fmt::Debug for ScratchDatabase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScratchDatabase")
            .field("url", &redact_url(&self.url))
            .finish()
    }
}

fn random_suffix() -> String {
    let mut bytes = [0u8; 8];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

impl ScratchDatabase {
    /// A fresh database of the given kind; PostgreSQL on the server `MYNALINK_TEST_POSTGRES`
    /// names.
    pub fn create(backend: Backend) -> Result<ScratchDatabase, String> {
        match backend {
            Backend::Sqlite => ScratchDatabase::sqlite(),
            Backend::Postgres => ScratchDatabase::postgres(&postgres_admin_url()?),
        }
    }

    /// A fresh SQLite file in a new directory under the system's temporary directory.
    pub fn sqlite() -> Result<ScratchDatabase, String> {
        let dir = std::env::temp_dir().join(format!("mynalink-db-{}", random_suffix()));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let file = dir.join("server.sqlite");
        Ok(ScratchDatabase {
            url: format!("sqlite:{}", file.display()),
            place: Place::Sqlite { dir, file },
        })
    }

    /// A fresh, uniquely named database on the server of `admin_url`.
    pub fn postgres(admin_url: &str) -> Result<ScratchDatabase, String> {
        let name = format!("mynalink_test_{}", random_suffix());
        let mut admin = postgres_client(admin_url).map_err(|e| e.to_string())?;
        // The name is made here of [a-z0-9_]: no quoting needed.
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .map_err(|e| {
                format!(
                    "cannot create a test database on {}: {e}",
                    redact_url(admin_url)
                )
            })?;
        Ok(ScratchDatabase {
            url: with_database(admin_url, &name),
            place: Place::Postgres {
                admin_url: admin_url.to_string(),
                name,
            },
        })
    }

    /// The URL to give `--database` or `Store::open_url`.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn backend(&self) -> Backend {
        match self.place {
            Place::Sqlite { .. } => Backend::Sqlite,
            Place::Postgres { .. } => Backend::Postgres,
        }
    }

    /// The SQLite file, for SQLite databases.
    pub fn sqlite_path(&self) -> Option<&Path> {
        match &self.place {
            Place::Sqlite { file, .. } => Some(file),
            Place::Postgres { .. } => None,
        }
    }
}

impl Drop for ScratchDatabase {
    fn drop(&mut self) {
        match &self.place {
            Place::Sqlite { dir, .. } => {
                let _ = std::fs::remove_dir_all(dir);
            }
            Place::Postgres { admin_url, name } => {
                // FORCE ends the connections a test left open (PostgreSQL 13 and later).
                let dropped = postgres_client(admin_url)
                    .map_err(|e| e.to_string())
                    .and_then(|mut admin| {
                        admin
                            .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                            .map_err(|e| e.to_string())
                    });
                if let Err(e) = dropped {
                    eprintln!("scratch database {name} was not dropped: {e}");
                }
            }
        }
    }
}

/// Makes each named test function, which takes a [`Backend`], into two tests, one per
/// database: `sqlite::NAME` and `postgres::NAME`.
#[macro_export]
macro_rules! on_both_databases {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[test]
                fn $name() {
                    super::$name($crate::scratch::Backend::Sqlite)
                }
            )*
        }
        mod postgres {
            $(
                #[test]
                fn $name() {
                    super::$name($crate::scratch::Backend::Postgres)
                }
            )*
        }
    };
}

/// The administrative URL of the test PostgreSQL server, or why there is none.
pub fn postgres_admin_url() -> Result<String, String> {
    match std::env::var(POSTGRES_ENV) {
        Ok(url) if !url.trim().is_empty() => Ok(url.trim().to_string()),
        _ => Err(format!(
            "{POSTGRES_ENV} is not set: the PostgreSQL tests need a server. `cargo xtask test` \
             starts a private one; or set {POSTGRES_ENV} to a URL with the right to create \
             databases, e.g. postgres://USER@/postgres?host=/run/postgresql"
        )),
    }
}

/// The same URL naming another database: the path after the host is replaced.
pub fn with_database(url: &str, database: &str) -> String {
    let authority_start = url.find("://").map_or(0, |i| i + 3);
    let query_start = url[authority_start..]
        .find('?')
        .map_or(url.len(), |i| authority_start + i);
    let path_start = url[authority_start..query_start]
        .find('/')
        .map_or(query_start, |i| authority_start + i);
    format!("{}/{database}{}", &url[..path_start], &url[query_start..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_names_in_urls() {
        assert_eq!(
            with_database("postgres://u@/postgres?host=/tmp/pg&port=5433", "x"),
            "postgres://u@/x?host=/tmp/pg&port=5433"
        );
        assert_eq!(
            with_database("postgres://u:p@h:5432/postgres", "x"),
            "postgres://u:p@h:5432/x"
        );
        assert_eq!(with_database("postgres://h", "x"), "postgres://h/x");
        assert_eq!(
            with_database("postgresql://h?sslmode=disable", "x"),
            "postgresql://h/x?sslmode=disable"
        );
    }

    #[test]
    fn sqlite_scratch_databases_are_removed() {
        let db = ScratchDatabase::sqlite().expect("scratch");
        let path = db.sqlite_path().expect("path").to_path_buf();
        crate::Store::open_url(db.url()).expect("open");
        assert!(path.exists());
        drop(db);
        assert!(!path.exists());
    }
}
