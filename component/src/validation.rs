//! The field rules of API.md §4: username, email, mobile number and password. Every
//! violated rule is reported, not only the first; inputs are normalised here (email
//! lower-cased, mobile formatting removed) so the rest of the code sees one spelling.

use crate::error::FieldError;
use crate::settings::{PASSWORD_MAX_LENGTH, PasswordPolicy, Settings};

/// 19,640 common passwords, lower-cased, one a line (see `data/README.md`).
const COMMON_PASSWORDS: &str = include_str!("../data/common-passwords.txt");

pub const USERNAME_MIN: usize = 3;
pub const USERNAME_MAX: usize = 50;
pub const EMAIL_MAX: usize = 254;
pub const MOBILE_MIN_DIGITS: usize = 10;
pub const MOBILE_MAX_DIGITS: usize = 15;
/// Identifiers shorter than this are not looked for inside passwords: a one-letter email
/// local part would otherwise forbid every password containing that letter.
const MIN_IDENTIFIER_IN_PASSWORD: usize = 3;

/// A mobile number with its formatting removed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mobile {
    /// As shown to the user: `+` (if given) and the digits.
    pub number: String,
    /// Digits only: the uniqueness and lookup key.
    pub key: String,
}

/// True when `text` holds a control character (NUL included). No identifier can, and
/// some databases refuse NUL in text parameters, so such input never reaches SQL.
pub fn has_control(text: &str) -> bool {
    text.chars().any(char::is_control)
}

/// The lookup key of a username: uniqueness is case-insensitive.
pub fn username_key(username: &str) -> String {
    username.to_ascii_lowercase()
}

/// Checks a username: 3–50 ASCII letters, digits and `_`.
pub fn check_username(username: &str, errors: &mut Vec<FieldError>) {
    let field = "username";
    if username.is_empty() {
        errors.push(FieldError::new(
            field,
            "required",
            "A username is required.",
        ));
        return;
    }
    let length = username.chars().count();
    if length < USERNAME_MIN {
        errors.push(FieldError::new(
            field,
            "too_short",
            format!("At least {USERNAME_MIN} characters."),
        ));
    }
    if length > USERNAME_MAX {
        errors.push(FieldError::new(
            field,
            "too_long",
            format!("At most {USERNAME_MAX} characters."),
        ));
    }
    if !username
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        errors.push(FieldError::new(
            field,
            "invalid_format",
            "Only ASCII letters, digits and underscores.",
        ));
    } else if username.chars().all(|c| c.is_ascii_digit()) {
        // An all-digit username could be taken for someone's mobile number at login.
        errors.push(FieldError::new(
            field,
            "invalid_format",
            "At least one character must be a letter or an underscore.",
        ));
    }
}

/// Checks an email address and returns it lower-cased.
pub fn check_email(email: &str, errors: &mut Vec<FieldError>) -> String {
    let field = "email";
    if email.is_empty() {
        errors.push(FieldError::new(
            field,
            "required",
            "An email address is required.",
        ));
        return String::new();
    }
    if email.chars().count() > EMAIL_MAX {
        errors.push(FieldError::new(
            field,
            "too_long",
            format!("At most {EMAIL_MAX} characters."),
        ));
    } else if !is_valid_email(email) {
        errors.push(FieldError::new(
            field,
            "invalid_format",
            "Not a valid email address.",
        ));
    }
    email.to_lowercase()
}

/// One `@`, a local part of RFC 5322 atoms, a dotted domain of LDH labels.
fn is_valid_email(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    is_valid_local_part(local) && is_valid_domain(domain)
}

fn is_valid_local_part(local: &str) -> bool {
    const ATEXT_SYMBOLS: &str = "!#$%&'*+-/=?^_`{|}~";
    (1..=64).contains(&local.len())
        && local.split('.').all(|atom| {
            !atom.is_empty()
                && atom
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || ATEXT_SYMBOLS.contains(c))
        })
}

fn is_valid_domain(domain: &str) -> bool {
    let labels: Vec<&str> = domain.split('.').collect();
    let top_level_is_alphabetic = labels
        .last()
        .is_some_and(|tld| tld.len() >= 2 && tld.chars().all(|c| c.is_ascii_alphabetic()));
    domain.len() <= 253
        && labels.len() >= 2
        && top_level_is_alphabetic
        && labels.iter().all(|label| {
            (1..=63).contains(&label.len())
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

/// Checks a mobile number: `+` then 10–15 digits, or 10–15 digits; spaces, dashes and
/// parentheses are ignored. Returns it normalised when valid.
pub fn check_mobile(mobile: &str, errors: &mut Vec<FieldError>) -> Option<Mobile> {
    let normalised = normalise_mobile(mobile);
    if normalised.is_none() {
        errors.push(FieldError::new(
            "mobile_number",
            "invalid_format",
            format!(
                "A mobile number is {MOBILE_MIN_DIGITS}–{MOBILE_MAX_DIGITS} digits, optionally after a +."
            ),
        ));
    }
    normalised
}

/// Removes spaces, dashes and parentheses; `None` unless what is left is a valid number.
pub fn normalise_mobile(mobile: &str) -> Option<Mobile> {
    let compact = compact_mobile(mobile);
    let key = mobile_digits(&compact).filter(|key| key.len() >= MOBILE_MIN_DIGITS)?;
    Some(Mobile {
        key,
        number: compact,
    })
}

/// A mobile number without its formatting (spaces, `-`, parentheses).
fn compact_mobile(text: &str) -> String {
    text.chars()
        .filter(|c| !matches!(c, ' ' | '-' | '(' | ')'))
        .collect()
}

/// The digits of a whole or partial mobile number (formatting and a leading `+` dropped),
/// when `text` is nothing else: what an admin search matches against mobile numbers.
pub fn mobile_digits(text: &str) -> Option<String> {
    let compact = compact_mobile(text);
    let digits = compact.strip_prefix('+').unwrap_or(&compact);
    let valid = (1..=MOBILE_MAX_DIGITS).contains(&digits.len())
        && digits.chars().all(|c| c.is_ascii_digit());
    valid.then(|| digits.to_string())
}

/// The identifiers a password must not contain.
pub struct Identifiers<'a> {
    pub username: &'a str,
    pub email: &'a str,
}

/// Checks a password against the configured policy, the common-password list and the
/// account's identifiers. Every broken rule is reported.
pub fn check_password(
    password: &str,
    identifiers: &Identifiers<'_>,
    settings: &Settings,
    field: &'static str,
    errors: &mut Vec<FieldError>,
) {
    if password.is_empty() {
        errors.push(FieldError::new(
            field,
            "required",
            "A password is required.",
        ));
        return;
    }
    let length = password.chars().count();
    let min = settings.password_min_length;
    if length < min {
        errors.push(FieldError::new(
            field,
            "too_short",
            format!("At least {min} characters."),
        ));
    }
    if length > PASSWORD_MAX_LENGTH {
        errors.push(FieldError::new(
            field,
            "too_long",
            format!("At most {PASSWORD_MAX_LENGTH} characters."),
        ));
    }
    if password.chars().any(char::is_control) {
        errors.push(FieldError::new(
            field,
            "invalid_format",
            "Control characters are not allowed.",
        ));
    }
    if settings.password_policy == PasswordPolicy::Complex {
        check_complexity(password, field, errors);
    }
    if is_common_password(password) {
        errors.push(FieldError::new(
            field,
            "common_password",
            "This password is too common.",
        ));
    }
    if contains_identifier(password, identifiers) {
        errors.push(FieldError::new(
            field,
            "contains_identifier",
            "The password must not contain the username or the email address.",
        ));
    }
}

/// A character class a `complex` password must contain: test, field code, description.
type CharacterRule = (fn(&char) -> bool, &'static str, &'static str);

fn check_complexity(password: &str, field: &'static str, errors: &mut Vec<FieldError>) {
    let rules: [CharacterRule; 4] = [
        (
            char::is_ascii_uppercase,
            "missing_uppercase",
            "An uppercase letter.",
        ),
        (
            char::is_ascii_lowercase,
            "missing_lowercase",
            "A lowercase letter.",
        ),
        (char::is_ascii_digit, "missing_digit", "A digit."),
        (is_special, "missing_special", "A special character."),
    ];
    for (present, code, what) in rules {
        if !password.chars().any(|c| present(&c)) {
            errors.push(FieldError::new(
                field,
                code,
                format!("Needs {}", what.to_lowercase()),
            ));
        }
    }
    if !password.is_ascii() {
        errors.push(FieldError::new(
            field,
            "non_ascii",
            "Only ASCII characters are allowed by the password policy.",
        ));
    }
}

/// ASCII punctuation and the space count as special characters.
fn is_special(c: &char) -> bool {
    c.is_ascii_punctuation() || *c == ' '
}

/// True when the password, lower-cased, or lower-cased with its leading and trailing
/// digits and symbols removed, is in the common-password list.
pub fn is_common_password(password: &str) -> bool {
    let lower = password.to_lowercase();
    let core = lower.trim_matches(|c: char| !c.is_alphabetic());
    let in_list = |candidate: &str| COMMON_PASSWORDS.lines().any(|line| line == candidate);
    in_list(&lower) || (!core.is_empty() && core != lower && in_list(core))
}

fn contains_identifier(password: &str, identifiers: &Identifiers<'_>) -> bool {
    let password = password.to_lowercase();
    let local_part = identifiers.email.split('@').next().unwrap_or_default();
    [identifiers.username, local_part]
        .into_iter()
        .map(str::to_lowercase)
        .any(|id| id.chars().count() >= MIN_IDENTIFIER_IN_PASSWORD && password.contains(&id))
}

/// How many entries the common-password list has (shown by `/api/v1/validation-rules`).
pub fn common_password_count() -> usize {
    COMMON_PASSWORDS.lines().count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(policy: PasswordPolicy) -> Settings {
        let mut settings =
            Settings::from_lookup(|key| (key == "jwt_secret").then(|| "s".repeat(32))).unwrap();
        settings.password_policy = policy;
        settings
    }

    fn password_codes(password: &str, policy: PasswordPolicy) -> Vec<&'static str> {
        let mut errors = Vec::new();
        let ids = Identifiers {
            username: "john_doe",
            email: "johnny@example.com",
        };
        check_password(password, &ids, &settings(policy), "password", &mut errors);
        errors.iter().map(|e| e.code).collect()
    }

    #[test]
    fn a_strong_password_passes() {
        assert!(password_codes("Tr1cky!Horse#42", PasswordPolicy::Complex).is_empty());
    }

    #[test]
    fn every_broken_rule_is_reported() {
        let codes = password_codes("xq", PasswordPolicy::Complex);
        assert_eq!(
            codes,
            [
                "too_short",
                "missing_uppercase",
                "missing_digit",
                "missing_special"
            ]
        );
    }

    #[test]
    fn common_passwords_are_found_case_insensitively_and_stripped() {
        assert!(is_common_password("Password123!"));
        assert!(is_common_password("QWERTY"));
        assert!(is_common_password("!!dragon99"));
        assert!(!is_common_password("Tr1cky!Horse#42"));
        assert!(common_password_count() >= 10_000);
    }

    #[test]
    fn identifiers_are_refused_inside_passwords() {
        let codes = password_codes("My-John_Doe-9x!", PasswordPolicy::Complex);
        assert!(codes.contains(&"contains_identifier"), "{codes:?}");
        let codes = password_codes("xJOHNNY!7aaaa", PasswordPolicy::Complex);
        assert!(codes.contains(&"contains_identifier"), "{codes:?}");
    }

    #[test]
    fn nist_policy_allows_unicode_and_checks_length_only() {
        assert!(password_codes("ключ-от-замка", PasswordPolicy::Nist).is_empty());
        assert_eq!(password_codes("kurz", PasswordPolicy::Nist), ["too_short"]);
        assert!(password_codes("ключ-от-Замка1", PasswordPolicy::Complex).contains(&"non_ascii"));
    }

    #[test]
    fn usernames() {
        let codes = |name: &str| {
            let mut errors = Vec::new();
            check_username(name, &mut errors);
            errors.iter().map(|e| e.code).collect::<Vec<_>>()
        };
        assert!(codes("john_doe").is_empty());
        assert_eq!(codes(""), ["required"]);
        assert_eq!(codes("a!"), ["too_short", "invalid_format"]);
        assert_eq!(codes(&"a".repeat(51)), ["too_long"]);
        assert_eq!(codes("jöhn"), ["invalid_format"]);
    }

    #[test]
    fn emails() {
        let check = |email: &str| {
            let mut errors = Vec::new();
            let normalised = check_email(email, &mut errors);
            (
                normalised,
                errors.iter().map(|e| e.code).collect::<Vec<_>>(),
            )
        };
        assert_eq!(
            check("John@Example.COM"),
            ("john@example.com".into(), vec![])
        );
        for bad in [
            "john",
            "a@b",
            "a@@b.com",
            "a b@c.com",
            "a@b..com",
            "@b.com",
            "a@-b.com",
        ] {
            assert_eq!(check(bad).1, ["invalid_format"], "{bad}");
        }
        assert_eq!(
            check(&format!("{}@example.com", "a".repeat(250))).1,
            ["too_long"]
        );
    }

    #[test]
    fn partial_mobile_numbers_give_their_digits() {
        assert_eq!(mobile_digits("555-01").as_deref(), Some("55501"));
        assert_eq!(mobile_digits("+44 (20)").as_deref(), Some("4420"));
        assert_eq!(mobile_digits("john"), None);
        assert_eq!(mobile_digits("+"), None);
        assert_eq!(mobile_digits(&"1".repeat(16)), None);
    }

    #[test]
    fn mobile_numbers_ignore_formatting() {
        let mobile = normalise_mobile("+1 (415) 555-0100").unwrap();
        assert_eq!(mobile.number, "+14155550100");
        assert_eq!(mobile.key, "14155550100");
        assert!(normalise_mobile("555-0100").is_none());
        assert!(normalise_mobile("+1415555010012345").is_none());
        assert!(normalise_mobile("+1415abc0100").is_none());
    }
}
