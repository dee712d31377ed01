//! Access tokens (RFC 7519 JWTs, API.md §7) and opaque random tokens. Access tokens are
//! HS256 with `typ: at+jwt` and a `kid`; verification allows exactly the configured
//! algorithm and checks the type, issuer, audience and the time claims against the
//! component's clock. Whether the session is still live is the caller's check.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::Error;
use crate::settings::Settings;

/// The media type of access tokens (RFC 9068).
const ACCESS_TOKEN_TYPE: &str = "at+jwt";
/// Random bytes in refresh, verification and reset tokens (256 bits).
pub const OPAQUE_TOKEN_BYTES: usize = 32;
/// Random bytes in a `jti`.
pub const JTI_BYTES: usize = 16;
/// Access tokens longer than this are refused before any parsing.
const MAX_TOKEN_LENGTH: usize = 4096;

/// The claims of an access token.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    pub sub: String,
    pub sid: String,
    pub jti: String,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
}

/// The `kid` of the HS256 key: a short fingerprint that names the key without revealing it.
pub fn key_id(settings: &Settings) -> String {
    let digest = Sha256::new()
        .chain_update(b"portcullis-hs256-kid:")
        .chain_update(&settings.jwt_secret)
        .finalize();
    hex(&digest[..8])
}

/// Signs the claims as an access token.
pub fn sign(claims: &Claims, settings: &Settings) -> Result<String, Error> {
    let header = Header {
        typ: Some(ACCESS_TOKEN_TYPE.into()),
        kid: Some(key_id(settings)),
        ..Header::new(Algorithm::HS256)
    };
    jsonwebtoken::encode(
        &header,
        claims,
        &EncodingKey::from_secret(&settings.jwt_secret),
    )
    .map_err(|e| Error::Internal(format!("jwt encode: {e}")))
}

/// Checks signature, algorithm, type, issuer, audience and `exp`/`nbf`/`iat` (with the
/// configured skew) at time `now`. Every failure is `InvalidToken`.
pub fn verify(token: &str, settings: &Settings, now: i64) -> Result<Claims, Error> {
    if token.is_empty() || token.len() > MAX_TOKEN_LENGTH {
        return Err(Error::InvalidToken);
    }
    let header = jsonwebtoken::decode_header(token).map_err(|_| Error::InvalidToken)?;
    let header_is_ours = header.alg == Algorithm::HS256
        && header.typ.as_deref() == Some(ACCESS_TOKEN_TYPE)
        && header.jku.is_none()
        && header.jwk.is_none()
        && header.x5u.is_none()
        && header.kid.as_deref() == Some(key_id(settings).as_str());
    if !header_is_ours {
        return Err(Error::InvalidToken);
    }
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_issuer(&[&settings.jwt_issuer]);
    validation.set_audience(&[&settings.jwt_audience]);
    validation.set_required_spec_claims(&["iss", "aud", "sub", "exp", "nbf", "iat"]);
    // Time is checked below against the component's clock, not the library's.
    validation.validate_exp = false;
    validation.validate_nbf = false;
    let data = jsonwebtoken::decode::<Claims>(
        token,
        &DecodingKey::from_secret(&settings.jwt_secret),
        &validation,
    )
    .map_err(|_| Error::InvalidToken)?;
    check_times(&data.claims, i64::from(settings.clock_skew), now)?;
    Ok(data.claims)
}

fn check_times(claims: &Claims, skew: i64, now: i64) -> Result<(), Error> {
    let live = now < claims.exp.saturating_add(skew)
        && now >= claims.nbf.saturating_sub(skew)
        && now >= claims.iat.saturating_sub(skew);
    live.then_some(()).ok_or(Error::InvalidToken)
}

/// Encodes random bytes as an opaque token (URL-safe base64, no padding).
pub fn encode_opaque(random: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(random)
}

/// The stored form of an opaque token: SHA-256, hex.
pub fn hash_opaque(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings::from_lookup(|key| (key == "jwt_secret").then(|| "k".repeat(40))).unwrap()
    }

    fn claims(now: i64) -> Claims {
        Claims {
            iss: "portcullis".into(),
            aud: "portcullis".into(),
            sub: "user-1".into(),
            sid: "session-1".into(),
            jti: "jti-1".into(),
            iat: now,
            nbf: now,
            exp: now + 900,
        }
    }

    #[test]
    fn a_signed_token_verifies_until_it_expires() {
        let settings = settings();
        let token = sign(&claims(1_000), &settings).unwrap();
        assert_eq!(verify(&token, &settings, 1_500).unwrap(), claims(1_000));
        assert!(verify(&token, &settings, 1_909).is_ok(), "within the skew");
        assert_eq!(verify(&token, &settings, 1_910), Err(Error::InvalidToken));
        assert_eq!(verify(&token, &settings, 980), Err(Error::InvalidToken));
    }

    #[test]
    fn header_carries_type_and_key_id() {
        let settings = settings();
        let token = sign(&claims(0), &settings).unwrap();
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.typ.as_deref(), Some("at+jwt"));
        assert_eq!(header.kid, Some(key_id(&settings)));
    }

    #[test]
    fn other_keys_issuers_audiences_and_alg_none_are_refused() {
        let settings = settings();
        let token = sign(&claims(0), &settings).unwrap();
        let mut other = settings.clone();
        other.jwt_secret = b"another-secret-of-thirty-two-bytes!!".to_vec();
        assert!(verify(&token, &other, 10).is_err());
        let mut other = settings.clone();
        other.jwt_issuer = "someone-else".into();
        assert!(verify(&token, &other, 10).is_err());
        let mut other = settings.clone();
        other.jwt_audience = "someone-else".into();
        assert!(verify(&token, &other, 10).is_err());

        let payload = token.split('.').nth(1).unwrap();
        let none_header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"at+jwt"}"#);
        assert!(verify(&format!("{none_header}.{payload}."), &settings, 10).is_err());
        assert!(verify("garbage", &settings, 10).is_err());
    }
}
