//! `preview`: the first records of each source and what the transform
//! makes of them, as a report (JSON with `--json`, text otherwise, values
//! cut at `--max-value-width`). It reads each source once, for the items
//! shown and the mapping's data check, and writes nothing.

use serde::Serialize;
use serde_json::Value;

use super::{judge_data, steps, PipelineError, Step, DATA_CHECK_SAMPLE, PREVIEW_STALL};
use crate::item::{item_to_json, key_display, Item};
use crate::mapping::{Entity, Mapping};
use crate::report::clipped;
use crate::sinks::batcher::Op;
use crate::sources::export::Store;
use crate::sources::{self, SourceOptions, SourceRecord};

/// What `preview` shows.
#[derive(Debug, Clone, Serialize)]
pub struct PreviewReport {
    pub target_table: String,
    pub warnings: Vec<String>,
    pub entities: Vec<PreviewEntity>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PreviewEntity {
    pub entity: String,
    pub source_table: String,
    pub entity_type: String,
    /// "scan", or the exports read.
    pub read_by: String,
    pub records: Vec<PreviewRecord>,
}

/// One source record and what it becomes.
#[derive(Debug, Clone, Serialize)]
pub struct PreviewRecord {
    /// "item", "put", "delete" (an incremental change), "line" (unreadable).
    pub kind: &'static str,
    /// The item, the change's image or keys (DynamoDB JSON), or the line.
    pub source: Value,
    pub becomes: Vec<Becomes>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Becomes {
    Put { item: Value },
    Delete { key: Value, shown: String },
    Filtered { rule: String },
    DeadLetter { reason: String },
}

/// Reads the first `limit` records of each source and what they become.
pub async fn preview(
    client: &aws_sdk_dynamodb::Client,
    store: &Store,
    mapping: &Mapping,
    sources_opts: &SourceOptions,
    limit: usize,
    skip_data_check: bool,
) -> Result<PreviewReport, PipelineError> {
    let (plan, mut warnings) = sources::plan(client, store, mapping, sources_opts).await?;
    // One read per source serves the data check and the items shown.
    let wanted = match skip_data_check {
        true => limit,
        false => limit.max(DATA_CHECK_SAMPLE),
    };
    let mut read = Vec::new();
    for (entity, source) in mapping.entities.iter().zip(&plan) {
        let table = &entity.source_table;
        let first = sources::first_records(client, store, table, source, wanted, PREVIEW_STALL);
        read.push(first.await?);
    }
    if !skip_data_check {
        let samples: Vec<Vec<Item>> = read.iter().map(|(r, _)| sources::images(r)).collect();
        warnings.extend(judge_data(mapping, &samples)?);
    }
    let entities = mapping
        .entities
        .iter()
        .zip(read)
        .map(|(entity, (mut records, read_by))| {
            records.truncate(limit);
            PreviewEntity {
                entity: entity.name.clone(),
                source_table: entity.source_table.clone(),
                entity_type: entity.entity_type.clone(),
                read_by,
                records: records
                    .into_iter()
                    .map(|r| one(mapping, entity, r))
                    .collect(),
            }
        })
        .collect();
    Ok(PreviewReport {
        target_table: mapping.table.name.clone(),
        warnings,
        entities,
    })
}

/// One record and what it becomes.
fn one(mapping: &Mapping, entity: &Entity, record: SourceRecord) -> PreviewRecord {
    let (kind, source) = match &record {
        SourceRecord::Item(i) => ("item", item_to_json(i)),
        SourceRecord::Change { new: Some(n), .. } => ("put", item_to_json(n)),
        SourceRecord::Change {
            keys, new: None, ..
        } => ("delete", item_to_json(keys)),
        SourceRecord::Bad { raw, .. } => ("line", Value::String(raw.clone())),
        SourceRecord::Target { item, .. } => ("made", item_to_json(item)),
    };
    let becomes = steps(entity, mapping, record)
        .into_iter()
        .map(|step| match step {
            Step::Write {
                op: Op::Put, item, ..
            } => Becomes::Put {
                item: item_to_json(&item),
            },
            Step::Write { item, .. } => Becomes::Delete {
                key: item_to_json(&item),
                shown: key_display(&item),
            },
            Step::Filtered(rule) => Becomes::Filtered { rule },
            Step::Dead(d) => Becomes::DeadLetter { reason: d.reason },
        })
        .collect();
    PreviewRecord {
        kind,
        source,
        becomes,
    }
}

impl PreviewReport {
    /// The preview as text, values cut at `width` characters.
    pub fn render(&self, width: usize) -> String {
        let mut out = String::new();
        for w in &self.warnings {
            out.push_str(&format!("warning: {w}\n"));
        }
        for e in &self.entities {
            out.push_str(&format!(
                "== {} ({} by {} -> {} {}): {} record(s) shown\n",
                e.entity,
                e.source_table,
                e.read_by,
                self.target_table,
                e.entity_type,
                e.records.len()
            ));
            for r in &e.records {
                let label = match r.kind {
                    "item" => "source:",
                    "put" => "change: put",
                    "delete" => "change: delete",
                    "line" => "source line:",
                    _ => "made:",
                };
                out.push_str(&format!("  {label} {}\n", clipped(&r.source, width)));
                for b in &r.becomes {
                    out.push_str(&match b {
                        Becomes::Put { item } => format!("  target: {}\n", clipped(item, width)),
                        Becomes::Delete { shown, .. } => format!("  delete: {shown}\n"),
                        Becomes::Filtered { rule } => format!("  filtered: {rule}\n"),
                        Becomes::DeadLetter { reason } => format!("  DEAD-LETTER: {reason}\n"),
                    });
                }
            }
            out.push('\n');
        }
        out.push_str("preview wrote nothing.\n");
        out
    }
}
