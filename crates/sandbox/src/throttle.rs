//! ARM-like request throttling (docs/sandbox.md, "Throttling"): a token bucket per principal for
//! reads and one for writes, as ARM documents its subscription limits (429 with `Retry-After`
//! [AML §4.1]; reads count against `x-ms-ratelimit-remaining-subscription-reads` [MON R15]; the
//! bucket model and the default sizes are ARM's "request limits and throttling" page, which
//! [MON R15] links: per principal, reads 250 with 25 refilled per second, writes 200 with 10 per
//! second). Off unless switched on with `--throttle` or `POST /_sandbox/faults {"throttle": …}`.
//!
//! While on, every ARM and Azure Monitor answer carries the remaining budget of its kind
//! (`x-ms-ratelimit-remaining-subscription-reads` on GET/HEAD, `-writes` on the rest), 429s
//! included. A request that finds its bucket empty is answered 429 `TooManyRequests` with
//! `Retry-After` = the whole seconds until one token is back (at least 1), and changes nothing.

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::AppState;
use super::error::ArmError;

pub const REMAINING_READS: &str = "x-ms-ratelimit-remaining-subscription-reads";
pub const REMAINING_WRITES: &str = "x-ms-ratelimit-remaining-subscription-writes";

/// One bucket's size and refill rate.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BucketSpec {
    /// Tokens the bucket holds when full (the burst), at least 1.
    pub capacity: f64,
    /// Tokens added back per second, above 0.
    pub per_second: f64,
}

/// The reads and the writes bucket of every principal.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ThrottleSpec {
    pub reads: BucketSpec,
    pub writes: BucketSpec,
}

impl ThrottleSpec {
    /// ARM's documented per-principal subscription buckets.
    pub const ARM: ThrottleSpec = ThrottleSpec {
        reads: BucketSpec {
            capacity: 250.0,
            per_second: 25.0,
        },
        writes: BucketSpec {
            capacity: 200.0,
            per_second: 10.0,
        },
    };

    pub fn validate(&self) -> Result<(), String> {
        for (name, b) in [("reads", self.reads), ("writes", self.writes)] {
            if !(b.capacity.is_finite() && b.capacity >= 1.0) {
                return Err(format!(
                    "throttle {name}.capacity must be at least 1, got {}",
                    b.capacity
                ));
            }
            if !(b.per_second.is_finite() && b.per_second > 0.0) {
                return Err(format!(
                    "throttle {name}.per_second must be above 0, got {}",
                    b.per_second
                ));
            }
        }
        Ok(())
    }

    /// `--throttle`: `arm`, or `reads=CAPACITY/PER_SECOND,writes=CAPACITY/PER_SECOND`.
    pub fn parse(raw: &str) -> Result<ThrottleSpec, String> {
        if raw.trim().eq_ignore_ascii_case("arm") {
            return Ok(ThrottleSpec::ARM);
        }
        let mut reads = None;
        let mut writes = None;
        for part in raw.split(',') {
            let (kind, bucket) = part.trim().split_once('=').ok_or_else(|| {
                format!(
                    "{part:?}: expected reads=CAPACITY/PER_SECOND or writes=CAPACITY/PER_SECOND"
                )
            })?;
            let (capacity, per_second) = bucket
                .split_once('/')
                .ok_or_else(|| format!("{bucket:?}: expected CAPACITY/PER_SECOND"))?;
            let number = |s: &str| {
                s.trim()
                    .parse::<f64>()
                    .map_err(|_| format!("{s:?} is not a number"))
            };
            let spec = BucketSpec {
                capacity: number(capacity)?,
                per_second: number(per_second)?,
            };
            match kind.trim() {
                "reads" => reads = Some(spec),
                "writes" => writes = Some(spec),
                other => return Err(format!("unknown bucket {other:?}: reads or writes")),
            }
        }
        let spec = ThrottleSpec {
            reads: reads.ok_or("the reads bucket is missing (reads=CAPACITY/PER_SECOND)")?,
            writes: writes.ok_or("the writes bucket is missing (writes=CAPACITY/PER_SECOND)")?,
        };
        spec.validate()?;
        Ok(spec)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Read,
    Write,
}

impl Kind {
    pub fn of(method: &Method) -> Kind {
        if method == Method::GET || method == Method::HEAD {
            Kind::Read
        } else {
            Kind::Write
        }
    }

    pub fn header(self) -> &'static str {
        match self {
            Kind::Read => REMAINING_READS,
            Kind::Write => REMAINING_WRITES,
        }
    }
}

/// What one request gets.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Decision {
    /// Served; whole tokens left in its bucket.
    Pass { remaining: u64 },
    /// Refused; try again after this.
    Throttled { retry_after: Duration },
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The buckets; empty and inactive until a spec is set.
#[derive(Debug, Default)]
pub struct Throttle {
    spec: Option<ThrottleSpec>,
    buckets: HashMap<(String, Kind), Bucket>,
}

impl Throttle {
    pub fn new(spec: Option<ThrottleSpec>) -> Throttle {
        Throttle {
            spec,
            buckets: HashMap::new(),
        }
    }

    pub fn spec(&self) -> Option<ThrottleSpec> {
        self.spec
    }

    /// Switches throttling on (full buckets) or off.
    pub fn set(&mut self, spec: Option<ThrottleSpec>) {
        self.spec = spec;
        self.buckets.clear();
    }

    /// Takes one token of `kind` from `principal`'s bucket; `None` while throttling is off.
    pub fn take(&mut self, principal: &str, kind: Kind, now: Instant) -> Option<Decision> {
        let spec = self.spec?;
        let b = match kind {
            Kind::Read => spec.reads,
            Kind::Write => spec.writes,
        };
        let bucket = self
            .buckets
            .entry((principal.to_string(), kind))
            .or_insert(Bucket {
                tokens: b.capacity,
                at: now,
            });
        let refilled = now.saturating_duration_since(bucket.at).as_secs_f64() * b.per_second;
        bucket.tokens = (bucket.tokens + refilled).min(b.capacity);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Some(Decision::Pass {
                remaining: bucket.tokens.floor() as u64,
            });
        }
        // Whole seconds [AML §3] until one token is back, at least 1.
        let secs = ((1.0 - bucket.tokens) / b.per_second).ceil().max(1.0);
        Some(Decision::Throttled {
            retry_after: Duration::from_secs(secs as u64),
        })
    }
}

/// Middleware inside the ARM token check: the bucket of the token's principal decides.
pub async fn limit(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let kind = Kind::of(req.method());
    let principal = super::auth::bearer(req.headers()).and_then(|t| state.token_principal(t));
    let decision = principal.and_then(|p| state.throttle().take(&p, kind, state.clock.now()));
    match decision {
        None => next.run(req).await,
        Some(Decision::Pass { remaining }) => {
            let mut response = next.run(req).await;
            response
                .headers_mut()
                .insert(kind.header(), HeaderValue::from(remaining));
            response
        }
        Some(Decision::Throttled { retry_after }) => {
            tracing::debug!(path = %req.uri().path(), ?kind, "sandbox throttle: 429");
            let mut response = ArmError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "TooManyRequests",
                format!(
                    "the request is throttled: the principal's {} budget is spent; retry after {} s",
                    match kind {
                        Kind::Read => "read",
                        Kind::Write => "write",
                    },
                    retry_after.as_secs()
                ),
            )
            .into_response();
            let headers = response.headers_mut();
            headers.insert("retry-after", HeaderValue::from(retry_after.as_secs()));
            headers.insert(kind.header(), HeaderValue::from(0u64));
            response
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(capacity: f64, per_second: f64) -> ThrottleSpec {
        let b = BucketSpec {
            capacity,
            per_second,
        };
        ThrottleSpec {
            reads: b,
            writes: b,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_bucket_lets_its_burst_through_then_refuses_until_it_refills() {
        let mut t = Throttle::new(Some(spec(3.0, 2.0)));
        let now = Instant::now();
        let taken: Vec<_> = (0..4).map(|_| t.take("p", Kind::Read, now)).collect();
        assert_eq!(
            taken,
            [
                Some(Decision::Pass { remaining: 2 }),
                Some(Decision::Pass { remaining: 1 }),
                Some(Decision::Pass { remaining: 0 }),
                Some(Decision::Throttled {
                    retry_after: Duration::from_secs(1)
                }),
            ]
        );
        // Writes and other principals have their own buckets.
        assert_eq!(
            t.take("p", Kind::Write, now),
            Some(Decision::Pass { remaining: 2 })
        );
        assert_eq!(
            t.take("q", Kind::Read, now),
            Some(Decision::Pass { remaining: 2 })
        );
        // Half a second refills one token at 2 per second.
        let later = now + Duration::from_millis(500);
        assert_eq!(
            t.take("p", Kind::Read, later),
            Some(Decision::Pass { remaining: 0 })
        );
        t.set(None);
        assert_eq!(t.take("p", Kind::Read, later), None);
    }

    #[test]
    fn the_flag_reads_arm_or_two_buckets_and_refuses_nonsense() {
        assert_eq!(ThrottleSpec::parse("arm"), Ok(ThrottleSpec::ARM));
        assert_eq!(
            ThrottleSpec::parse("reads=40/20, writes=20/10"),
            Ok(ThrottleSpec {
                reads: BucketSpec {
                    capacity: 40.0,
                    per_second: 20.0
                },
                writes: BucketSpec {
                    capacity: 20.0,
                    per_second: 10.0
                },
            })
        );
        assert!(ThrottleSpec::parse("reads=40/20").is_err());
        assert!(ThrottleSpec::parse("reads=0/20,writes=1/1").is_err());
        assert!(ThrottleSpec::parse("reads=4/0,writes=1/1").is_err());
        assert!(ThrottleSpec::parse("gets=4/1,writes=1/1").is_err());
    }
}
