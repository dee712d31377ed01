//! The account lifecycle after registration (API.md §5, §6): email verification, forgotten
//! and reset passwords, password change, profile changes and deletion. Each change is one
//! transaction together with its audit event and any mail it causes.

use serde_json::json;

use crate::app::App;
use crate::audit;
use crate::auth::registration_conflict;
use crate::db::{integer, optional_text, statement, text};
use crate::error::{Error, FieldError};
use crate::mail::{self, Kind};
use crate::password;
use crate::ports::{Statement, StoreError};
use crate::sessions::{self, Authenticated, Client, Revocation};
use crate::tokens;
use crate::users::{self, User};
use crate::validation::{self, Identifiers, username_key};

/// Lifetime of an email-verification token (API.md §7).
const VERIFY_TOKEN_SECONDS: i64 = 24 * 3600;
/// Lifetime of a password-reset token (API.md §7).
const RESET_TOKEN_SECONDS: i64 = 30 * 60;

impl Kind {
    fn lifetime(self) -> i64 {
        match self {
            Kind::VerifyEmail => VERIFY_TOKEN_SECONDS,
            Kind::ResetPassword => RESET_TOKEN_SECONDS,
        }
    }
}

/// The statements that issue a token of `kind` for `user` at `address` and mail it;
/// earlier unused tokens of the same kind stop working.
fn issue_token(app: &App<'_>, user: &User, address: &str, kind: Kind) -> Vec<Statement> {
    let now = app.now();
    let token = app.new_opaque_token();
    vec![
        statement(
            "UPDATE email_tokens SET used_at = ? WHERE user_id = ? AND purpose = ? \
             AND used_at IS NULL",
            vec![integer(now), text(&user.id), text(kind.as_str())],
        ),
        statement(
            "INSERT INTO email_tokens (token_hash, user_id, purpose, email, created_at, \
             expires_at) VALUES (?, ?, ?, ?, ?, ?)",
            vec![
                text(tokens::hash_opaque(&token)),
                text(&user.id),
                text(kind.as_str()),
                text(address),
                integer(now),
                integer(now + kind.lifetime()),
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
    if !mail::may_send(app, &user.email, Kind::VerifyEmail)? {
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

/// A live (unused, unexpired) token of `kind`: its user and the address it was sent to.
fn find_token(app: &App<'_>, token: &str, kind: Kind) -> Result<Option<(User, String)>, Error> {
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
    Ok(users::find_by_id(app, &row.text(0)?)?.map(|user| (user, address)))
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

/// `POST /api/v1/auth/email/verify`: spends the token and marks the address verified.
pub fn verify_email(app: &App<'_>, token: &str, client: &Client) -> Result<User, Error> {
    let (user, address) = find_token(app, token, Kind::VerifyEmail)?
        .filter(|(user, address)| *address == user.email)
        .ok_or(Error::InvalidVerificationToken)?;
    let now = app.now();
    let result = app.db.batch(vec![
        spend_token(app, token),
        Statement {
            expect_rows: Some(1),
            ..statement(
                "UPDATE users SET email_verified = 1, updated_at = ? WHERE id = ? AND email = ?",
                vec![integer(now), text(&user.id), text(&address)],
            )
        },
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

/// `POST /api/v1/auth/password/forgot`: mails a reset link when the address belongs to an
/// active account. The answer is the same either way.
pub fn forgot_password(app: &App<'_>, email: &str, client: &Client) -> Result<(), Error> {
    let mut errors = Vec::new();
    let email = validation::check_email(email, &mut errors);
    if !errors.is_empty() {
        return Err(Error::Validation(errors));
    }
    let Some(user) = users::find_by_login(app, &email)?.filter(|user| user.is_active) else {
        return Ok(());
    };
    if !mail::may_send(app, &user.email, Kind::ResetPassword)? {
        return Ok(());
    }
    let mut statements = issue_token(app, &user, &user.email, Kind::ResetPassword);
    statements.push(audit::record(
        app,
        audit::PASSWORD_RESET_REQUESTED,
        Some(&user.id),
        client.ip_address.as_deref(),
        json!({}),
    ));
    app.db.batch(statements)?;
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

fn set_password(
    app: &App<'_>,
    user: &User,
    new_password: &str,
    extra: &str,
) -> Result<Statement, Error> {
    let hash = password::hash(new_password, &app.env.random_bytes(password::salt_len()))
        .map_err(Error::Internal)?;
    Ok(statement(
        &format!("UPDATE users SET password_hash = ?, updated_at = ?{extra} WHERE id = ?"),
        vec![text(hash), integer(app.now()), text(&user.id)],
    ))
}

/// `POST /api/v1/auth/password/reset`: a new password and every session revoked. The
/// link proves control of the address it was sent to, which is marked verified.
pub fn reset_password(
    app: &App<'_>,
    token: &str,
    new_password: &str,
    client: &Client,
) -> Result<(), Error> {
    let (user, address) =
        find_token(app, token, Kind::ResetPassword)?.ok_or(Error::InvalidResetToken)?;
    check_new_password(app, &user, new_password, "new_password")?;
    let verified = if address == user.email {
        ", email_verified = 1"
    } else {
        ""
    };
    let result = app.db.batch(vec![
        spend_token(app, token),
        set_password(app, &user, new_password, verified)?,
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

/// `POST /api/v1/users/me/password`: needs the current password; every other session is
/// revoked.
pub fn change_password(
    app: &App<'_>,
    who: &Authenticated,
    current: &str,
    new_password: &str,
    client: &Client,
) -> Result<(), Error> {
    let user = users::find_by_id(app, &who.claims.sub)?.ok_or(Error::InvalidToken)?;
    if current.is_empty()
        || current.chars().count() > crate::settings::PASSWORD_MAX_LENGTH
        || !password::verify(current, &user.password_hash)
    {
        return Err(Error::InvalidCredentials);
    }
    check_new_password(app, &user, new_password, "new_password")?;
    app.db.batch(vec![
        set_password(app, &user, new_password, "")?,
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
    ])?;
    Ok(())
}

/// A field of a PATCH: left alone, cleared (`null`) or set.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Change {
    #[default]
    Keep,
    Clear,
    Set(String),
}

/// What `PATCH /api/v1/users/me` may change.
#[derive(Clone, Debug, Default)]
pub struct ProfileChange {
    pub username: Change,
    pub email: Change,
    pub mobile_number: Change,
}

/// Applies a profile change with the registration rules; a new email is unverified and
/// gets a verification mail.
pub fn update_profile(
    app: &App<'_>,
    who: &Authenticated,
    change: &ProfileChange,
    client: &Client,
) -> Result<User, Error> {
    let user = users::find_by_id(app, &who.claims.sub)?.ok_or(Error::InvalidToken)?;
    let updated = apply(&user, change, app.now())?;
    let email_changed = updated.email != user.email;
    let mobile_key = updated
        .mobile_number
        .as_deref()
        .and_then(validation::normalise_mobile)
        .map(|mobile| mobile.key);
    let mut statements = vec![statement(
        "UPDATE users SET username = ?, username_key = ?, email = ?, email_verified = ?, \
         mobile_number = ?, mobile_key = ?, updated_at = ? WHERE id = ?",
        vec![
            text(&updated.username),
            text(username_key(&updated.username)),
            text(&updated.email),
            integer(i64::from(updated.email_verified)),
            optional_text(updated.mobile_number.as_deref()),
            optional_text(mobile_key),
            integer(updated.updated_at),
            text(&user.id),
        ],
    )];
    if email_changed {
        statements.extend(verification_mail(app, &updated, client)?);
    }
    app.db.batch(statements).map_err(registration_conflict)?;
    Ok(updated)
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
    if !errors.is_empty() {
        return Err(Error::Validation(errors));
    }
    updated.updated_at = now;
    Ok(updated)
}

/// `DELETE /api/v1/users/me`: needs the password; the account, its sessions and tokens
/// are gone, and its username, email and mobile number are free again.
pub fn delete_account(
    app: &App<'_>,
    who: &Authenticated,
    password_given: &str,
    client: &Client,
) -> Result<(), Error> {
    let user = users::find_by_id(app, &who.claims.sub)?.ok_or(Error::InvalidToken)?;
    if password_given.is_empty()
        || password_given.chars().count() > crate::settings::PASSWORD_MAX_LENGTH
        || !password::verify(password_given, &user.password_hash)
    {
        return Err(Error::InvalidCredentials);
    }
    let mut statements = vec![audit::record(
        app,
        audit::ACCOUNT_DELETED,
        Some(&user.id),
        client.ip_address.as_deref(),
        json!({ "username": user.username }),
    )];
    statements.extend(users::delete_statements(&user.id));
    app.db.batch(statements)?;
    Ok(())
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
        let mails = mail::claim(&harness.app(), 100, 60).unwrap();
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
        harness.env.advance(VERIFY_TOKEN_SECONDS);
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
        assert!(mail::claim(&app, 10, 60).unwrap().is_empty());
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
        harness.env.advance(RESET_TOKEN_SECONDS);
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
}
