//! The account lifecycle after registration (API.md §5, §6): email verification, forgotten
//! and reset passwords, password change, profile changes and deletion. Each change is one
//! transaction together with its audit event and any mail it causes.

use serde_json::json;

use crate::app::App;
use crate::audit;
use crate::auth::{self, registration_conflict};
use crate::db::{integer, optional_text, statement, text};
use crate::error::{Error, FieldError};
use crate::mail::{self, Kind, Mail};
use crate::password;
use crate::ports::{Statement, StoreError, Value};
use crate::sessions::{self, Authenticated, Client, Revocation};
use crate::tokens;
use crate::users::{self, User};
use crate::validation::{self, Identifiers, username_key};

/// The statements that issue a token of `kind` for `user` at `address` and mail it;
/// earlier unused tokens of the same kind stop working.
fn issue_token(app: &App<'_>, user: &User, address: &str, kind: Kind) -> Vec<Statement> {
    let now = app.now();
    let token = app.new_opaque_token();
    vec![
        cancel_tokens(app, &user.id, kind),
        statement(
            "INSERT INTO email_tokens (token_hash, user_id, purpose, email, created_at, \
             expires_at) VALUES (?, ?, ?, ?, ?, ?)",
            vec![
                text(tokens::hash_opaque(&token)),
                text(&user.id),
                text(kind.as_str()),
                text(address),
                integer(now),
                integer(now + kind.token_lifetime()),
            ],
        ),
        mail::compose(app, kind, address, &user.username, &token),
    ]
}

/// The statements that send a verification mail to the user's address, unless the
/// address was mailed too recently (then nothing is sent, and nothing is said).
pub fn verification_mail(
    app: &App<'_>,
    user: &User,
    client: &Client,
) -> Result<Vec<Statement>, Error> {
    if !mail::may_send(app, &user.email, Kind::VerifyEmail, &user.id)? {
        return Ok(Vec::new());
    }
    let mut statements = issue_token(app, user, &user.email, Kind::VerifyEmail);
    statements.push(audit::record(
        app,
        audit::EMAIL_VERIFICATION_REQUESTED,
        Some(&user.id),
        client.ip_address.as_deref(),
        json!({}),
    ));
    Ok(statements)
}

/// `POST /api/v1/auth/email/verify-request`
pub fn request_verification(
    app: &App<'_>,
    who: &Authenticated,
    client: &Client,
) -> Result<(), Error> {
    let user = users::find_by_id(app, &who.claims.sub)?.ok_or(Error::InvalidToken)?;
    if user.email_verified {
        return Err(Error::AlreadyVerified);
    }
    let statements = verification_mail(app, &user, client)?;
    if !statements.is_empty() {
        app.db.batch(statements)?;
    }
    Ok(())
}

/// A live token of `kind`: unused, unexpired, of an active account whose address is still
/// the one the token was mailed to (API.md §11). Returns that account.
fn find_token(app: &App<'_>, token: &str, kind: Kind) -> Result<Option<User>, Error> {
    if token.is_empty() || token.len() > 128 {
        return Ok(None);
    }
    let row = app.db.query_one(
        "SELECT user_id, email FROM email_tokens WHERE token_hash = ? AND purpose = ? \
         AND used_at IS NULL AND expires_at > ?",
        &[
            text(tokens::hash_opaque(token)),
            text(kind.as_str()),
            integer(app.now()),
        ],
    )?;
    let Some(row) = row else {
        return Ok(None);
    };
    let address = row.text(1)?;
    Ok(users::find_by_id(app, &row.text(0)?)?
        .filter(|user| user.is_active && user.email == address))
}

/// Whether `token` is a live verification token ([`find_token`]); spends nothing. The
/// link's page shows its form only then.
pub fn verification_token_is_live(app: &App<'_>, token: &str) -> Result<bool, Error> {
    Ok(find_token(app, token, Kind::VerifyEmail)?.is_some())
}

/// Whether `token` is a live reset token ([`find_token`]); spends nothing.
pub fn reset_token_is_live(app: &App<'_>, token: &str) -> Result<bool, Error> {
    Ok(find_token(app, token, Kind::ResetPassword)?.is_some())
}

/// What a batch requires of the account row it locks first (see [`lock_account`]).
#[derive(Clone, Copy)]
enum Still<'a> {
    /// The account is active and its address is still this one: spending a token mailed
    /// there.
    At(&'a str),
    /// Its password hash is still the one the caller checked a password against.
    HashedAs(&'a str),
}

/// Locks the account's row for the rest of the batch, setting `set` (with `values`), on
/// the condition `still`: the first statement of every batch that spends a mailed token
/// or acts on a password just checked, so that such batches take turns (one lock order
/// everywhere) and fail when the account changed between the check and the write.
fn lock_account(user: &User, still: Still<'_>, set: &str, values: Vec<Value>) -> Statement {
    let (condition, value) = match still {
        Still::At(address) => ("email = ? AND is_active = 1", address),
        Still::HashedAs(hash) => ("password_hash = ?", hash),
    };
    let mut params = values;
    params.extend([text(&user.id), text(value)]);
    Statement {
        expect_rows: Some(1),
        ..statement(
            &format!("UPDATE users SET {set} WHERE id = ? AND {condition}"),
            params,
        )
    }
}

/// Cancels the account's unused tokens of `kind`.
fn cancel_tokens(app: &App<'_>, user_id: &str, kind: Kind) -> Statement {
    statement(
        "UPDATE email_tokens SET used_at = ? WHERE user_id = ? AND purpose = ? \
         AND used_at IS NULL",
        vec![integer(app.now()), text(user_id), text(kind.as_str())],
    )
}

/// Spends a token: changes exactly one row, or the batch fails.
fn spend_token(app: &App<'_>, token: &str) -> Statement {
    Statement {
        expect_rows: Some(1),
        ..statement(
            "UPDATE email_tokens SET used_at = ? WHERE token_hash = ? AND used_at IS NULL",
            vec![integer(app.now()), text(tokens::hash_opaque(token))],
        )
    }
}

/// `POST /api/v1/auth/email/verify`: spends the token and marks the address verified, if
/// it is still the account's address when the change commits.
pub fn verify_email(app: &App<'_>, token: &str, client: &Client) -> Result<User, Error> {
    let user = find_token(app, token, Kind::VerifyEmail)?.ok_or(Error::InvalidVerificationToken)?;
    let now = app.now();
    let result = app.db.batch(vec![
        lock_account(
            &user,
            Still::At(&user.email),
            "email_verified = 1, updated_at = ?",
            vec![integer(now)],
        ),
        spend_token(app, token),
        audit::record(
            app,
            audit::EMAIL_VERIFIED,
            Some(&user.id),
            client.ip_address.as_deref(),
            json!({}),
        ),
    ]);
    match result {
        Ok(_) => Ok(User {
            email_verified: true,
            updated_at: now,
            ..user
        }),
        Err(StoreError::ConditionFailed(_)) => Err(Error::InvalidVerificationToken),
        Err(other) => Err(other.into()),
    }
}

/// How many queued reset requests one [`claim_due_mail`] resolves at most.
const RESOLVE_BATCH: i64 = 50;

/// `POST /api/v1/auth/password/forgot`: queues the request. Whether the address belongs
/// to an active account is decided later, off the request path, by
/// [`resolve_reset_requests`]: the answer does the same work, and so takes the same time,
/// whether or not the address is known (API.md §11).
pub fn forgot_password(app: &App<'_>, email: &str, client: &Client) -> Result<(), Error> {
    let mut errors = Vec::new();
    let email = validation::check_email(email, &mut errors);
    if !errors.is_empty() {
        return Err(Error::Validation(errors));
    }
    app.db.batch(vec![statement(
        "INSERT INTO reset_requests (id, email, ip_address, requested_at) VALUES (?, ?, ?, ?)",
        vec![
            text(app.new_id()),
            text(email),
            optional_text(client.ip_address.as_deref()),
            integer(app.now()),
        ],
    )])?;
    Ok(())
}

/// Resolves queued reset requests first, then claims due mail: what a host's mail worker
/// calls (the `claim-mail` export).
pub fn claim_due_mail(app: &App<'_>, max: u32, lease_seconds: u32) -> Result<Vec<Mail>, Error> {
    resolve_reset_requests(app)?;
    mail::claim(app, max, lease_seconds)
}

/// Turns queued reset requests into reset mails for the active accounts they name; the
/// others are dropped silently, and so are requests older than a reset link's lifetime
/// (no worker ran meanwhile: a link mailed that late would only confuse). Each request is
/// taken by deleting it in the batch that mails it, so two hosts never resolve one twice.
fn resolve_reset_requests(app: &App<'_>) -> Result<(), Error> {
    let requests = app.db.query(
        "SELECT id, email, ip_address, requested_at FROM reset_requests \
         ORDER BY requested_at, id LIMIT ?",
        &[integer(RESOLVE_BATCH)],
    )?;
    let stale_before = app.now() - Kind::ResetPassword.token_lifetime();
    for request in requests {
        let id = request.text(0)?;
        let email = request.text(1)?;
        let ip = request.optional_text(2)?;
        let stale = request.integer(3)? <= stale_before;
        let mut statements = vec![Statement {
            expect_rows: Some(1),
            ..statement("DELETE FROM reset_requests WHERE id = ?", vec![text(&id)])
        }];
        let user = users::find_by_login(app, &email)?.filter(|user| user.is_active && !stale);
        if let Some(user) = user
            && mail::may_send(app, &user.email, Kind::ResetPassword, &user.id)?
        {
            statements.extend(issue_token(app, &user, &user.email, Kind::ResetPassword));
            statements.push(audit::record(
                app,
                audit::PASSWORD_RESET_REQUESTED,
                Some(&user.id),
                ip.as_deref(),
                json!({}),
            ));
        }
        match app.db.batch(statements) {
            // Another host took it first.
            Ok(_) | Err(StoreError::ConditionFailed(_)) => {}
            Err(other) => return Err(other.into()),
        }
    }
    Ok(())
}

/// Checks a new password for `user`; every broken rule is reported under `field`.
fn check_new_password(
    app: &App<'_>,
    user: &User,
    new_password: &str,
    field: &'static str,
) -> Result<(), Error> {
    let mut errors: Vec<FieldError> = Vec::new();
    let identifiers = Identifiers {
        username: &user.username,
        email: &user.email,
    };
    validation::check_password(new_password, &identifiers, app.settings, field, &mut errors);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Error::Validation(errors))
    }
}

/// The hash of a new password.
fn hash_password(app: &App<'_>, new_password: &str) -> Result<String, Error> {
    password::hash(
        app.env,
        new_password,
        &app.env.random_bytes(password::salt_len()),
    )
    .map_err(Error::Internal)
}

/// `POST /api/v1/auth/password/reset`: a new password, every session revoked and every
/// reset token cancelled. The link proves control of the address it was mailed to, which
/// is marked verified; the change fails (as an invalid token) if the account's address
/// changed or the account was deactivated before it commits.
pub fn reset_password(
    app: &App<'_>,
    token: &str,
    new_password: &str,
    client: &Client,
) -> Result<(), Error> {
    let user = find_token(app, token, Kind::ResetPassword)?.ok_or(Error::InvalidResetToken)?;
    check_new_password(app, &user, new_password, "new_password")?;
    let hash = hash_password(app, new_password)?;
    let result = app.db.batch(vec![
        lock_account(
            &user,
            Still::At(&user.email),
            "password_hash = ?, email_verified = 1, updated_at = ?",
            vec![text(hash), integer(app.now())],
        ),
        spend_token(app, token),
        cancel_tokens(app, &user.id, Kind::ResetPassword),
        sessions::revoke_all(app, &user.id, None, Revocation::PasswordReset),
        audit::record(
            app,
            audit::PASSWORD_RESET,
            Some(&user.id),
            client.ip_address.as_deref(),
            json!({}),
        ),
    ]);
    match result {
        Ok(_) => Ok(()),
        Err(StoreError::ConditionFailed(_)) => Err(Error::InvalidResetToken),
        Err(other) => Err(other.into()),
    }
}

/// `POST /api/v1/users/me/password`: needs the current password (wrong ones count for
/// the login throttle); every other session is revoked and every reset token cancelled.
pub fn change_password(
    app: &App<'_>,
    who: &Authenticated,
    current: &str,
    new_password: &str,
    client: &Client,
) -> Result<(), Error> {
    let user = users::find_by_id(app, &who.claims.sub)?.ok_or(Error::InvalidToken)?;
    auth::confirm_password(app, &user, current, client)?;
    check_new_password(app, &user, new_password, "new_password")?;
    let hash = hash_password(app, new_password)?;
    let result = app.db.batch(vec![
        lock_account(
            &user,
            Still::HashedAs(&user.password_hash),
            "password_hash = ?, updated_at = ?",
            vec![text(hash), integer(app.now())],
        ),
        cancel_tokens(app, &user.id, Kind::ResetPassword),
        sessions::revoke_all(
            app,
            &user.id,
            Some(&who.claims.sid),
            Revocation::PasswordChanged,
        ),
        audit::record(
            app,
            audit::PASSWORD_CHANGED,
            Some(&user.id),
            client.ip_address.as_deref(),
            json!({}),
        ),
    ]);
    match result {
        Ok(_) => Ok(()),
        // Another change of the password committed first: this one's is no longer current.
        Err(StoreError::ConditionFailed(_)) => Err(Error::InvalidCredentials),
        Err(other) => Err(other.into()),
    }
}

/// A field of a PATCH: left alone, cleared (`null`) or set.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Change {
    #[default]
    Keep,
    Clear,
    Set(String),
}

/// What `PATCH /api/v1/users/me` asks for: the changes, and the current password that a
/// change of email address needs.
#[derive(Clone, Debug, Default)]
pub struct ProfileChange {
    pub username: Change,
    pub email: Change,
    pub mobile_number: Change,
    pub current_password: Option<String>,
}

/// How often a profile change is tried again when another change of the account's
/// address committed between its read and its write.
const PROFILE_CHANGE_TRIES: usize = 3;

/// Applies a profile change with the registration rules. A new email address needs the
/// current password (wrong ones count for the login throttle); it is unverified and gets
/// a verification mail, the old address gets a notice, and every token mailed to the old
/// address is cancelled (API.md §5, §11).
pub fn update_profile(
    app: &App<'_>,
    who: &Authenticated,
    change: &ProfileChange,
    client: &Client,
) -> Result<User, Error> {
    let mut user = users::find_by_id(app, &who.claims.sub)?.ok_or(Error::InvalidToken)?;
    let mut updated = apply(&user, change, app.now())?;
    let confirmed_hash = if updated.email == user.email {
        None
    } else {
        let given = change.current_password.as_deref().unwrap_or_default();
        auth::confirm_password(app, &user, given, client)?;
        Some(user.password_hash.clone())
    };
    for _ in 0..PROFILE_CHANGE_TRIES {
        match app
            .db
            .batch(profile_statements(app, &user, &updated, client)?)
        {
            Ok(_) => return Ok(updated),
            Err(StoreError::ConditionFailed(_)) => {
                user = users::find_by_id(app, &user.id)?.ok_or(Error::InvalidToken)?;
                if confirmed_hash
                    .as_ref()
                    .is_some_and(|hash| *hash != user.password_hash)
                {
                    // The password changed meanwhile: the one given is no longer current.
                    return Err(Error::InvalidCredentials);
                }
                updated = apply(&user, change, app.now())?;
            }
            Err(other) => return Err(registration_conflict(other)),
        }
    }
    Err(Error::Unavailable(
        "the account's address kept changing during the request".into(),
    ))
}

/// The batch that stores a profile change: only the columns that change are written.
/// When the address changes, the row must still hold the address and password the
/// change was checked against.
fn profile_statements(
    app: &App<'_>,
    user: &User,
    updated: &User,
    client: &Client,
) -> Result<Vec<Statement>, Error> {
    let mut columns = vec!["updated_at = ?"];
    let mut values = vec![integer(updated.updated_at)];
    if updated.username != user.username {
        columns.extend(["username = ?", "username_key = ?"]);
        values.extend([
            text(&updated.username),
            text(username_key(&updated.username)),
        ]);
    }
    if updated.mobile_number != user.mobile_number {
        let mobile_key = updated
            .mobile_number
            .as_deref()
            .and_then(validation::normalise_mobile)
            .map(|mobile| mobile.key);
        columns.extend(["mobile_number = ?", "mobile_key = ?"]);
        values.extend([
            optional_text(updated.mobile_number.as_deref()),
            optional_text(mobile_key),
        ]);
    }
    if updated.email == user.email {
        return Ok(vec![statement(
            &format!("UPDATE users SET {} WHERE id = ?", columns.join(", ")),
            [values, vec![text(&user.id)]].concat(),
        )]);
    }
    columns.extend(["email = ?", "email_verified = 0"]);
    values.push(text(&updated.email));
    let mut statements = vec![Statement {
        expect_rows: Some(1),
        ..statement(
            &format!(
                "UPDATE users SET {} WHERE id = ? AND email = ? AND password_hash = ?",
                columns.join(", ")
            ),
            [
                values,
                vec![text(&user.id), text(&user.email), text(&user.password_hash)],
            ]
            .concat(),
        )
    }];
    statements.push(cancel_tokens(app, &user.id, Kind::ResetPassword));
    statements.push(cancel_tokens(app, &user.id, Kind::VerifyEmail));
    statements.push(mail::compose_address_change_notice(
        app,
        &user.email,
        &updated.username,
        &updated.email,
    ));
    statements.push(audit::record(
        app,
        audit::EMAIL_CHANGED,
        Some(&user.id),
        client.ip_address.as_deref(),
        json!({ "from": user.email, "to": updated.email }),
    ));
    statements.extend(verification_mail(app, updated, client)?);
    Ok(statements)
}

/// The user after the change, or every rule the change breaks.
fn apply(user: &User, change: &ProfileChange, now: i64) -> Result<User, Error> {
    let mut errors = Vec::new();
    let mut updated = user.clone();
    match &change.username {
        Change::Keep => {}
        Change::Clear => errors.push(FieldError::new(
            "username",
            "required",
            "A username is required.",
        )),
        Change::Set(username) => {
            validation::check_username(username, &mut errors);
            updated.username = username.clone();
        }
    }
    match &change.email {
        Change::Keep => {}
        Change::Clear => errors.push(FieldError::new(
            "email",
            "required",
            "An email address is required.",
        )),
        Change::Set(email) => {
            updated.email = validation::check_email(email, &mut errors);
            if updated.email != user.email {
                updated.email_verified = false;
            }
        }
    }
    match &change.mobile_number {
        Change::Keep => {}
        Change::Clear => updated.mobile_number = None,
        Change::Set(number) => {
            updated.mobile_number = validation::check_mobile(number, &mut errors).map(|m| m.number);
        }
    }
    let password_given = change
        .current_password
        .as_deref()
        .is_some_and(|given| !given.is_empty());
    if updated.email != user.email && !password_given {
        errors.push(FieldError::new(
            "current_password",
            "required",
            "Changing the email address needs the current password.",
        ));
    }
    if !errors.is_empty() {
        return Err(Error::Validation(errors));
    }
    updated.updated_at = now;
    Ok(updated)
}

/// `DELETE /api/v1/users/me`: needs the password (wrong ones count for the login
/// throttle); the account, its sessions and tokens are gone, and its username, email and
/// mobile number are free again.
pub fn delete_account(
    app: &App<'_>,
    who: &Authenticated,
    password_given: &str,
    client: &Client,
) -> Result<(), Error> {
    let user = users::find_by_id(app, &who.claims.sub)?.ok_or(Error::InvalidToken)?;
    auth::confirm_password(app, &user, password_given, client)?;
    let mut statements = vec![
        lock_account(
            &user,
            Still::HashedAs(&user.password_hash),
            "updated_at = updated_at",
            Vec::new(),
        ),
        audit::record(
            app,
            audit::ACCOUNT_DELETED,
            Some(&user.id),
            client.ip_address.as_deref(),
            json!({ "username": user.username }),
        ),
    ];
    statements.extend(users::delete_statements(&user.id));
    match app.db.batch(statements) {
        Ok(_) => Ok(()),
        Err(StoreError::ConditionFailed(_)) => Err(Error::InvalidCredentials),
        Err(other) => Err(other.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{Registered, Registration, login, register, verify_access_token};
    use crate::sessions::Grant;
    use crate::testing::Harness;

    const PASSWORD: &str = "Tr1cky!Horse#42";
    const NEW_PASSWORD: &str = "N3w!Quiet-Meadow";

    fn signed_up(harness: &Harness) -> Grant {
        let input = Registration {
            username: "john_doe".into(),
            email: "john@example.com".into(),
            password: PASSWORD.into(),
            mobile_number: Some("+14155550100".into()),
        };
        match register(&harness.app(), &input, &Client::default()).unwrap() {
            Registered::SignedIn(grant) => grant,
            other => panic!("{other:?}"),
        }
    }

    fn who(harness: &Harness, grant: &Grant) -> Authenticated {
        verify_access_token(&harness.app(), &grant.access_token).unwrap()
    }

    /// The token in the newest mailed link to `path`.
    fn mailed_token(harness: &Harness, path: &str) -> String {
        let mails = claim_due_mail(&harness.app(), 100, 60).unwrap();
        let mail = mails
            .iter()
            .rev()
            .find(|m| m.text_body.contains(path))
            .expect("a mail");
        let start = mail.text_body.find("token=").unwrap() + "token=".len();
        mail.text_body[start..]
            .split_whitespace()
            .next()
            .unwrap()
            .to_string()
    }

    #[test]
    fn email_verification_end_to_end() {
        let harness = Harness::new(&[]);
        let app = harness.app();
        let grant = signed_up(&harness);
        request_verification(&app, &who(&harness, &grant), &Client::default()).unwrap();
        let token = mailed_token(&harness, "/verify-email");
        assert_eq!(
            verify_email(&app, "bogus", &Client::default()),
            Err(Error::InvalidVerificationToken)
        );
        let user = verify_email(&app, &token, &Client::default()).unwrap();
        assert!(user.email_verified);
        assert_eq!(
            verify_email(&app, &token, &Client::default()),
            Err(Error::InvalidVerificationToken)
        );
        assert_eq!(
            request_verification(&app, &who(&harness, &grant), &Client::default()),
            Err(Error::AlreadyVerified)
        );
    }

    #[test]
    fn required_verification_mails_the_link_at_registration() {
        let harness = Harness::new(&[("require_email_verification", "true")]);
        let app = harness.app();
        let input = Registration {
            username: "john_doe".into(),
            email: "john@example.com".into(),
            password: PASSWORD.into(),
            mobile_number: None,
        };
        let registered = register(&app, &input, &Client::default()).unwrap();
        assert!(matches!(registered, Registered::VerificationRequired(_)));
        let token = mailed_token(&harness, "/verify-email");
        verify_email(&app, &token, &Client::default()).unwrap();
        assert!(login(&app, "john_doe", PASSWORD, &Client::default()).is_ok());
    }

    #[test]
    fn verification_tokens_expire_after_a_day() {
        let harness = Harness::new(&[]);
        let grant = signed_up(&harness);
        request_verification(&harness.app(), &who(&harness, &grant), &Client::default()).unwrap();
        let token = mailed_token(&harness, "/verify-email");
        harness.env.advance(Kind::VerifyEmail.token_lifetime());
        assert_eq!(
            verify_email(&harness.app(), &token, &Client::default()),
            Err(Error::InvalidVerificationToken)
        );
    }

    #[test]
    fn forgot_and_reset_revoke_every_session_and_say_nothing_about_unknown_addresses() {
        let harness = Harness::new(&[]);
        let app = harness.app();
        let grant = signed_up(&harness);
        forgot_password(&app, "nobody@example.com", &Client::default()).unwrap();
        assert!(claim_due_mail(&app, 10, 60).unwrap().is_empty());
        assert!(matches!(
            forgot_password(&app, "not-an-email", &Client::default()),
            Err(Error::Validation(_))
        ));

        forgot_password(&app, "John@Example.com", &Client::default()).unwrap();
        let token = mailed_token(&harness, "/reset-password");
        assert!(matches!(
            reset_password(&app, &token, "weak", &Client::default()),
            Err(Error::Validation(_))
        ));
        reset_password(&app, &token, NEW_PASSWORD, &Client::default()).unwrap();
        assert_eq!(
            verify_access_token(&app, &grant.access_token),
            Err(Error::InvalidToken)
        );
        assert!(login(&app, "john_doe", NEW_PASSWORD, &Client::default()).is_ok());
        assert_eq!(
            reset_password(&app, &token, NEW_PASSWORD, &Client::default()),
            Err(Error::InvalidResetToken)
        );
    }

    #[test]
    fn reset_tokens_expire_after_thirty_minutes() {
        let harness = Harness::new(&[]);
        signed_up(&harness);
        forgot_password(&harness.app(), "john@example.com", &Client::default()).unwrap();
        let token = mailed_token(&harness, "/reset-password");
        harness.env.advance(Kind::ResetPassword.token_lifetime());
        assert_eq!(
            reset_password(&harness.app(), &token, NEW_PASSWORD, &Client::default()),
            Err(Error::InvalidResetToken)
        );
    }

    #[test]
    fn change_password_keeps_this_session_and_ends_the_others() {
        let harness = Harness::new(&[("max_sessions", "0")]);
        let app = harness.app();
        let first = signed_up(&harness);
        let second = login(&app, "john_doe", PASSWORD, &Client::default()).unwrap();
        let me = who(&harness, &first);
        assert_eq!(
            change_password(&app, &me, "wrong", NEW_PASSWORD, &Client::default()),
            Err(Error::InvalidCredentials)
        );
        change_password(&app, &me, PASSWORD, NEW_PASSWORD, &Client::default()).unwrap();
        assert!(verify_access_token(&app, &first.access_token).is_ok());
        assert_eq!(
            verify_access_token(&app, &second.access_token),
            Err(Error::InvalidToken)
        );
        assert_eq!(
            login(&app, "john_doe", PASSWORD, &Client::default()),
            Err(Error::InvalidCredentials)
        );
    }

    #[test]
    fn profile_changes_follow_the_registration_rules() {
        let harness = Harness::new(&[]);
        let app = harness.app();
        let grant = signed_up(&harness);
        let me = who(&harness, &grant);
        let change = ProfileChange {
            email: Change::Set("New@Example.com".into()),
            mobile_number: Change::Clear,
            current_password: Some(PASSWORD.into()),
            ..ProfileChange::default()
        };
        let user = update_profile(&app, &me, &change, &Client::default()).unwrap();
        assert_eq!(user.email, "new@example.com");
        assert!(!user.email_verified);
        assert_eq!(user.mobile_number, None);
        assert!(mailed_token(&harness, "/verify-email").len() >= 43);

        let bad = ProfileChange {
            username: Change::Set("x".into()),
            email: Change::Clear,
            ..ProfileChange::default()
        };
        let Err(Error::Validation(errors)) = update_profile(&app, &me, &bad, &Client::default())
        else {
            panic!("expected validation errors");
        };
        assert_eq!(errors.len(), 2);
    }

    #[test]
    fn deleting_frees_the_identifiers() {
        let harness = Harness::new(&[]);
        let app = harness.app();
        let grant = signed_up(&harness);
        let me = who(&harness, &grant);
        assert_eq!(
            delete_account(&app, &me, "wrong", &Client::default()),
            Err(Error::InvalidCredentials)
        );
        delete_account(&app, &me, PASSWORD, &Client::default()).unwrap();
        assert_eq!(
            verify_access_token(&app, &grant.access_token),
            Err(Error::InvalidToken)
        );
        signed_up(&harness);
    }

    fn change_email(
        harness: &Harness,
        grant: &Grant,
        email: &str,
        password: Option<&str>,
    ) -> Result<User, Error> {
        let change = ProfileChange {
            email: Change::Set(email.into()),
            current_password: password.map(String::from),
            ..ProfileChange::default()
        };
        update_profile(
            &harness.app(),
            &who(harness, grant),
            &change,
            &Client::default(),
        )
    }

    #[test]
    fn changing_the_email_needs_the_current_password_and_counts_wrong_ones() {
        let harness = Harness::new(&[("login_throttle", "3")]);
        let grant = signed_up(&harness);
        let Err(Error::Validation(errors)) =
            change_email(&harness, &grant, "new@example.com", None)
        else {
            panic!("expected a validation error");
        };
        assert_eq!(errors[0].field, "current_password");
        assert_eq!(errors[0].code, "required");
        for _ in 0..3 {
            assert_eq!(
                change_email(&harness, &grant, "new@example.com", Some("Wr0ng!Guess")),
                Err(Error::InvalidCredentials)
            );
        }
        // The account is throttled now, for the right password and at /auth/login alike.
        assert!(matches!(
            change_email(&harness, &grant, "new@example.com", Some(PASSWORD)),
            Err(Error::RateLimited { .. })
        ));
        assert!(matches!(
            login(&harness.app(), "john_doe", PASSWORD, &Client::default()),
            Err(Error::RateLimited { .. })
        ));
        // The wait after three failures is a second.
        harness.env.advance(2);
        let user = change_email(&harness, &grant, "new@example.com", Some(PASSWORD)).unwrap();
        assert_eq!(user.email, "new@example.com");
        // Changing only the username needs no password.
        let rename = ProfileChange {
            username: Change::Set("john_two".into()),
            ..ProfileChange::default()
        };
        let me = who(&harness, &grant);
        assert!(update_profile(&harness.app(), &me, &rename, &Client::default()).is_ok());
    }

    #[test]
    fn wrong_current_passwords_on_change_and_delete_count_as_failed_logins() {
        let harness = Harness::new(&[("login_throttle", "2")]);
        let app = harness.app();
        let grant = signed_up(&harness);
        let me = who(&harness, &grant);
        assert_eq!(
            change_password(&app, &me, "Wr0ng!Guess", NEW_PASSWORD, &Client::default()),
            Err(Error::InvalidCredentials)
        );
        assert_eq!(
            delete_account(&app, &me, "Wr0ng!Guess", &Client::default()),
            Err(Error::InvalidCredentials)
        );
        assert!(matches!(
            change_password(&app, &me, PASSWORD, NEW_PASSWORD, &Client::default()),
            Err(Error::RateLimited { .. })
        ));
        assert!(matches!(
            delete_account(&app, &me, PASSWORD, &Client::default()),
            Err(Error::RateLimited { .. })
        ));
    }

    #[test]
    fn tokens_mailed_to_an_old_address_stop_working_when_it_changes() {
        let harness = Harness::new(&[]);
        let app = harness.app();
        let grant = signed_up(&harness);
        request_verification(&app, &who(&harness, &grant), &Client::default()).unwrap();
        let verify_token = mailed_token(&harness, "/verify-email");
        forgot_password(&app, "john@example.com", &Client::default()).unwrap();
        let reset_token = mailed_token(&harness, "/reset-password");
        change_email(&harness, &grant, "new@example.com", Some(PASSWORD)).unwrap();
        assert_both_refused(&app, &verify_token, &reset_token);
        // Changing back does not bring them back.
        harness.env.advance(120);
        change_email(&harness, &grant, "john@example.com", Some(PASSWORD)).unwrap();
        assert_eq!(
            reset_password(&app, &reset_token, NEW_PASSWORD, &Client::default()),
            Err(Error::InvalidResetToken)
        );
        let user = users::find_by_id(&app, &grant.user.id).unwrap().unwrap();
        assert!(!user.email_verified);
    }

    #[test]
    fn the_old_address_is_told_of_a_change_without_the_new_one_in_full() {
        let harness = Harness::new(&[]);
        let grant = signed_up(&harness);
        change_email(&harness, &grant, "jane.new@example.org", Some(PASSWORD)).unwrap();
        let mails = claim_due_mail(&harness.app(), 100, 60).unwrap();
        let notice = mails
            .iter()
            .find(|mail| mail.to == "john@example.com")
            .expect("a notice to the old address");
        assert!(notice.text_body.contains("j***@example.org"));
        assert!(!notice.text_body.contains("jane.new"));
        assert!(mails.iter().any(|mail| mail.to == "jane.new@example.org"));
    }

    #[test]
    fn a_password_change_or_reset_cancels_outstanding_reset_tokens() {
        let harness = Harness::new(&[]);
        let app = harness.app();
        let grant = signed_up(&harness);
        forgot_password(&app, "john@example.com", &Client::default()).unwrap();
        let token = mailed_token(&harness, "/reset-password");
        change_password(
            &app,
            &who(&harness, &grant),
            PASSWORD,
            NEW_PASSWORD,
            &Client::default(),
        )
        .unwrap();
        assert_eq!(
            reset_password(&app, &token, "An0ther!Fine-Pass", &Client::default()),
            Err(Error::InvalidResetToken)
        );
    }

    #[test]
    fn a_reset_does_not_verify_an_address_the_token_was_not_mailed_to() {
        let harness = Harness::new(&[]);
        let app = harness.app();
        let grant = signed_up(&harness);
        forgot_password(&app, "john@example.com", &Client::default()).unwrap();
        let token = mailed_token(&harness, "/reset-password");
        // The address changes after the reset read the token (the race of the review):
        // the reset's write must fail, and nothing is verified.
        let user = find_token(&app, &token, Kind::ResetPassword)
            .unwrap()
            .unwrap();
        app.db
            .execute(
                "UPDATE users SET email = 'victim@example.com', email_verified = 0 WHERE id = ?",
                &[text(&user.id)],
            )
            .unwrap();
        let result = app.db.batch(vec![
            lock_account(
                &user,
                Still::At(&user.email),
                "email_verified = 1",
                Vec::new(),
            ),
            spend_token(&app, &token),
        ]);
        assert_eq!(result, Err(StoreError::ConditionFailed(0)));
        let stored = users::find_by_id(&app, &grant.user.id).unwrap().unwrap();
        assert!(!stored.email_verified);
        assert_eq!(
            reset_password(&app, &token, NEW_PASSWORD, &Client::default()),
            Err(Error::InvalidResetToken)
        );
    }

    #[test]
    fn a_login_that_checked_the_old_password_opens_no_session_after_a_change() {
        let harness = Harness::new(&[("max_sessions", "0")]);
        let app = harness.app();
        let grant = signed_up(&harness);
        // A login read the account (and its old hash), then the password changed.
        let stale = users::find_by_id(&app, &grant.user.id).unwrap().unwrap();
        change_password(
            &app,
            &who(&harness, &grant),
            PASSWORD,
            NEW_PASSWORD,
            &Client::default(),
        )
        .unwrap();
        let opening = sessions::open(&app, &stale, &Client::default()).unwrap();
        assert_eq!(
            app.db.batch(opening.statements),
            Err(StoreError::ConditionFailed(0))
        );
    }

    #[test]
    fn a_deactivated_account_gets_no_reset_mail_and_its_tokens_are_unknown() {
        let harness = Harness::new(&[]);
        let app = harness.app();
        let grant = signed_up(&harness);
        request_verification(&app, &who(&harness, &grant), &Client::default()).unwrap();
        let verify_token = mailed_token(&harness, "/verify-email");
        forgot_password(&app, "john@example.com", &Client::default()).unwrap();
        let reset_token = mailed_token(&harness, "/reset-password");
        app.db
            .execute(
                "UPDATE users SET is_active = 0 WHERE id = ?",
                &[text(&grant.user.id)],
            )
            .unwrap();
        assert_both_refused(&app, &verify_token, &reset_token);
        harness.env.advance(120);
        forgot_password(&app, "john@example.com", &Client::default()).unwrap();
        resolve_reset_requests(&app).unwrap();
        let reset_mails = app
            .db
            .query("SELECT id FROM outbox WHERE kind = 'reset_password'", &[])
            .unwrap();
        assert_eq!(
            reset_mails.len(),
            1,
            "only the one mailed while it was active"
        );
    }

    /// Neither mailed token works any more (and trying spends nothing).
    fn assert_both_refused(app: &App<'_>, verify_token: &str, reset_token: &str) {
        assert_eq!(
            verify_email(app, verify_token, &Client::default()),
            Err(Error::InvalidVerificationToken)
        );
        assert_eq!(
            reset_password(app, reset_token, NEW_PASSWORD, &Client::default()),
            Err(Error::InvalidResetToken)
        );
    }

    fn queued_reset_requests(app: &App<'_>) -> usize {
        app.db
            .query("SELECT id FROM reset_requests", &[])
            .unwrap()
            .len()
    }

    #[test]
    fn a_reset_request_no_worker_resolved_in_time_is_dropped() {
        let harness = Harness::new(&[]);
        let app = harness.app();
        signed_up(&harness);
        forgot_password(&app, "john@example.com", &Client::default()).unwrap();
        harness.env.advance(Kind::ResetPassword.token_lifetime());
        assert!(claim_due_mail(&app, 10, 60).unwrap().is_empty());
        assert_eq!(queued_reset_requests(&app), 0);
    }

    #[test]
    fn forgot_queues_the_same_row_for_known_and_unknown_addresses() {
        let harness = Harness::new(&[]);
        let app = harness.app();
        signed_up(&harness);
        forgot_password(&app, "john@example.com", &Client::default()).unwrap();
        forgot_password(&app, "nobody@example.com", &Client::default()).unwrap();
        assert_eq!(queued_reset_requests(&app), 2);
        let mails = claim_due_mail(&app, 10, 60).unwrap();
        assert_eq!(mails.len(), 1);
        assert_eq!(mails[0].to, "john@example.com");
        assert_eq!(queued_reset_requests(&app), 0);
    }

    #[test]
    fn reset_mails_are_erased_once_their_link_expires_or_they_are_given_up() {
        let harness = Harness::new(&[]);
        let app = harness.app();
        signed_up(&harness);
        forgot_password(&app, "john@example.com", &Client::default()).unwrap();
        resolve_reset_requests(&app).unwrap();
        harness.env.advance(Kind::ResetPassword.token_lifetime());
        assert!(claim_due_mail(&app, 10, 60).unwrap().is_empty());
        let left = app
            .db
            .query(
                "SELECT text_body, html_body FROM outbox WHERE kind = 'reset_password'",
                &[],
            )
            .unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].text(0).unwrap(), "");
        assert_eq!(left[0].text(1).unwrap(), "");

        // A mail whose every attempt failed is given up, and its bodies go with it.
        harness.env.advance(120);
        forgot_password(&app, "john@example.com", &Client::default()).unwrap();
        for _ in 0..mail::MAX_ATTEMPTS {
            let claimed = claim_due_mail(&app, 10, 60).unwrap();
            let Some(mail) = claimed.first() else { break };
            mail::failed(&app, &mail.id, &mail.claim, "smtp down").unwrap();
            harness.env.advance(1);
            app.db
                .execute("UPDATE outbox SET next_attempt_at = 0", &[])
                .unwrap();
        }
        let kept = app
            .db
            .query("SELECT id FROM outbox WHERE text_body <> ''", &[])
            .unwrap();
        assert!(kept.is_empty());
    }
}
