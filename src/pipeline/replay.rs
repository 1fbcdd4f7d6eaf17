//! `replay`: the lines of a dead-letter file, driven again through the
//! same transform, sink and dead-letter stages as `migrate`.
//!
//! A line that failed at the transform is transformed again with the
//! current mapping (a put from its source item, a delete from its keys);
//! a line that failed at the write, or was not written, is written again
//! as it is. A line that could not be read from the export at all stays a
//! dead letter. The whole file is read and checked before anything is
//! written; what still fails goes to a new dead-letter file, and the
//! report reconciles: replayed = written + deleted + filtered +
//! dead-lettered again + not written.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use super::{finish_report, Ended, MigrateOptions, PipelineError, StageSpec, Stages};
use crate::item::{item_from_json, Item};
use crate::mapping::Mapping;
use crate::report::{RunReport, RunStats};
use crate::sources::{SourceBatch, SourceMsg, SourceRecord};

/// Records per batch sent to the transform.
const BATCH: usize = 256;

/// Why a dead-letter file cannot be replayed.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("{path}: {cause}")]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{path}:{line}: {message}")]
    Line {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("--still-failing {0} is the file being replayed; name another")]
    SameFile(PathBuf),
}

/// One line to replay: the entity and the record it becomes again.
pub(super) type Replayed = (usize, SourceRecord);

/// Reads and checks every line of `path`. Returns the records and
/// warnings (a last line cut short by a kill is skipped).
pub fn read(path: &Path, mapping: &Mapping) -> Result<(Vec<Replayed>, Vec<String>), ReplayError> {
    read_share(path, mapping, None)
}

/// [`read`], keeping only a shard's lines: those whose legacy key hashes
/// to it, so every line of one item is replayed by one shard, in order.
/// Every line is checked whichever shard keeps it.
pub fn read_share(
    path: &Path,
    mapping: &Mapping,
    shard: Option<crate::sources::Shard>,
) -> Result<(Vec<Replayed>, Vec<String>), ReplayError> {
    let text = std::fs::read_to_string(path).map_err(|cause| ReplayError::Io {
        path: path.to_path_buf(),
        cause,
    })?;
    let mut out = Vec::new();
    let mut warnings = Vec::new();
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    for (i, raw) in lines.iter().enumerate() {
        if raw.trim().is_empty() {
            continue;
        }
        let at = |message: String| ReplayError::Line {
            path: path.to_path_buf(),
            line: i + 1,
            message,
        };
        let value: serde_json::Value = match serde_json::from_str(raw) {
            Ok(v) => v,
            Err(_) if i + 1 == lines.len() && !raw.ends_with('\n') => {
                warnings.push(format!(
                    "{}:{}: the last line is cut short (a run killed while writing it?); skipped",
                    path.display(),
                    i + 1
                ));
                continue;
            }
            Err(e) => return Err(at(format!("not a dead-letter line: {e}"))),
        };
        let replayed = record(&value, mapping).map_err(at)?;
        let key = value
            .get("source_key")
            .map(|k| k.to_string())
            .unwrap_or_default();
        let hash = key_share(key.as_bytes());
        if shard.is_none_or(|s| s.takes((hash % u64::from(s.count)) as usize)) {
            out.push(replayed);
        }
    }
    Ok((out, warnings))
}

/// What one dead-letter line becomes again.
fn record(v: &serde_json::Value, mapping: &Mapping) -> Result<Replayed, String> {
    let text = |name: &str| v.get(name).and_then(|x| x.as_str());
    let table = text("source_table").ok_or("no source_table")?;
    // The entity by name (a table read by several entities); lines written
    // before the name was kept: the table's first entity.
    let entity = match text("entity") {
        Some(name) => mapping
            .entities
            .iter()
            .position(|e| e.name == name && e.source_table == table)
            .ok_or_else(|| format!("entity {name} reading {table} is not in the mapping"))?,
        None => mapping
            .entity_for_table(table)
            .map(|(i, _)| i)
            .ok_or_else(|| format!("source table {table} is read by no entity of the mapping"))?,
    };
    let item = |name: &str| -> Result<Item, String> {
        match v.get(name) {
            Some(x) => item_from_json(x).map_err(|e| format!("{name}: {e}")),
            None => Ok(Item::new()),
        }
    };
    let delete = text("op") == Some("delete");
    let stage = text("stage").ok_or("no stage")?;
    let record = match stage {
        "read" => SourceRecord::Bad {
            reason: format!(
                "{} (a line the export could not be read from is not replayed)",
                text("reason").unwrap_or("unreadable")
            ),
            raw: text("raw").unwrap_or_default().to_string(),
        },
        "transform" if delete => SourceRecord::Change {
            keys: item("source_key")?,
            new: None,
            old: Some(item("item")?),
        },
        "transform" => SourceRecord::Item(item("item")?),
        "write" | "unwritten" => SourceRecord::Target {
            delete,
            item: item("item")?,
        },
        other => return Err(format!("unknown stage {other:?}")),
    };
    Ok((entity, record))
}

/// A stable number for a legacy key (the first 8 bytes of its MD5): the
/// same in every shard and every build.
fn key_share(bytes: &[u8]) -> u64 {
    use md5::Digest as _;
    let d = md5::Md5::digest(bytes);
    u64::from_be_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]])
}

/// The default file for what still fails: `FILE` with `.replay` before
/// its extension.
pub fn still_failing_path(input: &Path) -> PathBuf {
    let stem = input.file_stem().unwrap_or_default().to_string_lossy();
    let name = match input.extension() {
        Some(ext) => format!("{stem}.replay.{}", ext.to_string_lossy()),
        None => format!("{stem}.replay"),
    };
    input.with_file_name(name)
}

/// Replays `input` into the target; `opts.dead_letter` receives what still
/// fails. Returns the report, and the error that stopped the run, if one did.
pub async fn replay(
    client: &aws_sdk_dynamodb::Client,
    mapping: &Mapping,
    opts: &MigrateOptions,
    input: &Path,
) -> Result<(RunReport, Option<PipelineError>), PipelineError> {
    let clock = Instant::now();
    let started_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let same = std::fs::canonicalize(input).ok() == std::fs::canonicalize(&opts.dead_letter).ok();
    if same || input == opts.dead_letter {
        return Err(ReplayError::SameFile(opts.dead_letter.clone()).into());
    }
    let (records, warnings) = read_share(input, mapping, opts.state.shard)?;
    let stats = Arc::new(RunStats::new(mapping.entities.len()));
    let mut tables: Vec<(String, u64, usize)> = mapping
        .entities
        .iter()
        .map(|e| (e.source_table.clone(), 0, 0))
        .collect();
    for (e, _) in &records {
        if let Some(t) = tables.get_mut(*e) {
            t.1 += 1;
        }
    }
    let spec = StageSpec {
        append: false,
        full_phase: false,
        expected: records.len() as u64,
        progress: super::progress(&tables, opts, &stats),
    };
    let stages = Stages::start(client, mapping, opts, &stats, spec).await?;
    let fed = feed(records, &stages, &stats).await;
    let (failure, interrupted) = stages.join(fed.err()).await;
    let ended = Ended {
        import: None,
        command: "replay",
        source: format!("dead letters {}", input.display()),
        started_at,
        clock,
        interrupted,
        warnings,
    };
    Ok(finish_report(&stats, mapping, opts, ended, failure))
}

/// Sends the records to the transform in batches per entity, until the
/// end or a stop.
pub(super) async fn feed(
    records: Vec<Replayed>,
    stages: &Stages,
    stats: &RunStats,
) -> Result<(), PipelineError> {
    let mut by_entity: Vec<Vec<SourceRecord>> = Vec::new();
    for (entity, record) in records {
        if by_entity.len() <= entity {
            by_entity.resize_with(entity + 1, Vec::new);
        }
        by_entity[entity].push(record);
    }
    for (entity, records) in by_entity.into_iter().enumerate() {
        let mut records = records.into_iter().peekable();
        while records.peek().is_some() {
            if *stages.shutdown_rx.borrow() {
                return Ok(());
            }
            let chunk: Vec<SourceRecord> = records.by_ref().take(BATCH).collect();
            RunStats::add(&stats.entity(entity).produced, chunk.len() as u64);
            stages.progress.inc(entity, chunk.len() as u64);
            let batch = SourceBatch {
                entity,
                records: chunk,
                part: None,
            };
            if stages.src_tx.send(SourceMsg::Batch(batch)).await.is_err() {
                return Err(PipelineError::Task("the transform stopped".into()));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn shipped() -> Mapping {
        Mapping::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("mappings/ai-girlfriend.toml"))
            .unwrap()
    }

    #[test]
    fn each_stage_becomes_the_record_it_is_replayed_as() {
        let m = shipped();
        let line = |stage: &str, op: &str| {
            json!({"source_table": "ai-girlfriend-sessions", "stage": stage, "op": op,
                   "source_key": {"sessionId": {"S": "s1"}},
                   "item": {"sessionId": {"S": "s1"}}, "raw": "x", "reason": "r"})
        };
        let kind = |v: serde_json::Value| match record(&v, &m).unwrap() {
            (3, SourceRecord::Item(_)) => "item",
            (3, SourceRecord::Change { new: None, .. }) => "delete by keys",
            (3, SourceRecord::Target { delete: false, .. }) => "put as is",
            (3, SourceRecord::Target { delete: true, .. }) => "delete as is",
            (3, SourceRecord::Bad { .. }) => "dead again",
            other => panic!("{other:?}"),
        };
        assert_eq!(kind(line("transform", "put")), "item");
        assert_eq!(kind(line("transform", "delete")), "delete by keys");
        assert_eq!(kind(line("write", "put")), "put as is");
        assert_eq!(kind(line("unwritten", "delete")), "delete as is");
        assert_eq!(kind(line("read", "put")), "dead again");
        let mut unknown = line("write", "put");
        unknown["source_table"] = json!("nope");
        assert!(record(&unknown, &m).unwrap_err().contains("nope"));
        assert!(record(&line("later", "put"), &m)
            .unwrap_err()
            .contains("later"));
    }

    #[test]
    fn bad_lines_are_named_and_a_cut_last_line_is_skipped() {
        let m = shipped();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.jsonl");
        let good = r#"{"source_table":"ai-girlfriend-users","stage":"write","op":"put","item":{"pk":{"S":"USER#u"},"sk":{"S":"METADATA"}}}"#;
        std::fs::write(&path, format!("{good}\n{good}\n{{\"source_tab")).unwrap();
        let (records, warnings) = read(&path, &m).unwrap();
        assert_eq!((records.len(), warnings.len()), (2, 1));
        assert!(warnings[0].contains("d.jsonl:3"), "{warnings:?}");
        std::fs::write(&path, format!("{good}\nnot json\n{good}\n")).unwrap();
        let e = read(&path, &m).unwrap_err().to_string();
        assert!(e.contains("d.jsonl:2: not a dead-letter line"), "{e}");
        assert_eq!(
            still_failing_path(Path::new("out/dead.jsonl")),
            Path::new("out/dead.replay.jsonl")
        );
    }
}
