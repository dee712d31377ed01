//! Two-factor authentication (API.md §8) over HTTP: enrolment, confirmation, the
//! second step of a login (also through the OAuth2 password grant), recovery codes,
//! turning it off (by the user and by an admin), the rules on codes (one step either
//! side, a spent step never again, five wrong codes spend an `mfa_token`, wrong codes
//! count for the login throttle), the `amr` claim, the audit events, and the replay race
//! over two hosts on one database.
//!
//! Codes are computed here as an authenticator app does (RFC 6238: HMAC-SHA-1, 6 digits,
//! 30-second steps), checked first against the RFC's own test vectors. A test uses the
//! current step's code once and the next step's code once (both are accepted, and each
//! later than the last): so a test never waits for the clock, whatever second it runs at.

use std::sync::Barrier;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use data_encoding::BASE32_NOPAD;
use hmac::{Hmac, Mac};
use reqwest::Method;
use reqwest::blocking::Response;
use serde_json::{Value, json};
use sha1::Sha1;

use crate::admin::admin_settings;
use crate::session_client::two_hosts;
use crate::support::{
    TestApp, TestUser, assert_no_secrets, assert_problem, header, json_body, now, spawn_app,
    unique_user,
};

const ENROL: &str = "/api/v1/users/me/mfa/totp";
const CONFIRM: &str = "/api/v1/users/me/mfa/totp/confirm";
const RECOVERY_CODES: &str = "/api/v1/users/me/mfa/recovery-codes";
const MFA: &str = "/api/v1/users/me/mfa";
const VERIFY: &str = "/api/v1/auth/mfa/verify";
const ME: &str = "/api/v1/users/me";

/// The RFC 6238 code of `step` under `secret`, `digits` long.
fn totp_code(secret: &[u8], step: i64, digits: u32) -> String {
    let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(secret).unwrap();
    mac.update(&step.to_be_bytes());
    let digest = mac.finalize().into_bytes();
    let offset = usize::from(digest[19] & 0x0f);
    let binary = u32::from_be_bytes([
        digest[offset] & 0x7f,
        digest[offset + 1],
        digest[offset + 2],
        digest[offset + 3],
    ]);
    format!(
        "{:0width$}",
        binary % 10_u32.pow(digits),
        width = digits as usize
    )
}

/// The 6-digit code of the step `offset` steps from now, for a base32 secret.
fn code(secret: &str, offset: i64) -> String {
    let secret = BASE32_NOPAD
        .decode(secret.as_bytes())
        .expect("base32 secret");
    totp_code(&secret, now().div_euclid(30) + offset, 6)
}

/// Sends `method path` with a bearer token and a JSON body.
fn call(app: &TestApp, method: Method, path: &str, token: &str, body: &Value) -> Response {
    app.request(method, path)
        .bearer_auth(token)
        .json(body)
        .send()
        .unwrap_or_else(|e| panic!("{path}: {e}\n{}", app.output()))
}

/// A registered user and its access token.
fn signed_up(app: &TestApp) -> (TestUser, String) {
    let (user, token, _) = app.registered_user();
    (user, token)
}

/// Starts an enrolment; returns its body.
fn enrol(app: &TestApp, user: &TestUser, token: &str) -> Value {
    let body = json!({ "password": user.password });
    json_body(call(app, Method::POST, ENROL, token, &body), 200)
}

/// Enrols and confirms with the current step's code; returns the secret and the
/// recovery codes. The next step's code is then the one code a login can use.
pub fn enable(app: &TestApp, user: &TestUser, token: &str) -> (String, Vec<String>) {
    let secret = enrol(app, user, token)["secret"]
        .as_str()
        .expect("secret")
        .to_owned();
    let confirmed = json_body(
        call(
            app,
            Method::POST,
            CONFIRM,
            token,
            &json!({ "code": code(&secret, 0) }),
        ),
        200,
    );
    (secret, recovery_codes(&confirmed))
}

fn recovery_codes(body: &Value) -> Vec<String> {
    body["recovery_codes"]
        .as_array()
        .unwrap_or_else(|| panic!("no recovery_codes in {body}"))
        .iter()
        .map(|code| code.as_str().expect("a code is a string").to_owned())
        .collect()
}

/// Logs in with the password and insists on 403 `mfa_required`; returns the `mfa_token`.
pub fn mfa_token(app: &TestApp, user: &TestUser) -> String {
    let body = assert_problem(
        app.login(&user.username, &user.password),
        403,
        "mfa_required",
    );
    assert_eq!(body["methods"], json!(["totp", "recovery_code"]), "{body}");
    body["mfa_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no mfa_token in {body}"))
        .to_owned()
}

fn verify(app: &TestApp, mfa_token: &str, code: &str) -> Response {
    app.post_json(VERIFY, &json!({ "mfa_token": mfa_token, "code": code }))
}

/// The `amr` claim of an access token (its payload read, not verified).
fn amr(access_token: &str) -> Value {
    let payload = access_token.split('.').nth(1).expect("a JWT");
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    claims["amr"].clone()
}

fn me(app: &TestApp, token: &str) -> Value {
    json_body(app.get_with_token(ME, token), 200)
}

/// The events named `event` about `user_id`, as an admin reads them.
fn audit(app: &TestApp, admin_token: &str, user_id: &str, event: &str) -> Vec<Value> {
    let resp = app
        .request(Method::GET, "/api/v1/admin/audit")
        .bearer_auth(admin_token)
        .query(&[("user_id", user_id), ("event", event)])
        .send()
        .unwrap();
    json_body(resp, 200)["events"]
        .as_array()
        .expect("events")
        .clone()
}

/// An app with a bootstrap admin; returns the app and the admin's access token.
fn admin_app(settings: &[(&str, &str)]) -> (TestApp, String) {
    let admin = unique_user();
    let mut all: Vec<(&str, &str)> = admin_settings(&admin).to_vec();
    all.extend_from_slice(settings);
    let app = TestApp::spawn_with(&all);
    let login = app.login_ok(&admin.username, &admin.password);
    let token = login["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned();
    (app, token)
}

api_tests! {
    /// The code function of these tests gives RFC 6238's own answers (Appendix B, SHA-1).
    fn the_test_code_function_matches_the_rfc_6238_vectors() {
        let secret = b"12345678901234567890";
        for (time, expected) in [
            (59_i64, "94287082"),
            (1_111_111_109, "07081804"),
            (1_111_111_111, "14050471"),
            (1_234_567_890, "89005924"),
            (2_000_000_000, "69279037"),
            (20_000_000_000, "65353130"),
        ] {
            assert_eq!(totp_code(secret, time / 30, 8), expected, "T = {time}");
        }
    }

    /// POST /users/me/mfa/totp: a pending enrolment (secret, otpauth URI, QR code as
    /// SVG) behind the password; not active until confirmed; calling again replaces it.
    fn enrolment_answers_a_pending_secret_behind_the_password() {
        let app = spawn_app();
        let (user, token) = signed_up(&app);
        assert_eq!(me(&app, &token)["mfa_enabled"], false);
        assert_problem(
            call(&app, Method::POST, ENROL, &token, &json!({ "password": "Wr0ng!pass" })),
            401,
            "invalid_credentials",
        );
        let first = enrol(&app, &user, &token);
        let secret = first["secret"].as_str().unwrap();
        assert_eq!(secret.len(), 32, "160 bits in base32: {first}");
        assert_eq!(BASE32_NOPAD.decode(secret.as_bytes()).unwrap().len(), 20);
        assert_eq!(
            first["otpauth_uri"],
            format!(
                "otpauth://totp/Portcullis:{}?secret={secret}&issuer=Portcullis\
                 &algorithm=SHA1&digits=6&period=30",
                user.username
            )
        );
        let svg = first["qr_svg"].as_str().unwrap();
        assert!(svg.contains("<svg") && svg.contains("</svg>"), "{svg}");
        assert_eq!(me(&app, &token)["mfa_enabled"], false, "pending, not on");
        app.login_ok(&user.username, &user.password);

        // Again: a new secret replaces the pending one, whose codes confirm nothing.
        let second = enrol(&app, &user, &token);
        assert_ne!(second["secret"], first["secret"]);
        assert_problem(
            call(&app, Method::POST, CONFIRM, &token, &json!({ "code": code(secret, 0) })),
            400,
            "invalid_mfa_code",
        );
    }

    /// POST /users/me/mfa/totp/confirm: 409 with nothing pending, 400 for a wrong code,
    /// then ten recovery codes and `mfa_enabled: true`; enrolling again is 409.
    fn confirmation_turns_mfa_on_and_hands_out_ten_recovery_codes() {
        let app = spawn_app();
        let (user, token) = signed_up(&app);
        assert_problem(
            call(&app, Method::POST, CONFIRM, &token, &json!({ "code": "123456" })),
            409,
            "mfa_not_pending",
        );
        let secret = enrol(&app, &user, &token)["secret"].as_str().unwrap().to_owned();
        let wrong = if code(&secret, 0) == "000000" { "111111" } else { "000000" };
        for attempt in [wrong, "not-a-code"] {
            assert_problem(
                call(&app, Method::POST, CONFIRM, &token, &json!({ "code": attempt })),
                400,
                "invalid_mfa_code",
            );
        }
        let body = json_body(
            call(&app, Method::POST, CONFIRM, &token, &json!({ "code": code(&secret, 0) })),
            200,
        );
        let codes = recovery_codes(&body);
        assert_eq!(codes.len(), 10, "{body}");
        let mut unique = codes.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), 10, "{body}");
        let user_now = me(&app, &token);
        assert_eq!(user_now["mfa_enabled"], true);
        assert_no_secrets(&user_now);
        assert!(!user_now.to_string().contains(&secret), "the secret is never shown again");
        assert_problem(
            call(&app, Method::POST, ENROL, &token, &json!({ "password": user.password })),
            409,
            "mfa_already_enabled",
        );
        assert_problem(
            call(&app, Method::POST, CONFIRM, &token, &json!({ "code": code(&secret, 1) })),
            409,
            "mfa_not_pending",
        );
    }

    /// With MFA on, a correct password answers 403 `mfa_required` (an `mfa_token`, the
    /// methods) and opens no session; a wrong password answers as without MFA;
    /// mfa/verify opens the session, `amr` says so and a refresh keeps it; the
    /// `mfa_token` is single-use.
    fn a_login_with_mfa_takes_a_second_step() {
        let app = TestApp::spawn_with(&[("PORTCULLIS_MAX_SESSIONS", "0")]);
        let (user, token) = signed_up(&app);
        let password_login = app.login_ok(&user.username, &user.password);
        assert_eq!(amr(password_login["access_token"].as_str().unwrap()), json!(["pwd"]));
        let (secret, _) = enable(&app, &user, &token);
        assert_problem(app.login(&user.username, "Wr0ng!pass"), 401, "invalid_credentials");
        let sessions_before = json_body(app.get_with_token("/api/v1/sessions", &token), 200);
        let mfa_token = mfa_token(&app, &user);
        let sessions_after = json_body(app.get_with_token("/api/v1/sessions", &token), 200);
        assert_eq!(
            sessions_after["session_count"], sessions_before["session_count"],
            "a correct password alone opens no session"
        );
        assert_problem(verify(&app, "no-such-token", &code(&secret, 1)), 401, "invalid_mfa_token");

        let resp = verify(&app, &mfa_token, &code(&secret, 1));
        assert_eq!(header(&resp, "cache-control").as_deref(), Some("no-store"));
        let body = json_body(resp, 200);
        for field in ["access_token", "refresh_token", "session_id", "expires_in"] {
            assert!(!body[field].is_null(), "no {field} in {body}");
        }
        assert_eq!(body["token_type"], "Bearer");
        assert_eq!(body["user"]["mfa_enabled"], true);
        let access = body["access_token"].as_str().unwrap();
        assert_eq!(amr(access), json!(["pwd", "otp", "mfa"]));
        me(&app, access);
        let refreshed = json_body(
            app.post_json(
                "/api/v1/auth/refresh",
                &json!({ "refresh_token": body["refresh_token"] }),
            ),
            200,
        );
        assert_eq!(
            amr(refreshed["access_token"].as_str().unwrap()),
            json!(["pwd", "otp", "mfa"]),
            "a refresh keeps the session's amr"
        );
        assert_problem(verify(&app, &mfa_token, &code(&secret, 1)), 401, "invalid_mfa_token");
    }

    /// Each accepted step is spent: the code that confirmed the enrolment, and a code
    /// that logged in, are refused at the next login (401 `invalid_mfa_code`).
    fn a_code_is_never_accepted_twice() {
        let app = spawn_app();
        let (user, token) = signed_up(&app);
        let (secret, _) = enable(&app, &user, &token);
        let confirming = code(&secret, 0);
        let next = code(&secret, 1);
        let first = mfa_token(&app, &user);
        if confirming != next {
            assert_problem(verify(&app, &first, &confirming), 401, "invalid_mfa_code");
        }
        json_body(verify(&app, &first, &next), 200);
        let second = mfa_token(&app, &user);
        assert_problem(verify(&app, &second, &next), 401, "invalid_mfa_code");
    }

    /// A recovery code opens a session once (written in any case, with or without
    /// dashes), is audited, and is refused the second time.
    fn a_recovery_code_works_once() {
        let (app, admin) = admin_app(&[]);
        let (user, token) = signed_up(&app);
        let user_id = me(&app, &token)["id"].as_str().unwrap().to_owned();
        let (_, codes) = enable(&app, &user, &token);
        let written = codes[2].to_uppercase().replace('-', "");
        let body = json_body(verify(&app, &mfa_token(&app, &user), &written), 200);
        assert_eq!(amr(body["access_token"].as_str().unwrap()), json!(["pwd", "otp", "mfa"]));
        assert_problem(
            verify(&app, &mfa_token(&app, &user), &codes[2]),
            401,
            "invalid_mfa_code",
        );
        json_body(verify(&app, &mfa_token(&app, &user), &codes[3]), 200);
        assert_eq!(audit(&app, &admin, &user_id, "mfa_recovery_code_used").len(), 2);
        assert_eq!(audit(&app, &admin, &user_id, "mfa_enabled").len(), 1);
        let logins = audit(&app, &admin, &user_id, "login");
        assert!(!logins.is_empty());
        for event in audit(&app, &admin, &user_id, "mfa_recovery_code_used") {
            assert!(!event.to_string().contains(&codes[2]), "{event}");
        }
    }

    /// Five wrong codes spend an `mfa_token`: then even the right code answers 401
    /// `invalid_mfa_token`. Each wrong code is audited.
    fn five_wrong_codes_spend_an_mfa_token() {
        let (app, admin) = admin_app(&[("PORTCULLIS_LOGIN_THROTTLE", "50")]);
        let (user, token) = signed_up(&app);
        let user_id = me(&app, &token)["id"].as_str().unwrap().to_owned();
        let (secret, _) = enable(&app, &user, &token);
        let spent = mfa_token(&app, &user);
        let right = code(&secret, 1);
        let wrong = if right == "000000" { "111111" } else { "000000" };
        for attempt in 1..=5 {
            let body = assert_problem(verify(&app, &spent, wrong), 401, "invalid_mfa_code");
            assert!(!body.to_string().contains(&right), "attempt {attempt}: {body}");
        }
        assert_problem(verify(&app, &spent, &right), 401, "invalid_mfa_token");
        assert_eq!(audit(&app, &admin, &user_id, "mfa_challenge_failed").len(), 5);
        // A new login gets a new token, and the right code still works.
        json_body(verify(&app, &mfa_token(&app, &user), &right), 200);
    }

    /// Wrong codes count as failed logins for `PORTCULLIS_LOGIN_THROTTLE`: past it,
    /// mfa/verify (and the password login) answer 429 with Retry-After.
    fn wrong_codes_count_for_the_login_throttle() {
        let app = TestApp::spawn_with(&[("PORTCULLIS_LOGIN_THROTTLE", "2")]);
        let (user, token) = signed_up(&app);
        let (secret, _) = enable(&app, &user, &token);
        let mfa_token = mfa_token(&app, &user);
        let wrong = if code(&secret, 1) == "000000" { "111111" } else { "000000" };
        for _ in 0..2 {
            assert_problem(verify(&app, &mfa_token, wrong), 401, "invalid_mfa_code");
        }
        let resp = verify(&app, &mfa_token, &code(&secret, 1));
        assert!(header(&resp, "retry-after").is_some(), "429 carries Retry-After");
        assert_problem(resp, 429, "rate_limited");
        assert_problem(app.login(&user.username, &user.password), 429, "rate_limited");
    }

    /// An `mfa_token` lives `PORTCULLIS_MFA_TOKEN_TTL` seconds.
    fn an_mfa_token_expires() {
        let app = TestApp::spawn_with(&[("PORTCULLIS_MFA_TOKEN_TTL", "1")]);
        let (user, token) = signed_up(&app);
        let (secret, _) = enable(&app, &user, &token);
        let mfa_token = mfa_token(&app, &user);
        std::thread::sleep(std::time::Duration::from_millis(2_100));
        assert_problem(verify(&app, &mfa_token, &code(&secret, 1)), 401, "invalid_mfa_token");
    }

    /// The OAuth2 password grant answers 403 `{"error":"mfa_required","mfa_token"}`,
    /// whose token mfa/verify takes.
    fn the_oauth_password_grant_answers_mfa_required() {
        let app = spawn_app();
        let (user, token) = signed_up(&app);
        let (secret, _) = enable(&app, &user, &token);
        let form = format!(
            "grant_type=password&username={}&password={}",
            user.username,
            url_encode(&user.password)
        );
        let resp = app.post_raw(
            "/api/v1/auth/token",
            Some("application/x-www-form-urlencoded"),
            form.into_bytes(),
        );
        assert_eq!(resp.status().as_u16(), 403);
        let body: Value = resp.json().unwrap();
        assert_eq!(body["error"], "mfa_required", "{body}");
        let mfa_token = body["mfa_token"].as_str().unwrap_or_else(|| panic!("{body}"));
        json_body(verify(&app, mfa_token, &code(&secret, 1)), 200);
    }

    /// POST /users/me/mfa/recovery-codes: 409 without MFA, 400 for a wrong code, then
    /// ten new codes; the old ones stop working.
    fn recovery_codes_are_regenerated_with_a_code() {
        let (app, admin) = admin_app(&[]);
        let (user, token) = signed_up(&app);
        let user_id = me(&app, &token)["id"].as_str().unwrap().to_owned();
        assert_problem(
            call(&app, Method::POST, RECOVERY_CODES, &token, &json!({ "code": "123456" })),
            409,
            "mfa_not_enabled",
        );
        let (secret, old) = enable(&app, &user, &token);
        let wrong = if code(&secret, 1) == "000000" { "111111" } else { "000000" };
        assert_problem(
            call(&app, Method::POST, RECOVERY_CODES, &token, &json!({ "code": wrong })),
            400,
            "invalid_mfa_code",
        );
        let new = recovery_codes(&json_body(
            call(&app, Method::POST, RECOVERY_CODES, &token, &json!({ "code": code(&secret, 1) })),
            200,
        ));
        assert_eq!(new.len(), 10);
        assert!(new.iter().all(|code| !old.contains(code)));
        assert_problem(verify(&app, &mfa_token(&app, &user), &old[0]), 401, "invalid_mfa_code");
        json_body(verify(&app, &mfa_token(&app, &user), &new[0]), 200);
        assert_eq!(audit(&app, &admin, &user_id, "mfa_recovery_codes_regenerated").len(), 1);
    }

    /// DELETE /users/me/mfa: 409 without MFA, 401 for a wrong password, 400 for a wrong
    /// code; then MFA is off, a password login opens a session, and it is audited.
    fn turning_mfa_off_takes_the_password_and_a_code() {
        let (app, admin) = admin_app(&[]);
        let (user, token) = signed_up(&app);
        let user_id = me(&app, &token)["id"].as_str().unwrap().to_owned();
        let off = |password: &str, code: &str| {
            call(&app, Method::DELETE, MFA, &token, &json!({ "password": password, "code": code }))
        };
        assert_problem(off(&user.password, "123456"), 409, "mfa_not_enabled");
        let (secret, _) = enable(&app, &user, &token);
        let right = code(&secret, 1);
        let wrong = if right == "000000" { "111111" } else { "000000" };
        assert_problem(off("Wr0ng!pass", &right), 401, "invalid_credentials");
        assert_problem(off(&user.password, wrong), 400, "invalid_mfa_code");
        assert_eq!(off(&user.password, &right).status().as_u16(), 204);
        assert_eq!(me(&app, &token)["mfa_enabled"], false);
        let login = app.login_ok(&user.username, &user.password);
        assert_eq!(amr(login["access_token"].as_str().unwrap()), json!(["pwd"]));
        assert_eq!(audit(&app, &admin, &user_id, "mfa_disabled").len(), 1);
        assert_problem(off(&user.password, &right), 409, "mfa_not_enabled");
    }

    /// DELETE /admin/users/{id}/mfa: admins only, 404 for an unknown user, then the
    /// user's MFA is off, audited with the admin as actor.
    fn an_admin_turns_a_users_mfa_off() {
        let (app, admin) = admin_app(&[]);
        let (user, token) = signed_up(&app);
        let user_id = me(&app, &token)["id"].as_str().unwrap().to_owned();
        enable(&app, &user, &token);
        let path = format!("/api/v1/admin/users/{user_id}/mfa");
        let delete = |bearer: &str, path: &str| {
            app.request(Method::DELETE, path).bearer_auth(bearer).send().unwrap()
        };
        assert_problem(delete(&token, &path), 403, "forbidden");
        assert_problem(delete(&admin, "/api/v1/admin/users/no-such-user/mfa"), 404, "not_found");
        assert_eq!(delete(&admin, &path).status().as_u16(), 204);
        assert_eq!(me(&app, &token)["mfa_enabled"], false);
        app.login_ok(&user.username, &user.password);
        let events = audit(&app, &admin, &user_id, "mfa_disabled");
        assert_eq!(events.len(), 1, "{events:?}");
        let admin_id = me(&app, &admin)["id"].clone();
        assert_eq!(events[0]["detail"]["actor_id"], admin_id, "{events:?}");
    }

    /// mfa/verify opens the session under the device limit, as a login does.
    fn the_device_limit_applies_at_the_second_step() {
        let app = TestApp::spawn_with(&[
            ("PORTCULLIS_MAX_SESSIONS", "1"),
            ("PORTCULLIS_SESSION_LIMIT_POLICY", "reject"),
        ]);
        let (user, token) = signed_up(&app);
        let (secret, _) = enable(&app, &user, &token);
        let mfa_token = mfa_token(&app, &user);
        assert_problem(verify(&app, &mfa_token, &code(&secret, 1)), 409, "session_limit_reached");
    }

    /// The replay race: one code sent at once to two hosts on one database, each with
    /// an `mfa_token` of its own: exactly one opens a session, the other answers 401
    /// `invalid_mfa_code`.
    fn the_same_code_on_two_hosts_at_once_wins_exactly_once() {
        let (_database, a, b) = two_hosts(&[("PORTCULLIS_MAX_SESSIONS", "0")]);
        let (user, token) = signed_up(&a);
        let (secret, _) = enable(&a, &user, &token);
        let tokens = [mfa_token(&a, &user), mfa_token(&b, &user)];
        let next = code(&secret, 1);
        let barrier = Barrier::new(2);
        let answers: Vec<(u16, Value)> = std::thread::scope(|scope| {
            let handles: Vec<_> = [(&a, &tokens[0]), (&b, &tokens[1])]
                .into_iter()
                .map(|(app, mfa_token)| {
                    let (barrier, next) = (&barrier, &next);
                    scope.spawn(move || {
                        barrier.wait();
                        let resp = verify(app, mfa_token, next);
                        let status = resp.status().as_u16();
                        (status, resp.json::<Value>().unwrap_or(Value::Null))
                    })
                })
                .collect();
            handles.into_iter().map(|handle| handle.join().unwrap()).collect()
        });
        let winners = answers.iter().filter(|(status, _)| *status == 200).count();
        assert_eq!(winners, 1, "exactly one wins: {answers:?}");
        let loser = answers.iter().find(|(status, _)| *status != 200).unwrap();
        assert_eq!(loser.0, 401, "{answers:?}");
        assert_eq!(loser.1["code"], "invalid_mfa_code", "{answers:?}");
    }

    /// Users confirming their enrolments at the same moment all succeed: on MariaDB
    /// their transactions (each deletes the user's old recovery codes, then inserts new
    /// ones) meet on the same index gaps and one is chosen as a deadlock's victim; the
    /// host runs such a transaction again instead of answering 503.
    fn simultaneous_confirmations_all_succeed() {
        const USERS: usize = 8;
        const ROUNDS: usize = 3;
        let app = spawn_app();
        for _ in 0..ROUNDS {
            let enrolled: Vec<(String, String)> = (0..USERS)
                .map(|_| {
                    let (user, token) = signed_up(&app);
                    let secret = enrol(&app, &user, &token)["secret"]
                        .as_str()
                        .expect("secret")
                        .to_owned();
                    (token, secret)
                })
                .collect();
            let barrier = Barrier::new(USERS);
            let answers: Vec<(u16, String)> = std::thread::scope(|scope| {
                let handles: Vec<_> = enrolled
                    .iter()
                    .map(|(token, secret)| {
                        let barrier = &barrier;
                        let app = &app;
                        scope.spawn(move || {
                            let body = json!({ "code": code(secret, 0) });
                            barrier.wait();
                            let resp = call(app, Method::POST, CONFIRM, token, &body);
                            (resp.status().as_u16(), resp.text().unwrap_or_default())
                        })
                    })
                    .collect();
                handles.into_iter().map(|handle| handle.join().unwrap()).collect()
            });
            let failed: Vec<_> = answers.iter().filter(|(status, _)| *status != 200).collect();
            assert!(failed.is_empty(), "{failed:?}\n{}", app.output());
        }
    }

    /// `PORTCULLIS_MFA_ISSUER` names the issuer in the otpauth URI (percent-encoded).
    fn the_issuer_label_is_a_setting() {
        let app = TestApp::spawn_with(&[("PORTCULLIS_MFA_ISSUER", "Acme Corp")]);
        let (user, token) = signed_up(&app);
        let uri = enrol(&app, &user, &token)["otpauth_uri"].as_str().unwrap().to_owned();
        let label = format!("otpauth://totp/Acme%20Corp:{}?", user.username);
        assert!(uri.starts_with(&label), "{uri}");
        assert!(uri.contains("&issuer=Acme%20Corp&"), "{uri}");
    }
}

/// Percent-encodes a form value.
fn url_encode(value: &str) -> String {
    value
        .bytes()
        .map(|byte| {
            if byte.is_ascii_alphanumeric() {
                char::from(byte).to_string()
            } else {
                format!("%{byte:02X}")
            }
        })
        .collect()
}
