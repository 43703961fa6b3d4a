//! The sandbox's clock: the one place the emulator reads time. Provisioning delays, operation
//! progress, token lifetimes, fault durations, data-plane latency and every timestamp it writes
//! (`createdAt`, `lastModifiedAt`, `systemData`, operation `startTime`/`endTime`, the journal)
//! come from here.
//!
//! It runs on tokio time, so an in-process sandbox under `#[tokio::test(start_paused = true)]`
//! finishes a two-minute provisioning as soon as the test advances (or the runtime auto-advances)
//! the clock, in microseconds of real time. Wall-clock timestamps are the wall time when the
//! clock was made plus the tokio time elapsed since, so they move with paused time too.

use chrono::{DateTime, Utc};
use tokio::time::Instant;

/// A monotonic instant paired with the wall-clock time it stands for.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    origin: Instant,
    origin_utc: DateTime<Utc>,
}

impl Clock {
    /// A clock whose wall time starts at the system's current time.
    pub fn new() -> Self {
        Self {
            origin: Instant::now(),
            origin_utc: Utc::now(),
        }
    }

    /// The monotonic now (tokio time: paused in tests that pause it).
    pub fn now(&self) -> Instant {
        Instant::now()
    }

    /// The wall-clock time `at` stands for.
    pub fn utc(&self, at: Instant) -> DateTime<Utc> {
        let since = at.saturating_duration_since(self.origin);
        let since = chrono::Duration::from_std(since).unwrap_or(chrono::Duration::MAX);
        self.origin_utc
            .checked_add_signed(since)
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    }

    /// The wall-clock now.
    pub fn now_utc(&self) -> DateTime<Utc> {
        self.utc(self.now())
    }

    /// Sleeps on this clock (a simulated latency or delay).
    pub async fn sleep(&self, d: std::time::Duration) {
        tokio::time::sleep(d).await;
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn wall_time_moves_with_paused_tokio_time() {
        let clock = Clock::new();
        let before = clock.now_utc();
        tokio::time::advance(Duration::from_secs(120)).await;
        let after = clock.now_utc();
        assert_eq!(after - before, chrono::Duration::seconds(120));
    }

    #[tokio::test(start_paused = true)]
    async fn an_instant_maps_to_the_wall_time_it_stands_for() {
        let clock = Clock::new();
        let later = clock.now() + Duration::from_millis(1500);
        assert_eq!(
            clock.utc(later) - clock.now_utc(),
            chrono::Duration::milliseconds(1500)
        );
    }
}
