//! The settings parser (`Settings::from_lookup`): any values for any of the keys it
//! reads (`settings::KEYS`), plus keys it does not read. Asserted: accepted settings are
//! within their documented bounds; a refusal is one or more lines, each naming the
//! setting (`PORTCULLIS_<KEY>: …`), and never shows the value of the JWT secret or
//! signing key.

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use portcullis_component::settings::{KEYS, Settings};

#[derive(Arbitrary, Debug)]
struct Input {
    /// (index into `KEYS`, or another key when past its end; value)
    values: Vec<(u8, String)>,
}

/// Fails when `problem` shows the value of `secret_key`: a line holding a (long enough)
/// secret must be the same line when the secret is masked by as many other bytes, so
/// the secret's text is in the message's fixed words only, never echoed.
fn assert_not_shown(pairs: &[(String, String)], secret_key: &str, problem: &str) {
    let Some((_, secret)) = pairs.iter().find(|(name, _)| name == secret_key) else {
        return;
    };
    let trimmed = secret.trim();
    if trimmed.len() < 8 || !problem.contains(trimmed) {
        return;
    }
    let masked: Vec<(String, String)> = pairs
        .iter()
        .map(|(name, value)| {
            let value = if name == secret_key {
                "\u{7}".repeat(secret.len())
            } else {
                value.clone()
            };
            (name.clone(), value)
        })
        .collect();
    let masked_problems = Settings::from_lookup(|key| {
        masked
            .iter()
            .find(|(name, _)| name == key)
            .map(|(_, value)| value.clone())
    })
    .err()
    .unwrap_or_default();
    assert!(
        masked_problems.iter().any(|line| line == problem),
        "{secret_key} shown in {problem}"
    );
}

fuzz_target!(|input: Input| {
    let pairs: Vec<(String, String)> = input
        .values
        .iter()
        .map(|(index, value)| {
            let key = KEYS
                .get(usize::from(*index))
                .map_or_else(|| format!("unknown_{index}"), |key| key.to_string());
            (key, value.clone())
        })
        .collect();
    let lookup = |key: &str| {
        pairs
            .iter()
            .find(|(name, _)| name == key)
            .map(|(_, value)| value.clone())
    };
    match Settings::from_lookup(lookup) {
        Ok(settings) => {
            assert!(settings.jwt_secret.len() >= 32);
            assert!((1..=86_400).contains(&settings.access_ttl));
            assert!((60..=31_536_000).contains(&settings.refresh_ttl));
            assert!(settings.clock_skew <= 300);
            assert!(settings.refresh_reuse_grace <= 300);
            assert!(settings.max_sessions <= 10_000);
            assert!((8..=128).contains(&settings.password_min_length));
            assert!((64..=1024 * 1024).contains(&settings.max_body_bytes));
            assert!(settings.login_throttle <= 1_000);
            assert!(
                settings
                    .rate_limit
                    .is_none_or(|limit| limit.requests > 0 && limit.seconds > 0)
            );
            assert!(
                settings.public_url.starts_with("http://")
                    || settings.public_url.starts_with("https://")
            );
            assert!(!settings.public_url.ends_with('/'));
            assert!(!settings.jwt_issuer.trim().is_empty());
            assert!(!settings.jwt_audience.trim().is_empty());
            assert!(
                settings
                    .cors_origins
                    .iter()
                    .all(|origin| !origin.is_empty())
            );
        }
        Err(problems) => {
            assert!(!problems.is_empty());
            for problem in &problems {
                let named = KEYS.iter().any(|key| {
                    problem.starts_with(&format!("PORTCULLIS_{}: ", key.to_ascii_uppercase()))
                });
                assert!(named, "{problem}");
                for secret_key in ["jwt_secret", "jwt_signing_key"] {
                    assert_not_shown(&pairs, secret_key, problem);
                }
            }
        }
    }
});
