//! Sources: where legacy items come from.
//!
//! A source reads one legacy table and sends its records, page by page, as
//! [`SourceBatch`]es into a bounded channel; it knows nothing of mappings or
//! the target. Two sources: the parallel Scan ([`scan`]) and DynamoDB's
//! Export-to-S3 files ([`export`]). This module also owns the plan of where
//! each entity is read from ([`plan`]): the facts about a source table
//! (does it exist, does its key match the mapping, how big is it), which
//! exports belong to which table, and the order they apply in ([`phases`]:
//! full exports and scans first, then each table's incremental exports in
//! time order).

pub mod export;
pub mod scan;

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, watch, Semaphore};

use crate::export::ExportError;
use crate::item::Item;
use crate::mapping::Mapping;

/// One record read from a source.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceRecord {
    /// A whole item (Scan, full export).
    Item(Item),
    /// An incremental export's change: put `new` if present, else delete.
    Change {
        keys: Item,
        new: Option<Item>,
        old: Option<Item>,
    },
    /// A line that holds no valid item: it is dead-lettered with `reason`.
    Bad { reason: String, raw: String },
}

/// A page of records from one source table.
#[derive(Debug)]
pub struct SourceBatch {
    /// Index of the entity (mapping order) whose table this is.
    pub entity: usize,
    pub records: Vec<SourceRecord>,
}

/// What flows from the sources to the transform.
#[derive(Debug)]
pub enum SourceMsg {
    Batch(SourceBatch),
    /// Everything before this is to be written before it is answered.
    Barrier(oneshot::Sender<()>),
}

/// What the plan knows of a source table.
#[derive(Debug, Clone)]
pub struct TableInfo {
    pub name: String,
    /// Key attributes, partition first.
    pub key: Vec<String>,
    /// DynamoDB's approximate item count (refreshed about every 6 hours on AWS).
    pub item_count: i64,
    pub size_bytes: i64,
}

/// Why a source could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("source table {table} does not exist (entity {entity})")]
    Missing { table: String, entity: String },
    #[error("source table {table}: {message}")]
    Describe { table: String, message: String },
    #[error("source table {table}: its key is {actual:?} but the mapping's source_key for entity {entity} says {expected:?}")]
    KeyMismatch {
        table: String,
        entity: String,
        expected: Vec<String>,
        actual: Vec<String>,
    },
    #[error("scanning {table} (segment {segment}): {message}")]
    Scan {
        table: String,
        segment: u32,
        message: String,
    },
    #[error("the pipeline stopped before the source finished")]
    Cancelled,
    #[error(transparent)]
    Export(#[from] ExportError),
    #[error("--export names table {0:?}, which no entity of the mapping reads")]
    UnknownExportTable(String),
    #[error("table {table} (entity {entity}) has no --export; name one, or pass --scan-missing to scan it")]
    NoExport { table: String, entity: String },
    #[error("table {table} has {count} full exports ({labels}); give one, and incremental exports on top of it")]
    TwoFullExports {
        table: String,
        count: usize,
        labels: String,
    },
    #[error("entity {entity}: the incremental export {label} has the NEW_IMAGE view, so a delete carries only the keys ({keys}), but the target key needs {missing}; export with NEW_AND_OLD_IMAGES")]
    DeletesNeedOldImages {
        entity: String,
        label: String,
        keys: String,
        missing: String,
    },
    #[error("a source task failed: {0}")]
    Task(String),
}

/// Describes a source table and checks its key against the mapping's.
pub async fn describe(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    entity: &str,
    expected_key: &[String],
) -> Result<TableInfo, SourceError> {
    let out = match client.describe_table().table_name(table).send().await {
        Ok(o) => o,
        Err(e) => {
            if crate::aws::error_code(&e).as_deref() == Some("ResourceNotFoundException") {
                return Err(SourceError::Missing {
                    table: table.into(),
                    entity: entity.into(),
                });
            }
            return Err(SourceError::Describe {
                table: table.into(),
                message: crate::aws::describe_error(&e),
            });
        }
    };
    let desc = out.table().ok_or_else(|| SourceError::Describe {
        table: table.into(),
        message: "no description returned".into(),
    })?;
    let mut key: Vec<(bool, String)> = desc
        .key_schema()
        .iter()
        .map(|k| {
            (
                k.key_type().as_str() != "HASH",
                k.attribute_name().to_string(),
            )
        })
        .collect();
    key.sort();
    let key: Vec<String> = key.into_iter().map(|(_, n)| n).collect();
    if key != expected_key {
        return Err(SourceError::KeyMismatch {
            table: table.into(),
            entity: entity.into(),
            expected: expected_key.to_vec(),
            actual: key,
        });
    }
    Ok(TableInfo {
        name: table.to_string(),
        key,
        item_count: desc.item_count().unwrap_or(0),
        size_bytes: desc.table_size_bytes().unwrap_or(0),
    })
}

/// Where one entity's records come from.
#[derive(Debug, Clone)]
pub enum EntitySource {
    Scan(TableInfo),
    Export {
        full: Option<export::Export>,
        incrementals: Vec<export::Export>,
    },
}

impl EntitySource {
    /// The number of records expected, for progress bars.
    pub fn expected(&self) -> u64 {
        match self {
            EntitySource::Scan(i) => i.item_count.max(0) as u64,
            EntitySource::Export { full, incrementals } => full
                .iter()
                .chain(incrementals)
                .filter_map(|e| e.item_count)
                .sum(),
        }
    }

    /// The number of export files to read (none for a Scan).
    pub fn files(&self) -> usize {
        match self {
            EntitySource::Scan(_) => 0,
            EntitySource::Export { full, incrementals } => {
                full.iter().chain(incrementals).map(|e| e.files.len()).sum()
            }
        }
    }

    pub fn describe(&self) -> &'static str {
        match self {
            EntitySource::Scan(_) => "scan",
            EntitySource::Export { .. } => "export",
        }
    }
}

/// How the user asked the legacy tables to be read.
#[derive(Debug, Clone, Default)]
pub struct SourceOptions {
    /// (legacy table, export location), in the order given.
    pub exports: Vec<(String, String)>,
    /// Scan the tables that have no export.
    pub scan_missing: bool,
    /// Accept checksum and count mismatches in exports, as warnings.
    pub accept_mismatch: bool,
}

/// Decides where each entity is read from, checking everything that can be
/// checked before reading. Returns the plan and warnings for the report.
pub async fn plan(
    client: &aws_sdk_dynamodb::Client,
    store: &export::Store,
    mapping: &Mapping,
    opts: &SourceOptions,
) -> Result<(Vec<EntitySource>, Vec<String>), SourceError> {
    let mut by_table: HashMap<&str, Vec<&str>> = HashMap::new();
    for (table, location) in &opts.exports {
        if mapping.entity_for_table(table).is_none() {
            return Err(SourceError::UnknownExportTable(table.clone()));
        }
        by_table
            .entry(table.as_str())
            .or_default()
            .push(location.as_str());
    }
    let mut warnings = Vec::new();
    let mut plan = Vec::new();
    for entity in &mapping.entities {
        let Some(locations) = by_table.get(entity.source_table.as_str()) else {
            if !opts.exports.is_empty() && !opts.scan_missing {
                return Err(SourceError::NoExport {
                    table: entity.source_table.clone(),
                    entity: entity.name.clone(),
                });
            }
            plan.push(EntitySource::Scan(
                describe(
                    client,
                    &entity.source_table,
                    &entity.name,
                    &entity.source_key,
                )
                .await?,
            ));
            continue;
        };
        let mut full = Vec::new();
        let mut incrementals = Vec::new();
        for label in locations {
            let (e, w) =
                export::open(store, label, &entity.source_table, opts.accept_mismatch).await?;
            warnings.extend(w);
            if e.incremental {
                if !e.has_old_images {
                    check_keys_only_deletes(entity, &e, mapping)?;
                }
                incrementals.push(e);
            } else {
                full.push(e);
            }
        }
        if full.len() > 1 {
            let labels = full
                .iter()
                .map(|e| e.label.clone())
                .collect::<Vec<_>>()
                .join(", ");
            return Err(SourceError::TwoFullExports {
                table: entity.source_table.clone(),
                count: full.len(),
                labels,
            });
        }
        incrementals.sort_by(|a, b| a.as_of.cmp(&b.as_of));
        plan.push(EntitySource::Export {
            full: full.pop(),
            incrementals,
        });
    }
    Ok((plan, warnings))
}

/// With the NEW_IMAGE view a delete has only the legacy keys: the target's
/// key templates must need nothing else.
fn check_keys_only_deletes(
    entity: &crate::mapping::Entity,
    e: &export::Export,
    mapping: &Mapping,
) -> Result<(), SourceError> {
    let primary = mapping.table.primary_key();
    let missing: Vec<String> = entity
        .keys
        .iter()
        .filter(|(name, _)| primary.contains(&name.as_str()))
        .flat_map(|(_, t)| t.attributes())
        .filter(|a| !entity.source_key.iter().any(|k| k == a))
        .map(str::to_string)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(SourceError::DeletesNeedOldImages {
        entity: entity.name.clone(),
        label: e.label.clone(),
        keys: entity.source_key.join(", "),
        missing: missing.join(", "),
    })
}

/// The number of phases: 1 (scans and full exports) plus the most
/// incremental exports any table has.
pub fn phases(plan: &[EntitySource]) -> usize {
    1 + plan
        .iter()
        .map(|s| match s {
            EntitySource::Export { incrementals, .. } => incrementals.len(),
            EntitySource::Scan(_) => 0,
        })
        .max()
        .unwrap_or(0)
}

/// What every source task shares.
#[derive(Clone)]
pub struct Readers {
    pub client: aws_sdk_dynamodb::Client,
    pub store: export::Store,
    pub scan: scan::ScanConfig,
    /// Scan segments and export files read at once, across all tables.
    pub permits: Arc<Semaphore>,
    pub shutdown: watch::Receiver<bool>,
    pub on_records: Arc<dyn Fn(usize, u64) + Send + Sync>,
    /// Called with the entity when one of its export files is read to the end.
    pub on_file: Arc<dyn Fn(usize) + Send + Sync>,
}

/// Starts the reads of phase `phase`: each task returns its warnings.
pub fn spawn_phase(
    phase: usize,
    plan: &[EntitySource],
    readers: &Readers,
    tx: &mpsc::Sender<SourceMsg>,
    tasks: &mut tokio::task::JoinSet<(usize, Result<Vec<String>, SourceError>)>,
) {
    for (entity, source) in plan.iter().enumerate() {
        match (source, phase) {
            (EntitySource::Scan(info), 0) => {
                let (r, info, tx) = (readers.clone(), info.clone(), tx.clone());
                tasks.spawn(async move {
                    let result = scan::scan_table(
                        r.client,
                        info,
                        entity,
                        r.scan,
                        tx,
                        r.permits,
                        r.shutdown,
                        r.on_records,
                    )
                    .await;
                    (entity, result.map(|_| Vec::new()))
                });
            }
            (EntitySource::Export { full, incrementals }, p) => {
                let export = if p == 0 {
                    full.as_ref()
                } else {
                    incrementals.get(p - 1)
                };
                let Some(export) = export else { continue };
                for file in &export.files {
                    let (r, export, file, tx) =
                        (readers.clone(), export.clone(), file.clone(), tx.clone());
                    tasks.spawn(async move {
                        let Ok(_permit) = r.permits.acquire_owned().await else {
                            return (entity, Err(SourceError::Cancelled));
                        };
                        if *r.shutdown.borrow() {
                            return (entity, Ok(Vec::new()));
                        }
                        let out = export::FileSink {
                            entity,
                            tx: &tx,
                            on_records: &*r.on_records,
                            shutdown: Some(&r.shutdown),
                            stall: r.scan.stall_timeout,
                        };
                        let result = export::read_file(&r.store, &export, &file, &out).await;
                        (
                            entity,
                            result.map(|o| o.warnings).map_err(SourceError::from),
                        )
                    });
                }
            }
            _ => {}
        }
    }
}
