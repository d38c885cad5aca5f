//! The little the store needs from a database connection, the same for SQLite and
//! PostgreSQL: statements written once with `?N` placeholders (the PostgreSQL connection
//! rewrites them to `$N`), arguments that are text, integers or NULL, and rows of the same.
//! The operations of the store are written once against [`Conn`].

use super::pg::PgConn;
use super::sqlite::SqliteConn;
use super::StoreError;

/// One statement argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Arg<'a> {
    Null,
    Text(&'a str),
    Int(i64),
}

impl<'a> From<&'a str> for Arg<'a> {
    fn from(s: &'a str) -> Self {
        Arg::Text(s)
    }
}

impl<'a> From<&'a String> for Arg<'a> {
    fn from(s: &'a String) -> Self {
        Arg::Text(s)
    }
}

impl<'a> From<Option<&'a str>> for Arg<'a> {
    fn from(s: Option<&'a str>) -> Self {
        s.map_or(Arg::Null, Arg::Text)
    }
}

impl<'a> From<&'a Option<String>> for Arg<'a> {
    fn from(s: &'a Option<String>) -> Self {
        s.as_deref().map_or(Arg::Null, Arg::Text)
    }
}

impl From<i64> for Arg<'_> {
    fn from(i: i64) -> Self {
        Arg::Int(i)
    }
}

impl From<u32> for Arg<'_> {
    fn from(i: u32) -> Self {
        Arg::Int(i64::from(i))
    }
}

impl From<u16> for Arg<'_> {
    fn from(i: u16) -> Self {
        Arg::Int(i64::from(i))
    }
}

/// The arguments of a statement: `args![a, b, c]`.
macro_rules! args {
    ($($arg:expr),* $(,)?) => {
        &[$($crate::store::sql::Arg::from($arg)),*]
    };
}
pub(crate) use args;

/// One value of a result row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Value {
    Null,
    Int(i64),
    Text(String),
}

/// A result row; the getters take the values out by column index.
#[derive(Debug)]
pub(crate) struct Row(pub(crate) Vec<Value>);

impl Row {
    fn take(&mut self, index: usize) -> Result<Value, StoreError> {
        self.0
            .get_mut(index)
            .map(|v| std::mem::replace(v, Value::Null))
            .ok_or(StoreError::UnexpectedValue {
                index,
                expected: "a column",
            })
    }

    pub(crate) fn text(&mut self, index: usize) -> Result<String, StoreError> {
        match self.take(index)? {
            Value::Text(s) => Ok(s),
            _ => Err(StoreError::UnexpectedValue {
                index,
                expected: "text",
            }),
        }
    }

    pub(crate) fn opt_text(&mut self, index: usize) -> Result<Option<String>, StoreError> {
        match self.take(index)? {
            Value::Text(s) => Ok(Some(s)),
            Value::Null => Ok(None),
            Value::Int(_) => Err(StoreError::UnexpectedValue {
                index,
                expected: "text or NULL",
            }),
        }
    }

    pub(crate) fn int(&mut self, index: usize) -> Result<i64, StoreError> {
        match self.take(index)? {
            Value::Int(i) => Ok(i),
            _ => Err(StoreError::UnexpectedValue {
                index,
                expected: "an integer",
            }),
        }
    }

    /// An integer column that must fit `T` (a count, a status code).
    pub(crate) fn int_as<T: TryFrom<i64>>(&mut self, index: usize) -> Result<T, StoreError> {
        T::try_from(self.int(index)?).map_err(|_| StoreError::UnexpectedValue {
            index,
            expected: "an integer in range",
        })
    }
}

/// Which SQL a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
}

/// A connection to either database.
pub(crate) enum Conn {
    Sqlite(SqliteConn),
    Postgres(Box<PgConn>),
}

impl Conn {
    pub(crate) fn dialect(&self) -> Dialect {
        match self {
            Conn::Sqlite(_) => Dialect::Sqlite,
            Conn::Postgres(_) => Dialect::Postgres,
        }
    }

    /// Runs one statement; returns the number of rows it changed.
    pub(crate) fn execute(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<u64, StoreError> {
        match self {
            Conn::Sqlite(c) => c.execute(sql, args),
            Conn::Postgres(c) => c.execute(sql, args),
        }
    }

    pub(crate) fn query(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<Vec<Row>, StoreError> {
        match self {
            Conn::Sqlite(c) => c.query(sql, args),
            Conn::Postgres(c) => c.query(sql, args),
        }
    }

    /// The first row, if any.
    pub(crate) fn query_opt(
        &mut self,
        sql: &str,
        args: &[Arg<'_>],
    ) -> Result<Option<Row>, StoreError> {
        Ok(self.query(sql, args)?.into_iter().next())
    }

    /// The first row, which must exist (aggregates).
    pub(crate) fn query_one(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<Row, StoreError> {
        self.query_opt(sql, args)?.ok_or(StoreError::NoRow)
    }

    /// Runs statements separated by semicolons, without arguments.
    pub(crate) fn batch(&mut self, sql: &str) -> Result<(), StoreError> {
        match self {
            Conn::Sqlite(c) => c.batch(sql),
            Conn::Postgres(c) => c.batch(sql),
        }
    }

    /// Starts a write transaction: SQLite takes the write lock at once (`IMMEDIATE`);
    /// PostgreSQL runs it `SERIALIZABLE`, so that it sees and decides as if alone, and a
    /// conflicting concurrent writer (in any process) fails with a retryable error.
    pub(crate) fn begin_write(&mut self) -> Result<(), StoreError> {
        match self {
            Conn::Sqlite(_) => self.batch("BEGIN IMMEDIATE"),
            Conn::Postgres(_) => self.batch("BEGIN ISOLATION LEVEL SERIALIZABLE"),
        }
    }

    pub(crate) fn commit(&mut self) -> Result<(), StoreError> {
        self.batch("COMMIT")
    }

    pub(crate) fn rollback(&mut self) -> Result<(), StoreError> {
        self.batch("ROLLBACK")
    }
}

/// `?N` placeholders as PostgreSQL writes them (`$N`). Statements hold no string literal
/// with a question mark.
pub(crate) fn dollar_placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '?' && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('$');
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_rewritten() {
        assert_eq!(
            dollar_placeholders("SELECT a FROM t WHERE b = ?1 AND c > ?12 OR d = ?"),
            "SELECT a FROM t WHERE b = $1 AND c > $12 OR d = ?"
        );
    }

    #[test]
    fn rows_refuse_the_wrong_kind_of_value() {
        let mut row = Row(vec![
            Value::Text("a".into()),
            Value::Int(7),
            Value::Null,
            Value::Int(-1),
        ]);
        assert_eq!(row.opt_text(2).expect("null"), None);
        assert!(row.int(0).is_err());
        assert_eq!(row.int(1).expect("int"), 7);
        assert!(row.int_as::<u32>(3).is_err());
        assert!(row.text(9).is_err());
    }
}
