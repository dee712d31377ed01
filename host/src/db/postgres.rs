//! PostgreSQL (and wire-compatible databases), for several hosts sharing one database.
//!
//! A NULL parameter is sent without a type so that PostgreSQL infers it from where it
//! is used (a typed NULL `bigint` could not be stored in a `text` column). Integer
//! parameters are `bigint`: integer columns are best declared `BIGINT`.

use anyhow::Context as _;
use sqlx::encode::IsNull;
use sqlx::error::{BoxDynError, DatabaseError};
use sqlx::postgres::{PgArgumentBuffer, PgQueryResult, PgRow, PgTypeInfo, PgValueRef, types::Oid};
use sqlx::{Decode, Encode, Postgres, Row as _, Type, TypeInfo as _, ValueRef as _};

use super::Value;
use super::pool::{Backend, SqlPool, pool_options};

/// Opens a pool on the database `url` names.
pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<SqlPool<Postgres>> {
    let pool = pool_options(max_connections)
        .connect(url)
        .await
        .context("connecting to PostgreSQL")?;
    Ok(SqlPool::new(pool))
}

/// Applies the pending migrations of `migrations/postgres`.
#[cfg(portcullis_migrations_postgres)]
pub async fn migrate(pool: &SqlPool<Postgres>) -> anyhow::Result<()> {
    static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");
    MIGRATIONS.run(pool.inner()).await?;
    Ok(())
}

/// Refuses to run: this build has no PostgreSQL migrations.
#[cfg(not(portcullis_migrations_postgres))]
pub async fn migrate(_pool: &SqlPool<Postgres>) -> anyhow::Result<()> {
    anyhow::bail!(
        "PORTCULLIS_DATABASE_URL: PostgreSQL is not supported by this build yet \
         (it has no migrations/postgres)"
    )
}

/// A NULL whose type PostgreSQL infers from the statement.
#[derive(Default)]
pub struct UntypedNull;

impl Type<Postgres> for UntypedNull {
    fn type_info() -> PgTypeInfo {
        // OID 0: "unspecified", the server infers the parameter's type.
        PgTypeInfo::with_oid(Oid(0))
    }
}

impl Encode<'_, Postgres> for UntypedNull {
    fn encode_by_ref(&self, _buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        Ok(IsNull::Yes)
    }
}

impl Backend for Postgres {
    type Null = UntypedNull;

    const BEGIN: &'static str = "BEGIN";

    fn column_value(row: &PgRow, index: usize) -> Result<PgValueRef<'_>, sqlx::Error> {
        row.try_get_raw(index)
    }

    fn decode(value: PgValueRef<'_>) -> Result<Value, BoxDynError> {
        if value.is_null() {
            return Ok(Value::Null);
        }
        let column_type = value.type_info().name().to_owned();
        Ok(match column_type.as_str() {
            "INT2" => Value::Integer(<i16 as Decode<Postgres>>::decode(value)?.into()),
            "INT4" => Value::Integer(<i32 as Decode<Postgres>>::decode(value)?.into()),
            "INT8" => Value::Integer(<i64 as Decode<Postgres>>::decode(value)?),
            "BOOL" => Value::Integer(<bool as Decode<Postgres>>::decode(value)?.into()),
            "FLOAT4" => Value::Real(<f32 as Decode<Postgres>>::decode(value)?.into()),
            "FLOAT8" => Value::Real(<f64 as Decode<Postgres>>::decode(value)?),
            "TEXT" | "VARCHAR" | "CHAR" | "NAME" | "CITEXT" | "UNKNOWN" => {
                Value::Text(<String as Decode<Postgres>>::decode(value)?)
            }
            "BYTEA" => Value::Blob(<Vec<u8> as Decode<Postgres>>::decode(value)?),
            other => {
                return Err(format!("unsupported PostgreSQL type {other} (cast it in SQL)").into());
            }
        })
    }

    fn rows_affected(result: &PgQueryResult) -> u64 {
        result.rows_affected()
    }

    /// Connection exceptions (08), insufficient resources (53), operator intervention
    /// such as a shutdown (57P), serialization failures and deadlocks (40001, 40P01).
    fn is_transient(error: &dyn DatabaseError) -> bool {
        error.code().is_some_and(|code| {
            code.starts_with("08")
                || code.starts_with("53")
                || code.starts_with("57P")
                || code == "40001"
                || code == "40P01"
        })
    }
}
