//! Where the PostgreSQL password comes from: never the command line (other users see it in
//! `ps`, shells keep it in their history), but a file only its owner can read —
//! `--database-password-file FILE`, or an entry of `PGPASSFILE` / `~/.pgpass` in libpq's
//! format (`host:port:database:user:password`, `*` for any value, `\:` and `\\` escaped).
//!
//! A password file that the group or others may read is refused (libpq ignores such a
//! pgpass file with a warning; refusing it tells the operator at start).

use std::fmt;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::secret_file::{read_secret, SecretFileError};

use super::StoreError;

/// Socket directories libpq treats as its default, for which a pgpass entry names
/// `localhost`.
const DEFAULT_SOCKET_DIRS: [&str; 3] = ["/var/run/postgresql", "/run/postgresql", "/tmp"];
const DEFAULT_PORT: u16 = 5432;

/// A database password; never shown.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(Zeroizing<String>);

impl Password {
    pub(crate) fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(***)")
    }
}

/// Reads a password file: a regular file that only its owner may access, UTF-8.
fn read_private(path: &Path, what: &'static str) -> Result<Zeroizing<String>, StoreError> {
    let bytes = read_secret(path, what).map_err(|e| match e {
        SecretFileError::TooOpen { what, path, mode } => StoreError::NotPrivate {
            what,
            path,
            mode: mode & 0o777,
        },
        other => StoreError::PasswordFile {
            what,
            path: path.to_path_buf(),
            reason: other.reason(),
        },
    })?;
    let text = std::str::from_utf8(&bytes).map_err(|_| StoreError::PasswordFile {
        what,
        path: path.to_path_buf(),
        reason: "not UTF-8".into(),
    })?;
    Ok(Zeroizing::new(text.to_string()))
}

pub(crate) const PASSWORD_FILE: &str = "database password file";
pub(crate) const PGPASS_FILE: &str = "PostgreSQL password file";

/// `--database-password-file`: the password is the first line, without its line end
/// (spaces are part of it).
pub(crate) fn read_password_file(path: &Path) -> Result<Password, StoreError> {
    let text = read_private(path, PASSWORD_FILE)?;
    let line = text.lines().next().unwrap_or("");
    if line.is_empty() {
        return Err(StoreError::PasswordFile {
            what: PASSWORD_FILE,
            path: path.to_path_buf(),
            reason: "the first line is empty; write the password on it".into(),
        });
    }
    Ok(Password(Zeroizing::new(line.to_string())))
}

/// What a pgpass entry is matched against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    pub host: String,
    pub port: String,
    pub database: String,
    pub user: String,
}

impl Target {
    /// The first host of a connection configuration, as libpq names it in pgpass: a TCP
    /// host as written, a Unix socket directory by its path (`localhost` for the default
    /// directory or when no host is given).
    pub(crate) fn of(config: &postgres::Config) -> Target {
        let host = match config.get_hosts().first() {
            Some(postgres::config::Host::Tcp(name)) => name.clone(),
            Some(postgres::config::Host::Unix(dir)) => {
                let dir = dir.to_string_lossy();
                let trimmed = dir.trim_end_matches('/');
                if DEFAULT_SOCKET_DIRS.contains(&trimmed) {
                    "localhost".to_string()
                } else {
                    dir.into_owned()
                }
            }
            None => match config.get_hostaddrs().first() {
                Some(addr) => addr.to_string(),
                None => "localhost".to_string(),
            },
        };
        let port = config
            .get_ports()
            .first()
            .copied()
            .unwrap_or(DEFAULT_PORT)
            .to_string();
        // libpq's defaults: the operating system's user, and a database named after the user.
        let user = config
            .get_user()
            .map(str::to_string)
            .or_else(|| std::env::var("USER").ok())
            .or_else(|| std::env::var("LOGNAME").ok())
            .unwrap_or_default();
        let database = config
            .get_dbname()
            .map(str::to_string)
            .unwrap_or_else(|| user.clone());
        Target {
            host,
            port,
            database,
            user,
        }
    }
}

/// The pgpass file in use: `PGPASSFILE`, else `~/.pgpass`; whether it was named explicitly.
fn pgpass_path() -> Option<(PathBuf, bool)> {
    if let Some(path) = std::env::var_os("PGPASSFILE").filter(|p| !p.is_empty()) {
        return Some((PathBuf::from(path), true));
    }
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|home| (Path::new(&home).join(".pgpass"), false))
}

/// The password of the first pgpass entry that matches, if any. A missing `~/.pgpass` is
/// no error; a missing file that `PGPASSFILE` names is.
pub(crate) fn from_pgpass(target: &Target) -> Result<Option<Password>, StoreError> {
    let Some((path, explicit)) = pgpass_path() else {
        return Ok(None);
    };
    if !explicit && !path.exists() {
        return Ok(None);
    }
    let text = read_private(&path, PGPASS_FILE)?;
    Ok(lookup(&text, target).map(|p| Password(Zeroizing::new(p))))
}

/// One field of a pgpass line: its unescaped text, or `None` for the wildcard `*`.
fn fields(line: &str) -> Vec<Option<String>> {
    let mut out = Vec::new();
    let mut field = String::new();
    let mut escaped_any = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                escaped_any = true;
                if let Some(next) = chars.next() {
                    field.push(next);
                }
            }
            ':' => {
                let wildcard = field == "*" && !escaped_any;
                out.push((!wildcard).then(|| std::mem::take(&mut field)));
                field.clear();
                escaped_any = false;
            }
            c => field.push(c),
        }
    }
    let wildcard = field == "*" && !escaped_any;
    out.push((!wildcard).then_some(field));
    out
}

/// The password of the first matching line of a pgpass text, as libpq reads it: comments
/// and lines of fewer than five fields are skipped; the password ends at its first unescaped
/// colon.
pub(crate) fn lookup(text: &str, target: &Target) -> Option<String> {
    let wanted = [&target.host, &target.port, &target.database, &target.user];
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields = fields(line);
        if fields.len() < 5 {
            continue;
        }
        let matches = fields
            .iter()
            .zip(wanted)
            .all(|(field, value)| field.as_ref().is_none_or(|f| f == value));
        if matches {
            // A literal `*` as the password is the password `*`.
            return Some(fields[4].clone().unwrap_or_else(|| "*".to_string()));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(host: &str, port: &str, database: &str, user: &str) -> Target {
        Target {
            host: host.into(),
            port: port.into(),
            database: database.into(),
            user: user.into(),
        }
    }

    #[test]
    fn pgpass_lines_match_as_libpq_reads_them() {
        let text = "# comment\n\
                    \n\
                    short:line\n\
                    db.internal:5432:links:app:first\n\
                    *:*:links:app:second\n\
                    *:*:*:*:any\\:colon\\\\back:ignored\n";
        assert_eq!(
            lookup(text, &target("db.internal", "5432", "links", "app")).as_deref(),
            Some("first")
        );
        assert_eq!(
            lookup(text, &target("other", "5433", "links", "app")).as_deref(),
            Some("second")
        );
        assert_eq!(
            lookup(text, &target("other", "5433", "other", "app")).as_deref(),
            Some("any:colon\\back")
        );
        assert_eq!(lookup("h:1:d:u:p", &target("h", "2", "d", "u")), None);
        // Escaped colons in a matched field, CRLF line ends.
        assert_eq!(
            lookup(
                "/tmp/pg\\:x:5432:d:u:pw\r\n",
                &target("/tmp/pg:x", "5432", "d", "u")
            )
            .as_deref(),
            Some("pw")
        );
        // An escaped star is the character, not the wildcard.
        assert_eq!(
            lookup("\\*:5432:d:u:pw", &target("h", "5432", "d", "u")),
            None
        );
    }

    #[test]
    fn the_target_follows_the_url() {
        let config: postgres::Config = "postgres://app@db.internal:6543/links"
            .parse()
            .expect("url");
        assert_eq!(
            Target::of(&config),
            target("db.internal", "6543", "links", "app")
        );
        let config: postgres::Config = "postgres://app@/links?host=/run/postgresql"
            .parse()
            .expect("url");
        assert_eq!(
            Target::of(&config),
            target("localhost", "5432", "links", "app")
        );
        let config: postgres::Config = "postgres://app@/links?host=/srv/pg/socket&port=5433"
            .parse()
            .expect("url");
        assert_eq!(
            Target::of(&config),
            target("/srv/pg/socket", "5433", "links", "app")
        );
        let config: postgres::Config = "postgres://app@db.internal".parse().expect("url");
        assert_eq!(Target::of(&config).database, "app");
    }

    #[test]
    fn a_password_file_must_be_private_and_not_empty() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("pw");
        std::fs::write(&path, "s3cret with spaces \nignored\n").expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).expect("chmod");
        let refused = read_password_file(&path)
            .expect_err("group-readable")
            .to_string();
        assert!(refused.contains(&path.display().to_string()), "{refused}");
        assert!(refused.contains("chmod 600"), "{refused}");
        assert!(!refused.contains("s3cret"), "{refused}");

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let password = read_password_file(&path).expect("private");
        assert_eq!(password.as_bytes(), b"s3cret with spaces ");
        assert_eq!(format!("{password:?}"), "Password(***)");

        std::fs::write(&path, "\n").expect("write");
        let refused = read_password_file(&path).expect_err("empty").to_string();
        assert!(refused.contains("empty"), "{refused}");
        let refused = read_password_file(&dir.path().join("missing")).expect_err("missing");
        assert!(refused.to_string().contains("missing"), "{refused}");
    }
}
