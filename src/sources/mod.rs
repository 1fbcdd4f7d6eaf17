//! Sources: where legacy items come from.
//!
//! A source reads one legacy table and sends its items, page by page, as
//! [`SourceBatch`]es into a bounded channel; it knows nothing of mappings or
//! the target. Today there is one source, the parallel Scan ([`scan`]).
//! This module also owns the facts about a source table that the plan needs
//! before reading: does it exist, does its key match the mapping, how big is
//! it ([`describe`]).

pub mod scan;

use crate::item::Item;

/// A page of items from one source table.
#[derive(Debug)]
pub struct SourceBatch {
    /// Index of the entity (mapping order) whose table this is.
    pub entity: usize,
    pub items: Vec<Item>,
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
