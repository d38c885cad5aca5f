//! PostgreSQL for production: the same schema and operations as SQLite. Commits are durable
//! as long as `synchronous_commit` is not `off` (the server's default is `on`; a session
//! that finds it `off` turns it back on). Write transactions are `SERIALIZABLE`; a conflict
//! with a concurrent writer, in this process or another, is retried by the store.
//!
//! The connection is the synchronous `postgres` client without TLS (the database is
//! expected on the same host or a private network); the store calls it from blocking threads.
//! The password never comes from the URL, only from a file ([`super::password`]).
//!
//! No request may hang on the database: every statement after the migrations runs with
//! [`STATEMENT_TIMEOUT`] and [`LOCK_TIMEOUT`], and connecting with [`CONNECT_TIMEOUT`].
//!
//! Errors are described by their SQLSTATE and the names of the objects involved (constraint,
//! table, column); PostgreSQL's own text only for the classes that never quote a value, and
//! never its `DETAIL`, `HINT` or `CONTEXT` (`Key (license_number)=(…) already exists`).

use std::collections::HashMap;
use std::error::Error;
use std::time::Duration;

use bytes::BytesMut;
use postgres::error::SqlState;
use postgres::types::{to_sql_checked, IsNull, ToSql, Type};
use postgres::{Client, NoTls, Statement};

use super::password::{Password, Target};
use super::sql::{dollar_placeholders, Arg, Row, Value};
use super::StoreError;

/// The longest one statement may run; a request's few statements then end in seconds.
pub const STATEMENT_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest a statement waits for a lock (a row another transaction writes, a table an
/// operator locked) before it fails and the request is answered 503 `server_busy`.
pub const LOCK_TIMEOUT: Duration = Duration::from_secs(2);
/// Connecting, when the URL does not say (`connect_timeout`).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A PostgreSQL database: the URL (without a password) and the password, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgTarget {
    url: String,
    password: Option<Password>,
}

impl PgTarget {
    /// A URL without a password; one with a password (in the user part or a `password`
    /// parameter) is refused.
    pub fn parse(url: &str) -> Result<PgTarget, StoreError> {
        let config = parse_config(url)?;
        if config.get_password().is_some() {
            return Err(StoreError::PasswordInUrl {
                url: redact_url(url),
            });
        }
        Ok(PgTarget {
            url: url.to_string(),
            password: None,
        })
    }

    pub fn with_password(self, password: Option<Password>) -> PgTarget {
        PgTarget { password, ..self }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn has_password(&self) -> bool {
        self.password.is_some()
    }

    /// What a pgpass entry for this database is matched against.
    pub(crate) fn pgpass_target(&self) -> Result<Target, StoreError> {
        Ok(Target::of(&parse_config(&self.url)?))
    }

    fn connect(&self) -> Result<Client, StoreError> {
        let mut config = parse_config(&self.url)?;
        if let Some(password) = &self.password {
            config.password(password.as_bytes());
        }
        connect_config(&mut config, &self.url)
    }
}

fn parse_config(url: &str) -> Result<postgres::Config, StoreError> {
    url.parse().map_err(|e| StoreError::Connect {
        url: redact_url(url),
        reason: format!("not a valid PostgreSQL URL: {e}"),
    })
}

fn connect_config(config: &mut postgres::Config, url: &str) -> Result<Client, StoreError> {
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    config.connect(NoTls).map_err(|e| StoreError::Connect {
        url: redact_url(url),
        reason: describe(&e),
    })
}

pub(crate) struct PgConn {
    client: Client,
    /// Statements prepared on this connection, by their `?N` text.
    statements: HashMap<String, Statement>,
    /// The URL without its password, for messages.
    url: String,
}

impl PgConn {
    pub fn connect(target: &PgTarget) -> Result<PgConn, StoreError> {
        let client = target.connect()?;
        let mut conn = PgConn {
            client,
            statements: HashMap::new(),
            url: redact_url(&target.url),
        };
        let mut synchronous = conn.query("SELECT current_setting('synchronous_commit')", &[])?;
        if let Some(row) = synchronous.first_mut() {
            if row.text(0)? == "off" {
                conn.batch("SET synchronous_commit = on")?;
            }
        }
        Ok(conn)
    }

    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// From now on every statement of this session has its time limits.
    pub(crate) fn limit_waits(&mut self) -> Result<(), StoreError> {
        self.batch(&format!(
            "SET statement_timeout = {}; SET lock_timeout = {}",
            STATEMENT_TIMEOUT.as_millis(),
            LOCK_TIMEOUT.as_millis()
        ))
    }

    fn statement(&mut self, sql: &str) -> Result<Statement, StoreError> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.client.prepare(&dollar_placeholders(sql))?;
        self.statements.insert(sql.to_string(), statement.clone());
        Ok(statement)
    }

    pub(crate) fn execute(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<u64, StoreError> {
        let statement = self.statement(sql)?;
        let params: Vec<&(dyn ToSql + Sync)> = args.iter().map(|a| a as _).collect();
        Ok(self.client.execute(&statement, &params)?)
    }

    pub(crate) fn query(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<Vec<Row>, StoreError> {
        let statement = self.statement(sql)?;
        let params: Vec<&(dyn ToSql + Sync)> = args.iter().map(|a| a as _).collect();
        let rows = self.client.query(&statement, &params)?;
        rows.iter().map(convert_row).collect()
    }

    pub(crate) fn batch(&mut self, sql: &str) -> Result<(), StoreError> {
        Ok(self.client.batch_execute(sql)?)
    }
}

/// Connects to the URL as given (tests and their administrative connections), with an
/// error that names the URL (without its password).
pub fn connect(url: &str) -> Result<Client, StoreError> {
    connect_config(&mut parse_config(url)?, url)
}

/// SQLSTATE classes whose message never quotes a value: connections, authorization, missing
/// databases and schemas, transaction conflicts and states, names and privileges, resources,
/// locks and timeouts, system errors, unsupported features. Others (data exceptions,
/// integrity violations, PL/pgSQL's `RAISE`, …) may quote the values of a row.
const CLASSES_WITH_PLAIN_MESSAGES: [&str; 12] = [
    "08", "25", "28", "3D", "3F", "40", "42", "53", "55", "57", "58", "0A",
];

/// An error with its cause, for the log: the client's own text ("db error", "error
/// connecting to server") says little without it. A database error is shown by its
/// severity, SQLSTATE and the objects it names; its message only where it cannot hold a
/// value; its detail, hint and context never.
pub(crate) fn describe(error: &postgres::Error) -> String {
    if let Some(db) = error.as_db_error() {
        let code = db.code().code();
        let mut text = format!("{} SQLSTATE {code}", db.severity());
        if CLASSES_WITH_PLAIN_MESSAGES
            .iter()
            .any(|c| code.starts_with(c))
        {
            text.push_str(&format!(": {}", db.message()));
        }
        for (what, name) in [
            ("schema", db.schema()),
            ("table", db.table()),
            ("column", db.column()),
            ("constraint", db.constraint()),
            ("type", db.datatype()),
        ] {
            if let Some(name) = name {
                text.push_str(&format!(" ({what} {name})"));
            }
        }
        return text;
    }
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

fn convert_row(row: &postgres::Row) -> Result<Row, StoreError> {
    let mut values = Vec::with_capacity(row.len());
    for (index, column) in row.columns().iter().enumerate() {
        let ty = column.type_();
        let value = if *ty == Type::TEXT
            || *ty == Type::VARCHAR
            || *ty == Type::BPCHAR
            || *ty == Type::NAME
        {
            row.try_get::<_, Option<String>>(index)?
                .map_or(Value::Null, Value::Text)
        } else if *ty == Type::INT8 {
            row.try_get::<_, Option<i64>>(index)?
                .map_or(Value::Null, Value::Int)
        } else if *ty == Type::INT4 {
            row.try_get::<_, Option<i32>>(index)?
                .map_or(Value::Null, |i| Value::Int(i64::from(i)))
        } else if *ty == Type::INT2 {
            row.try_get::<_, Option<i16>>(index)?
                .map_or(Value::Null, |i| Value::Int(i64::from(i)))
        } else {
            return Err(StoreError::UnexpectedValue {
                index,
                expected: "text, an integer or NULL",
            });
        };
        values.push(value);
    }
    Ok(Row(values))
}

impl ToSql for Arg<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        match *self {
            Arg::Null => Ok(IsNull::Yes),
            Arg::Text(s) => s.to_sql(ty, out),
            Arg::Int(i) if *ty == Type::INT8 => i.to_sql(ty, out),
            Arg::Int(i) if *ty == Type::INT4 => i32::try_from(i)?.to_sql(ty, out),
            Arg::Int(i) if *ty == Type::INT2 => i16::try_from(i)?.to_sql(ty, out),
            Arg::Int(_) => Err(format!("an integer given for a {ty} parameter").into()),
        }
    }

    fn accepts(_ty: &Type) -> bool {
        // Checked per value in `to_sql`: the type of an argument is known only then.
        true
    }

    to_sql_checked!();
}

/// Whether an error is a conflict with a concurrent transaction, which succeeds when the
/// transaction is run again: a serialization failure, a deadlock, or a unique key that a
/// concurrent transaction took first.
pub(crate) fn is_conflict(error: &postgres::Error) -> bool {
    error.code().is_some_and(|code| {
        *code == SqlState::T_R_SERIALIZATION_FAILURE
            || *code == SqlState::T_R_DEADLOCK_DETECTED
            || *code == SqlState::UNIQUE_VIOLATION
    })
}

/// Whether an error is the database giving up a wait: `lock_timeout` (55P03) or
/// `statement_timeout` (57014, which is also a cancelled statement).
pub(crate) fn is_timeout(error: &postgres::Error) -> bool {
    error.code().is_some_and(|code| {
        *code == SqlState::LOCK_NOT_AVAILABLE || *code == SqlState::QUERY_CANCELED
    })
}

/// The URL with its password replaced by `***`, in the user part and in a `password=`
/// parameter alike.
pub fn redact_url(url: &str) -> String {
    let mut out = url.to_string();
    if let Some(scheme_end) = out.find("://") {
        let rest = scheme_end + 3;
        let authority_end = out[rest..].find(['/', '?']).map_or(out.len(), |i| rest + i);
        if let Some(at) = out[rest..authority_end].rfind('@') {
            let userinfo = rest..rest + at;
            if let Some(colon) = out[userinfo.clone()].find(':') {
                out.replace_range(rest + colon + 1..userinfo.end, "***");
            }
        }
    }
    if let Some(query_start) = out.find('?') {
        let (head, query) = out.split_at(query_start + 1);
        let query = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((key, _)) if key == "password" => format!("{key}=***"),
                _ => pair.to_string(),
            })
            .collect::<Vec<_>>()
            .join("&");
        out = format!("{head}{query}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_not_shown() {
        assert_eq!(
            redact_url("postgres://app:s3cret@db.example:5432/links?sslmode=disable"),
            "postgres://app:***@db.example:5432/links?sslmode=disable"
        );
        assert_eq!(
            redact_url("postgresql://app@/links?host=/run/pg&password=s3cret&port=5433"),
            "postgresql://app@/links?host=/run/pg&password=***&port=5433"
        );
        assert_eq!(
            redact_url("postgres://app@host/db"),
            "postgres://app@host/db"
        );
        assert_eq!(
            redact_url("postgres://a:b@c@host/db"),
            "postgres://a:***@host/db"
        );
    }

    #[test]
    fn a_bad_url_or_an_unreachable_server_is_named_without_the_password() {
        let message = connect("postgres://app:s3cret@/db?port=notaport")
            .err()
            .expect("invalid")
            .to_string();
        assert!(message.contains("postgres://app:***@/db"), "{message}");
        assert!(!message.contains("s3cret"), "{message}");

        let dir = std::env::temp_dir().join("mynalink-no-such-postgres");
        let url = format!("postgres://app:s3cret@/db?host={}&port=1", dir.display());
        let message = connect(&url).err().expect("unreachable").to_string();
        assert!(message.contains("cannot connect"), "{message}");
        assert!(message.contains("postgres://app:***@/db"), "{message}");
        assert!(!message.contains("s3cret"), "{message}");
    }
}
