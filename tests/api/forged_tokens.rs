//! Forged access tokens, after jwt_tool's playbook (alg none, null and stripped signatures,
//! HS/EdDSA key confusion, injected `jwk`, spoofed `jku`/`x5u`, `kid` injection, claim
//! tampering, odd shapes): every one must get 401 `invalid_token` on a protected endpoint,
//! never a 5xx and never a 200, and the service must be fine afterwards.
//!
//! EdDSA tokens are signed and checked with [`ed25519`] (ed25519-dalek; RFC 8032's own
//! test vectors are checked below).

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use reqwest::Method;
use serde_json::{Value, json};
use sha2::Sha256;

use crate::support::{
    TEST_JWT_SECRET, TestApp, TestUser, assert_problem, header, json_body, now, spawn_app,
    unique_suffix,
};

const ME: &str = "/api/v1/users/me";
const SESSIONS: &str = "/api/v1/sessions";
pub const JWKS: &str = "/.well-known/jwks.json";

/// The attacker's own Ed25519 key (a 32-byte seed).
const ATTACKER_SEED: [u8; 32] = *b"attacker-controlled-ed25519-seed";

pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

pub fn b64_decode(part: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD
        .decode(part)
        .unwrap_or_else(|e| panic!("not base64url without padding ({e}): {part}"))
}

/// (header, claims) of a compact JWS.
pub fn decode(token: &str) -> (Value, Value) {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "not a JWS compact token: {token}");
    let json = |p: &str| -> Value {
        serde_json::from_slice(&b64_decode(p)).unwrap_or_else(|e| panic!("not JSON ({e}): {p}"))
    };
    (json(parts[0]), json(parts[1]))
}

/// `header.payload.signature` of a compact JWS.
fn split3(token: &str) -> (String, String, String) {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "not a JWS compact token: {token}");
    (
        parts[0].to_string(),
        parts[1].to_string(),
        parts[2].to_string(),
    )
}

fn hmac256(input: &str, secret: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
    mac.update(input.as_bytes());
    b64(&mac.finalize().into_bytes())
}

/// `b64(header).b64(claims)`.
fn signing_input(header: &Value, claims: &Value) -> String {
    format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    )
}

/// A compact JWS whose signature is HMAC-SHA256 with `secret`, whatever `alg` says.
fn sign_hmac(header: &Value, claims: &Value, secret: &[u8]) -> String {
    let input = signing_input(header, claims);
    let sig = hmac256(&input, secret);
    format!("{input}.{sig}")
}

/// A compact JWS whose signature is Ed25519 with `seed`, whatever `alg` says.
fn sign_ed25519(header: &Value, claims: &Value, seed: &[u8; 32]) -> String {
    let input = signing_input(header, claims);
    let sig = ed25519::sign(seed, input.as_bytes());
    assert!(
        ed25519::verify(&ed25519::public_key(seed), input.as_bytes(), &sig),
        "the forger's own signature must be valid under its own key"
    );
    format!("{input}.{}", b64(&sig))
}

/// The attacker's public key as a JWK.
fn attacker_jwk(kid: &str) -> Value {
    json!({
        "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig", "kid": kid,
        "x": b64(&ed25519::public_key(&ATTACKER_SEED)),
    })
}

/// The JWK that `GET /.well-known/jwks.json` publishes for `kid`.
pub fn published_jwk(app: &TestApp, kid: &str) -> Value {
    let jwks = json_body(app.get(JWKS), 200);
    let keys = jwks["keys"]
        .as_array()
        .unwrap_or_else(|| panic!("JWKS without a `keys` array: {jwks}"));
    keys.iter()
        .find(|k| k["kid"] == kid)
        .unwrap_or_else(|| panic!("kid {kid:?} is not in the JWKS: {jwks}"))
        .clone()
}

/// A user with a live session, and the header and claims of its real access token.
struct Victim {
    app: TestApp,
    user: TestUser,
    token: String,
    header: Value,
    claims: Value,
}

impl Victim {
    fn new(app: TestApp) -> Victim {
        let (user, token, _) = app.registered_user();
        let (header, claims) = decode(&token);
        Victim {
            app,
            user,
            token,
            header,
            claims,
        }
    }

    /// An HS256 service, as the suite starts it.
    fn hs256() -> Victim {
        let v = Victim::new(spawn_app());
        assert_eq!(v.header["alg"], "HS256", "{}", v.header);
        v
    }

    /// An EdDSA service (which is still given the suite's HS256 secret: it must not use it).
    fn eddsa() -> Victim {
        let v = Victim::new(TestApp::spawn_with(&[(
            "PORTCULLIS_JWT_ALGORITHM",
            "EdDSA",
        )]));
        assert_eq!(v.header["alg"], "EdDSA", "{}", v.header);
        v
    }

    fn kid(&self) -> String {
        self.header["kid"]
            .as_str()
            .unwrap_or_else(|| panic!("no kid: {}", self.header))
            .to_string()
    }

    /// The real claims with fresh times and a fresh `jti`.
    fn fresh_claims(&self) -> Value {
        let mut claims = self.claims.clone();
        let t = now();
        claims["iat"] = json!(t);
        claims["nbf"] = json!(t);
        claims["exp"] = json!(t + 600);
        claims["jti"] = json!(format!("forged-{}", unique_suffix()));
        claims
    }

    /// The real header and fresh claims, then `edit`, signed with the suite's HS256 secret.
    fn forge_hs(&self, edit: impl FnOnce(&mut Value, &mut Value)) -> String {
        let mut header = self.header.clone();
        let mut claims = self.fresh_claims();
        edit(&mut header, &mut claims);
        sign_hmac(&header, &claims, TEST_JWT_SECRET.as_bytes())
    }

    /// The real header and fresh claims, then `edit`, signed with the attacker's Ed25519 key.
    fn forge_ed(&self, edit: impl FnOnce(&mut Value, &mut Value)) -> String {
        let mut header = self.header.clone();
        let mut claims = self.fresh_claims();
        edit(&mut header, &mut claims);
        sign_ed25519(&header, &claims, &ATTACKER_SEED)
    }

    /// 401 `invalid_token` with `WWW-Authenticate: Bearer error="invalid_token"` on two
    /// protected endpoints.
    fn assert_rejected(&self, token: &str, what: &str) {
        for path in [ME, SESSIONS] {
            let resp = self.app.get_with_token(path, token);
            let status = resp.status().as_u16();
            let www = header(&resp, "www-authenticate").unwrap_or_default();
            if status != 401 {
                panic!(
                    "{what} on {path}: expected 401 invalid_token, got {status}: {:?}\n token: {:.300}",
                    resp.text(),
                    token
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

    /// The service survived: healthy, and the real token still works.
    fn assert_unharmed(&self) {
        self.app.assert_healthy();
        self.assert_accepted(&self.token, "the real token, afterwards");
    }
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn alg_none_cases(v: &Victim) {
    let (_, _, real_sig) = split3(&v.token);
    let payload = b64(v.fresh_claims().to_string().as_bytes());
    for alg in ["none", "None", "NONE", "nOnE"] {
        let mut header = v.header.clone();
        header["alg"] = json!(alg);
        let h = b64(header.to_string().as_bytes());
        let minimal = b64(json!({"alg": alg, "typ": "at+jwt"}).to_string().as_bytes());
        let bare = b64(json!({"alg": alg}).to_string().as_bytes());
        for (what, token) in [
            ("empty signature", format!("{h}.{payload}.")),
            ("no signature segment", format!("{h}.{payload}")),
            ("the real signature", format!("{h}.{payload}.{real_sig}")),
            (
                "an HMAC with the real secret",
                format!(
                    "{h}.{payload}.{}",
                    hmac256(&format!("{h}.{payload}"), TEST_JWT_SECRET.as_bytes())
                ),
            ),
            ("a junk signature", format!("{h}.{payload}.AAAA")),
            (
                "minimal header, empty signature",
                format!("{minimal}.{payload}."),
            ),
            ("{alg} only, empty signature", format!("{bare}.{payload}.")),
        ] {
            v.assert_rejected(&token, &format!("alg {alg:?}, {what}"));
        }
    }
    v.assert_unharmed();
}

fn stripped_signature_cases(v: &Victim) {
    let (h, p, _) = split3(&v.token);
    v.assert_rejected(&format!("{h}.{p}."), "the real token, signature stripped");
    v.assert_rejected(&format!("{h}.{p}"), "the real token, signature removed");
    v.assert_rejected(&format!("{h}.{p}.."), "the real token, two empty segments");
    v.assert_unharmed();
}

/// SubjectPublicKeyInfo (RFC 8410) DER of an Ed25519 public key.
fn spki_der(x: &[u8]) -> Vec<u8> {
    let mut der = hex("302a300506032b6570032100");
    der.extend_from_slice(x);
    der
}

/// A listener the test owns: counts connections and answers each with `body`.
struct Trap {
    url: String,
    hits: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Trap {
    fn start(body: String) -> Trap {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the trap");
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let hits = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (h, s) = (hits.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((mut conn, _)) => {
                        h.fetch_add(1, Ordering::SeqCst);
                        let _ = conn.set_nonblocking(false);
                        let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
                        let mut buf = [0u8; 4096];
                        let _ = conn.read(&mut buf);
                        let _ = conn.write_all(
                            format!(
                                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                                 Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                                body.len()
                            )
                            .as_bytes(),
                        );
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Trap {
            url,
            hits,
            stop,
            thread: Some(thread),
        }
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for Trap {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// jwt_tool -X s: `jku` / `x5u` point at a key set the attacker serves. Nothing may be
/// fetched because of a header, and nothing so named is trusted.
fn spoofed_key_url_cases(v: &Victim) {
    let kid = v.kid();
    let attacker_secret = b"attacker-hmac-secret-attacker-hmac-secret";
    let keys = json!({"keys": [
        attacker_jwk("attacker"),
        attacker_jwk(&kid),
        {"kty": "oct", "kid": "attacker-oct", "alg": "HS256", "k": b64(attacker_secret)},
        {"kty": "oct", "kid": kid, "alg": "HS256", "k": b64(attacker_secret)},
    ]});
    let trap = Trap::start(keys.to_string());
    let jwks_url = format!("{}/.well-known/jwks.json", trap.url);
    let cert_url = format!("{}/cert.pem", trap.url);
    let mut cases: Vec<(String, String)> = Vec::new();
    for (member, url) in [("jku", &jwks_url), ("x5u", &cert_url)] {
        for use_real_kid in [true, false] {
            let ed_kid = if use_real_kid {
                kid.clone()
            } else {
                "attacker".into()
            };
            let hs_kid = if use_real_kid {
                kid.clone()
            } else {
                "attacker-oct".into()
            };
            cases.push((
                format!("{member}, EdDSA with the attacker's key, kid {ed_kid}"),
                v.forge_ed(|h, _| {
                    h["alg"] = json!("EdDSA");
                    h["kid"] = json!(ed_kid);
                    h[member] = json!(url);
                }),
            ));
            let mut header = v.header.clone();
            header["alg"] = json!("HS256");
            header["kid"] = json!(hs_kid);
            header[member] = json!(url);
            cases.push((
                format!("{member}, HS256 with the attacker's oct key, kid {hs_kid}"),
                sign_hmac(&header, &v.fresh_claims(), attacker_secret),
            ));
        }
    }
    for (what, token) in &cases {
        v.assert_rejected(token, what);
    }
    // A fetch, if any, would have happened while the requests were handled; give a slow
    // background fetch a generous second more.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        trap.hits(),
        0,
        "the service connected to the URL named in a token header ({})",
        trap.url
    );
    v.assert_unharmed();
}

fn hostile_kids() -> Vec<Value> {
    vec![
        json!("../../../../dev/null"),
        json!("/dev/null"),
        json!("../../../../../../etc/passwd"),
        json!("' OR '1'='1"),
        json!("x' UNION SELECT 'attacker';--"),
        json!("; ls"),
        json!("| id"),
        json!("$(id)"),
        json!("`id`"),
        json!("kid\u{0}nul"),
        json!("A".repeat(10 * 1024)),
        json!(""),
        json!(null),
        json!(0),
        json!(1),
        json!(true),
        json!(["kid"]),
        json!({"kid": "kid"}),
    ]
}

fn short(v: &Value) -> String {
    v.to_string().chars().take(40).collect()
}

/// DELETE /api/v1/users/me with the password; insists on 204.
fn delete_account(app: &TestApp, token: &str, password: &str) {
    let resp = app
        .request(Method::DELETE, ME)
        .bearer_auth(token)
        .json(&json!({"password": password}))
        .send()
        .unwrap();
    let status = resp.status().as_u16();
    assert_eq!(status, 204, "deleting the account: {:?}", resp.text());
}

fn tampered_payload_cases(v: &Victim) {
    let (h, p, sig) = split3(&v.token);
    let (_, other_token, _) = v.app.registered_user();
    let (oh, op, osig) = split3(&other_token);
    let (_, other_claims) = decode(&other_token);
    let mut edits: Vec<(&str, Value)> = Vec::new();
    let mut c = v.claims.clone();
    c["sub"] = other_claims["sub"].clone();
    c["sid"] = other_claims["sid"].clone();
    edits.push(("another user's sub and sid", c));
    let mut c = v.claims.clone();
    c["is_admin"] = json!(true);
    c["role"] = json!("admin");
    edits.push(("admin claims added", c));
    let mut c = v.claims.clone();
    c["exp"] = json!(c["exp"].as_i64().unwrap() + 365 * 86_400);
    edits.push(("a year more", c));
    for (what, claims) in edits {
        let tampered = b64(claims.to_string().as_bytes());
        v.assert_rejected(
            &format!("{h}.{tampered}.{sig}"),
            &format!("payload tampered ({what}), the original signature"),
        );
    }
    // Genuine signatures, over other inputs.
    v.assert_rejected(
        &format!("{h}.{op}.{sig}"),
        "the other user's payload, our signature",
    );
    v.assert_rejected(
        &format!("{h}.{p}.{osig}"),
        "our payload, the other user's signature",
    );
    v.assert_rejected(
        &format!("{oh}.{p}.{osig}"),
        "our payload in the other user's token",
    );
    // The payload re-encoded (the same claims, other bytes): the signature covers bytes.
    let reencoded = b64(format!(" {} ", String::from_utf8(b64_decode(&p)).unwrap()).as_bytes());
    v.assert_rejected(
        &format!("{h}.{reencoded}.{sig}"),
        "the same claims with whitespace added, the original signature",
    );
    v.assert_unharmed();
    v.assert_accepted(&other_token, "the other user's token, afterwards");
}

api_tests! {
    fn the_ed25519_helper_matches_rfc_8032() {
        // RFC 8032 §7.1, TEST 1 and TEST 2.
        let vectors = [
            (
                "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
                "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
                "",
                "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
            ),
            (
                "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
                "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
                "72",
                "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
            ),
        ];
        for (seed, public, msg, sig) in vectors {
            let seed: [u8; 32] = hex(seed).try_into().unwrap();
            let public: [u8; 32] = hex(public).try_into().unwrap();
            let msg = hex(msg);
            assert_eq!(ed25519::public_key(&seed), public);
            let signature = ed25519::sign(&seed, &msg);
            assert_eq!(signature.to_vec(), hex(sig));
            assert!(ed25519::verify(&public, &msg, &signature));
            let mut bad = signature;
            bad[10] ^= 1;
            assert!(!ed25519::verify(&public, &msg, &bad));
            let mut malleated = signature;
            let s: [u8; 32] = signature[32..].try_into().unwrap();
            malleated[32..].copy_from_slice(&ed25519::add_l(&s));
            assert!(
                !ed25519::verify(&public, &msg, &malleated),
                "S + L must not verify"
            );
        }
    }

    fn a_faithful_forgery_is_accepted() {
        // The control: re-signing the real header and claims with the real secret works, so
        // each rejection below is caused by the one thing it changes.
        let v = Victim::hs256();
        v.assert_accepted(&v.token.clone(), "the real token");
        v.assert_accepted(&v.forge_hs(|_, _| {}), "a faithful HS256 forgery");
        // The leeway is CLOCK_SKEW (10 s): an `nbf` 2 s ahead is still accepted.
        let t = now();
        v.assert_accepted(
            &v.forge_hs(|_, c| c["nbf"] = json!(t + 2)),
            "nbf 2 s ahead, within the skew",
        );
    }

    fn alg_none_in_any_spelling_is_refused_by_an_hs256_service() {
        alg_none_cases(&Victim::hs256());
    }

    fn alg_none_in_any_spelling_is_refused_by_an_eddsa_service() {
        alg_none_cases(&Victim::eddsa());
    }

    fn a_stripped_signature_is_refused_by_an_hs256_service() {
        stripped_signature_cases(&Victim::hs256());
    }

    fn a_stripped_signature_is_refused_by_an_eddsa_service() {
        stripped_signature_cases(&Victim::eddsa());
    }

    fn hs256_keyed_with_the_published_public_key_is_refused_by_an_eddsa_service() {
        // jwt_tool -X k: the attacker HMACs with what the service publishes as its public key,
        // hoping the verifier feeds "the key" to whatever algorithm the header names.
        let v = Victim::eddsa();
        let kid = v.kid();
        let jwk = published_jwk(&v.app, &kid);
        let x_text = jwk["x"].as_str().expect("JWK without x").to_string();
        let x = b64_decode(&x_text);
        let jwks_text = v.app.get(JWKS).text().unwrap();
        let der = spki_der(&x);
        let pem_body = STANDARD.encode(&der);
        let pem = format!("-----BEGIN PUBLIC KEY-----\n{pem_body}\n-----END PUBLIC KEY-----");
        let secrets: Vec<(&str, Vec<u8>)> = vec![
            ("the raw public key", x.clone()),
            ("the JWK's x text", x_text.clone().into_bytes()),
            ("the JWK as JSON", jwk.to_string().into_bytes()),
            ("the whole JWKS body", jwks_text.into_bytes()),
            ("the SPKI DER", der.clone()),
            ("the PEM", pem.clone().into_bytes()),
            ("the PEM with a newline", format!("{pem}\n").into_bytes()),
            (
                "the key in hex",
                x.iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<String>()
                    .into_bytes(),
            ),
        ];
        for alg in ["HS256", "HS384", "HS512"] {
            for (what, secret) in &secrets {
                let mut header = v.header.clone();
                header["alg"] = json!(alg);
                let token = match alg {
                    "HS256" => sign_hmac(&header, &v.fresh_claims(), secret),
                    _ => {
                        // HS384/HS512: the same attack with the longer MACs.
                        let input = signing_input(&header, &v.fresh_claims());
                        let sig = if alg == "HS384" {
                            let mut mac = Hmac::<sha2::Sha384>::new_from_slice(secret).unwrap();
                            mac.update(input.as_bytes());
                            b64(&mac.finalize().into_bytes())
                        } else {
                            let mut mac = Hmac::<sha2::Sha512>::new_from_slice(secret).unwrap();
                            mac.update(input.as_bytes());
                            b64(&mac.finalize().into_bytes())
                        };
                        format!("{input}.{sig}")
                    }
                };
                v.assert_rejected(&token, &format!("{alg} keyed with {what}"));
            }
        }
        v.assert_unharmed();
    }

    fn hs256_with_the_configured_secret_is_refused_by_an_eddsa_service() {
        // The suite always sets PORTCULLIS_JWT_SECRET; under EdDSA an HS256 token made with it
        // must not be accepted ("never a switch between HS and asymmetric algorithms").
        let v = Victim::eddsa();
        let forged = v.forge_hs(|h, _| h["alg"] = json!("HS256"));
        v.assert_rejected(&forged, "HS256 with the configured secret and the real kid");
        let forged = v.forge_hs(|h, _| {
            h["alg"] = json!("HS256");
            h.as_object_mut().unwrap().remove("kid");
        });
        v.assert_rejected(&forged, "HS256 with the configured secret and no kid");
        v.assert_unharmed();
    }

    fn eddsa_tokens_are_refused_by_an_hs256_service() {
        let v = Victim::hs256();
        let kid = v.kid();
        let cases: Vec<(&str, String)> = vec![
            (
                "alg EdDSA, the attacker's key, the real kid",
                v.forge_ed(|h, _| h["alg"] = json!("EdDSA")),
            ),
            (
                "alg EdDSA, the attacker's key in an embedded jwk",
                v.forge_ed(|h, _| {
                    h["alg"] = json!("EdDSA");
                    h["jwk"] = attacker_jwk(&kid);
                }),
            ),
            (
                "alg Ed25519 (RFC 9864), the attacker's key",
                v.forge_ed(|h, _| h["alg"] = json!("Ed25519")),
            ),
            (
                "alg EdDSA over an HMAC with the real secret",
                v.forge_hs(|h, _| h["alg"] = json!("EdDSA")),
            ),
        ];
        for (what, token) in cases {
            v.assert_rejected(&token, what);
        }
        v.assert_unharmed();
    }

    fn other_algorithm_names_are_refused_by_an_hs256_service() {
        // Only the configured algorithm, spelt as RFC 7518 spells it.
        let v = Victim::hs256();
        for alg in [
            "hs256",
            "Hs256",
            "HS256 ",
            "RS256",
            "ES256",
            "PS256",
            "HS256\u{0}",
        ] {
            let forged = v.forge_hs(|h, _| h["alg"] = json!(alg));
            v.assert_rejected(
                &forged,
                &format!("alg {alg:?} over an HMAC with the secret"),
            );
        }
        for alg in [
            json!(null),
            json!(256),
            json!(["HS256"]),
            json!({"HS256": true}),
        ] {
            let forged = v.forge_hs(|h, _| h["alg"] = alg.clone());
            v.assert_rejected(&forged, &format!("alg {alg}"));
        }
        let forged = v.forge_hs(|h, _| {
            h.as_object_mut().unwrap().remove("alg");
        });
        v.assert_rejected(&forged, "no alg");
        v.assert_unharmed();
    }

    fn an_embedded_jwk_is_not_trusted() {
        // jwt_tool -X i: the attacker signs with its own key and ships the key in the header.
        let v = Victim::eddsa();
        let kid = v.kid();
        let cases: Vec<(&str, String)> = vec![
            (
                "jwk under the real kid",
                v.forge_ed(|h, _| h["jwk"] = attacker_jwk(&kid)),
            ),
            (
                "jwk under its own kid",
                v.forge_ed(|h, _| {
                    h["kid"] = json!("attacker");
                    h["jwk"] = attacker_jwk("attacker");
                }),
            ),
            (
                "jwk and no kid",
                v.forge_ed(|h, _| {
                    h.as_object_mut().unwrap().remove("kid");
                    h["jwk"] = attacker_jwk("attacker");
                }),
            ),
        ];
        for (what, token) in cases {
            v.assert_rejected(&token, what);
        }
        v.assert_unharmed();
    }

    fn jku_and_x5u_are_never_fetched_by_an_eddsa_service() {
        spoofed_key_url_cases(&Victim::eddsa());
    }

    fn jku_and_x5u_are_never_fetched_by_an_hs256_service() {
        spoofed_key_url_cases(&Victim::hs256());
    }

    fn hostile_kids_are_refused_by_an_hs256_service() {
        // jwt_tool -I -hc kid -hv ../../dev/null -S hs256 -p "": a kid that names a file, a
        // row or a command, with a MAC keyed by what that would yield (empty, "attacker",
        // "1"). And the same kids over a MAC with the real secret: the kid must name the
        // service's own key, and nothing else.
        let v = Victim::hs256();
        for kid in hostile_kids() {
            for secret in [
                &b""[..],
                b"attacker",
                b"1",
                b"\0",
                TEST_JWT_SECRET.as_bytes(),
            ] {
                let mut header = v.header.clone();
                header["kid"] = kid.clone();
                let token = sign_hmac(&header, &v.fresh_claims(), secret);
                v.assert_rejected(
                    &token,
                    &format!(
                        "kid {} with a MAC keyed by {:?}",
                        short(&kid),
                        String::from_utf8_lossy(&secret[..secret.len().min(8)])
                    ),
                );
            }
        }
        v.assert_unharmed();
    }

    fn hostile_kids_are_refused_by_an_eddsa_service() {
        let v = Victim::eddsa();
        for kid in hostile_kids() {
            let token = v.forge_ed(|h, _| h["kid"] = kid.clone());
            v.assert_rejected(&token, &format!("kid {}, the attacker's key", short(&kid)));
            let token = v.forge_hs(|h, _| {
                h["alg"] = json!("HS256");
                h["kid"] = kid.clone();
            });
            v.assert_rejected(&token, &format!("kid {}, HS256, the secret", short(&kid)));
        }
        v.assert_unharmed();
    }

    fn a_wrong_or_missing_typ_is_refused() {
        let v = Victim::hs256();
        let cases: Vec<(&str, String)> = vec![
            ("typ JWT", v.forge_hs(|h, _| h["typ"] = json!("JWT"))),
            (
                "no typ",
                v.forge_hs(|h, _| {
                    h.as_object_mut().unwrap().remove("typ");
                }),
            ),
            ("typ null", v.forge_hs(|h, _| h["typ"] = json!(null))),
            ("typ empty", v.forge_hs(|h, _| h["typ"] = json!(""))),
            (
                "typ as a list",
                v.forge_hs(|h, _| h["typ"] = json!(["at+jwt"])),
            ),
            (
                "typ of an ID token",
                v.forge_hs(|h, _| h["typ"] = json!("id_token+jwt")),
            ),
        ];
        for (what, token) in cases {
            v.assert_rejected(&token, what);
        }
        v.assert_unharmed();
    }

    /// A `crit` header names extensions the verifier must understand; Portcullis
    /// understands none, so a correctly signed token that carries one is refused
    /// (API.md §7, RFC 7515 §4.1.11).
    fn a_header_with_crit_is_refused_even_when_correctly_signed() {
        let v = Victim::hs256();
        v.assert_accepted(&v.forge_hs(|_, _| {}), "the same token without crit");
        let cases: Vec<(&str, String)> = vec![
            ("crit naming exp", v.forge_hs(|h, _| h["crit"] = json!(["exp"]))),
            (
                "crit naming an unknown extension it carries",
                v.forge_hs(|h, _| {
                    h["crit"] = json!(["urn:example:policy"]);
                    h["urn:example:policy"] = json!("strict");
                }),
            ),
            ("crit empty", v.forge_hs(|h, _| h["crit"] = json!([]))),
        ];
        for (what, token) in cases {
            v.assert_rejected(&token, what);
        }
        v.assert_unharmed();
    }

    fn times_outside_the_validity_window_are_refused() {
        // CLOCK_SKEW is 10 s: every case below is off by an hour or more.
        let v = Victim::hs256();
        let t = now();
        let cases: Vec<(&str, String)> = vec![
            (
                "expired an hour ago",
                v.forge_hs(|_, c| {
                    c["iat"] = json!(t - 7200);
                    c["nbf"] = json!(t - 7200);
                    c["exp"] = json!(t - 3600);
                }),
            ),
            (
                "nbf an hour ahead",
                v.forge_hs(|_, c| c["nbf"] = json!(t + 3600)),
            ),
            (
                "iat an hour ahead",
                v.forge_hs(|_, c| c["iat"] = json!(t + 3600)),
            ),
            (
                "exp missing",
                v.forge_hs(|_, c| {
                    c.as_object_mut().unwrap().remove("exp");
                }),
            ),
            ("exp null", v.forge_hs(|_, c| c["exp"] = json!(null))),
            ("exp 0", v.forge_hs(|_, c| c["exp"] = json!(0))),
            ("exp negative", v.forge_hs(|_, c| c["exp"] = json!(-1))),
            ("exp beyond i64", v.forge_hs(|_, c| c["exp"] = json!(1e300))),
        ];
        for (what, token) in cases {
            v.assert_rejected(&token, what);
        }
        v.assert_unharmed();
    }

    fn subjects_and_sessions_that_are_not_live_are_refused() {
        let v = Victim::hs256();

        // A second session of the victim, logged out.
        let second = v.app.login_ok(&v.user.username, &v.user.password);
        let second_token = second["access_token"].as_str().unwrap().to_string();
        let resp = v
            .app
            .request(Method::POST, "/api/v1/auth/logout")
            .bearer_auth(&second_token)
            .send()
            .unwrap();
        assert_eq!(resp.status().as_u16(), 204, "logout: {:?}", resp.text());
        let revoked_sid = second["session_id"].clone();

        // Another user, alive.
        let (_, other_token, _) = v.app.registered_user();
        let (_, other) = decode(&other_token);

        // A third user, deleted.
        let (gone_user, gone_token, _) = v.app.registered_user();
        let (_, gone) = decode(&gone_token);
        delete_account(&v.app, &gone_token, &gone_user.password);

        let cases: Vec<(&str, String)> = vec![
            (
                "the sid of a logged-out session",
                v.forge_hs(|_, c| c["sid"] = revoked_sid.clone()),
            ),
            (
                "the sid of another user's live session",
                v.forge_hs(|_, c| c["sid"] = other["sid"].clone()),
            ),
            (
                "an unknown sub",
                v.forge_hs(|_, c| c["sub"] = json!(format!("no-such-user-{}", unique_suffix()))),
            ),
            (
                "another user's sub with our sid",
                v.forge_hs(|_, c| c["sub"] = other["sub"].clone()),
            ),
            (
                "a deleted user's sub and sid",
                v.forge_hs(|_, c| {
                    c["sub"] = gone["sub"].clone();
                    c["sid"] = gone["sid"].clone();
                }),
            ),
            (
                "a deleted user's sub with our sid",
                v.forge_hs(|_, c| c["sub"] = gone["sub"].clone()),
            ),
            ("the deleted user's own real token", gone_token.clone()),
            ("the logged-out session's own real token", second_token),
            (
                "no sub",
                v.forge_hs(|_, c| {
                    c.as_object_mut().unwrap().remove("sub");
                }),
            ),
            ("sub null", v.forge_hs(|_, c| c["sub"] = json!(null))),
            ("sub a number", v.forge_hs(|_, c| c["sub"] = json!(1))),
            (
                "no sid",
                v.forge_hs(|_, c| {
                    c.as_object_mut().unwrap().remove("sid");
                }),
            ),
            ("sid null", v.forge_hs(|_, c| c["sid"] = json!(null))),
        ];
        for (what, token) in cases {
            v.assert_rejected(&token, what);
        }
        v.assert_unharmed();
        v.assert_accepted(&other_token, "the other user's real token");
    }

    fn a_tampered_payload_under_a_genuine_signature_is_refused_by_an_hs256_service() {
        tampered_payload_cases(&Victim::hs256());
    }

    fn a_tampered_payload_under_a_genuine_signature_is_refused_by_an_eddsa_service() {
        tampered_payload_cases(&Victim::eddsa());
    }

    fn signatures_by_another_key_are_refused() {
        let v = Victim::hs256();
        let forged = sign_hmac(
            &v.header,
            &v.fresh_claims(),
            b"another-secret-another-secret-another-secret!!",
        );
        v.assert_rejected(&forged, "HS256 by another secret");
        let forged = sign_hmac(&v.header, &v.fresh_claims(), b"");
        v.assert_rejected(&forged, "HS256 by the empty secret (jwt_tool -X b)");
        v.assert_unharmed();

        let v = Victim::eddsa();
        let forged = v.forge_ed(|_, _| {});
        v.assert_rejected(&forged, "EdDSA by the attacker's key under the real kid");
        v.assert_unharmed();
    }

    fn malformed_eddsa_signatures_are_refused() {
        let v = Victim::eddsa();
        let (h, p, sig) = split3(&v.token);
        let sig_bytes = b64_decode(&sig);
        assert_eq!(sig_bytes.len(), 64, "an Ed25519 signature is 64 bytes");
        let s: [u8; 32] = sig_bytes[32..].try_into().unwrap();
        let mut malleated = sig_bytes.clone();
        malleated[32..].copy_from_slice(&ed25519::add_l(&s));
        let mut identity = vec![0u8; 64];
        identity[0] = 1; // R = the neutral point, S = 0
        let mut swapped = sig_bytes[32..].to_vec();
        swapped.extend_from_slice(&sig_bytes[..32]);
        let cases: Vec<(&str, Vec<u8>)> = vec![
            (
                "S + L (a malleated, non-canonical S; RFC 8032 §5.1.7)",
                malleated,
            ),
            ("64 zero bytes", vec![0u8; 64]),
            ("R = identity, S = 0", identity),
            ("R and S swapped", swapped),
            ("truncated to 63 bytes", sig_bytes[..63].to_vec()),
            ("65 bytes", [sig_bytes.clone(), vec![0]].concat()),
            ("doubled", [sig_bytes.clone(), sig_bytes.clone()].concat()),
            ("empty", vec![]),
        ];
        for (what, bytes) in cases {
            v.assert_rejected(&format!("{h}.{p}.{}", b64(&bytes)), what);
        }
        v.assert_unharmed();
    }

    fn tokens_with_extra_segments_are_refused() {
        let v = Victim::hs256();
        let t = v.token.clone();
        let (h, p, s) = split3(&t);
        let cases: Vec<(&str, String)> = vec![
            ("a trailing dot", format!("{t}.")),
            ("a fourth segment", format!("{t}.{s}")),
            ("a JWE-shaped five segments", format!("{h}.{p}.{s}.{s}.{s}")),
            ("a leading dot", format!(".{t}")),
            ("two trailing dots", format!("{t}..")),
            ("an empty segment inside", format!("{h}..{p}.{s}")),
            ("the token twice", format!("{t}.{t}")),
            ("the token twice, comma-separated", format!("{t},{t}")),
        ];
        for (what, token) in cases {
            v.assert_rejected(&token, what);
        }
        v.assert_unharmed();
    }

    fn malformed_parts_are_refused_without_a_5xx() {
        let v = Victim::hs256();
        let (h, p, s) = split3(&v.token);
        let real_header = v.header.to_string();
        let claims = v.fresh_claims().to_string();
        let mut cases: Vec<(String, String)> = Vec::new();
        // Well-MACed with the real secret: only the structure is wrong.
        for (hj, pj) in [
            ("null", claims.as_str()),
            ("[]", claims.as_str()),
            ("\"at+jwt\"", claims.as_str()),
            ("{", claims.as_str()),
            ("{}", claims.as_str()),
            (real_header.as_str(), "null"),
            (real_header.as_str(), "[]"),
            (real_header.as_str(), "1"),
            (real_header.as_str(), "{"),
            (real_header.as_str(), "\"claims\""),
        ] {
            let input = format!("{}.{}", b64(hj.as_bytes()), b64(pj.as_bytes()));
            let sig = hmac256(&input, TEST_JWT_SECRET.as_bytes());
            cases.push((
                format!("header {hj:.20} / payload {pj:.20}"),
                format!("{input}.{sig}"),
            ));
        }
        let bad_utf8 = {
            let input = format!("{}.{p}", b64(&[0xff, 0xfe, 0x7b, 0x7d]));
            let sig = hmac256(&input, TEST_JWT_SECRET.as_bytes());
            format!("{input}.{sig}")
        };
        cases.push(("a header that is not UTF-8".into(), bad_utf8));
        cases.push((
            "a header that is not base64url".into(),
            format!("{h}*!.{p}.{s}"),
        ));
        cases.push((
            "a payload in standard base64 with + and /".into(),
            format!("{h}.{}+/.{s}", &p[..p.len() - 1]),
        ));
        cases.push(("a signature with padding".into(), format!("{h}.{p}.{s}==")));
        cases.push(("percent-encoded".into(), format!("{h}%2E{p}%2E{s}")));
        for (what, token) in &cases {
            v.assert_rejected(token, what);
        }
        v.assert_unharmed();
    }

    fn very_long_tokens_are_refused_without_a_5xx() {
        // 100 KB: the answer may be 401, or 431/413/400 if the server will not read such a
        // header; never a 5xx, never a 200.
        let v = Victim::hs256();
        let (h, p, s) = split3(&v.token);
        let pad = "A".repeat(100 * 1024);
        let mut claims = v.fresh_claims();
        claims["pad"] = json!(pad);
        let cases: Vec<(&str, String)> = vec![
            (
                "100 KB of claims signed with another secret",
                sign_hmac(
                    &v.header,
                    &claims,
                    b"another-secret-another-secret-another-secret!!",
                ),
            ),
            ("a 100 KB signature", format!("{h}.{p}.{s}{pad}")),
            ("a 100 KB header", format!("{h}{pad}.{p}.{s}")),
            ("100 KB of garbage", pad.clone()),
        ];
        for (what, token) in cases {
            let resp = v.app.get_with_token(ME, &token);
            let status = resp.status().as_u16();
            match status {
                401 => {
                    assert_problem(resp, 401, "invalid_token");
                }
                400 | 413 | 431 => {}
                _ => panic!(
                    "{what}: expected 401 invalid_token (or 400/413/431), got {status}: {:?}",
                    resp.text()
                ),
            }
        }
        v.assert_unharmed();
    }
}

// ---------------------------------------------------------------------------------------
// Ed25519
// ---------------------------------------------------------------------------------------

/// Ed25519 (RFC 8032) for forging and checking tokens: a thin layer over ed25519-dalek.
pub mod ed25519 {
    use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};

    /// The group order L, little-endian.
    const L: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde,
        0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];

    pub fn public_key(seed: &[u8; 32]) -> [u8; 32] {
        SigningKey::from_bytes(seed).verifying_key().to_bytes()
    }

    pub fn sign(seed: &[u8; 32], msg: &[u8]) -> [u8; 64] {
        SigningKey::from_bytes(seed).sign(msg).to_bytes()
    }

    /// Strict verification: a signature whose S is not below L is refused (RFC 8032).
    pub fn verify(public: &[u8; 32], msg: &[u8], sig: &[u8]) -> bool {
        let (Ok(key), Ok(signature)) =
            (VerifyingKey::from_bytes(public), Signature::from_slice(sig))
        else {
            return false;
        };
        key.verify_strict(msg, &signature).is_ok()
    }

    /// S + L (mod 2^256): the malleated scalar of a signature.
    pub fn add_l(s: &[u8; 32]) -> [u8; 32] {
        let mut out = [0u8; 32];
        let mut carry = 0u16;
        for i in 0..32 {
            let sum = u16::from(s[i]) + u16::from(L[i]) + carry;
            out[i] = sum as u8;
            carry = sum >> 8;
        }
        out
    }
}
