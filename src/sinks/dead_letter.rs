//! The dead-letter file: every item that was not migrated, and why.
//!
//! One JSON object per line: the entity, its source table, the source key,
//! the stage (`read`, `transform` or `write` for an item that cannot be
//! written: a dead letter; `unwritten` for a good item the run stopped
//! before writing), the reason, and the item as it stood then (DynamoDB
//! JSON). A single task owns the file; stages send it [`DeadLetter`]s
//! through a bounded channel. A record is counted in the run report only
//! once it is on disk: the task flushes and fsyncs the file every second
//! and at the end, and only then adds what it wrote to the counters, so the
//! report cannot claim a record the file lacks. If the file cannot be
//! written (a full disk, no permission), the task stops the run at once
//! and ends with that error.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, watch};

use crate::item::{item_to_json, Item};
use crate::report::RunStats;

/// How often the file is flushed and fsynced while records arrive.
const SYNC_EVERY: Duration = Duration::from_secs(1);

/// Where an item was given up on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The source line holds no valid item.
    Read,
    /// The mapping cannot make a valid target item of it.
    Transform,
    /// DynamoDB rejected it as invalid.
    Write,
    /// A good item the run stopped before writing (a fatal error, a stall).
    Unwritten,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Read => "read",
            Stage::Transform => "transform",
            Stage::Write => "write",
            Stage::Unwritten => "unwritten",
        }
    }
}

/// One item that will not reach the target.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub entity: usize,
    pub source_key: Item,
    pub stage: Stage,
    pub reason: String,
    pub item: Item,
    /// The line as read, when it could not be read as an item.
    pub raw: Option<String>,
    /// False for a clean-up delete, which the reconciliation does not count.
    pub counted: bool,
}

/// Why the dead-letter file could not be written.
#[derive(Debug, thiserror::Error)]
#[error("dead-letter file {path}: {source}; the run stopped rather than lose the record of what was not migrated")]
pub struct DeadLetterError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

/// Records written but not yet on disk, counted once they are.
#[derive(Default)]
struct Unsynced(Vec<(usize, Stage, bool, String)>);

/// Creates (truncates) the file, so that a file left by an earlier run is
/// never mistaken for this one's, and starts the task that owns it. The task
/// ends when every sender is dropped; on an error it sets `stop` first.
pub async fn spawn(
    path: PathBuf,
    source_tables: Vec<String>,
    stats: Arc<RunStats>,
    stop: watch::Sender<bool>,
) -> Result<
    (
        mpsc::Sender<DeadLetter>,
        tokio::task::JoinHandle<Result<u64, DeadLetterError>>,
    ),
    DeadLetterError,
> {
    let file = open(&path).await.map_err(|source| DeadLetterError {
        path: path.clone(),
        source,
    })?;
    let (tx, rx) = mpsc::channel::<DeadLetter>(1024);
    let handle = tokio::spawn(async move {
        let result = own_file(file, rx, &source_tables, &stats).await;
        result.map_err(|source| {
            let _ = stop.send(true);
            DeadLetterError { path, source }
        })
    });
    Ok((tx, handle))
}

/// The task's loop: write each record, sync every [`SYNC_EVERY`] and at
/// the end, count what is synced.
async fn own_file(
    file: tokio::fs::File,
    mut rx: mpsc::Receiver<DeadLetter>,
    source_tables: &[String],
    stats: &RunStats,
) -> std::io::Result<u64> {
    let mut file = tokio::io::BufWriter::new(file);
    let mut unsynced = Unsynced::default();
    let mut written = 0u64;
    let mut tick = tokio::time::interval(SYNC_EVERY);
    loop {
        tokio::select! {
            next = rx.recv() => {
                let Some(dl) = next else { break };
                let table = source_tables.get(dl.entity).map(String::as_str).unwrap_or_default();
                file.write_all(line(&dl, table).as_bytes()).await?;
                unsynced.0.push((dl.entity, dl.stage, dl.counted, dl.reason));
                written += 1;
            }
            _ = tick.tick() => sync(&mut file, &mut unsynced, stats).await?,
        }
    }
    sync(&mut file, &mut unsynced, stats).await?;
    Ok(written)
}

/// Flushes and fsyncs, then counts the records that are now on disk.
async fn sync(
    file: &mut tokio::io::BufWriter<tokio::fs::File>,
    unsynced: &mut Unsynced,
    stats: &RunStats,
) -> std::io::Result<()> {
    if unsynced.0.is_empty() {
        return Ok(());
    }
    file.flush().await?;
    file.get_ref().sync_data().await?;
    for (entity, stage, counted, reason) in unsynced.0.drain(..) {
        stats.count_not_migrated(entity, stage, counted, &reason);
    }
    Ok(())
}

fn line(dl: &DeadLetter, table: &str) -> String {
    let mut record = json!({
        "source_table": table,
        "source_key": item_to_json(&dl.source_key),
        "stage": dl.stage.as_str(),
        "reason": dl.reason,
        "item": item_to_json(&dl.item),
    });
    if let Some(raw) = &dl.raw {
        record["raw"] = serde_json::Value::String(raw.clone());
    }
    let mut line = record.to_string();
    line.push('\n');
    line
}

async fn open(path: &Path) -> std::io::Result<tokio::fs::File> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        tokio::fs::create_dir_all(parent).await?;
    }
    tokio::fs::File::create(path).await
}
