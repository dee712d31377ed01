//! The per-account login throttle (API.md §1 `PORTCULLIS_LOGIN_THROTTLE`) under load and
//! at the edges of the login field: a burst of concurrent failed logins spread over two
//! hosts on one database, and unknown logins as long as the field allows, in multi-byte
//! characters. The sequential cases (counting, doubling, reset, across hosts one at a
//! time) are in `admin`.

use std::sync::Barrier;
use std::time::{Duration, Instant};

use reqwest::blocking::Response;
use serde_json::Value;

use crate::session_client::two_hosts;
use crate::support::{
    TestApp, assert_problem, header, spawn_app, unique_mobile, unique_suffix, unique_user,
    validation_errors,
};

/// `PORTCULLIS_LOGIN_THROTTLE` in these tests (the default, said out loud).
const THRESHOLD: usize = 5;

/// Wrong-password logins in one burst.
const BURST: usize = 30;

/// A wrong password for any account.
const WRONG: &str = "Wr0ng!pass";

/// The longest login the service takes (the email limit of API.md §4).
const LOGIN_MAX: usize = 254;

/// The settings of the burst's hosts: no per-IP limit (every request comes from
/// 127.0.0.1), the throttle at [`THRESHOLD`].
const BURST_SETTINGS: [(&str, &str); 2] = [
    ("PORTCULLIS_RATE_LIMIT", "off"),
    ("PORTCULLIS_LOGIN_THROTTLE", "5"),
];

/// One answer to a failed login: its status, `code`, Retry-After, and when it arrived
/// (from the start of the attempts).
#[derive(Debug)]
struct Answer {
    status: u16,
    code: Value,
    retry_after: Option<String>,
    at: Duration,
}

impl Answer {
    fn of(resp: Response, start: Instant) -> Answer {
        let at = start.elapsed();
        let (status, retry_after) = (resp.status().as_u16(), header(&resp, "retry-after"));
        let body: Value = resp.json().unwrap_or(Value::Null);
        Answer {
            status,
            code: body["code"].clone(),
            retry_after,
            at,
        }
    }
}

/// `BURST` logins as `login` with `password` at once, spread over `hosts` in turn;
/// the answers in the order they arrived.
fn burst(hosts: &[&TestApp], login: &str, password: &str) -> Vec<Answer> {
    let barrier = Barrier::new(BURST);
    let start = Instant::now();
    let mut answers: Vec<Answer> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..BURST)
            .map(|i| {
                let (host, barrier) = (hosts[i % hosts.len()], &barrier);
                scope.spawn(move || {
                    barrier.wait();
                    Answer::of(host.login(login, password), start)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    answers.sort_by_key(|a| a.at);
    answers
}

/// Every answer is 401 `invalid_credentials` or 429 `rate_limited` with a Retry-After of
/// whole seconds, at least one is 401, and the throttle held: at most [`THRESHOLD`]
/// attempts got as far as the password check. Once the threshold is reached the next
/// attempt must wait 1 s, then 2 s …, so a burst that lasts longer may rightly let one
/// more through after each wait: by `t` seconds at most THRESHOLD + ⌊log2(t + 1)⌋ 401s
/// can have been answered (exactly THRESHOLD within the first second).
fn assert_throttle_held(answers: &[Answer]) {
    let mut failures = 0;
    for answer in answers {
        match (answer.status, answer.code.as_str()) {
            (401, Some("invalid_credentials")) => {
                failures += 1;
                let waits_over = (answer.at.as_secs_f64() + 1.0).log2().floor() as usize;
                assert!(
                    failures <= THRESHOLD + waits_over,
                    "{failures} attempts reached the password check within {:?} of the \
                     first attempt; the throttle allows {THRESHOLD}: {answers:#?}",
                    answer.at
                );
            }
            (429, Some("rate_limited")) => {
                let seconds = answer
                    .retry_after
                    .as_deref()
                    .and_then(|r| r.trim().parse::<u64>().ok());
                assert!(
                    seconds.is_some_and(|s| (1..=3600).contains(&s)),
                    "a 429 without a Retry-After of 1..=3600 seconds: {answer:?}"
                );
            }
            _ => panic!("a failed login got {answer:?}; all answers: {answers:#?}"),
        }
    }
    assert!(
        failures >= 1,
        "no attempt reached the password check: {answers:#?}"
    );
}

/// The Retry-After seconds of a 429 `rate_limited` answer.
fn retry_after(resp: Response) -> u64 {
    let retry = header(&resp, "retry-after");
    let body = assert_problem(resp, 429, "rate_limited");
    retry
        .and_then(|r| r.trim().parse().ok())
        .unwrap_or_else(|| panic!("429 without a Retry-After of whole seconds: {body}"))
}

/// Waits out the throttle's Retry-After, when `attempt` is refused with one, and makes
/// the attempt again; returns the answer let through.
fn after_the_wait(attempt: impl Fn() -> Response) -> Response {
    let resp = attempt();
    if resp.status().as_u16() != 429 {
        return resp;
    }
    let seconds = retry_after(resp);
    std::thread::sleep(Duration::from_secs(seconds) + Duration::from_millis(200));
    attempt()
}

/// [`THRESHOLD`] + 1 wrong passwords for `login`, one after another: throttled like any
/// other login (the last is 429, unless the attempts were so slow that the wait was over).
fn assert_throttled_like_others(app: &TestApp, login: &str) {
    let start = Instant::now();
    let answers: Vec<Answer> = (0..=THRESHOLD)
        .map(|_| Answer::of(app.login(login, WRONG), start))
        .collect();
    assert_throttle_held(&answers);
}

/// `len` characters: `pieces` in turn, then a unique ASCII tail.
fn login_of(len: usize, pieces: &[&str]) -> String {
    let tail = unique_suffix();
    let head: String = pieces
        .iter()
        .cycle()
        .take(len - tail.len())
        .copied()
        .collect();
    head + &tail
}

/// Unknown logins of exactly [`LOGIN_MAX`] characters: multi-byte letters, 4-byte
/// emoji, an email, a mobile number padded with spaces.
fn longest_unknown_logins() -> Vec<String> {
    let mobile = unique_mobile();
    let (country, rest) = mobile.split_at(2);
    let padded_mobile = format!("{country}{}{rest}", " ".repeat(LOGIN_MAX - mobile.len()));
    let domain = "@example.com";
    let local = login_of(LOGIN_MAX - domain.len(), &["İ", "\u{1F600}"]);
    vec![
        login_of(LOGIN_MAX, &["İ"]),
        login_of(LOGIN_MAX, &["\u{1F600}"]),
        login_of(LOGIN_MAX, &["İ", "\u{1F600}", "ß", "x"]),
        format!("{local}{domain}"),
        padded_mobile,
    ]
}

api_tests! {
    /// 30 concurrent wrong-password logins for one account over two hosts: at most 5
    /// reach the password check, the rest are 429 with Retry-After; after that wait the
    /// right password gets in.
    fn a_burst_of_failed_logins_over_two_hosts_is_held_by_the_throttle() {
        let (_database, a, b) = two_hosts(&BURST_SETTINGS);
        let (user, _, _) = a.registered_user();
        let answers = burst(&[&a, &b], &user.username, WRONG);
        assert_throttle_held(&answers);
        let resp = after_the_wait(|| b.login(&user.username, &user.password));
        let status = resp.status().as_u16();
        assert_eq!(status, 200, "the right password after the wait: {:?}", resp.text());
    }

    /// The same burst for a login that names no account: held the same way; after the
    /// wait the next attempt is let through to the (failing) password check.
    fn a_burst_of_failed_logins_for_an_unknown_account_is_held_by_the_throttle() {
        let (_database, a, b) = two_hosts(&BURST_SETTINGS);
        let unknown = unique_user();
        let answers = burst(&[&a, &b], &unknown.username, &unknown.password);
        assert_throttle_held(&answers);
        let resp = after_the_wait(|| a.login(&unknown.username, &unknown.password));
        assert_problem(resp, 401, "invalid_credentials");
    }

    /// Unknown logins of 254 characters ("İ", which lower-cases to two characters,
    /// 4-byte emoji, an email, a padded mobile number) are 401 `invalid_credentials`
    /// (never a 5xx) and throttled like any other login.
    fn the_longest_unknown_logins_are_401_and_throttled() {
        let app = spawn_app();
        for login in longest_unknown_logins() {
            assert_eq!(login.chars().count(), LOGIN_MAX, "{login:?}");
            assert_throttled_like_others(&app, &login);
        }
        app.assert_healthy();
    }

    /// One character more than the longest login (255, whatever their bytes) is 422
    /// `validation_failed` on the `login` field.
    fn a_login_of_255_characters_is_a_validation_error() {
        let app = spawn_app();
        let mut too_long: Vec<String> = longest_unknown_logins()
            .into_iter()
            .map(|login| format!("{login}x"))
            .collect();
        too_long.push("x".repeat(LOGIN_MAX + 1));
        for login in too_long {
            let errors = validation_errors(app.login(&login, WRONG));
            assert!(
                errors.iter().any(|(field, _)| field == "login"),
                "a {}-character login: {errors:?}",
                login.chars().count()
            );
        }
    }
}
