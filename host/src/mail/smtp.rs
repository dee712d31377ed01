//! Delivery through an SMTP server with lettre (tokio, rustls with the webpki roots):
//! each mail is a `multipart/alternative` message (text, then HTML) sent on a connection
//! of its own. A failure becomes a short reason for the outbox, which never holds the
//! credentials.

use std::time::Duration;

use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport as _, Message, Tokio1Executor};

use super::settings::{Login, Security, SmtpSettings};
use crate::api::Mail;

/// The longest a failure reason kept in the outbox gets.
const MAX_REASON_CHARS: usize = 300;

/// An SMTP server, ready to send.
pub struct SmtpMailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    /// The user name and password, scrubbed from failure reasons.
    secrets: Vec<String>,
    /// `host:port`, for the start-up line.
    pub server: String,
    pub security: Security,
}

impl SmtpMailer {
    /// A transport for `smtp`; connecting may take up to `timeout` (the async transport
    /// bounds nothing else: the caller bounds the whole send). Fails only when the TLS
    /// parameters cannot be made for the host.
    pub fn new(smtp: SmtpSettings, from: Mailbox, timeout: Duration) -> Result<Self, String> {
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&smtp.host)
            .port(smtp.port)
            .timeout(Some(timeout))
            .tls(tls(&smtp)?);
        let mut secrets = Vec::new();
        if let Some(Login { user, password }) = smtp.login {
            secrets = [&user, &password]
                .into_iter()
                .filter(|text| !text.is_empty())
                .cloned()
                .collect();
            builder = builder.credentials(Credentials::new(user, password));
        }
        Ok(Self {
            transport: builder.build(),
            from,
            secrets,
            server: format!("{}:{}", smtp.host, smtp.port),
            security: smtp.security,
        })
    }

    /// Sends `mail`; the error is a short reason without credentials.
    pub async fn send(&self, mail: &Mail) -> Result<(), String> {
        let message = message(&self.from, mail)?;
        match self.transport.send(message).await {
            Ok(_) => Ok(()),
            Err(error) => Err(self.reason(&error)),
        }
    }

    /// The error as one short line with any credential replaced.
    fn reason(&self, error: &lettre::transport::smtp::Error) -> String {
        let mut reason = error.to_string().replace(['\r', '\n'], " ");
        for secret in &self.secrets {
            reason = reason.replace(secret.as_str(), "***");
        }
        reason.chars().take(MAX_REASON_CHARS).collect()
    }
}

fn tls(smtp: &SmtpSettings) -> Result<Tls, String> {
    let parameters = || {
        TlsParameters::new(smtp.host.clone())
            .map_err(|error| format!("cannot set up TLS for the host: {error}"))
    };
    Ok(match smtp.security {
        Security::ImplicitTls => Tls::Wrapper(parameters()?),
        Security::StartTlsRequired => Tls::Required(parameters()?),
        Security::StartTlsOpportunistic => Tls::Opportunistic(parameters()?),
        Security::Plain => Tls::None,
    })
}

/// The message for `mail`: From, To, Subject, Date, a Message-ID made of the outbox id
/// and the sender's domain (the same for every attempt, so that a receiver can tell a
/// retry from a second mail), and the text and HTML bodies as alternatives.
fn message(from: &Mailbox, mail: &Mail) -> Result<Message, String> {
    let to: Mailbox = mail
        .to
        .parse()
        .map_err(|_| "the recipient's address is not valid".to_string())?;
    let message_id = format!("<{}@{}>", mail.id, from.email.domain());
    Message::builder()
        .from(from.clone())
        .to(to)
        .subject(mail.subject.as_str())
        .date_now()
        .message_id(Some(message_id))
        .multipart(MultiPart::alternative_plain_html(
            mail.text_body.clone(),
            mail.html_body.clone(),
        ))
        .map_err(|error| format!("cannot build the message: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_has_a_date_and_a_message_id_of_its_outbox_id() {
        let mail = Mail {
            id: "m-42".into(),
            claim: "c".into(),
            to: "jane@example.com".into(),
            subject: "Verify".into(),
            text_body: "text".into(),
            html_body: "<p>html</p>".into(),
            attempts: 0,
        };
        let from: Mailbox = "Auth <no-reply@auth.example.com>".parse().unwrap();
        let formatted = String::from_utf8(message(&from, &mail).unwrap().formatted()).unwrap();
        assert!(
            formatted.contains("Message-ID: <m-42@auth.example.com>\r\n"),
            "{formatted}"
        );
        assert!(formatted.contains("Date: "), "{formatted}");
    }
}
