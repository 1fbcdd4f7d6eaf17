//! The target table: create it from the mapping's spec, or check that the
//! existing one matches it.
//!
//! Writing into a table whose keys or indexes differ from the design would
//! fail item by item, or worse, succeed into the wrong shape; so before a
//! single write the target is checked against [`TableSpec`], and a
//! difference is an error that names it. The tool never writes into one of
//! its source tables (checked when the plan is built).

use std::time::Duration;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, TableCreationParameters, TableDescription, TableStatus,
    TimeToLiveSpecification, WarmThroughput,
};

use crate::mapping::TableSpec;

/// Why the target is not usable.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error("target table {0} does not exist; pass --create-table to create it from the mapping")]
    Missing(String),
    #[error("target table {table} does not match the mapping: {difference}")]
    Mismatch { table: String, difference: String },
    #[error("target table {table}: {message}")]
    Aws { table: String, message: String },
    #[error("target table {table} was not ACTIVE after {seconds} s")]
    NotActive { table: String, seconds: u64 },
}

/// Pre-warming of a table created by `--create-table`: write (and read)
/// units per second, for the table and each index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Warm {
    pub write: u64,
    pub read: Option<u64>,
}

impl Warm {
    fn throughput(self) -> WarmThroughput {
        let to_i64 = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        WarmThroughput::builder()
            .write_units_per_second(to_i64(self.write))
            .set_read_units_per_second(self.read.map(to_i64))
            .build()
    }
}

/// Creates the table if asked and missing (pre-warmed with `warm`), then
/// checks it against the spec. Returns true if it was created by this call.
pub async fn ensure(
    client: &aws_sdk_dynamodb::Client,
    spec: &TableSpec,
    create: bool,
    warm: Option<Warm>,
) -> Result<bool, TableError> {
    let created = match describe(client, &spec.name).await? {
        Some(desc) => {
            check(spec, &desc)?;
            false
        }
        None if create => match create_warm(client, spec, warm).await {
            Ok(()) => true,
            // Another shard created it meanwhile: use it as it is.
            Err(_) if describe(client, &spec.name).await?.is_some() => false,
            Err(e) => return Err(e),
        },
        None => return Err(TableError::Missing(spec.name.clone())),
    };
    let desc = wait_active(client, &spec.name, Duration::from_secs(600)).await?;
    check(spec, &desc)?;
    if created {
        enable_ttl(client, spec).await?;
        enable_recovery(client, spec).await;
    }
    Ok(created)
}

/// Turns on point-in-time recovery on a table this tool made, when the
/// mapping asks for it. A refusal (an emulator, a missing permission) is a
/// warning with the command to run: the data is not at stake.
pub async fn enable_recovery(client: &aws_sdk_dynamodb::Client, spec: &TableSpec) {
    if !spec.point_in_time_recovery {
        return;
    }
    let setting = aws_sdk_dynamodb::types::PointInTimeRecoverySpecification::builder()
        .point_in_time_recovery_enabled(true)
        .build();
    let Ok(setting) = setting else { return };
    let sent = client
        .update_continuous_backups()
        .table_name(&spec.name)
        .point_in_time_recovery_specification(setting)
        .send()
        .await;
    if let Err(e) = sent {
        eprintln!(
            "singletable: warning: point-in-time recovery not enabled on {}: {}; enable it with: aws dynamodb update-continuous-backups --table-name {} --point-in-time-recovery-specification PointInTimeRecoveryEnabled=true",
            spec.name,
            crate::aws::describe_error(&e),
            spec.name
        );
    }
}

/// Turns on the mapping's TTL attribute on a table this tool made
/// (CreateTable and ImportTable take none).
pub async fn enable_ttl(
    client: &aws_sdk_dynamodb::Client,
    spec: &TableSpec,
) -> Result<(), TableError> {
    let Some(ttl) = &spec.ttl_attribute else {
        return Ok(());
    };
    client
        .update_time_to_live()
        .table_name(&spec.name)
        .time_to_live_specification(
            TimeToLiveSpecification::builder()
                .enabled(true)
                .attribute_name(ttl)
                .build()
                .map_err(|e| aws(&spec.name, e.to_string()))?,
        )
        .send()
        .await
        .map_err(|e| aws(&spec.name, crate::aws::describe_error(&e)))?;
    Ok(())
}

fn aws(table: &str, message: String) -> TableError {
    TableError::Aws {
        table: table.to_string(),
        message,
    }
}

/// The table's description, or `None` when it does not exist.
pub async fn describe(
    client: &aws_sdk_dynamodb::Client,
    name: &str,
) -> Result<Option<TableDescription>, TableError> {
    crate::aws::describe_table(client, name)
        .await
        .map_err(|message| aws(name, message))
}

fn key_schema(pk: &str, sk: Option<&str>) -> Result<Vec<KeySchemaElement>, String> {
    let mut out = vec![KeySchemaElement::builder()
        .attribute_name(pk)
        .key_type(KeyType::Hash)
        .build()
        .map_err(|e| e.to_string())?];
    if let Some(sk) = sk {
        out.push(
            KeySchemaElement::builder()
                .attribute_name(sk)
                .key_type(KeyType::Range)
                .build()
                .map_err(|e| e.to_string())?,
        );
    }
    Ok(out)
}

/// Creates the table pre-warmed; a backend that refuses the warm
/// throughput (an emulator) gets the table without it, and a warning.
async fn create_warm(
    client: &aws_sdk_dynamodb::Client,
    spec: &TableSpec,
    warm: Option<Warm>,
) -> Result<(), TableError> {
    let Err(e) = create_table(client, spec, warm).await else {
        return Ok(());
    };
    if warm.is_none() || describe(client, &spec.name).await?.is_some() {
        return Err(e);
    }
    eprintln!(
        "singletable: warning: {e}; creating {} without pre-warming",
        spec.name
    );
    create_table(client, spec, None).await
}

async fn create_table(
    client: &aws_sdk_dynamodb::Client,
    spec: &TableSpec,
    warm: Option<Warm>,
) -> Result<(), TableError> {
    let name = &spec.name;
    if spec.billing_mode != "PAY_PER_REQUEST" {
        return Err(aws(name, "--create-table creates on-demand (PAY_PER_REQUEST) tables only; create a provisioned table yourself".into()));
    }
    let shape = Shape::of(spec, warm)?;
    client
        .create_table()
        .table_name(name)
        .set_attribute_definitions(Some(shape.attributes))
        .set_key_schema(Some(shape.key_schema))
        .billing_mode(BillingMode::PayPerRequest)
        .set_global_secondary_indexes(Some(shape.indexes).filter(|i| !i.is_empty()))
        .set_warm_throughput(warm.map(Warm::throughput))
        .send()
        .await
        .map_err(|e| {
            aws(
                name,
                format!("CreateTable failed: {}", crate::aws::describe_error(&e)),
            )
        })?;
    Ok(())
}

/// What ImportTable creates: the mapping's table, keys, indexes and
/// projections, on demand (an import consumes no write capacity either way).
pub fn creation_parameters(spec: &TableSpec) -> Result<TableCreationParameters, TableError> {
    let shape = Shape::of(spec, None)?;
    TableCreationParameters::builder()
        .table_name(&spec.name)
        .set_attribute_definitions(Some(shape.attributes))
        .set_key_schema(Some(shape.key_schema))
        .billing_mode(BillingMode::PayPerRequest)
        .set_global_secondary_indexes(Some(shape.indexes).filter(|i| !i.is_empty()))
        .build()
        .map_err(|e| aws(&spec.name, e.to_string()))
}

/// A table's keys, attribute definitions and indexes in the SDK's types,
/// as CreateTable and ImportTable take them.
struct Shape {
    attributes: Vec<AttributeDefinition>,
    key_schema: Vec<KeySchemaElement>,
    indexes: Vec<GlobalSecondaryIndex>,
}

impl Shape {
    fn of(spec: &TableSpec, warm: Option<Warm>) -> Result<Shape, TableError> {
        let name = &spec.name;
        let mut attrs: Vec<&str> = spec.key_attributes().map(|(a, _)| a).collect();
        attrs.sort();
        attrs.dedup();
        let attributes = attrs
            .into_iter()
            .map(|a| {
                AttributeDefinition::builder()
                    .attribute_name(a)
                    .attribute_type(ScalarAttributeType::from(spec.key_type(a).as_str()))
                    .build()
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| aws(name, e.to_string()))?;
        let mut indexes = Vec::new();
        for ix in &spec.indexes {
            let projection = Projection::builder()
                .projection_type(ProjectionType::from(ix.projection.as_str()))
                .build();
            let gsi = GlobalSecondaryIndex::builder()
                .index_name(&ix.name)
                .set_key_schema(Some(
                    key_schema(&ix.partition_key, ix.sort_key.as_deref())
                        .map_err(|e| aws(name, e))?,
                ))
                .projection(projection)
                .set_warm_throughput(warm.map(Warm::throughput))
                .build()
                .map_err(|e| aws(name, e.to_string()))?;
            indexes.push(gsi);
        }
        Ok(Shape {
            attributes,
            key_schema: key_schema(&spec.partition_key, spec.sort_key.as_deref())
                .map_err(|e| aws(name, e))?,
            indexes,
        })
    }
}

async fn wait_active(
    client: &aws_sdk_dynamodb::Client,
    name: &str,
    limit: Duration,
) -> Result<TableDescription, TableError> {
    let start = std::time::Instant::now();
    loop {
        if let Some(desc) = describe(client, name).await? {
            let gsis_active = desc
                .global_secondary_indexes()
                .iter()
                .all(|g| g.index_status().is_none_or(|s| s.as_str() == "ACTIVE"));
            if desc.table_status() == Some(&TableStatus::Active) && gsis_active {
                return Ok(desc);
            }
        }
        if start.elapsed() > limit {
            return Err(TableError::NotActive {
                table: name.into(),
                seconds: limit.as_secs(),
            });
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Compares an existing table with the spec; the first difference is the error.
pub fn check(spec: &TableSpec, desc: &TableDescription) -> Result<(), TableError> {
    let mismatch = |difference: String| TableError::Mismatch {
        table: spec.name.clone(),
        difference,
    };
    let keys = |ks: &[KeySchemaElement]| -> (Option<String>, Option<String>) {
        let find = |t: KeyType| {
            ks.iter()
                .find(|k| *k.key_type() == t)
                .map(|k| k.attribute_name().to_string())
        };
        (find(KeyType::Hash), find(KeyType::Range))
    };
    let (pk, sk) = keys(desc.key_schema());
    if pk.as_deref() != Some(spec.partition_key.as_str()) || sk != spec.sort_key {
        return Err(mismatch(format!(
            "its key is {}/{}, the mapping's is {}/{}",
            pk.unwrap_or_default(),
            sk.unwrap_or_default(),
            spec.partition_key,
            spec.sort_key.clone().unwrap_or_default()
        )));
    }
    for def in desc.attribute_definitions() {
        let wants = spec.key_type(def.attribute_name()).as_str();
        if def.attribute_type().as_str() != wants {
            return Err(mismatch(format!(
                "key attribute {} is {}, the mapping writes {wants}",
                def.attribute_name(),
                def.attribute_type().as_str()
            )));
        }
    }
    for ix in &spec.indexes {
        let Some(g) = desc
            .global_secondary_indexes()
            .iter()
            .find(|g| g.index_name() == Some(ix.name.as_str()))
        else {
            return Err(mismatch(format!("index {} is missing", ix.name)));
        };
        let (gpk, gsk) = keys(g.key_schema());
        if gpk.as_deref() != Some(ix.partition_key.as_str()) || gsk != ix.sort_key {
            return Err(mismatch(format!(
                "index {} is keyed {}/{}, the mapping's is {}/{}",
                ix.name,
                gpk.unwrap_or_default(),
                gsk.unwrap_or_default(),
                ix.partition_key,
                ix.sort_key.clone().unwrap_or_default()
            )));
        }
        let projection = g
            .projection()
            .and_then(|p| p.projection_type())
            .map(|p| p.as_str().to_string())
            .unwrap_or_default();
        if projection != ix.projection {
            return Err(mismatch(format!(
                "index {} projects {projection}, the mapping's projects {}",
                ix.name, ix.projection
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn import_creates_the_mapping_s_table_with_both_indexes() {
        let m = crate::mapping::Mapping::shipped();
        let p = creation_parameters(&m.table).unwrap();
        assert_eq!(p.table_name(), "ai-girlfriend-table");
        let keys: Vec<(&str, &str)> = p
            .key_schema()
            .iter()
            .map(|k| (k.attribute_name(), k.key_type().as_str()))
            .collect();
        assert_eq!(keys, [("pk", "HASH"), ("sk", "RANGE")]);
        let mut defs: Vec<&str> = p
            .attribute_definitions()
            .iter()
            .map(|d| d.attribute_name())
            .collect();
        defs.sort();
        assert_eq!(defs, ["gsi1pk", "gsi1sk", "gsi2pk", "gsi2sk", "pk", "sk"]);
        let indexes: Vec<(&str, &str, Option<&str>)> = p
            .global_secondary_indexes()
            .iter()
            .map(|g| {
                let hash = g
                    .key_schema()
                    .iter()
                    .find(|k| k.key_type() == &KeyType::Hash);
                let projection = g
                    .projection()
                    .and_then(|p| p.projection_type())
                    .map(|t| t.as_str());
                (
                    g.index_name(),
                    hash.map_or("", |k| k.attribute_name()),
                    projection,
                )
            })
            .collect();
        assert_eq!(
            indexes,
            [
                ("gsi1", "gsi1pk", Some("ALL")),
                ("gsi2", "gsi2pk", Some("ALL"))
            ]
        );
        assert_eq!(p.billing_mode(), Some(&BillingMode::PayPerRequest));
    }
}
