//! The retention loop of `portcullis serve`, and the rounds of `portcullis db prune`.
//! The rules are the component's (`prune`, docs/reference.md section 13): this module
//! only decides when to ask. At start-up it asks for a round whether or not one is due;
//! then every [`CHECK_INTERVAL`] it asks again, and the component runs a round only when
//! one is due (a minute after the last complete one, on any host) and no other host runs
//! one. Rounds that fill a batch are followed at once by another. After each check the
//! rows per table are counted for the `portcullis_db_rows` gauges.
//!
//! Each round that deletes something is one `info` line; a failing check is one warning
//! until a check succeeds again.

use std::sync::Arc;
use std::time::Duration;

use prometheus::IntGaugeVec;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use crate::api::{self, Pruned, TableRows, answered as answer};
use crate::instances::Instances;

/// How often the loop asks whether a round is due.
const CHECK_INTERVAL: Duration = Duration::from_secs(30);
/// The most rows one rule deletes in one round (a short transaction on every database).
const BATCH_ROWS: u32 = 500;

/// The running retention loop.
pub struct Retention {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Retention {
    /// Starts the loop on a task of its own; it sets `gauges` (label `table`).
    pub fn start(instances: Arc<Instances>, gauges: IntGaugeVec) -> Self {
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(run(instances, gauges, stopped));
        Self { stop, task }
    }

    /// Lets the round under way finish and waits for the loop to end.
    pub async fn stop(self) {
        self.stop.send_replace(true);
        if let Err(error) = self.task.await {
            tracing::error!(%error, "the retention task ended abnormally");
        }
    }
}

async fn run(instances: Arc<Instances>, gauges: IntGaugeVec, mut stopped: watch::Receiver<bool>) {
    let mut ticks = tokio::time::interval(CHECK_INTERVAL);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut force = true;
    let mut failing = false;
    loop {
        tokio::select! {
            biased;
            _ = stopped.changed() => break,
            _ = ticks.tick() => {}
        }
        let outcome = check(&instances, &gauges, force, &stopped).await;
        force = false;
        failing = log_outcome(outcome, failing);
    }
    tracing::debug!("retention stopped");
}

/// Runs the due rounds, then counts the rows.
async fn check(
    instances: &Instances,
    gauges: &IntGaugeVec,
    force: bool,
    stopped: &watch::Receiver<bool>,
) -> anyhow::Result<()> {
    run_rounds(instances, force, 0, || *stopped.borrow()).await?;
    for counted in answer(api::count_rows(instances).await)? {
        let rows = i64::try_from(counted.rows).unwrap_or(i64::MAX);
        gauges.with_label_values(&[&counted.table]).set(rows);
    }
    Ok(())
}

/// Runs rounds while they come full (or until `stop` says so) and returns the rows
/// removed per table in all. `force` runs the first round even when none is due;
/// `later_by` applies the rules as if the clock were that many seconds ahead.
pub async fn run_rounds(
    instances: &Instances,
    force: bool,
    later_by: u32,
    stop: impl Fn() -> bool,
) -> anyhow::Result<Vec<TableRows>> {
    let mut totals: Vec<TableRows> = Vec::new();
    loop {
        let pruned = answer(api::prune(instances, BATCH_ROWS, force, later_by).await)?;
        if !pruned.ran {
            return Ok(totals);
        }
        log_round(&pruned);
        for removed in &pruned.removed {
            match totals.iter_mut().find(|total| total.table == removed.table) {
                Some(total) => total.rows += removed.rows,
                None => totals.push(removed.clone()),
            }
        }
        if !pruned.more || stop() {
            return Ok(totals);
        }
    }
}

/// One line for a round that deleted something (`retention round`, the rows removed
/// per table); a round that found nothing is a `debug` line.
fn log_round(pruned: &Pruned) {
    let removed: Vec<String> = pruned
        .removed
        .iter()
        .map(|table| format!("{}={}", table.table, table.rows))
        .collect();
    let removed = removed.join(" ");
    if pruned.removed.iter().any(|table| table.rows > 0) {
        tracing::info!(%removed, more = pruned.more, "retention round");
    } else {
        tracing::debug!(%removed, "retention round: nothing to delete");
    }
}

/// Logs a failed check once (as a warning) until one succeeds again; returns whether
/// retention is failing.
fn log_outcome(outcome: anyhow::Result<()>, failing: bool) -> bool {
    match outcome {
        Ok(()) => {
            if failing {
                tracing::info!("retention works again");
            }
            false
        }
        Err(error) => {
            let error = format!("{error:#}");
            if failing {
                tracing::debug!(%error, "retention still fails");
            } else {
                tracing::warn!(%error, "retention fails; trying again every 30 seconds");
            }
            true
        }
    }
}
