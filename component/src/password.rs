//! Password hashing: Argon2id with OWASP's parameters (m = 19456 KiB, t = 2, p = 1) in
//! PHC strings. Logins for unknown accounts verify against a dummy hash of the same cost,
//! so neither the answer nor its timing tells which accounts exist.
//!
//! The rules are here: the parameters, the salt, the PHC encoding, which stored hashes
//! are accepted (Argon2id and Argon2i within [`STORED_BOUNDS`]) and the constant-time
//! comparison. The Argon2 computation itself is the host's kernel ([`Env::argon2`]):
//! native in the native host, the same Rust code as wasm elsewhere (`hasher/`).

use password_hash::{Ident, Output, ParamsString, PasswordHash, SaltString};
use subtle::ConstantTimeEq as _;

use crate::ports::{Argon2Params, Argon2Variant, Env};

/// The parameters of every hash this component makes.
pub const CURRENT: Argon2Params = Argon2Params {
    variant: Argon2Variant::Argon2id,
    version: 0x13,
    memory_kib: 19_456,
    iterations: 2,
    parallelism: 1,
    output_len: 32,
};

/// The most a stored Argon2 hash may ask for (an imported one may differ from
/// [`CURRENT`]): m ≤ 65536 KiB, t ≤ 10, p ≤ 8. A hash beyond them never matches.
pub const STORED_BOUNDS: Argon2Params = Argon2Params {
    variant: Argon2Variant::Argon2id,
    version: 0x13,
    memory_kib: 65_536,
    iterations: 10,
    parallelism: 8,
    output_len: 64,
};

const SALT_BYTES: usize = 16;

/// An Argon2id hash (same parameters) of a random password nobody knows.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$YWJjZGVmZ2hpamtsbW5vcA$GpCB1ryyf+BjcyBr8mP5d6XYVsNvNbvVc0VJg5hbzUM";

/// Hashes a password with `salt` (fresh random bytes) and [`CURRENT`]; returns a PHC string.
pub fn hash(env: &dyn Env, password: &str, salt: &[u8]) -> Result<String, String> {
    if salt.len() < SALT_BYTES {
        return Err("salt too short".into());
    }
    let raw = env.argon2(password.as_bytes(), salt, &CURRENT)?;
    encode(salt, &raw)
}

/// The PHC string of a [`CURRENT`] hash.
fn encode(salt: &[u8], raw: &[u8]) -> Result<String, String> {
    let salt = SaltString::encode_b64(salt).map_err(|e| format!("salt: {e}"))?;
    let mut params = ParamsString::new();
    for (name, value) in [
        ("m", CURRENT.memory_kib),
        ("t", CURRENT.iterations),
        ("p", CURRENT.parallelism),
    ] {
        params
            .add_decimal(name, value)
            .map_err(|e| format!("params: {e}"))?;
    }
    let phc = PasswordHash {
        algorithm: Ident::new("argon2id").map_err(|e| format!("ident: {e}"))?,
        version: Some(CURRENT.version),
        params,
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(raw).map_err(|e| format!("output: {e}"))?),
    };
    Ok(phc.to_string())
}

/// How many random bytes [`hash`] wants as salt.
pub const fn salt_len() -> usize {
    SALT_BYTES
}

/// True when `password` matches the PHC string. A malformed stored hash, or one beyond
/// [`STORED_BOUNDS`], never matches (and costs nothing).
pub fn verify(env: &dyn Env, password: &str, phc: &str) -> bool {
    let Some(stored) = StoredArgon2::parse(phc) else {
        return false;
    };
    let Ok(computed) = env.argon2(password.as_bytes(), &stored.salt, &stored.params) else {
        return false;
    };
    computed.ct_eq(&stored.hash).into()
}

/// True when `phc` is an Argon2id hash with exactly the [`CURRENT`] parameters (else a
/// correct password is hashed again at login).
pub fn is_current(phc: &str) -> bool {
    StoredArgon2::parse(phc).is_some_and(|stored| stored.params == CURRENT)
}

/// True when `phc` is an Argon2i or Argon2id hash that [`verify`] computes (within
/// [`STORED_BOUNDS`]): what an import accepts.
pub fn is_verifiable(phc: &str) -> bool {
    StoredArgon2::parse(phc).is_some()
}

/// Spends the same time as verifying a real account's password, and always fails.
pub fn verify_dummy(env: &dyn Env, password: &str) -> bool {
    // black_box: the result is unused, and the optimiser must not drop the work.
    std::hint::black_box(verify(env, password, DUMMY_HASH));
    false
}

/// A stored Argon2 hash, decoded.
struct StoredArgon2 {
    params: Argon2Params,
    salt: Vec<u8>,
    hash: Vec<u8>,
}

impl StoredArgon2 {
    /// Decodes a PHC string; `None` unless it is Argon2i or Argon2id within
    /// [`STORED_BOUNDS`], without a secret key id or associated data.
    fn parse(phc: &str) -> Option<Self> {
        let parsed = PasswordHash::new(phc).ok()?;
        let variant = match parsed.algorithm.as_str() {
            "argon2id" => Argon2Variant::Argon2id,
            "argon2i" => Argon2Variant::Argon2i,
            _ => return None,
        };
        let known = ["m", "t", "p"];
        if parsed
            .params
            .iter()
            .any(|(name, _)| !known.contains(&name.as_str()))
        {
            return None;
        }
        let decimal = |name: &str| parsed.params.get_decimal(name);
        let hash = parsed.hash?.as_bytes().to_vec();
        let mut salt_buffer = [0u8; 64];
        let salt = parsed.salt?.decode_b64(&mut salt_buffer).ok()?.to_vec();
        let params = Argon2Params {
            variant,
            // Without `v=`, a PHC string is version 0x10 (the reference implementation's rule).
            version: parsed.version.unwrap_or(0x10),
            memory_kib: decimal("m")?,
            iterations: decimal("t")?,
            parallelism: decimal("p")?,
            output_len: u32::try_from(hash.len()).ok()?,
        };
        within_bounds(&params).then_some(Self { params, salt, hash })
    }
}

fn within_bounds(params: &Argon2Params) -> bool {
    matches!(params.version, 0x10 | 0x13)
        && (1..=STORED_BOUNDS.iterations).contains(&params.iterations)
        && (1..=STORED_BOUNDS.parallelism).contains(&params.parallelism)
        && (8 * params.parallelism..=STORED_BOUNDS.memory_kib).contains(&params.memory_kib)
        && (16..=STORED_BOUNDS.output_len).contains(&params.output_len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TestEnv;

    #[test]
    fn hashes_verify_and_carry_owasp_parameters() {
        let env = TestEnv::at(0);
        let phc = hash(&env, "Tr1cky!Horse#42", &[7u8; 16]).unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(verify(&env, "Tr1cky!Horse#42", &phc));
        assert!(!verify(&env, "tr1cky!Horse#42", &phc));
        assert!(!verify(&env, "anything", "not a phc string"));
        assert!(is_current(&phc));
    }

    #[test]
    fn the_dummy_hash_is_a_valid_hash_of_the_current_parameters() {
        let env = TestEnv::at(0);
        assert!(is_current(DUMMY_HASH));
        assert!(!verify_dummy(&env, "password"));
    }

    /// Hashes made by the C reference implementation (argon2-cffi), with other
    /// parameters and variants than [`CURRENT`], verify with their own parameters.
    #[test]
    fn stored_hashes_verify_with_their_own_parameters() {
        let env = TestEnv::at(0);
        let argon2i = "$argon2i$v=19$m=65536,t=2,p=4$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG";
        let argon2id = "$argon2id$v=19$m=65536,t=2,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc";
        for phc in [argon2i, argon2id] {
            assert!(verify(&env, "password", phc), "{phc}");
            assert!(!verify(&env, "Password", phc), "{phc}");
            assert!(!is_current(phc), "{phc}");
        }
    }

    #[test]
    fn stored_hashes_beyond_the_bounds_never_match() {
        let env = TestEnv::at(0);
        let phc = hash(&env, "pw", &[7u8; 16]).unwrap();
        for (from, to) in [
            ("m=19456", "m=65537"),
            ("t=2", "t=11"),
            ("p=1", "p=9"),
            ("argon2id", "argon2d"),
            ("v=19", "v=18"),
            ("p=1", "p=1,keyid=AAAA"),
        ] {
            let changed = phc.replacen(from, to, 1);
            assert!(!verify(&env, "pw", &changed), "{changed}");
        }
    }
}
