//! A thin layer over the [`Store`] port: writes placeholders in the store's dialect
//! (`?` in the source, `$n` for PostgreSQL) and reads typed columns from rows.

use crate::error::Error;
use crate::ports::{Dialect, Statement, Store, StoreError, Value};

/// The database as the domain code uses it.
pub struct Db<'a> {
    store: &'a dyn Store,
    dialect: Dialect,
}

impl<'a> Db<'a> {
    pub fn new(store: &'a dyn Store) -> Self {
        Self {
            dialect: store.dialect(),
            store,
        }
    }

    /// Runs a query whose SQL uses `?` placeholders.
    pub fn query(&self, sql: &str, params: &[Value]) -> Result<Vec<Row>, Error> {
        let rows = self.store.query(&self.render(sql), params)?;
        Ok(rows.rows.into_iter().map(Row).collect())
    }

    /// The first row of a query, if any.
    pub fn query_one(&self, sql: &str, params: &[Value]) -> Result<Option<Row>, Error> {
        Ok(self.query(sql, params)?.into_iter().next())
    }

    /// Runs a statement; returns the rows affected.
    pub fn execute(&self, sql: &str, params: &[Value]) -> Result<u64, Error> {
        Ok(self.store.execute(&self.render(sql), params)?)
    }

    /// Runs statements atomically. Store errors are returned as they are, so callers can
    /// act on unique violations and failed conditions.
    pub fn batch(&self, statements: Vec<Statement>) -> Result<Vec<u64>, StoreError> {
        let rendered: Vec<Statement> = statements
            .into_iter()
            .map(|statement| Statement {
                sql: self.render(&statement.sql),
                ..statement
            })
            .collect();
        self.store.batch(&rendered)
    }

    /// Replaces each `?` with `$1`, `$2`, … for PostgreSQL. The SQL in this crate never
    /// has a `?` inside a literal.
    fn render(&self, sql: &str) -> String {
        if self.dialect != Dialect::Postgres {
            return sql.to_string();
        }
        let mut rendered = String::with_capacity(sql.len() + 8);
        let mut index = 0;
        for c in sql.chars() {
            if c == '?' {
                index += 1;
                rendered.push('$');
                rendered.push_str(&index.to_string());
            } else {
                rendered.push(c);
            }
        }
        rendered
    }
}

/// A statement for [`Db::batch`], with `?` placeholders.
pub fn statement(sql: &str, params: Vec<Value>) -> Statement {
    Statement {
        sql: sql.to_string(),
        params,
        expect_rows: None,
    }
}

/// One row, read by column index in the order of the SELECT.
pub struct Row(Vec<Value>);

impl Row {
    fn get(&self, index: usize) -> Result<&Value, Error> {
        self.0
            .get(index)
            .ok_or_else(|| Error::Internal(format!("row has no column {index}")))
    }

    pub fn text(&self, index: usize) -> Result<String, Error> {
        match self.get(index)? {
            Value::Text(text) => Ok(text.clone()),
            other => Err(Error::Internal(format!(
                "column {index}: expected text, got {other:?}"
            ))),
        }
    }

    pub fn optional_text(&self, index: usize) -> Result<Option<String>, Error> {
        match self.get(index)? {
            Value::Null => Ok(None),
            _ => self.text(index).map(Some),
        }
    }

    pub fn integer(&self, index: usize) -> Result<i64, Error> {
        match self.get(index)? {
            Value::Integer(number) => Ok(*number),
            other => Err(Error::Internal(format!(
                "column {index}: expected an integer, got {other:?}"
            ))),
        }
    }

    pub fn optional_integer(&self, index: usize) -> Result<Option<i64>, Error> {
        match self.get(index)? {
            Value::Null => Ok(None),
            _ => self.integer(index).map(Some),
        }
    }

    pub fn boolean(&self, index: usize) -> Result<bool, Error> {
        self.integer(index).map(|number| number != 0)
    }
}

/// Shorthands for parameters.
pub fn text(value: impl Into<String>) -> Value {
    Value::Text(value.into())
}

pub fn optional_text(value: Option<impl Into<String>>) -> Value {
    value.map_or(Value::Null, |v| Value::Text(v.into()))
}

pub fn integer(value: i64) -> Value {
    Value::Integer(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::Rows;

    struct Postgres;
    impl Store for Postgres {
        fn dialect(&self) -> Dialect {
            Dialect::Postgres
        }
        fn query(&self, sql: &str, _: &[Value]) -> Result<Rows, StoreError> {
            Ok(Rows {
                columns: vec![sql.into()],
                rows: vec![vec![Value::Text(sql.into())]],
            })
        }
        fn execute(&self, _: &str, _: &[Value]) -> Result<u64, StoreError> {
            Ok(0)
        }
        fn batch(&self, _: &[Statement]) -> Result<Vec<u64>, StoreError> {
            Ok(vec![])
        }
    }

    #[test]
    fn postgres_gets_numbered_placeholders() {
        let db = Db::new(&Postgres);
        let row = db
            .query_one("SELECT ? WHERE a = ? AND b = ?", &[])
            .unwrap()
            .unwrap();
        assert_eq!(row.text(0).unwrap(), "SELECT $1 WHERE a = $2 AND b = $3");
    }
}
