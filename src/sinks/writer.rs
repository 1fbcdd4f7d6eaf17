//! The BatchWriteItem sink: rate-limited, bounded, and explicit about retries.
//!
//! The sink task owns a [`Batcher`]; every batch it closes is written by its
//! own tokio task holding a semaphore permit, so at most `max_in_flight`
//! calls are out at once and a full channel back-pressures the transform.
//! Before each call it takes the batch's items and write units from governor
//! rate limiters. After each call [`decide`] names what happens next: done,
//! resend only the `UnprocessedItems`, resend all, split a batch DynamoDB
//! rejected as invalid into single writes (so one bad item does not take 24
//! good ones with it), or give up. Giving up dead-letters the items; nothing
//! is dropped. Backoff is exponential with full jitter.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_dynamodb::types::{
    DeleteRequest, PutRequest, ReturnConsumedCapacity, WriteRequest as SdkWriteRequest,
};
use rand::Rng as _;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;

use super::batcher::{key_text, Batch, Batcher, Op, WriteRequest};
use super::dead_letter::DeadLetter;
use crate::rate::Limit;
use crate::report::RunStats;

/// How the sink writes.
#[derive(Debug, Clone)]
pub struct WriterConfig {
    pub table: String,
    /// The target's primary key attribute names.
    pub key_names: Vec<String>,
    /// BatchWriteItem calls in flight at once.
    pub max_in_flight: usize,
    /// Calls per batch before its remaining items are dead-lettered.
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// Items per second, across the whole sink.
    pub items_per_second: Option<NonZeroU32>,
    /// Write units per second, across the whole sink (indexes counted).
    pub write_units_per_second: Option<NonZeroU32>,
}

/// How an error from BatchWriteItem is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Throttling, 5xx, timeouts: resend after a backoff.
    Retryable,
    /// The call was invalid (a duplicate key, a bad item): no resend as is.
    Invalid,
    /// Missing table, no permission: every further call would fail too.
    Fatal,
}

/// Classifies an error by its code; `transient` for timeouts and transport
/// failures, which have none.
pub fn classify(code: Option<&str>, transient: bool) -> ErrorClass {
    match code {
        Some(
            "ProvisionedThroughputExceededException"
            | "ThrottlingException"
            | "RequestLimitExceeded"
            | "LimitExceededException"
            | "InternalServerError"
            | "InternalFailure"
            | "ServiceUnavailable"
            | "ServiceUnavailableException"
            | "TransactionInProgressException",
        ) => ErrorClass::Retryable,
        Some("ValidationException" | "SerializationException") => ErrorClass::Invalid,
        Some(_) => ErrorClass::Fatal,
        None if transient => ErrorClass::Retryable,
        None => ErrorClass::Fatal,
    }
}

/// What to do after one BatchWriteItem call.
#[derive(Debug, PartialEq)]
pub enum RetryAction {
    /// Everything was written.
    Successful,
    /// Resend only these (the call's `UnprocessedItems`).
    RetryPartial(Vec<WriteRequest>),
    /// Resend all of these after a backoff.
    Retry(Vec<WriteRequest>, String),
    /// The batch was rejected as invalid: write these one by one.
    Split(Vec<WriteRequest>, String),
    /// Give up on these items.
    DontRetry(Vec<WriteRequest>, String),
    /// Give up on these items and stop the run: every further call would
    /// fail the same way (a missing table, no permission).
    Stop(Vec<WriteRequest>, String),
}

/// The outcome of one call, as [`decide`] sees it.
pub enum CallResult {
    /// The call succeeded; these keys came back unprocessed.
    Ok { unprocessed_keys: Vec<String> },
    /// The call failed.
    Err { class: ErrorClass, message: String },
}

impl CallResult {
    /// True when the service pushed back (unprocessed items or throttling).
    fn throttled(&self, code: Option<&str>) -> bool {
        match self {
            CallResult::Ok { unprocessed_keys } => !unprocessed_keys.is_empty(),
            CallResult::Err {
                class: ErrorClass::Retryable,
                ..
            } => code.is_some_and(|c| {
                matches!(
                    c,
                    "ProvisionedThroughputExceededException"
                        | "ThrottlingException"
                        | "RequestLimitExceeded"
                )
            }),
            CallResult::Err { .. } => false,
        }
    }
}

/// Decides the next step for `pending` after a call; also returns the
/// requests the call wrote.
pub fn decide(pending: Vec<WriteRequest>, result: CallResult) -> (RetryAction, Vec<WriteRequest>) {
    match result {
        CallResult::Ok { unprocessed_keys } if unprocessed_keys.is_empty() => {
            (RetryAction::Successful, pending)
        }
        CallResult::Ok { unprocessed_keys } => {
            let (again, done): (Vec<_>, Vec<_>) = pending
                .into_iter()
                .partition(|r| unprocessed_keys.contains(&r.key));
            (RetryAction::RetryPartial(again), done)
        }
        CallResult::Err {
            class: ErrorClass::Retryable,
            message,
        } => (RetryAction::Retry(pending, message), Vec::new()),
        CallResult::Err {
            class: ErrorClass::Invalid,
            message,
        } if pending.len() > 1 => (RetryAction::Split(pending, message), Vec::new()),
        CallResult::Err {
            class: ErrorClass::Fatal,
            message,
        } => (RetryAction::Stop(pending, message), Vec::new()),
        CallResult::Err { message, .. } => (RetryAction::DontRetry(pending, message), Vec::new()),
    }
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

/// The shared state of the sink's write tasks.
struct Shared {
    client: aws_sdk_dynamodb::Client,
    cfg: WriterConfig,
    items: Option<Limit>,
    units: Option<Limit>,
    stats: Arc<RunStats>,
    dead: mpsc::Sender<DeadLetter>,
    /// The first fatal error, which stops the run.
    fatal: Mutex<Option<String>>,
    on_fatal: tokio::sync::watch::Sender<bool>,
}

/// Why the sink stopped.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("writing to {table} failed and the run stopped: {message}")]
    Fatal { table: String, message: String },
    #[error("the dead-letter task stopped early; items could not be recorded")]
    DeadLetterClosed,
}

/// Runs the sink until its input closes and every batch is written or
/// dead-lettered. A fatal error sets `on_fatal` so the sources stop reading.
pub async fn run(
    client: aws_sdk_dynamodb::Client,
    cfg: WriterConfig,
    mut rx: mpsc::Receiver<SinkMsg>,
    stats: Arc<RunStats>,
    dead: mpsc::Sender<DeadLetter>,
    on_fatal: tokio::sync::watch::Sender<bool>,
) -> Result<(), SinkError> {
    let semaphore = Arc::new(Semaphore::new(cfg.max_in_flight.max(1)));
    let shared = Arc::new(Shared {
        items: cfg.items_per_second.map(Limit::new),
        units: cfg.write_units_per_second.map(Limit::new),
        client,
        cfg,
        stats,
        dead,
        fatal: Mutex::new(None),
        on_fatal,
    });
    let mut batcher = Batcher::new();
    let mut tasks = JoinSet::new();
    let mut dead_closed = false;
    loop {
        let next = rx.recv().await;
        let (batch, ack, closed) = match next {
            Some(SinkMsg::Write(req)) => {
                let before = batcher.repeated_keys;
                let entity = req.entity;
                let batch = batcher.push(req);
                if batcher.repeated_keys > before {
                    RunStats::add(&shared.stats.entity(entity).repeated_keys, 1);
                }
                (batch, None, false)
            }
            Some(SinkMsg::Barrier(ack)) => (batcher.finish(), Some(ack), false),
            None => (batcher.finish(), None, true),
        };
        if let Some(Batch { requests, barrier }) = batch {
            if barrier {
                // A repeated key: everything before it lands first.
                dead_closed |= join_all(&mut tasks).await;
            }
            // The semaphore is never closed; if it were, the batch would
            // still be written (unbounded) rather than lost.
            let permit = semaphore.clone().acquire_owned().await.ok();
            let shared = shared.clone();
            tasks.spawn(async move {
                let ok = shared.write_batch(requests).await;
                drop(permit);
                ok
            });
        }
        if let Some(ack) = ack {
            // A phase ends: everything sent before the barrier has landed.
            dead_closed |= join_all(&mut tasks).await;
            let _ = ack.send(());
        }
        // Reap finished tasks as we go so the set stays small.
        while let Some(done) = tasks.try_join_next() {
            dead_closed |= !done.unwrap_or(false);
        }
        if closed {
            break;
        }
    }
    dead_closed |= join_all(&mut tasks).await;
    let fatal = shared.fatal.lock().ok().and_then(|f| f.clone());
    if let Some(message) = fatal {
        return Err(SinkError::Fatal {
            table: shared.cfg.table.clone(),
            message,
        });
    }
    if dead_closed {
        return Err(SinkError::DeadLetterClosed);
    }
    Ok(())
}

/// Waits for every write task; true if one could not record its dead letters.
async fn join_all(tasks: &mut JoinSet<bool>) -> bool {
    let mut failed = false;
    while let Some(done) = tasks.join_next().await {
        failed |= !done.unwrap_or(false);
    }
    failed
}

/// What the sink receives.
#[derive(Debug)]
pub enum SinkMsg {
    Write(WriteRequest),
    /// Answer once everything received before has been written or dead-lettered.
    Barrier(tokio::sync::oneshot::Sender<()>),
}

impl Shared {
    /// Writes one batch to the end; false if dead letters could not be sent.
    async fn write_batch(&self, batch: Vec<WriteRequest>) -> bool {
        match self.write_with_retries(batch, true).await {
            Ok(None) => true,
            Ok(Some(singles)) => {
                for one in singles {
                    if !matches!(self.write_with_retries(vec![one], false).await, Ok(None)) {
                        return false;
                    }
                }
                true
            }
            Err(()) => false,
        }
    }

    /// Returns `Ok(Some(items))` when the batch must be split into singles.
    async fn write_with_retries(
        &self,
        mut pending: Vec<WriteRequest>,
        may_split: bool,
    ) -> Result<Option<Vec<WriteRequest>>, ()> {
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            if let Some(l) = &self.items {
                l.take(pending.len() as u64).await;
            }
            if let Some(l) = &self.units {
                l.take(pending.iter().map(|r| r.write_units).sum()).await;
            }
            let (result, code) = self.call(&pending).await;
            let throttled = result.throttled(code.as_deref());
            let (action, done) = decide(pending, result);
            for r in &done {
                let c = self.stats.entity(r.entity);
                let counter = match (r.counted, r.op) {
                    (true, Op::Put) => &c.written,
                    (true, Op::Delete) => &c.deleted,
                    (false, _) => &c.stale_deleted,
                };
                RunStats::add(counter, 1);
                RunStats::add(&c.estimated_wcu, r.write_units);
            }
            let (again, message) = match action {
                RetryAction::Successful => return Ok(None),
                RetryAction::RetryPartial(again) => (again, "unprocessed items".to_string()),
                RetryAction::Retry(all, message) => (all, message),
                RetryAction::Split(all, _) if may_split => return Ok(Some(all)),
                RetryAction::Stop(all, message) => {
                    if let Ok(mut f) = self.fatal.lock() {
                        f.get_or_insert_with(|| message.clone());
                    }
                    let _ = self.on_fatal.send(true);
                    self.give_up(
                        all,
                        &format!("BatchWriteItem failed, and the run stopped: {message}"),
                    )
                    .await?;
                    return Ok(None);
                }
                RetryAction::Split(all, message) | RetryAction::DontRetry(all, message) => {
                    self.give_up(all, &format!("BatchWriteItem rejected it: {message}"))
                        .await?;
                    return Ok(None);
                }
            };
            for r in &again {
                let c = self.stats.entity(r.entity);
                RunStats::add(&c.retries, 1);
                if throttled {
                    RunStats::add(&c.throttles, 1);
                }
            }
            if attempt >= self.cfg.max_attempts {
                let reason = format!("retries exhausted after {attempt} attempts; last: {message}");
                self.give_up(again, &reason).await?;
                return Ok(None);
            }
            pending = again;
            tokio::time::sleep(backoff(attempt, self.cfg.base_delay, self.cfg.max_delay)).await;
        }
    }

    /// Sends one BatchWriteItem call for `pending`; the result and the
    /// error code, if any.
    async fn call(&self, pending: &[WriteRequest]) -> (CallResult, Option<String>) {
        let requests: Result<Vec<SdkWriteRequest>, _> = pending
            .iter()
            .map(|r| match r.op {
                Op::Put => PutRequest::builder()
                    .set_item(Some(r.item.clone()))
                    .build()
                    .map(|p| SdkWriteRequest::builder().put_request(p).build()),
                Op::Delete => DeleteRequest::builder()
                    .set_key(Some(r.item.clone()))
                    .build()
                    .map(|d| SdkWriteRequest::builder().delete_request(d).build()),
            })
            .collect();
        let requests = match requests {
            Ok(r) => r,
            Err(e) => {
                let message = format!("could not build the request: {e}");
                return (
                    CallResult::Err {
                        class: ErrorClass::Invalid,
                        message,
                    },
                    None,
                );
            }
        };
        let out = self
            .client
            .batch_write_item()
            .request_items(&self.cfg.table, requests)
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await;
        match out {
            Ok(out) => {
                let consumed: f64 = out
                    .consumed_capacity()
                    .iter()
                    .filter_map(|c| c.capacity_units())
                    .sum();
                self.attribute_consumed(pending, consumed);
                let names: Vec<&str> = self.cfg.key_names.iter().map(String::as_str).collect();
                let unprocessed_keys = out
                    .unprocessed_items()
                    .and_then(|m| m.get(&self.cfg.table))
                    .map(|reqs| {
                        reqs.iter()
                            .filter_map(|w| {
                                let item = w
                                    .put_request()
                                    .map(|p| p.item())
                                    .or(w.delete_request().map(|d| d.key()))?;
                                Some(key_text(item, &names))
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                (CallResult::Ok { unprocessed_keys }, None)
            }
            Err(e) => {
                let code = crate::aws::error_code(&e);
                let transient = matches!(
                    e,
                    aws_sdk_dynamodb::error::SdkError::TimeoutError(_)
                        | aws_sdk_dynamodb::error::SdkError::DispatchFailure(_)
                        | aws_sdk_dynamodb::error::SdkError::ResponseError(_)
                ) || e
                    .raw_response()
                    .is_some_and(|r| r.status().is_server_error());
                let class = classify(code.as_deref(), transient);
                (
                    CallResult::Err {
                        class,
                        message: crate::aws::describe_error(&e),
                    },
                    code,
                )
            }
        }
    }

    /// Spreads the consumed units of one call over its entities by estimate.
    fn attribute_consumed(&self, pending: &[WriteRequest], consumed: f64) {
        let total: u64 = pending.iter().map(|r| r.write_units).sum();
        if total == 0 || consumed <= 0.0 {
            return;
        }
        let mut per_entity: HashMap<usize, u64> = HashMap::new();
        for r in pending {
            *per_entity.entry(r.entity).or_default() += r.write_units;
        }
        for (entity, units) in per_entity {
            let share = consumed * units as f64 / total as f64;
            RunStats::add(
                &self.stats.entity(entity).consumed_milli_wcu,
                (share * 1000.0).round() as u64,
            );
        }
    }

    async fn give_up(&self, items: Vec<WriteRequest>, reason: &str) -> Result<(), ()> {
        for r in items {
            let dl = DeadLetter {
                entity: r.entity,
                source_key: r.source_key,
                stage: "write",
                reason: reason.to_string(),
                item: r.item,
                raw: None,
                counted: r.counted,
            };
            self.dead.send(dl).await.map_err(|_| ())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::item::Item;

    fn req(key: &str) -> WriteRequest {
        WriteRequest {
            entity: 0,
            source_key: Item::new(),
            op: Op::Put,
            counted: true,
            item: Item::new(),
            key: key.into(),
            wire_bytes: 1,
            write_units: 1,
        }
    }

    #[test]
    fn classification_follows_the_documented_lists() {
        for code in [
            "ProvisionedThroughputExceededException",
            "ThrottlingException",
            "RequestLimitExceeded",
            "LimitExceededException",
            "InternalServerError",
        ] {
            assert_eq!(classify(Some(code), false), ErrorClass::Retryable, "{code}");
        }
        assert_eq!(
            classify(Some("ValidationException"), false),
            ErrorClass::Invalid
        );
        assert_eq!(
            classify(Some("ResourceNotFoundException"), false),
            ErrorClass::Fatal
        );
        assert_eq!(
            classify(Some("AccessDeniedException"), false),
            ErrorClass::Fatal
        );
        assert_eq!(classify(None, true), ErrorClass::Retryable);
        assert_eq!(classify(None, false), ErrorClass::Fatal);
    }

    #[test]
    fn unprocessed_items_are_resent_alone() {
        let (action, done) = decide(
            vec![req("a"), req("b"), req("c")],
            CallResult::Ok {
                unprocessed_keys: vec!["b".into()],
            },
        );
        assert_eq!(action, RetryAction::RetryPartial(vec![req("b")]));
        assert_eq!(done, vec![req("a"), req("c")]);
    }

    #[test]
    fn invalid_batches_split_and_invalid_singles_give_up() {
        let (a, _) = decide(
            vec![req("a"), req("b")],
            CallResult::Err {
                class: ErrorClass::Invalid,
                message: "dup".into(),
            },
        );
        assert_eq!(
            a,
            RetryAction::Split(vec![req("a"), req("b")], "dup".into())
        );
        let (a, _) = decide(
            vec![req("a")],
            CallResult::Err {
                class: ErrorClass::Invalid,
                message: "big".into(),
            },
        );
        assert_eq!(a, RetryAction::DontRetry(vec![req("a")], "big".into()));
        let (a, _) = decide(
            vec![req("a"), req("b")],
            CallResult::Err {
                class: ErrorClass::Fatal,
                message: "gone".into(),
            },
        );
        assert_eq!(
            a,
            RetryAction::Stop(vec![req("a"), req("b")], "gone".into())
        );
        let (a, _) = decide(
            vec![req("a")],
            CallResult::Err {
                class: ErrorClass::Retryable,
                message: "slow".into(),
            },
        );
        assert_eq!(a, RetryAction::Retry(vec![req("a")], "slow".into()));
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
}
