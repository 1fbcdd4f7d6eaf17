//! The adaptive write rate: an AIMD controller owned by the sink.
//!
//! The [`Controller`] decides how fast the sink writes, in write units per
//! second, and how many BatchWriteItem calls may be in flight. Every
//! throttle (a throttling error, or any `UnprocessedItems`) cuts both in
//! half, at most once a second (the calls in flight when the service pushed
//! back all report the same congestion); every second of success without a
//! throttle raises the rate by a tenth of the best second seen so far (or
//! of the rate itself, when that is more), and the calls in flight by one. `--write-units` is the ceiling the rate
//! never passes; without it the rate is unlimited until the first throttle.
//! The controller also keeps the run's record of what the sink achieved:
//! a [`RateSample`] every few seconds, for the report.
//!
//! Time is passed in (`now`), so the decisions are tested without a clock.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::Notify;

/// The lowest rate a cut can reach, in write units per second.
pub const MIN_RATE: f64 = 25.0;
/// The smallest additive step, in write units per second.
const MIN_STEP: f64 = 25.0;
/// A cut multiplies the rate by this.
const DECREASE: f64 = 0.5;
/// Throttles closer together than this are one congestion event; the rate
/// rises at most this often.
const PERIOD: Duration = Duration::from_secs(1);

/// What the sink achieved over a few seconds.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct RateSample {
    /// Seconds from the start of writing to the end of this sample.
    pub t: f64,
    pub items_per_s: f64,
    pub write_units_per_s: f64,
    /// Throttles seen during the sample.
    pub throttles: u64,
    /// Calls in flight when the sample was taken.
    pub in_flight: usize,
    /// The controller's rate at the end of the sample (write units/s);
    /// `None` while unlimited.
    pub rate_limit: Option<f64>,
}

/// What the controller did, for the run report.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct RateSummary {
    /// Times the controller cut the rate.
    pub backoffs: u64,
    /// The lowest rate it cut to (write units/s).
    pub lowest_rate: Option<f64>,
    pub samples: Vec<RateSample>,
}

#[derive(Debug)]
struct State {
    /// Allowed write units per second; `None`: not limited.
    rate: Option<f64>,
    /// The token bucket (negative: debt that later calls wait out).
    tokens: f64,
    refilled: Instant,
    in_flight: usize,
    in_flight_limit: usize,
    last_cut: Option<Instant>,
    last_raise: Instant,
    /// The best one-second throughput seen (units/s).
    peak: f64,
    second_start: Instant,
    second_units: f64,
    last_second: f64,
    sample_start: Instant,
    sample_items: u64,
    sample_units: u64,
    sample_throttles: u64,
    summary: RateSummary,
}

/// The AIMD controller and in-flight gate of one sink.
#[derive(Debug)]
pub struct Controller {
    state: Mutex<State>,
    freed: Notify,
    ceiling: Option<f64>,
    max_in_flight: usize,
    started: Instant,
}

impl Controller {
    /// `ceiling`: write units per second never to exceed.
    pub fn new(ceiling: Option<f64>, max_in_flight: usize, now: Instant) -> Controller {
        let max_in_flight = max_in_flight.max(1);
        Controller {
            state: Mutex::new(State {
                rate: ceiling,
                tokens: ceiling.unwrap_or(0.0),
                refilled: now,
                in_flight: 0,
                in_flight_limit: max_in_flight,
                last_cut: None,
                last_raise: now,
                peak: 0.0,
                second_start: now,
                second_units: 0.0,
                last_second: 0.0,
                sample_start: now,
                sample_items: 0,
                sample_units: 0,
                sample_throttles: 0,
                summary: RateSummary::default(),
            }),
            freed: Notify::new(),
            ceiling,
            max_in_flight,
            started: now,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain numbers behind: keep going.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits for a free call slot (the in-flight limit follows the rate).
    pub async fn acquire(self: &Arc<Self>) -> InFlight {
        loop {
            let freed = self.freed.notified();
            {
                let mut s = self.lock();
                if s.in_flight < s.in_flight_limit {
                    s.in_flight += 1;
                    return InFlight { ctl: self.clone() };
                }
            }
            freed.await;
        }
    }

    /// Waits until `units` write units may be sent.
    pub async fn take(&self, units: u64) {
        let wait = self.reserve(units as f64, Instant::now());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }

    /// Takes `units` from the bucket; how long the caller must wait first.
    pub fn reserve(&self, units: f64, now: Instant) -> Duration {
        let mut s = self.lock();
        let Some(rate) = s.rate else {
            return Duration::ZERO;
        };
        let dt = now.saturating_duration_since(s.refilled).as_secs_f64();
        // The burst is one second's allowance.
        s.tokens = (s.tokens + rate * dt).min(rate);
        s.refilled = now;
        s.tokens -= units;
        if s.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-s.tokens / rate)
        }
    }

    /// A call wrote `items` items worth `units` write units.
    pub fn on_success(&self, items: u64, units: u64, now: Instant) {
        let mut s = self.lock();
        s.sample_items += items;
        s.sample_units += units;
        s.second_units += units as f64;
        let second = now.saturating_duration_since(s.second_start);
        if second >= PERIOD {
            s.last_second = s.second_units / second.as_secs_f64();
            s.peak = s.peak.max(s.last_second);
            s.second_start = now;
            s.second_units = 0.0;
        }
        let Some(rate) = s.rate else { return };
        let calm = s
            .last_cut
            .is_none_or(|c| now.saturating_duration_since(c) >= PERIOD);
        if !calm || now.saturating_duration_since(s.last_raise) < PERIOD {
            return;
        }
        // A tenth of the best second seen, or of the rate itself: a rate cut
        // early in the run, before a good second was measured, still climbs
        // back in tens of seconds, not minutes.
        let step = (s.peak / 10.0).max(rate / 10.0).max(MIN_STEP);
        let raised = rate + step;
        s.rate = Some(self.ceiling.map_or(raised, |c| raised.min(c)));
        s.in_flight_limit = (s.in_flight_limit + 1).min(self.max_in_flight);
        s.last_raise = now;
        drop(s);
        self.freed.notify_one();
    }

    /// The service pushed back: cut the rate and the calls in flight, once
    /// per congestion event.
    pub fn on_throttle(&self, now: Instant) {
        let mut s = self.lock();
        s.sample_throttles += 1;
        if s.last_cut
            .is_some_and(|c| now.saturating_duration_since(c) < PERIOD)
        {
            return;
        }
        // Unlimited so far: start from what the sink was achieving.
        let elapsed = now.saturating_duration_since(s.second_start).as_secs_f64();
        let current = s.second_units / elapsed.max(0.1);
        let base = s.rate.unwrap_or_else(|| s.last_second.max(current));
        let cut = (base * DECREASE).max(MIN_RATE);
        if s.rate.is_none() {
            s.tokens = 0.0;
            s.refilled = now;
        }
        s.rate = Some(cut);
        s.in_flight_limit = (s.in_flight_limit / 2).max(1);
        s.last_cut = Some(now);
        s.last_raise = now;
        s.summary.backoffs += 1;
        s.summary.lowest_rate = Some(s.summary.lowest_rate.map_or(cut, |l| l.min(cut)));
    }

    /// Closes the current sample and starts the next.
    pub fn sample(&self, now: Instant) -> RateSample {
        let mut s = self.lock();
        let secs = now
            .saturating_duration_since(s.sample_start)
            .as_secs_f64()
            .max(1e-3);
        let sample = RateSample {
            t: round(now.saturating_duration_since(self.started).as_secs_f64()),
            items_per_s: round(s.sample_items as f64 / secs),
            write_units_per_s: round(s.sample_units as f64 / secs),
            throttles: s.sample_throttles,
            in_flight: s.in_flight,
            rate_limit: s.rate.map(round),
        };
        s.sample_start = now;
        s.sample_items = 0;
        s.sample_units = 0;
        s.sample_throttles = 0;
        s.summary.samples.push(sample.clone());
        sample
    }

    /// The current rate (write units/s), `None` while unlimited.
    pub fn rate(&self) -> Option<f64> {
        self.lock().rate
    }

    /// The current in-flight limit.
    pub fn in_flight_limit(&self) -> usize {
        self.lock().in_flight_limit
    }

    pub fn summary(&self) -> RateSummary {
        self.lock().summary.clone()
    }
}

fn round(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// A call slot, given back when dropped.
#[derive(Debug)]
pub struct InFlight {
    ctl: Arc<Controller>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.ctl.lock().in_flight -= 1;
        self.ctl.freed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(start: Instant, ms: u64) -> Instant {
        start + Duration::from_millis(ms)
    }

    #[test]
    fn a_throttle_halves_the_rate_once_per_congestion_event() {
        let t0 = Instant::now();
        let c = Controller::new(Some(1000.0), 8, t0);
        c.on_throttle(at(t0, 100));
        assert_eq!(c.rate(), Some(500.0));
        assert_eq!(c.in_flight_limit(), 4);
        // The other calls in flight report the same event.
        c.on_throttle(at(t0, 200));
        c.on_throttle(at(t0, 900));
        assert_eq!(c.rate(), Some(500.0));
        c.on_throttle(at(t0, 1200));
        assert_eq!(c.rate(), Some(250.0));
        assert_eq!(c.in_flight_limit(), 2);
        for i in 0..20 {
            c.on_throttle(at(t0, 3_000 + i * 1_000));
        }
        assert_eq!(c.rate(), Some(MIN_RATE), "never below the floor");
        assert_eq!(c.in_flight_limit(), 1);
        let s = c.summary();
        assert_eq!(s.backoffs, 22);
        assert_eq!(s.lowest_rate, Some(MIN_RATE));
    }

    #[test]
    fn success_raises_the_rate_additively_up_to_the_ceiling() {
        let t0 = Instant::now();
        let c = Controller::new(Some(1000.0), 8, t0);
        c.on_throttle(at(t0, 0));
        assert_eq!(c.rate(), Some(500.0));
        // Within a second of the cut: no raise.
        c.on_success(25, 25, at(t0, 500));
        assert_eq!(c.rate(), Some(500.0));
        // A second later: one step, a tenth of the rate (no better second
        // was measured yet).
        c.on_success(25, 25, at(t0, 1_000));
        assert_eq!(c.rate(), Some(550.0));
        assert_eq!(c.in_flight_limit(), 5);
        c.on_success(25, 25, at(t0, 1_500));
        assert_eq!(c.rate(), Some(550.0), "at most one raise a second");
        for s in 2..200 {
            c.on_success(25, 25, at(t0, s * 1_000));
        }
        assert_eq!(c.rate(), Some(1000.0), "the ceiling holds");
        assert_eq!(c.in_flight_limit(), 8);
    }

    #[test]
    fn a_rate_at_the_floor_climbs_by_the_smallest_step() {
        let t0 = Instant::now();
        let c = Controller::new(None, 8, t0);
        c.on_throttle(at(t0, 0));
        assert_eq!(c.rate(), Some(MIN_RATE), "nothing measured: the floor");
        c.on_success(1, 1, at(t0, 1_000));
        assert_eq!(c.rate(), Some(MIN_RATE + MIN_STEP));
    }

    #[test]
    fn unlimited_until_the_first_throttle_then_half_the_measured_rate() {
        let t0 = Instant::now();
        let c = Controller::new(None, 8, t0);
        assert_eq!(c.reserve(1_000_000.0, t0), Duration::ZERO);
        // 4,000 units in the first second, then a throttle.
        for i in 0..40 {
            c.on_success(25, 100, at(t0, i * 25 + 10));
        }
        c.on_success(25, 0, at(t0, 1_000));
        c.on_throttle(at(t0, 1_100));
        let rate = c.rate().unwrap();
        assert!((1_900.0..=2_100.0).contains(&rate), "{rate}");
    }

    #[test]
    fn the_bucket_makes_callers_wait_in_turn() {
        let t0 = Instant::now();
        let c = Controller::new(Some(100.0), 8, t0);
        assert_eq!(c.reserve(100.0, t0), Duration::ZERO, "one second of burst");
        assert_eq!(c.reserve(50.0, t0), Duration::from_millis(500));
        assert_eq!(c.reserve(50.0, t0), Duration::from_secs(1));
        // Time pays the debt back.
        assert_eq!(c.reserve(0.0, at(t0, 1_000)), Duration::ZERO);
    }

    #[test]
    fn samples_report_throughput_and_throttles() {
        let t0 = Instant::now();
        let c = Controller::new(None, 8, t0);
        c.on_success(50, 150, at(t0, 500));
        c.on_throttle(at(t0, 1_000));
        let s = c.sample(at(t0, 2_000));
        assert_eq!(s.t, 2.0);
        assert_eq!(s.items_per_s, 25.0);
        assert_eq!(s.write_units_per_s, 75.0);
        assert_eq!(s.throttles, 1);
        assert!(s.rate_limit.is_some());
        let next = c.sample(at(t0, 4_000));
        assert_eq!((next.items_per_s, next.throttles), (0.0, 0));
        assert_eq!(c.summary().samples.len(), 2);
    }

    #[tokio::test]
    async fn the_gate_holds_calls_to_the_in_flight_limit() {
        let c = Arc::new(Controller::new(Some(100.0), 2, Instant::now()));
        let a = c.acquire().await;
        let _b = c.acquire().await;
        let third = tokio::time::timeout(Duration::from_millis(50), c.acquire()).await;
        assert!(third.is_err(), "a third call waits");
        drop(a);
        let third = tokio::time::timeout(Duration::from_millis(500), c.acquire()).await;
        assert!(third.is_ok(), "a freed slot lets it go");
    }
}
