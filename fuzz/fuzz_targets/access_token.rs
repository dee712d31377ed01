//! Access-token verification (`tokens::verify`) under HS256 and EdDSA, structure-aware:
//! the input chooses a header and claims as JSON (each field right, wrong, of the wrong
//! type or missing), a signature (right key, wrong key, HMAC keyed with the Ed25519
//! public key, garbage, none) and the clock, or has the component's own `tokens::sign`
//! make the token; then maybe edits the token's text. An oracle says what must be refused
//! (anything wrongly signed, another algorithm, `alg: none`, a `typ` other than
//! `at+jwt`, another `kid`, `crit` or a key-pointing header, another issuer or audience,
//! a missing or mistyped claim, a dead token, any edit) and what must be accepted (all
//! right); the target asserts both.

#![no_main]

use arbitrary::Arbitrary;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signer as _, SigningKey};
use hmac::{Hmac, Mac};
use libfuzzer_sys::fuzz_target;
use portcullis_component::settings::Settings;
use portcullis_component::tokens::{self, Claims, Signer, Verifier};
use portcullis_fuzz::START;
use serde_json::{Map, Value, json};
use sha2::Sha256;

/// RFC 8410 PKCS#8 v1 prefix of an Ed25519 private key (as `keys.rs` builds it).
const PKCS8_ED25519_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];
const OUR_SEED: [u8; 32] = [7; 32];
const OTHER_SEED: [u8; 32] = [9; 32];
const OTHER_SECRET: &[u8] = b"another-secret-of-at-least-32-bytes!";
const ED_KID: &str = "ed-key-1";

#[derive(Arbitrary, Debug, Clone, Copy, PartialEq)]
enum Configured {
    Hs256,
    EdDsa,
}

/// A JSON string field: ours, another string, another type, or absent.
#[derive(Arbitrary, Debug)]
enum Field {
    Ours,
    Text(String),
    Number(i64),
    Null,
    List(Vec<String>),
    Missing,
}

#[derive(Arbitrary, Debug)]
enum Alg {
    Hs256,
    EdDsa,
    None,
    Rs256,
    Hs512,
    Text(String),
}

/// A time claim: an offset from the clock's start, or something else.
#[derive(Arbitrary, Debug)]
enum Time {
    Offset(i16),
    Negative(u32),
    Float(f64),
    Text(String),
    Missing,
}

/// A JSON scalar for extra header fields and claims.
#[derive(Arbitrary, Debug)]
enum Scalar {
    Text(String),
    Number(i64),
    Bool(bool),
    Null,
}

#[derive(Arbitrary, Debug)]
struct HeaderSpec {
    alg: Alg,
    typ: Field,
    kid: Field,
    crit: Option<Vec<String>>,
    jku: Option<String>,
    jwk: bool,
    x5u: Option<String>,
    x5c: Option<Vec<String>>,
    extra: Vec<(String, Scalar)>,
}

#[derive(Arbitrary, Debug)]
struct ClaimsSpec {
    iss: Field,
    aud: Field,
    sub: Field,
    sid: Field,
    jti: Field,
    iat: Time,
    nbf: Time,
    exp: Time,
    extra: Vec<(String, Scalar)>,
}

#[derive(Arbitrary, Debug)]
enum Signature {
    Right,
    WrongKey,
    /// HMAC-SHA256 keyed with the Ed25519 public key (algorithm confusion).
    HmacWithPublicKey,
    Garbage(Vec<u8>),
    Empty,
    /// Only two segments.
    Absent,
}

/// Header, claims and signature as the input says.
#[derive(Arbitrary, Debug)]
struct Handmade {
    header: HeaderSpec,
    claims: ClaimsSpec,
    signature: Signature,
}

#[derive(Arbitrary, Debug)]
enum Making {
    Handmade(Box<Handmade>),
    /// The component's own `tokens::sign`, with our key or another.
    Component {
        sub: String,
        sid: String,
        jti: String,
        iss_ours: bool,
        aud_ours: bool,
        iat: i16,
        nbf: i16,
        exp: i16,
        right_key: bool,
    },
}

#[derive(Arbitrary, Debug)]
enum Edit {
    Replace { at: u16, byte: u8 },
    Insert { at: u16, byte: u8 },
    Remove { at: u16 },
    Truncate { at: u16 },
    Append(String),
}

#[derive(Arbitrary, Debug)]
struct Input {
    configured: Configured,
    making: Making,
    now: i16,
    edit: Option<Edit>,
}

/// What the oracle says of a token.
#[derive(Debug, PartialEq, Clone, Copy)]
enum Expected {
    Accept,
    Refuse,
    /// Neither is wrong (e.g. a negative time, which the library refuses as unparsable).
    Either,
}

struct Keys {
    settings: Settings,
    hs_kid: String,
    our_ed: SigningKey,
    other_ed: SigningKey,
}

impl Keys {
    fn new() -> Keys {
        let settings = portcullis_fuzz::settings(&[]).expect("the default settings are valid");
        Keys {
            hs_kid: tokens::hs256_key_id(&settings.jwt_secret),
            settings,
            our_ed: SigningKey::from_bytes(&OUR_SEED),
            other_ed: SigningKey::from_bytes(&OTHER_SEED),
        }
    }

    fn verifier(&self, configured: Configured) -> Verifier {
        match configured {
            Configured::Hs256 => tokens::hs256(&self.settings).1,
            Configured::EdDsa => Verifier::EdDsa {
                keys: vec![(
                    ED_KID.to_string(),
                    self.our_ed.verifying_key().to_bytes().to_vec(),
                )],
            },
        }
    }

    fn our_kid(&self, configured: Configured) -> &str {
        match configured {
            Configured::Hs256 => &self.hs_kid,
            Configured::EdDsa => ED_KID,
        }
    }

    fn signer(&self, configured: Configured, right_key: bool) -> Signer {
        let kid = self.our_kid(configured).to_string();
        match (configured, right_key) {
            (Configured::Hs256, true) => tokens::hs256(&self.settings).0,
            (Configured::Hs256, false) => Signer::Hs256 {
                secret: OTHER_SECRET.to_vec(),
                kid,
            },
            (Configured::EdDsa, right) => {
                let seed = if right { OUR_SEED } else { OTHER_SEED };
                Signer::EdDsa {
                    pkcs8: [PKCS8_ED25519_PREFIX.as_slice(), &seed].concat(),
                    kid,
                }
            }
        }
    }
}

fn hmac(key: &[u8], input: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(input);
    mac.finalize().into_bytes().to_vec()
}

/// The JSON of a field, and whether it is exactly `ours`.
fn field(spec: &Field, ours: &str) -> (Option<Value>, bool) {
    let value = match spec {
        Field::Ours => Some(json!(ours)),
        Field::Text(text) => Some(json!(text)),
        Field::Number(number) => Some(json!(number)),
        Field::Null => Some(Value::Null),
        Field::List(items) => Some(json!(items)),
        Field::Missing => None,
    };
    let is_ours = value.as_ref() == Some(&json!(ours));
    (value, is_ours)
}

/// The JSON of a time claim and its value when it is a usable one.
fn time(spec: &Time) -> (Option<Value>, Option<i64>, bool) {
    match spec {
        Time::Offset(offset) => {
            let at = START + i64::from(*offset) * 16;
            (Some(json!(at)), Some(at), false)
        }
        Time::Negative(magnitude) => (Some(json!(-i64::from(*magnitude) - 1)), None, true),
        Time::Float(x) => (
            serde_json::Number::from_f64(*x).map(Value::Number),
            None,
            false,
        ),
        Time::Text(text) => (Some(json!(text)), None, false),
        Time::Missing => (None, None, false),
    }
}

fn scalar(spec: &Scalar) -> Value {
    match spec {
        Scalar::Text(text) => json!(text),
        Scalar::Number(number) => json!(number),
        Scalar::Bool(flag) => json!(flag),
        Scalar::Null => Value::Null,
    }
}

fn is_live(now: i64, skew: i64, iat: i64, nbf: i64, exp: i64) -> bool {
    now < exp + skew && now >= nbf - skew && now >= iat - skew
}

/// A token made from the input's header, claims and signature, and the oracle's verdict.
fn handmade(
    keys: &Keys,
    configured: Configured,
    header: &HeaderSpec,
    claims: &ClaimsSpec,
    signature: &Signature,
    now: i64,
) -> (String, Expected) {
    let mut refuse = false;
    let mut either = false;

    let mut head = Map::new();
    let alg_text = match &header.alg {
        Alg::Hs256 => "HS256".to_string(),
        Alg::EdDsa => "EdDSA".to_string(),
        Alg::None => "none".to_string(),
        Alg::Rs256 => "RS256".to_string(),
        Alg::Hs512 => "HS512".to_string(),
        Alg::Text(text) => text.clone(),
    };
    let header_alg = match alg_text.as_str() {
        "HS256" => Some(Configured::Hs256),
        "EdDSA" => Some(Configured::EdDsa),
        _ => None,
    };
    refuse |= header_alg != Some(configured);
    head.insert("alg".into(), json!(alg_text));
    let (typ, typ_ok) = field(&header.typ, "at+jwt");
    refuse |= !typ_ok;
    if let Some(typ) = typ {
        head.insert("typ".into(), typ);
    }
    let (kid, kid_ok) = field(&header.kid, keys.our_kid(configured));
    refuse |= !kid_ok;
    if let Some(kid) = kid {
        head.insert("kid".into(), kid);
    }
    if let Some(crit) = &header.crit {
        head.insert("crit".into(), json!(crit));
        refuse = true;
    }
    if let Some(jku) = &header.jku {
        head.insert("jku".into(), json!(jku));
        refuse = true;
    }
    if header.jwk {
        let public = URL_SAFE_NO_PAD.encode(keys.other_ed.verifying_key().to_bytes());
        head.insert(
            "jwk".into(),
            json!({"kty": "OKP", "crv": "Ed25519", "x": public}),
        );
        refuse = true;
    }
    if let Some(x5u) = &header.x5u {
        head.insert("x5u".into(), json!(x5u));
        refuse = true;
    }
    if let Some(x5c) = &header.x5c {
        head.insert("x5c".into(), json!(x5c));
        refuse = true;
    }
    for (name, value) in &header.extra {
        // The library reads extra header parameters as strings only (and refuses others).
        either |= !matches!(value, Scalar::Text(_));
        head.insert(format!("x_{name}"), scalar(value));
    }

    let settings = &keys.settings;
    let mut body = Map::new();
    for (name, spec, ours) in [
        ("iss", &claims.iss, settings.jwt_issuer.as_str()),
        ("aud", &claims.aud, settings.jwt_audience.as_str()),
    ] {
        let (value, is_ours) = field(spec, ours);
        refuse |= !is_ours;
        if let Some(value) = value {
            body.insert(name.into(), value);
        }
    }
    for (name, spec) in [
        ("sub", &claims.sub),
        ("sid", &claims.sid),
        ("jti", &claims.jti),
    ] {
        let (value, _) = field(spec, "fuzz-id");
        refuse |= !value.as_ref().is_some_and(Value::is_string);
        if let Some(value) = value {
            body.insert(name.into(), value);
        }
    }
    let mut times = Vec::new();
    for (name, spec) in [
        ("iat", &claims.iat),
        ("nbf", &claims.nbf),
        ("exp", &claims.exp),
    ] {
        let (value, usable, undecided) = time(spec);
        either |= undecided;
        refuse |= usable.is_none() && !undecided;
        times.push(usable);
        if let Some(value) = value {
            body.insert(name.into(), value);
        }
    }
    if let [Some(iat), Some(nbf), Some(exp)] = times[..] {
        refuse |= !is_live(now, i64::from(settings.clock_skew), iat, nbf, exp);
    }
    for (name, value) in &claims.extra {
        body.insert(format!("x_{name}"), scalar(value));
    }

    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(Value::Object(head).to_string()),
        URL_SAFE_NO_PAD.encode(Value::Object(body).to_string())
    );
    let input = signing_input.as_bytes();
    let signature_bytes = match (signature, header_alg) {
        (Signature::Right, Some(Configured::Hs256)) => Some(hmac(&settings.jwt_secret, input)),
        (Signature::Right, Some(Configured::EdDsa)) => {
            Some(keys.our_ed.sign(input).to_bytes().to_vec())
        }
        (Signature::Right, None) => {
            refuse = true;
            Some(Vec::new())
        }
        (Signature::WrongKey, Some(Configured::EdDsa)) => {
            refuse = true;
            Some(keys.other_ed.sign(input).to_bytes().to_vec())
        }
        (Signature::WrongKey, _) => {
            refuse = true;
            Some(hmac(OTHER_SECRET, input))
        }
        (Signature::HmacWithPublicKey, _) => {
            refuse = true;
            Some(hmac(&keys.our_ed.verifying_key().to_bytes(), input))
        }
        (Signature::Garbage(bytes), _) => {
            refuse = true;
            Some(bytes.clone())
        }
        (Signature::Empty, _) => {
            refuse = true;
            Some(Vec::new())
        }
        (Signature::Absent, _) => {
            refuse = true;
            None
        }
    };
    let token = match signature_bytes {
        Some(bytes) => format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(bytes)),
        None => signing_input,
    };
    let expected = if refuse {
        Expected::Refuse
    } else if either || token.len() > 4096 {
        Expected::Either
    } else {
        Expected::Accept
    };
    (token, expected)
}

/// A token made by `tokens::sign`, and the oracle's verdict.
fn component_made(
    keys: &Keys,
    configured: Configured,
    making: &Making,
    now: i64,
) -> Option<(String, Expected)> {
    let Making::Component {
        sub,
        sid,
        jti,
        iss_ours,
        aud_ours,
        iat,
        nbf,
        exp,
        right_key,
    } = making
    else {
        return None;
    };
    let settings = &keys.settings;
    let at = |offset: &i16| START + i64::from(*offset) * 16;
    let issuer = if *iss_ours {
        settings.jwt_issuer.clone()
    } else {
        format!("{}-not", settings.jwt_issuer)
    };
    let audience = if *aud_ours {
        settings.jwt_audience.clone()
    } else {
        format!("{}-not", settings.jwt_audience)
    };
    // From JSON, so that claims the type may add with a default need no mention here.
    let claims: Claims = serde_json::from_value(json!({
        "iss": issuer,
        "aud": audience,
        "sub": sub,
        "sid": sid,
        "jti": jti,
        "iat": at(iat),
        "nbf": at(nbf),
        "exp": at(exp),
    }))
    .expect("the claims of an access token");
    let token = tokens::sign(&claims, &keys.signer(configured, *right_key))
        .expect("the component signs any claims");
    let live = is_live(
        now,
        i64::from(settings.clock_skew),
        claims.iat,
        claims.nbf,
        claims.exp,
    );
    let expected = if !(*right_key && *iss_ours && *aud_ours && live) {
        Expected::Refuse
    } else if token.len() > 4096 {
        Expected::Either
    } else {
        Expected::Accept
    };
    Some((token, expected))
}

fn apply(edit: &Edit, token: &str) -> String {
    let mut bytes = token.as_bytes().to_vec();
    let at = |position: &u16| usize::from(*position) % (bytes.len() + 1);
    match edit {
        Edit::Replace { at: position, byte } => {
            let index = at(position);
            if index < bytes.len() {
                bytes[index] = *byte;
            }
        }
        Edit::Insert { at: position, byte } => {
            let index = at(position);
            bytes.insert(index, *byte);
        }
        Edit::Remove { at: position } => {
            let index = at(position);
            if index < bytes.len() {
                bytes.remove(index);
            }
        }
        Edit::Truncate { at: position } => {
            let index = at(position);
            bytes.truncate(index);
        }
        Edit::Append(text) => bytes.extend_from_slice(text.as_bytes()),
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

fuzz_target!(|input: Input| {
    thread_local!(static KEYS: Keys = Keys::new());
    KEYS.with(|keys| {
        let now = START + i64::from(input.now) * 16;
        let (token, mut expected) = match &input.making {
            Making::Handmade(made) => handmade(
                keys,
                input.configured,
                &made.header,
                &made.claims,
                &made.signature,
                now,
            ),
            component => component_made(keys, input.configured, component, now)
                .expect("the component's making"),
        };
        let token = match &input.edit {
            Some(edit) => {
                let edited = apply(edit, &token);
                if edited != token {
                    // Any change to a token's text breaks its signature.
                    expected = Expected::Refuse;
                }
                edited
            }
            None => token,
        };
        let verifier = keys.verifier(input.configured);
        let verdict = tokens::verify(&token, &verifier, &keys.settings, now);
        match expected {
            Expected::Accept => assert!(verdict.is_ok(), "refused {token}: {input:?}"),
            Expected::Refuse => assert!(verdict.is_err(), "accepted {token}: {input:?}"),
            Expected::Either => {}
        }
    });
});
