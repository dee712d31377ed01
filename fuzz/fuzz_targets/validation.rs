//! The field rules (`validation`): username, email, mobile number and password under
//! both policies and any minimum length. Asserted: whatever a rule accepts keeps the
//! rule's promise (lengths, alphabets, no control characters, normalised forms stable
//! when normalised again), and every error names the field that was checked.

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use portcullis_component::validation::{self, Identifiers};

#[derive(Arbitrary, Debug)]
struct Input {
    username: String,
    email: String,
    mobile: String,
    password: String,
    nist: bool,
    min_length: u8,
}

fuzz_target!(|input: Input| {
    let mut errors = Vec::new();
    validation::check_username(&input.username, &mut errors);
    assert!(errors.iter().all(|error| error.field == "username"));
    if errors.is_empty() {
        let length = input.username.chars().count();
        assert!((validation::USERNAME_MIN..=validation::USERNAME_MAX).contains(&length));
        assert!(
            input
                .username
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        );
        assert!(!input.username.bytes().all(|b| b.is_ascii_digit()));
    }
    let key = validation::username_key(&input.username);
    assert_eq!(validation::username_key(&key), key);

    let mut errors = Vec::new();
    let email = validation::check_email(&input.email, &mut errors);
    assert!(errors.iter().all(|error| error.field == "email"));
    if errors.is_empty() {
        assert!(input.email.is_ascii() && !validation::has_control(&input.email));
        assert!(input.email.len() <= validation::EMAIL_MAX);
        assert_eq!(email, input.email.to_ascii_lowercase());
        assert_eq!(email.matches('@').count(), 1);
        let mut again = Vec::new();
        assert_eq!(validation::check_email(&email, &mut again), email);
        assert!(again.is_empty(), "the lower-cased address is valid too");
    }

    let mut errors = Vec::new();
    let mobile = validation::check_mobile(&input.mobile, &mut errors);
    assert_eq!(mobile.is_some(), errors.is_empty());
    if let Some(mobile) = mobile {
        assert!(errors.is_empty());
        let digits = mobile.key.len();
        assert!((validation::MOBILE_MIN_DIGITS..=validation::MOBILE_MAX_DIGITS).contains(&digits));
        assert!(mobile.key.bytes().all(|b| b.is_ascii_digit()));
        assert!(!validation::has_control(&mobile.number));
        assert_eq!(
            validation::normalise_mobile(&mobile.number),
            Some(mobile.clone())
        );
        assert_eq!(
            validation::mobile_digits(&mobile.number),
            Some(mobile.key.clone())
        );
    } else {
        assert!(errors.iter().all(|error| error.field == "mobile_number"));
    }

    let min_length = (8 + usize::from(input.min_length) % 121).to_string();
    let policy = if input.nist { "nist" } else { "complex" };
    let Some(settings) = portcullis_fuzz::settings(&[
        ("password_policy".into(), policy.into()),
        ("password_min_length".into(), min_length),
    ]) else {
        panic!("valid password settings refused");
    };
    let identifiers = Identifiers {
        username: &input.username,
        email: &input.email,
    };
    let mut errors = Vec::new();
    validation::check_password(
        &input.password,
        &identifiers,
        &settings,
        "password",
        &mut errors,
    );
    assert!(errors.iter().all(|error| error.field == "password"));
    if errors.is_empty() {
        let length = input.password.chars().count();
        assert!(length >= settings.password_min_length);
        assert!(length <= portcullis_component::settings::PASSWORD_MAX_LENGTH);
        assert!(!validation::has_control(&input.password));
        assert!(!validation::is_common_password(&input.password));
        if !input.nist {
            let password = &input.password;
            assert!(password.is_ascii());
            assert!(password.bytes().any(|b| b.is_ascii_uppercase()));
            assert!(password.bytes().any(|b| b.is_ascii_lowercase()));
            assert!(password.bytes().any(|b| b.is_ascii_digit()));
            assert!(
                password
                    .bytes()
                    .any(|b| b.is_ascii_punctuation() || b == b' ')
            );
        }
    }
});
