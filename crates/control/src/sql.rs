//! The store interface: the SQL seam between the control plane's commands and a database.
//!
//! Commands and queries (`Tx` methods) are written once, against [`Db`]: statements in a
//! portable SQL subset with numbered parameters (`?1`), values as [`Value`], rows as
//! [`Row`]. A backend implements `Db` for its transaction type: SQLite (embedded, below) now;
//! PostgreSQL implements the same trait (rewriting `?N` to `$N`) with its own migrations.
//! Keeping the seam at SQL rather than at one method per command means the ECS constraints
//! and the change log exist once, whatever the backend.

use rusqlite::types::{ToSqlOutput, ValueRef};

use crate::{ControlError, Result};

/// A value bound to a statement or read from a row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// SQL NULL.
    Null,
    /// A 64-bit integer (also booleans, as 0/1).
    Int(i64),
    /// Text.
    Text(String),
}

impl From<i64> for Value {
    fn from(v: i64) -> Value {
        Value::Int(v)
    }
}

impl From<usize> for Value {
    fn from(v: usize) -> Value {
        Value::Int(v as i64)
    }
}

impl From<bool> for Value {
    fn from(v: bool) -> Value {
        Value::Int(i64::from(v))
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Value {
        Value::Text(v.to_string())
    }
}

impl From<String> for Value {
    fn from(v: String) -> Value {
        Value::Text(v)
    }
}

impl From<&String> for Value {
    fn from(v: &String) -> Value {
        Value::Text(v.clone())
    }
}

impl From<&Option<String>> for Value {
    fn from(v: &Option<String>) -> Value {
        v.as_deref().into()
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Value {
        v.map_or(Value::Null, Into::into)
    }
}

/// Builds a parameter list: `args![a, b, c]`.
macro_rules! args {
    ($($e:expr),* $(,)?) => { &[$($crate::sql::Value::from($e)),*][..] };
}
pub(crate) use args;

/// A result row: values by position, or by column name.
#[derive(Debug, Clone)]
pub struct Row {
    columns: std::sync::Arc<[String]>,
    values: Vec<Value>,
}

/// A column by position or by name.
pub trait Column: std::fmt::Display + Copy {
    /// Its index among `columns`.
    fn index(self, columns: &[String]) -> Option<usize>;
}

impl Column for usize {
    fn index(self, columns: &[String]) -> Option<usize> {
        (self < columns.len()).then_some(self)
    }
}

impl Column for &str {
    fn index(self, columns: &[String]) -> Option<usize> {
        columns.iter().position(|c| c == self)
    }
}

impl Row {
    /// A row of `values` under `columns` (for backends).
    pub fn new(columns: std::sync::Arc<[String]>, values: Vec<Value>) -> Row {
        Row { columns, values }
    }

    fn value(&self, c: impl Column) -> Result<&Value> {
        c.index(&self.columns)
            .map(|i| &self.values[i])
            .ok_or_else(|| ControlError::Storage(format!("no column {c}")))
    }

    fn mismatch(c: impl Column, want: &str, got: &Value) -> ControlError {
        ControlError::Storage(format!("column {c}: expected {want}, found {got:?}"))
    }

    /// An integer column.
    pub fn int(&self, c: impl Column) -> Result<i64> {
        match self.value(c)? {
            Value::Int(v) => Ok(*v),
            other => Err(Row::mismatch(c, "an integer", other)),
        }
    }

    /// A nullable integer column.
    pub fn opt_int(&self, c: impl Column) -> Result<Option<i64>> {
        match self.value(c)? {
            Value::Null => Ok(None),
            Value::Int(v) => Ok(Some(*v)),
            other => Err(Row::mismatch(c, "an integer", other)),
        }
    }

    /// A boolean column (an integer, 0 is false).
    pub fn flag(&self, c: impl Column) -> Result<bool> {
        Ok(self.int(c)? != 0)
    }

    /// A text column.
    pub fn text(&self, c: impl Column) -> Result<String> {
        match self.value(c)? {
            Value::Text(v) => Ok(v.clone()),
            other => Err(Row::mismatch(c, "text", other)),
        }
    }

    /// A nullable text column.
    pub fn opt_text(&self, c: impl Column) -> Result<Option<String>> {
        match self.value(c)? {
            Value::Null => Ok(None),
            Value::Text(v) => Ok(Some(v.clone())),
            other => Err(Row::mismatch(c, "text", other)),
        }
    }

    /// A text column parsed into a model type (a stored id that no longer parses is a
    /// damaged store, reported as a storage error).
    pub fn parsed<T: std::str::FromStr>(&self, c: impl Column) -> Result<T> {
        let text = self.text(c)?;
        text.parse()
            .map_err(|_| ControlError::Storage(format!("column {c}: cannot read {text:?}")))
    }
}

/// One transaction of a backend.
pub trait Db {
    /// Runs a statement; returns the number of rows it changed.
    fn execute(&self, sql: &str, params: &[Value]) -> Result<usize>;

    /// Runs a query; returns every row.
    fn query(&self, sql: &str, params: &[Value]) -> Result<Vec<Row>>;

    /// The first row, if any.
    fn query_opt(&self, sql: &str, params: &[Value]) -> Result<Option<Row>> {
        Ok(self.query(sql, params)?.into_iter().next())
    }

    /// The first row; a query that returns none is a storage error.
    fn query_one(&self, sql: &str, params: &[Value]) -> Result<Row> {
        self.query_opt(sql, params)?
            .ok_or_else(|| ControlError::Storage(format!("no row for {sql}")))
    }
}

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Value::Null => ToSqlOutput::Borrowed(ValueRef::Null),
            Value::Int(v) => ToSqlOutput::Borrowed(ValueRef::Integer(*v)),
            Value::Text(v) => ToSqlOutput::Borrowed(ValueRef::Text(v.as_bytes())),
        })
    }
}

/// The embedded backend: statements are prepared once per connection and cached. A
/// `rusqlite::Transaction` is used through this impl (it dereferences to its connection).
impl Db for rusqlite::Connection {
    fn execute(&self, sql: &str, params: &[Value]) -> Result<usize> {
        Ok(self
            .prepare_cached(sql)?
            .execute(rusqlite::params_from_iter(params))?)
    }

    fn query(&self, sql: &str, params: &[Value]) -> Result<Vec<Row>> {
        let mut stmt = self.prepare_cached(sql)?;
        let columns: std::sync::Arc<[String]> = stmt
            .column_names()
            .into_iter()
            .map(str::to_string)
            .collect();
        let n = columns.len();
        let mut rows = stmt.query(rusqlite::params_from_iter(params))?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            let values = (0..n)
                .map(|i| {
                    Ok(match r.get_ref(i)? {
                        ValueRef::Null => Value::Null,
                        ValueRef::Integer(v) => Value::Int(v),
                        ValueRef::Real(v) => Value::Int(v as i64),
                        ValueRef::Text(t) | ValueRef::Blob(t) => {
                            Value::Text(String::from_utf8_lossy(t).into_owned())
                        }
                    })
                })
                .collect::<rusqlite::Result<_>>()?;
            out.push(Row {
                columns: columns.clone(),
                values,
            });
        }
        Ok(out)
    }
}
