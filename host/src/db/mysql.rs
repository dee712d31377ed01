//! MySQL 8 and MariaDB 10.6+, for several hosts sharing one database.
//!
//! sqlx asks the server for "found rows", so an `UPDATE` that matches a row counts it
//! even when the values are unchanged (what `expect-rows` needs).

use anyhow::Context as _;
use sqlx::error::{BoxDynError, DatabaseError};
use sqlx::mysql::{MySqlQueryResult, MySqlRow, MySqlValueRef};
use sqlx::{Decode, Executor as _, MySql, Row as _, TypeInfo as _, ValueRef as _};

use super::Value;
use super::pool::{Backend, SqlPool, pool_options};

/// Opens a pool on the database `url` names (`mariadb://` is read as `mysql://`).
pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<SqlPool<MySql>> {
    let url = match url.strip_prefix("mariadb://") {
        Some(rest) => format!("mysql://{rest}"),
        None => url.to_owned(),
    };
    let pool = pool_options(max_connections)
        .after_connect(|connection, _| Box::pin(read_committed(connection)))
        .connect(&url)
        .await
        .context("connecting to MySQL")?;
    Ok(SqlPool::new(pool))
}

/// Makes every transaction of `connection` READ COMMITTED, as on PostgreSQL. A batch
/// holds only writes guarded by their own conditions, so it needs no snapshot; and under
/// InnoDB's default (REPEATABLE READ) a `DELETE … WHERE user_id = ?` that matches no row
/// locks the index gap, where another user's insert then waits: transactions of
/// different users deadlock each other.
async fn read_committed(connection: &mut sqlx::MySqlConnection) -> Result<(), sqlx::Error> {
    connection
        .execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
        .await?;
    Ok(())
}

/// The named lock that serialises migrations of hosts starting at once.
#[cfg(portcullis_migrations_mysql)]
const MIGRATION_LOCK: &str = "portcullis_migrations";
/// How long a host waits for another host's migrations, in seconds.
#[cfg(portcullis_migrations_mysql)]
const MIGRATION_LOCK_WAIT: i64 = 60;

/// Applies the pending migrations of `migrations/mysql`. sqlx's own lock asks MySQL for
/// `GET_LOCK(…, -1)`, which MariaDB answers with NULL at once instead of waiting, so two
/// hosts starting together would both migrate: the lock is taken here, with a timeout,
/// on the connection that then runs the migrations.
#[cfg(portcullis_migrations_mysql)]
pub async fn migrate(pool: &SqlPool<MySql>) -> anyhow::Result<()> {
    let mut migrator = sqlx::migrate!("../migrations/mysql");
    migrator.set_locking(false);
    let mut connection = pool.inner().acquire().await?;
    let locked: Option<i64> = sqlx::query_scalar("SELECT GET_LOCK(?, ?)")
        .bind(MIGRATION_LOCK)
        .bind(MIGRATION_LOCK_WAIT)
        .fetch_one(&mut *connection)
        .await?;
    anyhow::ensure!(
        locked == Some(1),
        "another host held the migration lock for more than {MIGRATION_LOCK_WAIT} s"
    );
    let applied = migrator.run_direct(&mut *connection).await;
    sqlx::query("SELECT RELEASE_LOCK(?)")
        .bind(MIGRATION_LOCK)
        .execute(&mut *connection)
        .await?;
    applied?;
    Ok(())
}

/// Refuses to run: this build has no MySQL migrations.
#[cfg(not(portcullis_migrations_mysql))]
pub async fn migrate(_pool: &SqlPool<MySql>) -> anyhow::Result<()> {
    anyhow::bail!(
        "PORTCULLIS_DATABASE_URL: MySQL/MariaDB is not supported by this build yet \
         (it has no migrations/mysql)"
    )
}

impl Backend for MySql {
    type Null = Option<i64>;

    const BEGIN: &'static str = "BEGIN";

    fn column_value(row: &MySqlRow, index: usize) -> Result<MySqlValueRef<'_>, sqlx::Error> {
        row.try_get_raw(index)
    }

    fn decode(value: MySqlValueRef<'_>) -> Result<Value, BoxDynError> {
        if value.is_null() {
            return Ok(Value::Null);
        }
        let column_type = value.type_info().name().to_owned();
        Ok(match column_type.as_str() {
            "BOOLEAN" | "TINYINT" | "SMALLINT" | "MEDIUMINT" | "INT" | "BIGINT" | "YEAR" => {
                Value::Integer(<i64 as Decode<MySql>>::decode(value)?)
            }
            "TINYINT UNSIGNED" | "SMALLINT UNSIGNED" | "MEDIUMINT UNSIGNED" | "INT UNSIGNED"
            | "BIGINT UNSIGNED" => {
                Value::Integer(i64::try_from(<u64 as Decode<MySql>>::decode(value)?)?)
            }
            "FLOAT" => Value::Real(<f32 as Decode<MySql>>::decode(value)?.into()),
            "DOUBLE" => Value::Real(<f64 as Decode<MySql>>::decode(value)?),
            "DECIMAL" => decimal(&<String as Decode<MySql>>::decode(value)?)?,
            "VARCHAR" | "CHAR" | "TINYTEXT" | "TEXT" | "MEDIUMTEXT" | "LONGTEXT" | "ENUM"
            | "JSON" => Value::Text(<String as Decode<MySql>>::decode(value)?),
            "BINARY" | "VARBINARY" | "TINYBLOB" | "BLOB" | "MEDIUMBLOB" | "LONGBLOB" => {
                binary_collated(<Vec<u8> as Decode<MySql>>::decode(value)?)
            }
            other => return Err(format!("unsupported MySQL type {other} (cast it in SQL)").into()),
        })
    }

    fn rows_affected(result: &MySqlQueryResult) -> u64 {
        result.rows_affected()
    }

    /// Connection exceptions (08…, which includes "too many connections"), deadlocks
    /// and serialization failures (40001).
    fn is_transient(error: &dyn DatabaseError) -> bool {
        error
            .code()
            .is_some_and(|code| code.starts_with("08") || code == "40001")
    }

    /// MySQL names no constraint but says `… for key 'users.email'`; the message
    /// itself would carry the duplicate value.
    fn unique_constraint(error: &dyn DatabaseError) -> String {
        let message = error.message();
        message
            .rsplit_once("for key '")
            .and_then(|(_, key)| key.strip_suffix('\''))
            .unwrap_or(message)
            .to_owned()
    }
}

/// A value of a column MySQL calls binary. The server flags text columns with a binary
/// collation (`utf8mb4_bin`, which the migrations use so that comparisons are exact)
/// as binary too, and sqlx names them `VARBINARY`, `BINARY` or `BLOB`; the schema has
/// no true binary column, so valid UTF-8 is text.
fn binary_collated(bytes: Vec<u8>) -> Value {
    match String::from_utf8(bytes) {
        Ok(text) => Value::Text(text),
        Err(error) => Value::Blob(error.into_bytes()),
    }
}

/// A DECIMAL (what `SUM` returns) as an integer when it has no fraction, else a real.
fn decimal(text: &str) -> Result<Value, BoxDynError> {
    match text.parse::<i64>() {
        Ok(integer) => Ok(Value::Integer(integer)),
        Err(_) => Ok(Value::Real(text.parse::<f64>()?)),
    }
}
