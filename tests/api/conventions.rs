//! The conventions of §2: media types, malformed bodies, body size, unknown routes and
//! methods, and the problem format of every error.

use reqwest::Method;

use serde_json::{Value, json};

use crate::support::{
    TestApp, TestUser, assert_client_error, assert_problem, header, json_body, spawn_app,
    unique_user,
};

const REGISTER: &str = "/api/v1/auth/register";

const LOGIN: &str = "/api/v1/auth/login";

fn registration(u: &TestUser) -> Value {
    json!({"username": u.username, "email": u.email, "password": u.password})
}

/// A valid registration padded with JSON whitespace to exactly `len` bytes.
fn padded_registration(len: usize) -> Vec<u8> {
    let mut body = registration(&unique_user()).to_string();
    assert!(body.len() <= len);
    let pad = len - body.len();
    body.insert_str(1, &" ".repeat(pad));
    assert_eq!(body.len(), len);
    body.into_bytes()
}

api_tests! {
    fn a_body_without_the_json_content_type_is_415() {
        let app = spawn_app();
        let u = unique_user();
        let body = registration(&u).to_string().into_bytes();
        for ct in [
            None,
            Some("text/plain"),
            Some("application/x-www-form-urlencoded"),
            Some("application/xml"),
            Some("multipart/form-data; boundary=x"),
            Some("application/jsonx"),
        ] {
            for path in [REGISTER, LOGIN] {
                let resp = app.post_raw(path, ct, body.clone());
                assert_problem(resp, 415, "unsupported_media_type");
            }
        }
        // Nothing was registered by any of those: the same registration now succeeds.
        app.register_user(&u);
    }

    fn json_content_type_parameters_and_case_are_accepted() {
        // Media types are case-insensitive and may carry parameters (RFC 9110 §8.3.1).
        let app = spawn_app();
        for ct in [
            "application/json; charset=utf-8",
            "application/json;charset=UTF-8",
            "Application/JSON",
        ] {
            let u = unique_user();
            let resp = app.post_raw(
                REGISTER,
                Some(ct),
                registration(&u).to_string().into_bytes(),
            );
            json_body(resp, 201);
        }
    }

    fn malformed_json_is_400_invalid_json() {
        let app = spawn_app();
        let u = unique_user();
        let valid = registration(&u).to_string();
        let truncated = valid[..valid.len() - 5].to_string();
        for bad in [
            truncated.as_str(),
            "",
            " ",
            "{",
            "{\"username\": }",
            "{'username': 'single quotes'}",
            "{\"username\": \"a\",}",
            "{\"username\": \"a\"} trailing",
            "{\"username\": \"unterminated}",
            "NaN",
            "{\"username\": \"bad escape \\q\"}",
        ] {
            for path in [REGISTER, LOGIN] {
                let resp = app.post_raw(path, Some("application/json"), bad.as_bytes().to_vec());
                assert_problem(resp, 400, "invalid_json");
            }
        }
        app.register_user(&u);
    }

    fn invalid_utf8_is_400_invalid_json() {
        let app = spawn_app();
        let mut body = b"{\"username\": \"ab".to_vec();
        body.extend_from_slice(&[0xff, 0xfe, 0xc3]);
        body.extend_from_slice(b"\", \"email\": \"x@example.com\", \"password\": \"Tr1cky!Horse#42\"}");
        for path in [REGISTER, LOGIN] {
            let resp = app.post_raw(path, Some("application/json"), body.clone());
            assert_problem(resp, 400, "invalid_json");
        }
    }

    fn json_that_is_not_an_object_is_refused() {
        // API.md does not say whether well-formed JSON of the wrong shape is `invalid_json`
        // (400) or `validation_failed` (422): either is accepted, nothing else.
        let app = spawn_app();
        for body in ["[]", "[1,2]", "42", "\"text\"", "null", "true"] {
            for path in [REGISTER, LOGIN] {
                let resp = app.post_raw(path, Some("application/json"), body.as_bytes().to_vec());
                let (status, problem) = assert_client_error(resp, &format!("{path} {body}"));
                match status {
                    400 => assert_eq!(problem["code"], "invalid_json", "{problem}"),
                    422 => assert_eq!(problem["code"], "validation_failed", "{problem}"),
                    other => panic!("{path} {body}: {other} {problem}"),
                }
            }
        }
    }

    fn fields_of_the_wrong_type_are_refused() {
        // As above: 400 `invalid_json` or 422 `validation_failed` (API.md is silent).
        let app = spawn_app();
        let u = unique_user();
        let cases = [
            json!({"username": 123, "email": u.email, "password": u.password}),
            json!({"username": u.username, "email": ["a@example.com"], "password": u.password}),
            json!({"username": u.username, "email": u.email, "password": {"v": 1}}),
            json!({"username": u.username, "email": u.email, "password": true}),
            json!({"username": u.username, "email": u.email, "password": u.password,
                   "mobile_number": 14155550100_u64}),
        ];
        for body in cases {
            let resp = app.post_json(REGISTER, &body);
            let (status, problem) = assert_client_error(resp, &body.to_string());
            match status {
                400 => assert_eq!(problem["code"], "invalid_json", "{problem}"),
                422 => assert_eq!(problem["code"], "validation_failed", "{problem}"),
                other => panic!("{body}: {other} {problem}"),
            }
        }
        for body in [
            json!({"login": 42, "password": "x"}),
            json!({"login": "x", "password": null}),
            json!({"login": ["x"], "password": "x"}),
        ] {
            let resp = app.post_json(LOGIN, &body);
            let (status, problem) = assert_client_error(resp, &body.to_string());
            match status {
                400 => assert_eq!(problem["code"], "invalid_json", "{problem}"),
                422 => assert_eq!(problem["code"], "validation_failed", "{problem}"),
                other => panic!("{body}: {other} {problem}"),
            }
        }
        // None of that created the user.
        app.register_user(&u);
    }

    fn bodies_over_the_default_limit_are_413() {
        let app = spawn_app();
        // Exactly 10240 bytes is allowed...
        let resp = app.post_raw(
            REGISTER,
            Some("application/json"),
            padded_registration(10_240),
        );
        json_body(resp, 201);
        // ...one more is not.
        let resp = app.post_raw(
            REGISTER,
            Some("application/json"),
            padded_registration(10_241),
        );
        assert_problem(resp, 413, "payload_too_large");
        let resp = app.post_raw(LOGIN, Some("application/json"), padded_registration(20_000));
        assert_problem(resp, 413, "payload_too_large");
        let resp = app.post_raw(REGISTER, Some("application/json"), vec![b' '; 64 * 1024]);
        assert_problem(resp, 413, "payload_too_large");
    }

    fn a_chunked_body_over_the_limit_is_413() {
        // No Content-Length: the limit must hold while reading, too.
        let app = spawn_app();
        let send_oversized = || {
            let body =
                reqwest::blocking::Body::new(std::io::Cursor::new(padded_registration(20_000)));
            app.request(Method::POST, REGISTER)
                .header("Content-Type", "application/json")
                .body(body)
                .send()
        };
        // The server answers before the client has sent the whole body and then closes
        // the connection; on a busy machine that close can reach the client before it
        // reads the answer. Once, that is TCP's race; the second try must see the 413.
        let resp = send_oversized()
            .or_else(|_| send_oversized())
            .expect("an answer to the oversized chunked body");
        assert_problem(resp, 413, "payload_too_large");
        // A small chunked body is fine.
        let body = reqwest::blocking::Body::new(std::io::Cursor::new(padded_registration(500)));
        let resp = app
            .request(Method::POST, REGISTER)
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .unwrap();
        json_body(resp, 201);
    }

    fn a_lowered_body_limit_is_applied() {
        let app = TestApp::spawn_with(&[("PORTCULLIS_MAX_BODY_BYTES", "1024")]);
        let resp = app.post_raw(
            REGISTER,
            Some("application/json"),
            padded_registration(1024),
        );
        json_body(resp, 201);
        let resp = app.post_raw(
            REGISTER,
            Some("application/json"),
            padded_registration(1025),
        );
        assert_problem(resp, 413, "payload_too_large");
        let resp = app.post_raw(LOGIN, Some("application/json"), padded_registration(5000));
        assert_problem(resp, 413, "payload_too_large");
    }

    fn unknown_routes_are_404_not_found() {
        let app = spawn_app();
        for path in [
            "/nope",
            "/api",
            "/api/v1",
            "/api/v1/nope",
            "/api/v2/auth/login",
            "/api/v1/auth/nope",
            "/api/v1/users/someone-else",
            "/health/extra",
            "/%2e%2e/etc/passwd",
        ] {
            assert_problem(app.get(path), 404, "not_found");
        }
        let resp = app.post_json("/api/v1/auth/nope", &json!({}));
        assert_problem(resp, 404, "not_found");
    }

    fn a_wrong_method_on_a_known_route_is_405() {
        let app = spawn_app();
        let cases = [
            (Method::DELETE, "/health", "GET"),
            (Method::POST, "/health", "GET"),
            (Method::PUT, "/api/v1/validation-rules", "GET"),
            (Method::GET, LOGIN, "POST"),
            (Method::GET, REGISTER, "POST"),
            (Method::PUT, REGISTER, "POST"),
            (Method::DELETE, LOGIN, "POST"),
            (Method::POST, "/api/v1/auth/verify", "GET"),
        ];
        for (method, path, allowed) in cases {
            let mut req = app.request(method.clone(), path);
            if method == Method::POST || method == Method::PUT {
                req = req.header("Content-Type", "application/json").body("{}");
            }
            let resp = req.send().unwrap();
            // RFC 9110 §15.5.6: a 405 must list the allowed methods.
            let allow = header(&resp, "allow").unwrap_or_default();
            assert_problem(resp, 405, "method_not_allowed");
            assert!(
                allow.to_ascii_uppercase().contains(allowed),
                "{method} {path}: Allow should list {allowed}, got {allow:?}"
            );
        }
    }

    fn success_bodies_are_json() {
        let app = spawn_app();
        for path in ["/health", "/api/v1/validation-rules"] {
            let resp = app.get(path);
            let ct = header(&resp, "content-type").unwrap_or_default();
            assert!(ct.starts_with("application/json"), "{path}: {ct:?}");
            json_body(resp, 200);
        }
    }

    fn validation_problems_follow_rfc_9457() {
        let app = spawn_app();
        let resp = app.post_json(REGISTER, &json!({"username": "x"}));
        let body = assert_problem(resp, 422, "validation_failed");
        assert!(body["errors"].is_array(), "{body}");
        assert!(
            body["detail"].is_string() || body.get("detail").is_none(),
            "detail, when present, is a string: {body}"
        );
    }
}
