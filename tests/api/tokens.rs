//! Access tokens (§7): their shape, `GET /api/v1/users/me`, `GET /api/v1/auth/verify`, and
//! every way a token can be wrong. Forged tokens are signed here with the test secret, so
//! a token can have a valid signature and one wrong claim.

use base64::Engine;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use hmac::{Hmac, Mac};

use serde_json::{Value, json};

use sha2::Sha256;

use crate::support::{
    TEST_JWT_SECRET, TestApp, assert_problem, assert_user_resource, header, json_body, now,
    parse_utc_timestamp, spawn_app,
};

const ME: &str = "/api/v1/users/me";

const VERIFY: &str = "/api/v1/auth/verify";

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn decode_part(part: &str) -> Value {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .unwrap_or_else(|e| panic!("JWT part is not base64url without padding ({e}): {part}"));
    serde_json::from_slice(&bytes).expect("JWT part is not JSON")
}

/// (header, claims) of a JWT.
fn decode(token: &str) -> (Value, Value) {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "not a JWS compact token: {token}");
    (decode_part(parts[0]), decode_part(parts[1]))
}

fn hs256(signing_input: &str, secret: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
    mac.update(signing_input.as_bytes());
    b64(&mac.finalize().into_bytes())
}

/// A compact JWS of `header` and `claims`, HMAC-SHA256-signed with `secret`.
fn sign(header: &Value, claims: &Value, secret: &[u8]) -> String {
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let sig = hs256(&input, secret);
    format!("{input}.{sig}")
}

/// A user with a live session, and the header and claims of its real access token.
struct Subject {
    app: TestApp,
    token: String,
    header: Value,
    claims: Value,
}

impl Subject {
    fn new(app: TestApp) -> Subject {
        let (_, token, _) = app.registered_user();
        let (header, claims) = decode(&token);
        Subject {
            app,
            token,
            header,
            claims,
        }
    }

    /// The real token's header and claims with fresh times and a fresh `jti`, then `edit`,
    /// signed with the test secret.
    fn forge(&self, edit: impl FnOnce(&mut Value, &mut Value)) -> String {
        let mut header = self.header.clone();
        let mut claims = self.claims.clone();
        let t = now();
        claims["iat"] = json!(t);
        claims["nbf"] = json!(t);
        claims["exp"] = json!(t + 600);
        claims["jti"] = json!(format!("forged-{t}-{}", crate::support::unique_suffix()));
        edit(&mut header, &mut claims);
        sign(&header, &claims, TEST_JWT_SECRET.as_bytes())
    }

    fn assert_rejected(&self, token: &str, what: &str) {
        for path in [ME, VERIFY] {
            let resp = self.app.get_with_token(path, token);
            let www = header(&resp, "www-authenticate").unwrap_or_default();
            let status = resp.status().as_u16();
            if status != 401 {
                panic!(
                    "{what} on {path}: expected 401, got {status}: {:?}",
                    resp.text()
                );
            }
            assert_problem(resp, 401, "invalid_token");
            assert!(
                www.contains("error=\"invalid_token\""),
                "{what} on {path}: WWW-Authenticate must carry error=\"invalid_token\", got {www:?}"
            );
        }
    }

    fn assert_accepted(&self, token: &str, what: &str) {
        let resp = self.app.get_with_token(ME, token);
        let status = resp.status().as_u16();
        assert_eq!(status, 200, "{what}: {:?}", resp.text());
    }
}

api_tests! {
    fn access_token_has_the_documented_header_and_claims() {
        let app = spawn_app();
        let (_, token, reg) = app.registered_user();
        let (header, claims) = decode(&token);
        assert_eq!(header["typ"], "at+jwt", "{header}");
        assert_eq!(header["alg"], "HS256", "{header}");
        assert!(
            header["kid"].as_str().is_some_and(|k| !k.is_empty()),
            "kid: {header}"
        );

        assert_eq!(claims["iss"], "portcullis", "{claims}");
        let aud_ok = claims["aud"] == "portcullis"
            || claims["aud"]
                .as_array()
                .is_some_and(|a| a.contains(&json!("portcullis")));
        assert!(aud_ok, "aud: {claims}");
        assert_eq!(
            claims["sub"], reg["user"]["id"],
            "sub is the user id: {claims}"
        );
        assert_eq!(
            claims["sid"], reg["session_id"],
            "sid is the session id: {claims}"
        );
        assert!(
            claims["jti"].as_str().is_some_and(|j| !j.is_empty()),
            "jti: {claims}"
        );
        let iat = claims["iat"].as_i64().expect("iat is a number");
        let nbf = claims["nbf"].as_i64().expect("nbf is a number");
        let exp = claims["exp"].as_i64().expect("exp is a number");
        assert!((iat - now()).abs() <= 60, "iat is now: {claims}");
        assert!(nbf <= iat, "nbf: {claims}");
        assert_eq!(exp - iat, 900, "exp = iat + ACCESS_TTL: {claims}");

        // Signed with the configured secret.
        let (input, sig) = token.rsplit_once('.').unwrap();
        assert_eq!(
            sig,
            hs256(input, TEST_JWT_SECRET.as_bytes()),
            "HS256 over the configured PORTCULLIS_JWT_SECRET"
        );
    }

    fn each_token_has_its_own_jti() {
        let app = spawn_app();
        let (u, t1, _) = app.registered_user();
        let t2 = app.login_ok(&u.username, &u.password)["access_token"]
            .as_str()
            .unwrap()
            .to_string();
        assert_ne!(decode(&t1).1["jti"], decode(&t2).1["jti"]);
    }

    fn issuer_audience_and_ttl_follow_the_settings() {
        let app = TestApp::spawn_with(&[
            ("PORTCULLIS_JWT_ISSUER", "https://auth.example.test"),
            ("PORTCULLIS_JWT_AUDIENCE", "orders-api"),
            ("PORTCULLIS_ACCESS_TTL", "120"),
            ("PORTCULLIS_REFRESH_TTL", "3600"),
        ]);
        let (_, token, reg) = app.registered_user();
        assert_eq!(reg["expires_in"], 120);
        assert_eq!(reg["refresh_expires_in"], 3600);
        let (_, claims) = decode(&token);
        assert_eq!(claims["iss"], "https://auth.example.test");
        assert!(
            claims["aud"] == "orders-api"
                || claims["aud"]
                    .as_array()
                    .is_some_and(|a| a.contains(&json!("orders-api"))),
            "{claims}"
        );
        let exp = claims["exp"].as_i64().unwrap();
        let iat = claims["iat"].as_i64().unwrap();
        assert_eq!(exp - iat, 120);
        json_body(app.get_with_token(ME, &token), 200);
    }

    fn users_me_returns_the_user() {
        let app = spawn_app();
        let (u, token, reg) = app.registered_user();
        let me = json_body(app.get_with_token(ME, &token), 200);
        assert_user_resource(&me);
        assert_eq!(me["id"], reg["user"]["id"]);
        assert_eq!(me["username"], u.username.as_str());
        assert_eq!(me["email"], u.email.as_str());
        assert_eq!(me, reg["user"], "the same user as at registration");
    }

    fn verify_describes_a_valid_token() {
        let app = spawn_app();
        let (u, token, reg) = app.registered_user();
        let body = json_body(app.get_with_token(VERIFY, &token), 200);
        assert_eq!(body["valid"], true, "{body}");
        assert_eq!(body["user_id"], reg["user"]["id"], "{body}");
        assert_eq!(body["username"], u.username.as_str(), "{body}");
        assert_eq!(body["session_id"], reg["session_id"], "{body}");
        // API.md does not say whose expiry `expires_at` is; for a token check it is the
        // token's: we require the access token's `exp`.
        let expires_at = body["expires_at"]
            .as_str()
            .and_then(parse_utc_timestamp)
            .unwrap_or_else(|| panic!("expires_at is not an RFC 3339 UTC time: {body}"));
        let exp = decode(&token).1["exp"].as_i64().unwrap();
        assert!(
            (expires_at - exp).abs() <= 1,
            "expires_at {expires_at} should be the token's exp {exp}"
        );
    }

    fn a_token_works_for_its_own_session() {
        // Sessions are checked live: a token whose session exists is accepted, again and again,
        // and so is a second session's token beside it.
        let app = spawn_app();
        let (u, t1, _) = app.registered_user();
        let t2 = app.login_ok(&u.username, &u.password)["access_token"]
            .as_str()
            .unwrap()
            .to_string();
        for _ in 0..3 {
            json_body(app.get_with_token(ME, &t1), 200);
            json_body(app.get_with_token(ME, &t2), 200);
            json_body(app.get_with_token(VERIFY, &t1), 200);
        }
    }

    fn a_forged_token_with_correct_claims_is_accepted() {
        // Proves the forging below is faithful: each rejection that follows is caused by the
        // one thing it changes.
        let s = Subject::new(spawn_app());
        s.assert_accepted(&s.token.clone(), "the real token");
        let forged = s.forge(|_, _| {});
        s.assert_accepted(&forged, "a faithful forgery");
    }

    fn no_token_is_401_unauthorized() {
        let app = spawn_app();
        for path in [ME, VERIFY] {
            let resp = app.get(path);
            let www = header(&resp, "www-authenticate").unwrap_or_default();
            assert_problem(resp, 401, "unauthorized");
            assert!(
                !www.contains("invalid_token"),
                "no token was sent, so no error code: {www:?}"
            );
        }
    }

    fn bearer_without_a_token_and_other_schemes_are_401() {
        // API.md: `unauthorized` is for "no token", `invalid_token` for a bad one. "Bearer"
        // with nothing after it, or a Basic credential, carries no bearer token, yet a client
        // did try to authenticate: API.md does not settle which code applies, so either is
        // accepted here (with the Bearer challenge either way).
        let app = spawn_app();
        let (u, token, _) = app.registered_user();
        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", u.username, u.password))
        );
        for auth in [
            "Bearer".to_string(),
            "Bearer ".to_string(),
            basic,
            format!("Token {token}"),
            token.clone(),
        ] {
            let resp = app.get_with_authorization(ME, &auth);
            let status = resp.status().as_u16();
            assert_eq!(status, 401, "Authorization {auth:?}: {:?}", resp.text());
            let code = if header(&resp, "www-authenticate")
                .unwrap_or_default()
                .contains("invalid_token")
            {
                "invalid_token"
            } else {
                "unauthorized"
            };
            let body = assert_problem(resp, 401, code);
            assert!(
                body["code"] == "unauthorized" || body["code"] == "invalid_token",
                "{body}"
            );
        }
    }

    fn the_bearer_scheme_is_case_insensitive() {
        // RFC 7235 §2.1: the auth-scheme is case-insensitive.
        let app = spawn_app();
        let (_, token, _) = app.registered_user();
        for scheme in ["bearer", "BEARER"] {
            let resp = app.get_with_authorization(ME, &format!("{scheme} {token}"));
            assert_eq!(resp.status().as_u16(), 200, "{scheme}: {:?}", resp.text());
        }
    }

    fn garbage_tokens_are_invalid() {
        let s = Subject::new(spawn_app());
        for garbage in [
            "garbage",
            "a.b.c",
            "eyJhbGciOiJIUzI1NiJ9.e30.",
            "....",
            "' OR 1=1 --",
            &"A".repeat(4000),
        ] {
            s.assert_rejected(garbage, &format!("garbage {garbage:.40}"));
        }
    }

    fn a_token_signed_with_another_secret_is_invalid() {
        let s = Subject::new(spawn_app());
        let parts: Vec<&str> = s.token.split('.').collect();
        let input = format!("{}.{}", parts[0], parts[1]);
        let other = format!(
            "{input}.{}",
            hs256(&input, b"another-secret-another-secret-another-secret!!")
        );
        s.assert_rejected(&other, "the real claims signed with another secret");
    }

    fn a_tampered_token_is_invalid() {
        let s = Subject::new(spawn_app());
        let (_, other_token, _) = s.app.registered_user();
        let (_, other_claims) = decode(&other_token);
        let parts: Vec<&str> = s.token.split('.').collect();

        // Another user's id in the payload, the original signature.
        let mut claims = s.claims.clone();
        claims["sub"] = other_claims["sub"].clone();
        let tampered = format!(
            "{}.{}.{}",
            parts[0],
            b64(claims.to_string().as_bytes()),
            parts[2]
        );
        s.assert_rejected(&tampered, "a payload with another sub");

        // A longer lifetime, the original signature.
        let mut claims = s.claims.clone();
        claims["exp"] = json!(claims["exp"].as_i64().unwrap() + 86_400);
        let tampered = format!(
            "{}.{}.{}",
            parts[0],
            b64(claims.to_string().as_bytes()),
            parts[2]
        );
        s.assert_rejected(&tampered, "a payload with a later exp");

        // One character of the signature changed.
        let mut sig: Vec<char> = parts[2].chars().collect();
        sig[5] = if sig[5] == 'A' { 'B' } else { 'A' };
        let tampered = format!(
            "{}.{}.{}",
            parts[0],
            parts[1],
            sig.iter().collect::<String>()
        );
        s.assert_rejected(&tampered, "a changed signature");

        // No signature at all.
        s.assert_rejected(&format!("{}.{}.", parts[0], parts[1]), "an empty signature");
    }

    fn alg_none_and_other_algorithms_are_refused() {
        let s = Subject::new(spawn_app());
        let parts: Vec<&str> = s.token.split('.').collect();
        for alg in ["none", "None", "NONE"] {
            let mut header = s.header.clone();
            header["alg"] = json!(alg);
            let h = b64(header.to_string().as_bytes());
            s.assert_rejected(&format!("{h}.{}.", parts[1]), &format!("alg {alg}"));
            s.assert_rejected(
                &format!("{h}.{}.{}", parts[1], parts[2]),
                &format!("alg {alg} with the old signature"),
            );
        }
        // HS512 with the very same secret: only the configured algorithm is accepted.
        let mut header = s.header.clone();
        header["alg"] = json!("HS512");
        let h = b64(header.to_string().as_bytes());
        let input = format!("{h}.{}", parts[1]);
        let mut mac = Hmac::<sha2::Sha512>::new_from_slice(TEST_JWT_SECRET.as_bytes()).unwrap();
        mac.update(input.as_bytes());
        let sig = b64(&mac.finalize().into_bytes());
        s.assert_rejected(&format!("{input}.{sig}"), "HS512 with the right secret");
        // HS256 header claimed as EdDSA.
        let forged = s.forge(|h, _| h["alg"] = json!("EdDSA"));
        s.assert_rejected(&forged, "alg EdDSA over an HMAC signature");
    }

    fn wrong_issuer_audience_or_type_are_invalid() {
        let s = Subject::new(spawn_app());
        let cases: Vec<(&str, String)> = vec![
            (
                "iss of another issuer",
                s.forge(|_, c| c["iss"] = json!("someone-else")),
            ),
            (
                "no iss",
                s.forge(|_, c| {
                    c.as_object_mut().unwrap().remove("iss");
                }),
            ),
            (
                "aud of another audience",
                s.forge(|_, c| c["aud"] = json!("another-api")),
            ),
            (
                "aud list without us",
                s.forge(|_, c| c["aud"] = json!(["another-api"])),
            ),
            (
                "no aud",
                s.forge(|_, c| {
                    c.as_object_mut().unwrap().remove("aud");
                }),
            ),
            ("typ JWT", s.forge(|h, _| h["typ"] = json!("JWT"))),
            (
                "no typ",
                s.forge(|h, _| {
                    h.as_object_mut().unwrap().remove("typ");
                }),
            ),
            (
                "typ of a refresh token",
                s.forge(|h, _| h["typ"] = json!("refresh+jwt")),
            ),
        ];
        for (what, token) in cases {
            s.assert_rejected(&token, what);
        }
    }

    fn times_outside_the_validity_window_are_invalid() {
        let s = Subject::new(spawn_app());
        let t = now();
        let cases: Vec<(&str, String)> = vec![
            (
                "expired an hour ago",
                s.forge(|_, c| {
                    c["iat"] = json!(t - 7200);
                    c["nbf"] = json!(t - 7200);
                    c["exp"] = json!(t - 3600);
                }),
            ),
            (
                "not valid for an hour",
                s.forge(|_, c| c["nbf"] = json!(t + 3600)),
            ),
            // CLOCK_SKEW is leeway for `iat` too: a token from the future is refused even
            // when its `nbf` is now.
            (
                "issued an hour from now",
                s.forge(|_, c| c["iat"] = json!(t + 3600)),
            ),
            (
                "no exp",
                s.forge(|_, c| {
                    c.as_object_mut().unwrap().remove("exp");
                }),
            ),
            (
                "exp as a string",
                s.forge(|_, c| c["exp"] = json!((t + 600).to_string())),
            ),
        ];
        for (what, token) in cases {
            s.assert_rejected(&token, what);
        }
    }

    fn a_token_for_a_session_that_does_not_exist_is_invalid() {
        let s = Subject::new(spawn_app());
        let (_, other_token, _) = s.app.registered_user();
        let (_, other) = decode(&other_token);
        let cases: Vec<(&str, String)> = vec![
            (
                "an unknown sid",
                s.forge(|_, c| c["sid"] = json!("no-such-session")),
            ),
            (
                "no sid",
                s.forge(|_, c| {
                    c.as_object_mut().unwrap().remove("sid");
                }),
            ),
            // A live session, but another user's: the sid must belong to the sub.
            (
                "another user's sid",
                s.forge(|_, c| c["sid"] = other["sid"].clone()),
            ),
            (
                "an unknown sub",
                s.forge(|_, c| c["sub"] = json!("no-such-user")),
            ),
            (
                "another user's sub",
                s.forge(|_, c| c["sub"] = other["sub"].clone()),
            ),
        ];
        for (what, token) in cases {
            s.assert_rejected(&token, what);
        }
        // The genuine tokens still work.
        s.assert_accepted(&s.token.clone(), "the real token");
        s.assert_accepted(&other_token, "the other user's token");
    }

    fn a_token_from_another_service_instance_is_invalid() {
        let s = Subject::new(TestApp::spawn_with(&[(
            "PORTCULLIS_JWT_SECRET",
            "a-completely-different-secret-for-this-instance-0001",
        )]));
        let other = spawn_app();
        let resp = other.get_with_token(ME, &s.token);
        let www = header(&resp, "www-authenticate").unwrap_or_default();
        assert_problem(resp, 401, "invalid_token");
        assert!(www.contains("error=\"invalid_token\""), "{www:?}");
    }

    fn an_expired_token_is_refused() {
        // The one test that waits: a 1 s lifetime, no leeway, 2.5 s of waiting.
        let app = TestApp::spawn_with(&[
            ("PORTCULLIS_ACCESS_TTL", "1"),
            ("PORTCULLIS_CLOCK_SKEW", "0"),
        ]);
        let (_, token, reg) = app.registered_user();
        assert_eq!(reg["expires_in"], 1);
        std::thread::sleep(std::time::Duration::from_millis(2500));
        for path in [ME, VERIFY] {
            let resp = app.get_with_token(path, &token);
            let www = header(&resp, "www-authenticate").unwrap_or_default();
            assert_problem(resp, 401, "invalid_token");
            assert!(www.contains("error=\"invalid_token\""), "{www:?}");
        }
    }
}
