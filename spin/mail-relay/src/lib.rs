//! The mail relay of the Spin artifact: a thin component around the auth component
//! (which stays unchanged). It hands every HTTP request to the auth component's handler,
//! so the response goes back to the client as the auth component made it; then, when the
//! `mail_webhook_url` setting is set, it claims the mail that is due and POSTs each one
//! as JSON to the webhook, recording the outcome with `mail-sent` or `mail-failed`.
//! Unset, mail stays in the database outbox.
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
/// Mails claimed after one request (a small batch keeps the request's instance short).
pub const BATCH: u32 = 5;
/// How long a claim holds: a mail this relay did not settle is retried after it.
pub const LEASE_SECONDS: u32 = 60;
/// The bound on connecting, on the first byte of the answer, and between bytes.
pub const TIMEOUT_NANOS: u64 = 10_000_000_000;

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

/// The JSON the webhook receives for one mail.
#[derive(Serialize)]
pub struct Payload<'a> {
    /// The outbox id (the same mail may come again if recording its outcome failed).
    pub id: &'a str,
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
    fn the_payload_has_the_documented_fields() {
        let payload = Payload {
            id: "m1",
            to: "a@b.c",
            subject: "Verify",
            text: "t \"q\"",
            html: "<p>h</p>",
        };
        let json: serde_json::Value = serde_json::from_slice(&payload.to_json().unwrap()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"id":"m1","to":"a@b.c","subject":"Verify","text":"t \"q\"","html":"<p>h</p>"})
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
