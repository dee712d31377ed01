//! Password hashing: Argon2id with OWASP's parameters (m = 19456 KiB, t = 2, p = 1) in
//! PHC strings. Logins for unknown accounts verify against a dummy hash of the same cost,
//! so neither the answer nor its timing tells which accounts exist.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

const MEMORY_KIB: u32 = 19_456;
const ITERATIONS: u32 = 2;
const PARALLELISM: u32 = 1;
const SALT_BYTES: usize = 16;

/// An Argon2id hash (same parameters) of a random password nobody knows.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$YWJjZGVmZ2hpamtsbW5vcA$GpCB1ryyf+BjcyBr8mP5d6XYVsNvNbvVc0VJg5hbzUM";

fn hasher() -> Result<Argon2<'static>, String> {
    let params = Params::new(MEMORY_KIB, ITERATIONS, PARALLELISM, None)
        .map_err(|e| format!("argon2 params: {e}"))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// Hashes a password with a fresh random salt; returns a PHC string.
pub fn hash(password: &str, salt: &[u8]) -> Result<String, String> {
    if salt.len() < SALT_BYTES {
        return Err("salt too short".into());
    }
    let salt = SaltString::encode_b64(salt).map_err(|e| format!("salt: {e}"))?;
    hasher()?
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| format!("argon2: {e}"))
}

/// How many random bytes [`hash`] wants as salt.
pub const fn salt_len() -> usize {
    SALT_BYTES
}

/// True when `password` matches the PHC string. A malformed stored hash never matches.
pub fn verify(password: &str, phc: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok()
}

/// Spends the same time as verifying a real account's password, and always fails.
pub fn verify_dummy(password: &str) -> bool {
    // black_box: the result is unused, and the optimiser must not drop the work.
    std::hint::black_box(verify(password, DUMMY_HASH));
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_carry_owasp_parameters() {
        let phc = hash("Tr1cky!Horse#42", &[7u8; 16]).unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(verify("Tr1cky!Horse#42", &phc));
        assert!(!verify("tr1cky!Horse#42", &phc));
        assert!(!verify("anything", "not a phc string"));
    }

    #[test]
    fn the_dummy_hash_is_a_valid_hash_of_the_same_cost() {
        let parsed = PasswordHash::new(DUMMY_HASH).unwrap();
        assert_eq!(parsed.algorithm.as_str(), "argon2id");
        let params = Params::try_from(&parsed).unwrap();
        assert_eq!(
            (params.m_cost(), params.t_cost(), params.p_cost()),
            (MEMORY_KIB, ITERATIONS, PARALLELISM)
        );
        assert!(!verify_dummy("password"));
    }
}
