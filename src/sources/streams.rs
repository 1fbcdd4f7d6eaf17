//! The Streams source: the legacy tables' DynamoDB Streams, read shard by
//! shard, for `follow`.
//!
//! This module owns what can be known of a stream before reading it (is it
//! enabled, does its view carry what the mapping needs: [`discover`]), the
//! list of a stream's shards ([`shards`]), and the reader of one shard
//! ([`read_shard`]): GetShardIterator from where the shard stands, then
//! GetRecords until the shard closes (no `NextShardIterator`: an open
//! shard's `EndingSequenceNumber` is not taken for a close), each page sent
//! as a [`SourceBatch`] of changes whose ticket carries the last record's
//! sequence number. Records older than the follow's start time are
//! skipped. A page that fails with a retryable error is asked for again;
//! an expired iterator is renewed after the last record read; records the
//! stream has already trimmed stop the follow (they are lost to it). What
//! a reader has seen (the newest record, the last time it found the shard
//! at its tip) is kept in a [`ShardWatch`] for the lag figures.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodbstreams::types::{AttributeValue as StreamValue, OperationType};
use aws_sdk_dynamodbstreams::types::{Record, ShardIteratorType};
use tokio::sync::{mpsc, watch};

use super::{SourceBatch, SourceMsg, SourceRecord};
pub use crate::checkpoint::StreamRef;
use crate::checkpoint::{Cursor, Step};
use crate::item::Item;
use crate::mapping::Mapping;
use crate::retry::{classify_sdk, Patience};

pub type StreamsClient = aws_sdk_dynamodbstreams::Client;

/// How long DynamoDB Streams keeps a record.
pub const RETENTION: Duration = Duration::from_secs(24 * 3600);
/// A record read this old is near its expiry: the follower is warned.
pub const RETENTION_WARNING: Duration = Duration::from_secs(20 * 3600);
/// Records per GetRecords call (DynamoDB's most).
const PAGE: i32 = 1000;
/// Empty pages in a row that say a shard is read to its tip.
const EMPTY_AT_TIP: u32 = 2;

/// Why a stream cannot be followed.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("the legacy tables' streams cannot be followed:\n{0}")]
    NotFollowable(String),
    #[error("source table {table}: {message}")]
    Describe { table: String, message: String },
    #[error("stream of {table} ({arn}): {call}: {message}")]
    Call {
        table: String,
        arn: String,
        call: &'static str,
        message: String,
    },
    #[error("stream of {table}, shard {shard}: its records from {position} are past the stream's 24-hour retention (TrimmedDataAccessException): changes made then are lost to the follow; migrate again (a new export or scan) and follow from its start")]
    Trimmed {
        table: String,
        shard: String,
        position: String,
    },
}

/// The command that gives a table a stream with both images.
pub fn enable_command(table: &str) -> String {
    format!("aws dynamodb update-table --table-name {table} --stream-specification StreamEnabled=true,StreamViewType=NEW_AND_OLD_IMAGES")
}

/// What is wrong with following `view` for an entity, if anything: the
/// stream must carry new images, and a delete (or an update that moves the
/// item) needs the old image unless the target key is made of the legacy
/// key alone. `missing` are the target-key attributes not in the legacy key.
pub fn view_problem(view: &str, missing: &[String]) -> Option<String> {
    match view {
        "NEW_AND_OLD_IMAGES" => None,
        "NEW_IMAGE" if missing.is_empty() => None,
        "NEW_IMAGE" => Some(format!(
            "its view is NEW_IMAGE, so a delete carries only the legacy key, but the target key also needs {}",
            missing.join(", ")
        )),
        other => Some(format!(
            "its view is {other}: it carries no new image, so a put cannot be made from it"
        )),
    }
}

/// Finds every legacy table's stream and checks that it can be followed;
/// all problems are named at once, each with its fix.
pub async fn discover(
    client: &aws_sdk_dynamodb::Client,
    mapping: &Mapping,
) -> Result<Vec<StreamRef>, StreamError> {
    let mut found = Vec::new();
    let mut problems = Vec::new();
    for (entity, e) in mapping.entities.iter().enumerate() {
        let table = &e.source_table;
        let desc = crate::aws::describe_table(client, table)
            .await
            .map_err(|message| StreamError::Describe {
                table: table.clone(),
                message,
            })?
            .ok_or_else(|| StreamError::Describe {
                table: table.clone(),
                message: format!("it does not exist (entity {})", e.name),
            })?;
        let spec = desc.stream_specification().filter(|s| s.stream_enabled());
        let (Some(spec), Some(arn)) = (spec, desc.latest_stream_arn()) else {
            problems.push(format!(
                "  {table}: it has no stream; enable one: {}",
                enable_command(table)
            ));
            continue;
        };
        let view = spec
            .stream_view_type()
            .map_or("KEYS_ONLY", |v| v.as_str())
            .to_string();
        let missing = super::target_key_beyond_legacy_key(e, mapping);
        if let Some(problem) = view_problem(&view, &missing) {
            problems.push(format!(
                "  {table}: {problem}. A stream's view cannot be changed in place: aws dynamodb update-table --table-name {table} --stream-specification StreamEnabled=false, then {} (the new stream holds only changes made after it is enabled: do this before the bulk copy starts)",
                enable_command(table)
            ));
            continue;
        }
        found.push(StreamRef {
            entity,
            table: table.clone(),
            arn: arn.to_string(),
            view,
            skip_before: None,
        });
    }
    if !problems.is_empty() {
        return Err(StreamError::NotFollowable(problems.join("\n")));
    }
    Ok(found)
}

/// One shard of a stream.
#[derive(Debug, Clone, PartialEq)]
pub struct ShardInfo {
    pub id: String,
    pub parent: Option<String>,
}

/// Every shard of a stream (DescribeStream, page by page), retrying
/// transient errors for up to `stall`.
pub async fn shards(
    streams: &StreamsClient,
    stream: &StreamRef,
    stall: Duration,
) -> Result<Vec<ShardInfo>, StreamError> {
    let mut out = Vec::new();
    let mut start: Option<String> = None;
    let mut patience = Patience::new(stall);
    loop {
        let call = streams
            .describe_stream()
            .stream_arn(&stream.arn)
            .set_exclusive_start_shard_id(start.clone())
            .send()
            .await;
        let desc = match call {
            Ok(o) => o.stream_description,
            Err(e) => {
                let retry = classify_sdk(&e).retryable().then(|| patience.failure());
                match retry.flatten() {
                    Some(wait) => {
                        tokio::time::sleep(wait).await;
                        continue;
                    }
                    None => return Err(call_error(stream, "DescribeStream", &e)),
                }
            }
        };
        patience.success();
        let Some(desc) = desc else { break };
        for s in desc.shards.unwrap_or_default() {
            if let Some(id) = s.shard_id {
                out.push(ShardInfo {
                    id,
                    parent: s.parent_shard_id,
                });
            }
        }
        match desc.last_evaluated_shard_id {
            Some(last) => start = Some(last),
            None => break,
        }
    }
    Ok(out)
}

fn call_error<E, R>(
    stream: &StreamRef,
    call: &'static str,
    e: &aws_sdk_dynamodb::error::SdkError<E, R>,
) -> StreamError
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    StreamError::Call {
        table: stream.table.clone(),
        arn: stream.arn.clone(),
        call,
        message: crate::aws::describe_error(e),
    }
}

/// Where a shard's reading starts.
#[derive(Debug, Clone, PartialEq)]
pub enum Position {
    /// After this sequence number (a checkpoint).
    After(String),
    /// The oldest record the stream keeps.
    TrimHorizon,
    /// Only records made from now on.
    Latest,
}

/// What the readers of a run have seen of one shard, for the lag figures.
#[derive(Debug, Default)]
pub struct ShardWatch {
    /// When the newest record read was made (epoch ms); 0 before any.
    pub newest_read_ms: AtomicI64,
    /// When the shard was last found at its tip (epoch ms): every record
    /// made before then is read. 0 when records came since.
    pub tip_seen_ms: AtomicI64,
    /// The shard closed and every record of it was read.
    pub drained: AtomicBool,
}

/// The reading of one shard.
pub struct ShardRead {
    pub streams: StreamsClient,
    pub stream: StreamRef,
    pub shard: String,
    pub from: Position,
    /// Records made before this (epoch ms) are skipped.
    pub skip_before_ms: Option<i64>,
    pub tx: mpsc::Sender<SourceMsg>,
    pub cursor: Cursor,
    pub shutdown: watch::Receiver<bool>,
    pub watch: Arc<ShardWatch>,
    /// How long to wait after an empty page.
    pub poll: Duration,
    /// How long failing calls are retried before the follow stops.
    pub stall: Duration,
    /// Called with (entity, records) for every page's records that go on.
    pub on_records: Arc<dyn Fn(usize, u64) + Send + Sync>,
    /// Called with (entity, records skipped as older than the start).
    pub on_skipped: Arc<dyn Fn(usize, u64) + Send + Sync>,
}

/// How a shard's reading ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardEnd {
    /// The shard closed and was read to its end.
    Drained,
    /// The follow is stopping.
    Stopped,
}

/// Now, in epoch milliseconds.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl ShardRead {
    /// Reads the shard until it is drained or the follow stops.
    pub async fn run(self) -> Result<ShardEnd, StreamError> {
        let mut last_read: Option<String> = match &self.from {
            Position::After(seq) => Some(seq.clone()),
            _ => None,
        };
        let mut iterator = self.iterator(&self.from).await?;
        let mut patience = Patience::new(self.stall);
        let mut empty = 0u32;
        loop {
            if *self.shutdown.borrow() {
                return Ok(ShardEnd::Stopped);
            }
            let Some(it) = iterator.take() else {
                return Ok(self.drained());
            };
            let call = self
                .streams
                .get_records()
                .shard_iterator(&it)
                .limit(PAGE)
                .send()
                .await;
            let out = match call {
                Ok(out) => out,
                Err(e) => {
                    let code = crate::aws::error_code(&e);
                    if code.as_deref() == Some("ExpiredIteratorException") {
                        let from = last_read.clone().map_or(self.from.clone(), Position::After);
                        iterator = self.iterator(&from).await?;
                        continue;
                    }
                    if code.as_deref() == Some("TrimmedDataAccessException") {
                        return Err(self.trimmed(last_read.as_deref()));
                    }
                    match classify_sdk(&e).retryable().then(|| patience.failure()) {
                        Some(Some(wait)) => {
                            iterator = Some(it);
                            tokio::time::sleep(wait).await;
                            continue;
                        }
                        _ => return Err(call_error(&self.stream, "GetRecords", &e)),
                    }
                }
            };
            patience.success();
            iterator = out.next_shard_iterator;
            let records = out.records.unwrap_or_default();
            if records.is_empty() {
                empty += 1;
                if empty >= EMPTY_AT_TIP && iterator.is_some() {
                    // At the tip as of now: every record made before this
                    // call has been read.
                    self.watch.tip_seen_ms.store(now_ms(), Ordering::Relaxed);
                    self.pause().await;
                }
                continue;
            }
            empty = 0;
            self.watch.tip_seen_ms.store(0, Ordering::Relaxed);
            if let Some(seq) = self.send_page(records).await? {
                last_read = Some(seq);
            }
        }
    }

    /// The shard is read to its end.
    fn drained(&self) -> ShardEnd {
        self.cursor.finish();
        self.watch.drained.store(true, Ordering::Relaxed);
        ShardEnd::Drained
    }

    /// Waits `poll`, or until the follow stops.
    async fn pause(&self) {
        let mut stop = self.shutdown.clone();
        tokio::select! {
            _ = tokio::time::sleep(self.poll) => {}
            _ = stop.wait_for(|s| *s) => {}
        }
    }

    /// Sends a page's changes (those not older than the start) in batches
    /// of [`BATCH`], each with a ticket that moves the shard to its last
    /// record (records skipped after the last change move it too); returns
    /// the page's last sequence number.
    async fn send_page(&self, records: Vec<Record>) -> Result<Option<String>, StreamError> {
        let page = Page::of(records, self.skip_before_ms);
        let entity = self.stream.entity;
        if page.skipped > 0 {
            (self.on_skipped)(entity, page.skipped);
        }
        if let Some((_, made)) = &page.last {
            self.watch
                .newest_read_ms
                .fetch_max(*made, Ordering::Relaxed);
        }
        let last = page.last.as_ref().map(|(seq, _)| seq.clone());
        let mut sent_to: Option<(String, i64)> = None;
        let mut positions = page.positions.into_iter();
        let mut changes = page.changes.into_iter().peekable();
        while changes.peek().is_some() {
            let records: Vec<SourceRecord> = changes.by_ref().take(BATCH).collect();
            // A record without a sequence number (never seen on AWS) still
            // goes on; the shard's position just does not move for it.
            let at = positions.by_ref().take(records.len()).flatten().last();
            sent_to = at.clone().or(sent_to);
            let step = Step {
                records: records.len() as u64,
                sequence: at,
                ..Step::default()
            };
            let part = self.cursor.issue(step);
            (self.on_records)(entity, records.len() as u64);
            let batch = SourceBatch {
                entity,
                records,
                part: Some(part),
            };
            // A closed channel: the follow is stopping; the ticket is
            // dropped unsettled, so the shard resumes before this batch.
            if self.tx.send(SourceMsg::Batch(batch)).await.is_err() {
                return Ok(last);
            }
        }
        if page.last.is_some() && page.last != sent_to {
            // Skipped records after the last change: passed at once.
            let step = Step {
                sequence: page.last.clone(),
                ..Step::default()
            };
            self.cursor.issue(step).settle();
        }
        Ok(last)
    }

    /// An iterator at `from`; `None` when the shard has nothing more.
    async fn iterator(&self, from: &Position) -> Result<Option<String>, StreamError> {
        let at = (&self.stream, self.shard.as_str());
        iterator(&self.streams, at, from, self.stall).await
    }

    fn trimmed(&self, after: Option<&str>) -> StreamError {
        trimmed(&self.stream, &self.shard, after)
    }
}

fn trimmed(stream: &StreamRef, shard: &str, after: Option<&str>) -> StreamError {
    StreamError::Trimmed {
        table: stream.table.clone(),
        shard: shard.to_string(),
        position: after.map_or("its start".to_string(), |s| {
            format!("after sequence number {s}")
        }),
    }
}

/// A shard iterator of `shard` at `from`, retrying transient errors for up
/// to `stall`; `None` when the shard has nothing more.
pub async fn iterator(
    streams: &StreamsClient,
    (stream, shard): (&StreamRef, &str),
    from: &Position,
    stall: Duration,
) -> Result<Option<String>, StreamError> {
    let (kind, seq) = match from {
        Position::After(s) => (ShardIteratorType::AfterSequenceNumber, Some(s.clone())),
        Position::TrimHorizon => (ShardIteratorType::TrimHorizon, None),
        Position::Latest => (ShardIteratorType::Latest, None),
    };
    let mut patience = Patience::new(stall);
    loop {
        let call = streams
            .get_shard_iterator()
            .stream_arn(&stream.arn)
            .shard_id(shard)
            .shard_iterator_type(kind.clone())
            .set_sequence_number(seq.clone())
            .send()
            .await;
        match call {
            Ok(out) => return Ok(out.shard_iterator),
            Err(e) => {
                if crate::aws::error_code(&e).as_deref() == Some("TrimmedDataAccessException") {
                    return Err(trimmed(stream, shard, seq.as_deref()));
                }
                match classify_sdk(&e).retryable().then(|| patience.failure()) {
                    Some(Some(wait)) => tokio::time::sleep(wait).await,
                    _ => return Err(call_error(stream, "GetShardIterator", &e)),
                }
            }
        }
    }
}

/// How many changes (made at or after `skip_before_ms`) a shard holds after
/// `from`, counted up to `cap` (`cutover-check`'s "behind"). Reads until
/// the shard's tip (two empty pages) or its end.
pub async fn count_after(
    streams: &StreamsClient,
    at: (&StreamRef, &str),
    from: &Position,
    skip_before_ms: Option<i64>,
    cap: u64,
) -> Result<u64, StreamError> {
    let stall = Duration::from_secs(60);
    let mut it = iterator(streams, at, from, stall).await?;
    let (mut count, mut empty) = (0u64, 0u32);
    while let Some(i) = it.take() {
        if count >= cap || empty >= EMPTY_AT_TIP {
            break;
        }
        let out = streams
            .get_records()
            .shard_iterator(&i)
            .limit(PAGE)
            .send()
            .await
            .map_err(|e| call_error(at.0, "GetRecords", &e))?;
        let page = Page::of(out.records.unwrap_or_default(), skip_before_ms);
        count += page.changes.len() as u64;
        empty = if page.last.is_none() { empty + 1 } else { 0 };
        it = out.next_shard_iterator;
    }
    Ok(count)
}

/// Changes sent on in one batch at most (a GetRecords page holds up to
/// 1,000): as many as a Scan page, so a follow holds no more in memory.
const BATCH: usize = 250;

/// One GetRecords page, as changes.
#[derive(Debug, Default, PartialEq)]
pub struct Page {
    pub changes: Vec<SourceRecord>,
    /// Each change's sequence number and when it was made.
    pub positions: Vec<Option<(String, i64)>>,
    /// Records made before the start time.
    pub skipped: u64,
    /// The last record's sequence number and when it was made (epoch ms).
    pub last: Option<(String, i64)>,
}

impl Page {
    /// The changes of `records`, skipping those made before `skip_before_ms`.
    /// A record the stream sent without a sequence number or keys is
    /// still a change (dead-lettered by the transform, never dropped).
    pub fn of(records: Vec<Record>, skip_before_ms: Option<i64>) -> Page {
        let mut page = Page::default();
        for r in records {
            let remove = r.event_name == Some(OperationType::Remove);
            let Some(sr) = r.dynamodb else {
                page.changes.push(SourceRecord::Bad {
                    reason: "a stream record without its dynamodb part".into(),
                    raw: String::new(),
                });
                page.positions.push(None);
                continue;
            };
            let made = sr
                .approximate_creation_date_time
                .and_then(|t| t.to_millis().ok())
                .unwrap_or_else(now_ms);
            let at = sr.sequence_number.clone().map(|seq| (seq, made));
            if at.is_some() {
                page.last = at.clone();
            }
            if skip_before_ms.is_some_and(|s| made < s) {
                page.skipped += 1;
                continue;
            }
            let image = |m: Option<std::collections::HashMap<String, StreamValue>>| m.map(item);
            page.changes.push(SourceRecord::Change {
                keys: sr.keys.map(item).unwrap_or_default(),
                new: if remove { None } else { image(sr.new_image) },
                old: image(sr.old_image),
            });
            page.positions.push(at);
        }
        page
    }
}

/// A stream's item as the DynamoDB SDK's item.
pub fn item(m: std::collections::HashMap<String, StreamValue>) -> Item {
    m.into_iter().map(|(k, v)| (k, value(v))).collect()
}

fn value(v: StreamValue) -> aws_sdk_dynamodb::types::AttributeValue {
    use aws_sdk_dynamodb::primitives::Blob;
    use aws_sdk_dynamodb::types::AttributeValue as V;
    match v {
        StreamValue::S(s) => V::S(s),
        StreamValue::N(n) => V::N(n),
        StreamValue::B(b) => V::B(Blob::new(b.into_inner())),
        StreamValue::Bool(b) => V::Bool(b),
        StreamValue::Null(b) => V::Null(b),
        StreamValue::Ss(s) => V::Ss(s),
        StreamValue::Ns(n) => V::Ns(n),
        StreamValue::Bs(b) => V::Bs(b.into_iter().map(|b| Blob::new(b.into_inner())).collect()),
        StreamValue::L(l) => V::L(l.into_iter().map(value).collect()),
        StreamValue::M(m) => V::M(item(m)),
        // A type this SDK does not know: kept as a NULL the transform's
        // checks will name, never dropped silently.
        _ => V::Null(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodbstreams::types::StreamRecord;
    use aws_smithy_types::DateTime;

    fn rec(name: OperationType, seq: &str, secs: i64, id: &str) -> Record {
        let key: std::collections::HashMap<String, StreamValue> =
            [("id".to_string(), StreamValue::S(id.into()))].into();
        let mut new = key.clone();
        new.insert("n".into(), StreamValue::N("1".into()));
        Record::builder()
            .event_name(name)
            .dynamodb(
                StreamRecord::builder()
                    .set_keys(Some(key.clone()))
                    .set_new_image(Some(new))
                    .set_old_image(Some(key))
                    .sequence_number(seq)
                    .approximate_creation_date_time(DateTime::from_secs(secs))
                    .build(),
            )
            .build()
    }

    #[test]
    fn a_page_skips_records_older_than_the_start_and_keeps_its_last_position() {
        let page = Page::of(
            vec![
                rec(OperationType::Insert, "100000000000000000001", 10, "a"),
                rec(OperationType::Modify, "100000000000000000002", 20, "a"),
                rec(OperationType::Remove, "100000000000000000003", 30, "b"),
            ],
            Some(15_000),
        );
        assert_eq!(page.skipped, 1);
        assert_eq!(
            page.last,
            Some(("100000000000000000003".to_string(), 30_000))
        );
        assert_eq!(page.changes.len(), 2);
        let seqs: Vec<&str> = page
            .positions
            .iter()
            .flatten()
            .map(|p| p.0.as_str())
            .collect();
        assert_eq!(seqs, ["100000000000000000002", "100000000000000000003"]);
        let SourceRecord::Change { new, old, keys } = &page.changes[1] else {
            panic!("a change: {:?}", page.changes[1]);
        };
        assert!(
            new.is_none(),
            "a REMOVE puts nothing, whatever images it has"
        );
        assert!(old.is_some());
        assert_eq!(keys.len(), 1);
        assert!(
            matches!(&page.changes[0], SourceRecord::Change { new: Some(n), .. } if n.len() == 2)
        );
        // Everything skipped: the position still moves past it.
        let all = Page::of(
            vec![rec(OperationType::Insert, "100000000000000000004", 10, "c")],
            Some(15_000),
        );
        assert!(all.changes.is_empty());
        assert_eq!(all.last.map(|l| l.1), Some(10_000));
    }

    #[test]
    fn a_view_is_followable_only_when_it_carries_what_the_mapping_needs() {
        let none: Vec<String> = Vec::new();
        let user = vec!["userId".to_string()];
        assert_eq!(view_problem("NEW_AND_OLD_IMAGES", &user), None);
        assert_eq!(view_problem("NEW_IMAGE", &none), None);
        assert!(view_problem("NEW_IMAGE", &user).unwrap().contains("userId"));
        assert!(view_problem("KEYS_ONLY", &none)
            .unwrap()
            .contains("no new image"));
        assert!(view_problem("OLD_IMAGE", &none)
            .unwrap()
            .contains("OLD_IMAGE"));
    }

    #[test]
    fn stream_values_convert_to_the_same_values() {
        let m: std::collections::HashMap<String, StreamValue> = [
            ("s".to_string(), StreamValue::S("x".into())),
            (
                "l".to_string(),
                StreamValue::L(vec![
                    StreamValue::N("1.50".into()),
                    StreamValue::Ss(vec!["a".into()]),
                    StreamValue::B(aws_smithy_types::Blob::new(vec![1, 2])),
                ]),
            ),
            (
                "m".to_string(),
                StreamValue::M([("b".to_string(), StreamValue::Bool(true))].into()),
            ),
        ]
        .into();
        let json = crate::item::item_to_json(&item(m));
        assert_eq!(
            json,
            serde_json::json!({
                "s": {"S": "x"},
                "l": {"L": [{"N": "1.50"}, {"SS": ["a"]}, {"B": "AQI="}]},
                "m": {"M": {"b": {"BOOL": true}}}
            })
        );
    }
}
