//! Slowing down before ARM throttles: every ARM answer says how many reads or writes the
//! principal has left (`x-ms-ratelimit-remaining-subscription-reads` / `-writes` [MON R15]; ARM
//! refills them as a token bucket). The pacer keeps, per kind, an estimate of what is left: the
//! last remaining count minus the requests sent and not answered yet (they will spend tokens the
//! count did not show). While the estimate is at or above the reserve, requests go out unpaced;
//! under it, they are spaced at the refill rate the answers show (budget now − budget then +
//! requests answered in between, over the time between), so the budget stays where it is instead of
//! running out into 429s: a token bucket has no window to stretch the budget over, only a refill
//! rate to match. Until a rate is known the spacing is [`FALLBACK_SPACING`] (10 per second,
//! ARM's documented write refill, the slower of the two).
//!
//! The reserve is a tenth of the bucket ([`RESERVE_SHARE`], at least 1): the bucket's size is
//! the largest remaining count seen plus the request that answer was for. For ARM's buckets
//! (250 reads, 200 writes) that is 25 and 20; a 20-token bucket keeps 2 back and is not paced
//! from its first request. Before the first answer of a kind, one request goes and the others
//! wait for its answer ([`PROBE_WAIT`] at a time): 50 endpoints starting at once do not spend a
//! bucket they know nothing about. A kind whose answers carry no count is never paced.
//!
//! The pressure signal is `Throttled` after a 429 and `Healthy` after other answers: the
//! executor halves its concurrency on the first and creeps back up on the second
//! (`flightdeck_core::concurrency`). A budget held low by the pacing is not pressure: under a
//! token bucket, spacing requests is the right tool, and fewer endpoints at once would only
//! stretch each one's serial chain of writes and polls.
//!
//! The pacer is pure (`try_send`, `observe` and `abandon` take `now`); the client sleeps what
//! `try_send` says and asks again.

use std::time::Duration;

use flightdeck_core::backend::Pressure;
use tokio::time::Instant;

/// The share of the bucket kept back: under it (estimated), requests are spaced.
pub const RESERVE_SHARE: f64 = 0.1;
/// The spacing under the reserve while no refill rate has been measured.
pub const FALLBACK_SPACING: Duration = Duration::from_millis(100);
/// Before the first answer of a kind, how long the other requests wait before asking again.
pub const PROBE_WAIT: Duration = Duration::from_millis(20);
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
    /// Whether any answer of this kind came back (with a count or without).
    answered: bool,
    /// The last remaining count seen.
    remaining: Option<u64>,
    /// The largest remaining count seen (the bucket is one more).
    largest: u64,
    /// Requests sent and not answered (nor lost) yet.
    in_flight: u64,
    /// The sample the refill rate is measured from: when and what remained; answers since.
    sample: Option<(Instant, u64)>,
    answered_since: u64,
    /// Measured refill, tokens per second.
    rate: Option<f64>,
    /// When the last request of this kind went.
    last_sent: Option<Instant>,
}

impl Budget {
    /// Tokens kept back: a tenth of the bucket, at least 1.
    fn reserve(&self) -> u64 {
        (((self.largest + 1) as f64 * RESERVE_SHARE).ceil() as u64).max(1)
    }

    /// Whether requests of this kind are spaced now: the estimate (last count minus requests
    /// in flight) is under the reserve.
    fn paced(&self) -> bool {
        self.remaining
            .is_some_and(|r| r.saturating_sub(self.in_flight) < self.reserve())
    }
}

/// The pacing state of one ARM client.
#[derive(Debug, Default)]
pub struct Pacer {
    reads: Budget,
    writes: Budget,
    /// Since the executor last asked: a 429 was seen.
    throttled: bool,
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
    /// measured too low cannot queue requests far into the future. A request allowed here must
    /// be followed by `observe` (answered) or `abandon` (no answer).
    pub fn try_send(&mut self, kind: Kind, now: Instant) -> Result<(), Duration> {
        let b = self.budget(kind);
        if !b.answered && b.in_flight > 0 {
            return Err(PROBE_WAIT);
        }
        if b.paced() {
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
        b.in_flight += 1;
        Ok(())
    }

    /// A request `try_send` allowed got no answer (a transport error): no longer in flight.
    pub fn abandon(&mut self, kind: Kind) {
        let b = self.budget(kind);
        b.in_flight = b.in_flight.saturating_sub(1);
    }

    /// An answer of `kind` at `now`: its remaining budget, if it said, and whether it was a 429.
    pub fn observe(&mut self, kind: Kind, remaining: Option<u64>, throttled: bool, now: Instant) {
        self.answered = true;
        if throttled {
            self.throttled = true;
        }
        let b = self.budget(kind);
        b.answered = true;
        b.in_flight = b.in_flight.saturating_sub(1);
        let Some(remaining) = remaining else {
            return;
        };
        b.remaining = Some(remaining);
        b.largest = b.largest.max(remaining);
        // Each answer after the sample's spent a token its count shows.
        b.answered_since += 1;
        match b.sample {
            Some((at, then)) if now.saturating_duration_since(at) >= MIN_SAMPLE => {
                let dt = now.saturating_duration_since(at).as_secs_f64();
                let refilled = remaining as f64 - then as f64 + b.answered_since as f64;
                let measured = (refilled / dt).max(0.0);
                b.rate = Some(match b.rate {
                    Some(old) => 0.5 * old + 0.5 * measured,
                    None => measured,
                });
                b.sample = Some((now, remaining));
                b.answered_since = 0;
            }
            Some(_) => {}
            None => {
                b.sample = Some((now, remaining));
                b.answered_since = 0;
            }
        }
    }

    /// The pressure seen since the last call, and a fresh start for the next.
    pub fn take_pressure(&mut self) -> Pressure {
        let p = if self.throttled {
            Pressure::Throttled
        } else if self.answered {
            Pressure::Healthy
        } else {
            Pressure::Unknown
        };
        self.throttled = false;
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
    async fn requests_in_flight_count_against_the_budget_before_their_answers_show_it() {
        let mut p = Pacer::default();
        let t0 = Instant::now();
        assert_eq!(p.try_send(Kind::Write, t0), Ok(()));
        // A bucket of 200 (199 left after this request): a reserve of 20.
        p.observe(Kind::Write, Some(199), false, t0);
        // The answers still say 199, but 180 requests on their way leave 19: the 181st is paced.
        for i in 0..180 {
            assert_eq!(p.try_send(Kind::Write, t0), Ok(()), "request {i}");
        }
        assert_eq!(p.try_send(Kind::Write, t0), Err(FALLBACK_SPACING));
        // One of them is lost (no answer): back to 20, at the reserve, unpaced again.
        p.abandon(Kind::Write);
        assert_eq!(p.try_send(Kind::Write, t0), Ok(()));
    }

    #[tokio::test(start_paused = true)]
    async fn under_a_tenth_of_the_bucket_requests_are_spaced_at_the_measured_refill_rate() {
        let mut p = Pacer::default();
        let t0 = Instant::now();
        assert_eq!(p.try_send(Kind::Write, t0), Ok(()));
        // A bucket of 20: a reserve of 2, so not paced from the first request (a fixed reserve
        // of 25 would be).
        p.observe(Kind::Write, Some(19), false, t0);
        for left in (2..19).rev() {
            assert_eq!(p.try_send(Kind::Write, t0), Ok(()), "{left} left");
            p.observe(Kind::Write, Some(left), false, t0);
        }
        // 2 left, one more goes; with it in flight the estimate is 1: spaced, no rate yet.
        assert_eq!(p.try_send(Kind::Write, t0), Ok(()));
        assert_eq!(p.try_send(Kind::Write, t0), Err(FALLBACK_SPACING));
        // One second after the sample, 18 answers later, 5 remain: 5 - 19 + 18 = 4 came back
        // in a second, so once under the reserve again requests go 250 ms apart.
        let t1 = t0 + Duration::from_secs(1);
        p.observe(Kind::Write, Some(5), false, t1);
        for _ in 0..4 {
            assert_eq!(p.try_send(Kind::Write, t1), Ok(()));
        }
        assert_eq!(p.try_send(Kind::Write, t1 + ms(100)), Err(ms(150)));
        assert_eq!(p.try_send(Kind::Write, t1 + ms(250)), Ok(()));
        // A budget the pacing holds low is not pressure; only a 429 is.
        assert_eq!(p.take_pressure(), Pressure::Healthy);
        p.observe(Kind::Write, Some(0), true, t1 + ms(300));
        assert_eq!(p.take_pressure(), Pressure::Throttled);
    }

    #[tokio::test(start_paused = true)]
    async fn a_recovered_budget_releases_waiters_and_a_tiny_measured_rate_waits_at_most_a_second() {
        let mut p = Pacer::default();
        let t0 = Instant::now();
        assert_eq!(p.try_send(Kind::Read, t0), Ok(()));
        p.observe(Kind::Read, Some(99), false, t0);
        assert_eq!(p.try_send(Kind::Read, t0), Ok(()));
        // 99 → 9 with 1 answered over 2 s: a measured refill of 0, believed as 1 per second;
        // 9 is under the reserve of 10.
        let t1 = t0 + Duration::from_secs(2);
        p.observe(Kind::Read, Some(9), false, t1);
        assert_eq!(p.try_send(Kind::Read, t1), Ok(()));
        assert_eq!(p.try_send(Kind::Read, t1), Err(Duration::from_secs(1)));
        // The budget is back above the reserve: no spacing at all.
        p.observe(Kind::Read, Some(100), false, t1);
        assert_eq!(p.try_send(Kind::Read, t1), Ok(()));
        assert_eq!(p.try_send(Kind::Read, t1), Ok(()));
    }

    #[tokio::test(start_paused = true)]
    async fn before_the_first_answer_one_request_goes_and_the_others_wait_for_it() {
        let mut p = Pacer::default();
        let t0 = Instant::now();
        assert_eq!(p.try_send(Kind::Write, t0), Ok(()));
        assert_eq!(p.try_send(Kind::Write, t0), Err(PROBE_WAIT));
        // Reads are not held by the writes' probe.
        assert_eq!(p.try_send(Kind::Read, t0), Ok(()));
        // The answer carries no count (no throttle in front): never paced after it.
        p.observe(Kind::Write, None, false, t0 + ms(5));
        for _ in 0..100 {
            assert_eq!(p.try_send(Kind::Write, t0 + ms(5)), Ok(()));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_429_is_pressure_even_without_budget_headers() {
        let mut p = Pacer::default();
        p.observe(Kind::Read, None, true, Instant::now());
        assert_eq!(p.take_pressure(), Pressure::Throttled);
    }
}
