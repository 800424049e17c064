//! How fast a client may send requests: a token bucket per connection.

#[cfg(test)]
use std::time::Duration;
use std::time::Instant;

/// Requests per second a connection may send, with bursts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub(crate) struct InboundRate {
    /// Sustained requests per second.
    pub(crate) per_second: u32,
    /// Requests allowed at once.
    pub(crate) burst: u32,
}

impl Default for InboundRate {
    /// 20 per second, and bursts of 120: enough for a page to subscribe to every stream
    /// a connection may hold ([`DEFAULT_MAX_SUBSCRIPTIONS`](crate::web::DEFAULT_MAX_SUBSCRIPTIONS))
    /// at once when it reconnects.
    fn default() -> Self {
        Self {
            per_second: 20,
            burst: 120,
        }
    }
}

/// A token bucket.
pub(super) struct RateLimiter {
    rate: InboundRate,
    tokens: f64,
    at: Instant,
}

impl RateLimiter {
    pub(super) fn new(rate: InboundRate) -> Self {
        Self {
            rate,
            tokens: f64::from(rate.burst),
            at: Instant::now(),
        }
    }

    pub(super) fn admit(&mut self, now: Instant) -> bool {
        let refill = now.duration_since(self.at).as_secs_f64() * f64::from(self.rate.per_second);
        self.tokens = (self.tokens + refill).min(f64::from(self.rate.burst));
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_allows_bursts_then_the_rate() {
        let start = Instant::now();
        let mut limiter = RateLimiter::new(InboundRate {
            per_second: 10,
            burst: 3,
        });
        assert!((0..3).all(|_| limiter.admit(start)));
        assert!(!limiter.admit(start));
        assert!(limiter.admit(start + Duration::from_millis(100)));
        assert!(!limiter.admit(start + Duration::from_millis(100)));
        assert!(limiter.admit(start + Duration::from_secs(60)));
        assert!(limiter.admit(start + Duration::from_secs(60)));
        assert!(limiter.admit(start + Duration::from_secs(60)));
        assert!(
            !limiter.admit(start + Duration::from_secs(60)),
            "capped at the burst"
        );
    }
}
