//! sqlx errors as the store's WIT `error`: the cases the component can act on (a unique
//! violation, a database that is away) and a catch-all for the rest.

use super::Error;
use super::pool::Backend;

/// Maps a sqlx error onto the WIT error.
pub fn to_store_error<DB: Backend>(error: sqlx::Error) -> Error {
    match error {
        sqlx::Error::Database(database_error) => from_database_error::<DB>(&*database_error),
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_) => Error::Unavailable(error.to_string()),
        other => Error::Other(other.to_string()),
    }
}

fn from_database_error<DB: Backend>(error: &dyn sqlx::error::DatabaseError) -> Error {
    if error.is_unique_violation() {
        Error::UniqueViolation(DB::unique_constraint(error))
    } else if DB::is_transient(error) {
        Error::Unavailable(error.message().to_owned())
    } else {
        Error::Other(error.message().to_owned())
    }
}

/// Whether the database rolled a transaction back as a deadlock's victim or because it
/// could not serialise it (SQLSTATE 40001, which MySQL and MariaDB also give deadlocks,
/// and PostgreSQL's 40P01): the whole transaction may run again.
pub fn is_transaction_conflict(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(database_error) => database_error
            .code()
            .is_some_and(|code| code == "40001" || code == "40P01"),
        _ => false,
    }
}
