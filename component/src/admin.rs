//! The admin API (API.md §5): users listed with search and cursor pagination, read,
//! changed (`is_active`, `is_admin`, `email_verified`; deactivation revokes every session
//! at once), deleted, their sessions revoked; and the audit log. Pagination is by keys
//! (never offsets), so concurrent inserts neither shift nor repeat pages. Also how
//! admins are made: `portcullis admin create` and the bootstrap admin of the settings.

use serde::Serialize;
use serde_json::{Value, json};

use crate::app::{App, rfc3339};
use crate::audit;
use crate::auth::{Registration, new_account, registration_conflict};
use crate::db::{Row, integer, optional_text, statement, text};
use crate::error::{Error, FieldError};
use crate::ports::{Statement, Value as SqlValue};
use crate::sessions::{self, Authenticated, Client, Revocation};
use crate::tokens;
use crate::users::{self, PublicUser, User};
use crate::validation::{has_control, mobile_digits};

pub const DEFAULT_PAGE: u32 = 50;
pub const MAX_PAGE: u32 = 100;
const MAX_QUERY_CHARS: usize = 254;

/// The acting admin, or `Forbidden`.
pub fn require_admin(app: &App<'_>, who: &Authenticated) -> Result<User, Error> {
    users::find_by_id(app, &who.claims.sub)?
        .filter(|user| user.is_admin && user.is_active)
        .ok_or(Error::Forbidden)
}

/// A page of results and the cursor of the next one.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// Checks `limit` (1–100, default 50).
pub fn page_size(limit: Option<&str>) -> Result<u32, Error> {
    match limit {
        None | Some("") => Ok(DEFAULT_PAGE),
        Some(text) => text
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=MAX_PAGE).contains(n))
            .ok_or_else(|| invalid("limit", format!("A whole number from 1 to {MAX_PAGE}."))),
    }
}

fn invalid(field: &'static str, message: String) -> Error {
    Error::Validation(vec![FieldError::new(field, "invalid_format", message)])
}

/// A free-text query parameter: control characters never reach SQL.
fn check_text(field: &'static str, value: &str) -> Result<(), Error> {
    if has_control(value) {
        return Err(invalid(field, "No control characters.".into()));
    }
    Ok(())
}

fn encode_cursor(parts: &[&str]) -> String {
    tokens::encode_opaque(parts.join("\n").as_bytes())
}

fn decode_cursor(cursor: &str, parts: usize) -> Result<Vec<String>, Error> {
    let bad = || invalid("cursor", "Not a cursor this service gave out.".into());
    let bytes = tokens::decode_opaque(cursor).ok_or_else(bad)?;
    let text = String::from_utf8(bytes)
        .ok()
        .filter(|text| !has_control(&text.replace('\n', "")))
        .ok_or_else(bad)?;
    let fields: Vec<String> = text.split('\n').map(str::to_string).collect();
    if fields.len() == parts {
        Ok(fields)
    } else {
        Err(bad())
    }
}

/// `LIKE` pattern for "contains", with `!` escaping the wildcards (works on every dialect).
fn contains_pattern(text: &str) -> String {
    let mut escaped = String::from("%");
    for c in text.chars() {
        if matches!(c, '%' | '_' | '!') {
            escaped.push('!');
        }
        escaped.push(c);
    }
    escaped.push('%');
    escaped
}

/// `GET /api/v1/admin/users?q=&limit=&cursor=`: oldest first, by id (ids sort by time).
pub fn list_users(
    app: &App<'_>,
    query: Option<&str>,
    limit: u32,
    cursor: Option<&str>,
) -> Result<Page<PublicUser>, Error> {
    let mut conditions = vec!["1 = 1".to_string()];
    let mut params: Vec<SqlValue> = Vec::new();
    if let Some(query) = query.map(str::trim).filter(|q| !q.is_empty()) {
        if query.chars().count() > MAX_QUERY_CHARS {
            return Err(invalid(
                "q",
                format!("At most {MAX_QUERY_CHARS} characters."),
            ));
        }
        check_text("q", query)?;
        let lowered = contains_pattern(&query.to_lowercase());
        let digits = mobile_digits(query).map(|digits| contains_pattern(&digits));
        conditions.push(
            "(username_key LIKE ? ESCAPE '!' OR email LIKE ? ESCAPE '!' \
             OR mobile_key LIKE ? ESCAPE '!')"
                .into(),
        );
        params.extend([text(&lowered), text(&lowered), optional_text(digits)]);
    }
    if let Some(cursor) = cursor.filter(|c| !c.is_empty()) {
        let after = decode_cursor(cursor, 1)?;
        conditions.push("id > ?".into());
        params.push(text(&after[0]));
    }
    params.push(integer(i64::from(limit) + 1));
    let sql = format!(
        "SELECT {} FROM users WHERE {} ORDER BY id LIMIT ?",
        users::USER_COLUMNS,
        conditions.join(" AND ")
    );
    let mut rows = app.db.query(&sql, &params)?;
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let found: Vec<User> = rows.iter().map(User::from_row).collect::<Result<_, _>>()?;
    let next_cursor = more
        .then(|| found.last().map(|user| encode_cursor(&[&user.id])))
        .flatten();
    Ok(Page {
        items: found.iter().map(User::public).collect(),
        next_cursor,
    })
}

/// Reads a user by id, `NotFound` if there is none.
pub fn get_user(app: &App<'_>, id: &str) -> Result<User, Error> {
    users::find_by_id(app, id)?.ok_or(Error::NotFound)
}

/// What an admin may change on a user.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UserChange {
    pub is_active: Option<bool>,
    pub is_admin: Option<bool>,
    pub email_verified: Option<bool>,
}

/// `PATCH /api/v1/admin/users/{id}`: deactivation revokes every session in the same
/// transaction.
pub fn update_user(
    app: &App<'_>,
    actor: &User,
    id: &str,
    change: &UserChange,
    client: &Client,
) -> Result<User, Error> {
    let user = get_user(app, id)?;
    let updated = User {
        is_active: change.is_active.unwrap_or(user.is_active),
        is_admin: change.is_admin.unwrap_or(user.is_admin),
        email_verified: change.email_verified.unwrap_or(user.email_verified),
        updated_at: app.now(),
        ..user.clone()
    };
    let mut statements = vec![statement(
        "UPDATE users SET is_active = ?, is_admin = ?, email_verified = ?, updated_at = ? \
         WHERE id = ?",
        vec![
            integer(i64::from(updated.is_active)),
            integer(i64::from(updated.is_admin)),
            integer(i64::from(updated.email_verified)),
            integer(updated.updated_at),
            text(&user.id),
        ],
    )];
    if user.is_active && !updated.is_active {
        statements.push(sessions::revoke_all(
            app,
            &user.id,
            None,
            Revocation::Deactivated,
        ));
    }
    statements.push(audit::record(
        app,
        audit::ADMIN_USER_UPDATED,
        Some(&user.id),
        client.ip_address.as_deref(),
        json!({
            "actor_id": actor.id,
            "is_active": change.is_active,
            "is_admin": change.is_admin,
            "email_verified": change.email_verified,
        }),
    ));
    app.db.batch(statements)?;
    Ok(updated)
}

/// `DELETE /api/v1/admin/users/{id}`
pub fn delete_user(app: &App<'_>, actor: &User, id: &str, client: &Client) -> Result<(), Error> {
    let user = get_user(app, id)?;
    let mut statements = vec![audit::record(
        app,
        audit::ACCOUNT_DELETED,
        Some(&user.id),
        client.ip_address.as_deref(),
        json!({ "actor_id": actor.id, "username": user.username }),
    )];
    statements.extend(users::delete_statements(&user.id));
    app.db.batch(statements)?;
    Ok(())
}

/// `DELETE /api/v1/admin/users/{id}/sessions`
pub fn revoke_sessions(
    app: &App<'_>,
    actor: &User,
    id: &str,
    client: &Client,
) -> Result<(), Error> {
    let user = get_user(app, id)?;
    app.db.batch(vec![
        sessions::revoke_all(app, &user.id, None, Revocation::Revoked),
        audit::record(
            app,
            audit::SESSION_REVOKED,
            Some(&user.id),
            client.ip_address.as_deref(),
            json!({ "actor_id": actor.id, "all": true }),
        ),
    ])?;
    Ok(())
}

/// One audit event as the API shows it.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct AuditEvent {
    pub id: String,
    pub at: String,
    pub event: String,
    pub user_id: Option<String>,
    pub ip_address: Option<String>,
    pub detail: Value,
}

fn audit_event(row: &Row) -> Result<(AuditEvent, i64), Error> {
    let at = row.integer(1)?;
    let detail = serde_json::from_str(&row.text(5)?).unwrap_or(Value::Null);
    Ok((
        AuditEvent {
            id: row.text(0)?,
            at: rfc3339(at),
            event: row.text(2)?,
            user_id: row.optional_text(3)?,
            ip_address: row.optional_text(4)?,
            detail,
        },
        at,
    ))
}

/// `GET /api/v1/admin/audit?user_id=&event=&limit=&cursor=`: newest first.
pub fn list_audit(
    app: &App<'_>,
    user_id: Option<&str>,
    event: Option<&str>,
    limit: u32,
    cursor: Option<&str>,
) -> Result<Page<AuditEvent>, Error> {
    let mut conditions = vec!["1 = 1".to_string()];
    let mut params: Vec<SqlValue> = Vec::new();
    for (column, value) in [("user_id", user_id), ("event", event)] {
        if let Some(value) = value.filter(|v| !v.is_empty()) {
            check_text(column, value)?;
            conditions.push(format!("{column} = ?"));
            params.push(text(value));
        }
    }
    if let Some(cursor) = cursor.filter(|c| !c.is_empty()) {
        let before = decode_cursor(cursor, 2)?;
        let at: i64 = before[0]
            .parse()
            .map_err(|_| invalid("cursor", "Not a cursor this service gave out.".into()))?;
        conditions.push("(at < ? OR (at = ? AND id < ?))".into());
        params.extend([integer(at), integer(at), text(&before[1])]);
    }
    params.push(integer(i64::from(limit) + 1));
    let sql = format!(
        "SELECT id, at, event, user_id, ip_address, detail FROM audit_events WHERE {} \
         ORDER BY at DESC, id DESC LIMIT ?",
        conditions.join(" AND ")
    );
    let rows = app.db.query(&sql, &params)?;
    let mut events: Vec<(AuditEvent, i64)> =
        rows.iter().map(audit_event).collect::<Result<_, _>>()?;
    let more = events.len() > limit as usize;
    events.truncate(limit as usize);
    let next_cursor = more
        .then(|| {
            events
                .last()
                .map(|(event, at)| encode_cursor(&[&at.to_string(), &event.id]))
        })
        .flatten();
    Ok(Page {
        items: events.into_iter().map(|(event, _)| event).collect(),
        next_cursor,
    })
}

/// Creates an admin account (verified email) with the registration rules. With
/// `only_if_absent` (the bootstrap admin), an admin that exists already under that
/// username and email, or one created by another host at the same moment, gives `None`;
/// an existing account that is not that admin is never promoted: `UsernameTaken` or
/// `EmailTaken` tells the operator.
pub fn create_admin(
    app: &App<'_>,
    input: &Registration,
    only_if_absent: bool,
) -> Result<Option<User>, Error> {
    if only_if_absent && bootstrap_admin_exists(app, input)? {
        return Ok(None);
    }
    let user = User {
        email_verified: true,
        is_admin: true,
        ..new_account(app, input)?
    };
    let statements: Vec<Statement> = vec![
        user.insert(),
        audit::record(
            app,
            audit::REGISTER,
            Some(&user.id),
            None,
            json!({ "username": user.username, "admin": true }),
        ),
    ];
    match app.db.batch(statements).map_err(registration_conflict) {
        Ok(_) => Ok(Some(user)),
        // Another host started with the same settings and created it first.
        Err(Error::UsernameTaken | Error::EmailTaken)
            if only_if_absent && bootstrap_admin_exists(app, input)? =>
        {
            Ok(None)
        }
        Err(error) => Err(error),
    }
}

/// Whether the bootstrap admin exists: `true` when its username and email name one
/// admin; an error when either names another account, `false` when both are free.
fn bootstrap_admin_exists(app: &App<'_>, input: &Registration) -> Result<bool, Error> {
    let by_username = users::find_by_login(app, &input.username)?;
    let by_email = users::find_by_login(app, &input.email.to_lowercase())?;
    match (by_username, by_email) {
        (None, None) => Ok(false),
        (Some(named), Some(mailed)) if named.id == mailed.id && named.is_admin => Ok(true),
        (Some(_), _) => Err(Error::UsernameTaken),
        (None, Some(_)) => Err(Error::EmailTaken),
    }
}
