//! Accounts: the `users` table, the public view of a user (API.md §3) and the lookups
//! by id and by login (username, email or mobile number).

use serde::Serialize;

use crate::app::{App, rfc3339};
use crate::db::{Row, integer, optional_text, statement, text};
use crate::error::Error;
use crate::ports::Statement;
use crate::validation::{normalise_mobile, username_key};

/// An account as stored, with its password hash.
#[derive(Clone, Debug, PartialEq)]
pub struct User {
    pub id: String,
    pub username: String,
    pub email: String,
    pub mobile_number: Option<String>,
    pub password_hash: String,
    pub email_verified: bool,
    pub is_active: bool,
    pub is_admin: bool,
    /// Two-factor authentication is on (API.md §8).
    pub mfa_enabled: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

/// The user as the API shows it: everything but the password hash.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct PublicUser {
    pub id: String,
    pub username: String,
    pub email: String,
    pub mobile_number: Option<String>,
    pub email_verified: bool,
    pub is_active: bool,
    pub is_admin: bool,
    pub mfa_enabled: bool,
    pub created_at: String,
    pub updated_at: String,
}

impl User {
    pub fn public(&self) -> PublicUser {
        PublicUser {
            id: self.id.clone(),
            username: self.username.clone(),
            email: self.email.clone(),
            mobile_number: self.mobile_number.clone(),
            email_verified: self.email_verified,
            is_active: self.is_active,
            is_admin: self.is_admin,
            mfa_enabled: self.mfa_enabled,
            created_at: rfc3339(self.created_at),
            updated_at: rfc3339(self.updated_at),
        }
    }

    pub fn from_row(row: &Row) -> Result<User, Error> {
        Ok(User {
            id: row.text(0)?,
            username: row.text(1)?,
            email: row.text(2)?,
            mobile_number: row.optional_text(3)?,
            password_hash: row.text(4)?,
            email_verified: row.boolean(5)?,
            is_active: row.boolean(6)?,
            is_admin: row.boolean(7)?,
            created_at: row.integer(8)?,
            updated_at: row.integer(9)?,
            mfa_enabled: row.boolean(10)?,
        })
    }

    /// The statement that stores a new account.
    pub fn insert(&self) -> Statement {
        let mobile_key = self
            .mobile_number
            .as_deref()
            .and_then(normalise_mobile)
            .map(|mobile| mobile.key);
        statement(
            "INSERT INTO users (id, username, username_key, email, mobile_number, mobile_key, \
             password_hash, email_verified, is_active, is_admin, created_at, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            vec![
                text(&self.id),
                text(&self.username),
                text(username_key(&self.username)),
                text(&self.email),
                optional_text(self.mobile_number.as_deref()),
                optional_text(mobile_key),
                text(&self.password_hash),
                integer(i64::from(self.email_verified)),
                integer(i64::from(self.is_active)),
                integer(i64::from(self.is_admin)),
                integer(self.created_at),
                integer(self.updated_at),
            ],
        )
    }
}

/// How many columns [`USER_COLUMNS`] names: a join's own columns come after them.
pub const USER_COLUMN_COUNT: usize = 11;

pub const USER_COLUMNS: &str = "id, username, email, mobile_number, password_hash, email_verified, \
                            is_active, is_admin, created_at, updated_at, mfa_enabled";

/// [`USER_COLUMNS`] of the `users` table aliased `alias` in a join (`u.id, u.username,
/// …`), in the order [`User::from_row`] reads them: a join puts them first.
pub fn user_columns_of(alias: &str) -> String {
    USER_COLUMNS
        .split(", ")
        .map(|column| format!("{alias}.{column}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Reads an account by id.
pub fn find_by_id(app: &App<'_>, id: &str) -> Result<Option<User>, Error> {
    let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?");
    app.db
        .query_one(&sql, &[text(id)])?
        .map(|row| User::from_row(&row))
        .transpose()
}

/// Finds the account a login names: an email (contains `@`), else a username or a mobile
/// number (formatting ignored). A mobile match wins over a username match, so an
/// all-digit username (allowed once, refused since) never captures a mobile login.
pub fn find_by_login(app: &App<'_>, login: &str) -> Result<Option<User>, Error> {
    if login.contains('@') {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE email = ?");
        return app
            .db
            .query_one(&sql, &[text(login.to_lowercase())])?
            .map(|row| User::from_row(&row))
            .transpose();
    }
    let mobile_key = normalise_mobile(login).map(|mobile| mobile.key);
    let sql = format!(
        "SELECT {USER_COLUMNS} FROM users WHERE username_key = ? OR mobile_key = ? \
         ORDER BY CASE WHEN mobile_key = ? THEN 0 ELSE 1 END"
    );
    let key = username_key(login);
    app.db
        .query_one(
            &sql,
            &[
                text(&key),
                optional_text(mobile_key.as_deref()),
                optional_text(mobile_key.as_deref()),
            ],
        )?
        .map(|row| User::from_row(&row))
        .transpose()
}

/// The statements that delete an account and everything that hangs off it (sessions,
/// refresh tokens, email tokens), explicitly rather than by cascade, alike on every
/// database.
pub fn delete_statements(user_id: &str) -> Vec<Statement> {
    let id = || vec![text(user_id)];
    vec![
        statement(
            "DELETE FROM refresh_tokens WHERE session_id IN \
             (SELECT id FROM sessions WHERE user_id = ?)",
            id(),
        ),
        statement("DELETE FROM sessions WHERE user_id = ?", id()),
        statement("DELETE FROM email_tokens WHERE user_id = ?", id()),
    ]
    .into_iter()
    .chain(crate::mfa::delete_statements(user_id))
    .chain([statement("DELETE FROM users WHERE id = ?", id())])
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_join_reads_every_user_column_of_its_alias_in_order() {
        let columns = user_columns_of("u");
        assert_eq!(columns.split(", ").count(), USER_COLUMN_COUNT);
        assert!(columns.starts_with("u.id, u.username, "));
        assert!(columns.ends_with(", u.mfa_enabled"));
    }
}
