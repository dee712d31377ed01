//! The delivery loop of `portcullis serve`: at start and then every second it claims the
//! due mails (`claim-mail`, in batches of [`BATCH`] leased for [`LEASE`]), delivers each
//! and reports `mail-sent` or `mail-failed`. Errors are logged and the next tick tries
//! again; the loop ends only when it is stopped ([`Periodic::stop`]).
//!
//! Several hosts on one database never send a mail twice: a claimed mail is nobody
//! else's until its lease runs out, and a mail is only sent while enough of the lease
//! is left to send it ([`SEND_TIMEOUT`]) and to report the outcome ([`REPORT_MARGIN`]).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::Mailer;
use crate::api::{self, Mail, answered as answer};
use crate::instances::{self, Instances};
use crate::periodic::{Periodic, Round};

/// How often due mails are looked for.
const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// The most mails claimed at once.
const BATCH: u32 = 10;
/// How long claimed mails stay this host's.
const LEASE: Duration = Duration::from_secs(120);
/// The longest one delivery may take, connection and TLS included.
const SEND_TIMEOUT: Duration = Duration::from_secs(60);
/// The attempts after which the component gives a mail up (its `MAX_ATTEMPTS`).
const MAX_ATTEMPTS: u32 = portcullis_component::mail::MAX_ATTEMPTS as u32;
/// The longest reporting an outcome may take (the time limit of a component call).
const REPORT_MARGIN: Duration = instances::TIME_LIMIT;

const _: () = assert!(LEASE.as_secs() > SEND_TIMEOUT.as_secs() + REPORT_MARGIN.as_secs());

/// The delivery loop's round: claim and deliver the due mails.
pub struct Delivery {
    instances: Arc<Instances>,
    mailer: Mailer,
}

impl Delivery {
    /// Starts delivering through `mailer`. Stopping lets the mail being delivered
    /// finish and claims no more; mails claimed but not yet sent wait for their lease to
    /// run out.
    pub fn start(instances: Arc<Instances>, mailer: Mailer) -> Periodic {
        Periodic::start("mail delivery", POLL_INTERVAL, Self { instances, mailer })
    }
}

impl Round for Delivery {
    async fn run(&mut self, stopped: &watch::Receiver<bool>) -> anyhow::Result<()> {
        deliver_due(&self.instances, &self.mailer, stopped).await
    }
}

/// Claims and delivers the due mails, batch after batch while batches come full.
async fn deliver_due(
    instances: &Instances,
    mailer: &Mailer,
    stopped: &watch::Receiver<bool>,
) -> anyhow::Result<()> {
    loop {
        let claimed_at = Instant::now();
        let mails = answer(api::claim_mail(instances, BATCH, LEASE.as_secs() as u32).await)?;
        let last_start = claimed_at + LEASE - SEND_TIMEOUT - REPORT_MARGIN;
        for mail in &mails {
            if *stopped.borrow() || Instant::now() > last_start {
                return Ok(());
            }
            deliver(instances, mailer, mail).await?;
        }
        if mails.len() < BATCH as usize {
            return Ok(());
        }
    }
}

/// Delivers one mail and reports the outcome to the component.
async fn deliver(instances: &Instances, mailer: &Mailer, mail: &Mail) -> anyhow::Result<()> {
    let outcome = tokio::time::timeout(SEND_TIMEOUT, mailer.deliver(mail))
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {} s", SEND_TIMEOUT.as_secs())));
    match outcome {
        Ok(()) => answer(api::mail_sent(instances, mail).await),
        Err(reason) => {
            let attempt = mail.attempts + 1;
            if attempt >= MAX_ATTEMPTS {
                tracing::warn!(
                    mail_id = %mail.id,
                    attempt,
                    %reason,
                    "mail delivery failed for the last time; the mail is given up"
                );
            } else {
                tracing::warn!(
                    mail_id = %mail.id,
                    attempt,
                    %reason,
                    "mail delivery failed; it will be retried later"
                );
            }
            answer(api::mail_failed(instances, mail, &reason).await)
        }
    }
}
