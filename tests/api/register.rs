//! `POST /api/v1/auth/register`: the token response, §4 validation and uniqueness.

use serde_json::{Value, json};

use crate::support::{
    STRONG_PASSWORD, TestApp, assert_no_secrets, assert_problem, assert_user_resource, codes_for,
    header, json_body, spawn_app, unique_mobile, unique_suffix, unique_user, validation_errors,
};

const REGISTER: &str = "/api/v1/auth/register";

fn register_body(username: &str, email: &str, password: &str) -> Value {
    json!({"username": username, "email": email, "password": password})
}

/// Registers a body that must fail validation; returns the (field, code) pairs.
fn rejected(app: &TestApp, body: &Value) -> Vec<(String, String)> {
    validation_errors(app.post_json(REGISTER, body))
}

/// Asserts that `password` for a fresh user is rejected with exactly `expected` on the
/// `password` field and nothing on any other field.
fn assert_password_codes(app: &TestApp, password: &str, expected: &[&str]) {
    let u = unique_user();
    let errors = rejected(app, &register_body(&u.username, &u.email, password));
    let mut want: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(
        codes_for(&errors, "password"),
        want,
        "password {password:?}: all errors {errors:?}"
    );
    assert!(
        errors.iter().all(|(f, _)| f == "password"),
        "password {password:?} only: unexpected errors on other fields {errors:?}"
    );
}

fn assert_password_accepted(app: &TestApp, password: &str) {
    let u = unique_user();
    let resp = app.post_json(REGISTER, &register_body(&u.username, &u.email, password));
    let status = resp.status().as_u16();
    let text = resp.text().unwrap();
    assert_eq!(
        status, 201,
        "password {password:?} should be accepted: {text}"
    );
}

/// A valid address of exactly `len` characters: a unique local part and a domain of
/// labels of at most 63 characters.
fn email_of_length(len: usize) -> String {
    let local = format!("m{}", unique_suffix());
    // What is left for the labels before ".com", dots between labels included.
    let mut remaining = len - local.len() - 1 - ".com".len();
    let mut labels = Vec::new();
    while remaining > 0 {
        if remaining <= 63 {
            labels.push("a".repeat(remaining));
            remaining = 0;
        } else {
            // A label and its dot, leaving at least one character for the next label.
            let take = 63.min(remaining - 2);
            labels.push("a".repeat(take));
            remaining -= take + 1;
        }
    }
    let email = format!("{local}@{}.com", labels.join("."));
    assert_eq!(email.len(), len, "{email}");
    email
}

// ---------- §4: mobile number ----------

fn register_with_mobile(app: &TestApp, mobile: &str) -> reqwest::blocking::Response {
    let u = unique_user();
    app.post_json(
        REGISTER,
        &json!({"username": u.username, "email": u.email, "password": STRONG_PASSWORD,
                "mobile_number": mobile}),
    )
}

// ---------- races ----------

/// Registers `bodies` all at once; returns the statuses and bodies.
fn register_concurrently(app: &TestApp, bodies: Vec<Value>) -> Vec<(u16, String)> {
    let barrier = std::sync::Barrier::new(bodies.len());
    std::thread::scope(|scope| {
        let handles: Vec<_> = bodies
            .iter()
            .map(|body| {
                let barrier = &barrier;
                scope.spawn(move || {
                    barrier.wait();
                    let resp = app.post_json(REGISTER, body);
                    (resp.status().as_u16(), resp.text().unwrap_or_default())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

fn assert_exactly_one_winner(results: &[(u16, String)], code: &str) {
    let created = results.iter().filter(|(s, _)| *s == 201).count();
    assert_eq!(created, 1, "exactly one registration may win: {results:?}");
    for (status, text) in results.iter().filter(|(s, _)| *s != 201) {
        assert_eq!(
            *status, 409,
            "the losers get 409 {code}, not {status}: {text}"
        );
        let body: Value = serde_json::from_str(text).unwrap();
        assert_eq!(body["code"], code, "{body}");
    }
}

api_tests! {
    fn register_returns_201_with_a_complete_token_response() {
        let app = spawn_app();
        let u = unique_user();
        let resp = app.post_json(REGISTER, &register_body(&u.username, &u.email, &u.password));
        let cache = header(&resp, "cache-control").unwrap_or_default();
        assert!(
            cache.to_ascii_lowercase().contains("no-store"),
            "a token response must carry Cache-Control: no-store, got {cache:?}"
        );
        let body = json_body(resp, 201);

        let access = body["access_token"].as_str().expect("access_token");
        assert_eq!(
            access.split('.').count(),
            3,
            "access_token is a JWT: {access}"
        );
        assert_eq!(body["token_type"], "Bearer");
        assert_eq!(body["expires_in"], 900);
        let refresh = body["refresh_token"].as_str().expect("refresh_token");
        assert!(
            refresh.len() >= 43,
            "a refresh token of at least 256 bits needs at least 43 characters: {refresh:?}"
        );
        assert_ne!(refresh, access);
        assert_eq!(body["refresh_expires_in"], 604_800);
        assert!(
            body["session_id"].as_str().is_some_and(|s| !s.is_empty()),
            "session_id: {body}"
        );
        assert_eq!(body["verification_required"], false);

        let user = &body["user"];
        assert_user_resource(user);
        assert_eq!(user["username"], u.username.as_str());
        assert_eq!(user["email"], u.email.as_str());
        assert_eq!(user["mobile_number"], Value::Null);
        assert_eq!(user["email_verified"], false);
        assert_eq!(user["is_active"], true);
        assert_eq!(user["is_admin"], false);
        assert_no_secrets(&body);
    }

    fn the_registered_user_is_the_one_behind_the_token() {
        let app = spawn_app();
        let (u, token, body) = app.registered_user();
        let me = json_body(app.get_with_token("/api/v1/users/me", &token), 200);
        assert_eq!(me["id"], body["user"]["id"]);
        assert_eq!(me["username"], u.username.as_str());
        assert_eq!(me["email"], u.email.as_str());
        assert_user_resource(&me);
    }

    fn two_registrations_get_distinct_ids_sessions_and_tokens() {
        let app = spawn_app();
        let (_, t1, a) = app.registered_user();
        let (_, t2, b) = app.registered_user();
        assert_ne!(a["user"]["id"], b["user"]["id"]);
        assert_ne!(a["session_id"], b["session_id"]);
        assert_ne!(a["refresh_token"], b["refresh_token"]);
        assert_ne!(t1, t2);
    }

    fn register_with_a_mobile_number_stores_it() {
        let app = spawn_app();
        let mut u = unique_user();
        let mobile = unique_mobile();
        u.mobile_number = Some(mobile.clone());
        let body = app.register_user(&u);
        assert_eq!(body["user"]["mobile_number"], mobile.as_str());
    }

    fn a_formatted_mobile_number_is_stored_without_its_formatting() {
        // API.md: "spaces, dashes and parentheses are ignored". It does not say in which form
        // the number is stored; we accept the input as given or normalised, as long as the
        // digits (and the leading +) are the same.
        let app = spawn_app();
        let mut u = unique_user();
        let mobile = unique_mobile(); // +1DDDDDDDDDDD
        let digits = &mobile[2..];
        let formatted = format!("+1 ({}) {}-{}", &digits[0..3], &digits[3..7], &digits[7..]);
        u.mobile_number = Some(formatted.clone());
        let body = app.register_user(&u);
        let stored = body["user"]["mobile_number"].as_str().expect("mobile");
        let normalised: String = stored
            .chars()
            .filter(|c| !matches!(c, ' ' | '-' | '(' | ')'))
            .collect();
        assert_eq!(
            normalised, mobile,
            "stored {stored:?} for input {formatted:?}"
        );
    }

    fn a_null_mobile_number_is_the_same_as_none() {
        let app = spawn_app();
        let u = unique_user();
        let resp = app.post_json(
            REGISTER,
            &json!({"username": u.username, "email": u.email, "password": u.password,
                    "mobile_number": null}),
        );
        let body = json_body(resp, 201);
        assert_eq!(body["user"]["mobile_number"], Value::Null);
    }

    fn email_is_stored_lower_cased() {
        let app = spawn_app();
        let mut u = unique_user();
        let lower = u.email.clone();
        u.email = format!("MiXeD.{}", lower.to_uppercase());
        let body = app.register_user(&u);
        assert_eq!(body["user"]["email"], format!("mixed.{lower}"));
        let token = body["access_token"].as_str().unwrap();
        let me = json_body(app.get_with_token("/api/v1/users/me", token), 200);
        assert_eq!(me["email"], format!("mixed.{lower}"));
    }

    fn username_keeps_its_case() {
        let app = spawn_app();
        let mut u = unique_user();
        u.username = format!("John_{}", unique_suffix().to_uppercase());
        let body = app.register_user(&u);
        assert_eq!(body["user"]["username"], u.username.as_str());
    }

    fn with_required_verification_register_returns_the_user_and_no_tokens() {
        let app = TestApp::spawn_with(&[("PORTCULLIS_REQUIRE_EMAIL_VERIFICATION", "true")]);
        let u = unique_user();
        let resp = app.post_json(REGISTER, &register_body(&u.username, &u.email, &u.password));
        let body = json_body(resp, 201);
        assert_eq!(body["verification_required"], true, "{body}");
        assert_user_resource(&body["user"]);
        assert_eq!(body["user"]["username"], u.username.as_str());
        assert_eq!(body["user"]["email_verified"], false);
        for key in ["access_token", "refresh_token", "session_id", "expires_in"] {
            assert!(
                body.get(key).is_none(),
                "no `{key}` before verification: {body}"
            );
        }
        assert_no_secrets(&body);
    }

    // ---------- uniqueness ----------

    fn username_is_unique_case_insensitively() {
        let app = spawn_app();
        let first = unique_user();
        app.register_user(&first);
        for taken in [first.username.clone(), first.username.to_uppercase()] {
            let other = unique_user();
            let resp = app.post_json(
                REGISTER,
                &register_body(&taken, &other.email, STRONG_PASSWORD),
            );
            assert_problem(resp, 409, "username_taken");
        }
    }

    fn email_is_unique_case_insensitively() {
        let app = spawn_app();
        let first = unique_user();
        app.register_user(&first);
        for taken in [first.email.clone(), first.email.to_uppercase()] {
            let other = unique_user();
            let resp = app.post_json(
                REGISTER,
                &register_body(&other.username, &taken, STRONG_PASSWORD),
            );
            assert_problem(resp, 409, "email_taken");
        }
    }

    fn mobile_number_is_unique_whatever_its_formatting() {
        let app = spawn_app();
        let mut first = unique_user();
        let mobile = unique_mobile();
        first.mobile_number = Some(mobile.clone());
        app.register_user(&first);
        let d = &mobile[2..];
        let variants = [
            mobile.clone(),
            format!("+1 ({}) {}-{}", &d[0..3], &d[3..7], &d[7..]),
            format!("+1-{}-{}-{}", &d[0..3], &d[3..7], &d[7..]),
        ];
        for taken in variants {
            let other = unique_user();
            let resp = app.post_json(
                REGISTER,
                &json!({"username": other.username, "email": other.email,
                        "password": STRONG_PASSWORD, "mobile_number": taken}),
            );
            assert_problem(resp, 409, "mobile_taken");
        }
    }

    fn a_rejected_duplicate_creates_nothing() {
        let app = spawn_app();
        let first = unique_user();
        app.register_user(&first);
        let other = unique_user();
        // Taken username, free email: refused, and the free email must stay free.
        let resp = app.post_json(
            REGISTER,
            &register_body(&first.username, &other.email, STRONG_PASSWORD),
        );
        assert_problem(resp, 409, "username_taken");
        app.register_user(&other);
    }

    // ---------- §4: required fields and several errors at once ----------

    fn missing_fields_are_each_reported_as_required() {
        let app = spawn_app();
        let errors = rejected(&app, &json!({}));
        for field in ["username", "email", "password"] {
            assert_eq!(
                codes_for(&errors, field),
                vec!["required"],
                "{field}: {errors:?}"
            );
        }
        assert!(
            codes_for(&errors, "mobile_number").is_empty(),
            "mobile_number is optional: {errors:?}"
        );
    }

    fn empty_strings_are_rejected() {
        // An empty string may fairly be called `required` or `too_short`: API.md does not say.
        let app = spawn_app();
        let errors = rejected(&app, &register_body("", "", ""));
        for field in ["username", "email", "password"] {
            let codes = codes_for(&errors, field);
            assert!(
                codes.iter().any(|c| c == "required" || c == "too_short"),
                "{field} empty: {errors:?}"
            );
        }
    }

    fn every_violated_rule_of_every_field_is_reported() {
        let app = spawn_app();
        let errors = rejected(
            &app,
            &json!({"username": "ab", "email": "not-an-email", "password": "qzx",
                    "mobile_number": "12ab"}),
        );
        assert_eq!(
            codes_for(&errors, "username"),
            vec!["too_short"],
            "{errors:?}"
        );
        assert_eq!(
            codes_for(&errors, "email"),
            vec!["invalid_format"],
            "{errors:?}"
        );
        assert_eq!(
            codes_for(&errors, "password"),
            vec![
                "missing_digit",
                "missing_special",
                "missing_uppercase",
                "too_short"
            ],
            "{errors:?}"
        );
        assert!(
            codes_for(&errors, "mobile_number").contains(&"invalid_format".to_string()),
            "{errors:?}"
        );
    }

    // ---------- §4: username ----------

    fn username_length_bounds() {
        let app = spawn_app();
        let s = unique_suffix();
        let u = unique_user();
        let errors = rejected(&app, &register_body("ab", &u.email, STRONG_PASSWORD));
        assert_eq!(codes_for(&errors, "username"), vec!["too_short"]);

        let long = format!("u{}", "x".repeat(50));
        assert_eq!(long.len(), 51);
        let errors = rejected(&app, &register_body(&long, &u.email, STRONG_PASSWORD));
        assert_eq!(codes_for(&errors, "username"), vec!["too_long"]);

        // Exactly 50 is fine.
        let fifty = format!("{s}{}", "_".repeat(50 - s.len()));
        assert_eq!(fifty.len(), 50);
        let v = unique_user();
        json_body(
            app.post_json(REGISTER, &register_body(&fifty, &v.email, STRONG_PASSWORD)),
            201,
        );
    }

    fn a_three_character_username_is_accepted() {
        // Three characters leave few names: on a shared database an earlier run may hold one,
        // so a `username_taken` makes us try another; a 422 never does.
        let app = spawn_app();
        let alphabet: Vec<char> = "abcdefghijklmnopqrstuvwxyz0123456789_".chars().collect();
        let seed: usize = unique_suffix()
            .bytes()
            .fold(7usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize));
        for attempt in 0..20 {
            let x = seed.wrapping_add(attempt * 7919);
            let name: String = [
                'Q',
                alphabet[x % alphabet.len()],
                alphabet[(x / 37) % alphabet.len()],
            ]
            .iter()
            .collect();
            let u = unique_user();
            let resp = app.post_json(REGISTER, &register_body(&name, &u.email, STRONG_PASSWORD));
            match resp.status().as_u16() {
                201 => return,
                409 => continue,
                other => panic!("3-character username {name:?}: {other} {:?}", resp.text()),
            }
        }
        panic!("no free 3-character username in 20 attempts");
    }

    fn username_charset_is_ascii_letters_digits_and_underscore() {
        let app = spawn_app();
        let s = unique_suffix();
        for bad in [
            format!("bad-{s}"),
            format!("bad {s}"),
            format!("bad.{s}"),
            format!("bad@{s}"),
            format!(" {s}"),
            format!("{s}!"),
        ] {
            let u = unique_user();
            let errors = rejected(&app, &register_body(&bad, &u.email, STRONG_PASSWORD));
            assert_eq!(
                codes_for(&errors, "username"),
                vec!["invalid_format"],
                "username {bad:?}: {errors:?}"
            );
        }
        // A non-ASCII letter: API.md lists both `invalid_format` and `non_ascii` as codes and
        // does not say which applies to a username; either is fine, nothing else is.
        let u = unique_user();
        let errors = rejected(
            &app,
            &register_body(&format!("jos\u{e9}_{s}"), &u.email, STRONG_PASSWORD),
        );
        let codes = codes_for(&errors, "username");
        assert!(
            !codes.is_empty()
                && codes
                    .iter()
                    .all(|c| c == "invalid_format" || c == "non_ascii"),
            "{errors:?}"
        );
        // Letters, digits and underscores in any mix are fine.
        let u = unique_user();
        json_body(
            app.post_json(
                REGISTER,
                &register_body(&format!("_A9z_{s}"), &u.email, STRONG_PASSWORD),
            ),
            201,
        );
    }

    // ---------- §4: email ----------

    fn malformed_emails_are_invalid_format() {
        let app = spawn_app();
        let s = unique_suffix();
        for bad in [
            format!("plain{s}"),
            format!("two@@{s}.com"),
            format!("a@b@{s}.com"),
            format!("user@{s}"),
            format!("@{s}.com"),
            format!("{s}@"),
            format!("john doe{s}@example.com"),
        ] {
            let u = unique_user();
            let errors = rejected(&app, &register_body(&u.username, &bad, STRONG_PASSWORD));
            assert_eq!(
                codes_for(&errors, "email"),
                vec!["invalid_format"],
                "email {bad:?}: {errors:?}"
            );
        }
    }

    fn email_length_limit_is_254() {
        let app = spawn_app();
        let ok = email_of_length(254);
        let u = unique_user();
        json_body(
            app.post_json(REGISTER, &register_body(&u.username, &ok, STRONG_PASSWORD)),
            201,
        );
        let too_long = email_of_length(255);
        let u = unique_user();
        let errors = rejected(
            &app,
            &register_body(&u.username, &too_long, STRONG_PASSWORD),
        );
        assert_eq!(codes_for(&errors, "email"), vec!["too_long"], "{errors:?}");
    }

    fn mobile_numbers_of_10_to_15_digits_are_accepted() {
        let app = spawn_app();
        let base = unique_mobile(); // +1 and 11 digits
        let d = &base[2..];
        let accepted = [
            // 10 digits, no +
            d[1..].to_string(),
            // + and 15 digits
            format!("+9{d}777"),
            // formatted, 10 digits
            format!("(999) {}-{}", &d[4..7], &d[7..]),
        ];
        for mobile in accepted {
            let resp = register_with_mobile(&app, &mobile);
            let status = resp.status().as_u16();
            assert_eq!(status, 201, "mobile {mobile:?}: {:?}", resp.text());
        }
    }

    fn malformed_mobile_numbers_are_rejected() {
        let app = spawn_app();
        // Letters, a misplaced or doubled +, other punctuation: `invalid_format`.
        for bad in [
            "415-CALL-NOW",
            "++14155550100",
            "14155550100+",
            "1415555+0100",
            "+1.415.555.0100",
            "+1/415/555/0100",
        ] {
            let errors = validation_errors(register_with_mobile(&app, bad));
            assert_eq!(
                codes_for(&errors, "mobile_number"),
                vec!["invalid_format"],
                "mobile {bad:?}: {errors:?}"
            );
        }
        // Too few / too many digits: the rule is a format rule, but the codes list has
        // `too_short`/`too_long` too; API.md does not say which, so either is fine.
        for (bad, alt) in [
            ("123456789", "too_short"),
            ("+123456789", "too_short"),
            ("1234567890123456", "too_long"),
            ("+1 234 567 890 123 456", "too_long"),
        ] {
            let errors = validation_errors(register_with_mobile(&app, bad));
            let codes = codes_for(&errors, "mobile_number");
            assert!(
                codes.len() == 1 && (codes[0] == "invalid_format" || codes[0] == alt),
                "mobile {bad:?}: {errors:?}"
            );
        }
    }

    // ---------- §4: password, complex policy ----------

    fn complex_policy_reports_each_missing_class() {
        let app = spawn_app();
        assert_password_codes(&app, "zebra#quilt9", &["missing_uppercase"]);
        assert_password_codes(&app, "ZEBRA#QUILT9", &["missing_lowercase"]);
        assert_password_codes(&app, "Zebra#Quilt", &["missing_digit"]);
        assert_password_codes(&app, "Zebra9Quilt", &["missing_special"]);
        assert_password_codes(&app, "Zebra#Qu\u{ef}lt9", &["non_ascii"]);
        assert_password_codes(&app, "Zebra#Quilt9\u{1F600}", &["non_ascii"]);
        assert_password_codes(
            &app,
            "zebraquilt",
            &["missing_digit", "missing_special", "missing_uppercase"],
        );
        assert_password_codes(
            &app,
            "zq",
            &[
                "missing_digit",
                "missing_special",
                "missing_uppercase",
                "too_short",
            ],
        );
        assert_password_codes(&app, "ZQ#9", &["missing_lowercase", "too_short"]);
    }

    fn complex_policy_length_bounds() {
        let app = spawn_app();
        assert_password_codes(&app, "Zeb#qu9", &["too_short"]);
        assert_password_accepted(&app, "Zeb#qu9x");
        let max = format!("Zebra#Quilt9{}", "x".repeat(128 - 12));
        assert_eq!(max.len(), 128);
        assert_password_accepted(&app, &max);
        let over = format!("{max}y");
        assert_password_codes(&app, &over, &["too_long"]);
    }

    fn min_length_setting_is_applied() {
        let app = TestApp::spawn_with(&[("PORTCULLIS_PASSWORD_MIN_LENGTH", "12")]);
        assert_password_codes(&app, "Zebra#Quil9", &["too_short"]);
        assert_password_accepted(&app, "Zebra#Quilt9");
    }

    fn common_passwords_are_refused() {
        let app = spawn_app();
        // Each passes every other complex rule; the list is compared case-insensitively and
        // with leading and trailing digits and symbols removed.
        for common in [
            "Password123!",
            "pAsSwOrD1!",
            "!!Qwerty2024",
            "#1Letmein",
            "Iloveyou!!7",
            "2024Sunshine$",
        ] {
            assert_password_codes(&app, common, &["common_password"]);
        }
        // Stripping is only at the ends: a common word inside is not the common password.
        assert_password_accepted(&app, "Zq#password9Xv");
    }

    fn common_password_is_reported_together_with_the_other_rules() {
        let app = spawn_app();
        assert_password_codes(
            &app,
            "password",
            &[
                "common_password",
                "missing_digit",
                "missing_special",
                "missing_uppercase",
            ],
        );
    }

    fn password_may_not_contain_the_username() {
        let app = spawn_app();
        let s = unique_suffix();
        // This username is itself a complex-valid password (upper, lower, digit, `_`).
        let username = format!("Qz9_{s}");
        let email = format!("e{s}@example.com");
        for password in [
            username.clone(),
            format!("Xy1!{username}"),
            format!("Xy1!{}", username.to_uppercase()),
            format!("Xy1!{}x", username.to_lowercase()),
        ] {
            let errors = rejected(&app, &register_body(&username, &email, &password));
            assert_eq!(
                codes_for(&errors, "password"),
                vec!["contains_identifier"],
                "password {password:?} for username {username:?}: {errors:?}"
            );
        }
    }

    fn password_may_not_contain_the_email_local_part() {
        let app = spawn_app();
        let s = unique_suffix();
        let local = format!("mail{s}");
        let email = format!("{local}@example.com");
        let username = format!("u_{s}");
        for password in [
            format!("Xy1!{local}"),
            format!("Xy1!{}z", local.to_uppercase()),
        ] {
            let errors = rejected(&app, &register_body(&username, &email, &password));
            assert_eq!(
                codes_for(&errors, "password"),
                vec!["contains_identifier"],
                "password {password:?} for email {email:?}: {errors:?}"
            );
        }
        // The domain is not an identifier.
        json_body(
            app.post_json(
                REGISTER,
                &register_body(&username, &email, "Example.com#42x"),
            ),
            201,
        );
    }

    // ---------- §4: password, nist policy ----------

    fn nist_policy_checks_length_only_and_allows_unicode() {
        let app = TestApp::spawn_with(&[("PORTCULLIS_PASSWORD_POLICY", "nist")]);
        for ok in [
            "zebraquiltmarmalade",
            "zebra quilt marmalade",
            "ZEBRAQUILT",
            "p\u{e4}ssw\u{f6}rt-\u{dc}nic\u{f8}de-\u{df}",
            "\u{1F512}\u{1F511}\u{1F512}\u{1F511}\u{1F512}\u{1F511}\u{1F512}\u{1F511}",
            "\u{5bc6}\u{7801}\u{5bc6}\u{7801}\u{5b89}\u{5168}\u{5b89}\u{5168}",
        ] {
            assert_password_accepted(&app, ok);
        }
        assert_password_codes(&app, "zebraqu", &["too_short"]);
        // Famous entries of every common-password list (the built-in one has at least 10,000).
        for common in [
            "password",
            "123456789",
            "qwertyuiop",
            "football",
            "baseball",
            "superman",
            "trustno1",
            "princess",
            "starwars",
            "whatever",
            "1q2w3e4r",
            "passw0rd",
            "zaq12wsx",
            "abc12345",
        ] {
            assert_password_codes(&app, common, &["common_password"]);
        }
        assert_password_codes(&app, "PASSWORD2024", &["common_password"]);
        assert_password_codes(&app, &"x".repeat(129), &["too_long"]);
        assert_password_accepted(&app, &"x".repeat(128));
    }

    fn nist_policy_counts_characters_not_bytes() {
        // NIST 800-63B counts each Unicode code point as one character.
        let app = TestApp::spawn_with(&[("PORTCULLIS_PASSWORD_POLICY", "nist")]);
        // 7 characters, 14 bytes: too short.
        assert_password_codes(&app, &"\u{e9}".repeat(7), &["too_short"]);
        // 8 characters, 16 bytes: fine.
        assert_password_accepted(&app, &"\u{e9}".repeat(8));
        // 128 characters, 256 bytes: fine; 129: too long.
        assert_password_accepted(&app, &"\u{e9}".repeat(128));
        assert_password_codes(&app, &"\u{e9}".repeat(129), &["too_long"]);
    }

    fn nist_policy_still_refuses_identifiers_and_honours_min_length() {
        let app = TestApp::spawn_with(&[
            ("PORTCULLIS_PASSWORD_POLICY", "nist"),
            ("PORTCULLIS_PASSWORD_MIN_LENGTH", "12"),
        ]);
        assert_password_codes(&app, "zebraquilt1", &["too_short"]);
        assert_password_accepted(&app, "zebraquilt12");
        let s = unique_suffix();
        let username = format!("u_{s}");
        let errors = rejected(
            &app,
            &register_body(
                &username,
                &format!("e{s}@example.com"),
                &format!("my name is {username}"),
            ),
        );
        assert_eq!(
            codes_for(&errors, "password"),
            vec!["contains_identifier"],
            "{errors:?}"
        );
    }

    fn racing_registrations_of_one_username_create_one_account() {
        let app = spawn_app();
        let name = unique_user().username;
        let bodies = (0..6)
            .map(|i| {
                let u = unique_user();
                // Differently cased, so a case-sensitive unique index would let two in.
                let name = if i % 2 == 0 {
                    name.clone()
                } else {
                    name.to_uppercase()
                };
                register_body(&name, &u.email, STRONG_PASSWORD)
            })
            .collect();
        assert_exactly_one_winner(&register_concurrently(&app, bodies), "username_taken");
        app.assert_healthy();
    }

    fn racing_registrations_of_one_email_create_one_account() {
        let app = spawn_app();
        let email = unique_user().email;
        let bodies = (0..6)
            .map(|i| {
                let u = unique_user();
                let email = if i % 2 == 0 {
                    email.clone()
                } else {
                    email.to_uppercase()
                };
                register_body(&u.username, &email, STRONG_PASSWORD)
            })
            .collect();
        assert_exactly_one_winner(&register_concurrently(&app, bodies), "email_taken");
    }

    fn racing_registrations_of_one_mobile_number_create_one_account() {
        let app = spawn_app();
        let mobile = unique_mobile();
        let d = mobile[2..].to_string();
        let bodies = (0..6)
            .map(|i| {
                let u = unique_user();
                let m = if i % 2 == 0 {
                    mobile.clone()
                } else {
                    format!("+1 ({}) {}-{}", &d[0..3], &d[3..7], &d[7..])
                };
                json!({"username": u.username, "email": u.email, "password": STRONG_PASSWORD,
                       "mobile_number": m})
            })
            .collect();
        assert_exactly_one_winner(&register_concurrently(&app, bodies), "mobile_taken");
    }
}
