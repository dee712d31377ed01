//! What the adapter asks of every PostgreSQL session Spin gives it: bounds on waiting,
//! set at connection start-up through the URL's `options` parameter (which Spin's
//! tokio-postgres passes to the server), so that they cost no round trip, hold for the
//! migration and every transaction, and survive the `RESET ALL` Spin's pool runs before
//! handing a client out again.
//!
//! - `lock_timeout`: a statement waiting for a lock (a row another transaction changes,
//!   the migration lock) gives up after it; the store reports `unavailable` (503);
//! - `statement_timeout`: no statement runs longer;
//! - `idle_in_transaction_session_timeout`: the server ends a session left inside a
//!   transaction, idle, for longer, which frees its locks: Spin returns a client to its
//!   pool as it is when an instance ends, and an instance that traps, or that Spin
//!   aborts, in the middle of a transaction would otherwise leave it open until some
//!   later instance happens to get that client.

/// How long a statement waits for a lock, in milliseconds.
pub const LOCK_TIMEOUT_MS: u32 = 5_000;
/// How long a statement may run, in milliseconds.
pub const STATEMENT_TIMEOUT_MS: u32 = 15_000;
/// How long a session may sit idle inside a transaction, in milliseconds.
pub const IDLE_IN_TRANSACTION_TIMEOUT_MS: u32 = 15_000;

/// `url` with the bounds added to its `options` parameter (percent-encoded as a URL
/// query value). Options the URL already gives come after them, so they win. The query
/// starts at the first `?` after the credentials, as tokio-postgres reads a URL (a
/// password may hold a `?`).
pub fn postgres_address(url: &str) -> String {
    let ours = format!(
        "-c%20lock_timeout%3D{LOCK_TIMEOUT_MS}\
         %20-c%20statement_timeout%3D{STATEMENT_TIMEOUT_MS}\
         %20-c%20idle_in_transaction_session_timeout%3D{IDLE_IN_TRANSACTION_TIMEOUT_MS}"
    );
    let after_credentials = url.find('@').map_or(0, |at| at + 1);
    let Some(start) = url
        .get(after_credentials..)
        .and_then(|rest| rest.find('?'))
        .map(|position| after_credentials + position)
    else {
        return format!("{url}?options={ours}");
    };
    let (head, query) = url.split_at(start);
    let mut merged = false;
    let mut pairs: Vec<String> = query
        .trim_start_matches('?')
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| match pair.strip_prefix("options=") {
            Some(theirs) if !merged => {
                merged = true;
                format!("options={ours}%20{theirs}")
            }
            _ => pair.to_owned(),
        })
        .collect();
    if !merged {
        pairs.push(format!("options={ours}"));
    }
    format!("{head}?{}", pairs.join("&"))
}

#[cfg(test)]
mod tests {
    use super::postgres_address;

    const OURS: &str = "-c%20lock_timeout%3D5000%20-c%20statement_timeout%3D15000\
                        %20-c%20idle_in_transaction_session_timeout%3D15000";

    #[test]
    fn a_url_without_a_query_gets_the_options() {
        assert_eq!(
            postgres_address("postgres://u:p@db:5432/auth"),
            format!("postgres://u:p@db:5432/auth?options={OURS}")
        );
    }

    #[test]
    fn the_urls_parameters_stay_and_its_own_options_come_last() {
        assert_eq!(
            postgres_address("postgres://db/auth?sslmode=disable"),
            format!("postgres://db/auth?sslmode=disable&options={OURS}")
        );
        assert_eq!(
            postgres_address("postgres://db/auth?options=-c%20search_path%3Dauth&sslmode=require"),
            format!("postgres://db/auth?options={OURS}%20-c%20search_path%3Dauth&sslmode=require")
        );
    }

    #[test]
    fn a_question_mark_in_the_password_does_not_start_the_query() {
        assert_eq!(
            postgres_address("postgres://u:pa?ss#1@db/auth"),
            format!("postgres://u:pa?ss#1@db/auth?options={OURS}")
        );
        assert_eq!(
            postgres_address("postgres://u:pa?ss@db/auth?sslmode=disable"),
            format!("postgres://u:pa?ss@db/auth?sslmode=disable&options={OURS}")
        );
    }
}
