//! The BatchWriteItem sink: adaptive, bounded, ordered, explicit about retries.
//!
//! The sink task owns a [`Batcher`]; every batch it closes is written by its
//! own tokio task holding a call slot from the [`Controller`], so the calls
//! in flight follow the adaptive rate and a full channel back-pressures the
//! transform. A batch that holds a key still being written by an earlier
//! batch waits for that batch to land, so two writes of one key always land
//! in the order they were made. Before each call a task takes the batch's
//! write units from the controller (and items from the `--write-rate`
//! limiter). After each call [`decide`] names what happens next: done,
//! resend only the `UnprocessedItems`, resend all, split a batch DynamoDB
//! rejected as invalid into single writes (so one bad item does not take 24
//! good ones with it), give up on an invalid item (a dead letter), or stop
//! the run. Retryable errors are retried with full-jitter backoff for as
//! long as some write succeeds within the stall timeout; a transient error
//! never makes a dead letter. When the run stops (a fatal error, a stall),
//! every item still in hand is recorded as not written, with the reason.
//! A batch left open for [`LINGER`] without a new write is sent unfilled,
//! so a trickle of changes (a follow) is written within milliseconds.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash as _, Hasher as _};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::{
    DeleteRequest, PutRequest, ReturnConsumedCapacity, WriteRequest as SdkWriteRequest,
};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use super::batcher::{Batch, Batcher, Op, WriteRequest};
use super::dead_letter::{DeadLetter, Stage};
use super::rate::Controller;
use crate::checkpoint::tracker::Outcome;
use crate::item::key_text;
use crate::rate::Limit;
use crate::report::RunStats;
use crate::retry::{backoff, classify_sdk, ErrorClass};

/// How long an open batch waits for its next write before it is sent
/// unfilled. A copy's writes come faster than this; a follow's may not.
pub const LINGER: Duration = Duration::from_millis(50);

/// How long retries go on after a signal, without a successful write,
/// before the items in hand are recorded as not written.
pub const DRAIN_STALL: Duration = Duration::from_secs(30);

/// How the sink writes.
#[derive(Debug, Clone)]
pub struct WriterConfig {
    pub table: String,
    /// The target's primary key attribute names.
    pub key_names: Vec<String>,
    /// BatchWriteItem calls in flight at most (the controller may allow fewer).
    pub max_in_flight: usize,
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// Stop when no write at all has succeeded for this long.
    pub stall_timeout: Duration,
    /// Items per second, across the whole sink (a ceiling).
    pub items_per_second: Option<NonZeroU32>,
    /// Write units per second, across the whole sink, indexes counted (a ceiling).
    pub write_units_per_second: Option<NonZeroU32>,
    /// How often the achieved rate is sampled for the report.
    pub sample_every: Duration,
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
    /// Give up on these items: they are invalid (dead letters).
    DontRetry(Vec<WriteRequest>, String),
    /// Stop the run: every further call would fail the same way (a missing
    /// table, no permission). These items are not written.
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
    fn throttled(&self) -> bool {
        match self {
            CallResult::Ok { unprocessed_keys } => !unprocessed_keys.is_empty(),
            CallResult::Err { class, .. } => *class == ErrorClass::Retryable { throttle: true },
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
            class: ErrorClass::Retryable { .. },
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

/// The shared state of the sink's write tasks.
struct Shared {
    client: aws_sdk_dynamodb::Client,
    cfg: WriterConfig,
    items: Option<Limit>,
    ctl: Arc<Controller>,
    stats: Arc<RunStats>,
    dead: mpsc::Sender<DeadLetter>,
    /// Why the run stopped, once it has: every item still in hand is then
    /// recorded as not written instead of sent.
    stopped: Mutex<Option<String>>,
    on_stop: watch::Sender<bool>,
    /// Set on a signal: retries then give up after [`DRAIN_STALL`].
    shutdown: watch::Receiver<bool>,
    started: Instant,
    /// Milliseconds from `started` to the last successful write.
    last_progress_ms: AtomicU64,
}

/// Why the sink stopped.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("writing to {table} failed and the run stopped: {message}")]
    Fatal { table: String, message: String },
    #[error("the dead-letter task stopped early; items could not be recorded")]
    DeadLetterClosed,
}

/// The sink's channels and signals.
pub struct SinkIo {
    pub rx: mpsc::Receiver<SinkMsg>,
    pub dead: mpsc::Sender<DeadLetter>,
    /// Set by the sink when it stops the run (the sources stop reading).
    pub on_stop: watch::Sender<bool>,
    /// Set by a signal: drain with little patience.
    pub shutdown: watch::Receiver<bool>,
}

/// Runs the sink until its input closes and every batch is written, dead-
/// lettered or recorded as not written. A fatal error or a stall sets
/// `on_stop` so the sources stop reading.
pub async fn run(
    client: aws_sdk_dynamodb::Client,
    cfg: WriterConfig,
    io: SinkIo,
    stats: Arc<RunStats>,
) -> Result<(), SinkError> {
    let SinkIo {
        mut rx,
        dead,
        on_stop,
        shutdown,
    } = io;
    let started = Instant::now();
    let client = one_attempt(&client);
    let ceiling = cfg.write_units_per_second.map(|u| u.get() as f64);
    let ctl = Arc::new(Controller::new(ceiling, cfg.max_in_flight, started));
    let sampler = spawn_sampler(ctl.clone(), cfg.sample_every, stats.clone());
    let shared = Arc::new(Shared {
        items: cfg.items_per_second.map(Limit::new),
        ctl: ctl.clone(),
        client,
        cfg,
        stats,
        dead,
        stopped: Mutex::new(None),
        on_stop,
        shutdown,
        started,
        last_progress_ms: AtomicU64::new(0),
    });
    let mut batcher = Batcher::new();
    let mut flight = Flight::default();
    loop {
        let Some(next) = next_message(&mut rx, batcher.is_open()).await else {
            // Nothing came for a while (a follow between changes): the
            // open batch goes as it is rather than wait to fill.
            if let Some(batch) = batcher.finish() {
                flight.dispatch(&shared, batch).await;
            }
            flight.reap();
            continue;
        };
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
        if let Some(batch) = batch {
            flight.dispatch(&shared, batch).await;
        }
        if let Some(ack) = ack {
            // A phase ends: everything sent before the barrier has landed.
            flight.join_all().await;
            let _ = ack.send(());
        }
        flight.reap();
        if closed {
            break;
        }
    }
    flight.join_all().await;
    sampler.abort();
    shared.ctl.sample(Instant::now());
    RunStats::set_rate(&shared.stats, shared.ctl.summary());
    if flight.dead_closed {
        return Err(SinkError::DeadLetterClosed);
    }
    let stopped = shared.stopped.lock().ok().and_then(|f| f.clone());
    match stopped {
        Some(message) => Err(SinkError::Fatal {
            table: shared.cfg.table.clone(),
            message,
        }),
        None => Ok(()),
    }
}

/// The next message; `None` when a batch is open and nothing came for
/// [`LINGER`]. A message already waiting is taken without a timer (the
/// copy's hot path); `Some(None)` when the channel closed.
async fn next_message(rx: &mut mpsc::Receiver<SinkMsg>, open: bool) -> Option<Option<SinkMsg>> {
    match rx.try_recv() {
        Ok(msg) => return Some(Some(msg)),
        Err(mpsc::error::TryRecvError::Disconnected) => return Some(None),
        Err(mpsc::error::TryRecvError::Empty) => {}
    }
    match open {
        true => tokio::time::timeout(LINGER, rx.recv()).await.ok(),
        false => Some(rx.recv().await),
    }
}

/// The sink's own client, built once: the SDK makes one attempt per call,
/// so every throttle reaches the controller and the retry is ours.
fn one_attempt(client: &aws_sdk_dynamodb::Client) -> aws_sdk_dynamodb::Client {
    let conf = client
        .config()
        .to_builder()
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .build();
    aws_sdk_dynamodb::Client::from_conf(conf)
}

/// Samples the achieved rate every `every` until aborted.
/// Samples the achieved rate every `every` until aborted; the latest
/// sample is what the progress shows.
fn spawn_sampler(
    ctl: Arc<Controller>,
    every: Duration,
    stats: Arc<RunStats>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every.max(Duration::from_millis(10)));
        tick.tick().await;
        loop {
            tick.tick().await;
            stats.set_latest_rate(ctl.sample(Instant::now()));
        }
    })
}

/// The batches in flight and the keys they hold.
#[derive(Default)]
struct Flight {
    tasks: JoinSet<(Vec<u64>, bool)>,
    /// Key hashes of the batches in flight, with how many batches hold each.
    keys: HashMap<u64, u32>,
    dead_closed: bool,
}

impl Flight {
    /// Starts a task for `batch` once no batch in flight holds one of its
    /// keys and the controller gives a call slot.
    async fn dispatch(&mut self, shared: &Arc<Shared>, batch: Batch) {
        let hashes: Vec<u64> = batch.requests.iter().map(|r| key_hash(&r.key)).collect();
        while hashes.iter().any(|h| self.keys.contains_key(h)) {
            // An earlier write of one of these keys must land first.
            if !self.join_one().await {
                break;
            }
        }
        let slot = shared.ctl.acquire().await;
        for h in &hashes {
            *self.keys.entry(*h).or_default() += 1;
        }
        let shared = shared.clone();
        self.tasks.spawn(async move {
            let ok = shared.write_batch(batch.requests).await;
            drop(slot);
            (hashes, ok)
        });
    }

    fn done(&mut self, joined: Result<(Vec<u64>, bool), tokio::task::JoinError>) {
        match joined {
            Ok((hashes, ok)) => {
                self.dead_closed |= !ok;
                for h in hashes {
                    if let Some(n) = self.keys.get_mut(&h) {
                        *n -= 1;
                        if *n == 0 {
                            self.keys.remove(&h);
                        }
                    }
                }
            }
            Err(_) => self.dead_closed = true,
        }
    }

    /// Waits for one task; false when none is left.
    async fn join_one(&mut self) -> bool {
        match self.tasks.join_next().await {
            Some(j) => {
                self.done(j);
                true
            }
            None => {
                self.keys.clear();
                false
            }
        }
    }

    async fn join_all(&mut self) {
        while self.join_one().await {}
    }

    /// Collects finished tasks as we go so the sets stay small.
    fn reap(&mut self) {
        while let Some(j) = self.tasks.try_join_next() {
            self.done(j);
        }
    }
}

fn key_hash(key: &str) -> u64 {
    let mut h = DefaultHasher::new();
    key.hash(&mut h);
    h.finish()
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
        let began = Instant::now();
        loop {
            if let Some(why) = self.stop_reason() {
                self.record(pending, Stage::Unwritten, &why).await?;
                return Ok(None);
            }
            attempt += 1;
            if let Some(l) = &self.items {
                l.take(pending.len() as u64).await;
            }
            self.ctl
                .take(pending.iter().map(|r| r.write_units).sum())
                .await;
            let result = self.call(&pending).await;
            let throttled = result.throttled();
            if throttled {
                self.ctl.on_throttle(Instant::now());
                if let Some(rate) = self.ctl.rate() {
                    tracing::info!(
                        "throttled: the write rate is now {rate:.0} WCU/s, {} call(s) in flight at most",
                        self.ctl.in_flight_limit()
                    );
                }
            }
            let (action, done) = decide(pending, result);
            self.count_done(done);
            let (again, message) = match action {
                RetryAction::Successful => return Ok(None),
                RetryAction::RetryPartial(again) => (again, "unprocessed items".to_string()),
                RetryAction::Retry(all, message) => (all, message),
                RetryAction::Split(all, _) if may_split => return Ok(Some(all)),
                RetryAction::Stop(all, message) => {
                    let why = format!("BatchWriteItem failed, and the run stopped: {message}");
                    self.stop(&why);
                    self.record(all, Stage::Unwritten, &why).await?;
                    return Ok(None);
                }
                RetryAction::Split(all, message) | RetryAction::DontRetry(all, message) => {
                    let why = format!("BatchWriteItem rejected it: {message}");
                    self.record(all, Stage::Write, &why).await?;
                    return Ok(None);
                }
            };
            self.count_retry(&again, throttled);
            if let Some(stalled) = self.stalled(began) {
                let why = format!(
                    "no write succeeded for {} s (--stall-timeout); last error: {message}",
                    stalled.as_secs()
                );
                self.stop(&why);
                self.record(again, Stage::Unwritten, &why).await?;
                return Ok(None);
            }
            pending = again;
            let wait = backoff(attempt, self.cfg.base_delay, self.cfg.max_delay);
            tracing::info!(
                "BatchWriteItem: {message}; {} item(s) again in {} ms",
                pending.len(),
                wait.as_millis()
            );
            tokio::time::sleep(wait).await;
        }
    }

    fn stop_reason(&self) -> Option<String> {
        self.stopped.lock().ok().and_then(|s| s.clone())
    }

    /// Stops the run: the first reason stays.
    fn stop(&self, why: &str) {
        if let Ok(mut s) = self.stopped.lock() {
            s.get_or_insert_with(|| why.to_string());
        }
        let _ = self.on_stop.send(true);
    }

    /// How long no write has succeeded, when that is past the patience
    /// (the stall timeout, or [`DRAIN_STALL`] after a signal). The clock
    /// starts no earlier than this batch's first attempt (`began`): a sink
    /// that sat idle, as a follow does between changes, has not stalled.
    fn stalled(&self, began: Instant) -> Option<Duration> {
        let last = Duration::from_millis(self.last_progress_ms.load(Ordering::Relaxed));
        let since = self.started.elapsed().saturating_sub(last);
        let since = since.min(began.elapsed());
        let mut patience = self.cfg.stall_timeout;
        if *self.shutdown.borrow() {
            patience = patience.min(DRAIN_STALL);
        }
        (since >= patience).then_some(since)
    }

    /// Counts what was written, and settles each request's share of its
    /// source batch.
    fn count_done(&self, done: Vec<WriteRequest>) {
        if done.is_empty() {
            return;
        }
        let now = Instant::now();
        let ms = now.saturating_duration_since(self.started).as_millis() as u64;
        self.last_progress_ms.fetch_max(ms, Ordering::Relaxed);
        let (n, mut units) = (done.len() as u64, 0);
        for r in done {
            let c = self.stats.entity(r.entity);
            let (counter, outcome) = match (r.counted, r.op) {
                (true, Op::Put) if r.overwrites => (&c.overwritten, Outcome::Overwritten),
                (true, Op::Put) => (&c.written, Outcome::Written),
                (true, Op::Delete) => (&c.deleted, Outcome::Deleted),
                (false, _) => (&c.stale_deleted, Outcome::StaleDeleted),
            };
            RunStats::add(counter, 1);
            RunStats::add(&c.estimated_wcu, r.write_units);
            units += r.write_units;
            if let Some(part) = r.part {
                part.count(outcome);
                part.settle();
            }
        }
        self.ctl.on_success(n, units, now);
    }

    fn count_retry(&self, again: &[WriteRequest], throttled: bool) {
        for r in again {
            let c = self.stats.entity(r.entity);
            RunStats::add(&c.retries, 1);
            if throttled {
                RunStats::add(&c.throttles, 1);
            }
        }
    }

    /// Sends one BatchWriteItem call for `pending` (one attempt: see
    /// [`one_attempt`]).
    async fn call(&self, pending: &[WriteRequest]) -> CallResult {
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
                return CallResult::Err {
                    class: ErrorClass::Invalid,
                    message: format!("could not build the request: {e}"),
                }
            }
        };
        let call = self
            .client
            .batch_write_item()
            .request_items(&self.cfg.table, requests)
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send();
        let out = crate::aws::noting_slow("BatchWriteItem", call).await;
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
                CallResult::Ok { unprocessed_keys }
            }
            Err(e) => CallResult::Err {
                class: classify_sdk(&e),
                message: crate::aws::describe_error(&e),
            },
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

    /// Hands items to the dead-letter task: rejected ones as dead letters,
    /// ones the stopped run could not write as not written.
    async fn record(&self, items: Vec<WriteRequest>, stage: Stage, reason: &str) -> Result<(), ()> {
        for r in items {
            let dl = DeadLetter {
                entity: r.entity,
                source_key: r.source_key,
                stage,
                op: r.op,
                reason: reason.to_string(),
                item: r.item,
                raw: None,
                counted: r.counted,
                part: r.part,
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
            overwrites: false,
            item: Item::new(),
            key: key.into(),
            wire_bytes: 1,
            write_units: 1,
            part: None,
        }
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
                class: ErrorClass::Retryable { throttle: false },
                message: "slow".into(),
            },
        );
        assert_eq!(a, RetryAction::Retry(vec![req("a")], "slow".into()));
    }

    #[tokio::test]
    async fn the_sink_client_makes_one_attempt_and_keeps_the_rest() {
        let opts = crate::aws::AwsOptions {
            region: Some("eu-north-1".into()),
            endpoint_url: Some("http://127.0.0.1:9".into()),
            static_credentials: Some(("a".into(), "b".into())),
            ..Default::default()
        };
        let client = crate::aws::dynamodb(&crate::aws::load(&opts).await);
        let ours = one_attempt(&client);
        let retry = ours.config().retry_config().unwrap();
        assert_eq!(retry.max_attempts(), 1);
        assert_eq!(client.config().retry_config().unwrap().max_attempts(), 3);
        assert_eq!(ours.config().region().unwrap().as_ref(), "eu-north-1");
        assert!(ours
            .config()
            .timeout_config()
            .unwrap()
            .operation_attempt_timeout()
            .is_some());
    }
}
