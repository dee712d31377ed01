//! Two-factor authentication's codes and `mfa_token`s, through the component's own
//! functions, in a world where `fuzz_mfa` has TOTP on and a login of it waits for its
//! second step. The first byte picks what runs; the rest is text whose `$PLACEHOLDERS`
//! stand for the world's (`$MFA_TOKEN`, `$TOTP_CODE`, `$RECOVERY_CODE`, …), split at its
//! first line break where two fields are needed:
//!
//! - `mfa::verify` (the second step of a login) with an `mfa_token` and a code, twice;
//! - `mfa::regenerate_recovery_codes` with a code, twice;
//! - `mfa::disable` with a password and a code;
//! - `totp::matching_step` with any secret, code, clock and last spent step.
//!
//! Asserted: a step succeeds exactly when its `mfa_token` is the live one byte for byte,
//! its password the account's, and its code the one TOTP code accepted now (the next
//! step's: the current one was spent) or an unspent recovery code in any case, with any
//! dashes and spaces; the same token and code never win twice; a matched TOTP step is
//! within one step of the clock, later than the last spent one, and its code is the one
//! given; a code within that window that was not matched is not the one given.

#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_component::error::Error;
use portcullis_component::mfa::{self, totp};
use portcullis_component::sessions;
use portcullis_fuzz::{Fixtures, MFA_USER, client, in_world};

/// Recovery codes longer than this (after trimming) are not looked up.
const MAX_RECOVERY_CODE_LENGTH: usize = 64;

fuzz_target!(|data: &[u8]| {
    let Some((&kind, rest)) = data.split_first() else {
        return;
    };
    if kind % 4 == 3 {
        return matching_step(rest);
    }
    in_world(&[], |world, fixtures| {
        let text = String::from_utf8_lossy(&fixtures.substitute(rest)).into_owned();
        let (first, second) = text.split_once('\n').unwrap_or((&text, ""));
        let app = world.app();
        let client = client();
        match kind % 4 {
            0 => {
                let wins =
                    fixtures.mfa_token.as_deref() == Some(first) && accepted(fixtures, second);
                let outcome = mfa::verify(&app, first, second, &client);
                assert_eq!(outcome.is_ok(), wins, "{outcome:?}");
                if fixtures.mfa_token.as_deref() != Some(first) {
                    assert!(
                        matches!(outcome, Err(Error::InvalidMfaToken)),
                        "{outcome:?}"
                    );
                }
                let again = mfa::verify(&app, first, second, &client);
                assert!(again.is_err(), "the same token and code won twice");
            }
            1 => {
                let Some(access) = &fixtures.mfa_access else {
                    return;
                };
                let who = sessions::authenticate(&app, access).expect("the MFA user's session");
                let outcome = mfa::regenerate_recovery_codes(&app, &who, &text, &client);
                assert_eq!(outcome.is_ok(), accepted(fixtures, &text), "{outcome:?}");
                if let Ok(codes) = &outcome {
                    assert!(
                        codes
                            .iter()
                            .all(|code| !fixtures.recovery_codes.contains(code))
                    );
                }
                let again = mfa::regenerate_recovery_codes(&app, &who, &text, &client);
                assert!(again.is_err(), "the same code won twice");
            }
            _ => {
                let Some(access) = &fixtures.mfa_access else {
                    return;
                };
                let who = sessions::authenticate(&app, access).expect("the MFA user's session");
                let outcome = mfa::disable(&app, &who, first, second, &client);
                let wins = first == MFA_USER.2 && accepted(fixtures, second);
                assert_eq!(outcome.is_ok(), wins, "{outcome:?}");
            }
        }
    })
    .expect("the default settings are valid");
});

/// Whether the service must accept `code` now for the world's two-factor user: the one
/// TOTP code of the next step, or one of the recovery codes however it is written (case,
/// dashes and whitespace aside, within the length looked up).
fn accepted(fixtures: &Fixtures, code: &str) -> bool {
    let code = code.trim();
    if code.len() == totp::DIGITS && code.bytes().all(|byte| byte.is_ascii_digit()) {
        return fixtures.totp_code.as_deref() == Some(code);
    }
    if code.len() > MAX_RECOVERY_CODE_LENGTH {
        return false;
    }
    let bare = |text: &str| -> String {
        text.chars()
            .filter(|c| *c != '-' && !c.is_whitespace())
            .map(|c| c.to_ascii_lowercase())
            .collect()
    };
    let given = bare(code);
    fixtures
        .recovery_codes
        .iter()
        .any(|recovery| bare(recovery) == given)
}

/// `totp::matching_step` on any input: 8 bytes of clock, 8 of last spent step, a length
/// byte (0 to 8) and that many bytes of code, the rest the secret.
fn matching_step(data: &[u8]) {
    let Some((clock, rest)) = data.split_first_chunk::<8>() else {
        return;
    };
    let Some((last, rest)) = rest.split_first_chunk::<8>() else {
        return;
    };
    let Some((&length, rest)) = rest.split_first() else {
        return;
    };
    let length = usize::from(length % 9).min(rest.len());
    let (given, secret) = rest.split_at(length);
    let given = String::from_utf8_lossy(given);
    let now = i64::from_le_bytes(*clock);
    let last_spent = i64::from_le_bytes(*last);
    let current = totp::step_at(now);
    let shaped = totp::is_code_shaped(&given);
    assert_eq!(
        shaped,
        given.len() == totp::DIGITS && given.bytes().all(|byte| byte.is_ascii_digit())
    );
    let found = totp::matching_step(secret, &given, now, last_spent);
    for step in current - 1..=current + 1 {
        let code = totp::code(secret, step, totp::DIGITS);
        assert!(totp::is_code_shaped(&code), "{code:?}");
        let matches = shaped && code == given && step > last_spent;
        if found == Some(step) {
            assert!(
                matches,
                "step {step} matched {given:?} but its code is {code}"
            );
        } else if matches {
            // Only an earlier step of the window with the same code may have won.
            assert!(
                found.is_some_and(|won| won < step),
                "{found:?} for step {step}"
            );
        }
    }
    if let Some(step) = found {
        assert!((current - 1..=current + 1).contains(&step));
    }
}
