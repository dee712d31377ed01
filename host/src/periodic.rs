//! The background loops of `portcullis serve` (mail delivery, retention): each runs one
//! round at start and then every interval, on a task of its own, until it is stopped. A
//! failing round is one warning, then `debug` lines while rounds keep failing, and one
//! `info` line when a round succeeds again.

use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

/// What a loop does each time.
pub trait Round: Send + 'static {
    /// One round. `stopped` turns true when the host stops: a long round ends early.
    fn run(
        &mut self,
        stopped: &watch::Receiver<bool>,
    ) -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// A running loop.
pub struct Periodic {
    name: &'static str,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Periodic {
    /// Starts `round` now and then every `interval`; `name` ("mail delivery") names the
    /// loop in its log lines.
    pub fn start(name: &'static str, interval: Duration, round: impl Round) -> Self {
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(run(name, interval, round, stopped));
        Self { name, stop, task }
    }

    /// Lets the round under way finish and waits for the loop to end.
    pub async fn stop(self) {
        self.stop.send_replace(true);
        if let Err(error) = self.task.await {
            tracing::error!(%error, "the {} task ended abnormally", self.name);
        }
    }
}

async fn run(
    name: &'static str,
    interval: Duration,
    mut round: impl Round,
    mut stopped: watch::Receiver<bool>,
) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tokio::select! {
            biased;
            _ = stopped.changed() => break,
            _ = ticks.tick() => {}
        }
        let outcome = round.run(&stopped).await;
        failing = log_outcome(name, interval, outcome, failing);
    }
    tracing::debug!("{name} stopped");
}

/// Logs a failed round once (as a warning) until a round succeeds again; returns
/// whether the loop is failing.
fn log_outcome(name: &str, interval: Duration, outcome: anyhow::Result<()>, failing: bool) -> bool {
    match outcome {
        Ok(()) => {
            if failing {
                tracing::info!("{name} works again");
            }
            false
        }
        Err(error) => {
            let error = format!("{error:#}");
            if failing {
                tracing::debug!(%error, "{name} still fails");
            } else {
                let every = match interval.as_secs() {
                    1 => "second".to_owned(),
                    seconds => format!("{seconds} seconds"),
                };
                tracing::warn!(%error, "{name} fails; trying again every {every}");
            }
            true
        }
    }
}
