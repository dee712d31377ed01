//! The account lifecycle over HTTP (API.md §5, §6), with the tokens of the links the
//! host really mails: email verification (API and page), forgotten and reset passwords
//! (API and page), required verification, password change, profile changes and
//! deletion. Mail goes to an in-process SMTP sink (see `mail`), on a database of the
//! test's own.

use reqwest::Method;
use reqwest::blocking::Response;
use serde_json::{Value, json};

use crate::mail::{
    PrivateDatabase, SmtpSink, mailing_app, private_database, sql_text, unknown_address,
    user_with_verification_mail,
};
use crate::support::{
    STRONG_PASSWORD, TestApp, assert_problem, assert_user_resource, codes_for, header, json_body,
    spawn_app, unique_user, validation_errors,
};

/// A password that passes the `complex` policy for any user of `unique_user`.
const NEW_PASSWORD: &str = "N3w!Quiet-Meadow";

/// What a mail page's response must carry: HTML, no referrer, a CSP without scripts.
fn assert_page(response: Response, status: u16) -> String {
    assert_eq!(response.status().as_u16(), status, "page status");
    let content_type = header(&response, "content-type").unwrap_or_default();
    assert!(content_type.starts_with("text/html"), "{content_type}");
    assert_eq!(
        header(&response, "referrer-policy").as_deref(),
        Some("no-referrer"),
        "the token in the URL must not leak through Referer"
    );
    let csp = header(&response, "content-security-policy").unwrap_or_default();
    assert!(csp.contains("default-src 'none'"), "CSP: {csp:?}");
    assert!(
        !csp.contains("script-src"),
        "the pages need no script: {csp:?}"
    );
    response.text().expect("page body")
}

/// POSTs an HTML form (`application/x-www-form-urlencoded`).
pub fn post_form(app: &TestApp, path: &str, fields: &[(&str, &str)]) -> Response {
    app.request(Method::POST, path)
        .form(fields)
        .send()
        .expect("post the form")
}

pub fn verify(app: &TestApp, token: &str) -> Response {
    app.post_json("/api/v1/auth/email/verify", &json!({ "token": token }))
}

pub fn reset(app: &TestApp, token: &str, new_password: &str) -> Response {
    app.post_json(
        "/api/v1/auth/password/reset",
        &json!({ "token": token, "new_password": new_password }),
    )
}

pub fn forgot(app: &TestApp, email: &str) -> Response {
    app.post_json("/api/v1/auth/password/forgot", &json!({ "email": email }))
}

pub fn me(app: &TestApp, access_token: &str) -> Response {
    app.get_with_token("/api/v1/users/me", access_token)
}

pub fn refresh(app: &TestApp, refresh_token: &str) -> Response {
    app.post_json(
        "/api/v1/auth/refresh",
        &json!({ "refresh_token": refresh_token }),
    )
}

/// A request with a bearer token and a JSON body.
pub fn send_json(app: &TestApp, method: Method, path: &str, token: &str, body: &Value) -> Response {
    app.request(method, path)
        .bearer_auth(token)
        .json(body)
        .send()
        .expect("request")
}

pub fn string(value: &Value, field: &str) -> String {
    value[field]
        .as_str()
        .unwrap_or_else(|| panic!("no {field} in {value}"))
        .to_owned()
}

/// Asks for a reset of `email`'s password and returns the mailed token.
pub fn mailed_reset_token(app: &TestApp, sink: &SmtpSink, email: &str) -> String {
    json_body(forgot(app, email), 202);
    let mail = sink.wait_for(email);
    assert_eq!(
        mail.header("subject").as_deref(),
        Some("Reset your password")
    );
    mail.token("/reset-password")
}

/// Makes every token mailed to `user_id` expired.
fn expire_tokens(database: &PrivateDatabase, user_id: &str) {
    database.execute(&format!(
        "UPDATE email_tokens SET expires_at = 1 WHERE user_id = {}",
        sql_text(user_id)
    ));
}

api_tests! {
    /// verify-request mails a link; its token verifies the address once (200 with
    /// `email_verified: true`), and a verified address cannot ask again (409).
    fn the_mailed_verification_token_verifies_the_address_once() {
        let database = private_database();
        let sink = SmtpSink::start();
        let app = mailing_app(&database, &sink, &[]);
        let (email, access_token, token) = user_with_verification_mail(&app, &sink);

        let user = json_body(verify(&app, &token), 200);
        assert_user_resource(&user);
        assert_eq!(user["email"], email.as_str());
        assert_eq!(user["email_verified"], true);
        assert_eq!(json_body(me(&app, &access_token), 200)["email_verified"], true);

        assert_problem(verify(&app, &token), 400, "invalid_verification_token");
        let again = app
            .request(Method::POST, "/api/v1/auth/email/verify-request")
            .bearer_auth(&access_token)
            .send()
            .expect("verify-request");
        assert_problem(again, 409, "already_verified");
    }

    /// Unknown, used and expired verification tokens all answer 400
    /// `invalid_verification_token`.
    fn unknown_used_and_expired_verification_tokens_are_refused() {
        let database = private_database();
        let sink = SmtpSink::start();
        let app = mailing_app(&database, &sink, &[]);
        assert_problem(
            verify(&app, "an-unknown-token-of-a-plausible-length-0123456789"),
            400,
            "invalid_verification_token",
        );

        let (_, _, used) = user_with_verification_mail(&app, &sink);
        json_body(verify(&app, &used), 200);
        assert_problem(verify(&app, &used), 400, "invalid_verification_token");

        let (_, access_token, expired) = user_with_verification_mail(&app, &sink);
        let user_id = string(&json_body(me(&app, &access_token), 200), "id");
        expire_tokens(&database, &user_id);
        assert_problem(verify(&app, &expired), 400, "invalid_verification_token");
        assert_eq!(json_body(me(&app, &access_token), 200)["email_verified"], false);
    }

    /// `GET /verify-email?token=T` shows a form and spends nothing (mail scanners fetch
    /// links); the form's POST verifies, once.
    fn the_verify_page_shows_a_form_and_only_its_post_spends_the_token() {
        let database = private_database();
        let sink = SmtpSink::start();
        let app = mailing_app(&database, &sink, &[]);
        let (_, access_token, token) = user_with_verification_mail(&app, &sink);

        for _ in 0..2 {
            let page = assert_page(app.get(&format!("/verify-email?token={token}")), 200);
            assert!(page.contains("<form method=\"post\""), "{page}");
            assert!(page.contains(&format!("value=\"{token}\"")), "{page}");
        }
        assert_eq!(json_body(me(&app, &access_token), 200)["email_verified"], false);

        assert_page(post_form(&app, "/verify-email", &[("token", &token)]), 200);
        assert_eq!(json_body(me(&app, &access_token), 200)["email_verified"], true);
        assert_page(post_form(&app, "/verify-email", &[("token", &token)]), 400);
        assert_problem(verify(&app, &token), 400, "invalid_verification_token");
    }

    /// forgot answers 202 with the same body for a known and an unknown address; only
    /// the known one gets a mail.
    fn forgot_password_answers_alike_and_mails_only_known_addresses() {
        let database = private_database();
        let sink = SmtpSink::start();
        let app = mailing_app(&database, &sink, &[]);
        let (user, _, _) = app.registered_user();
        let unknown = unknown_address();

        let for_unknown = json_body(forgot(&app, &unknown), 202);
        let for_known = json_body(forgot(&app, &user.email), 202);
        assert_eq!(for_unknown, for_known);
        let mail = sink.wait_for(&user.email);
        mail.token("/reset-password");
        assert!(sink.mails_to(&unknown).is_empty(), "a mail to an unknown address");

        let errors = validation_errors(forgot(&app, "not-an-address"));
        assert_eq!(codes_for(&errors, "email"), ["invalid_format"]);
    }

    /// The mailed reset token sets a new password (204), revokes every session, works
    /// once; the old password stops working and the new one works.
    fn reset_with_the_mailed_token_revokes_every_session_and_is_single_use() {
        let database = private_database();
        let sink = SmtpSink::start();
        let app = mailing_app(&database, &sink, &[]);
        let (user, first_access, first) = app.registered_user();
        let second = app.login_ok(&user.username, STRONG_PASSWORD);
        let token = mailed_reset_token(&app, &sink, &user.email);

        let errors = validation_errors(reset(&app, &token, "short"));
        assert!(!codes_for(&errors, "new_password").is_empty(), "{errors:?}");
        assert_eq!(reset(&app, &token, NEW_PASSWORD).status().as_u16(), 204);

        assert_problem(me(&app, &first_access), 401, "invalid_token");
        assert_problem(me(&app, &string(&second, "access_token")), 401, "invalid_token");
        for session in [&first, &second] {
            let status = refresh(&app, &string(session, "refresh_token")).status();
            assert_eq!(status.as_u16(), 401, "a refresh token outlived the reset");
        }
        assert_problem(app.login(&user.username, STRONG_PASSWORD), 401, "invalid_credentials");
        app.login_ok(&user.email, NEW_PASSWORD);
        assert_problem(reset(&app, &token, "An0ther!Quiet-Meadow"), 400, "invalid_reset_token");
        assert_problem(reset(&app, "an-unknown-reset-token", NEW_PASSWORD), 400, "invalid_reset_token");
    }

    /// `GET /reset-password?token=T` shows a form and spends nothing; two different
    /// passwords are refused without spending it; the form's POST sets the password.
    fn the_reset_page_shows_a_form_and_its_post_sets_the_password() {
        let database = private_database();
        let sink = SmtpSink::start();
        let app = mailing_app(&database, &sink, &[]);
        let (user, _, _) = app.registered_user();
        let token = mailed_reset_token(&app, &sink, &user.email);

        let page = assert_page(app.get(&format!("/reset-password?token={token}")), 200);
        assert!(page.contains("<form method=\"post\""), "{page}");
        assert!(page.contains("name=\"new_password\""), "{page}");
        let differ = [
            ("token", token.as_str()),
            ("new_password", NEW_PASSWORD),
            ("confirm_password", "Something!Else42"),
        ];
        assert_page(post_form(&app, "/reset-password", &differ), 422);
        app.login_ok(&user.username, STRONG_PASSWORD);

        let fields = [
            ("token", token.as_str()),
            ("new_password", NEW_PASSWORD),
            ("confirm_password", NEW_PASSWORD),
        ];
        assert_page(post_form(&app, "/reset-password", &fields), 200);
        app.login_ok(&user.username, NEW_PASSWORD);
        assert_page(post_form(&app, "/reset-password", &fields), 400);
    }

    /// With `PORTCULLIS_REQUIRE_EMAIL_VERIFICATION=true`: registration gives no tokens and
    /// mails a verification link; login is 403 `email_not_verified` only after a correct
    /// password, and works once the address is verified.
    fn required_verification_blocks_login_until_the_address_is_verified() {
        let database = private_database();
        let sink = SmtpSink::start();
        let app = mailing_app(
            &database,
            &sink,
            &[("PORTCULLIS_REQUIRE_EMAIL_VERIFICATION", "true")],
        );
        let user = unique_user();
        let body = json_body(
            app.register(&user.username, &user.email, &user.password),
            201,
        );
        assert_eq!(body["verification_required"], true, "{body}");
        assert_user_resource(&body["user"]);
        assert_eq!(body["user"]["email_verified"], false);
        for field in ["access_token", "refresh_token", "session_id"] {
            assert!(body.get(field).is_none(), "{field} without verification: {body}");
        }

        assert_problem(app.login(&user.username, "Wr0ng!Password#1"), 401, "invalid_credentials");
        assert_problem(app.login(&user.username, &user.password), 403, "email_not_verified");

        let token = sink.wait_for(&user.email).token("/verify-email");
        json_body(verify(&app, &token), 200);
        app.login_ok(&user.username, &user.password);
    }

    /// A password change needs the current password and a valid new one; it keeps the
    /// session that made it and revokes every other.
    fn changing_the_password_revokes_the_other_sessions() {
        let app = spawn_app();
        let (user, current_access, current) = app.registered_user();
        let other = app.login_ok(&user.username, STRONG_PASSWORD);
        let change = |current_password: &str, new_password: &str| {
            send_json(
                &app,
                Method::POST,
                "/api/v1/users/me/password",
                &current_access,
                &json!({ "current_password": current_password, "new_password": new_password }),
            )
        };

        assert_problem(change("Wr0ng!Password#1", NEW_PASSWORD), 401, "invalid_credentials");
        let errors = validation_errors(change(STRONG_PASSWORD, "short"));
        assert!(!codes_for(&errors, "new_password").is_empty(), "{errors:?}");
        assert_eq!(change(STRONG_PASSWORD, NEW_PASSWORD).status().as_u16(), 204);

        json_body(me(&app, &current_access), 200);
        assert_problem(me(&app, &string(&other, "access_token")), 401, "invalid_token");
        let status = refresh(&app, &string(&other, "refresh_token")).status();
        assert_eq!(status.as_u16(), 401, "the other session's refresh token still works");
        json_body(refresh(&app, &string(&current, "refresh_token")), 200);
        assert_problem(app.login(&user.username, STRONG_PASSWORD), 401, "invalid_credentials");
        app.login_ok(&user.username, NEW_PASSWORD);
    }

    /// A new email address is unverified and gets a verification mail of its own; a
    /// link mailed to the old address no longer verifies anything.
    fn a_new_email_address_is_unverified_and_gets_a_verification_mail() {
        let database = private_database();
        let sink = SmtpSink::start();
        let app = mailing_app(&database, &sink, &[]);
        let (_, access_token, first) = user_with_verification_mail(&app, &sink);
        json_body(verify(&app, &first), 200);

        let old_address_token = {
            let new_email = unknown_address();
            let body = json!({
                "email": new_email.to_uppercase(),
                "current_password": STRONG_PASSWORD,
            });
            let user = json_body(
                send_json(&app, Method::PATCH, "/api/v1/users/me", &access_token, &body),
                200,
            );
            assert_eq!(user["email"], new_email.as_str(), "stored lower-cased");
            assert_eq!(user["email_verified"], false);
            sink.wait_for(&new_email).token("/verify-email")
        };
        let newest_email = unknown_address();
        let body = json!({ "email": newest_email, "current_password": STRONG_PASSWORD });
        json_body(
            send_json(&app, Method::PATCH, "/api/v1/users/me", &access_token, &body),
            200,
        );
        assert_problem(verify(&app, &old_address_token), 400, "invalid_verification_token");

        let token = sink.wait_for(&newest_email).token("/verify-email");
        let user = json_body(verify(&app, &token), 200);
        assert_eq!(user["email"], newest_email.as_str());
        assert_eq!(user["email_verified"], true);
    }

    /// PATCH /users/me: 409 for a username (any case) or email another account has, 422
    /// for bad values (every field reported), and nothing changes on failure.
    fn profile_changes_are_checked() {
        let app = spawn_app();
        let (taken, _, _) = app.registered_user();
        let (user, access_token, _) = app.registered_user();
        let patch = |body: Value| {
            send_json(&app, Method::PATCH, "/api/v1/users/me", &access_token, &body)
        };

        let body = json!({ "username": taken.username.to_uppercase() });
        assert_problem(patch(body), 409, "username_taken");
        let body = json!({ "email": taken.email, "current_password": STRONG_PASSWORD });
        assert_problem(patch(body), 409, "email_taken");
        let errors = validation_errors(patch(json!({
            "username": "a",
            "email": "not-an-address",
            "mobile_number": "12",
        })));
        for field in ["username", "email", "mobile_number"] {
            assert!(!codes_for(&errors, field).is_empty(), "{field}: {errors:?}");
        }
        let unchanged = json_body(me(&app, &access_token), 200);
        assert_eq!(unchanged["username"], user.username.as_str());
        assert_eq!(unchanged["email"], user.email.as_str());

        let renamed = format!("{}_x", user.username);
        let changed = json_body(patch(json!({ "username": renamed })), 200);
        assert_user_resource(&changed);
        assert_eq!(changed["username"], renamed.as_str());
        app.login_ok(&renamed, STRONG_PASSWORD);
    }

    /// DELETE /users/me needs the password; afterwards every token is dead and the
    /// username and email can be registered again.
    fn deleting_the_account_frees_its_identity() {
        let app = spawn_app();
        let (user, access_token, tokens) = app.registered_user();
        let delete = |password: &str| {
            send_json(
                &app,
                Method::DELETE,
                "/api/v1/users/me",
                &access_token,
                &json!({ "password": password }),
            )
        };

        assert_problem(delete("Wr0ng!Password#1"), 401, "invalid_credentials");
        json_body(me(&app, &access_token), 200);
        assert_eq!(delete(STRONG_PASSWORD).status().as_u16(), 204);

        assert_problem(me(&app, &access_token), 401, "invalid_token");
        let status = refresh(&app, &string(&tokens, "refresh_token")).status();
        assert_eq!(status.as_u16(), 401, "a refresh token outlived the account");
        assert_problem(app.login(&user.username, STRONG_PASSWORD), 401, "invalid_credentials");
        app.register_user(&user);
        app.login_ok(&user.email, STRONG_PASSWORD);
    }
}
