//! Retry decisions every caller shares: which errors are worth another try,
//! how long to wait before it, and when to stop trying.
//!
//! The sink (BatchWriteItem), the Scan source, the export source (S3
//! GetObject), verify's BatchGetItem and the demo loader all ask the same
//! questions, so the answers live here, below all of them. An error is
//! [`ErrorClass::Retryable`] (throttling, 5xx, timeouts, a reset
//! connection: it slows a run down), [`ErrorClass::Invalid`] (the request
//! itself is wrong: resending it as is cannot help) or [`ErrorClass::Fatal`]
//! (a missing table, no permission: every further call would fail too).
//! Retryable errors are retried by time, not by count: [`Patience`] says
//! when a caller has gone too long without one success.

use std::time::{Duration, Instant};

use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::SdkError;
use rand::Rng as _;

/// How an error is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Resend after a backoff. `throttle` when the service pushed back
    /// (the adaptive rate slows down for these).
    Retryable { throttle: bool },
    /// The call was invalid (a duplicate key, a bad item): no resend as is.
    Invalid,
    /// Missing table, no permission: every further call would fail too.
    Fatal,
}

impl ErrorClass {
    pub fn retryable(self) -> bool {
        matches!(self, ErrorClass::Retryable { .. })
    }
}

/// Error codes AWS uses when it throttles a caller.
const THROTTLE_CODES: &[&str] = &[
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "Throttling",
    "RequestLimitExceeded",
    "SlowDown",
];

/// Error codes of transient trouble on AWS's side.
const TRANSIENT_CODES: &[&str] = &[
    "LimitExceededException",
    "InternalServerError",
    "InternalFailure",
    "InternalError",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "TransactionInProgressException",
    "RequestTimeout",
    "RequestTimeoutException",
];

/// Classifies an error by its code and HTTP status. `transport` is true for
/// a timeout, a reset or a connection that could not be made: those have no
/// code and are always worth another try.
pub fn classify(code: Option<&str>, status: Option<u16>, transport: bool) -> ErrorClass {
    match code {
        Some(c) if THROTTLE_CODES.contains(&c) => ErrorClass::Retryable { throttle: true },
        Some(c) if TRANSIENT_CODES.contains(&c) => ErrorClass::Retryable { throttle: false },
        _ if status == Some(429) => ErrorClass::Retryable { throttle: true },
        _ if status.is_some_and(|s| s >= 500) => ErrorClass::Retryable { throttle: false },
        _ if transport => ErrorClass::Retryable { throttle: false },
        Some("ValidationException" | "SerializationException") => ErrorClass::Invalid,
        _ => ErrorClass::Fatal,
    }
}

/// Classifies an SDK error of any AWS service (DynamoDB and S3 share the
/// error type).
pub fn classify_sdk<E>(err: &SdkError<E, HttpResponse>) -> ErrorClass
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata,
{
    let transport = matches!(
        err,
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_)
    );
    let status = err.raw_response().map(|r| r.status().as_u16());
    let code = match err {
        SdkError::ServiceError(e) => e.err().code(),
        _ => None,
    };
    classify(code, status, transport)
}

/// The delay before attempt `attempt` (1-based): a uniform draw from zero
/// to `min(max, base * 2^attempt)` ("full jitter").
pub fn backoff(attempt: u32, base: Duration, max: Duration) -> Duration {
    let ceiling = base
        .saturating_mul(1u32.checked_shl(attempt.min(20)).unwrap_or(u32::MAX))
        .min(max);
    let nanos = ceiling.as_nanos().min(u64::MAX as u128) as u64;
    if nanos == 0 {
        return Duration::ZERO;
    }
    Duration::from_nanos(rand::rng().random_range(0..=nanos))
}

/// Backoff of reads (Scan pages, S3 objects, BatchGetItem): from 50 ms,
/// capped at 5 s.
pub fn read_backoff(attempt: u32) -> Duration {
    backoff(attempt, Duration::from_millis(50), Duration::from_secs(5))
}

/// How long one caller keeps retrying: until `stall` has passed without a
/// success. A success resets the clock.
#[derive(Debug, Clone)]
pub struct Patience {
    stall: Duration,
    last_success: Instant,
    /// Failures since the last success.
    pub failures: u32,
}

impl Patience {
    pub fn new(stall: Duration) -> Patience {
        Patience {
            stall,
            last_success: Instant::now(),
            failures: 0,
        }
    }

    pub fn success(&mut self) {
        self.last_success = Instant::now();
        self.failures = 0;
    }

    /// Counts a retryable failure; `Some(delay)` to wait before the next
    /// try, `None` when the caller has stalled and must give up.
    pub fn failure(&mut self) -> Option<Duration> {
        self.failures = self.failures.saturating_add(1);
        if self.last_success.elapsed() >= self.stall {
            return None;
        }
        Some(read_backoff(self.failures))
    }

    /// How long since the last success.
    pub fn stalled_for(&self) -> Duration {
        self.last_success.elapsed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_follows_the_documented_lists() {
        for code in [
            "ProvisionedThroughputExceededException",
            "ThrottlingException",
            "RequestLimitExceeded",
        ] {
            assert_eq!(
                classify(Some(code), Some(400), false),
                ErrorClass::Retryable { throttle: true },
                "{code}"
            );
        }
        for code in ["LimitExceededException", "InternalServerError"] {
            assert_eq!(
                classify(Some(code), Some(400), false),
                ErrorClass::Retryable { throttle: false },
                "{code}"
            );
        }
        let invalid = classify(Some("ValidationException"), Some(400), false);
        assert_eq!(invalid, ErrorClass::Invalid);
        let gone = classify(Some("ResourceNotFoundException"), Some(400), false);
        assert_eq!(gone, ErrorClass::Fatal);
        let denied = classify(Some("AccessDeniedException"), Some(400), false);
        assert_eq!(denied, ErrorClass::Fatal);
        // Any 5xx is transient, whatever its code; a 429 is a throttle.
        let odd_500 = classify(Some("SomethingNew"), Some(503), false);
        assert_eq!(odd_500, ErrorClass::Retryable { throttle: false });
        let too_many = classify(None, Some(429), false);
        assert_eq!(too_many, ErrorClass::Retryable { throttle: true });
        // Timeouts and resets have no code and are retried.
        let reset = classify(None, None, true);
        assert_eq!(reset, ErrorClass::Retryable { throttle: false });
        assert_eq!(classify(None, None, false), ErrorClass::Fatal);
    }

    #[test]
    fn backoff_is_capped_and_jittered() {
        let base = Duration::from_millis(50);
        let max = Duration::from_secs(2);
        for attempt in 1..40 {
            let d = backoff(attempt, base, max);
            assert!(d <= max);
            assert!(d <= base * 2u32.saturating_pow(attempt.min(20)));
        }
        let draws: std::collections::HashSet<Duration> =
            (0..20).map(|_| backoff(5, base, max)).collect();
        assert!(draws.len() > 1, "full jitter draws differ");
    }

    #[test]
    fn patience_gives_up_only_after_the_stall_time_without_success() {
        let mut p = Patience::new(Duration::from_secs(3600));
        for _ in 0..100 {
            assert!(p.failure().is_some(), "many failures within the time");
        }
        let mut p = Patience::new(Duration::ZERO);
        assert!(p.failure().is_none(), "no time left: give up");
        p.success();
        assert_eq!(p.failures, 0);
    }
}
