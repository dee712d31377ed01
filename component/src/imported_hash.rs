//! Password hashes brought from other systems (API.md §9): bcrypt (`$2a$`, `$2b$`,
//! `$2y$`, cost 4–16), Argon2i and Argon2id in PHC form (within
//! [`password::STORED_BOUNDS`]), and PBKDF2-SHA256 as Django writes it
//! (`pbkdf2_sha256$<iterations>$<salt>$<base64 hash>`) or as passlib writes it
//! (`$pbkdf2-sha256$<iterations>$<ab64 salt>$<ab64 hash>`), up to 2,000,000 iterations.
//!
//! [`scheme`] decides which stored hashes are accepted, at import and again at every
//! login, so that no stored hash can make a login cost more than those bounds. [`verify`]
//! checks a password against any accepted hash (Argon2 through [`password::verify`]),
//! and [`rehash_from`] says when a correct password must be hashed again with the
//! current parameters. Nothing here logs or returns any part of a hash.

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use sha2::Sha256;
use subtle::ConstantTimeEq as _;

use crate::password;
use crate::ports::Env;

/// The longest hash a `users.password_hash` column holds.
const MAX_HASH_CHARS: usize = 255;
/// bcrypt costs accepted (a cost of 16 is 2^16 rounds of its key schedule).
const BCRYPT_COSTS: std::ops::RangeInclusive<u32> = 4..=16;
/// PBKDF2 iteration counts accepted.
const PBKDF2_ITERATIONS: std::ops::RangeInclusive<u32> = 1..=2_000_000;
/// The length of a PBKDF2-SHA256 hash both Django and passlib write (one SHA-256 block:
/// a longer one would cost a multiple of the iterations).
const PBKDF2_HASH_BYTES: usize = 32;
/// The longest PBKDF2 salt accepted, in bytes.
const PBKDF2_MAX_SALT_BYTES: usize = 128;

/// The kinds of stored hash a login can verify.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    Bcrypt,
    Argon2i,
    Argon2id,
    Pbkdf2Sha256,
}

impl Scheme {
    /// The name recorded in the `password_rehashed` audit event (`detail.from`).
    pub fn label(self) -> &'static str {
        match self {
            Scheme::Bcrypt => "bcrypt",
            Scheme::Argon2i => "argon2i",
            Scheme::Argon2id => "argon2id",
            Scheme::Pbkdf2Sha256 => "pbkdf2_sha256",
        }
    }
}

/// The scheme of `hash` when it is one this service verifies, with parameters within
/// the bounds; `None` otherwise (an import answers `unsupported_hash`).
pub fn scheme(hash: &str) -> Option<Scheme> {
    if hash.len() > MAX_HASH_CHARS || !hash.is_ascii() {
        return None;
    }
    if let Some(rest) = hash.strip_prefix("$argon2id$") {
        return (!rest.is_empty() && password::is_verifiable(hash)).then_some(Scheme::Argon2id);
    }
    if let Some(rest) = hash.strip_prefix("$argon2i$") {
        return (!rest.is_empty() && password::is_verifiable(hash)).then_some(Scheme::Argon2i);
    }
    if Bcrypt::parse(hash).is_some() {
        return Some(Scheme::Bcrypt);
    }
    Pbkdf2::parse(hash).map(|_| Scheme::Pbkdf2Sha256)
}

/// True when `password` matches `stored`. A stored hash [`scheme`] does not accept never
/// matches (and costs nothing).
pub fn verify(env: &dyn Env, password: &str, stored: &str) -> bool {
    match scheme(stored) {
        Some(Scheme::Argon2i | Scheme::Argon2id) => password::verify(env, password, stored),
        Some(Scheme::Bcrypt) => bcrypt::verify(password, stored).unwrap_or(false),
        Some(Scheme::Pbkdf2Sha256) => {
            Pbkdf2::parse(stored).is_some_and(|hash| hash.matches(password))
        }
        None => false,
    }
}

/// The scheme to record when a correct password for `stored` must be hashed again (any
/// hash but Argon2id with the current parameters); `None` when it is current.
pub fn rehash_from(stored: &str) -> Option<&'static str> {
    if password::is_current(stored) {
        return None;
    }
    scheme(stored).map(Scheme::label)
}

/// A bcrypt hash: `$2a$`, `$2b$` or `$2y$`, a two-digit cost within [`BCRYPT_COSTS`],
/// `$`, then 22 characters of salt and 31 of hash in bcrypt's base64 alphabet.
struct Bcrypt;

impl Bcrypt {
    fn parse(hash: &str) -> Option<Bcrypt> {
        let rest = ["$2a$", "$2b$", "$2y$"]
            .iter()
            .find_map(|prefix| hash.strip_prefix(prefix))?;
        let (cost, salt_and_hash) = rest.split_once('$')?;
        let cost = digits(cost, 2).filter(|_| cost.len() == 2)?;
        let alphabet_only = salt_and_hash
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'/'));
        (BCRYPT_COSTS.contains(&cost) && salt_and_hash.len() == 53 && alphabet_only)
            .then_some(Bcrypt)
    }
}

/// A PBKDF2-SHA256 hash, decoded from Django's or passlib's form.
struct Pbkdf2 {
    iterations: u32,
    salt: Vec<u8>,
    hash: Vec<u8>,
}

impl Pbkdf2 {
    fn parse(stored: &str) -> Option<Pbkdf2> {
        if let Some(rest) = stored.strip_prefix("pbkdf2_sha256$") {
            // Django: the salt is used as written; the hash is standard base64.
            let (iterations, salt, hash) = three_fields(rest)?;
            let salt_is_plain = salt.bytes().all(|byte| byte.is_ascii_graphic());
            return Self::checked(
                iterations,
                salt_is_plain.then(|| salt.as_bytes().to_vec())?,
                base64::engine::general_purpose::STANDARD
                    .decode(hash)
                    .ok()?,
            );
        }
        let rest = stored.strip_prefix("$pbkdf2-sha256$")?;
        // passlib: salt and hash in its adapted base64 ("ab64": `.` for `+`, no padding).
        let (iterations, salt, hash) = three_fields(rest)?;
        Self::checked(iterations, ab64_decode(salt)?, ab64_decode(hash)?)
    }

    fn checked(iterations: &str, salt: Vec<u8>, hash: Vec<u8>) -> Option<Pbkdf2> {
        let iterations: u32 = digits(iterations, 7)?;
        let within = PBKDF2_ITERATIONS.contains(&iterations)
            && (1..=PBKDF2_MAX_SALT_BYTES).contains(&salt.len())
            && hash.len() == PBKDF2_HASH_BYTES;
        within.then_some(Pbkdf2 {
            iterations,
            salt,
            hash,
        })
    }

    /// Derives the hash of `password` and compares it in constant time.
    fn matches(&self, password: &str) -> bool {
        let mut derived = [0u8; PBKDF2_HASH_BYTES];
        pbkdf2::pbkdf2_hmac::<Sha256>(
            password.as_bytes(),
            &self.salt,
            self.iterations,
            &mut derived,
        );
        derived.ct_eq(&self.hash).into()
    }
}

/// `<iterations>$<salt>$<hash>`, each part non-empty.
fn three_fields(text: &str) -> Option<(&str, &str, &str)> {
    let mut parts = text.split('$');
    let fields = (parts.next()?, parts.next()?, parts.next()?);
    let all_present = parts.next().is_none()
        && !fields.0.is_empty()
        && !fields.1.is_empty()
        && !fields.2.is_empty();
    all_present.then_some(fields)
}

/// A decimal number of 1 to `max_digits` ASCII digits (no sign, no spaces).
fn digits(text: &str, max_digits: usize) -> Option<u32> {
    let well_formed =
        (1..=max_digits).contains(&text.len()) && text.bytes().all(|byte| byte.is_ascii_digit());
    well_formed.then(|| text.parse().ok()).flatten()
}

/// Decodes passlib's adapted base64: the standard alphabet with `.` for `+`, unpadded.
fn ab64_decode(text: &str) -> Option<Vec<u8>> {
    const AB64: GeneralPurpose = GeneralPurpose::new(
        &alphabet::STANDARD,
        GeneralPurposeConfig::new()
            .with_decode_padding_mode(DecodePaddingMode::Indifferent)
            .with_decode_allow_trailing_bits(false),
    );
    if text.contains('+') {
        return None;
    }
    AB64.decode(text.replace('.', "+")).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TestEnv;

    // Made by python `bcrypt` 5.0 (`bcrypt.hashpw(b"correct horse", bcrypt.gensalt(4))`);
    // the tests also try the `$2a$`/`$2y$` forms of it, as older libraries and PHP write.
    const BCRYPT_2B: &str = "$2b$04$1jRicVqJcqUVE1qkaNyNhehSK7Lh2KfmOj9V28kNxxp0jgXWExc9.";
    // Django's form, made by python's `hashlib.pbkdf2_hmac("sha256", b"password",
    // b"seasalt", 1000)` in standard base64, as Django's `PBKDF2PasswordHasher` encodes.
    const DJANGO: &str = "pbkdf2_sha256$1000$seasalt$YIWkt6M1JFXrHg5s0jZjBSc7C2Cz6QvchSJ0h8Y+i7c=";
    // Made by passlib 1.7.4 (`pbkdf2_sha256.using(rounds=1000).hash("correct horse")`);
    // its salt and hash both hold ab64's `.`.
    const PASSLIB: &str =
        "$pbkdf2-sha256$1000$.f9fa.39PyckRMgZoxRirA$KYHiQ45RBUDXo9L2i0UOFMQm/rs.GYDl2fWV..pooj4";
    // Made by argon2-cffi 25 with its defaults (m = 65536, t = 3, p = 4), salt given.
    const ARGON2ID_CFFI: &str = "$argon2id$v=19$m=65536,t=3,p=4$c29tZXNhbHRzb21lc2FsdA$7YbYS2w24dSTBgFeLZ/Pp5pFxLjWTXyOMrr1Ld8BcEI";

    #[test]
    fn each_format_verifies_its_password_and_no_other() {
        let env = TestEnv::at(0);
        for stored in [BCRYPT_2B, PASSLIB, ARGON2ID_CFFI] {
            assert!(verify(&env, "correct horse", stored), "{stored}");
            assert!(!verify(&env, "Correct horse", stored), "{stored}");
            assert!(!verify(&env, "", stored), "{stored}");
        }
        assert!(verify(&env, "password", DJANGO));
        assert!(!verify(&env, "passwore", DJANGO));
    }

    #[test]
    fn every_bcrypt_prefix_is_accepted() {
        let env = TestEnv::at(0);
        for prefix in ["$2a$", "$2y$"] {
            let stored = BCRYPT_2B.replacen("$2b$", prefix, 1);
            assert_eq!(scheme(&stored), Some(Scheme::Bcrypt));
            assert!(verify(&env, "correct horse", &stored), "{stored}");
        }
        assert_eq!(scheme(&BCRYPT_2B.replacen("$2b$", "$2x$", 1)), None);
    }

    #[test]
    fn schemes_are_recognised_and_labelled() {
        let env = TestEnv::at(0);
        let current = password::hash(&env, "correct horse", &[9u8; 16]).unwrap();
        let cases = [
            (BCRYPT_2B, Some("bcrypt")),
            (DJANGO, Some("pbkdf2_sha256")),
            (PASSLIB, Some("pbkdf2_sha256")),
            (ARGON2ID_CFFI, Some("argon2id")),
            (&current, None),
        ];
        for (stored, from) in cases {
            assert_eq!(rehash_from(stored), from, "{stored}");
        }
        let argon2i = "$argon2i$v=19$m=65536,t=2,p=4$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG";
        assert_eq!(scheme(argon2i), Some(Scheme::Argon2i));
        assert_eq!(rehash_from(argon2i), Some("argon2i"));
    }

    #[test]
    fn parameters_beyond_the_bounds_are_unsupported() {
        let too_costly = [
            BCRYPT_2B.replacen("$04$", "$17$", 1),
            BCRYPT_2B.replacen("$04$", "$03$", 1),
            BCRYPT_2B.replacen("$04$", "$4$", 1),
            PASSLIB.replacen("$1000$", "$2000001$", 1),
            PASSLIB.replacen("$1000$", "$0$", 1),
            DJANGO.replacen("$1000$", "$+1000$", 1),
            ARGON2ID_CFFI.replacen("m=65536", "m=65537", 1),
            ARGON2ID_CFFI.replacen("t=3", "t=11", 1),
            ARGON2ID_CFFI.replacen("p=4", "p=9", 1),
            ARGON2ID_CFFI.replacen("argon2id", "argon2d", 1),
        ];
        for stored in &too_costly {
            assert_eq!(scheme(stored), None, "{stored}");
            assert!(
                !verify(&TestEnv::at(0), "correct horse", stored),
                "{stored}"
            );
        }
        assert!(scheme(&PASSLIB.replacen("$1000$", "$2000000$", 1)).is_some());
    }

    #[test]
    fn malformed_hashes_are_unsupported() {
        for stored in [
            "",
            "correct horse",
            "$2b$04$short",
            "$2b$04$1jRicVqJcqUVE1qkaNyNhehSK7Lh2KfmOj9V28kNxxp0jgXWExc9!",
            "pbkdf2_sha256$1000$seasalt",
            "pbkdf2_sha256$1000$seasalt$bm90IDMyIGJ5dGVz",
            "pbkdf2_sha256$1000$$YIWkt6M1JFXrHg5s0jZjBSc7C2Cz6QvchSJ0h8Y+i7c=",
            "pbkdf2_sha256$1000$sea$salt$YIWkt6M1JFXrHg5s0jZjBSc7C2Cz6QvchSJ0h8Y+i7c=",
            "$pbkdf2-sha256$1000$.f9fa.39PyckRMgZoxRirA$KYHiQ45RBUDXo9L2i0UOFMQm+rs.GYDl2fWV..pooj4",
            "$pbkdf2-sha1$1000$.f9fa.39PyckRMgZoxRirA$KYHiQ45RBUDXo9L2i0UOFMQm/rs.GYDl2fWV..pooj4",
            "$argon2id$",
            "md5$salt$0123456789abcdef",
        ] {
            assert_eq!(scheme(stored), None, "{stored}");
        }
        assert_eq!(scheme(&format!("{DJANGO}{}", "A".repeat(200))), None);
    }
}
