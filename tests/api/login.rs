//! `POST /api/v1/auth/login`.

use reqwest::Method;

use serde_json::{Value, json};

use crate::support::{
    STRONG_PASSWORD, TestApp, TestUser, assert_no_secrets, assert_problem, assert_user_resource,
    codes_for, header, json_body, spawn_app, unique_mobile, unique_user, validation_errors,
};

const LOGIN: &str = "/api/v1/auth/login";

fn assert_token_response(body: &Value, user_id: &Value) {
    assert!(
        body["access_token"]
            .as_str()
            .is_some_and(|t| t.split('.').count() == 3),
        "{body}"
    );
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 900);
    assert!(
        body["refresh_token"]
            .as_str()
            .is_some_and(|t| t.len() >= 43),
        "{body}"
    );
    assert_eq!(body["refresh_expires_in"], 604_800);
    assert!(
        body["session_id"].as_str().is_some_and(|s| !s.is_empty()),
        "{body}"
    );
    assert_user_resource(&body["user"]);
    assert_eq!(&body["user"]["id"], user_id);
    assert_no_secrets(body);
}

/// Sends a login and returns (status, WWW-Authenticate, body).
fn failed_login(app: &TestApp, login: &str, password: &str) -> (Option<String>, Value) {
    let resp = app.login(login, password);
    let www = header(&resp, "www-authenticate");
    let body = assert_problem(resp, 401, "invalid_credentials");
    (www, body)
}

/// Logs in with an optional device name and User-Agent; returns the token response.
fn login_from(app: &TestApp, u: &TestUser, device_name: Option<&str>, agent: &str) -> Value {
    let mut body = json!({"login": u.username, "password": u.password});
    if let Some(d) = device_name {
        body["device_name"] = json!(d);
    }
    let resp = app
        .request(Method::POST, LOGIN)
        .header("User-Agent", agent)
        .json(&body)
        .send()
        .unwrap();
    json_body(resp, 200)
}

/// The session object with id `sid`, as listed by `GET /api/v1/sessions`.
fn listed_session(app: &TestApp, token: &str, sid: &Value) -> Value {
    let list = json_body(app.get_with_token("/api/v1/sessions", token), 200);
    list["sessions"]
        .as_array()
        .unwrap_or_else(|| panic!("no sessions array: {list}"))
        .iter()
        .find(|s| &s["id"] == sid)
        .cloned()
        .unwrap_or_else(|| panic!("session {sid} not listed: {list}"))
}

api_tests! {
    fn login_by_username_returns_a_token_response_and_a_new_session() {
        let app = spawn_app();
        let (u, _, reg) = app.registered_user();
        let resp = app.login(&u.username, &u.password);
        let cache = header(&resp, "cache-control").unwrap_or_default();
        assert!(
            cache.to_ascii_lowercase().contains("no-store"),
            "a token response must carry Cache-Control: no-store, got {cache:?}"
        );
        let body = json_body(resp, 200);
        assert_token_response(&body, &reg["user"]["id"]);
        assert_ne!(
            body["session_id"], reg["session_id"],
            "a login opens a new session"
        );
        assert_ne!(body["refresh_token"], reg["refresh_token"]);
        assert_eq!(body["user"]["username"], u.username.as_str());
        // The new token works.
        let token = body["access_token"].as_str().unwrap();
        let me = json_body(app.get_with_token("/api/v1/users/me", token), 200);
        assert_eq!(me["id"], reg["user"]["id"]);
    }

    fn login_by_username_ignores_case() {
        let app = spawn_app();
        let (u, _, reg) = app.registered_user();
        for login in [u.username.to_uppercase(), u.username.to_lowercase()] {
            let body = app.login_ok(&login, &u.password);
            assert_eq!(body["user"]["id"], reg["user"]["id"], "login {login:?}");
        }
    }

    fn login_by_email_ignores_case() {
        let app = spawn_app();
        let (u, _, reg) = app.registered_user();
        for login in [u.email.clone(), u.email.to_uppercase()] {
            let body = app.login_ok(&login, &u.password);
            assert_eq!(body["user"]["id"], reg["user"]["id"], "login {login:?}");
        }
    }

    fn login_by_email_registered_in_mixed_case() {
        let app = spawn_app();
        let mut u = unique_user();
        u.email = u.email.to_uppercase();
        let reg = app.register_user(&u);
        let body = app.login_ok(&u.email.to_lowercase(), &u.password);
        assert_eq!(body["user"]["id"], reg["user"]["id"]);
    }

    fn login_by_mobile_number_ignores_formatting() {
        let app = spawn_app();
        let mut u = unique_user();
        let mobile = unique_mobile();
        u.mobile_number = Some(mobile.clone());
        let reg = app.register_user(&u);
        let d = &mobile[2..];
        for login in [
            mobile.clone(),
            format!("+1 ({}) {}-{}", &d[0..3], &d[3..7], &d[7..]),
            format!("+1-{}-{}-{}", &d[0..3], &d[3..7], &d[7..]),
        ] {
            let body = app.login_ok(&login, &u.password);
            assert_eq!(body["user"]["id"], reg["user"]["id"], "login {login:?}");
        }
    }

    fn login_by_mobile_number_registered_with_formatting() {
        let app = spawn_app();
        let mut u = unique_user();
        let mobile = unique_mobile();
        let d = &mobile[2..];
        u.mobile_number = Some(format!("+1 ({}) {} {}", &d[0..3], &d[3..7], &d[7..]));
        let reg = app.register_user(&u);
        let body = app.login_ok(&mobile, &u.password);
        assert_eq!(body["user"]["id"], reg["user"]["id"]);
    }

    fn wrong_password_and_unknown_account_get_the_same_401() {
        let app = spawn_app();
        let (u, _, _) = app.registered_user();
        let stranger = unique_user();

        let (www_wrong, wrong) = failed_login(&app, &u.username, "Wr0ng!Password#1");
        let (www_unknown, unknown) = failed_login(&app, &stranger.username, "Wr0ng!Password#1");
        assert_eq!(
            wrong, unknown,
            "the body must not tell whether the account exists"
        );
        assert_eq!(www_wrong, www_unknown);
        let www = www_wrong.unwrap();
        assert!(
            !www.contains("invalid_token"),
            "no token was sent, so no error=\"invalid_token\": {www:?}"
        );

        // Unknown email and unknown mobile: the same answer again.
        let (_, by_email) = failed_login(&app, &stranger.email, STRONG_PASSWORD);
        assert_eq!(by_email, wrong);
        let (_, by_mobile) = failed_login(&app, &unique_mobile(), STRONG_PASSWORD);
        assert_eq!(by_mobile, wrong);
        // And the right password for a stranger's name.
        let (_, right_pw) = failed_login(&app, &stranger.username, STRONG_PASSWORD);
        assert_eq!(right_pw, wrong);
    }

    fn password_is_case_sensitive_and_exact() {
        let app = spawn_app();
        let (u, _, _) = app.registered_user();
        for wrong in [
            u.password.to_uppercase(),
            u.password.to_lowercase(),
            format!("{} ", u.password),
            format!(" {}", u.password),
            u.password[..u.password.len() - 1].to_string(),
        ] {
            failed_login(&app, &u.username, &wrong);
            // Reset the consecutive-failure count so the throttle never gets in the way.
            app.login_ok(&u.username, &u.password);
        }
    }

    fn login_by_another_users_password_fails() {
        let app = spawn_app();
        let (a, _, _) = app.registered_user();
        let mut b = unique_user();
        b.password = "An0ther!Secret#7".into();
        app.register_user(&b);
        failed_login(&app, &a.username, &b.password);
        failed_login(&app, &b.username, &a.password);
    }

    fn login_without_fields_is_a_validation_error() {
        let app = spawn_app();
        let errors = validation_errors(app.post_json(LOGIN, &json!({})));
        assert_eq!(codes_for(&errors, "login"), vec!["required"], "{errors:?}");
        assert_eq!(
            codes_for(&errors, "password"),
            vec!["required"],
            "{errors:?}"
        );
        let errors = validation_errors(app.post_json(LOGIN, &json!({"login": "someone"})));
        assert_eq!(
            codes_for(&errors, "password"),
            vec!["required"],
            "{errors:?}"
        );
    }

    fn email_not_verified_only_after_a_correct_password() {
        let app = TestApp::spawn_with(&[("PORTCULLIS_REQUIRE_EMAIL_VERIFICATION", "true")]);
        let u = unique_user();
        let reg = app.register_user(&u);
        assert_eq!(reg["verification_required"], true);

        for login in [u.username.clone(), u.email.clone()] {
            let body = assert_problem(app.login(&login, &u.password), 403, "email_not_verified");
            for key in ["access_token", "refresh_token", "session_id"] {
                assert!(body.get(key).is_none(), "no {key} in a 403: {body}");
            }
        }
        // A wrong password still gets the plain 401: the 403 must not leak to guessers.
        let (_, wrong) = failed_login(&app, &u.username, "Wr0ng!Password#1");
        let (_, unknown) = failed_login(&app, &unique_user().username, "Wr0ng!Password#1");
        assert_eq!(wrong, unknown);
    }

    fn without_required_verification_an_unverified_user_logs_in() {
        let app = TestApp::spawn_with(&[("PORTCULLIS_REQUIRE_EMAIL_VERIFICATION", "false")]);
        let (u, _, reg) = app.registered_user();
        assert_eq!(reg["user"]["email_verified"], false);
        app.login_ok(&u.username, &u.password);
    }

    fn user_agent_is_recorded_as_the_device() {
        let app = spawn_app();
        let (u, _, _) = app.registered_user();
        let agent = "Mozilla/5.0 (X11; Linux x86_64) PortcullisQA/1.0";
        let body = login_from(&app, &u, None, agent);
        let token = body["access_token"].as_str().unwrap();
        let session = listed_session(&app, token, &body["session_id"]);
        assert_eq!(session["device_info"], agent, "{session}");
        assert_eq!(session["ip_address"], "127.0.0.1", "{session}");
        assert_eq!(session["is_current"], true, "{session}");
    }

    fn device_name_is_recorded() {
        // API.md's Session has only `device_info`; it does not say how a `device_name` and a
        // User-Agent combine. We require the device name to be shown in the session.
        let app = spawn_app();
        let (u, _, _) = app.registered_user();
        let body = login_from(&app, &u, Some("QA work laptop"), "PortcullisQA/2.0");
        let token = body["access_token"].as_str().unwrap();
        let session = listed_session(&app, token, &body["session_id"]);
        assert!(
            session.to_string().contains("QA work laptop"),
            "the device name should be recorded: {session}"
        );
    }
}
