//! The store's contract, one set of cases run on every store: the native store on an
//! in-memory SQLite database, and on PostgreSQL and MySQL/MariaDB when
//! `PORTCULLIS_TEST_POSTGRES_URL` / `PORTCULLIS_TEST_MYSQL_URL` name one (each run works
//! in a table of its own and drops it); and the Spin store adapter, run in wasmtime over
//! a SQLite file ([`spin_adapter`]).

mod spin_adapter;

use super::{Database, Error, Rows, SqlDialect, Statement, Value};
use crate::settings::DatabaseSettings;

/// A store the cases run on: the WIT `portcullis:auth/store` functions.
trait StoreUnderTest {
    async fn dialect(&mut self) -> SqlDialect;
    async fn query(&mut self, sql: &str, params: Vec<Value>) -> Result<Rows, Error>;
    async fn execute(&mut self, sql: &str, params: Vec<Value>) -> Result<u64, Error>;
    async fn batch(&mut self, statements: Vec<Statement>) -> Result<Vec<u64>, Error>;
}

impl StoreUnderTest for Database {
    async fn dialect(&mut self) -> SqlDialect {
        Database::dialect(self)
    }

    async fn query(&mut self, sql: &str, params: Vec<Value>) -> Result<Rows, Error> {
        Database::query(self, sql, params).await
    }

    async fn execute(&mut self, sql: &str, params: Vec<Value>) -> Result<u64, Error> {
        Database::execute(self, sql, params).await
    }

    async fn batch(&mut self, statements: Vec<Statement>) -> Result<Vec<u64>, Error> {
        Database::batch(self, statements).await
    }
}

/// The DDL of the scratch table, per dialect.
fn create_table(dialect: SqlDialect, table: &str) -> String {
    let (text, real, blob) = match dialect {
        SqlDialect::Sqlite => ("TEXT", "REAL", "BLOB"),
        SqlDialect::Postgres => ("TEXT", "DOUBLE PRECISION", "BYTEA"),
        // The binary collation of the migrations: MySQL flags such text as binary.
        SqlDialect::Mysql => (
            "VARCHAR(50) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin",
            "DOUBLE",
            "BLOB",
        ),
    };
    format!(
        "CREATE TABLE {table} (id BIGINT PRIMARY KEY NOT NULL, name {text} NOT NULL, \
         score {real}, data {blob}, flag BIGINT, CONSTRAINT {table}_name UNIQUE (name))"
    )
}

/// Writes `?` placeholders as the dialect wants them.
fn placeholders(dialect: SqlDialect, sql: &str) -> String {
    if dialect != SqlDialect::Postgres {
        return sql.to_owned();
    }
    let mut numbered = String::new();
    for (index, part) in sql.split('?').enumerate() {
        if index > 0 {
            numbered.push_str(&format!("${index}"));
        }
        numbered.push_str(part);
    }
    numbered
}

async fn exercise_native(url: &str, expected_dialect: SqlDialect) {
    let settings = DatabaseSettings {
        url: url.to_owned(),
        max_connections: 2,
    };
    let mut database = Database::connect(&settings).await.unwrap();
    exercise(&mut database, expected_dialect).await;
    database.close().await;
}

/// The cases: typed values both ways, column names of an empty result, unique
/// violations named by their constraint, and batches that roll back on a missed guard.
async fn exercise(database: &mut impl StoreUnderTest, expected_dialect: SqlDialect) {
    let dialect = database.dialect().await;
    assert_eq!(dialect, expected_dialect);
    let table = format!("store_test_{}", std::process::id());
    let sql = |text: &str| placeholders(dialect, &text.replace("{t}", &table));

    database
        .execute(&create_table(dialect, &table), vec![])
        .await
        .unwrap();

    let insert = sql("INSERT INTO {t} (id, name, score, data, flag) VALUES (?, ?, ?, ?, ?)");
    let params = vec![
        Value::Integer(1),
        Value::Text("ada".into()),
        Value::Real(1.5),
        Value::Blob(vec![0, 1, 255]),
        Value::Null,
    ];
    assert_eq!(database.execute(&insert, params.clone()).await.unwrap(), 1);

    let select = sql("SELECT id, name, score, data, flag FROM {t} WHERE id = ?");
    let rows = database
        .query(&select, vec![Value::Integer(1)])
        .await
        .unwrap();
    assert_eq!(rows.columns, ["id", "name", "score", "data", "flag"]);
    assert_eq!(rows.rows.len(), 1);
    assert!(matches!(rows.rows[0][0], Value::Integer(1)));
    assert!(matches!(&rows.rows[0][1], Value::Text(name) if name == "ada"));
    assert!(matches!(rows.rows[0][2], Value::Real(score) if score == 1.5));
    assert!(matches!(&rows.rows[0][3], Value::Blob(data) if data == &[0, 1, 255]));
    assert!(matches!(rows.rows[0][4], Value::Null));

    let none = database
        .query(&select, vec![Value::Integer(2)])
        .await
        .unwrap();
    assert_eq!(none.columns, ["id", "name", "score", "data", "flag"]);
    assert!(none.rows.is_empty());

    let mut duplicate = params.clone();
    duplicate[0] = Value::Integer(2);
    match database.execute(&insert, duplicate).await {
        Err(Error::UniqueViolation(constraint)) => assert!(constraint.contains("name")),
        other => panic!("expected a unique violation, got {other:?}"),
    }

    let update = sql("UPDATE {t} SET flag = ? WHERE id = ?");
    let statement = |id: i64, expect_rows: u64| Statement {
        sql: update.clone(),
        params: vec![Value::Integer(7), Value::Integer(id)],
        expect_rows: Some(expect_rows),
    };
    let failed = database
        .batch(vec![statement(1, 1), statement(99, 1)])
        .await;
    assert!(matches!(failed, Err(Error::ConditionFailed(1))));
    let flag = sql("SELECT flag FROM {t} WHERE id = 1");
    let rows = database.query(&flag, vec![]).await.unwrap();
    assert!(
        matches!(rows.rows[0][0], Value::Null),
        "the batch was rolled back"
    );

    let counts = database
        .batch(vec![statement(1, 1), statement(1, 1)])
        .await
        .unwrap();
    assert_eq!(counts, [1, 1]);
    let rows = database.query(&flag, vec![]).await.unwrap();
    assert!(matches!(rows.rows[0][0], Value::Integer(7)));

    database
        .execute(&sql("DROP TABLE {t}"), vec![])
        .await
        .unwrap();
}

#[tokio::test]
async fn sqlite_keeps_the_store_contract() {
    exercise_native("sqlite::memory:", SqlDialect::Sqlite).await;
}

#[tokio::test]
async fn postgres_keeps_the_store_contract() {
    if let Ok(url) = std::env::var("PORTCULLIS_TEST_POSTGRES_URL") {
        exercise_native(&url, SqlDialect::Postgres).await;
    }
}

#[tokio::test]
async fn mysql_keeps_the_store_contract() {
    if let Ok(url) = std::env::var("PORTCULLIS_TEST_MYSQL_URL") {
        exercise_native(&url, SqlDialect::Mysql).await;
    }
}
