//! A client-side model of Shopify's leaky bucket, shared by every task using one client.
//!
//! Before a request goes out, [`CostLimiter::acquire`] waits until the modelled bucket (as last
//! reported by Shopify, refilled at the restore rate since, minus what was charged locally
//! since) covers the request's expected cost, and charges it, as Shopify does up front. Each
//! response resets the model from its `throttleStatus`, minus the requests still in flight
//! (which Shopify may not have charged yet when it answered: the model errs on the side of
//! waiting), so concurrent tasks never overdraw the bucket together.

use crate::cost::ThrottleStatus;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

#[derive(Debug)]
struct Bucket {
    maximum: f64,
    available: f64,
    restore_rate: f64,
    at: Instant,
    in_flight: f64,
}

impl Bucket {
    fn available_now(&self, now: Instant) -> f64 {
        let refilled = now.saturating_duration_since(self.at).as_secs_f64() * self.restore_rate;
        (self.available + refilled).min(self.maximum)
    }
}

/// A reservation of bucket points for one request.
#[derive(Debug)]
pub struct Permit {
    cost: f64,
    /// How long the caller waited for it.
    pub waited: Duration,
}

/// The shared bucket model.
#[derive(Debug)]
pub struct CostLimiter {
    bucket: Mutex<Bucket>,
}

impl CostLimiter {
    /// A limiter that assumes a full bucket of `maximum` restoring at `restore_rate` per second
    /// until the first response says otherwise.
    pub fn new(maximum: f64, restore_rate: f64) -> Self {
        Self {
            bucket: Mutex::new(Bucket {
                maximum,
                available: maximum,
                restore_rate: restore_rate.max(1.0),
                at: Instant::now(),
                in_flight: 0.0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Bucket> {
        // A poisoned lock only means another task panicked mid-update of plain numbers.
        self.bucket.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until `cost` points are available, then reserves them.
    pub async fn acquire(&self, cost: f64) -> Permit {
        let started = Instant::now();
        loop {
            let wait = {
                let mut bucket = self.lock();
                let now = Instant::now();
                // A request may never need more than the whole bucket.
                let cost = cost.min(bucket.maximum);
                let free = bucket.available_now(now);
                if free >= cost {
                    bucket.available = free - cost;
                    bucket.at = now;
                    bucket.in_flight += cost;
                    return Permit {
                        cost,
                        waited: started.elapsed(),
                    };
                }
                Duration::from_secs_f64((cost - free) / bucket.restore_rate)
            };
            tokio::time::sleep(wait.max(Duration::from_millis(1))).await;
        }
    }

    /// Ends a reservation. With Shopify's report of the bucket, that report (less what is
    /// still in flight) becomes the model; without one (429, 5xx, network failure: nothing
    /// was charged) the reservation is refunded.
    pub fn settle(&self, permit: Permit, status: Option<ThrottleStatus>) {
        let mut bucket = self.lock();
        bucket.in_flight = (bucket.in_flight - permit.cost).max(0.0);
        let now = Instant::now();
        match status {
            Some(status) => {
                bucket.maximum = status.maximum_available.max(1.0);
                bucket.restore_rate = status.restore_rate.max(1.0);
                bucket.available = status.currently_available - bucket.in_flight;
            }
            None => bucket.available = bucket.available_now(now) + permit.cost,
        }
        bucket.available = bucket.available.min(bucket.maximum);
        bucket.at = now;
    }

    /// How long Shopify says to wait before `requested` points are available, from a
    /// THROTTLED answer's status.
    pub fn throttled_wait(requested: f64, status: &ThrottleStatus) -> Duration {
        let missing = (requested - status.currently_available).max(0.0);
        Duration::from_secs_f64(missing / status.restore_rate.max(1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(available: f64) -> Option<ThrottleStatus> {
        Some(ThrottleStatus {
            maximum_available: 1000.0,
            currently_available: available,
            restore_rate: 100.0,
        })
    }

    #[tokio::test(start_paused = true)]
    async fn waits_for_the_missing_points_at_the_restore_rate() {
        let limiter = CostLimiter::new(1000.0, 100.0);
        let first = limiter.acquire(10.0).await;
        limiter.settle(first, status(100.0));
        let permit = limiter.acquire(300.0).await;
        // 200 points missing at 100/s.
        assert!(
            permit.waited >= Duration::from_millis(1990)
                && permit.waited <= Duration::from_millis(2100),
            "{:?}",
            permit.waited
        );
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_reservations_do_not_overdraw_the_bucket() {
        let limiter = std::sync::Arc::new(CostLimiter::new(1000.0, 100.0));
        let a = limiter.acquire(600.0).await;
        assert_eq!(a.waited, Duration::ZERO);
        // The second 600 must wait for 200 points even though no response has arrived yet.
        let b = limiter.acquire(600.0).await;
        assert!(b.waited >= Duration::from_millis(1990), "{:?}", b.waited);
        limiter.settle(a, None);
        limiter.settle(b, None);
    }

    #[test]
    fn throttled_wait_follows_shopifys_formula() {
        let status = ThrottleStatus {
            maximum_available: 2000.0,
            currently_available: 50.0,
            restore_rate: 100.0,
        };
        assert_eq!(
            CostLimiter::throttled_wait(250.0, &status),
            Duration::from_secs(2)
        );
        assert_eq!(CostLimiter::throttled_wait(10.0, &status), Duration::ZERO);
    }
}
