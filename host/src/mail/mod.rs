//! Mail delivery (API.md §6): the component queues verification and reset mails in its
//! outbox; this host claims the due ones through the typed API, delivers them, and
//! reports each outcome (the component schedules retries). See [`delivery`] for the
//! loop, [`settings`] for `PORTCULLIS_SMTP_URL` / `PORTCULLIS_MAIL_FROM`, [`smtp`] for
//! lettre.
//!
//! Without `PORTCULLIS_SMTP_URL` the log mailer writes each mail, link included, to the
//! log at info level: the one place where a token may be logged, as API.md §1 says.

mod delivery;
mod settings;
mod smtp;

use std::time::Duration;

pub use delivery::Delivery;
pub use settings::{KEYS, MailSettings};
use smtp::SmtpMailer;

use crate::api::Mail;
use crate::settings::Rejected;

/// How long connecting to the SMTP server may take. lettre's async transport applies its
/// timeout to the connection only: a server that accepts and then says nothing is cut
/// by [`delivery`]'s bound on the whole send (60 s).
const SMTP_CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

/// Where mails go.
pub enum Mailer {
    /// Written to the log (no SMTP server configured).
    Log,
    /// Sent to an SMTP server.
    Smtp(Box<SmtpMailer>),
}

impl Mailer {
    /// The mailer the settings ask for.
    pub fn new(settings: MailSettings) -> Result<Self, Rejected> {
        match settings.smtp {
            None => Ok(Mailer::Log),
            Some(smtp) => SmtpMailer::new(smtp, settings.from, SMTP_CONNECT_TIMEOUT)
                .map(|smtp| Mailer::Smtp(Box::new(smtp)))
                .map_err(|problem| Rejected::setting("smtp_url", problem)),
        }
    }

    /// Says at start-up where mails go.
    pub fn announce(&self) {
        match self {
            Mailer::Log => {
                tracing::info!("PORTCULLIS_SMTP_URL is not set: mails are written to this log")
            }
            Mailer::Smtp(smtp) => tracing::info!(
                server = %smtp.server,
                security = smtp.security.describe(),
                "mails are delivered over SMTP"
            ),
        }
    }

    /// Delivers `mail`; the error is a short reason to record in the outbox.
    pub(crate) async fn deliver(&self, mail: &Mail) -> Result<(), String> {
        match self {
            Mailer::Log => {
                tracing::info!(
                    to = %mail.to,
                    subject = %mail.subject,
                    body = ?mail.text_body,
                    "mail (not sent: PORTCULLIS_SMTP_URL is not set)"
                );
                Ok(())
            }
            Mailer::Smtp(smtp) => {
                smtp.send(mail).await?;
                tracing::info!(mail_id = %mail.id, to = %mail.to, "mail sent");
                Ok(())
            }
        }
    }
}
