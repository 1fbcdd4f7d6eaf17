//! The dead-letter file: every item that was not migrated, and why.
//!
//! One JSON object per line: the entity, its source table, the source key,
//! the stage (`read`, `transform` or `write` for an item that cannot be
//! written: a dead letter; `unwritten` for a good item the run stopped
//! before writing), `op` (`put` or `delete`: what `replay` does with it),
//! the reason, the item as it stood then (DynamoDB JSON), and, in a run
//! that keeps a state, the `unit` and `batch` it was read in (a resume
//! keeps the lines of acknowledged batches and redoes the others). A single task owns the file; stages send it [`DeadLetter`]s
//! through a bounded channel. A record is counted in the run report only
//! once it is on disk: the task flushes and fsyncs the file every second
//! and at the end, and only then adds what it wrote to the counters, so the
//! report cannot claim a record the file lacks. If the file cannot be
//! written (a full disk, no permission), the task stops the run at once
//! and ends with that error.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, watch};

use super::batcher::Op;
use crate::checkpoint::Part;
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
    /// What was to be done with `item`: put it, or delete by it (for `replay`).
    pub op: Op,
    pub reason: String,
    pub item: Item,
    /// The line as read, when it could not be read as an item.
    pub raw: Option<String>,
    /// False for a clean-up delete, which the reconciliation does not count.
    pub counted: bool,
    /// Its share of the source batch's ticket: settled once the line is
    /// on disk; an item not written keeps its batch unacknowledged.
    pub part: Option<Part>,
}

/// Why the dead-letter file could not be written.
#[derive(Debug, thiserror::Error)]
#[error("dead-letter file {path}: {cause}; the run stopped rather than lose the record of what was not migrated")]
pub struct DeadLetterError {
    pub path: PathBuf,
    pub cause: std::io::Error,
}

/// A record written but not yet on disk, counted once it is.
struct Unsynced {
    entity: usize,
    stage: Stage,
    counted: bool,
    reason: String,
    part: Option<Part>,
}

/// The running dead-letter task.
pub struct DeadLetters {
    pub tx: mpsc::Sender<DeadLetter>,
    pub task: tokio::task::JoinHandle<Result<u64, DeadLetterError>>,
    /// The file's length as of its last fsync.
    pub synced_bytes: Arc<AtomicU64>,
}

/// Each entity's source table and name, in mapping order: what each dead
/// letter's line names (`replay` finds its entity again by them).
pub fn entities(mapping: &crate::mapping::Mapping) -> Vec<(String, String)> {
    mapping
        .entities
        .iter()
        .map(|e| (e.source_table.clone(), e.name.clone()))
        .collect()
}

/// Opens the file and starts the task that owns it: truncated, so that a
/// file left by an earlier run is never mistaken for this one's, or, for a
/// resumed run, appended to. The task ends when every sender is dropped;
/// on an error it sets `stop` first.
pub async fn spawn(
    path: PathBuf,
    append: bool,
    entities: Vec<(String, String)>,
    stats: Arc<RunStats>,
    stop: watch::Sender<bool>,
) -> Result<DeadLetters, DeadLetterError> {
    let failed = |cause| DeadLetterError {
        path: path.clone(),
        cause,
    };
    let file = open(&path, append).await.map_err(failed)?;
    let len = file.metadata().await.map_err(failed)?.len();
    let synced_bytes = Arc::new(AtomicU64::new(len));
    let (tx, rx) = mpsc::channel::<DeadLetter>(1024);
    let synced = synced_bytes.clone();
    let task = tokio::spawn(async move {
        let out = Out {
            file: tokio::io::BufWriter::new(file),
            bytes: len,
            synced,
        };
        let result = own_file(out, rx, &entities, &stats).await;
        result.map_err(|cause| {
            let _ = stop.send(true);
            DeadLetterError { path, cause }
        })
    });
    Ok(DeadLetters {
        tx,
        task,
        synced_bytes,
    })
}

/// The file, and how much of it is written and synced.
struct Out {
    file: tokio::io::BufWriter<tokio::fs::File>,
    bytes: u64,
    synced: Arc<AtomicU64>,
}

/// The task's loop: write each record, sync every [`SYNC_EVERY`] and at
/// the end, count what is synced.
async fn own_file(
    mut out: Out,
    mut rx: mpsc::Receiver<DeadLetter>,
    entities: &[(String, String)],
    stats: &RunStats,
) -> std::io::Result<u64> {
    let mut unsynced = Vec::new();
    let mut written = 0u64;
    let mut tick = tokio::time::interval(SYNC_EVERY);
    loop {
        tokio::select! {
            next = rx.recv() => {
                let Some(dl) = next else { break };
                let (table, name) = entities.get(dl.entity).map(|(t, n)| (t.as_str(), n.as_str())).unwrap_or_default();
                let text = line(&dl, table, name);
                out.file.write_all(text.as_bytes()).await?;
                out.bytes += text.len() as u64;
                unsynced.push(Unsynced {
                    entity: dl.entity,
                    stage: dl.stage,
                    counted: dl.counted,
                    reason: dl.reason,
                    part: dl.part,
                });
                written += 1;
            }
            _ = tick.tick() => sync(&mut out, &mut unsynced, stats).await?,
        }
    }
    sync(&mut out, &mut unsynced, stats).await?;
    Ok(written)
}

/// Flushes and fsyncs, then counts the records that are now on disk and
/// settles their batches' shares (not those of items not written: their
/// batches are to be read again by a resume).
async fn sync(
    out: &mut Out,
    unsynced: &mut Vec<Unsynced>,
    stats: &RunStats,
) -> std::io::Result<()> {
    if unsynced.is_empty() {
        return Ok(());
    }
    out.file.flush().await?;
    out.file.get_ref().sync_data().await?;
    out.synced.store(out.bytes, Ordering::Relaxed);
    for u in unsynced.drain(..) {
        let key = stats.count_not_migrated(u.entity, u.stage, u.counted, &u.reason);
        if let (Some(part), true) = (u.part, u.stage != Stage::Unwritten) {
            part.count_dead(u.counted, key);
            part.settle();
        }
    }
    Ok(())
}

fn line(dl: &DeadLetter, table: &str, entity: &str) -> String {
    let mut record = json!({
        "source_table": table,
        "entity": entity,
        "source_key": item_to_json(&dl.source_key),
        "stage": dl.stage.as_str(),
        "op": match dl.op { Op::Put => "put", Op::Delete => "delete" },
        "reason": dl.reason,
        "item": item_to_json(&dl.item),
    });
    if let Some(raw) = &dl.raw {
        record["raw"] = serde_json::Value::String(raw.clone());
    }
    if let Some((unit, batch)) = dl.part.as_ref().map(Part::tag) {
        record["unit"] = unit.into();
        record["batch"] = batch.into();
    }
    let mut line = record.to_string();
    line.push('\n');
    line
}

async fn open(path: &Path, append: bool) -> std::io::Result<tokio::fs::File> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        tokio::fs::create_dir_all(parent).await?;
    }
    if append {
        let mut o = tokio::fs::OpenOptions::new();
        return o.create(true).append(true).open(path).await;
    }
    tokio::fs::File::create(path).await
}
