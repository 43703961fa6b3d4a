//! Slowing down before ARM throttles: every ARM answer says how many reads or writes the
//! principal has left (`x-ms-ratelimit-remaining-subscription-reads` / `-writes` [MON R15]; ARM
//! refills them as a token bucket). While the remaining budget of a kind is at or above
//! [`PACE_BELOW`], requests go out unpaced. Under it, requests of that kind are spaced at the
//! refill rate the answers show (budget now − budget then + requests sent in between, over the
//! time between), so the budget stays where it is instead of running out into 429s: a token
//! bucket has no window to stretch the budget over, only a refill rate to match. Until a rate is
//! known the spacing is [`FALLBACK_SPACING`] (10 per second, ARM's documented write refill, the
//! slower of the two).
//!
//! The pressure signal is `Throttled` after a 429 or a budget at or under [`STRAINED_AT`] (the
//! pacing did not hold it), `Healthy` after other answers: the executor halves its concurrency
//! on the first and creeps back up on the second (`flightdeck_core::concurrency`).
//!
//! The pacer is pure (`try_send` and `observe` take `now`); the client sleeps what `try_send`
//! says and asks again. It also keeps the typed pressure signal the executor adapts its concurrency to.

use std::time::Duration;

use flightdeck_core::backend::Pressure;
use tokio::time::Instant;

/// Under this many remaining requests of a kind, requests of that kind are paced.
pub const PACE_BELOW: u64 = 25;
/// At or under this many remaining, the budget is nearly spent: pacing alone did not hold it,
/// so the executor is told to lower its concurrency (as for a 429).
pub const STRAINED_AT: u64 = 5;
/// The spacing under [`PACE_BELOW`] while no refill rate has been measured.
pub const FALLBACK_SPACING: Duration = Duration::from_millis(100);
/// The slowest refill the pacer believes in (a measurement under it is noise): paced requests
/// are never more than 1 s apart.
const MIN_RATE: f64 = 1.0;
/// Observations closer than this are not used to measure the refill rate (too noisy).
const MIN_SAMPLE: Duration = Duration::from_millis(200);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Read,
    Write,
}

impl Kind {
    pub fn of(method: &reqwest::Method) -> Kind {
        if method == reqwest::Method::GET || method == reqwest::Method::HEAD {
            Kind::Read
        } else {
            Kind::Write
        }
    }

    pub fn header(self) -> &'static str {
        match self {
            Kind::Read => "x-ms-ratelimit-remaining-subscription-reads",
            Kind::Write => "x-ms-ratelimit-remaining-subscription-writes",
        }
    }
}

#[derive(Debug, Default)]
struct Budget {
    /// The last remaining count seen.
    remaining: Option<u64>,
    /// The sample the refill rate is measured from: when, what remained, requests sent since.
    sample: Option<(Instant, u64)>,
    sent_since: u64,
    /// Measured refill, tokens per second.
    rate: Option<f64>,
    /// When the last request of this kind went.
    last_sent: Option<Instant>,
}

/// The pacing state of one ARM client.
#[derive(Debug, Default)]
pub struct Pacer {
    reads: Budget,
    writes: Budget,
    /// Since the executor last asked: a 429 or a budget at or under `STRAINED_AT` was seen.
    strained: bool,
    /// Since the executor last asked: any answer was seen.
    answered: bool,
}

impl Pacer {
    fn budget(&mut self, kind: Kind) -> &mut Budget {
        match kind {
            Kind::Read => &mut self.reads,
            Kind::Write => &mut self.writes,
        }
    }

    /// Whether a request of `kind` may go at `now`; if not, how long to wait before asking
    /// again. Nothing is booked ahead: every waiter asks again after its wait and sees the
    /// budget as it is then, so a recovered budget releases them all at once and a rate
    /// measured too low cannot queue requests far into the future.
    pub fn try_send(&mut self, kind: Kind, now: Instant) -> Result<(), Duration> {
        let b = self.budget(kind);
        let paced = b.remaining.is_some_and(|r| r < PACE_BELOW);
        if paced {
            let spacing = match b.rate {
                Some(rate) => Duration::from_secs_f64(1.0 / rate.max(MIN_RATE)),
                None => FALLBACK_SPACING,
            };
            if let Some(last) = b.last_sent {
                let due = last + spacing;
                if due > now {
                    return Err(due - now);
                }
            }
        }
        b.last_sent = Some(now);
        b.sent_since += 1;
        Ok(())
    }

    /// An answer of `kind` at `now`: its remaining budget, if it said, and whether it was a 429.
    pub fn observe(&mut self, kind: Kind, remaining: Option<u64>, throttled: bool, now: Instant) {
        self.answered = true;
        if throttled {
            self.strained = true;
        }
        let Some(remaining) = remaining else {
            return;
        };
        if remaining <= STRAINED_AT {
            self.strained = true;
        }
        let b = self.budget(kind);
        b.remaining = Some(remaining);
        match b.sample {
            Some((at, then)) if now.saturating_duration_since(at) >= MIN_SAMPLE => {
                let dt = now.saturating_duration_since(at).as_secs_f64();
                let refilled = remaining as f64 - then as f64 + b.sent_since as f64;
                let measured = (refilled / dt).max(0.0);
                b.rate = Some(match b.rate {
                    Some(old) => 0.5 * old + 0.5 * measured,
                    None => measured,
                });
                b.sample = Some((now, remaining));
                b.sent_since = 0;
            }
            Some(_) => {}
            None => {
                b.sample = Some((now, remaining));
                b.sent_since = 0;
            }
        }
    }

    /// The pressure seen since the last call, and a fresh start for the next.
    pub fn take_pressure(&mut self) -> Pressure {
        let p = if self.strained {
            Pressure::Throttled
        } else if self.answered {
            Pressure::Healthy
        } else {
            Pressure::Unknown
        };
        self.strained = false;
        self.answered = false;
        p
    }
}

/// The remaining count in an answer's headers, if it has one.
pub fn remaining(headers: &reqwest::header::HeaderMap, kind: Kind) -> Option<u64> {
    headers
        .get(kind.header())?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[tokio::test(start_paused = true)]
    async fn requests_go_unpaced_while_the_budget_is_high() {
        let mut p = Pacer::default();
        let now = Instant::now();
        assert_eq!(p.try_send(Kind::Read, now), Ok(()));
        p.observe(Kind::Read, Some(200), false, now);
        for _ in 0..10 {
            assert_eq!(p.try_send(Kind::Read, now), Ok(()));
        }
        assert_eq!(p.take_pressure(), Pressure::Healthy);
        assert_eq!(p.take_pressure(), Pressure::Unknown);
    }

    #[tokio::test(start_paused = true)]
    async fn under_the_threshold_requests_are_spaced_at_the_measured_refill_rate() {
        let mut p = Pacer::default();
        let t0 = Instant::now();
        p.observe(Kind::Write, Some(20), false, t0);
        // No rate yet: the fallback spacing.
        assert_eq!(p.try_send(Kind::Write, t0), Ok(()));
        assert_eq!(p.try_send(Kind::Write, t0), Err(FALLBACK_SPACING));
        assert_eq!(p.try_send(Kind::Write, t0 + FALLBACK_SPACING), Ok(()));
        // One second later, 2 were sent and 22 remain: 22 - 20 + 2 = 4 came back in a second,
        // so requests go 250 ms apart.
        let t1 = t0 + Duration::from_secs(1);
        p.observe(Kind::Write, Some(22), false, t1);
        assert_eq!(p.try_send(Kind::Write, t1), Ok(()));
        assert_eq!(p.try_send(Kind::Write, t1 + ms(100)), Err(ms(150)));
        assert_eq!(p.try_send(Kind::Write, t1 + ms(250)), Ok(()));
        // Reads are not paced by the writes' budget. Paced but not nearly spent is healthy.
        assert_eq!(p.try_send(Kind::Read, t1), Ok(()));
        assert_eq!(p.try_send(Kind::Read, t1), Ok(()));
        assert_eq!(p.take_pressure(), Pressure::Healthy);
        p.observe(Kind::Write, Some(STRAINED_AT), false, t1);
        assert_eq!(p.take_pressure(), Pressure::Throttled);
    }

    #[tokio::test(start_paused = true)]
    async fn a_recovered_budget_releases_waiters_and_a_tiny_measured_rate_waits_at_most_a_second() {
        let mut p = Pacer::default();
        let t0 = Instant::now();
        p.observe(Kind::Read, Some(10), false, t0);
        assert_eq!(p.try_send(Kind::Read, t0), Ok(()));
        // 10 → 9 with 1 sent over 2 s: a measured refill of 0, believed as 1 per second.
        let t1 = t0 + Duration::from_secs(2);
        p.observe(Kind::Read, Some(9), false, t1);
        assert_eq!(p.try_send(Kind::Read, t1), Ok(()));
        assert_eq!(p.try_send(Kind::Read, t1), Err(Duration::from_secs(1)));
        // The budget is back above the threshold: no spacing at all.
        p.observe(Kind::Read, Some(100), false, t1);
        assert_eq!(p.try_send(Kind::Read, t1), Ok(()));
        assert_eq!(p.try_send(Kind::Read, t1), Ok(()));
    }

    #[tokio::test(start_paused = true)]
    async fn a_429_is_pressure_even_without_budget_headers() {
        let mut p = Pacer::default();
        p.observe(Kind::Read, None, true, Instant::now());
        assert_eq!(p.take_pressure(), Pressure::Throttled);
    }
}
