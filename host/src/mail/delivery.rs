//! The delivery loop of `portcullis serve`: at start and then every second it claims the
//! due mails (`claim-mail`, in batches of [`BATCH`] leased for [`LEASE`]), delivers each
//! and reports `mail-sent` or `mail-failed`. Errors are logged and the next tick tries
//! again; the loop ends only when [`Delivery::stop`] is called.
//!
//! Several hosts on one database never send a mail twice: a claimed mail is nobody
//! else's until its lease runs out, and a mail is only sent while enough of the lease
//! is left to send it ([`SEND_TIMEOUT`]) and to report the outcome ([`REPORT_MARGIN`]).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

use super::Mailer;
use crate::api::{self, Mail, answered as answer};
use crate::instances::{self, Instances};

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

/// The running delivery loop.
pub struct Delivery {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Delivery {
    /// Starts delivering through `mailer` on a task of its own.
    pub fn start(instances: Arc<Instances>, mailer: Mailer) -> Self {
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(run(instances, mailer, stopped));
        Self { stop, task }
    }

    /// Lets the mail being delivered finish, claims no more, and waits for the loop to
    /// end. Mails claimed but not yet sent wait for their lease to run out.
    pub async fn stop(self) {
        self.stop.send_replace(true);
        if let Err(error) = self.task.await {
            tracing::error!(%error, "the mail delivery task ended abnormally");
        }
    }
}

async fn run(instances: Arc<Instances>, mailer: Mailer, mut stopped: watch::Receiver<bool>) {
    let mut ticks = tokio::time::interval(POLL_INTERVAL);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tokio::select! {
            biased;
            _ = stopped.changed() => break,
            _ = ticks.tick() => {}
        }
        let outcome = deliver_due(&instances, &mailer, &stopped).await;
        failing = log_outcome(outcome, failing);
    }
    tracing::debug!("mail delivery stopped");
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

/// Logs a failed round once (as a warning) until a round succeeds again; returns
/// whether delivery is failing.
fn log_outcome(outcome: anyhow::Result<()>, failing: bool) -> bool {
    match outcome {
        Ok(()) => {
            if failing {
                tracing::info!("mail delivery works again");
            }
            false
        }
        Err(error) => {
            let error = format!("{error:#}");
            if failing {
                tracing::debug!(%error, "mail delivery still fails");
            } else {
                tracing::warn!(%error, "mail delivery fails; trying again every second");
            }
            true
        }
    }
}
