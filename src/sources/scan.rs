//! The Scan source: a legacy table read by parallel Scan segments.
//!
//! One tokio task per segment (bounded by a semaphore shared by all tables),
//! each following its own `LastEvaluatedKey`. Pages go out through a bounded
//! channel as [`SourceBatch`]es, so a slow sink slows the scan instead of
//! filling memory. Reads are eventually consistent unless asked otherwise,
//! and a per-table read-unit limit keeps a production table's traffic
//! served. A shutdown signal stops reading between pages. A page that
//! fails with a retryable error (throttling, 5xx, a timeout, a reset) is
//! asked for again from the same `LastEvaluatedKey`, with backoff, until
//! the stall timeout passes without a page.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::operation::scan::builders::ScanFluentBuilder;
use aws_sdk_dynamodb::types::{ReturnConsumedCapacity, Select};
use tokio::sync::{mpsc, watch, Semaphore};

use super::{SourceBatch, SourceError, SourceMsg, SourceRecord, TableInfo};
use crate::checkpoint::{Cursor, Step};
use crate::item::{item_size, Item};
use crate::rate::Limit;
use crate::retry::{classify_sdk, Patience};

/// How a table is scanned.
#[derive(Debug, Clone)]
pub struct ScanConfig {
    /// Segments per table; `None` derives them from the table's size.
    pub segments: Option<u32>,
    pub consistent_read: bool,
    /// Read units per second per table.
    pub read_units_per_second: Option<NonZeroU32>,
    /// Items per page; `None` lets DynamoDB fill 1 MB pages.
    pub page_limit: Option<i32>,
    /// Read only these attributes (verify's counts); `None` reads whole items.
    pub projection: Option<Vec<String>>,
    /// How long a segment retries failing pages before the run stops.
    pub stall_timeout: Duration,
}

/// The default segment count: one per 2 GB (AWS's advice), at least 4 for a
/// table of more than a few thousand items so a small migration still runs
/// in parallel, at most 1,000.
pub fn default_segments(size_bytes: i64, item_count: i64) -> u32 {
    const TWO_GB: i64 = 2 * 1024 * 1024 * 1024;
    let by_size = (size_bytes.max(0) + TWO_GB - 1) / TWO_GB;
    let floor = if item_count > 5_000 { 4 } else { 1 };
    by_size.clamp(floor, 1000) as u32
}

/// One Scan segment to read: where it starts, and its cursor when the run
/// keeps a state (each page's ticket carries the key after it).
#[derive(Debug, Clone)]
pub struct Segment {
    pub index: u32,
    pub total: u32,
    /// The `ExclusiveStartKey` of its first page (none: the beginning).
    pub start: Option<Item>,
    pub cursor: Option<Cursor>,
}

/// Every segment of a table, from the beginning, untracked.
pub fn all_segments(info: &TableInfo, cfg: &ScanConfig) -> Vec<Segment> {
    let total = segment_count(info, cfg);
    (0..total)
        .map(|index| Segment {
            index,
            total,
            start: None,
            cursor: None,
        })
        .collect()
}

/// The segments a table is scanned in: `--segments`, or by its size.
pub fn segment_count(info: &TableInfo, cfg: &ScanConfig) -> u32 {
    cfg.segments
        .unwrap_or_else(|| default_segments(info.size_bytes, info.item_count))
        .max(1)
}

/// What every segment of one table shares.
pub struct TableScan {
    pub client: aws_sdk_dynamodb::Client,
    pub info: TableInfo,
    pub entity: usize,
    pub cfg: ScanConfig,
    pub tx: mpsc::Sender<SourceMsg>,
    pub permits: Arc<Semaphore>,
    pub shutdown: watch::Receiver<bool>,
    pub on_page: Arc<dyn Fn(usize, u64) + Send + Sync>,
}

/// Scans `segments` of one table to the end (or to shutdown), sending
/// their pages to `tx`. Returns the number of items read.
pub async fn scan_table(scan: TableScan, segments: Vec<Segment>) -> Result<u64, SourceError> {
    let limiter = scan
        .cfg
        .read_units_per_second
        .map(|r| Arc::new(Limit::new(r)));
    let scan = Arc::new(scan);
    let mut tasks = tokio::task::JoinSet::new();
    for segment in segments {
        let (scan, limiter) = (scan.clone(), limiter.clone());
        tasks.spawn(async move {
            let _permit = scan
                .permits
                .clone()
                .acquire_owned()
                .await
                .map_err(|_| SourceError::Cancelled)?;
            scan_segment(&scan, segment, limiter.as_deref()).await
        });
    }
    let mut total = 0u64;
    let mut first_error = None;
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Ok(n)) => total += n,
            Ok(Err(e)) => {
                first_error.get_or_insert(e);
            }
            Err(join) => {
                first_error.get_or_insert(SourceError::Task(join.to_string()));
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(total),
    }
}

async fn scan_segment(
    scan: &TableScan,
    segment: Segment,
    limiter: Option<&Limit>,
) -> Result<u64, SourceError> {
    let (client, table, cfg) = (&scan.client, scan.info.name.as_str(), &scan.cfg);
    let mut start_key = segment.start.clone();
    let mut read = 0u64;
    tracing::debug!(
        "scanning {table} segment {} of {} ({})",
        segment.index + 1,
        segment.total,
        if start_key.is_some() {
            "resumed"
        } else {
            "from the start"
        }
    );
    let mut patience = Patience::new(cfg.stall_timeout);
    loop {
        if *scan.shutdown.borrow() {
            return Ok(read);
        }
        let req = scan_request(client, table, &segment, cfg, start_key.clone());
        let what = format!("Scan of {table} segment {}", segment.index + 1);
        let mut page = match crate::aws::noting_slow(&what, req.send()).await {
            Ok(page) => {
                patience.success();
                page
            }
            Err(e) => {
                let wait = retry_wait(&e, &mut patience, table, segment.index)?;
                tracing::info!(
                    "{table} segment {}: {}; asking again in {} ms",
                    segment.index + 1,
                    crate::aws::describe_error(&e),
                    wait.as_millis()
                );
                tokio::time::sleep(wait).await;
                continue;
            }
        };
        // Take the page's items rather than copy them.
        let items = page.items.take().unwrap_or_default();
        let n = items.len() as u64;
        read += n;
        if let Some(lim) = limiter {
            lim.take(page_units(&page, &items, cfg.consistent_read))
                .await;
        }
        let next = page.last_evaluated_key().filter(|k| !k.is_empty()).cloned();
        let step = Step {
            records: n,
            after: next.clone(),
            end: next.is_none(),
            sequence: None,
        };
        let part = segment.cursor.as_ref().map(|c| c.issue(step));
        if items.is_empty() {
            // Nothing to write: the page is done as soon as it is read.
            if let Some(part) = part {
                part.settle();
            }
        } else {
            (scan.on_page)(scan.entity, n);
            let records = items.into_iter().map(SourceRecord::Item).collect();
            let batch = SourceBatch {
                entity: scan.entity,
                records,
                part,
            };
            scan.tx
                .send(SourceMsg::Batch(batch))
                .await
                .map_err(|_| SourceError::Cancelled)?;
        }
        match next {
            Some(k) => start_key = Some(k),
            None => return Ok(read),
        }
    }
}

/// What a page cost: the service's count, or our estimate (4 KB units,
/// halved for eventually consistent reads).
fn page_units(
    page: &aws_sdk_dynamodb::operation::scan::ScanOutput,
    items: &[Item],
    consistent: bool,
) -> u64 {
    let units = page
        .consumed_capacity()
        .and_then(|c| c.capacity_units())
        .unwrap_or_else(|| {
            let bytes: usize = items.iter().map(item_size).sum();
            let units = (bytes as f64 / 4096.0).ceil();
            if consistent {
                units
            } else {
                units / 2.0
            }
        });
    units.ceil() as u64
}

/// After a failed page: how long to wait before asking again, or the
/// error that ends the scan (not retryable, or stalled).
fn retry_wait<E>(
    e: &aws_sdk_dynamodb::error::SdkError<E, aws_sdk_dynamodb::config::http::HttpResponse>,
    patience: &mut Patience,
    table: &str,
    segment: u32,
) -> Result<Duration, SourceError>
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata + std::error::Error + 'static,
{
    let mut message = crate::aws::describe_error(e);
    if classify_sdk(e).retryable() {
        match patience.failure() {
            Some(wait) => return Ok(wait),
            None => {
                let stalled = patience.stalled_for().as_secs();
                message =
                    format!("{message} (retried for {stalled} s without a page; --stall-timeout)");
            }
        }
    }
    Err(SourceError::Scan {
        table: table.into(),
        segment,
        message,
    })
}

/// One page's request of one segment.
fn scan_request(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    segment: &Segment,
    cfg: &ScanConfig,
    start_key: Option<Item>,
) -> ScanFluentBuilder {
    let mut req = client
        .scan()
        .table_name(table)
        .consistent_read(cfg.consistent_read)
        .return_consumed_capacity(ReturnConsumedCapacity::Total)
        .set_exclusive_start_key(start_key);
    req = match &cfg.projection {
        None => req.select(Select::AllAttributes),
        Some(attrs) => {
            let mut names = Vec::new();
            for (i, a) in attrs.iter().enumerate() {
                req = req.expression_attribute_names(format!("#p{i}"), a);
                names.push(format!("#p{i}"));
            }
            req.select(Select::SpecificAttributes)
                .projection_expression(names.join(", "))
        }
    };
    if segment.total > 1 {
        req = req
            .segment(segment.index as i32)
            .total_segments(segment.total as i32);
    }
    if let Some(l) = cfg.page_limit {
        req = req.limit(l);
    }
    req
}

/// Reads at most `limit` items from the start of a table (for `preview`).
pub async fn scan_first(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    limit: usize,
    stall: Duration,
) -> Result<Vec<Item>, SourceError> {
    let mut out = Vec::new();
    let mut start_key: Option<Item> = None;
    let mut patience = Patience::new(stall);
    while out.len() < limit {
        let sent = client
            .scan()
            .table_name(table)
            .limit((limit - out.len()).min(1000) as i32)
            .set_exclusive_start_key(start_key.clone())
            .send()
            .await;
        let page = match sent {
            Ok(page) => page,
            Err(e) => {
                tokio::time::sleep(retry_wait(&e, &mut patience, table, 0)?).await;
                continue;
            }
        };
        patience.success();
        out.extend(page.items().iter().cloned());
        match page.last_evaluated_key() {
            Some(k) if !k.is_empty() => start_key = Some(k.clone()),
            _ => break,
        }
    }
    out.truncate(limit);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_follow_table_size() {
        assert_eq!(default_segments(0, 0), 1);
        assert_eq!(default_segments(1_000_000, 10_000), 4);
        assert_eq!(default_segments(10 * 1024 * 1024 * 1024, 50_000_000), 5);
        assert_eq!(default_segments(i64::MAX / 2, 1), 1000);
    }
}
