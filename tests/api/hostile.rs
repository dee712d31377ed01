//! Hostile input in every field of register and login: never a 5xx, always a 4xx problem,
//! and the service (and its data) is fine afterwards.

use reqwest::Method;

use serde_json::{Value, json};

use crate::support::{
    STRONG_PASSWORD, TestApp, assert_client_error, assert_problem, json_body, spawn_app,
    unique_mobile, unique_user,
};

const REGISTER: &str = "/api/v1/auth/register";

const LOGIN: &str = "/api/v1/auth/login";

/// Values no field of register or login accepts.
fn hostile_values() -> Vec<Value> {
    let mut nested = json!("x");
    for _ in 0..100 {
        nested = json!([nested]);
    }
    vec![
        json!("' OR 1=1 --"),
        json!("\"; DROP TABLE users; --"),
        json!("admin'--"),
        json!("1; select pg_sleep(10); --"),
        json!("\u{0000}"),
        json!("abc\u{0000}def"),
        json!("\u{1F600}\u{1F525}\u{1F47E}"),
        json!("\u{202E}gnp.exe\u{202D}"),
        json!("\u{200F}\u{05E9}\u{05DC}\u{05D5}\u{05DD}"),
        json!("a".repeat(5000)),
        json!("\u{1F600}".repeat(1500)),
        json!("<script>alert(1)</script>"),
        json!("${jndi:ldap://127.0.0.1/x}"),
        json!("%s%s%s%n"),
        json!("../../../../etc/passwd"),
        json!("\\"),
        json!(""),
        json!(" "),
        json!(0),
        json!(-1),
        json!(1.5e300),
        json!(null),
        json!(true),
        json!([]),
        json!(["a", "b"]),
        json!({}),
        json!({"$ne": null}),
        nested,
    ]
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    s.chars().take(60).collect()
}

/// The service survived: healthy, registering, and its earlier users are intact.
fn after_the_barrage(app: &TestApp) {
    app.assert_healthy();
    let (u, token, _) = app.registered_user();
    json_body(app.get_with_token("/api/v1/users/me", &token), 200);
    app.login_ok(&u.username, &u.password);
    // The same user again: still a conflict, so the users table holds its rows.
    let resp = app.register(&u.username, &unique_user().email, STRONG_PASSWORD);
    assert_problem(resp, 409, "username_taken");
}

api_tests! {
    fn hostile_values_in_every_register_field_are_4xx() {
        let app = spawn_app();
        for field in ["username", "email", "password", "mobile_number"] {
            for value in hostile_values() {
                // `mobile_number` is optional: null there is simply "none", and API.md does not
                // say whether an empty (or blank) string is "none" or an invalid number.
                if field == "mobile_number"
                    && (value.is_null() || value.as_str().is_some_and(|s| s.trim().is_empty()))
                {
                    continue;
                }
                let u = unique_user();
                let mut body = json!({
                    "username": u.username, "email": u.email, "password": STRONG_PASSWORD,
                    "mobile_number": unique_mobile(),
                });
                body[field] = value.clone();
                let resp = app.post_json(REGISTER, &body);
                assert_client_error(resp, &format!("register {field} = {}", short(&value)));
            }
        }
        after_the_barrage(&app);
    }

    fn hostile_values_in_every_login_field_are_4xx() {
        let app = spawn_app();
        let (u, _, _) = app.registered_user();
        for value in hostile_values() {
            let body = json!({"login": value, "password": STRONG_PASSWORD});
            let resp = app.post_json(LOGIN, &body);
            assert_client_error(resp, &format!("login login = {}", short(&value)));
        }
        for value in hostile_values() {
            let body = json!({"login": u.username, "password": value});
            let resp = app.post_json(LOGIN, &body);
            assert_client_error(resp, &format!("login password = {}", short(&value)));
        }
        // The throttle may now hold this account (429 is a fair answer above); another
        // account is untouched.
        after_the_barrage(&app);
    }

    fn hostile_device_names_and_user_agents_never_5xx() {
        // A device name is free text: a string may be accepted (200) or refused (4xx); a
        // non-string may not be accepted silently as a name, but API.md does not say whether
        // it is ignored or refused, so 200 or 4xx — never 5xx.
        let app = spawn_app();
        let (u, _, _) = app.registered_user();
        for value in hostile_values() {
            let body = json!({"login": u.username, "password": u.password, "device_name": value});
            let resp = app.post_json(LOGIN, &body);
            let status = resp.status().as_u16();
            if status == 200 {
                let token: Value = resp.json().unwrap();
                let t = token["access_token"].as_str().expect("access_token");
                json_body(app.get_with_token("/api/v1/users/me", t), 200);
            } else {
                assert_client_error(resp, &format!("device_name = {}", short(&value)));
            }
        }
        for agent in [
            "' OR 1=1 --".to_string(),
            "\"; DROP TABLE sessions; --".to_string(),
            "A".repeat(5000),
            "\u{202E}gnp.exe".to_string(),
        ] {
            let resp = app
                .request(Method::POST, LOGIN)
                .header("User-Agent", agent.as_bytes())
                .json(&json!({"login": u.username, "password": u.password}))
                .send()
                .unwrap();
            let status = resp.status().as_u16();
            assert!(
                status == 200 || (400..500).contains(&status),
                "User-Agent {:.40}: {status} {:?}",
                agent,
                resp.text()
            );
        }
        after_the_barrage(&app);
    }

    fn raw_hostile_bodies_are_4xx() {
        let app = spawn_app();
        let deep_array = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
        let deep_object = format!("{}1{}", "{\"a\":".repeat(1500), "}".repeat(1500));
        let deep_field = format!(
            "{{\"username\": {}\"x\"{}, \"email\": \"a@example.com\", \"password\": \"x\"}}",
            "[".repeat(3000),
            "]".repeat(3000)
        );
        let bodies: Vec<String> = vec![
            deep_array,
            deep_object,
            deep_field,
            // Duplicate keys whose values are both hostile.
            "{\"username\": \"' OR 1=1 --\", \"username\": \"\\u0000\", \"email\": \"a@example.com\", \"password\": \"x\"}".into(),
            "{\"login\": \"' OR 1=1 --\", \"login\": \"admin'--\", \"password\": \"x\", \"password\": \"y\"}".into(),
            // A lone surrogate and an out-of-range number.
            "{\"username\": \"\\ud800\", \"email\": \"a@example.com\", \"password\": \"x\"}".into(),
            "{\"username\": 1e400, \"email\": \"a@example.com\", \"password\": \"x\"}".into(),
            "\u{feff}{\"username\": \"bom\"}".into(),
            "{\"username\": \"a\"}\u{0000}".into(),
        ];
        for body in &bodies {
            for path in [REGISTER, LOGIN] {
                let resp = app.post_raw(path, Some("application/json"), body.as_bytes().to_vec());
                assert_client_error(resp, &format!("{path} {:.60}", body));
            }
        }
        after_the_barrage(&app);
    }

    fn duplicate_keys_never_smuggle_a_hostile_value_in() {
        // RFC 8259 leaves duplicate names to the parser. Refusing them (4xx) is best; taking
        // one of them is tolerated, but then what is stored must be a valid value, never the
        // hostile one.
        let app = spawn_app();
        for hostile_first in [true, false] {
            let u = unique_user();
            let (a, b) = if hostile_first {
                ("' OR 1=1 --".to_string(), u.username.clone())
            } else {
                (u.username.clone(), "' OR 1=1 --".to_string())
            };
            let body = format!(
                "{{\"username\": {}, \"username\": {}, \"email\": \"{}\", \"password\": \"{}\"}}",
                json!(a),
                json!(b),
                u.email,
                STRONG_PASSWORD
            );
            let resp = app.post_raw(REGISTER, Some("application/json"), body.into_bytes());
            let status = resp.status().as_u16();
            if status == 201 {
                let reg: Value = resp.json().unwrap();
                assert_eq!(reg["user"]["username"], u.username.as_str(), "{reg}");
            } else {
                assert_client_error(resp, "duplicate username keys");
            }
        }
        after_the_barrage(&app);
    }

    fn sql_metacharacters_inside_valid_values_are_plain_data() {
        let app = spawn_app();
        // An apostrophe is valid in an email's local part, and any symbol in a password.
        let mut u = unique_user();
        u.email = format!("o'brien.{}", u.email);
        u.password = "Tr1cky!' OR '1'='1".into();
        let reg = app.register_user(&u);
        assert_eq!(reg["user"]["email"], u.email.as_str());
        let body = app.login_ok(&u.email, &u.password);
        assert_eq!(body["user"]["id"], reg["user"]["id"]);
        // The quote does not open a way in: a near miss still fails.
        let resp = app.login(&u.email, "Tr1cky!' OR '1'='2");
        assert_problem(resp, 401, "invalid_credentials");
        // Nor does a login of `x' OR '1'='1`.
        let resp = app.login("x' OR '1'='1", &u.password);
        assert_client_error(resp, "login x' OR '1'='1");
        after_the_barrage(&app);
    }
}
