//! The account-security rules (API.md §11), tried as an attacker would: the races
//! between password, email and session changes are hammered over many rounds and several
//! clients rather than hoped for; tokens that must die with an address or a password;
//! password checks behind a bearer token under the login throttle; a deactivated
//! account's links; the mail pages under the rate limit; mail bodies with tokens leaving
//! the outbox; the SQLite files' modes.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use reqwest::Method;
use reqwest::blocking::Response;
use serde_json::{Value, json};

use crate::account::{
    forgot, mailed_reset_token, me, post_form, refresh, reset, send_json, string, verify,
};
use crate::admin::admin_settings;
use crate::backends::Backend;
use crate::mail::{
    MAIL_DEADLINE, PrivateDatabase, SmtpSink, free_port, mailing_app, private_database, sql_text,
    unknown_address, user_with_verification_mail,
};
use crate::support::{
    STRONG_PASSWORD, TestApp, TestUser, assert_problem, backend, codes_for, header, json_body,
    unique_user, validation_errors,
};

/// A password that passes the `complex` policy for any user of `unique_user`.
const NEW_PASSWORD: &str = "N3w!Quiet-Meadow";
/// A wrong password of the right shape.
const WRONG_PASSWORD: &str = "Wr0ng!Guess#77";
/// Clients logging in with the old password while it changes.
const RACING_CLIENTS: usize = 6;

/// Settings that let the races run as fast as the host can: no per-IP limit, no login
/// throttle (the racing logins fail once the password changed), no device limit.
const RACE_SETTINGS: [(&str, &str); 3] = [
    ("PORTCULLIS_RATE_LIMIT", "off"),
    ("PORTCULLIS_LOGIN_THROTTLE", "0"),
    ("PORTCULLIS_MAX_SESSIONS", "0"),
];

/// `PATCH /api/v1/users/me` with `body`.
fn patch_me(app: &TestApp, access_token: &str, body: &Value) -> Response {
    send_json(app, Method::PATCH, "/api/v1/users/me", access_token, body)
}

/// `POST /api/v1/users/me/password`.
fn change_password(app: &TestApp, access_token: &str, current: &str, new: &str) -> Response {
    send_json(
        app,
        Method::POST,
        "/api/v1/users/me/password",
        access_token,
        &json!({ "current_password": current, "new_password": new }),
    )
}

/// Logs in with `password` from [`RACING_CLIENTS`] threads, over and over, while
/// `change` runs; returns every (access, refresh) token pair a login handed out. The
/// logins go on until `change` has answered.
fn logins_racing(
    app: &TestApp,
    user: &TestUser,
    password: &str,
    change: impl FnOnce(),
) -> Vec<(String, String)> {
    let changed = AtomicBool::new(false);
    let grants = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..RACING_CLIENTS {
            scope.spawn(|| {
                while !changed.load(Ordering::SeqCst) {
                    let response = app.login(&user.username, password);
                    match response.status().as_u16() {
                        200 => {
                            let body = json_body(response, 200);
                            let pair = (
                                string(&body, "access_token"),
                                string(&body, "refresh_token"),
                            );
                            grants.lock().expect("grants").push(pair);
                        }
                        401 => {}
                        other => panic!("a racing login answered {other}: {:?}", response.text()),
                    }
                }
            });
        }
        // Let the logins get going (one has answered, so that others are inside their
        // password check when the change commits), however slow the machine is.
        // (Not past a minute: assert_all_dead then says that none got through.)
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while grants.lock().expect("grants").is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        change();
        changed.store(true, Ordering::SeqCst);
    });
    grants.into_inner().expect("grants")
}

/// No token of `grants` works any more: neither the access token nor the refresh token.
fn assert_all_dead(app: &TestApp, grants: &[(String, String)], what: &str) {
    assert!(
        !grants.is_empty(),
        "{what}: no racing login got through at all"
    );
    let mut alive = 0;
    for (access_token, refresh_token) in grants {
        if me(app, access_token).status().as_u16() != 401 {
            alive += 1;
        }
        if refresh(app, refresh_token).status().as_u16() != 401 {
            alive += 1;
        }
    }
    assert_eq!(
        alive,
        0,
        "{what}: {alive} tokens of {} logins with the old password still work",
        grants.len()
    );
}

/// The account as its owner sees it, logged in afresh with whichever password works.
fn current_account(app: &TestApp, login: &str) -> Value {
    for password in [NEW_PASSWORD, STRONG_PASSWORD] {
        let response = app.login(login, password);
        if response.status().as_u16() == 200 {
            let body = json_body(response, 200);
            return json_body(me(app, &string(&body, "access_token")), 200);
        }
    }
    panic!("{login} can log in with neither password");
}

/// Asks for a reset of `email`'s password and returns the token of the reset mail,
/// however many mails the address got before.
fn fresh_reset_token(app: &TestApp, sink: &SmtpSink, email: &str) -> String {
    let before = sink.mails_to(email).len();
    json_body(forgot(app, email), 202);
    let mails = sink.wait_for_count(email, before + 1, MAIL_DEADLINE);
    let mail = mails.last().expect("the reset mail");
    assert_eq!(
        mail.header("subject").as_deref(),
        Some("Reset your password")
    );
    mail.token("/reset-password")
}

/// Counts the mail bodies still holding a token in the outbox of `database`.
fn bodies_with_tokens(database: &PrivateDatabase, recipient: &str) -> i64 {
    database.count(&format!(
        "SELECT COUNT(*) FROM outbox WHERE recipient = {} AND (text_body <> '' OR html_body <> '')",
        sql_text(recipient)
    ))
}

/// Waits (at most a minute) until `done` holds.
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: not within a minute"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

api_tests! {
    /// Six clients log in with the old password, over and over, while the owner changes
    /// it: once the change has answered, no token any of those logins got works, over
    /// several rounds (each a fresh account).
    fn no_session_opened_with_the_old_password_outlives_a_password_change() {
        let app = TestApp::spawn_with(&RACE_SETTINGS);
        for round in 0..4 {
            let (user, owner_token, _) = app.registered_user();
            let grants = logins_racing(&app, &user, STRONG_PASSWORD, || {
                let response = change_password(&app, &owner_token, STRONG_PASSWORD, NEW_PASSWORD);
                assert_eq!(response.status().as_u16(), 204, "round {round}: the change");
            });
            assert_all_dead(&app, &grants, &format!("round {round}"));
            app.login_ok(&user.username, NEW_PASSWORD);
        }
    }

    /// The same with a reset by the mailed link instead of a change.
    fn no_session_opened_with_the_old_password_outlives_a_reset() {
        let database = private_database();
        let sink = SmtpSink::start();
        let app = mailing_app(&database, &sink, &RACE_SETTINGS);
        for round in 0..3 {
            let (user, _, _) = app.registered_user();
            let token = mailed_reset_token(&app, &sink, &user.email);
            let grants = logins_racing(&app, &user, STRONG_PASSWORD, || {
                let response = reset(&app, &token, NEW_PASSWORD);
                assert_eq!(response.status().as_u16(), 204, "round {round}: the reset");
            });
            assert_all_dead(&app, &grants, &format!("round {round}"));
        }
    }

    /// The review's account takeover: a reset of one's own address sent together with a
    /// change of the email to someone else's. Whatever the order they commit in, the
    /// other address never ends up verified.
    fn a_reset_racing_an_email_change_never_verifies_the_new_address() {
        let database = private_database();
        let sink = SmtpSink::start();
        let app = mailing_app(&database, &sink, &RACE_SETTINGS);
        let mut outcomes = Vec::new();
        for round in 0..10_u64 {
            let (user, access_token, _) = app.registered_user();
            let token = mailed_reset_token(&app, &sink, &user.email);
            let victim = unknown_address();
            let (reset_status, patch_status) = std::thread::scope(|scope| {
                let resetting = scope.spawn(|| reset(&app, &token, NEW_PASSWORD).status().as_u16());
                std::thread::sleep(Duration::from_millis(round * 4));
                let body = json!({ "email": victim, "current_password": STRONG_PASSWORD });
                let patch_status = patch_me(&app, &access_token, &body).status().as_u16();
                (resetting.join().expect("the reset"), patch_status)
            });
            outcomes.push((reset_status, patch_status));
            let account = current_account(&app, &user.username);
            assert!(
                !(account["email"] == victim.as_str() && account["email_verified"] == true),
                "round {round}: {victim} ended up verified (reset {reset_status}, patch \
                 {patch_status}): {account}"
            );
            if account["email"] == victim.as_str() {
                assert_eq!(account["email_verified"], false, "round {round}");
            }
        }
        eprintln!("(reset, patch) statuses per round: {outcomes:?}");
    }

    /// A reset link stops working when the address changes (even back again), and when
    /// the password is changed; a verification link mailed to the old address too.
    fn mailed_tokens_die_with_the_address_or_the_password() {
        let database = private_database();
        let sink = SmtpSink::start();
        let app = mailing_app(&database, &sink, &[("PORTCULLIS_RATE_LIMIT", "off")]);

        let (email, access_token, verify_token) = user_with_verification_mail(&app, &sink);
        let reset_token = fresh_reset_token(&app, &sink, &email);
        let new_email = unknown_address();
        let body = json!({ "email": new_email, "current_password": STRONG_PASSWORD });
        json_body(patch_me(&app, &access_token, &body), 200);
        assert_problem(verify(&app, &verify_token), 400, "invalid_verification_token");
        assert_problem(reset(&app, &reset_token, NEW_PASSWORD), 400, "invalid_reset_token");
        let back = json!({ "email": email, "current_password": STRONG_PASSWORD });
        json_body(patch_me(&app, &access_token, &back), 200);
        assert_problem(reset(&app, &reset_token, NEW_PASSWORD), 400, "invalid_reset_token");

        let (user, access_token, _) = app.registered_user();
        let reset_token = mailed_reset_token(&app, &sink, &user.email);
        assert_eq!(
            change_password(&app, &access_token, STRONG_PASSWORD, NEW_PASSWORD).status().as_u16(),
            204
        );
        assert_problem(reset(&app, &reset_token, "An0ther!Fine-Pass"), 400, "invalid_reset_token");
        app.login_ok(&user.username, NEW_PASSWORD);
    }

    /// A stolen access token alone cannot move the account to another address: the
    /// change needs the current password (422 `required` without it, 401 when wrong),
    /// and the old address is told.
    fn changing_the_email_needs_the_current_password_and_tells_the_old_address() {
        let database = private_database();
        let sink = SmtpSink::start();
        let app = mailing_app(&database, &sink, &[("PORTCULLIS_RATE_LIMIT", "off")]);
        let (user, access_token, _) = app.registered_user();
        let new_email = unknown_address();

        let errors = validation_errors(patch_me(&app, &access_token, &json!({ "email": new_email })));
        assert_eq!(codes_for(&errors, "current_password"), ["required"], "{errors:?}");
        let wrong = json!({ "email": new_email, "current_password": WRONG_PASSWORD });
        assert_problem(patch_me(&app, &access_token, &wrong), 401, "invalid_credentials");
        assert_eq!(json_body(me(&app, &access_token), 200)["email"], user.email.as_str());

        let right = json!({ "email": new_email, "current_password": STRONG_PASSWORD });
        let changed = json_body(patch_me(&app, &access_token, &right), 200);
        assert_eq!(changed["email"], new_email.as_str());
        assert_eq!(changed["email_verified"], false);
        let notice = sink.wait_for(&user.email);
        let text = notice.part("text/plain");
        assert!(
            !text.contains("token=") && !text.contains(&new_email),
            "the notice to the old address carries no link and not the new address: {text}"
        );
        sink.wait_for(&new_email).token("/verify-email");

        // Other changes need no password; the same address again is no change.
        let same = json!({ "email": new_email.to_uppercase() });
        json_body(patch_me(&app, &access_token, &same), 200);
        let renamed = format!("{}_r", user.username);
        json_body(patch_me(&app, &access_token, &json!({ "username": renamed })), 200);
    }

    /// Wrong `current_password` answers behind a bearer token count as failed logins:
    /// after the threshold, even the right password waits (429 with `Retry-After`), on
    /// those endpoints and at `/auth/login` alike.
    fn wrong_current_passwords_count_for_the_login_throttle() {
        let app = TestApp::spawn_with(&[
            ("PORTCULLIS_RATE_LIMIT", "off"),
            ("PORTCULLIS_LOGIN_THROTTLE", "3"),
        ]);
        type Attempt = fn(&TestApp, &str, &str) -> Response;
        let attempts: [(&str, Attempt); 3] = [
            ("password change", |app, token, password| {
                change_password(app, token, password, NEW_PASSWORD)
            }),
            ("account deletion", |app, token, password| {
                let body = json!({ "password": password });
                send_json(app, Method::DELETE, "/api/v1/users/me", token, &body)
            }),
            ("email change", |app, token, password| {
                let body = json!({ "email": unknown_address(), "current_password": password });
                patch_me(app, token, &body)
            }),
        ];
        for (what, attempt) in attempts {
            let (user, access_token, _) = app.registered_user();
            for _ in 0..3 {
                let response = attempt(&app, &access_token, WRONG_PASSWORD);
                assert_problem(response, 401, "invalid_credentials");
            }
            let response = attempt(&app, &access_token, STRONG_PASSWORD);
            assert!(header(&response, "retry-after").is_some(), "{what}: Retry-After");
            assert_problem(response, 429, "rate_limited");
            assert_problem(app.login(&user.username, STRONG_PASSWORD), 429, "rate_limited");
            json_body(me(&app, &access_token), 200);
        }
    }

    /// A username of digits only could capture someone's mobile-number login: refused
    /// at registration and in a profile change.
    fn all_digit_usernames_are_refused() {
        let app = TestApp::spawn_with(&[("PORTCULLIS_RATE_LIMIT", "off")]);
        let user = unique_user();
        let response = app.register("4155550100", &user.email, &user.password);
        let errors = validation_errors(response);
        assert_eq!(codes_for(&errors, "username"), ["invalid_format"], "{errors:?}");
        let (_, access_token, _) = app.registered_user();
        let errors = validation_errors(patch_me(&app, &access_token, &json!({ "username": "12345" })));
        assert_eq!(codes_for(&errors, "username"), ["invalid_format"], "{errors:?}");
        json_body(patch_me(&app, &access_token, &json!({ "username": format!("1_{}", user.username) })), 200);
    }

    /// A deactivated account's mailed links answer as unknown tokens, and asking for a
    /// reset of its address mails nothing.
    fn a_deactivated_account_has_no_live_links_and_gets_no_reset_mail() {
        let database = private_database();
        let sink = SmtpSink::start();
        let admin = unique_user();
        let mut settings = admin_settings(&admin).to_vec();
        settings.push(("PORTCULLIS_RATE_LIMIT", "off"));
        let app = mailing_app(&database, &sink, &settings);
        let admin_token = string(&app.login_ok(&admin.username, &admin.password), "access_token");

        let (email, _, verify_token) = user_with_verification_mail(&app, &sink);
        let reset_token = fresh_reset_token(&app, &sink, &email);
        let user_id = string(&app.login_ok(&email, STRONG_PASSWORD)["user"], "id");
        let deactivate = send_json(
            &app,
            Method::PATCH,
            &format!("/api/v1/admin/users/{user_id}"),
            &admin_token,
            &json!({ "is_active": false }),
        );
        json_body(deactivate, 200);
        assert_problem(verify(&app, &verify_token), 400, "invalid_verification_token");
        assert_problem(reset(&app, &reset_token, NEW_PASSWORD), 400, "invalid_reset_token");

        let mails_before = sink.mails_to(&email).len();
        database.execute(&format!(
            "UPDATE outbox SET created_at = created_at - 7200 WHERE recipient = {}",
            sql_text(&email)
        ));
        json_body(forgot(&app, &email), 202);
        // A known active address in the same queue shows when the queue was worked off.
        let (witness, _, _) = app.registered_user();
        json_body(forgot(&app, &witness.email), 202);
        sink.wait_for(&witness.email);
        std::thread::sleep(Duration::from_secs(2));
        assert_eq!(sink.mails_to(&email).len(), mails_before, "a reset mail reached a deactivated account");
    }

    /// The pages behind the mailed links count for the per-IP limit like the JSON
    /// endpoints they stand for.
    fn the_mail_pages_form_posts_count_for_the_rate_limit() {
        // On a database of its own: on a shared one, other tests' requests from this
        // address count in the same window.
        let database = private_database();
        let app = TestApp::spawn_on(&database.url, &[("PORTCULLIS_RATE_LIMIT", "2/60")]);
        for path in ["/reset-password", "/verify-email"] {
            let fields = [("token", "no-such-token"), ("new_password", NEW_PASSWORD), ("confirm_password", NEW_PASSWORD)];
            let status = post_form(&app, path, &fields).status().as_u16();
            assert_ne!(status, 429, "{path}: the first post");
        }
        let response = post_form(&app, "/reset-password", &[("token", "x")]);
        assert_eq!(response.status().as_u16(), 429, "the third post in the window");
        assert!(header(&response, "retry-after").is_some());
        let response = forgot(&app, &unknown_address());
        assert_eq!(response.status().as_u16(), 429, "the JSON endpoints share the window");
    }

    /// Mail bodies holding a token leave the outbox once the mail is given up, and once
    /// its token has expired unsent.
    fn mail_bodies_with_tokens_leave_the_outbox_when_given_up_or_expired() {
        let database = private_database();
        let sink = SmtpSink::start();
        let app = mailing_app(&database, &sink, &[("PORTCULLIS_RATE_LIMIT", "off")]);
        let (given_up, _, _) = app.registered_user();
        let (expired, _, _) = app.registered_user();
        drop(app);
        drop(sink);
        // The same database, with mail to an SMTP server that is not there.
        let smtp_url = format!("smtp://{}?tls=none", free_port());
        let down = TestApp::spawn_on(
            &database.url,
            &[("PORTCULLIS_SMTP_URL", &smtp_url), ("PORTCULLIS_RATE_LIMIT", "off")],
        );
        for user in [&given_up, &expired] {
            json_body(forgot(&down, &user.email), 202);
            wait_until("the reset mail is queued and tried", || {
                database.count(&format!(
                    "SELECT COUNT(*) FROM outbox WHERE recipient = {} AND attempts > 0",
                    sql_text(&user.email)
                )) == 1
            });
            assert_eq!(bodies_with_tokens(&database, &user.email), 1);
        }
        database.execute(&format!(
            "UPDATE outbox SET attempts = 9, next_attempt_at = 0 WHERE recipient = {}",
            sql_text(&given_up.email)
        ));
        database.execute(&format!(
            "UPDATE outbox SET created_at = created_at - 1801 WHERE recipient = {}",
            sql_text(&expired.email)
        ));
        wait_until("the given-up mail's bodies are erased", || {
            bodies_with_tokens(&database, &given_up.email) == 0
        });
        wait_until("the expired mail's bodies are erased", || {
            bodies_with_tokens(&database, &expired.email) == 0
        });
    }

    /// The SQLite database and its `-wal` and `-shm` files are readable by their owner
    /// only, like the generated secret. (SQLite only: the other backends keep no file.)
    fn the_sqlite_files_are_readable_by_their_owner_only() {
        if backend() != Backend::Sqlite {
            return;
        }
        use std::os::unix::fs::PermissionsExt as _;
        let folder = tempfile::tempdir().expect("tempdir");
        let file = folder.path().join("private.db");
        let app = TestApp::spawn_on(&format!("sqlite://{}", file.display()), &[]);
        app.registered_user();
        for suffix in ["", "-wal", "-shm"] {
            let path = format!("{}{suffix}", file.display());
            let mode = std::fs::metadata(&path)
                .unwrap_or_else(|error| panic!("{path}: {error}"))
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{path}: mode {:o}", mode & 0o777);
        }
    }
}
