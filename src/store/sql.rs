//! The SQL surface every service writes against, whichever database is underneath.
//!
//! A [`Connection`] runs one statement at a time with numbered parameters (`?1`, `?2`, …),
//! and hands back owned [`Row`]s. SQLite runs the text as written; PostgreSQL gets it with
//! `$1`-style parameters (see [`postgres_text`]). Services therefore write the SQL both
//! understand: `INSERT … ON CONFLICT DO NOTHING` rather than `INSERT OR IGNORE`,
//! `RETURNING` rather than `last_insert_rowid()`, `CAST(SUM(x) AS BIGINT)` where a sum is
//! read back as an integer, and a `CAST(?n AS TEXT)` where a parameter's type cannot be
//! told from where it stands.

use std::cell::RefCell;
use std::collections::HashMap;

use super::StoreError;

/// One value going into or coming out of a statement.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Integer(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

/// A Rust value a statement can take as a parameter.
pub trait ToValue {
    fn to_value(&self) -> Value;
}

/// A Rust value a column can be read as.
pub trait FromValue: Sized {
    fn from_value(value: &Value) -> Result<Self, StoreError>;
}

fn wrong_type(value: &Value, wanted: &str) -> StoreError {
    StoreError::Conversion(format!("a column holding {value:?} read as {wanted}"))
}

macro_rules! integers {
    ($($t:ty),*) => {$(
        impl ToValue for $t {
            fn to_value(&self) -> Value {
                // Every integer this server stores fits an i64; one that does not (a usize
                // limit set absurdly high) is clamped rather than wrapped.
                Value::Integer(i64::try_from(*self).unwrap_or(i64::MAX))
            }
        }
        impl FromValue for $t {
            fn from_value(value: &Value) -> Result<Self, StoreError> {
                match value {
                    Value::Integer(i) => <$t>::try_from(*i).map_err(|_| {
                        StoreError::Conversion(format!(
                            "{i} does not fit {}", stringify!($t)
                        ))
                    }),
                    other => Err(wrong_type(other, stringify!($t))),
                }
            }
        }
    )*};
}
integers!(i64, i32, i16, i8, u64, u32, u16, u8, usize);

impl ToValue for f64 {
    fn to_value(&self) -> Value {
        Value::Real(*self)
    }
}
impl FromValue for f64 {
    fn from_value(value: &Value) -> Result<Self, StoreError> {
        match value {
            Value::Real(r) => Ok(*r),
            Value::Integer(i) => Ok(*i as f64),
            other => Err(wrong_type(other, "f64")),
        }
    }
}
impl ToValue for f32 {
    fn to_value(&self) -> Value {
        Value::Real(f64::from(*self))
    }
}
impl FromValue for f32 {
    fn from_value(value: &Value) -> Result<Self, StoreError> {
        f64::from_value(value).map(|v| v as f32)
    }
}
impl ToValue for bool {
    fn to_value(&self) -> Value {
        Value::Integer(i64::from(*self))
    }
}
impl FromValue for bool {
    fn from_value(value: &Value) -> Result<Self, StoreError> {
        match value {
            Value::Integer(i) => Ok(*i != 0),
            other => Err(wrong_type(other, "bool")),
        }
    }
}
impl ToValue for str {
    fn to_value(&self) -> Value {
        Value::Text(self.to_owned())
    }
}
impl ToValue for String {
    fn to_value(&self) -> Value {
        Value::Text(self.clone())
    }
}
impl FromValue for String {
    fn from_value(value: &Value) -> Result<Self, StoreError> {
        match value {
            Value::Text(s) => Ok(s.clone()),
            other => Err(wrong_type(other, "text")),
        }
    }
}
impl ToValue for [u8] {
    fn to_value(&self) -> Value {
        Value::Blob(self.to_vec())
    }
}
impl ToValue for Vec<u8> {
    fn to_value(&self) -> Value {
        Value::Blob(self.clone())
    }
}
impl<const N: usize> ToValue for [u8; N] {
    fn to_value(&self) -> Value {
        Value::Blob(self.to_vec())
    }
}
impl FromValue for Vec<u8> {
    fn from_value(value: &Value) -> Result<Self, StoreError> {
        match value {
            Value::Blob(b) => Ok(b.clone()),
            other => Err(wrong_type(other, "bytes")),
        }
    }
}
impl<T: ToValue> ToValue for Option<T> {
    fn to_value(&self) -> Value {
        self.as_ref().map_or(Value::Null, ToValue::to_value)
    }
}
impl<T: FromValue> FromValue for Option<T> {
    fn from_value(value: &Value) -> Result<Self, StoreError> {
        match value {
            Value::Null => Ok(None),
            other => T::from_value(other).map(Some),
        }
    }
}
impl<T: ToValue + ?Sized> ToValue for &T {
    fn to_value(&self) -> Value {
        (**self).to_value()
    }
}
impl ToValue for Value {
    fn to_value(&self) -> Value {
        self.clone()
    }
}

/// The parameters of one statement: `()`, an array of one type, or [`params!`].
pub trait Params {
    fn values(&self) -> Vec<Value>;
}
impl Params for () {
    fn values(&self) -> Vec<Value> {
        Vec::new()
    }
}
impl Params for &[&dyn ToValue] {
    fn values(&self) -> Vec<Value> {
        self.iter().map(|p| p.to_value()).collect()
    }
}
impl<T: ToValue, const N: usize> Params for [T; N] {
    fn values(&self) -> Vec<Value> {
        self.iter().map(ToValue::to_value).collect()
    }
}
impl Params for Vec<Value> {
    fn values(&self) -> Vec<Value> {
        self.clone()
    }
}

/// Parameters of mixed types: `params![user_id, amount, None::<i64>]`.
#[macro_export]
macro_rules! params {
    ($($p:expr),* $(,)?) => {
        &[$(&$p as &dyn $crate::store::ToValue),*] as &[&dyn $crate::store::ToValue]
    };
}

/// A column index (by position, from 0).
pub trait ColumnIndex {
    fn index(self) -> usize;
}
impl ColumnIndex for usize {
    fn index(self) -> usize {
        self
    }
}

/// One result row, owned.
#[derive(Debug, Clone)]
pub struct Row {
    values: Vec<Value>,
}

impl Row {
    pub fn get<I: ColumnIndex, T: FromValue>(&self, index: I) -> Result<T, StoreError> {
        let index = index.index();
        let value = self
            .values
            .get(index)
            .ok_or_else(|| StoreError::Conversion(format!("no column {index}")))?;
        T::from_value(value)
    }
}

/// `.optional()` on a [`Connection::query_row`]: no row is `None`, not an error.
pub trait OptionalExtension<T> {
    fn optional(self) -> Result<Option<T>, StoreError>;
}
impl<T> OptionalExtension<T> for Result<T, StoreError> {
    fn optional(self) -> Result<Option<T>, StoreError> {
        match self {
            Ok(v) => Ok(Some(v)),
            Err(StoreError::NoRows) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// A connection to the store: inside a write operation's transaction, or a read.
pub struct Connection<'a> {
    kind: Kind<'a>,
}

enum Kind<'a> {
    Sqlite(&'a rusqlite::Connection),
    Postgres(&'a RefCell<PgSession>),
}

impl<'a> Connection<'a> {
    pub(crate) fn sqlite(conn: &'a rusqlite::Connection) -> Self {
        Self {
            kind: Kind::Sqlite(conn),
        }
    }

    pub(crate) fn postgres(session: &'a RefCell<PgSession>) -> Self {
        Self {
            kind: Kind::Postgres(session),
        }
    }

    /// Which database this is: `"sqlite"` or `"postgres"`.
    pub fn dialect(&self) -> &'static str {
        match self.kind {
            Kind::Sqlite(_) => "sqlite",
            Kind::Postgres(_) => "postgres",
        }
    }

    /// Runs a statement; returns how many rows it changed.
    pub fn execute<P: Params>(&self, sql: &str, params: P) -> Result<usize, StoreError> {
        let values = params.values();
        match &self.kind {
            Kind::Sqlite(conn) => {
                let mut stmt = conn.prepare_cached(sql)?;
                Ok(stmt.execute(rusqlite::params_from_iter(values.iter()))?)
            }
            Kind::Postgres(session) => {
                let changed = session.borrow_mut().execute(sql, &values)?;
                Ok(usize::try_from(changed).unwrap_or(usize::MAX))
            }
        }
    }

    /// Every row of a query.
    pub fn rows<P: Params>(&self, sql: &str, params: P) -> Result<Vec<Row>, StoreError> {
        let values = params.values();
        match &self.kind {
            Kind::Sqlite(conn) => {
                let mut stmt = conn.prepare_cached(sql)?;
                let columns = stmt.column_count();
                let mut rows = stmt.query(rusqlite::params_from_iter(values.iter()))?;
                let mut out = Vec::new();
                while let Some(row) = rows.next()? {
                    let values = (0..columns)
                        .map(|i| row.get_ref(i).map(sqlite_value))
                        .collect::<Result<_, _>>()?;
                    out.push(Row { values });
                }
                Ok(out)
            }
            Kind::Postgres(session) => session.borrow_mut().query(sql, &values),
        }
    }

    /// The first row of a query, mapped; [`StoreError::NoRows`] when there is none.
    pub fn query_row<T, P: Params>(
        &self,
        sql: &str,
        params: P,
        map: impl FnOnce(&Row) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let rows = self.rows(sql, params)?;
        map(rows.first().ok_or(StoreError::NoRows)?)
    }

    /// Every row of a query, mapped.
    pub fn query_map<T, P: Params>(
        &self,
        sql: &str,
        params: P,
        mut map: impl FnMut(&Row) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        self.rows(sql, params)?.iter().map(&mut map).collect()
    }

    /// A statement to run once or several times; both databases prepare it on its first
    /// run and keep it, by its text, for the next.
    pub fn prepare<'c>(&'c self, sql: &str) -> Result<Statement<'c, 'a>, StoreError> {
        Ok(Statement {
            conn: self,
            sql: sql.to_owned(),
        })
    }

    /// Runs several statements without parameters (schema changes).
    pub fn execute_batch(&self, sql: &str) -> Result<(), StoreError> {
        match &self.kind {
            Kind::Sqlite(conn) => Ok(conn.execute_batch(sql)?),
            Kind::Postgres(session) => Ok(session.borrow_mut().client.batch_execute(sql)?),
        }
    }

    /// The names of the schema's tables, in order.
    pub fn tables(&self) -> Result<Vec<String>, StoreError> {
        let sql = match self.kind {
            Kind::Sqlite(_) => {
                "SELECT name FROM sqlite_master
                 WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
            }
            Kind::Postgres(_) => {
                "SELECT CAST(tablename AS TEXT) FROM pg_tables
                 WHERE schemaname = current_schema() ORDER BY tablename"
            }
        };
        self.query_map(sql, (), |r| r.get(0))
    }

    /// The names of every table, index and sequence in the schema.
    pub(crate) fn schema_names(&self) -> Result<Vec<String>, StoreError> {
        let sql = match self.kind {
            Kind::Sqlite(_) => {
                "SELECT name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY name"
            }
            Kind::Postgres(_) => {
                "SELECT CAST(c.relname AS TEXT) FROM pg_class c
                 JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'i', 'S', 'v')
                 ORDER BY c.relname"
            }
        };
        self.query_map(sql, (), |r| r.get(0))
    }
}

/// See [`Connection::prepare`].
pub struct Statement<'c, 'a> {
    conn: &'c Connection<'a>,
    sql: String,
}

impl Statement<'_, '_> {
    /// Runs the query; yields each row mapped.
    pub fn query_map<T, P: Params>(
        &mut self,
        params: P,
        mut map: impl FnMut(&Row) -> Result<T, StoreError>,
    ) -> Result<std::vec::IntoIter<Result<T, StoreError>>, StoreError> {
        let rows = self.conn.rows(&self.sql, params)?;
        let mapped: Vec<_> = rows.iter().map(&mut map).collect();
        Ok(mapped.into_iter())
    }
}

pub(crate) fn sqlite_value(value: rusqlite::types::ValueRef<'_>) -> Value {
    use rusqlite::types::ValueRef;
    match value {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::Integer(i),
        ValueRef::Real(r) => Value::Real(r),
        ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => Value::Blob(b.to_vec()),
    }
}

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(ToSqlOutput::Borrowed(match self {
            Value::Null => ValueRef::Null,
            Value::Integer(i) => ValueRef::Integer(*i),
            Value::Real(r) => ValueRef::Real(*r),
            Value::Text(t) => ValueRef::Text(t.as_bytes()),
            Value::Blob(b) => ValueRef::Blob(b),
        }))
    }
}

/// A PostgreSQL connection with its prepared statements, by SQL text.
pub(crate) struct PgSession {
    pub(crate) client: postgres::Client,
    statements: HashMap<String, postgres::Statement>,
    /// When it last did its work: one idle for a while is checked before it is used again.
    pub(crate) last_used: std::time::Instant,
}

impl PgSession {
    pub(crate) fn new(client: postgres::Client) -> Self {
        Self {
            client,
            statements: HashMap::new(),
            last_used: std::time::Instant::now(),
        }
    }

    /// Whether the connection still works: closed, or idle for a while and not answering
    /// a trivial query (the server restarted under it), it does not.
    pub(crate) fn is_healthy(&mut self) -> bool {
        const TRUSTED_IDLE: std::time::Duration = std::time::Duration::from_millis(250);
        if self.client.is_closed() {
            return false;
        }
        self.last_used.elapsed() < TRUSTED_IDLE
            || self
                .client
                .is_valid(std::time::Duration::from_secs(2))
                .is_ok()
    }

    fn statement(&mut self, sql: &str) -> Result<postgres::Statement, StoreError> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.client.prepare(&postgres_text(sql))?;
        self.statements.insert(sql.to_owned(), statement.clone());
        Ok(statement)
    }

    fn execute(&mut self, sql: &str, values: &[Value]) -> Result<u64, StoreError> {
        let statement = self.statement(sql)?;
        let params: Vec<&(dyn postgres::types::ToSql + Sync)> = values
            .iter()
            .map(|v| v as &(dyn postgres::types::ToSql + Sync))
            .collect();
        Ok(self.client.execute(&statement, &params)?)
    }

    fn query(&mut self, sql: &str, values: &[Value]) -> Result<Vec<Row>, StoreError> {
        let statement = self.statement(sql)?;
        let params: Vec<&(dyn postgres::types::ToSql + Sync)> = values
            .iter()
            .map(|v| v as &(dyn postgres::types::ToSql + Sync))
            .collect();
        let rows = self.client.query(&statement, &params)?;
        rows.iter()
            .map(|row| {
                let values = (0..row.len())
                    .map(|i| row.try_get::<_, PgValue>(i).map(|v| v.0))
                    .collect::<Result<_, _>>()?;
                Ok(Row { values })
            })
            .collect()
    }
}

/// The same statement with PostgreSQL's parameters: `?1` becomes `$1`, and a bare `?` the
/// next number. Quoted text is left alone.
pub fn postgres_text(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut chars = sql.chars().peekable();
    let mut quote: Option<char> = None;
    let mut next = 1;
    while let Some(c) = chars.next() {
        if let Some(q) = quote {
            out.push(c);
            if c == q {
                quote = None;
            }
            continue;
        }
        match c {
            '\'' | '"' => {
                quote = Some(c);
                out.push(c);
            }
            '?' => {
                let mut digits = String::new();
                while let Some(d) = chars.peek().copied().filter(char::is_ascii_digit) {
                    digits.push(d);
                    chars.next();
                }
                out.push('$');
                if digits.is_empty() {
                    out.push_str(&next.to_string());
                    next += 1;
                } else {
                    out.push_str(&digits);
                }
            }
            _ => out.push(c),
        }
    }
    out
}

impl postgres::types::ToSql for Value {
    fn to_sql(
        &self,
        ty: &postgres::types::Type,
        out: &mut bytes::BytesMut,
    ) -> Result<postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        use postgres::types::{IsNull, Type};
        // The server infers each parameter's type from where it stands; send the value as
        // that type when it fits.
        match self {
            Value::Null => return Ok(IsNull::Yes),
            Value::Integer(i) => match *ty {
                Type::INT8 => i.to_sql(ty, out),
                Type::INT4 => i32::try_from(*i)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(*i)?.to_sql(ty, out),
                Type::FLOAT8 => (*i as f64).to_sql(ty, out),
                Type::BOOL => (*i != 0).to_sql(ty, out),
                Type::TEXT | Type::VARCHAR => i.to_string().to_sql(ty, out),
                _ => Err(format!("an integer cannot be sent as {ty}").into()),
            },
            Value::Real(r) => match *ty {
                Type::FLOAT8 => r.to_sql(ty, out),
                Type::FLOAT4 => (*r as f32).to_sql(ty, out),
                _ => Err(format!("a real cannot be sent as {ty}").into()),
            },
            Value::Text(t) => t.as_str().to_sql(ty, out),
            Value::Blob(b) => b.as_slice().to_sql(ty, out),
        }?;
        Ok(IsNull::No)
    }

    fn accepts(_: &postgres::types::Type) -> bool {
        true
    }

    postgres::types::to_sql_checked!();
}

/// A column read from PostgreSQL.
struct PgValue(Value);

impl<'a> postgres::types::FromSql<'a> for PgValue {
    fn from_sql(
        ty: &postgres::types::Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        use postgres::types::Type;
        Ok(PgValue(match *ty {
            Type::INT8 => Value::Integer(i64::from_sql(ty, raw)?),
            Type::INT4 => Value::Integer(i64::from(i32::from_sql(ty, raw)?)),
            Type::INT2 => Value::Integer(i64::from(i16::from_sql(ty, raw)?)),
            Type::BOOL => Value::Integer(i64::from(bool::from_sql(ty, raw)?)),
            Type::FLOAT8 => Value::Real(f64::from_sql(ty, raw)?),
            Type::FLOAT4 => Value::Real(f64::from(f32::from_sql(ty, raw)?)),
            Type::BYTEA => Value::Blob(<Vec<u8>>::from_sql(ty, raw)?),
            _ => Value::Text(String::from_sql(ty, raw)?),
        }))
    }

    fn from_sql_null(
        _: &postgres::types::Type,
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(PgValue(Value::Null))
    }

    fn accepts(ty: &postgres::types::Type) -> bool {
        use postgres::types::Type;
        matches!(
            *ty,
            Type::INT8
                | Type::INT4
                | Type::INT2
                | Type::BOOL
                | Type::FLOAT8
                | Type::FLOAT4
                | Type::BYTEA
                | Type::TEXT
                | Type::VARCHAR
                | Type::BPCHAR
                | Type::NAME
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_parameters_are_numbered_outside_quotes() {
        assert_eq!(
            postgres_text("SELECT a FROM t WHERE b = ?2 AND c = ?1 AND d = '?3'"),
            "SELECT a FROM t WHERE b = $2 AND c = $1 AND d = '?3'"
        );
        assert_eq!(postgres_text("VALUES (?, ?)"), "VALUES ($1, $2)");
    }

    #[test]
    fn values_convert_both_ways() {
        assert_eq!(i64::from_value(&7u32.to_value()).unwrap(), 7);
        assert_eq!(
            Option::<String>::from_value(&None::<&str>.to_value()).unwrap(),
            None
        );
        assert!(u8::from_value(&Value::Integer(300)).is_err());
        assert!(String::from_value(&Value::Integer(1)).is_err());
    }
}
