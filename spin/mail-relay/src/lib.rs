//! The mail relay of the Spin artifact: a thin component around the auth component
//! (which stays unchanged). It hands every HTTP request to the auth component's handler,
//! so the response goes back to the client as the auth component made it; then it claims
//! the mail that is due and delivers each one, recording the outcome with `mail-sent` or
//! `mail-failed`: POSTed as JSON to the webhook when the `mail_webhook_url` setting is
//! set; otherwise, while `mail_log` is true (the default), written to stderr (Spin's
//! log), as the native host's log mailer does. With neither, mail stays in the database
//! outbox. Last it asks for a retention round, which the auth component runs only when
//! one is due (the piggy-backed pruning of Spin, docs/reference.md section 13).
//!
//! This module holds the plain parts (settings, the JSON body, the outcome of an
//! answer); [`wasm`] the WIT side.

use serde::Serialize;
use url::{Position, Url};

#[cfg(target_arch = "wasm32")]
mod wasm;

/// The setting with the webhook's URL; unset or empty: mail stays in the outbox.
pub const URL_SETTING: &str = "mail_webhook_url";
/// The setting with an optional bearer token sent as `Authorization`.
pub const TOKEN_SETTING: &str = "mail_webhook_token";
/// The setting that, without a webhook, writes mail to the log (default true).
pub const LOG_SETTING: &str = "mail_log";
/// The setting with the sender, sent as `from`.
pub const FROM_SETTING: &str = "mail_from";
/// The sender when `mail_from` is unset or empty (the native host's default).
pub const DEFAULT_FROM: &str = "Portcullis <no-reply@localhost>";
/// Mails claimed after one request (a small batch keeps the request's instance short).
pub const BATCH: u32 = 5;
/// How long a claim holds: a mail this relay did not settle is retried after it.
pub const LEASE_SECONDS: u32 = 60;
/// The most rows one retention rule deletes after one request (a short round).
pub const PRUNE_ROWS: u32 = 200;
/// The bound on connecting, on the first byte of the answer, and between bytes.
pub const TIMEOUT_NANOS: u64 = 10_000_000_000;

/// The log line of a retention round: `retention round: sessions=1 refresh_tokens=4 …`,
/// or `None` when it deleted nothing.
pub fn round_line(removed: &[(&str, u64)]) -> Option<String> {
    if removed.iter().all(|(_, rows)| *rows == 0) {
        return None;
    }
    let tables: Vec<String> = removed
        .iter()
        .map(|(table, rows)| format!("{table}={rows}"))
        .collect();
    Some(format!("retention round: {}", tables.join(" ")))
}

/// How due mail is delivered.
#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    /// POSTed to a webhook.
    Webhook(Webhook),
    /// Written to the log (no webhook, `mail_log` true).
    Log,
}

/// How the settings deliver mail: to the webhook when its URL is set, else to the log
/// unless `mail_log` is false; `None`: mail stays in the outbox. An error names the
/// setting, never its value.
pub fn route(
    url: Option<&str>,
    token: Option<&str>,
    log: Option<&str>,
) -> Result<Option<Route>, String> {
    if let Some(webhook) = webhook(url, token)? {
        return Ok(Some(Route::Webhook(webhook)));
    }
    let log = match log
        .map(|value| value.trim().to_ascii_lowercase())
        .as_deref()
    {
        None | Some("" | "true" | "1" | "yes" | "on") => true,
        Some("false" | "0" | "no" | "off") => false,
        Some(_) => return Err(format!("{LOG_SETTING} is not true or false")),
    };
    Ok(log.then_some(Route::Log))
}

/// The sender the `mail_from` setting names, or [`DEFAULT_FROM`].
pub fn sender(from: Option<&str>) -> &str {
    from.map(str::trim)
        .filter(|from| !from.is_empty())
        .unwrap_or(DEFAULT_FROM)
}

/// Where mail goes, split as an outgoing `wasi:http` request wants it.
#[derive(Debug, PartialEq, Eq)]
pub struct Webhook {
    /// `true` for `https`, `false` for `http`.
    pub https: bool,
    /// `host[:port]`.
    pub authority: String,
    /// The path and query.
    pub path_with_query: String,
    /// The value of `Authorization`, when a token is set.
    pub authorization: Option<String>,
}

/// The webhook the settings name: `None` when the URL is unset or empty; an error
/// (naming the setting, never its value) when it is not an `http(s)` URL with a host.
pub fn webhook(url: Option<&str>, token: Option<&str>) -> Result<Option<Webhook>, String> {
    let Some(url) = url.map(str::trim).filter(|url| !url.is_empty()) else {
        return Ok(None);
    };
    let invalid = || format!("{URL_SETTING} is not an http(s) URL with a host");
    let parsed = Url::parse(url).map_err(|_| invalid())?;
    let https = match parsed.scheme() {
        "https" => true,
        "http" => false,
        _ => return Err(invalid()),
    };
    let host = parsed.host_str().ok_or_else(invalid)?;
    let authority = match parsed.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    };
    let authorization = token
        .map(str::trim)
        .filter(|token| !token.is_empty())
        .map(|token| format!("Bearer {token}"));
    Ok(Some(Webhook {
        https,
        authority,
        path_with_query: parsed[Position::BeforePath..Position::AfterQuery].to_owned(),
        authorization,
    }))
}

/// One outgoing mail: the JSON the webhook receives, or the line the log gets.
#[derive(Serialize)]
pub struct Payload<'a> {
    /// The outbox id (the same mail may come again if recording its outcome failed).
    pub id: &'a str,
    /// The sender (`mail_from`).
    pub from: &'a str,
    /// The recipient's address.
    pub to: &'a str,
    /// The subject line.
    pub subject: &'a str,
    /// The plain-text body.
    pub text: &'a str,
    /// The HTML body.
    pub html: &'a str,
}

impl Payload<'_> {
    /// The JSON bytes.
    pub fn to_json(&self) -> Result<Vec<u8>, String> {
        serde_json::to_vec(self).map_err(|error| format!("encoding the mail failed: {error}"))
    }

    /// One log line with the mail's id, sender, recipient, subject and text (its link
    /// included, as in the native host's log); quoted and escaped, so a value cannot
    /// break the line.
    pub fn log_line(&self) -> String {
        format!(
            "mail {} (logged, {URL_SETTING} is not set): from={:?} to={:?} subject={:?} \
             body={:?}",
            self.id, self.from, self.to, self.subject, self.text
        )
    }
}

/// A 2xx answer delivered the mail; any other is a failure with a short reason.
pub fn outcome(status: u16) -> Result<(), String> {
    if (200..300).contains(&status) {
        Ok(())
    } else {
        Err(format!("the webhook answered {status}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_round_that_deleted_something_is_one_line() {
        assert_eq!(round_line(&[("sessions", 0), ("outbox", 0)]), None);
        assert_eq!(
            round_line(&[("sessions", 2), ("outbox", 0)]).as_deref(),
            Some("retention round: sessions=2 outbox=0")
        );
    }

    #[test]
    fn an_unset_or_empty_url_means_no_webhook() {
        assert_eq!(webhook(None, Some("t")), Ok(None));
        assert_eq!(webhook(Some("  "), None), Ok(None));
    }

    #[test]
    fn a_url_is_split_for_wasi_http() {
        let hook = webhook(Some("https://mail.example:8443/hook?x=1"), Some("s3"))
            .unwrap()
            .unwrap();
        assert_eq!(
            hook,
            Webhook {
                https: true,
                authority: "mail.example:8443".to_owned(),
                path_with_query: "/hook?x=1".to_owned(),
                authorization: Some("Bearer s3".to_owned()),
            }
        );
        let plain = webhook(Some("http://[::1]"), Some("")).unwrap().unwrap();
        assert_eq!(plain.authority, "[::1]");
        assert_eq!(plain.path_with_query, "/");
        assert!(!plain.https);
        assert_eq!(plain.authorization, None);
    }

    #[test]
    fn a_bad_url_is_refused_without_echoing_it() {
        for bad in ["ftp://example.com/x", "not a url", "mailto:a@b.c"] {
            let error = webhook(Some(bad), None).unwrap_err();
            assert!(error.contains(URL_SETTING), "{error}");
            assert!(!error.contains(bad), "{error}");
        }
    }

    #[test]
    fn without_a_webhook_mail_is_logged_unless_mail_log_is_false() {
        let hook = webhook(Some("http://hook"), None).unwrap().unwrap();
        assert_eq!(
            route(Some("http://hook"), None, Some("false")),
            Ok(Some(Route::Webhook(hook)))
        );
        for log in [
            None,
            Some(""),
            Some("true"),
            Some(" TRUE "),
            Some("1"),
            Some("on"),
        ] {
            assert_eq!(route(Some(" "), None, log), Ok(Some(Route::Log)), "{log:?}");
        }
        for log in [Some("false"), Some("0"), Some("No"), Some("off")] {
            assert_eq!(route(None, None, log), Ok(None), "{log:?}");
        }
        let error = route(None, None, Some("sometimes")).unwrap_err();
        assert!(error.contains(LOG_SETTING), "{error}");
        assert!(!error.contains("sometimes"), "{error}");
    }

    #[test]
    fn the_sender_defaults_as_on_the_native_host() {
        assert_eq!(sender(None), DEFAULT_FROM);
        assert_eq!(sender(Some(" ")), DEFAULT_FROM);
        assert_eq!(sender(Some(" Auth <a@b.c> ")), "Auth <a@b.c>");
    }

    fn payload() -> Payload<'static> {
        Payload {
            id: "m1",
            from: "Auth <a@b.c>",
            to: "d@e.f",
            subject: "Verify",
            text: "t \"q\"\nline",
            html: "<p>h</p>",
        }
    }

    #[test]
    fn the_payload_has_the_documented_fields() {
        let json: serde_json::Value =
            serde_json::from_slice(&payload().to_json().unwrap()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"id":"m1","from":"Auth <a@b.c>","to":"d@e.f","subject":"Verify",
                "text":"t \"q\"\nline","html":"<p>h</p>"})
        );
    }

    #[test]
    fn the_log_line_is_one_escaped_line_without_the_html() {
        assert_eq!(
            payload().log_line(),
            "mail m1 (logged, mail_webhook_url is not set): from=\"Auth <a@b.c>\" \
             to=\"d@e.f\" subject=\"Verify\" body=\"t \\\"q\\\"\\nline\""
        );
    }

    #[test]
    fn only_2xx_delivers() {
        assert_eq!(outcome(200), Ok(()));
        assert_eq!(outcome(204), Ok(()));
        assert_eq!(outcome(302), Err("the webhook answered 302".to_owned()));
        assert_eq!(outcome(500), Err("the webhook answered 500".to_owned()));
    }
}
