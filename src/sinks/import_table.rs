//! ImportTable: the new target table made from the uploaded files.
//!
//! `migrate --to-import s3://... --import-table` ends here: the target must
//! not exist (ImportTable only creates tables; checked before anything is
//! read), then one ImportTable call with the mapping's table (keys,
//! attribute definitions, indexes with projections, on demand), the files'
//! prefix and format, and DescribeImport until the import ends. Its own
//! counts come back for the report to set beside ours; item-level errors
//! go to CloudWatch Logs, not to the caller, so a count that differs is the
//! only sign of them here. The mapping's TTL attribute is enabled after.

use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::{ImportStatus, InputCompressionType, InputFormat, S3BucketSource};

use super::table::{creation_parameters, describe, enable_ttl, TableError};
use super::upload::S3Place;
use crate::mapping::TableSpec;
use crate::report::ImportAccount;

/// How often DescribeImport is asked while the import runs.
const POLL: Duration = Duration::from_secs(1);
/// How often the import's progress is printed.
const SAY_EVERY: Duration = Duration::from_secs(30);

/// Why the import could not be done.
#[derive(Debug, thiserror::Error)]
pub enum ImportTableError {
    #[error("target table {0} exists: ImportTable only creates new tables; delete it, choose another --target-table, or migrate without --import-table")]
    Exists(String),
    #[error(transparent)]
    Table(#[from] TableError),
    #[error("{what} for {table} failed: {message}")]
    Call {
        what: &'static str,
        table: String,
        message: String,
    },
}

/// Refuses a target that exists, before anything is read.
pub async fn ensure_absent(
    client: &aws_sdk_dynamodb::Client,
    spec: &TableSpec,
) -> Result<(), ImportTableError> {
    match describe(client, &spec.name).await? {
        Some(_) => Err(ImportTableError::Exists(spec.name.clone())),
        None => Ok(()),
    }
}

/// Imports `place`'s `data/` files into a new table as the mapping
/// describes it, waits for the end, and returns ImportTable's account.
pub async fn import(
    client: &aws_sdk_dynamodb::Client,
    spec: &TableSpec,
    place: &S3Place,
    quiet: bool,
) -> Result<ImportAccount, ImportTableError> {
    let call = |what: &'static str, message: String| ImportTableError::Call {
        what,
        table: spec.name.clone(),
        message,
    };
    let source = S3BucketSource::builder()
        .s3_bucket(&place.bucket)
        .s3_key_prefix(format!("{}data/", place.prefix))
        .build()
        .map_err(|e| call("ImportTable", e.to_string()))?;
    let started = client
        .import_table()
        .s3_bucket_source(source)
        .input_format(InputFormat::DynamodbJson)
        .input_compression_type(InputCompressionType::Gzip)
        .table_creation_parameters(creation_parameters(spec)?)
        .send()
        .await
        .map_err(|e| call("ImportTable", crate::aws::describe_error(&e)))?;
    let arn = started
        .import_table_description()
        .and_then(|d| d.import_arn())
        .ok_or_else(|| call("ImportTable", "no import ARN in the answer".into()))?
        .to_string();
    let (clock, mut said) = (Instant::now(), Instant::now());
    loop {
        let d = client
            .describe_import()
            .import_arn(&arn)
            .send()
            .await
            .map_err(|e| call("DescribeImport", crate::aws::describe_error(&e)))?;
        let Some(d) = d.import_table_description() else {
            return Err(call(
                "DescribeImport",
                "no description in the answer".into(),
            ));
        };
        let status = d
            .import_status()
            .cloned()
            .unwrap_or(ImportStatus::InProgress);
        if status != ImportStatus::InProgress && status != ImportStatus::Cancelling {
            let account = ImportAccount {
                import_arn: arn,
                status: status.as_str().to_string(),
                processed: d.processed_item_count().max(0) as u64,
                imported: d.imported_item_count().max(0) as u64,
                errors: d.error_count().max(0) as u64,
                failure: d.failure_message().map(str::to_string),
                seconds: clock.elapsed().as_secs_f64(),
            };
            enable_ttl(client, spec).await?;
            crate::sinks::table::enable_recovery(client, spec).await;
            return Ok(account);
        }
        if !quiet && said.elapsed() >= SAY_EVERY {
            eprintln!(
                "singletable: ImportTable into {}: {} after {} s",
                spec.name,
                status.as_str(),
                clock.elapsed().as_secs()
            );
            said = Instant::now();
        }
        tokio::time::sleep(POLL).await;
    }
}
