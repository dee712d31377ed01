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

use crate::api::{self, Pruned, TableRows, answered as answer};
use crate::instances::Instances;
use crate::periodic::{Periodic, Round};

/// How often the loop asks whether a round is due.
const CHECK_INTERVAL: Duration = Duration::from_secs(30);
/// The most rows one rule deletes in one round (a short transaction on every database).
const BATCH_ROWS: u32 = 500;

/// The retention loop's round: the due rounds (forced at start-up), then the row counts.
pub struct RetentionCheck {
    instances: Arc<Instances>,
    gauges: IntGaugeVec,
    force: bool,
}

impl RetentionCheck {
    /// Starts the loop; it sets `gauges` (label `table`).
    pub fn start(instances: Arc<Instances>, gauges: IntGaugeVec) -> Periodic {
        let check = Self {
            instances,
            gauges,
            force: true,
        };
        Periodic::start("retention", CHECK_INTERVAL, check)
    }
}

impl Round for RetentionCheck {
    async fn run(&mut self, stopped: &watch::Receiver<bool>) -> anyhow::Result<()> {
        let force = std::mem::replace(&mut self.force, false);
        check(&self.instances, &self.gauges, force, stopped).await
    }
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
