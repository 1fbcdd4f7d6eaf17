//! Writing exports byte-faithful to DynamoDB's layout, for the demo and tests.
//!
//! A full export of a table goes to `<prefix>/<table>/AWSDynamoDB/<ExportId>/`
//! with `_started`, `manifest-summary.json` and `.md5`, `manifest-files.json`
//! and `.md5`, and gzip data files under `data/` (one of them empty, as AWS
//! writes for an empty partition). An incremental export keeps its
//! manifests in its own folder and its data files in the shared
//! `<prefix>/<table>/AWSDynamoDB/data/`. Checksums are computed as AWS does:
//! `md5Checksum` over the compressed bytes, the ETag of a one-part upload.

use std::io::Write as _;
use std::path::PathBuf;

use flate2::write::GzEncoder;
use flate2::Compression;

use super::{etag, md5_base64, render_line, ExportError, FileEntry, Format, Record, Summary};

/// Where exports are written.
#[derive(Clone)]
pub enum Dest {
    Local(PathBuf),
    S3 {
        client: aws_sdk_s3::Client,
        bucket: String,
        prefix: String,
    },
}

impl Dest {
    /// Parses `s3://bucket/prefix` or a local folder.
    pub fn parse(text: &str, s3: Option<aws_sdk_s3::Client>) -> Result<Dest, ExportError> {
        match text.strip_prefix("s3://") {
            Some(rest) => {
                let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
                let client =
                    s3.ok_or_else(|| ExportError::new(text, "no S3 client was configured"))?;
                Ok(Dest::S3 {
                    client,
                    bucket: bucket.into(),
                    prefix: prefix.trim_matches('/').into(),
                })
            }
            None => Ok(Dest::Local(PathBuf::from(text))),
        }
    }

    /// The key prefix inside the bucket (the summary's `s3Prefix`) for a table.
    fn table_prefix(&self, table: &str) -> String {
        match self {
            Dest::S3 { prefix, .. } if !prefix.is_empty() => format!("{prefix}/{table}"),
            _ => table.to_string(),
        }
    }

    fn bucket(&self) -> String {
        match self {
            Dest::S3 { bucket, .. } => bucket.clone(),
            Dest::Local(_) => "singletable-local-export".into(),
        }
    }

    /// The location a user passes to `--export` for the export folder `key`.
    fn location(&self, key: &str) -> String {
        match self {
            Dest::Local(root) => format!("{}/", root.join(key).display()),
            Dest::S3 { bucket, .. } => format!("s3://{bucket}/{key}/"),
        }
    }

    /// Creates the bucket when it is missing (S3 only).
    pub async fn prepare(&self) -> Result<(), ExportError> {
        if let Dest::S3 { client, bucket, .. } = self {
            if client.head_bucket().bucket(bucket).send().await.is_err() {
                client
                    .create_bucket()
                    .bucket(bucket)
                    .send()
                    .await
                    .map_err(|e| {
                        ExportError::new(format!("s3://{bucket}"), crate::aws::describe_error(&e))
                    })?;
            }
        }
        Ok(())
    }

    /// Writes one object, by its bucket-rooted key.
    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), ExportError> {
        match self {
            Dest::Local(root) => {
                let path = root.join(key);
                if let Some(parent) = path.parent() {
                    tokio::fs::create_dir_all(parent)
                        .await
                        .map_err(|e| ExportError::new(path.display().to_string(), e.to_string()))?;
                }
                tokio::fs::write(&path, bytes)
                    .await
                    .map_err(|e| ExportError::new(path.display().to_string(), e.to_string()))
            }
            Dest::S3 { client, bucket, .. } => client
                .put_object()
                .bucket(bucket)
                .key(key)
                .body(bytes.into())
                .send()
                .await
                .map(|_| ())
                .map_err(|e| {
                    ExportError::new(
                        format!("s3://{bucket}/{key}"),
                        crate::aws::describe_error(&e),
                    )
                }),
        }
    }
}

/// What an export is of.
pub struct ExportSpec<'a> {
    pub table: &'a str,
    pub export_id: &'a str,
    pub format: Format,
    /// Data files with records (one more, empty, is always added).
    pub files: usize,
    /// `exportTime` of a full export; `exportToTime` of an incremental one.
    pub time: &'a str,
    /// `exportFromTime`, for an incremental export.
    pub from_time: Option<&'a str>,
}

fn gzip(lines: &[String]) -> Result<Vec<u8>, std::io::Error> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::default());
    for l in lines {
        enc.write_all(l.as_bytes())?;
        enc.write_all(b"\n")?;
    }
    enc.finish()
}

/// Writes one export of `records` (all `Record::Item` for a full export,
/// all `Record::Change` for an incremental one). Returns the location to
/// pass to `--export`.
pub async fn write(
    dest: &Dest,
    spec: &ExportSpec<'_>,
    records: &[Record],
) -> Result<String, ExportError> {
    let incremental = spec.from_time.is_some();
    let prefix = dest.table_prefix(spec.table);
    let dir = format!("{prefix}/AWSDynamoDB/{}", spec.export_id);
    let data_dir = if incremental {
        format!("{prefix}/AWSDynamoDB/data")
    } else {
        format!("{dir}/data")
    };
    let ext = match spec.format {
        Format::DynamoDbJson => "json.gz",
        Format::Ion => "ion.gz",
    };
    dest.put(&format!("{dir}/_started"), Vec::new()).await?;

    let files = spec.files.max(1);
    let mut chunks: Vec<Vec<String>> = vec![Vec::new(); files + 1];
    for (i, r) in records.iter().enumerate() {
        chunks[i % files].push(render_line(
            spec.format,
            r,
            1_700_000_000_000_000 + i as u64,
        ));
    }
    let mut entries = Vec::new();
    for (i, lines) in chunks.iter().enumerate() {
        let bytes = gzip(lines).map_err(|e| ExportError::new(&dir, e.to_string()))?;
        let name = format!(
            "{}{:04}",
            &md5_hex(format!("{}{i}", spec.export_id).as_bytes())[..22],
            i
        );
        let key = format!("{data_dir}/{name}.{ext}");
        entries.push(FileEntry {
            item_count: lines.len() as u64,
            md5_checksum: md5_base64(&bytes),
            etag: Some(etag(&bytes)),
            data_file_s3_key: key.clone(),
        });
        dest.put(&key, bytes).await?;
    }
    let files_json: String = entries
        .iter()
        .map(|e| serde_json::to_string(e).unwrap_or_default() + "\n")
        .collect();
    let files_key = format!("{dir}/manifest-files.json");
    dest.put(
        &format!("{dir}/manifest-files.md5"),
        md5_base64(files_json.as_bytes()).into_bytes(),
    )
    .await?;
    dest.put(&files_key, files_json.into_bytes()).await?;

    let summary = Summary {
        version: Some(
            if incremental {
                "2023-08-01"
            } else {
                "2020-06-30"
            }
            .into(),
        ),
        export_arn: Some(format!(
            "arn:aws:dynamodb:us-east-1:000000000000:table/{}/export/{}",
            spec.table, spec.export_id
        )),
        start_time: Some(spec.time.into()),
        end_time: Some(spec.time.into()),
        table_arn: Some(format!(
            "arn:aws:dynamodb:us-east-1:000000000000:table/{}",
            spec.table
        )),
        table_id: Some(md5_hex(spec.table.as_bytes())[..32].to_string()),
        export_time: (!incremental).then(|| spec.time.to_string()),
        export_from_time: spec.from_time.map(str::to_string),
        export_to_time: incremental.then(|| spec.time.to_string()),
        s3_bucket: Some(dest.bucket()),
        s3_prefix: Some(prefix.clone()),
        s3_sse_algorithm: Some("AES256".into()),
        s3_sse_kms_key_id: None,
        manifest_files_s3_key: files_key,
        billed_size_bytes: Some(0),
        item_count: Some(records.len() as u64),
        output_format: match spec.format {
            Format::DynamoDbJson => "DYNAMODB_JSON".into(),
            Format::Ion => "ION".into(),
        },
        export_type: incremental.then(|| "INCREMENTAL_EXPORT".to_string()),
        output_view: incremental.then(|| "NEW_AND_OLD_IMAGES".to_string()),
    };
    let summary_json =
        serde_json::to_vec(&summary).map_err(|e| ExportError::new(&dir, e.to_string()))?;
    dest.put(
        &format!("{dir}/manifest-summary.md5"),
        md5_base64(&summary_json).into_bytes(),
    )
    .await?;
    dest.put(&format!("{dir}/manifest-summary.json"), summary_json)
        .await?;
    Ok(dest.location(&dir))
}

fn md5_hex(bytes: &[u8]) -> String {
    use md5::Digest as _;
    md5::Md5::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
