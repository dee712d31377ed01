//! The mail settings: `PORTCULLIS_SMTP_URL` (unset: the log mailer) and
//! `PORTCULLIS_MAIL_FROM`, checked at start-up. An SMTP URL may hold a password, so it
//! is never shown, not even in an error.
//!
//! `smtp://[user:pass@]host[:port]` connects in plain text and upgrades with STARTTLS
//! when the server offers it (`?tls=required`: refuse to send without STARTTLS;
//! `?tls=none`: never upgrade, for a relay on the same machine); `smtps://` is TLS from
//! the first byte. The user name and password are percent-decoded. Default ports: 587
//! (submission) and 465 (submissions).

use std::str::FromStr as _;

use lettre::message::Mailbox;
use percent_encoding::percent_decode_str;
use url::{Host, Url};

use crate::settings::{Rejected, Settings};

const SMTP_URL: &str = "smtp_url";
const MAIL_FROM: &str = "mail_from";
/// Every key the mail settings read.
pub const KEYS: &[&str] = &[SMTP_URL, MAIL_FROM];
const DEFAULT_FROM: &str = "Portcullis <no-reply@localhost>";
const SUBMISSION_PORT: u16 = 587;
const SUBMISSIONS_PORT: u16 = 465;
const URL_SHAPE: &str = "expected smtp://user:pass@host:port or smtps://user:pass@host:port";

/// How mail is delivered and who it is from.
pub struct MailSettings {
    /// The `From` of every mail.
    pub from: Mailbox,
    /// The SMTP server; `None`: mails are written to the log.
    pub smtp: Option<SmtpSettings>,
}

/// An SMTP server to deliver through.
pub struct SmtpSettings {
    /// A host name or an IP address (without brackets).
    pub host: String,
    pub port: u16,
    pub security: Security,
    /// The user name and password, when the URL has them.
    pub login: Option<Login>,
}

/// A user name and password for SMTP AUTH (no `Debug`: never printed).
#[derive(PartialEq, Eq)]
pub struct Login {
    pub user: String,
    pub password: String,
}

/// How the connection to the SMTP server is protected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Security {
    /// `smtps://`: TLS from the first byte.
    ImplicitTls,
    /// `smtp://…?tls=required`: STARTTLS, or no mail at all.
    StartTlsRequired,
    /// `smtp://` (or `?tls=opportunistic`): STARTTLS when the server offers it.
    StartTlsOpportunistic,
    /// `smtp://…?tls=none`: plain text only.
    Plain,
}

impl Security {
    /// How the start-up log line describes it.
    pub fn describe(self) -> &'static str {
        match self {
            Security::ImplicitTls => "TLS",
            Security::StartTlsRequired => "STARTTLS required",
            Security::StartTlsOpportunistic => "STARTTLS when offered",
            Security::Plain => "no TLS",
        }
    }
}

impl MailSettings {
    /// Reads and checks `smtp_url` and `mail_from`.
    pub fn parse(settings: &Settings) -> Result<Self, Rejected> {
        let from_text = settings.get(MAIL_FROM).unwrap_or(DEFAULT_FROM);
        let from = Mailbox::from_str(from_text).map_err(|error| {
            Rejected::setting(
                MAIL_FROM,
                format!(
                    "invalid sender {from_text:?} ({error}); expected \
                     \"Name <address>\" or an address"
                ),
            )
        })?;
        let smtp = settings
            .get(SMTP_URL)
            .map(|url| parse_smtp_url(url).map_err(|problem| Rejected::setting(SMTP_URL, problem)))
            .transpose()?;
        Ok(Self { from, smtp })
    }
}

/// Reads an SMTP URL. The problem it reports never quotes the URL.
fn parse_smtp_url(text: &str) -> Result<SmtpSettings, String> {
    let url = Url::parse(text).map_err(|error| format!("{URL_SHAPE} ({error})"))?;
    let (default_port, implicit_tls) = match url.scheme() {
        "smtp" => (SUBMISSION_PORT, false),
        "smtps" => (SUBMISSIONS_PORT, true),
        _ => return Err(format!("{URL_SHAPE} (unknown scheme)")),
    };
    if !matches!(url.path(), "" | "/") || url.fragment().is_some() {
        return Err(format!("{URL_SHAPE} (no path or fragment)"));
    }
    let security = security(&url, implicit_tls)?;
    Ok(SmtpSettings {
        host: host(&url)?,
        port: url.port().unwrap_or(default_port),
        security,
        login: login(&url)?,
    })
}

fn host(url: &Url) -> Result<String, String> {
    match url.host() {
        Some(Host::Domain(domain)) if !domain.is_empty() => Ok(domain.to_owned()),
        Some(Host::Ipv4(address)) => Ok(address.to_string()),
        Some(Host::Ipv6(address)) => Ok(address.to_string()),
        _ => Err(format!("{URL_SHAPE} (no host)")),
    }
}

/// The `tls` query option; no other option is known.
fn security(url: &Url, implicit_tls: bool) -> Result<Security, String> {
    let mut security = if implicit_tls {
        Security::ImplicitTls
    } else {
        Security::StartTlsOpportunistic
    };
    for (key, value) in url.query_pairs() {
        security = match (key.as_ref(), value.as_ref(), implicit_tls) {
            ("tls", "opportunistic", false) => Security::StartTlsOpportunistic,
            ("tls", "required", false) => Security::StartTlsRequired,
            ("tls", "none", false) => Security::Plain,
            ("tls", _, true) => return Err("smtps:// takes no tls option".into()),
            ("tls", _, false) => {
                return Err("the tls option is opportunistic, required or none".into());
            }
            _ => return Err("the only option is tls (opportunistic, required or none)".into()),
        };
    }
    Ok(security)
}

/// The percent-decoded user name and password, if the URL has a user name.
fn login(url: &Url) -> Result<Option<Login>, String> {
    if url.username().is_empty() {
        return match url.password() {
            None => Ok(None),
            Some(_) => Err("a password needs a user name".into()),
        };
    }
    let password = url
        .password()
        .ok_or("a user name needs a password (smtp://user:pass@host)")?;
    Ok(Some(Login {
        user: decode(url.username(), "the user name")?,
        password: decode(password, "the password")?,
    }))
}

fn decode(encoded: &str, what: &str) -> Result<String, String> {
    percent_decode_str(encoded)
        .decode_utf8()
        .map(|decoded| decoded.into_owned())
        .map_err(|_| format!("{what} is not valid UTF-8 once percent-decoded"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(url: &str) -> SmtpSettings {
        parse_smtp_url(url).unwrap_or_else(|problem| panic!("{url}: {problem}"))
    }

    #[test]
    fn smtp_is_opportunistic_starttls_on_the_submission_port() {
        let smtp = parsed("smtp://mail.example.com");
        assert_eq!(smtp.host, "mail.example.com");
        assert_eq!(smtp.port, 587);
        assert_eq!(smtp.security, Security::StartTlsOpportunistic);
        assert!(smtp.login.is_none());
    }

    #[test]
    fn smtps_is_implicit_tls_and_credentials_are_percent_decoded() {
        let smtp = parsed("smtps://me%40example.com:p%3Ass%2Fw@[::1]:2465");
        assert_eq!(smtp.host, "::1");
        assert_eq!(smtp.port, 2465);
        assert_eq!(smtp.security, Security::ImplicitTls);
        let expected = Login {
            user: "me@example.com".into(),
            password: "p:ss/w".into(),
        };
        assert!(smtp.login == Some(expected), "the login differs");
    }

    #[test]
    fn the_tls_option_chooses_starttls() {
        assert_eq!(
            parsed("smtp://127.0.0.1:25?tls=none").security,
            Security::Plain
        );
        assert_eq!(
            parsed("smtp://h?tls=required").security,
            Security::StartTlsRequired
        );
        assert_eq!(
            parsed("smtp://h?tls=opportunistic").security,
            Security::StartTlsOpportunistic
        );
    }

    #[test]
    fn bad_urls_are_refused_without_quoting_the_password() {
        for url in [
            "http://u:secret@h",
            "smtp://u:secret@",
            "smtp://u:secret@h/path",
            "smtp://u:secret@h?tls=maybe",
            "smtp://u:secret@h?verify=no",
            "smtps://u:secret@h?tls=none",
            "smtp://u@h",
            "smtp://:secret@h",
            "smtp://u:secret@h:99999",
            "not a url secret",
        ] {
            let problem = parse_smtp_url(url).err().unwrap_or_else(|| panic!("{url}"));
            assert!(!problem.contains("secret"), "{url}: {problem}");
        }
    }

    #[test]
    fn the_sender_defaults_and_is_checked() {
        let mut settings = Settings::default();
        let mail = MailSettings::parse(&settings).unwrap();
        assert_eq!(mail.from.to_string(), DEFAULT_FROM);
        assert!(mail.smtp.is_none());
        settings.set(MAIL_FROM, "not an address".into());
        let rejected = MailSettings::parse(&settings).err().unwrap();
        assert!(rejected.lines[0].starts_with("PORTCULLIS_MAIL_FROM: "));
    }
}
