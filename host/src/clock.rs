//! The wall clock the component reads through `wasi:clocks/wall-clock`. The host
//! supplies it explicitly so that a test clock can take its place.

use std::time::{Duration, SystemTime};

use wasmtime_wasi::HostWallClock;

/// The host's real time.
#[derive(Clone, Copy, Default)]
pub struct SystemClock;

impl HostWallClock for SystemClock {
    fn resolution(&self) -> Duration {
        Duration::from_nanos(1)
    }

    fn now(&self) -> Duration {
        // A clock set before 1970 reads as the epoch rather than failing a request.
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
    }
}
