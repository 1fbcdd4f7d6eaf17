//! The dead-letter file: every item that could not be written, and why.
//!
//! One JSON object per line: the entity, its source table, the source key,
//! the stage that gave up (`transform` or `write`), the reason, and the item
//! as it stood then (DynamoDB JSON). A single task owns the file; stages send
//! it [`DeadLetter`]s through a bounded channel, and the count of dead
//! letters in the run report is the count of lines this task wrote, so the
//! report cannot claim a record that is not in the file.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use crate::item::{item_to_json, Item};
use crate::report::RunStats;

/// One item that will not reach the target.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub entity: usize,
    pub source_key: Item,
    pub stage: &'static str,
    pub reason: String,
    pub item: Item,
    /// The line as read, when it could not be read as an item.
    pub raw: Option<String>,
    /// False for a clean-up delete, which the reconciliation does not count.
    pub counted: bool,
}

/// Why the dead-letter file could not be written.
#[derive(Debug, thiserror::Error)]
#[error("dead-letter file {path}: {source}")]
pub struct DeadLetterError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

/// Creates (truncates) the file, so that a file left by an earlier run is
/// never mistaken for this one's, and starts the task that owns it. The task
/// ends when every sender is dropped.
pub async fn spawn(
    path: PathBuf,
    source_tables: Vec<String>,
    stats: Arc<RunStats>,
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
    let (tx, mut rx) = mpsc::channel::<DeadLetter>(1024);
    let handle = tokio::spawn(async move {
        let mut file = tokio::io::BufWriter::new(file);
        let mut written = 0u64;
        let err = |source| DeadLetterError {
            path: path.clone(),
            source,
        };
        while let Some(dl) = rx.recv().await {
            let table = source_tables.get(dl.entity).cloned().unwrap_or_default();
            let mut record = json!({
                "source_table": table,
                "source_key": item_to_json(&dl.source_key),
                "stage": dl.stage,
                "reason": dl.reason,
                "item": item_to_json(&dl.item),
            });
            if let Some(raw) = &dl.raw {
                record["raw"] = serde_json::Value::String(raw.clone());
            }
            let mut line = record.to_string();
            line.push('\n');
            file.write_all(line.as_bytes()).await.map_err(err)?;
            let c = stats.entity(dl.entity);
            let counter = if dl.counted {
                &c.dead_lettered
            } else {
                &c.stale_dead_lettered
            };
            RunStats::add(counter, 1);
            written += 1;
        }
        file.flush().await.map_err(err)?;
        file.into_inner().sync_all().await.map_err(err)?;
        Ok(written)
    });
    Ok((tx, handle))
}

async fn open(path: &Path) -> std::io::Result<tokio::fs::File> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        tokio::fs::create_dir_all(parent).await?;
    }
    tokio::fs::File::create(path).await
}
