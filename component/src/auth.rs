//! The authentication operations, shared by the HTTP routes and the typed `api` export:
//! register, login, verify an access token, read a user.

use serde_json::json;

use crate::abuse;
use crate::app::App;
use crate::audit;
use crate::db::{statement, text};
use crate::error::{Error, FieldError};
use crate::imported_hash;
use crate::mfa;
use crate::password;
use crate::ports::{Statement, StoreError};
use crate::sessions::{self, Authenticated, Client, Grant, LIMIT_GUARD_INDEX, Revocation};
use crate::users::{self, User};
use crate::validation::{self, Identifiers};

/// What a new account is registered with, as received.
#[derive(Clone, Debug, Default)]
pub struct Registration {
    pub username: String,
    pub email: String,
    pub password: String,
    pub mobile_number: Option<String>,
}

/// The outcome of a registration.
#[derive(Clone, Debug, PartialEq)]
pub enum Registered {
    /// The account was given a session at once.
    SignedIn(Grant),
    /// Email verification is required first; no session was opened.
    VerificationRequired(User),
}

/// Every rule a registration breaks (empty when it is valid).
pub fn check_registration(app: &App<'_>, input: &Registration) -> Vec<FieldError> {
    validate(app, input).err().unwrap_or_default()
}

/// Checks every field of a registration; returns the normalised email and mobile number.
fn validate(
    app: &App<'_>,
    input: &Registration,
) -> Result<(String, Option<String>), Vec<FieldError>> {
    let mut errors = Vec::new();
    validation::check_username(&input.username, &mut errors);
    let email = validation::check_email(&input.email, &mut errors);
    let mobile = input
        .mobile_number
        .as_deref()
        .filter(|number| !number.is_empty())
        .and_then(|number| validation::check_mobile(number, &mut errors));
    let identifiers = Identifiers {
        username: &input.username,
        email: &email,
    };
    validation::check_password(
        &input.password,
        &identifiers,
        app.settings,
        "password",
        &mut errors,
    );
    if errors.is_empty() {
        Ok((email, mobile.map(|mobile| mobile.number)))
    } else {
        Err(errors)
    }
}

/// Checks a registration and builds the account it describes (password hashed, email
/// not verified, not an admin); nothing is stored yet.
pub fn new_account(app: &App<'_>, input: &Registration) -> Result<User, Error> {
    let (email, mobile_number) = validate(app, input).map_err(Error::Validation)?;
    let now = app.now();
    let password_hash = password::hash(
        app.env,
        &input.password,
        &app.env.random_bytes(password::salt_len()),
    )
    .map_err(Error::Internal)?;
    Ok(User {
        id: app.new_id(),
        username: input.username.clone(),
        email,
        mobile_number,
        password_hash,
        email_verified: false,
        is_active: true,
        is_admin: false,
        mfa_enabled: false,
        created_at: now,
        updated_at: now,
    })
}

/// Registers an account, and unless email verification is required, opens its first
/// session — all in one transaction with the `register` audit event.
pub fn register(app: &App<'_>, input: &Registration, client: &Client) -> Result<Registered, Error> {
    let user = new_account(app, input)?;
    let mut statements = vec![
        user.insert(),
        audit::record(
            app,
            audit::REGISTER,
            Some(&user.id),
            client.ip_address.as_deref(),
            json!({ "username": user.username }),
        ),
    ];
    if app.settings.require_email_verification {
        // The account cannot log in yet, so its first verification mail goes out now.
        statements.extend(crate::account::verification_mail(app, &user, client)?);
        app.db.batch(statements).map_err(registration_conflict)?;
        return Ok(Registered::VerificationRequired(user));
    }
    let opening = sessions::open(app, &user, client)?;
    statements.extend(opening.statements);
    app.db.batch(statements).map_err(registration_conflict)?;
    Ok(Registered::SignedIn(opening.grant))
}

/// Maps a unique violation to the field it concerns.
pub fn registration_conflict(error: StoreError) -> Error {
    match error {
        StoreError::UniqueViolation(constraint) => {
            // MySQL's message quotes the duplicate value before the key's name:
            // "Duplicate entry 'username@x.com' for key 'users_email_key'".
            let constraint = constraint
                .rsplit("for key ")
                .next()
                .unwrap_or_default()
                .to_ascii_lowercase();
            if constraint.contains("username") {
                Error::UsernameTaken
            } else if constraint.contains("email") {
                Error::EmailTaken
            } else if constraint.contains("mobile") {
                Error::MobileTaken
            } else {
                Error::Internal(format!("unexpected unique violation: {constraint}"))
            }
        }
        other => other.into(),
    }
}

/// Logs in by username, email or mobile number. Unknown accounts cost the same hash as
/// known ones; the account's state is revealed only after a correct password.
///
/// When the hash the password was checked against was due for a rehash and changed
/// before the session opened, a concurrent first login most likely rehashed it: the
/// login is tried once more against the stored hash, so that neither of two concurrent
/// correct logins is refused.
pub fn login(app: &App<'_>, login: &str, password: &str, client: &Client) -> Result<Grant, Error> {
    match login_once(app, login, password, client)? {
        Attempt::Done(grant) => Ok(*grant),
        Attempt::HashChangedBeforeRehash => match login_once(app, login, password, client)? {
            Attempt::Done(grant) => Ok(*grant),
            Attempt::HashChangedBeforeRehash => Err(Error::InvalidCredentials),
        },
    }
}

/// How one login attempt ended, when it did not fail.
enum Attempt {
    Done(Box<Grant>),
    /// The account's hash, due for a rehash, changed between the check and the session.
    HashChangedBeforeRehash,
}

fn login_once(
    app: &App<'_>,
    login: &str,
    password: &str,
    client: &Client,
) -> Result<Attempt, Error> {
    check_login_input(login, password)?;
    let ip = client.ip_address.as_deref();
    let Some(user) = users::find_by_login(app, login)? else {
        let subject = abuse::login_subject(None, login);
        abuse::check_login_throttle(app, &subject, ip)?;
        password::verify_dummy(app.env, password);
        abuse::record_login_failure(app, &subject, ip)?;
        record_failure(app, None, client, "unknown_account")?;
        return Err(Error::InvalidCredentials);
    };
    check_password(app, &user, password, client, "wrong_password")?;
    let subject = abuse::login_subject(Some(&user.id), login);
    if !user.is_active {
        return Err(Error::AccountDisabled);
    }
    if app.settings.require_email_verification && !user.email_verified {
        return Err(Error::EmailNotVerified);
    }
    if user.mfa_enabled {
        return Err(mfa::challenge(app, &user));
    }
    let opening = sessions::open(app, &user, client)?;
    let mut statements = opening.statements;
    statements.push(abuse::clear_login_failures(&subject));
    statements.push(audit::record(
        app,
        audit::LOGIN,
        Some(&user.id),
        ip,
        json!({ "session_id": opening.grant.session_id }),
    ));
    let rehashing = rehash(app, &user, password, ip)?;
    let due_for_rehash = !rehashing.is_empty();
    statements.extend(rehashing);
    match app.db.batch(statements) {
        Ok(_) => Ok(Attempt::Done(Box::new(opening.grant))),
        Err(StoreError::ConditionFailed(index)) if index as usize == LIMIT_GUARD_INDEX => {
            Err(Error::SessionLimitReached)
        }
        Err(StoreError::ConditionFailed(_)) if due_for_rehash => {
            Ok(Attempt::HashChangedBeforeRehash)
        }
        // The account was deleted, deactivated or given another password between the
        // password check and the session (API.md §11): the password no longer opens it.
        Err(StoreError::ConditionFailed(_)) => Err(Error::InvalidCredentials),
        Err(other) => Err(other.into()),
    }
}

/// When the account's hash is not Argon2id with the current parameters (an imported
/// hash, or older parameters), the statements that store the correct `password` hashed
/// again with them and record `password_rehashed` (API.md §9). They join the batch that
/// opens the session, after its lock on the hash the password was checked against.
fn rehash(
    app: &App<'_>,
    user: &User,
    password: &str,
    ip: Option<&str>,
) -> Result<Vec<Statement>, Error> {
    let Some(from) = imported_hash::rehash_from(&user.password_hash) else {
        return Ok(Vec::new());
    };
    let salt = app.env.random_bytes(password::salt_len());
    let hash = password::hash(app.env, password, &salt).map_err(Error::Internal)?;
    Ok(vec![
        statement(
            "UPDATE users SET password_hash = ? WHERE id = ?",
            vec![text(hash), text(&user.id)],
        ),
        audit::record(
            app,
            audit::PASSWORD_REHASHED,
            Some(&user.id),
            ip,
            json!({ "from": from }),
        ),
    ])
}

/// Missing fields and oversized values are refused before any lookup.
fn check_login_input(login: &str, password: &str) -> Result<(), Error> {
    let mut errors = Vec::new();
    for (field, value, max) in [
        ("login", login, validation::EMAIL_MAX),
        ("password", password, crate::settings::PASSWORD_MAX_LENGTH),
    ] {
        if value.is_empty() {
            errors.push(FieldError::new(
                field,
                "required",
                format!("{field} is required."),
            ));
        } else if value.chars().count() > max {
            errors.push(FieldError::new(
                field,
                "too_long",
                format!("At most {max} characters."),
            ));
        } else if field == "login" && validation::has_control(value) {
            errors.push(FieldError::new(
                field,
                "invalid_format",
                "No control characters.",
            ));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Error::Validation(errors))
    }
}

/// Records a failed login in the audit log (the throttle has counted it).
fn record_failure(
    app: &App<'_>,
    user_id: Option<&str>,
    client: &Client,
    reason: &str,
) -> Result<(), Error> {
    let event = audit::record(
        app,
        audit::LOGIN_FAILED,
        user_id,
        client.ip_address.as_deref(),
        json!({ "reason": reason }),
    );
    app.db.batch(vec![event])?;
    Ok(())
}

/// Checks the account's current password where a signed-in user must confirm it
/// (password change, account deletion, email change). It is a login attempt like any
/// other for the login throttle (API.md §11): refused while the account must wait, and a
/// wrong password counts as a failed login.
pub fn confirm_password(
    app: &App<'_>,
    user: &User,
    given: &str,
    client: &Client,
) -> Result<(), Error> {
    check_password(app, user, given, client, "wrong_current_password")
}

/// Checks `given` against the account's password under the login throttle: refused
/// while the account must wait (before any Argon2 work), a wrong password counted and
/// audited as `login_failed` with `reason`, and the throttle checked again after a
/// correct one (failures that raced this attempt may have reached the threshold).
fn check_password(
    app: &App<'_>,
    user: &User,
    given: &str,
    client: &Client,
    reason: &str,
) -> Result<(), Error> {
    let ip = client.ip_address.as_deref();
    let subject = abuse::login_subject(Some(&user.id), &user.username);
    abuse::check_login_throttle(app, &subject, ip)?;
    let plausible =
        !given.is_empty() && given.chars().count() <= crate::settings::PASSWORD_MAX_LENGTH;
    if !plausible || !imported_hash::verify(app.env, given, &user.password_hash) {
        abuse::record_login_failure(app, &subject, ip)?;
        record_failure(app, Some(&user.id), client, reason)?;
        return Err(Error::InvalidCredentials);
    }
    abuse::check_login_throttle(app, &subject, ip)
}

/// Verifies an access token (signature, claims, live session and account).
pub fn verify_access_token(app: &App<'_>, token: &str) -> Result<Authenticated, Error> {
    sessions::authenticate(app, token)
}

/// Ends the session the access token belongs to.
pub fn logout(app: &App<'_>, who: &Authenticated, client: &Client) -> Result<(), Error> {
    let claims = &who.claims;
    app.db.batch(vec![
        sessions::revoke_one(app, &claims.sub, &claims.sid, Revocation::Logout),
        audit::record(
            app,
            audit::LOGOUT,
            Some(&claims.sub),
            client.ip_address.as_deref(),
            json!({ "session_id": claims.sid }),
        ),
    ])?;
    Ok(())
}

/// Ends every session of the user.
pub fn logout_all(app: &App<'_>, who: &Authenticated, client: &Client) -> Result<(), Error> {
    let user_id = &who.claims.sub;
    app.db.batch(vec![
        sessions::revoke_all(app, user_id, None, Revocation::LogoutAll),
        audit::record(
            app,
            audit::LOGOUT_ALL,
            Some(user_id),
            client.ip_address.as_deref(),
            json!({}),
        ),
    ])?;
    Ok(())
}

/// Revokes one of the user's own live sessions; another user's session is `NotFound`.
pub fn revoke_session(
    app: &App<'_>,
    who: &Authenticated,
    session_id: &str,
    client: &Client,
) -> Result<(), Error> {
    let user_id = &who.claims.sub;
    let revoke = Statement {
        expect_rows: Some(1),
        ..sessions::revoke_one(app, user_id, session_id, Revocation::Revoked)
    };
    let result = app.db.batch(vec![
        revoke,
        audit::record(
            app,
            audit::SESSION_REVOKED,
            Some(user_id),
            client.ip_address.as_deref(),
            json!({ "session_id": session_id }),
        ),
    ]);
    match result {
        Ok(_) => Ok(()),
        Err(StoreError::ConditionFailed(_)) => Err(Error::NotFound),
        Err(other) => Err(other.into()),
    }
}

/// Reads an account by id.
pub fn get_user(app: &App<'_>, user_id: &str) -> Result<User, Error> {
    users::find_by_id(app, user_id)?.ok_or(Error::NotFound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_violations_are_named_by_their_key_not_the_value() {
        let mysql = "Duplicate entry 'username@x.com' for key 'users_email_key'";
        assert_eq!(
            registration_conflict(StoreError::UniqueViolation(mysql.into())),
            Error::EmailTaken
        );
        let sqlite = "UNIQUE constraint failed: users.mobile_key";
        assert_eq!(
            registration_conflict(StoreError::UniqueViolation(sqlite.into())),
            Error::MobileTaken
        );
        assert_eq!(
            registration_conflict(StoreError::UniqueViolation("users_username_key_key".into())),
            Error::UsernameTaken
        );
    }
    use crate::testing::Harness;

    fn registration(username: &str, email: &str) -> Registration {
        Registration {
            username: username.into(),
            email: email.into(),
            password: "Tr1cky!Horse#42".into(),
            mobile_number: Some("+1 (415) 555-0100".into()),
        }
    }

    fn client() -> Client {
        Client::new(Some("test-agent".into()), Some("127.0.0.1".into()))
    }

    fn signed_in(registered: Registered) -> Grant {
        match registered {
            Registered::SignedIn(grant) => grant,
            other => panic!("expected a session, got {other:?}"),
        }
    }

    #[test]
    fn register_then_login_by_username_email_and_mobile() {
        let harness = Harness::new(&[("max_sessions", "0")]);
        let app = harness.app();
        let grant = signed_in(
            register(
                &app,
                &registration("John_Doe", "John@Example.com"),
                &client(),
            )
            .unwrap(),
        );
        assert_eq!(grant.user.email, "john@example.com");
        assert_eq!(grant.user.mobile_number.as_deref(), Some("+14155550100"));
        for name in [
            "john_doe",
            "JOHN@example.COM",
            "1-415-555-0100",
            "+1 415 555 0100",
        ] {
            let login = login(&app, name, "Tr1cky!Horse#42", &client()).unwrap();
            assert_eq!(login.user.id, grant.user.id, "{name}");
        }
        assert_eq!(
            login(&app, "john_doe", "wrong-Passw0rd!", &client()),
            Err(Error::InvalidCredentials)
        );
        assert_eq!(
            login(&app, "nobody", "Tr1cky!Horse#42", &client()),
            Err(Error::InvalidCredentials)
        );
    }

    #[test]
    fn duplicates_are_refused_with_the_field_that_clashes() {
        let harness = Harness::new(&[]);
        let app = harness.app();
        register(
            &app,
            &registration("john_doe", "john@example.com"),
            &client(),
        )
        .unwrap();
        let mut clash = registration("JOHN_DOE", "other@example.com");
        clash.mobile_number = None;
        assert_eq!(register(&app, &clash, &client()), Err(Error::UsernameTaken));
        clash = registration("other", "John@Example.com");
        clash.mobile_number = None;
        assert_eq!(register(&app, &clash, &client()), Err(Error::EmailTaken));
        clash = registration("other", "other@example.com");
        clash.mobile_number = Some("14155550100".into());
        assert_eq!(register(&app, &clash, &client()), Err(Error::MobileTaken));
    }

    #[test]
    fn tokens_work_while_the_session_lives_and_expire_with_the_clock() {
        let harness = Harness::new(&[("clock_skew", "0")]);
        let app = harness.app();
        let grant = signed_in(
            register(
                &app,
                &registration("john_doe", "john@example.com"),
                &client(),
            )
            .unwrap(),
        );
        let verified = verify_access_token(&app, &grant.access_token).unwrap();
        assert_eq!(verified.claims.sid, grant.session_id);
        assert_eq!(verified.user.username, "john_doe");
        harness.env.advance(900);
        assert_eq!(
            verify_access_token(&app, &grant.access_token),
            Err(Error::InvalidToken)
        );
    }

    #[test]
    fn verify_access_token_returns_the_account_until_logout() {
        let harness = Harness::new(&[]);
        let app = harness.app();
        let grant = signed_in(
            register(
                &app,
                &registration("john_doe", "john@example.com"),
                &client(),
            )
            .unwrap(),
        );
        let who = verify_access_token(&app, &grant.access_token).unwrap();
        assert_eq!(who.claims.sid, grant.session_id);
        assert_eq!(who.user, grant.user);
        logout(&app, &who, &client()).unwrap();
        assert_eq!(
            verify_access_token(&app, &grant.access_token),
            Err(Error::InvalidToken)
        );
    }

    #[test]
    fn evict_oldest_keeps_the_newest_sessions() {
        let harness = Harness::new(&[("max_sessions", "2")]);
        let app = harness.app();
        let first = signed_in(
            register(
                &app,
                &registration("john_doe", "john@example.com"),
                &client(),
            )
            .unwrap(),
        );
        harness.env.advance(1);
        let second = login(&app, "john_doe", "Tr1cky!Horse#42", &client()).unwrap();
        harness.env.advance(1);
        let third = login(&app, "john_doe", "Tr1cky!Horse#42", &client()).unwrap();
        assert_eq!(
            verify_access_token(&app, &first.access_token),
            Err(Error::InvalidToken)
        );
        assert!(verify_access_token(&app, &second.access_token).is_ok());
        assert!(verify_access_token(&app, &third.access_token).is_ok());
        let evictions = app
            .db
            .query(
                "SELECT id FROM audit_events WHERE event = 'session_evicted'",
                &[],
            )
            .unwrap();
        assert_eq!(evictions.len(), 1);
    }

    #[test]
    fn reject_policy_refuses_a_login_over_the_limit() {
        let harness = Harness::new(&[("max_sessions", "1"), ("session_limit_policy", "reject")]);
        let app = harness.app();
        signed_in(
            register(
                &app,
                &registration("john_doe", "john@example.com"),
                &client(),
            )
            .unwrap(),
        );
        assert_eq!(
            login(&app, "john_doe", "Tr1cky!Horse#42", &client()),
            Err(Error::SessionLimitReached)
        );
    }

    #[test]
    fn verification_required_registers_without_a_session_and_refuses_login() {
        let harness = Harness::new(&[("require_email_verification", "true")]);
        let app = harness.app();
        let registered = register(
            &app,
            &registration("john_doe", "john@example.com"),
            &client(),
        )
        .unwrap();
        assert!(matches!(registered, Registered::VerificationRequired(_)));
        assert_eq!(
            login(&app, "john_doe", "Tr1cky!Horse#42", &client()),
            Err(Error::EmailNotVerified)
        );
        assert_eq!(
            login(&app, "john_doe", "Wrong!Horse#42", &client()),
            Err(Error::InvalidCredentials)
        );
    }
}
