//! Signing keys. Under HS256 the key is `PORTCULLIS_JWT_SECRET`. Under EdDSA, Ed25519 keys
//! live in the `signing_keys` table, shared by every host: the newest active key signs,
//! keys retired by a rotation keep verifying until every token they signed has expired,
//! and `/.well-known/jwks.json` publishes the verifying keys.
//!
//! `PORTCULLIS_JWT_SIGNING_KEY` gives the key instead: it is installed as the active key
//! (retiring any other, as a rotation does) the first time it is needed, and rotation is
//! then done by changing that setting.
//!
//! A private key is stored sealed: its seed XOR an HMAC-SHA256 pad keyed by a key derived
//! from `PORTCULLIS_JWT_SECRET` over the key's `kid`, so a copy of the database alone
//! cannot mint tokens.

use ed25519_dalek::SigningKey;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::app::App;
use crate::db::{integer, statement, text};
use crate::error::Error;
use crate::settings::JwtAlgorithm;
use crate::tokens::{self, Signer, Verifier};

const ALGORITHM: &str = "EdDSA";
const SEED_BYTES: usize = 32;
const KID_BYTES: usize = 8;
/// The key that signs: the newest one not retired.
const NEWEST_ACTIVE_KEY: &str = "SELECT kid, sealed_private, public_key FROM signing_keys \
    WHERE retired_at IS NULL ORDER BY created_at DESC, kid DESC LIMIT 1";
/// RFC 8410 PKCS#8 v1 prefix of an Ed25519 private key; the 32-byte seed follows.
const PKCS8_ED25519_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// The key new tokens are signed with; under EdDSA the first call creates one, or
/// installs the one given in the settings.
pub fn signer(app: &App<'_>) -> Result<Signer, Error> {
    if app.settings.jwt_algorithm == JwtAlgorithm::Hs256 {
        return Ok(tokens::hs256(app.settings).0);
    }
    let newest = app.db.query_one(NEWEST_ACTIVE_KEY, &[])?;
    if let Some(configured) = &app.settings.jwt_signing_key {
        return configured_signer(app, &configured.0, newest.as_ref());
    }
    let (kid, sealed, public) = match newest {
        Some(row) => (row.text(0)?, row.text(1)?, row.text(2)?),
        None => {
            create(app)?;
            return signer(app);
        }
    };
    let seed = unseal(app, &kid, &sealed, &public)?;
    Ok(eddsa_signer(kid, &seed))
}

fn eddsa_signer(kid: String, seed: &[u8]) -> Signer {
    Signer::EdDsa {
        pkcs8: [PKCS8_ED25519_PREFIX.as_slice(), seed].concat(),
        kid,
    }
}

/// Signs with the configured key, first making it the one active key when the newest
/// active key is another (every host derives the same `kid` from the public key).
fn configured_signer(
    app: &App<'_>,
    seed: &[u8; SEED_BYTES],
    newest: Option<&crate::db::Row>,
) -> Result<Signer, Error> {
    let public = tokens::encode_opaque(&SigningKey::from_bytes(seed).verifying_key().to_bytes());
    let kid = tokens::hex(&Sha256::digest(public.as_bytes())[..KID_BYTES]);
    let active = match newest {
        Some(row) => row.text(0)? == kid,
        None => false,
    };
    if !active {
        let installed = app.db.batch(vec![
            statement(
                "UPDATE signing_keys SET retired_at = ? WHERE retired_at IS NULL AND kid <> ?",
                vec![integer(app.now()), text(&kid)],
            ),
            statement("DELETE FROM signing_keys WHERE kid = ?", vec![text(&kid)]),
            insert_key(app, &kid, seed, &public)?,
        ]);
        match installed {
            // Another host installed it at the same moment.
            Ok(_) | Err(crate::ports::StoreError::UniqueViolation(_)) => {}
            Err(other) => return Err(other.into()),
        }
    }
    Ok(eddsa_signer(kid, seed))
}

/// The keys tokens are checked against: only those of the configured algorithm.
pub fn verifier(app: &App<'_>) -> Result<Verifier, Error> {
    if app.settings.jwt_algorithm == JwtAlgorithm::Hs256 {
        return Ok(tokens::hs256(app.settings).1);
    }
    let keys = verifying_keys(app)?
        .into_iter()
        .filter_map(|(kid, public)| Some((kid, tokens::decode_opaque(&public)?)))
        .collect();
    Ok(Verifier::EdDsa { keys })
}

/// `kid` and public key (base64url) of every key that may have signed a live token.
fn verifying_keys(app: &App<'_>) -> Result<Vec<(String, String)>, Error> {
    let settings = app.settings;
    let oldest_live = app.now() - i64::from(settings.access_ttl) - i64::from(settings.clock_skew);
    app.db
        .query(
            "SELECT kid, public_key FROM signing_keys WHERE algorithm = ? \
             AND (retired_at IS NULL OR retired_at > ?) ORDER BY created_at DESC, kid DESC",
            &[text(ALGORITHM), integer(oldest_live)],
        )?
        .iter()
        .map(|row| Ok((row.text(0)?, row.text(1)?)))
        .collect()
}

/// The JWK set of `/.well-known/jwks.json` (RFC 7517, RFC 8037); empty under HS256.
/// Under EdDSA the first signing key is created here if none exists yet, so resource
/// servers that read the set before any login find the key.
pub fn jwks(app: &App<'_>) -> Result<Value, Error> {
    if app.settings.jwt_algorithm == JwtAlgorithm::Hs256 {
        return Ok(json!({ "keys": [] }));
    }
    let mut published = verifying_keys(app)?;
    if published.is_empty() {
        signer(app)?;
        published = verifying_keys(app)?;
    }
    let keys: Vec<Value> = published
        .into_iter()
        .map(|(kid, public)| {
            json!({"kty": "OKP", "crv": "Ed25519", "alg": ALGORITHM, "use": "sig", "kid": kid, "x": public})
        })
        .collect();
    Ok(json!({ "keys": keys }))
}

/// Retires the signing key and creates a new one; returns the new `kid`. Tokens signed
/// with the retired key stay valid until they expire.
pub fn rotate(app: &App<'_>) -> Result<String, Error> {
    if app.settings.jwt_algorithm == JwtAlgorithm::Hs256 {
        return Err(Error::Internal(
            "key rotation applies to EdDSA; under HS256 change PORTCULLIS_JWT_SECRET".into(),
        ));
    }
    if app.settings.jwt_signing_key.is_some() {
        return Err(Error::Internal(
            "PORTCULLIS_JWT_SIGNING_KEY is set: rotate by setting a new key there".into(),
        ));
    }
    let (kid, insert) = new_key(app)?;
    let retire = statement(
        "UPDATE signing_keys SET retired_at = ? WHERE retired_at IS NULL",
        vec![integer(app.now())],
    );
    app.db.batch(vec![retire, insert])?;
    Ok(kid)
}

fn create(app: &App<'_>) -> Result<(), Error> {
    let (_, insert) = new_key(app)?;
    app.db.batch(vec![insert])?;
    Ok(())
}

/// A fresh key: its `kid` and the statement that stores it.
fn new_key(app: &App<'_>) -> Result<(String, crate::ports::Statement), Error> {
    let kid = tokens::hex(&app.env.random_bytes(KID_BYTES));
    let seed: [u8; SEED_BYTES] = app
        .env
        .random_bytes(SEED_BYTES)
        .try_into()
        .map_err(|_| Error::Internal("short random read".into()))?;
    let public = tokens::encode_opaque(&SigningKey::from_bytes(&seed).verifying_key().to_bytes());
    let insert = insert_key(app, &kid, &seed, &public)?;
    Ok((kid, insert))
}

/// The statement that stores a key, its private half sealed.
fn insert_key(
    app: &App<'_>,
    kid: &str,
    seed: &[u8; SEED_BYTES],
    public: &str,
) -> Result<crate::ports::Statement, Error> {
    let sealed = xor(seed, &pad(app, kid)?);
    Ok(statement(
        "INSERT INTO signing_keys (kid, algorithm, sealed_private, public_key, created_at) \
         VALUES (?, ?, ?, ?, ?)",
        vec![
            text(kid),
            text(ALGORITHM),
            text(tokens::encode_opaque(&sealed)),
            text(public),
            integer(app.now()),
        ],
    ))
}

/// Whether this host can sign under EdDSA: the newest active key must unseal with its
/// `PORTCULLIS_JWT_SECRET`. `Ok` under HS256, with a configured key, while there is no
/// key yet, and when the database cannot be asked (the health check reports that). The
/// problem names the setting and never shows a secret.
pub fn check(app: &App<'_>) -> Result<(), String> {
    if app.settings.jwt_algorithm == JwtAlgorithm::Hs256 || app.settings.jwt_signing_key.is_some() {
        return Ok(());
    }
    let Ok(Some(row)) = app.db.query_one(NEWEST_ACTIVE_KEY, &[]) else {
        return Ok(());
    };
    let (Ok(kid), Ok(sealed), Ok(public)) = (row.text(0), row.text(1), row.text(2)) else {
        return Ok(());
    };
    match unseal(app, &kid, &sealed, &public) {
        Ok(_) => Ok(()),
        Err(Error::Internal(problem)) => Err(problem),
        Err(other) => Err(other.detail()),
    }
}

/// Recovers a seed and checks it against the stored public key.
fn unseal(app: &App<'_>, kid: &str, sealed: &str, public: &str) -> Result<Vec<u8>, Error> {
    let sealed = tokens::decode_opaque(sealed)
        .filter(|bytes| bytes.len() == SEED_BYTES)
        .ok_or_else(|| Error::Internal(format!("signing key {kid} is malformed")))?;
    let seed: [u8; SEED_BYTES] = xor(&sealed, &pad(app, kid)?)
        .try_into()
        .map_err(|_| Error::Internal(format!("signing key {kid} is malformed")))?;
    let derived = SigningKey::from_bytes(&seed).verifying_key().to_bytes();
    if tokens::encode_opaque(&derived) != public {
        return Err(Error::Internal(format!(
            "PORTCULLIS_JWT_SECRET: the EdDSA signing key {kid} in the database was sealed \
             with another secret, so this host cannot sign tokens; give it the secret the \
             other hosts of this database use"
        )));
    }
    Ok(seed.to_vec())
}

/// The one-time pad of a key: HMAC-SHA256(SHA-256("portcullis-key-seal:" ‖ secret), kid).
fn pad(app: &App<'_>, kid: &str) -> Result<Vec<u8>, Error> {
    let key = Sha256::new()
        .chain_update(b"portcullis-key-seal:")
        .chain_update(&app.settings.jwt_secret)
        .finalize();
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&key)
        .map_err(|e| Error::Internal(format!("hmac: {e}")))?;
    mac.update(kid.as_bytes());
    Ok(mac.finalize().into_bytes().to_vec())
}

fn xor(a: &[u8], b: &[u8]) -> Vec<u8> {
    a.iter().zip(b).map(|(x, y)| x ^ y).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Harness;
    use crate::tokens::{Claims, sign, verify};

    fn claims(now: i64) -> Claims {
        Claims {
            iss: "portcullis".into(),
            aud: "portcullis".into(),
            sub: "u".into(),
            sid: "s".into(),
            jti: "j".into(),
            iat: now,
            nbf: now,
            exp: now + 900,
            amr: vec!["pwd".into()],
        }
    }

    #[test]
    fn eddsa_keys_are_created_published_and_rotated() {
        let harness = Harness::new(&[("jwt_algorithm", "EdDSA")]);
        let app = harness.app();
        let now = app.now();
        let first_published = jwks(&app).unwrap()["keys"][0]["kid"].clone();
        assert!(first_published.is_string(), "published before any token");
        let old_token = sign(&claims(now), &signer(&app).unwrap()).unwrap();
        assert_eq!(
            jsonwebtoken::decode_header(&old_token).unwrap().alg,
            jsonwebtoken::Algorithm::EdDSA
        );
        assert_eq!(jwks(&app).unwrap()["keys"].as_array().unwrap().len(), 1);

        let new_kid = rotate(&app).unwrap();
        let new_token = sign(&claims(now), &signer(&app).unwrap()).unwrap();
        assert_eq!(
            jsonwebtoken::decode_header(&new_token)
                .unwrap()
                .kid
                .as_deref(),
            Some(new_kid.as_str())
        );
        let both = verifier(&app).unwrap();
        assert!(verify(&old_token, &both, app.settings, now).is_ok());
        assert!(verify(&new_token, &both, app.settings, now).is_ok());
        assert_eq!(jwks(&app).unwrap()["keys"].as_array().unwrap().len(), 2);

        // Once every token the old key signed has expired, the old key is gone.
        harness.env.advance(900 + 10 + 1);
        assert_eq!(jwks(&app).unwrap()["keys"].as_array().unwrap().len(), 1);
        assert!(verify(&old_token, &verifier(&app).unwrap(), app.settings, now).is_err());
    }

    #[test]
    fn hs256_tokens_are_refused_under_eddsa_and_the_reverse() {
        let hs = Harness::new(&[]);
        let ed = Harness::new(&[("jwt_algorithm", "EdDSA")]);
        let (hs_app, ed_app) = (hs.app(), ed.app());
        let now = hs_app.now();
        let hs_token = sign(&claims(now), &signer(&hs_app).unwrap()).unwrap();
        let ed_token = sign(&claims(now), &signer(&ed_app).unwrap()).unwrap();
        assert!(verify(&hs_token, &verifier(&ed_app).unwrap(), ed_app.settings, now).is_err());
        assert!(verify(&ed_token, &verifier(&hs_app).unwrap(), hs_app.settings, now).is_err());
        assert_eq!(jwks(&hs_app).unwrap(), json!({"keys": []}));
    }

    #[test]
    fn a_configured_key_becomes_the_active_key_and_a_new_one_rotates() {
        use ed25519_dalek::pkcs8::EncodePrivateKey as _;
        use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
        let pem = |byte: u8| {
            let key = SigningKey::from_bytes(&[byte; SEED_BYTES]);
            key.to_pkcs8_pem(LineEnding::LF).unwrap().to_string()
        };
        let generated = Harness::new(&[("jwt_algorithm", "EdDSA")]);
        let now = generated.app().now();
        let generated_token = sign(&claims(now), &signer(&generated.app()).unwrap()).unwrap();

        // The same database, now with a key in the settings (escaped line breaks).
        let first = pem(7).replace('\n', "\\n");
        let mut harness = generated;
        harness.settings =
            crate::testing::settings(&[("jwt_algorithm", "EdDSA"), ("jwt_signing_key", &first)]);
        let app = harness.app();
        let configured_token = sign(&claims(now), &signer(&app).unwrap()).unwrap();
        let first_kid = jsonwebtoken::decode_header(&configured_token).unwrap().kid;
        let published = jwks(&app).unwrap()["keys"].as_array().unwrap().len();
        assert_eq!(published, 2, "the generated key still verifies its tokens");
        assert!(
            verify(
                &generated_token,
                &verifier(&app).unwrap(),
                app.settings,
                now
            )
            .is_ok()
        );
        assert!(
            verify(
                &configured_token,
                &verifier(&app).unwrap(),
                app.settings,
                now
            )
            .is_ok()
        );
        assert!(matches!(rotate(&app), Err(Error::Internal(_))));
        // Signing again neither adds nor changes keys.
        let again = sign(&claims(now), &signer(&app).unwrap()).unwrap();
        assert_eq!(jsonwebtoken::decode_header(&again).unwrap().kid, first_kid);
        assert_eq!(jwks(&app).unwrap()["keys"].as_array().unwrap().len(), 2);

        // Another key in the settings: a rotation.
        harness.settings =
            crate::testing::settings(&[("jwt_algorithm", "EdDSA"), ("jwt_signing_key", &pem(9))]);
        let app = harness.app();
        let rotated = sign(&claims(now), &signer(&app).unwrap()).unwrap();
        assert_ne!(
            jsonwebtoken::decode_header(&rotated).unwrap().kid,
            first_kid
        );
        assert!(
            verify(
                &configured_token,
                &verifier(&app).unwrap(),
                app.settings,
                now
            )
            .is_ok()
        );
        assert_eq!(jwks(&app).unwrap()["keys"].as_array().unwrap().len(), 3);
    }

    #[test]
    fn a_changed_secret_is_detected_instead_of_signing_garbage() {
        let mut harness = Harness::new(&[("jwt_algorithm", "EdDSA")]);
        signer(&harness.app()).unwrap();
        assert_eq!(check(&harness.app()), Ok(()));
        harness.settings.jwt_secret = b"a-completely-different-secret-of-32+bytes".to_vec();
        assert!(matches!(signer(&harness.app()), Err(Error::Internal(_))));
        let problem = check(&harness.app()).unwrap_err();
        assert!(problem.starts_with("PORTCULLIS_JWT_SECRET: "), "{problem}");
        assert!(!problem.contains("different-secret"), "{problem}");
    }
}
