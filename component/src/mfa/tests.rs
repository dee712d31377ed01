//! The rules of `crate::mfa` on the in-memory store with the test clock.

use super::*;
use crate::auth::{self, Registered, Registration};
use crate::testing::Harness;

const PASSWORD: &str = "Tr1cky!Horse#42";

fn client() -> Client {
    Client::new(Some("test-agent".into()), Some("127.0.0.1".into()))
}

/// Registers `john_doe` and returns his signed-in identity.
fn signed_up(harness: &Harness) -> Authenticated {
    let app = harness.app();
    let input = Registration {
        username: "john_doe".into(),
        email: "john@example.com".into(),
        password: PASSWORD.into(),
        mobile_number: None,
    };
    let Registered::SignedIn(grant) = auth::register(&app, &input, &client()).unwrap() else {
        panic!("expected a session");
    };
    auth::verify_access_token(&app, &grant.access_token).unwrap()
}

/// The code of the step `offset` steps from now.
fn code_at(harness: &Harness, secret: &str, offset: i64) -> String {
    let secret = BASE32_NOPAD.decode(secret.as_bytes()).unwrap();
    let step = totp::step_at(harness.app().now()) + offset;
    totp::code(&secret, step, totp::DIGITS)
}

/// Enrols and confirms; returns the secret and the recovery codes.
fn enabled(harness: &Harness, who: &Authenticated) -> (String, Vec<String>) {
    let app = harness.app();
    let enrolment = enrol(&app, who, PASSWORD, &client()).unwrap();
    let codes = confirm(
        &app,
        who,
        &code_at(harness, &enrolment.secret, 0),
        &client(),
    )
    .unwrap();
    (enrolment.secret, codes)
}

fn mfa_token(harness: &Harness) -> String {
    match auth::login(&harness.app(), "john_doe", PASSWORD, &client()) {
        Err(Error::MfaRequired { mfa_token }) => mfa_token,
        other => panic!("expected mfa_required, got {other:?}"),
    }
}

fn amr(harness: &Harness, access_token: &str) -> Vec<String> {
    auth::verify_access_token(&harness.app(), access_token)
        .unwrap()
        .claims
        .amr
}

#[test]
fn enrolment_shows_the_secret_in_a_uri_and_a_qr_code_and_stores_it_sealed() {
    let harness = Harness::new(&[("mfa_issuer", "Acme Corp")]);
    let who = signed_up(&harness);
    let enrolment = enrol(&harness.app(), &who, PASSWORD, &client()).unwrap();
    assert_eq!(enrolment.secret.len(), 32, "160 bits in base32");
    assert_eq!(
        enrolment.otpauth_uri,
        format!(
            "otpauth://totp/Acme%20Corp:john_doe?secret={}&issuer=Acme%20Corp\
             &algorithm=SHA1&digits=6&period=30",
            enrolment.secret
        )
    );
    assert!(enrolment.qr_svg.contains("<svg"));
    let stored = harness
        .app()
        .db
        .query_one("SELECT sealed_secret FROM mfa_totp", &[])
        .unwrap()
        .unwrap()
        .text(0)
        .unwrap();
    let raw = BASE32_NOPAD.decode(enrolment.secret.as_bytes()).unwrap();
    assert!(!stored.contains(&enrolment.secret));
    assert!(!stored.contains(&tokens::encode_opaque(&raw)));
    assert_eq!(
        unseal(&harness.app(), &who.claims.sub, &stored).unwrap(),
        raw
    );
    // Another service secret cannot unseal it.
    let mut other = Harness::new(&[]);
    other.settings.jwt_secret = b"another-secret-of-at-least-thirty-two-bytes".to_vec();
    assert!(matches!(
        unseal(&other.app(), &who.claims.sub, &stored),
        Err(Error::Internal(_))
    ));
    // Nor does it unseal for another account.
    assert!(unseal(&harness.app(), "someone-else", &stored).is_err());
}

#[test]
fn a_confirmed_enrolment_turns_a_password_login_into_a_challenge() {
    let harness = Harness::new(&[("max_sessions", "0")]);
    let app = harness.app();
    let who = signed_up(&harness);
    assert_eq!(
        confirm(&app, &who, "123456", &client()),
        Err(Error::MfaNotPending)
    );
    let (secret, recovery_codes) = enabled(&harness, &who);
    assert_eq!(recovery_codes.len(), 10);
    assert_eq!(
        enrol(&app, &who, PASSWORD, &client()),
        Err(Error::MfaAlreadyEnabled)
    );
    assert!(
        users::find_by_id(&app, &who.claims.sub)
            .unwrap()
            .unwrap()
            .mfa_enabled
    );

    // The confirming code's step is spent; the next step's code opens a session.
    let token = mfa_token(&harness);
    assert_eq!(
        verify(&app, &token, &code_at(&harness, &secret, 0), &client()),
        Err(Error::InvalidMfaCode { at_login: true })
    );
    let grant = verify(&app, &token, &code_at(&harness, &secret, 1), &client()).unwrap();
    assert_eq!(amr(&harness, &grant.access_token), ["pwd", "otp", "mfa"]);
    assert_eq!(
        verify(&app, &token, &code_at(&harness, &secret, 1), &client()),
        Err(Error::InvalidMfaToken),
        "an mfa_token is single-use"
    );
    // A refresh keeps the session's amr.
    let refreshed = crate::refresh::refresh(&app, &grant.refresh_token, &client()).unwrap();
    assert_eq!(
        amr(&harness, &refreshed.access_token),
        ["pwd", "otp", "mfa"]
    );

    // The same code with another mfa_token: spent.
    let token = mfa_token(&harness);
    assert_eq!(
        verify(&app, &token, &code_at(&harness, &secret, 1), &client()),
        Err(Error::InvalidMfaCode { at_login: true })
    );
    // A recovery code works once, written any way.
    let recovery = recovery_codes[3].to_uppercase().replace('-', " ");
    assert!(verify(&app, &token, &recovery, &client()).is_ok());
    let token = mfa_token(&harness);
    assert_eq!(
        verify(&app, &token, &recovery_codes[3], &client()),
        Err(Error::InvalidMfaCode { at_login: true })
    );
}

#[test]
fn five_wrong_codes_spend_an_mfa_token_and_count_as_failed_logins() {
    let harness = Harness::new(&[("login_throttle", "100")]);
    let app = harness.app();
    let who = signed_up(&harness);
    let (secret, _) = enabled(&harness, &who);
    let token = mfa_token(&harness);
    for _ in 0..5 {
        assert_eq!(
            verify(&app, &token, "000000", &client()),
            Err(Error::InvalidMfaCode { at_login: true })
        );
    }
    assert_eq!(
        verify(&app, &token, &code_at(&harness, &secret, 1), &client()),
        Err(Error::InvalidMfaToken)
    );
    let failures = app
        .db
        .query_one("SELECT failures FROM login_failures", &[])
        .unwrap()
        .unwrap()
        .integer(0)
        .unwrap();
    assert_eq!(failures, 5);
}

#[test]
fn an_expired_mfa_token_is_refused() {
    let harness = Harness::new(&[("mfa_token_ttl", "60")]);
    let who = signed_up(&harness);
    let (secret, _) = enabled(&harness, &who);
    let token = mfa_token(&harness);
    harness.env.advance(61);
    assert_eq!(
        verify(
            &harness.app(),
            &token,
            &code_at(&harness, &secret, 0),
            &client()
        ),
        Err(Error::InvalidMfaToken)
    );
}

#[test]
fn turning_off_needs_the_password_and_a_code_and_forgets_everything() {
    let harness = Harness::new(&[]);
    let app = harness.app();
    let who = signed_up(&harness);
    let (secret, codes) = enabled(&harness, &who);
    let next = code_at(&harness, &secret, 1);
    assert_eq!(
        disable(&app, &who, "Wrong!Horse#42", &next, &client()),
        Err(Error::InvalidCredentials)
    );
    assert_eq!(
        disable(&app, &who, PASSWORD, "999999", &client()),
        Err(Error::InvalidMfaCode { at_login: false })
    );
    disable(&app, &who, PASSWORD, &codes[0], &client()).unwrap();
    assert_eq!(
        disable(&app, &who, PASSWORD, &next, &client()),
        Err(Error::MfaNotEnabled)
    );
    for table in ["mfa_totp", "mfa_recovery_codes"] {
        let count = app
            .db
            .query_one(&format!("SELECT COUNT(*) FROM {table}"), &[])
            .unwrap()
            .unwrap()
            .integer(0)
            .unwrap();
        assert_eq!(count, 0, "{table}");
    }
    let grant = auth::login(&app, "john_doe", PASSWORD, &client()).unwrap();
    assert_eq!(amr(&harness, &grant.access_token), ["pwd"]);
}
