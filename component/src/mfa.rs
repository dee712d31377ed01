//! Two-factor authentication with TOTP and recovery codes (API.md §8).
//!
//! - Enrolment: a pending secret (160 bits) with its `otpauth://` URI and QR code,
//!   turned on by a first code, which also hands out ten recovery codes.
//! - Login: with MFA on, a correct password opens no session but a challenge: a
//!   single-use, short-lived `mfa_token` ([`challenge`]); [`verify`] trades it and a code
//!   for a session whose tokens carry `amr: ["pwd","otp","mfa"]`.
//! - Codes: the last accepted TOTP step is stored per user and a code is accepted only for
//!   a later step, by a guarded update in the batch of the change the code allows, so the
//!   same code never wins twice, on any number of hosts. Recovery codes are spent by a
//!   guarded delete the same way. Wrong codes count as failed logins for the login
//!   throttle, and five of them spend an `mfa_token`.
//! - The secret is stored sealed under a key derived from `PORTCULLIS_JWT_SECRET` and is
//!   never shown again after enrolment.

mod recovery;
pub mod totp;

use data_encoding::BASE32_NOPAD;
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::abuse;
use crate::app::App;
use crate::audit;
use crate::auth;
use crate::db::{integer, statement, text};
use crate::error::Error;
use crate::ports::{Statement, StoreError};
use crate::sessions::{self, Authenticated, Authentication, Client, Grant, LIMIT_GUARD_INDEX};
use crate::tokens;
use crate::users::{self, User};

/// The kinds of code the second step of a login takes.
pub const METHODS: [&str; 2] = ["totp", "recovery_code"];
/// Wrong codes after which an `mfa_token` is spent.
const MAX_CODE_FAILURES: i64 = 5;
/// Presented `mfa_token`s longer than this are refused unread.
const MAX_MFA_TOKEN_LENGTH: usize = 128;
/// Random bytes of the nonce of a sealed secret.
const SEAL_NONCE_BYTES: usize = 16;
/// Bytes of the tag that authenticates a sealed secret.
const SEAL_TAG_BYTES: usize = 16;

/// A pending enrolment, as shown once to the user.
#[derive(Clone, Debug, PartialEq)]
pub struct Enrolment {
    /// The secret in base32 (no padding), for typing into an authenticator.
    pub secret: String,
    pub otpauth_uri: String,
    /// An SVG image of a QR code of `otpauth_uri`.
    pub qr_svg: String,
}

/// A user's TOTP secret, pending or confirmed.
struct Factor {
    secret: Vec<u8>,
    /// As stored: a confirmation names the very secret its code was checked against.
    sealed: String,
    confirmed: bool,
    last_step: i64,
}

/// A code that checked out; [`Accepted::spend`] makes it unusable, in the batch of the
/// change it allows.
enum Accepted {
    Totp { step: i64 },
    RecoveryCode { hash: String },
}

impl Accepted {
    /// The guarded statement that spends the code: it changes one row only if no one
    /// spent this step (or this recovery code) meanwhile.
    fn spend(&self, user_id: &str) -> Statement {
        let spend = match self {
            Accepted::Totp { step } => statement(
                "UPDATE mfa_totp SET last_step = ? WHERE user_id = ? AND last_step < ? \
                 AND confirmed_at IS NOT NULL",
                vec![integer(*step), text(user_id), integer(*step)],
            ),
            Accepted::RecoveryCode { hash } => statement(
                "DELETE FROM mfa_recovery_codes WHERE code_hash = ? AND user_id = ?",
                vec![text(hash), text(user_id)],
            ),
        };
        Statement {
            expect_rows: Some(1),
            ..spend
        }
    }

    /// The method's name, as [`METHODS`] lists it.
    fn method(&self) -> &'static str {
        match self {
            Accepted::Totp { .. } => "totp",
            Accepted::RecoveryCode { .. } => "recovery_code",
        }
    }

    /// The audit event of a recovery code's use, if it is one.
    fn audit(&self, app: &App<'_>, user_id: &str, client: &Client) -> Option<Statement> {
        matches!(self, Accepted::RecoveryCode { .. }).then(|| {
            audit::record(
                app,
                audit::MFA_RECOVERY_CODE_USED,
                Some(user_id),
                client.ip_address.as_deref(),
                json!({}),
            )
        })
    }
}

/// Where a code was given: what a wrong one answers and what its audit event says.
#[derive(Clone, Copy)]
enum Purpose {
    Login,
    Confirm,
    RecoveryCodes,
    Disable,
}

impl Purpose {
    fn name(self) -> &'static str {
        match self {
            Purpose::Login => "login",
            Purpose::Confirm => "confirm",
            Purpose::RecoveryCodes => "recovery_codes",
            Purpose::Disable => "disable",
        }
    }

    fn wrong_code(self) -> Error {
        Error::InvalidMfaCode {
            at_login: matches!(self, Purpose::Login),
        }
    }
}

/// `POST /api/v1/users/me/mfa/totp`: starts (or restarts) an enrolment once the password
/// is confirmed. Not active until [`confirm`]ed.
pub fn enrol(
    app: &App<'_>,
    who: &Authenticated,
    password: &str,
    client: &Client,
) -> Result<Enrolment, Error> {
    let user = signed_in_user(app, who)?;
    auth::confirm_password(app, &user, password, client)?;
    if user.mfa_enabled {
        return Err(Error::MfaAlreadyEnabled);
    }
    let secret = app.env.random_bytes(totp::SECRET_BYTES);
    let sealed = seal(app, &user.id, &secret)?;
    let stored = app.db.batch(vec![
        Statement {
            expect_rows: Some(1),
            ..statement(
                "UPDATE users SET session_version = session_version + 1 \
                 WHERE id = ? AND mfa_enabled = 0",
                vec![text(&user.id)],
            )
        },
        statement(
            "DELETE FROM mfa_totp WHERE user_id = ?",
            vec![text(&user.id)],
        ),
        statement(
            "INSERT INTO mfa_totp (user_id, sealed_secret, last_step, created_at) \
             VALUES (?, ?, 0, ?)",
            vec![text(&user.id), text(sealed), integer(app.now())],
        ),
    ]);
    match stored {
        Ok(_) => {}
        Err(StoreError::ConditionFailed(_)) => return Err(Error::MfaAlreadyEnabled),
        Err(other) => return Err(other.into()),
    }
    let secret = BASE32_NOPAD.encode(&secret);
    let otpauth_uri = otpauth_uri(&app.settings.mfa_issuer, &user.username, &secret);
    let qr_svg = qr_svg(&otpauth_uri)?;
    Ok(Enrolment {
        secret,
        otpauth_uri,
        qr_svg,
    })
}

/// `POST /api/v1/users/me/mfa/totp/confirm`: a first code turns MFA on; the answer is
/// the recovery codes, shown this once.
pub fn confirm(
    app: &App<'_>,
    who: &Authenticated,
    code: &str,
    client: &Client,
) -> Result<Vec<String>, Error> {
    let user = signed_in_user(app, who)?;
    let factor = find_factor(app, &user.id)?
        .filter(|factor| !factor.confirmed && !user.mfa_enabled)
        .ok_or(Error::MfaNotPending)?;
    let step = match checked_code(app, &user, &factor, code, client, Purpose::Confirm)? {
        Accepted::Totp { step } => step,
        // No recovery code exists before the first confirmation.
        Accepted::RecoveryCode { .. } => return Err(Purpose::Confirm.wrong_code()),
    };
    let now = app.now();
    let codes = recovery::generate(app.env);
    let mut statements = vec![
        Statement {
            expect_rows: Some(1),
            ..statement(
                "UPDATE users SET mfa_enabled = 1, updated_at = ? \
                 WHERE id = ? AND mfa_enabled = 0",
                vec![integer(now), text(&user.id)],
            )
        },
        Statement {
            expect_rows: Some(1),
            ..statement(
                "UPDATE mfa_totp SET confirmed_at = ?, last_step = ? \
                 WHERE user_id = ? AND confirmed_at IS NULL AND sealed_secret = ?",
                vec![
                    integer(now),
                    integer(step),
                    text(&user.id),
                    text(&factor.sealed),
                ],
            )
        },
    ];
    statements.extend(replace_recovery_codes(app, &user.id, &codes));
    statements.push(audit::record(
        app,
        audit::MFA_ENABLED,
        Some(&user.id),
        client.ip_address.as_deref(),
        json!({ "method": "totp" }),
    ));
    match app.db.batch(statements) {
        Ok(_) => Ok(codes),
        Err(StoreError::ConditionFailed(_)) => Err(Error::MfaNotPending),
        Err(other) => Err(other.into()),
    }
}

/// `POST /api/v1/users/me/mfa/recovery-codes`: a code (TOTP or recovery) buys a new set
/// of recovery codes; the old ones stop working.
pub fn regenerate_recovery_codes(
    app: &App<'_>,
    who: &Authenticated,
    code: &str,
    client: &Client,
) -> Result<Vec<String>, Error> {
    let user = signed_in_user(app, who)?;
    let factor = enabled_factor(app, &user)?;
    let accepted = checked_code(app, &user, &factor, code, client, Purpose::RecoveryCodes)?;
    let codes = recovery::generate(app.env);
    let mut statements = vec![lock_enabled(&user.id), accepted.spend(&user.id)];
    statements.extend(replace_recovery_codes(app, &user.id, &codes));
    statements.extend(accepted.audit(app, &user.id, client));
    statements.push(audit::record(
        app,
        audit::MFA_RECOVERY_CODES_REGENERATED,
        Some(&user.id),
        client.ip_address.as_deref(),
        json!({ "method": accepted.method() }),
    ));
    run_guarded(app, statements, &user, client, Purpose::RecoveryCodes)?;
    Ok(codes)
}

/// `DELETE /api/v1/users/me/mfa`: the password and a code turn MFA off.
pub fn disable(
    app: &App<'_>,
    who: &Authenticated,
    password: &str,
    code: &str,
    client: &Client,
) -> Result<(), Error> {
    let user = signed_in_user(app, who)?;
    let factor = enabled_factor(app, &user)?;
    auth::confirm_password(app, &user, password, client)?;
    let accepted = checked_code(app, &user, &factor, code, client, Purpose::Disable)?;
    let mut statements = vec![lock_enabled(&user.id), accepted.spend(&user.id)];
    statements.extend(turn_off(app, &user.id));
    statements.extend(accepted.audit(app, &user.id, client));
    statements.push(audit::record(
        app,
        audit::MFA_DISABLED,
        Some(&user.id),
        client.ip_address.as_deref(),
        json!({ "method": accepted.method() }),
    ));
    run_guarded(app, statements, &user, client, Purpose::Disable)
}

/// `DELETE /api/v1/admin/users/{id}/mfa`: an admin turns a user's MFA off (and drops a
/// pending enrolment); `NotFound` for an unknown user.
pub fn admin_disable(
    app: &App<'_>,
    actor: &User,
    user_id: &str,
    client: &Client,
) -> Result<(), Error> {
    let user = users::find_by_id(app, user_id)?.ok_or(Error::NotFound)?;
    let mut statements = turn_off(app, &user.id);
    if user.mfa_enabled {
        statements.push(audit::record(
            app,
            audit::MFA_DISABLED,
            Some(&user.id),
            client.ip_address.as_deref(),
            json!({ "actor_id": actor.id }),
        ));
    }
    app.db.batch(statements)?;
    Ok(())
}

/// The statements that forget everything two-factor of a user (account deletion).
pub fn delete_statements(user_id: &str) -> Vec<Statement> {
    ["mfa_challenges", "mfa_recovery_codes", "mfa_totp"]
        .into_iter()
        .map(|table| {
            statement(
                &format!("DELETE FROM {table} WHERE user_id = ?"),
                vec![text(user_id)],
            )
        })
        .collect()
}

/// After a correct password of an account with MFA on: stores a challenge and answers
/// [`Error::MfaRequired`] with its `mfa_token`. The login throttle's count is left as it
/// is: only a second factor clears it.
pub fn challenge(app: &App<'_>, user: &User) -> Error {
    let mfa_token = app.new_opaque_token();
    let now = app.now();
    let stored = app.db.batch(vec![statement(
        "INSERT INTO mfa_challenges (token_hash, user_id, password_fingerprint, created_at, \
         expires_at, failures) VALUES (?, ?, ?, ?, ?, 0)",
        vec![
            text(tokens::hash_opaque(&mfa_token)),
            text(&user.id),
            text(tokens::hash_opaque(&user.password_hash)),
            integer(now),
            integer(now + i64::from(app.settings.mfa_token_ttl)),
        ],
    )]);
    match stored {
        Ok(_) => Error::MfaRequired { mfa_token },
        Err(error) => error.into(),
    }
}

/// A live challenge.
struct Challenge {
    token_hash: String,
    user_id: String,
    password_fingerprint: String,
}

/// `POST /api/v1/auth/mfa/verify`: an `mfa_token` and a code open the session the
/// password did not (device limit and audit as at login).
pub fn verify(app: &App<'_>, mfa_token: &str, code: &str, client: &Client) -> Result<Grant, Error> {
    let challenge = find_challenge(app, mfa_token)?.ok_or(Error::InvalidMfaToken)?;
    let user = users::find_by_id(app, &challenge.user_id)?
        .filter(|user| {
            let fingerprint = tokens::hash_opaque(&user.password_hash);
            user.is_active
                && user.mfa_enabled
                && bool::from(
                    fingerprint
                        .as_bytes()
                        .ct_eq(challenge.password_fingerprint.as_bytes()),
                )
        })
        .ok_or(Error::InvalidMfaToken)?;
    let factor = find_factor(app, &user.id)?
        .filter(|factor| factor.confirmed)
        .ok_or(Error::InvalidMfaToken)?;
    let subject = throttle_subject(&user);
    let ip = client.ip_address.as_deref();
    abuse::check_login_throttle(app, &subject, ip)?;
    let Some(accepted) = check_code(app, &user, &factor, code)? else {
        return Err(challenge_failed(app, &challenge, &user, client));
    };
    let opening = sessions::open_with(app, &user, client, Authentication::SecondFactor)?;
    let mut statements = opening.statements;
    let challenge_index = statements.len();
    statements.push(Statement {
        expect_rows: Some(1),
        ..statement(
            "UPDATE mfa_challenges SET spent_at = ? WHERE token_hash = ? \
             AND spent_at IS NULL AND expires_at > ?",
            vec![
                integer(app.now()),
                text(&challenge.token_hash),
                integer(app.now()),
            ],
        )
    });
    let code_index = statements.len();
    statements.push(accepted.spend(&user.id));
    statements.push(abuse::clear_login_failures(&subject));
    statements.extend(accepted.audit(app, &user.id, client));
    statements.push(audit::record(
        app,
        audit::LOGIN,
        Some(&user.id),
        ip,
        json!({ "session_id": opening.grant.session_id, "mfa": accepted.method() }),
    ));
    match app.db.batch(statements) {
        Ok(_) => Ok(opening.grant),
        Err(StoreError::ConditionFailed(index)) => Err(match index as usize {
            LIMIT_GUARD_INDEX => Error::SessionLimitReached,
            // Another request spent this code first (the same code on two hosts).
            index if index == code_index => challenge_failed(app, &challenge, &user, client),
            index if index == challenge_index => Error::InvalidMfaToken,
            // The account changed (password, deactivation, MFA) since the password step.
            _ => Error::InvalidMfaToken,
        }),
        Err(other) => Err(other.into()),
    }
}

/// The live challenge of an `mfa_token`: not spent, not expired.
fn find_challenge(app: &App<'_>, mfa_token: &str) -> Result<Option<Challenge>, Error> {
    if mfa_token.is_empty() || mfa_token.len() > MAX_MFA_TOKEN_LENGTH {
        return Ok(None);
    }
    let token_hash = tokens::hash_opaque(mfa_token);
    let row = app.db.query_one(
        "SELECT user_id, password_fingerprint FROM mfa_challenges \
         WHERE token_hash = ? AND spent_at IS NULL AND expires_at > ?",
        &[text(&token_hash), integer(app.now())],
    )?;
    row.map(|row| {
        Ok(Challenge {
            token_hash: token_hash.clone(),
            user_id: row.text(0)?,
            password_fingerprint: row.text(1)?,
        })
    })
    .transpose()
}

/// A wrong code at the second step of a login: one more failure on the challenge (the
/// fifth spends it), one more failed login for the throttle, and the audit event. The
/// error to answer: `InvalidMfaCode`, or `RateLimited` when failures that raced this one
/// reached the throttle's threshold.
fn challenge_failed(app: &App<'_>, challenge: &Challenge, user: &User, client: &Client) -> Error {
    // `spent_at` is assigned before `failures`: MySQL evaluates assignments in order.
    let counted = app.db.execute(
        "UPDATE mfa_challenges SET spent_at = CASE WHEN failures + 1 >= ? THEN ? \
         ELSE spent_at END, failures = failures + 1 \
         WHERE token_hash = ? AND spent_at IS NULL",
        &[
            integer(MAX_CODE_FAILURES),
            integer(app.now()),
            text(&challenge.token_hash),
        ],
    );
    if let Err(error) = counted {
        return error;
    }
    match wrong_code(app, user, client, Purpose::Login) {
        Ok(()) => Purpose::Login.wrong_code(),
        Err(error) => error,
    }
}

/// Checks a code of a signed-in user (confirm, recovery codes, disable) under the login
/// throttle: refused while the account must wait, and a wrong code counted.
fn checked_code(
    app: &App<'_>,
    user: &User,
    factor: &Factor,
    code: &str,
    client: &Client,
    purpose: Purpose,
) -> Result<Accepted, Error> {
    let subject = throttle_subject(user);
    abuse::check_login_throttle(app, &subject, client.ip_address.as_deref())?;
    match check_code(app, user, factor, code)? {
        Some(accepted) => Ok(accepted),
        None => {
            wrong_code(app, user, client, purpose)?;
            Err(purpose.wrong_code())
        }
    }
}

/// Which code `code` is, if it is a valid one: six digits are a TOTP code of the current
/// step or one either side, later than the last accepted step; anything else is looked
/// up as a recovery code.
fn check_code(
    app: &App<'_>,
    user: &User,
    factor: &Factor,
    code: &str,
) -> Result<Option<Accepted>, Error> {
    let code = code.trim();
    if totp::is_code_shaped(code) {
        let step = totp::matching_step(&factor.secret, code, app.now(), factor.last_step);
        return Ok(step.map(|step| Accepted::Totp { step }));
    }
    let Some(hash) = recovery::stored_hash(code) else {
        return Ok(None);
    };
    let found = app.db.query_one(
        "SELECT code_hash FROM mfa_recovery_codes WHERE code_hash = ? AND user_id = ?",
        &[text(&hash), text(&user.id)],
    )?;
    Ok(found.map(|_| Accepted::RecoveryCode { hash }))
}

/// Counts a wrong code as a failed login and records `mfa_challenge_failed`.
fn wrong_code(app: &App<'_>, user: &User, client: &Client, purpose: Purpose) -> Result<(), Error> {
    let ip = client.ip_address.as_deref();
    abuse::record_login_failure(app, &throttle_subject(user), ip)?;
    app.db.batch(vec![audit::record(
        app,
        audit::MFA_CHALLENGE_FAILED,
        Some(&user.id),
        ip,
        json!({ "purpose": purpose.name() }),
    )])?;
    Ok(())
}

/// The login throttle's key for the account (the one a password login counts under).
fn throttle_subject(user: &User) -> String {
    abuse::login_subject(Some(&user.id), &user.username)
}

/// Runs a batch that starts with [`lock_enabled`] and the spending of a code: a failed
/// lock is `MfaNotEnabled`, a code spent meanwhile a wrong code.
fn run_guarded(
    app: &App<'_>,
    statements: Vec<Statement>,
    user: &User,
    client: &Client,
    purpose: Purpose,
) -> Result<(), Error> {
    match app.db.batch(statements) {
        Ok(_) => Ok(()),
        Err(StoreError::ConditionFailed(0)) => Err(Error::MfaNotEnabled),
        Err(StoreError::ConditionFailed(_)) => {
            wrong_code(app, user, client, purpose)?;
            Err(purpose.wrong_code())
        }
        Err(other) => Err(other.into()),
    }
}

/// Takes the user's row lock on the condition that MFA is still on.
fn lock_enabled(user_id: &str) -> Statement {
    Statement {
        expect_rows: Some(1),
        ..statement(
            "UPDATE users SET session_version = session_version + 1 \
             WHERE id = ? AND mfa_enabled = 1",
            vec![text(user_id)],
        )
    }
}

/// The statements that turn MFA off: the flag, the secret, the recovery codes and any
/// open challenge.
fn turn_off(app: &App<'_>, user_id: &str) -> Vec<Statement> {
    let mut statements = vec![statement(
        "UPDATE users SET mfa_enabled = 0, updated_at = ? WHERE id = ?",
        vec![integer(app.now()), text(user_id)],
    )];
    statements.extend(delete_statements(user_id));
    statements
}

/// The statements that replace the user's recovery codes with `codes` (stored hashed).
fn replace_recovery_codes(app: &App<'_>, user_id: &str, codes: &[String]) -> Vec<Statement> {
    let mut statements = vec![statement(
        "DELETE FROM mfa_recovery_codes WHERE user_id = ?",
        vec![text(user_id)],
    )];
    statements.extend(codes.iter().filter_map(|code| {
        let hash = recovery::stored_hash(code)?;
        Some(statement(
            "INSERT INTO mfa_recovery_codes (code_hash, user_id, created_at) VALUES (?, ?, ?)",
            vec![text(hash), text(user_id), integer(app.now())],
        ))
    }));
    statements
}

/// The account of a checked access token.
fn signed_in_user(app: &App<'_>, who: &Authenticated) -> Result<User, Error> {
    users::find_by_id(app, &who.claims.sub)?.ok_or(Error::InvalidToken)
}

/// The confirmed factor of a user with MFA on; `MfaNotEnabled` otherwise.
fn enabled_factor(app: &App<'_>, user: &User) -> Result<Factor, Error> {
    if !user.mfa_enabled {
        return Err(Error::MfaNotEnabled);
    }
    find_factor(app, &user.id)?
        .filter(|factor| factor.confirmed)
        .ok_or(Error::MfaNotEnabled)
}

/// The user's TOTP secret, unsealed.
fn find_factor(app: &App<'_>, user_id: &str) -> Result<Option<Factor>, Error> {
    let row = app.db.query_one(
        "SELECT sealed_secret, confirmed_at, last_step FROM mfa_totp WHERE user_id = ?",
        &[text(user_id)],
    )?;
    let Some(row) = row else {
        return Ok(None);
    };
    let sealed = row.text(0)?;
    Ok(Some(Factor {
        secret: unseal(app, user_id, &sealed)?,
        sealed,
        confirmed: row.optional_integer(1)?.is_some(),
        last_step: row.integer(2)?,
    }))
}

/// `otpauth://totp/{issuer}:{username}?secret=…&issuer={issuer}&algorithm=SHA1&digits=6&period=30`
/// (Google Authenticator's key URI format), issuer and username percent-encoded.
fn otpauth_uri(issuer: &str, username: &str, secret: &str) -> String {
    let issuer = percent_encode(issuer);
    format!(
        "otpauth://totp/{issuer}:{}?secret={secret}&issuer={issuer}&algorithm=SHA1&digits={}&period={}",
        percent_encode(username),
        totp::DIGITS,
        totp::STEP_SECONDS,
    )
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn percent_encode(value: &str) -> String {
    value
        .bytes()
        .map(|byte| {
            if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
                char::from(byte).to_string()
            } else {
                format!("%{byte:02X}")
            }
        })
        .collect()
}

/// An SVG image of a QR code of `uri`.
fn qr_svg(uri: &str) -> Result<String, Error> {
    let code = qrcode::QrCode::new(uri.as_bytes())
        .map_err(|error| Error::Internal(format!("QR code: {error}")))?;
    Ok(code
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(200, 200)
        .build())
}

/// Seals a secret for storage: nonce ‖ (secret XOR pad) ‖ tag, base64url. The pad and the
/// tag are HMAC-SHA256 under a key derived from `PORTCULLIS_JWT_SECRET`, over the nonce
/// and the user id, so a copy of the database alone reveals no secret and a sealed
/// secret moved to another account does not unseal.
fn seal(app: &App<'_>, user_id: &str, secret: &[u8]) -> Result<String, Error> {
    let nonce = app.env.random_bytes(SEAL_NONCE_BYTES);
    let pad = seal_mac(app, b"pad", &nonce, user_id, &[])?;
    let sealed: Vec<u8> = secret.iter().zip(&pad).map(|(s, p)| s ^ p).collect();
    let tag = seal_mac(app, b"tag", &nonce, user_id, &sealed)?;
    let stored = [nonce.as_slice(), &sealed, &tag[..SEAL_TAG_BYTES]].concat();
    Ok(tokens::encode_opaque(&stored))
}

/// Recovers what [`seal`] sealed; an error naming the setting when the tag does not
/// match (the secret was sealed under another `PORTCULLIS_JWT_SECRET`).
fn unseal(app: &App<'_>, user_id: &str, stored: &str) -> Result<Vec<u8>, Error> {
    let malformed = || Error::Internal(format!("the TOTP secret of user {user_id} is malformed"));
    let bytes = tokens::decode_opaque(stored)
        .filter(|bytes| bytes.len() == SEAL_NONCE_BYTES + totp::SECRET_BYTES + SEAL_TAG_BYTES)
        .ok_or_else(malformed)?;
    let (nonce, rest) = bytes.split_at(SEAL_NONCE_BYTES);
    let (sealed, tag) = rest.split_at(totp::SECRET_BYTES);
    let expected = seal_mac(app, b"tag", nonce, user_id, sealed)?;
    if !bool::from(expected[..SEAL_TAG_BYTES].ct_eq(tag)) {
        return Err(Error::Internal(format!(
            "PORTCULLIS_JWT_SECRET: the TOTP secret of user {user_id} was sealed with another \
             secret; give this host the secret the other hosts of this database use"
        )));
    }
    let pad = seal_mac(app, b"pad", nonce, user_id, &[])?;
    Ok(sealed.iter().zip(&pad).map(|(s, p)| s ^ p).collect())
}

/// HMAC-SHA256(SHA-256("portcullis-mfa-seal:" ‖ secret), purpose ‖ nonce ‖ user id ‖ data).
fn seal_mac(
    app: &App<'_>,
    purpose: &[u8],
    nonce: &[u8],
    user_id: &str,
    data: &[u8],
) -> Result<Vec<u8>, Error> {
    let key = Sha256::new()
        .chain_update(b"portcullis-mfa-seal:")
        .chain_update(&app.settings.jwt_secret)
        .finalize();
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&key)
        .map_err(|error| Error::Internal(format!("hmac: {error}")))?;
    for part in [
        purpose,
        b":".as_slice(),
        nonce,
        user_id.as_bytes(),
        b":",
        data,
    ] {
        mac.update(part);
    }
    Ok(mac.finalize().into_bytes().to_vec())
}

#[cfg(test)]
mod tests;
