//! RFC 6238 time-based one-time passwords as authenticator apps make them: HMAC-SHA-1
//! (RFC 4226 dynamic truncation), 6 digits, 30-second steps, counted from the Unix epoch.

use hmac::{Hmac, Mac};
use sha1::Sha1;
use subtle::ConstantTimeEq;

/// Seconds per step.
pub const STEP_SECONDS: i64 = 30;
/// Digits per code.
pub const DIGITS: usize = 6;
/// Bytes of a secret (160 bits, RFC 4226 §4's recommendation).
pub const SECRET_BYTES: usize = 20;
/// Steps either side of the current one whose codes are accepted (clock drift).
const DRIFT_STEPS: i64 = 1;

/// The step `unix_seconds` falls in.
pub fn step_at(unix_seconds: i64) -> i64 {
    unix_seconds.div_euclid(STEP_SECONDS)
}

/// The code of `step` under `secret`, `digits` long (zero-padded).
pub fn code(secret: &[u8], step: i64, digits: usize) -> String {
    // HMAC takes keys of any length, so the error branch cannot be taken.
    let Ok(mut mac) = <Hmac<Sha1> as Mac>::new_from_slice(secret) else {
        return String::new();
    };
    mac.update(&step.to_be_bytes());
    let digest: [u8; 20] = mac.finalize().into_bytes().into();
    // The low nibble of the last byte picks 4 bytes: offset ≤ 15, so offset + 3 ≤ 18.
    let offset = usize::from(digest[19] & 0x0f);
    let binary = u32::from_be_bytes([
        digest[offset] & 0x7f,
        digest[offset + 1],
        digest[offset + 2],
        digest[offset + 3],
    ]);
    let modulus = 10_u64.pow(u32::try_from(digits).unwrap_or(6));
    format!("{:0digits$}", u64::from(binary) % modulus)
}

/// True when `given` looks like a TOTP code (exactly [`DIGITS`] ASCII digits).
pub fn is_code_shaped(given: &str) -> bool {
    given.len() == DIGITS && given.bytes().all(|byte| byte.is_ascii_digit())
}

/// The step whose code `given` is, among the current step and one either side, if it is
/// later than `last_spent` (a spent step is never accepted again). Every candidate is
/// computed and compared in constant time.
pub fn matching_step(secret: &[u8], given: &str, now: i64, last_spent: i64) -> Option<i64> {
    if !is_code_shaped(given) {
        return None;
    }
    let current = step_at(now);
    let mut found = None;
    for step in current - DRIFT_STEPS..=current + DRIFT_STEPS {
        let expected = code(secret, step, DIGITS);
        let equal: bool = expected.as_bytes().ct_eq(given.as_bytes()).into();
        if equal && step > last_spent && found.is_none() {
            found = Some(step);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 Appendix B, the SHA-1 rows (8 digits, secret "12345678901234567890").
    #[test]
    fn rfc_6238_test_vectors() {
        let secret = b"12345678901234567890";
        for (time, expected) in [
            (59, "94287082"),
            (1_111_111_109, "07081804"),
            (1_111_111_111, "14050471"),
            (1_234_567_890, "89005924"),
            (2_000_000_000, "69279037"),
            (20_000_000_000, "65353130"),
        ] {
            assert_eq!(code(secret, step_at(time), 8), expected, "T = {time}");
        }
        // RFC 4226 Appendix D (6 digits) for the same secret.
        assert_eq!(code(secret, 0, 6), "755224");
        assert_eq!(code(secret, 9, 6), "520489");
    }

    #[test]
    fn one_step_either_side_is_accepted_and_spent_steps_are_not() {
        let secret = b"12345678901234567890";
        let now = 1_111_111_111;
        let current = step_at(now);
        for step in [current - 1, current, current + 1] {
            let given = code(secret, step, DIGITS);
            assert_eq!(matching_step(secret, &given, now, 0), Some(step));
            assert_eq!(matching_step(secret, &given, now, step), None, "spent");
        }
        for step in [current - 2, current + 2] {
            let given = code(secret, step, DIGITS);
            assert_eq!(matching_step(secret, &given, now, 0), None, "too far");
        }
        assert_eq!(matching_step(secret, "12345", now, 0), None);
        assert_eq!(matching_step(secret, "１２３４５６", now, 0), None);
    }
}
