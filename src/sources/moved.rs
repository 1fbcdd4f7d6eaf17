//! Did the legacy tables change while they were scanned?
//!
//! A Scan is not a snapshot: an item changed behind the scan's position
//! is copied as it was, and a deleted one stays in the target. Where it
//! can tell, `migrate` warns: DescribeTable's item count before and after
//! the run (AWS refreshes it about every six hours, so an unchanged count
//! proves nothing), and, for a table with a stream, the changes the
//! stream holds that were made since the run began (read from the oldest
//! record, for at most [`BUDGET`] per table). A failure to look (no
//! permission, no stream) only means it cannot tell.

use std::time::Duration;

use super::streams::{count_after, shards, Position, StreamsClient};
use crate::checkpoint::StreamRef;

/// The time spent reading one table's stream for the warning.
pub const BUDGET: Duration = Duration::from_secs(30);
/// Changes counted per table at most ("at least N").
const CAP: u64 = 1000;

/// A scanned table as the run began.
#[derive(Debug, Clone)]
pub struct Before {
    pub table: String,
    pub item_count: Option<i64>,
}

/// The scanned tables of a plan, once each, with their item counts as the
/// plan described them.
pub fn before(plan: &[super::EntitySource]) -> Vec<Before> {
    let mut out: Vec<Before> = Vec::new();
    for source in plan {
        if let super::EntitySource::Scan(info) = source {
            if !out.iter().any(|b| b.table == info.name) {
                out.push(Before {
                    table: info.name.clone(),
                    item_count: Some(info.item_count),
                });
            }
        }
    }
    out
}

/// Warnings for the tables that changed while the run read them (since
/// `since_ms`, epoch milliseconds).
pub async fn warnings(
    client: &aws_sdk_dynamodb::Client,
    streams: &StreamsClient,
    before: &[Before],
    since_ms: i64,
) -> Vec<String> {
    let mut out = Vec::new();
    for b in before {
        let Ok(Some(desc)) = crate::aws::describe_table(client, &b.table).await else {
            continue;
        };
        let advice = "a Scan is not a snapshot: items changed behind it were copied as they were, and deleted ones stay in the target; converge with verify --full --repair once the source is quiet, or follow the streams (see the README, \"When the source changes during a run\")";
        if let (Some(then), Some(now)) = (b.item_count, desc.item_count()) {
            if then != now {
                out.push(format!(
                    "{}: DescribeTable's item count went from {then} to {now} during the run: {advice}",
                    b.table
                ));
                continue;
            }
        }
        let Some(arn) = desc.latest_stream_arn() else {
            continue;
        };
        let stream = StreamRef {
            entity: 0,
            table: b.table.clone(),
            arn: arn.to_string(),
            view: String::new(),
            skip_before: None,
        };
        let counted = tokio::time::timeout(BUDGET, changes(streams, &stream, since_ms)).await;
        if let Ok(Some(n)) = counted.map(|r| r.ok()) {
            if n > 0 {
                let at_least = if n >= CAP { "at least " } else { "" };
                out.push(format!(
                    "{}: its stream holds {at_least}{n} change(s) made since (about) the run began: {advice}",
                    b.table
                ));
            }
        }
    }
    out
}

/// The changes a stream holds made since `since_ms`, up to [`CAP`].
async fn changes(
    streams: &StreamsClient,
    stream: &StreamRef,
    since_ms: i64,
) -> Result<u64, super::streams::StreamError> {
    let mut total = 0;
    for shard in shards(streams, stream, Duration::from_secs(30)).await? {
        let at = (stream, shard.id.as_str());
        total += count_after(streams, at, &Position::TrimHorizon, Some(since_ms), CAP).await?;
        if total >= CAP {
            break;
        }
    }
    Ok(total)
}
