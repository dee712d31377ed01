//! Access tokens (RFC 7519 JWTs, API.md §7) and opaque random tokens. Access tokens carry
//! `typ: at+jwt` and a `kid`; verification allows exactly the configured algorithm
//! (never `none`, never a switch between HMAC and Ed25519), refuses headers that point at
//! keys (`jwk`, `jku`, `x5u`, `x5c`), and checks issuer, audience and the time claims
//! against the component's clock. Whether the session is still live is the caller's check.

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
    /// How the user proved who they are (RFC 8176): `["pwd"]`, or `["pwd","otp","mfa"]`
    /// after a second factor (API.md §8).
    #[serde(default)]
    pub amr: Vec<String>,
}

/// The key new access tokens are signed with.
pub enum Signer {
    Hs256 {
        secret: Vec<u8>,
        kid: String,
    },
    /// `pkcs8` is the PKCS#8 DER of the Ed25519 private key.
    EdDsa {
        pkcs8: Vec<u8>,
        kid: String,
    },
}

/// The keys access tokens are checked against: only the configured algorithm.
pub enum Verifier {
    Hs256 {
        secret: Vec<u8>,
        kid: String,
    },
    /// Ed25519 public keys (32 bytes) by `kid`: the signing key and recently retired ones.
    EdDsa {
        keys: Vec<(String, Vec<u8>)>,
    },
}

/// The `kid` of the HS256 key: a short fingerprint that names the key without revealing it.
pub fn hs256_key_id(secret: &[u8]) -> String {
    let digest = Sha256::new()
        .chain_update(b"portcullis-hs256-kid:")
        .chain_update(secret)
        .finalize();
    hex(&digest[..8])
}

/// The HS256 signer and verifier of the settings' secret.
pub fn hs256(settings: &Settings) -> (Signer, Verifier) {
    let kid = hs256_key_id(&settings.jwt_secret);
    let secret = settings.jwt_secret.clone();
    (
        Signer::Hs256 {
            secret: secret.clone(),
            kid: kid.clone(),
        },
        Verifier::Hs256 { secret, kid },
    )
}

/// Signs the claims as an access token.
pub fn sign(claims: &Claims, signer: &Signer) -> Result<String, Error> {
    let (algorithm, kid, key) = match signer {
        Signer::Hs256 { secret, kid } => (Algorithm::HS256, kid, EncodingKey::from_secret(secret)),
        Signer::EdDsa { pkcs8, kid } => (Algorithm::EdDSA, kid, EncodingKey::from_ed_der(pkcs8)),
    };
    let header = Header {
        typ: Some(ACCESS_TOKEN_TYPE.into()),
        kid: Some(kid.clone()),
        ..Header::new(algorithm)
    };
    jsonwebtoken::encode(&header, claims, &key)
        .map_err(|e| Error::Internal(format!("jwt encode: {e}")))
}

/// Checks signature, algorithm, type, key id, issuer, audience and `exp`/`nbf`/`iat`
/// (with the configured skew) at time `now`. Every failure is `InvalidToken`.
pub fn verify(
    token: &str,
    verifier: &Verifier,
    settings: &Settings,
    now: i64,
) -> Result<Claims, Error> {
    if token.is_empty() || token.len() > MAX_TOKEN_LENGTH {
        return Err(Error::InvalidToken);
    }
    let header = jsonwebtoken::decode_header(token).map_err(|_| Error::InvalidToken)?;
    let points_at_a_key = header.jku.is_some()
        || header.jwk.is_some()
        || header.x5u.is_some()
        || header.x5c.is_some();
    // No header extension is understood, so none marked critical may be accepted.
    let has_critical_extensions = header.crit.is_some();
    if points_at_a_key
        || has_critical_extensions
        || header.typ.as_deref() != Some(ACCESS_TOKEN_TYPE)
    {
        return Err(Error::InvalidToken);
    }
    let kid = header.kid.as_deref().ok_or(Error::InvalidToken)?;
    let (algorithm, key) = match verifier {
        Verifier::Hs256 { secret, kid: ours } if kid == ours => {
            (Algorithm::HS256, DecodingKey::from_secret(secret))
        }
        Verifier::EdDsa { keys } => keys
            .iter()
            .find(|(candidate, _)| candidate == kid)
            .map(|(_, public)| (Algorithm::EdDSA, DecodingKey::from_ed_der(public)))
            .ok_or(Error::InvalidToken)?,
        Verifier::Hs256 { .. } => return Err(Error::InvalidToken),
    };
    if header.alg != algorithm {
        return Err(Error::InvalidToken);
    }
    let mut validation = Validation::new(algorithm);
    validation.set_issuer(&[&settings.jwt_issuer]);
    validation.set_audience(&[&settings.jwt_audience]);
    validation.set_required_spec_claims(&["iss", "aud", "sub", "exp", "nbf", "iat"]);
    // Time is checked below against the component's clock, not the library's.
    validation.validate_exp = false;
    validation.validate_nbf = false;
    let data = jsonwebtoken::decode::<Claims>(token, &key, &validation)
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

/// Encodes bytes as an opaque token (URL-safe base64, no padding).
pub fn encode_opaque(random: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(random)
}

/// Decodes what [`encode_opaque`] made.
pub fn decode_opaque(text: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(text).ok()
}

/// The stored form of an opaque token: SHA-256, hex.
pub fn hash_opaque(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

pub fn hex(bytes: &[u8]) -> String {
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
            amr: vec!["pwd".into()],
        }
    }

    #[test]
    fn a_signed_token_verifies_until_it_expires() {
        let settings = settings();
        let (signer, verifier) = hs256(&settings);
        let token = sign(&claims(1_000), &signer).unwrap();
        assert_eq!(
            verify(&token, &verifier, &settings, 1_500).unwrap(),
            claims(1_000)
        );
        assert!(
            verify(&token, &verifier, &settings, 1_909).is_ok(),
            "within the skew"
        );
        assert_eq!(
            verify(&token, &verifier, &settings, 1_910),
            Err(Error::InvalidToken)
        );
        assert_eq!(
            verify(&token, &verifier, &settings, 980),
            Err(Error::InvalidToken)
        );
    }

    #[test]
    fn header_carries_type_and_key_id() {
        let settings = settings();
        let token = sign(&claims(0), &hs256(&settings).0).unwrap();
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.typ.as_deref(), Some("at+jwt"));
        assert_eq!(header.kid, Some(hs256_key_id(&settings.jwt_secret)));
    }

    #[test]
    fn other_keys_issuers_audiences_and_alg_none_are_refused() {
        let settings = settings();
        let (signer, verifier) = hs256(&settings);
        let token = sign(&claims(0), &signer).unwrap();
        let mut other = settings.clone();
        other.jwt_secret = b"another-secret-of-thirty-two-bytes!!".to_vec();
        assert!(verify(&token, &hs256(&other).1, &other, 10).is_err());
        let mut other = settings.clone();
        other.jwt_issuer = "someone-else".into();
        assert!(verify(&token, &verifier, &other, 10).is_err());
        let mut other = settings.clone();
        other.jwt_audience = "someone-else".into();
        assert!(verify(&token, &verifier, &other, 10).is_err());

        let payload = token.split('.').nth(1).unwrap();
        let none_header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"at+jwt"}"#);
        assert!(
            verify(
                &format!("{none_header}.{payload}."),
                &verifier,
                &settings,
                10
            )
            .is_err()
        );
        assert!(verify("garbage", &verifier, &settings, 10).is_err());
    }

    #[test]
    fn a_header_with_critical_extensions_is_refused_even_when_correctly_signed() {
        let settings = settings();
        let (_, verifier) = hs256(&settings);
        let mut header = Header::new(Algorithm::HS256);
        header.typ = Some(ACCESS_TOKEN_TYPE.into());
        header.kid = Some(hs256_key_id(&settings.jwt_secret));
        header.crit = Some(vec!["exp".into()]);
        let key = EncodingKey::from_secret(&settings.jwt_secret);
        let token = jsonwebtoken::encode(&header, &claims(0), &key).unwrap();
        assert_eq!(
            verify(&token, &verifier, &settings, 10),
            Err(Error::InvalidToken)
        );
    }
}
