//! The product's clock: the one place flightdeck reads time.
//!
//! Durations and deadlines use tokio time (`now()`, and `tokio::time::{sleep, timeout,
//! interval}` at the call sites), so a test under `#[tokio::test(start_paused = true)]` drives
//! every timeout, backoff, poll interval and lease with `tokio::time::advance`. Wall-clock
//! timestamps (report times, `/status` times, a lease's `renewTime`, a token's remaining
//! lifetime, a signature's age) come from `now_utc()`: the system time when the clock was first
//! read plus the tokio time elapsed since, so they move with paused time too. In production
//! tokio time is the monotonic clock, so `now_utc()` is the system time at start plus the
//! process's monotonic age.

use std::sync::OnceLock;

use chrono::{DateTime, Utc};
use tokio::time::Instant;

/// The instant the clock was first read, and the wall time it stands for.
fn origin() -> &'static (Instant, DateTime<Utc>) {
    static ORIGIN: OnceLock<(Instant, DateTime<Utc>)> = OnceLock::new();
    ORIGIN.get_or_init(|| (Instant::now(), Utc::now()))
}

/// The monotonic now (tokio time).
pub fn now() -> Instant {
    Instant::now()
}

/// The wall-clock time `at` stands for.
pub fn utc_at(at: Instant) -> DateTime<Utc> {
    let (base, base_utc) = *origin();
    let delta = match at.checked_duration_since(base) {
        Some(after) => chrono::Duration::from_std(after).unwrap_or(chrono::Duration::MAX),
        None => -chrono::Duration::from_std(base - at).unwrap_or(chrono::Duration::MAX),
    };
    base_utc
        .checked_add_signed(delta)
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// The wall-clock now.
pub fn now_utc() -> DateTime<Utc> {
    utc_at(now())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn wall_time_follows_paused_tokio_time() {
        let before = now_utc();
        tokio::time::advance(Duration::from_secs(90)).await;
        assert_eq!(now_utc() - before, chrono::Duration::seconds(90));
    }

    #[test]
    fn two_instants_map_to_wall_times_the_same_distance_apart() {
        let at = now();
        let later = at + Duration::from_secs(3);
        assert_eq!(utc_at(later) - utc_at(at), chrono::Duration::seconds(3));
    }
}
