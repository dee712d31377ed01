//! Recovery codes: ten single-use codes handed out once, for when the authenticator is
//! lost. Each holds 80 random bits, shown as four groups of four base32 letters and
//! digits (`abcd-efgh-ijkm-nopq`); only its SHA-256 is stored, and a code is found by
//! that hash.

use data_encoding::BASE32_NOPAD;

use crate::ports::Env;
use crate::tokens::hash_opaque;

/// Codes per set.
pub const COUNT: usize = 10;
/// Random bytes per code (80 bits; 16 base32 characters).
const CODE_BYTES: usize = 10;
/// Characters per group in the shown form.
const GROUP: usize = 4;
/// Given codes longer than this are not looked up.
const MAX_GIVEN_LENGTH: usize = 64;

/// A fresh set of codes, as shown to the user.
pub fn generate(env: &dyn Env) -> Vec<String> {
    (0..COUNT)
        .map(|_| {
            let encoded = BASE32_NOPAD
                .encode(&env.random_bytes(CODE_BYTES))
                .to_ascii_lowercase();
            encoded
                .as_bytes()
                .chunks(GROUP)
                .map(|group| String::from_utf8_lossy(group).into_owned())
                .collect::<Vec<_>>()
                .join("-")
        })
        .collect()
}

/// The stored form of a code, from any spelling of it (case, dashes and spaces do not
/// matter); `None` when it cannot be a code.
pub fn stored_hash(given: &str) -> Option<String> {
    if given.len() > MAX_GIVEN_LENGTH {
        return None;
    }
    let normalised: String = given
        .chars()
        .filter(|c| *c != '-' && !c.is_whitespace())
        .map(|c| c.to_ascii_lowercase())
        .collect();
    let plausible = normalised.len() == CODE_BYTES * 8 / 5
        && normalised
            .bytes()
            .all(|byte| byte.is_ascii_lowercase() || (b'2'..=b'7').contains(&byte));
    plausible.then(|| hash_opaque(&normalised))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Harness;

    #[test]
    fn codes_are_distinct_grouped_and_found_however_written() {
        let harness = Harness::new(&[]);
        let codes = generate(&harness.env);
        assert_eq!(codes.len(), COUNT);
        let mut unique = codes.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), COUNT);
        let code = &codes[0];
        assert_eq!(code.len(), 19, "{code}");
        assert_eq!(code.matches('-').count(), 3, "{code}");
        let hash = stored_hash(code).unwrap();
        assert_eq!(stored_hash(&code.to_uppercase()), Some(hash.clone()));
        assert_eq!(stored_hash(&code.replace('-', " ")), Some(hash));
        assert_eq!(stored_hash("123456"), None);
        assert_eq!(stored_hash(&"a".repeat(500)), None);
    }
}
