//! Every accepted hash format of the user import (`imported_hash`): bcrypt (`$2a$`,
//! `$2b$`, `$2y$`), PBKDF2-SHA256 in Django's and passlib's forms, Argon2i and Argon2id
//! in PHC form, and any other text. Structure-aware: the input either gives a stored
//! hash as text, or has the target make one of a password in one of the formats (with
//! the `bcrypt` and `pbkdf2` crates, and Argon2 through the harness's kernel).
//!
//! Costs are clamped to keep executions fast: made bcrypt hashes use cost 4 or 5 and
//! PBKDF2 at most 1,024 iterations, and a text hash is only verified (not just parsed)
//! when its bcrypt cost is at most 6 or its PBKDF2 iterations at most 10,000; Argon2 is
//! the harness's cheap stand-in kernel with the real kernel's bounds.
//!
//! Asserted: a made hash is recognised as its scheme, verifies its password and no other
//! (except the passwords the algorithm itself cannot tell apart: for bcrypt, those whose
//! key, the password and a NUL cut at 72 bytes and repeated to 72, is the same; for
//! PBKDF2, those that differ only by trailing NULs, which HMAC's key padding makes one
//! key), and is due a rehash with its
//! scheme's label; a hash `scheme` refuses never verifies; a rehash is only ever due for
//! a hash `scheme` accepts.

#![no_main]

use arbitrary::Arbitrary;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use libfuzzer_sys::fuzz_target;
use portcullis_component::imported_hash::{self, Scheme};
use portcullis_component::ports::{Argon2Params, Argon2Variant, Env};
use portcullis_fuzz::FuzzEnv;
use sha2::Sha256;

#[derive(Arbitrary, Debug)]
enum Making {
    Text(String),
    Bcrypt {
        cost5: bool,
        salt: [u8; 16],
        prefix: u8,
    },
    Django {
        iterations: u16,
        salt: String,
    },
    Passlib {
        iterations: u16,
        salt: Vec<u8>,
    },
    Argon2 {
        argon2id: bool,
        v13: bool,
        memory_kib: u16,
        iterations: u8,
        parallelism: u8,
        output_len: u8,
        salt: Vec<u8>,
    },
}

#[derive(Arbitrary, Debug)]
struct Input {
    making: Making,
    password: String,
    other: String,
}

fn pbkdf2(password: &str, salt: &[u8], iterations: u32) -> [u8; 32] {
    let mut derived = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), salt, iterations, &mut derived);
    derived
}

fn ab64(bytes: &[u8]) -> String {
    STANDARD_NO_PAD.encode(bytes).replace('+', ".")
}

/// A stored hash of `password` in the format the input asks for, and its scheme.
fn make(env: &FuzzEnv, making: &Making, password: &str) -> Option<(String, Scheme)> {
    match making {
        Making::Text(_) => None,
        Making::Bcrypt {
            cost5,
            salt,
            prefix,
        } => {
            let cost = if *cost5 { 5 } else { 4 };
            let version = match prefix % 3 {
                0 => bcrypt::Version::TwoA,
                1 => bcrypt::Version::TwoB,
                _ => bcrypt::Version::TwoY,
            };
            let parts = bcrypt::hash_with_salt(password, cost, *salt).ok()?;
            Some((parts.format_for_version(version), Scheme::Bcrypt))
        }
        Making::Django { iterations, salt } => {
            let iterations = u32::from(*iterations % 1024) + 1;
            let salt: String = salt
                .chars()
                .filter(|c| c.is_ascii_graphic() && *c != '$')
                .take(128)
                .collect();
            let salt = if salt.is_empty() {
                "seasalt".into()
            } else {
                salt
            };
            let hash = STANDARD.encode(pbkdf2(password, salt.as_bytes(), iterations));
            Some((
                format!("pbkdf2_sha256${iterations}${salt}${hash}"),
                Scheme::Pbkdf2Sha256,
            ))
        }
        Making::Passlib { iterations, salt } => {
            let iterations = u32::from(*iterations % 1024) + 1;
            let salt = if salt.is_empty() {
                &b"salt"[..]
            } else {
                &salt[..salt.len().min(128)]
            };
            let hash = ab64(&pbkdf2(password, salt, iterations));
            Some((
                format!("$pbkdf2-sha256${iterations}${}${hash}", ab64(salt)),
                Scheme::Pbkdf2Sha256,
            ))
        }
        Making::Argon2 {
            argon2id,
            v13,
            memory_kib,
            iterations,
            parallelism,
            output_len,
            salt,
        } => {
            let parallelism = u32::from(*parallelism % 8) + 1;
            let params = Argon2Params {
                variant: if *argon2id {
                    Argon2Variant::Argon2id
                } else {
                    Argon2Variant::Argon2i
                },
                version: if *v13 { 0x13 } else { 0x10 },
                memory_kib: (8 * parallelism).max(u32::from(*memory_kib)),
                iterations: u32::from(*iterations % 10) + 1,
                parallelism,
                output_len: u32::from(*output_len % 49) + 16,
            };
            let salt = if salt.len() < 8 {
                &b"somesalt"[..]
            } else {
                &salt[..salt.len().min(48)]
            };
            let raw = env.argon2(password.as_bytes(), salt, &params).ok()?;
            let (name, scheme) = if *argon2id {
                ("argon2id", Scheme::Argon2id)
            } else {
                ("argon2i", Scheme::Argon2i)
            };
            Some((
                format!(
                    "${name}$v={}$m={},t={},p={}${}${}",
                    params.version,
                    params.memory_kib,
                    params.iterations,
                    params.parallelism,
                    STANDARD_NO_PAD.encode(salt),
                    STANDARD_NO_PAD.encode(raw)
                ),
                scheme,
            ))
        }
    }
}

/// Whether verifying `stored` is cheap enough for this target (see the module's doc).
fn cheap_to_verify(stored: &str) -> bool {
    if stored.starts_with("$2") {
        return stored
            .get(4..6)
            .and_then(|cost| cost.parse::<u32>().ok())
            .is_some_and(|cost| cost <= 6);
    }
    if stored.starts_with("pbkdf2_sha256$") || stored.starts_with("$pbkdf2-sha256$") {
        return stored
            .trim_start_matches('$')
            .split('$')
            .nth(1)
            .and_then(|iterations| iterations.parse::<u32>().ok())
            .is_some_and(|iterations| iterations <= 10_000);
    }
    true
}

fuzz_target!(|input: Input| {
    let env = FuzzEnv::at(portcullis_fuzz::START);
    if let Making::Text(stored) = &input.making {
        let scheme = imported_hash::scheme(stored);
        if imported_hash::rehash_from(stored).is_some() {
            assert!(
                scheme.is_some(),
                "a rehash is due only for an accepted hash"
            );
        }
        if cheap_to_verify(stored) {
            let verified = imported_hash::verify(&env, &input.password, stored);
            assert!(
                scheme.is_some() || !verified,
                "{stored} verified unaccepted"
            );
        }
        return;
    }
    let Some((stored, expected)) = make(&env, &input.making, &input.password) else {
        return;
    };
    assert_eq!(imported_hash::scheme(&stored), Some(expected), "{stored}");
    assert!(
        imported_hash::verify(&env, &input.password, &stored),
        "{stored} refused its password"
    );
    // bcrypt's key is the password and a NUL, cut at 72 bytes, and its key schedule
    // reads it round and round for 72 bytes (so "\0" and "\0\0" are one key).
    let bcrypt_key = |password: &str| -> Vec<u8> {
        let key: Vec<u8> = password.bytes().chain([0]).take(72).collect();
        key.iter().copied().cycle().take(72).collect()
    };
    let same_for_bcrypt =
        expected == Scheme::Bcrypt && bcrypt_key(&input.other) == bcrypt_key(&input.password);
    // HMAC pads a key of at most 64 bytes with zeros: for PBKDF2-HMAC, a password and the
    // same password with NULs after it are one key (as in Django and passlib).
    let hmac_key = |password: &str| -> Vec<u8> {
        let bytes = password.as_bytes();
        if bytes.len() > 64 {
            return bytes.to_vec();
        }
        bytes[..bytes.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1)].to_vec()
    };
    let same_for_pbkdf2 =
        expected == Scheme::Pbkdf2Sha256 && hmac_key(&input.other) == hmac_key(&input.password);
    if input.other != input.password && !same_for_bcrypt && !same_for_pbkdf2 {
        assert!(
            !imported_hash::verify(&env, &input.other, &stored),
            "{stored} took another password"
        );
    }
    let current = expected == Scheme::Argon2id
        && stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1$")
        && stored.len() == "$argon2id$v=19$m=19456,t=2,p=1$".len() + 22 + 1 + 43;
    if !current {
        assert_eq!(imported_hash::rehash_from(&stored), Some(expected.label()));
    }
});
