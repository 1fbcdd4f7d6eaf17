//! DynamoDB's Export-to-S3 format: where the files are and what they say.
//!
//! This module owns the export layout of `dynamodb-facts.md`, pure and
//! without I/O: the export locations users name (`s3://bucket/.../
//! AWSDynamoDB/<ExportId>/`, the same folder on local disk, or a path to its
//! `manifest-summary.json`), how a bucket-rooted key in a manifest resolves
//! against such a location, the manifests themselves, and one data line in
//! each format (DYNAMODB_JSON, ION; full and incremental). Reading the
//! files is the export source's job (`sources::export`); writing faithful
//! exports is [`write`]'s.

pub mod ion;
mod json;
pub mod write;

use std::path::{Path, PathBuf};

use base64::Engine as _;
use md5::{Digest as _, Md5};
use serde::{Deserialize, Serialize};

use crate::item::{item_from_json, Item};

/// A problem with an export, naming the file (and line) at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}{}: {message}", line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct ExportError {
    pub file: String,
    pub line: Option<usize>,
    pub message: String,
}

impl ExportError {
    pub fn new(file: impl Into<String>, message: impl Into<String>) -> ExportError {
        ExportError {
            file: file.into(),
            line: None,
            message: message.into(),
        }
    }
}

/// Where one export lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A local copy: `base` holds `AWSDynamoDB/`; `dir` is the export's folder.
    Local { base: PathBuf, dir: PathBuf },
    /// In S3: `base` is the key prefix before `AWSDynamoDB/` (may be empty).
    S3 {
        bucket: String,
        base: String,
        dir: String,
    },
}

impl Location {
    /// Parses a location as the user wrote it.
    pub fn parse(text: &str) -> Result<Location, ExportError> {
        let bad = |why: &str| {
            ExportError::new(
                text,
                format!("{why}; an export location is s3://bucket/.../AWSDynamoDB/<ExportId>/, the same folder on disk, or its manifest-summary.json"),
            )
        };
        let trimmed = text.strip_suffix("manifest-summary.json").unwrap_or(text);
        let trimmed = trimmed.trim_end_matches('/');
        if let Some(rest) = trimmed.strip_prefix("s3://") {
            let (bucket, key) = rest
                .split_once('/')
                .ok_or_else(|| bad("no key after the bucket"))?;
            let i = find_marker(key).ok_or_else(|| bad("no AWSDynamoDB/ in the key"))?;
            return Ok(Location::S3 {
                bucket: bucket.to_string(),
                base: key[..i].to_string(),
                dir: format!("{key}/"),
            });
        }
        let path = Path::new(trimmed);
        let marker = path
            .ancestors()
            .find(|a| a.file_name().is_some_and(|n| n == "AWSDynamoDB"))
            .ok_or_else(|| bad("no AWSDynamoDB folder in the path"))?;
        let base = marker.parent().map(Path::to_path_buf).unwrap_or_default();
        Ok(Location::Local {
            base,
            dir: path.to_path_buf(),
        })
    }

    /// The export folder's own file `name` (a manifest, a checksum).
    pub fn own(&self, name: &str) -> Object {
        match self {
            Location::Local { dir, .. } => Object::Local(dir.join(name)),
            Location::S3 { bucket, dir, .. } => Object::S3 {
                bucket: bucket.clone(),
                key: format!("{dir}{name}"),
            },
        }
    }

    /// Resolves a bucket-rooted key from a manifest: the summary's
    /// `s3Prefix` is replaced by this location's own prefix.
    pub fn resolve(&self, key: &str, s3_prefix: Option<&str>) -> Object {
        let rel = s3_prefix
            .filter(|p| !p.is_empty())
            .and_then(|p| key.strip_prefix(p.trim_end_matches('/')))
            .map(|r| r.trim_start_matches('/'))
            .unwrap_or(key);
        // A key whose prefix differs from s3Prefix: keep it from AWSDynamoDB/ on.
        let rel = find_marker(rel).map(|i| &rel[i..]).unwrap_or(rel);
        match self {
            Location::Local { base, .. } => Object::Local(base.join(rel)),
            Location::S3 { bucket, base, .. } => Object::S3 {
                bucket: bucket.clone(),
                key: format!("{base}{rel}"),
            },
        }
    }

    /// The export's `data/` folder, for exports without manifests.
    pub fn data_dir(&self) -> Object {
        self.own("data/")
    }
}

fn find_marker(key: &str) -> Option<usize> {
    if key.starts_with("AWSDynamoDB/") || key == "AWSDynamoDB" {
        return Some(0);
    }
    key.find("/AWSDynamoDB/").map(|i| i + 1).or_else(|| {
        key.ends_with("/AWSDynamoDB")
            .then(|| key.len() - "AWSDynamoDB".len())
    })
}

/// One object of an export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Object {
    Local(PathBuf),
    S3 { bucket: String, key: String },
}

impl std::fmt::Display for Object {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Object::Local(p) => write!(f, "{}", p.display()),
            Object::S3 { bucket, key } => write!(f, "s3://{bucket}/{key}"),
        }
    }
}

/// The data format of an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Format {
    DynamoDbJson,
    Ion,
}

/// `manifest-summary.json`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub version: Option<String>,
    pub export_arn: Option<String>,
    pub start_time: Option<String>,
    pub end_time: Option<String>,
    pub table_arn: Option<String>,
    pub table_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub export_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub export_from_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub export_to_time: Option<String>,
    pub s3_bucket: Option<String>,
    pub s3_prefix: Option<String>,
    pub s3_sse_algorithm: Option<String>,
    pub s3_sse_kms_key_id: Option<String>,
    pub manifest_files_s3_key: String,
    pub billed_size_bytes: Option<u64>,
    pub item_count: Option<u64>,
    pub output_format: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub export_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_view: Option<String>,
}

impl Summary {
    pub fn parse(file: &str, bytes: &[u8]) -> Result<Summary, ExportError> {
        serde_json::from_slice(bytes).map_err(|e| ExportError {
            file: file.into(),
            line: Some(e.line()),
            message: e.to_string(),
        })
    }

    pub fn format(&self, file: &str) -> Result<Format, ExportError> {
        match self.output_format.as_str() {
            "DYNAMODB_JSON" => Ok(Format::DynamoDbJson),
            "ION" => Ok(Format::Ion),
            other => Err(ExportError::new(
                file,
                format!("unknown outputFormat {other:?} (known: DYNAMODB_JSON, ION)"),
            )),
        }
    }

    pub fn incremental(&self) -> bool {
        self.export_type.as_deref() == Some("INCREMENTAL_EXPORT")
    }

    /// The time the export's data is as of: `exportToTime` for an
    /// incremental export, `exportTime` for a full one.
    pub fn as_of(&self) -> &str {
        self.export_to_time
            .as_deref()
            .or(self.export_time.as_deref())
            .unwrap_or("")
    }

    /// True when deletes carry their old image (NEW_AND_OLD_IMAGES).
    pub fn has_old_images(&self) -> bool {
        self.output_view.as_deref() != Some("NEW_IMAGE")
    }
}

/// One line of `manifest-files.json`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FileEntry {
    pub item_count: u64,
    pub md5_checksum: String,
    pub etag: Option<String>,
    pub data_file_s3_key: String,
}

/// Parses `manifest-files.json` (JSON Lines).
pub fn parse_manifest_files(file: &str, bytes: &[u8]) -> Result<Vec<FileEntry>, ExportError> {
    let text = std::str::from_utf8(bytes)
        .map_err(|e| ExportError::new(file, format!("not UTF-8: {e}")))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| ExportError {
                file: file.into(),
                line: Some(i + 1),
                message: e.to_string(),
            })
        })
        .collect()
}

/// base64(MD5(bytes)): the export's checksum form.
pub fn md5_base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(Md5::digest(bytes))
}

/// An S3 one-part multipart ETag: `hex(MD5(MD5(bytes)))-1`.
pub fn etag(bytes: &[u8]) -> String {
    let inner = Md5::digest(bytes);
    let outer = Md5::digest(inner);
    format!(
        "{}-1",
        outer.iter().map(|b| format!("{b:02x}")).collect::<String>()
    )
}

/// One record of a data file.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// A full export's item.
    Item(Item),
    /// An incremental export's change: NewImage present -> put it, absent ->
    /// delete. `old` is there with the NEW_AND_OLD_IMAGES view.
    Change {
        keys: Item,
        new: Option<Item>,
        old: Option<Item>,
    },
}

/// Why a line could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineError {
    /// The file is not an export's (not JSON, not Ion, no Item): the run stops.
    Structure(String),
    /// A well-formed line holding a value DynamoDB would not have written:
    /// the item is dead-lettered.
    Value(String),
}

/// Parses one data line.
pub fn parse_line(format: Format, incremental: bool, line: &str) -> Result<Record, LineError> {
    match format {
        Format::DynamoDbJson => match json::fast_record(incremental, line) {
            Some(record) => Ok(record),
            // Something is off: the tree-based reader names it.
            None => json_tree_record(incremental, line),
        },
        Format::Ion => {
            let e = ion_rs::Element::read_one(line.as_bytes())
                .map_err(|e| LineError::Structure(format!("not Ion: {e}")))?;
            let s = e
                .as_struct()
                .ok_or_else(|| LineError::Structure("not an Ion struct".into()))?;
            record(incremental, |name| {
                s.get(name).map(|x| ion::item_from_ion(x, ""))
            })
        }
    }
}

/// A DYNAMODB_JSON line read through a JSON tree: slower than
/// [`json::fast_record`], and the reader that names what is wrong.
fn json_tree_record(incremental: bool, line: &str) -> Result<Record, LineError> {
    let v: serde_json::Value =
        serde_json::from_str(line).map_err(|e| LineError::Structure(format!("not JSON: {e}")))?;
    let obj = v
        .as_object()
        .ok_or_else(|| LineError::Structure("not a JSON object".into()))?;
    record(incremental, |name| obj.get(name).map(item_from_json))
}

/// Builds a record from a line's images, `image(name)` reading one of
/// `Item`, `Keys`, `NewImage`, `OldImage` when the line has it.
fn record(
    incremental: bool,
    image: impl Fn(&str) -> Option<Result<Item, crate::item::JsonValueError>>,
) -> Result<Record, LineError> {
    let get = |name: &str| {
        image(name)
            .transpose()
            .map_err(|e| LineError::Value(format!("{name}.{e}")))
    };
    if incremental {
        let keys = get("Keys")?
            .ok_or_else(|| LineError::Structure("an incremental record without Keys".into()))?;
        return Ok(Record::Change {
            keys,
            new: get("NewImage")?,
            old: get("OldImage")?,
        });
    }
    get("Item")?
        .map(Record::Item)
        .ok_or_else(|| LineError::Structure("a full-export line without Item".into()))
}

/// Renders one record as a data line (no newline), as DynamoDB writes it.
pub fn render_line(format: Format, record: &Record, write_micros: u64) -> String {
    use crate::item::item_to_json;
    match format {
        Format::DynamoDbJson => {
            let mut m = serde_json::Map::new();
            match record {
                Record::Item(i) => {
                    m.insert("Item".into(), item_to_json(i));
                }
                Record::Change { keys, new, old } => {
                    m.insert("Metadata".into(), serde_json::json!({"WriteTimestampMicros": {"N": write_micros.to_string()}}));
                    m.insert("Keys".into(), item_to_json(keys));
                    if let Some(n) = new {
                        m.insert("NewImage".into(), item_to_json(n));
                    }
                    if let Some(o) = old {
                        m.insert("OldImage".into(), item_to_json(o));
                    }
                }
            }
            serde_json::Value::Object(m).to_string()
        }
        Format::Ion => {
            let mut b = ion_rs::Struct::builder();
            match record {
                Record::Item(i) => b = b.with_field("Item", ion::item_to_ion(i)),
                Record::Change { keys, new, old } => {
                    let meta = ion_rs::Struct::builder()
                        .with_field(
                            "WriteTimestampMicros",
                            ion_rs::Element::from(ion_rs::Decimal::new(write_micros as i64, 0)),
                        )
                        .build();
                    b = b
                        .with_field("Metadata", ion_rs::Element::from(meta))
                        .with_field("Keys", ion::item_to_ion(keys));
                    if let Some(n) = new {
                        b = b.with_field("NewImage", ion::item_to_ion(n));
                    }
                    if let Some(o) = old {
                        b = b.with_field("OldImage", ion::item_to_ion(o));
                    }
                }
            }
            format!("$ion_1_0 {}", ion_rs::Element::from(b.build()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::types::AttributeValue;

    #[test]
    fn locations_parse_and_resolve() {
        let l = Location::parse("s3://b/exports/x/AWSDynamoDB/0176-ab/").unwrap();
        assert_eq!(
            l,
            Location::S3 {
                bucket: "b".into(),
                base: "exports/x/".into(),
                dir: "exports/x/AWSDynamoDB/0176-ab/".into()
            }
        );
        assert_eq!(
            l.resolve("orig/AWSDynamoDB/0176-ab/data/f.json.gz", Some("orig")),
            Object::S3 {
                bucket: "b".into(),
                key: "exports/x/AWSDynamoDB/0176-ab/data/f.json.gz".into()
            }
        );
        assert_eq!(
            l.resolve("AWSDynamoDB/data/inc.json.gz", None),
            Object::S3 {
                bucket: "b".into(),
                key: "exports/x/AWSDynamoDB/data/inc.json.gz".into()
            }
        );
        let l = Location::parse("/tmp/dl/AWSDynamoDB/0176-ab/manifest-summary.json").unwrap();
        assert_eq!(
            l,
            Location::Local {
                base: "/tmp/dl".into(),
                dir: "/tmp/dl/AWSDynamoDB/0176-ab".into()
            }
        );
        assert_eq!(
            l.resolve("p/AWSDynamoDB/0176-ab/data/f.gz", Some("p")),
            Object::Local("/tmp/dl/AWSDynamoDB/0176-ab/data/f.gz".into())
        );
        assert_eq!(
            l.own("manifest-files.json"),
            Object::Local("/tmp/dl/AWSDynamoDB/0176-ab/manifest-files.json".into())
        );
        assert!(Location::parse("/tmp/no-marker/")
            .unwrap_err()
            .message
            .contains("AWSDynamoDB"));
        assert!(Location::parse("s3://bucket-only").is_err());
    }

    #[test]
    fn the_documented_checksums() {
        // md5("") and the S3 ETag of an empty one-part upload.
        assert_eq!(md5_base64(b""), "1B2M2Y8AsgTpgAmY7PhCfg==");
        assert_eq!(etag(b""), "59adb24ef3cdbe0297f05b395827453f-1");
    }

    #[test]
    fn lines_parse_in_both_formats_and_both_types() {
        let full = parse_line(
            Format::DynamoDbJson,
            false,
            r#"{"Item":{"pk":{"S":"1"},"n":{"N":"2"}}}"#,
        )
        .unwrap();
        let Record::Item(item) = &full else {
            panic!("{full:?}")
        };
        assert_eq!(item["n"], AttributeValue::N("2".into()));
        let ion = render_line(Format::Ion, &full, 0);
        assert!(ion.starts_with("$ion_1_0 {Item:"), "{ion}");
        assert_eq!(parse_line(Format::Ion, false, &ion).unwrap(), full);

        let change = Record::Change {
            keys: item.clone(),
            new: None,
            old: Some(item.clone()),
        };
        for f in [Format::DynamoDbJson, Format::Ion] {
            let text = render_line(f, &change, 1768386096366933);
            assert_eq!(parse_line(f, true, &text).unwrap(), change, "{text}");
        }
    }

    #[test]
    fn bad_lines_are_told_apart() {
        let f = Format::DynamoDbJson;
        assert!(matches!(
            parse_line(f, false, "{not json"),
            Err(LineError::Structure(_))
        ));
        assert!(matches!(
            parse_line(f, false, r#"{"pk":{"S":"1"}}"#),
            Err(LineError::Structure(_))
        ));
        assert!(
            matches!(parse_line(f, false, r#"{"Item":{"a":{"NULL":false}}}"#), Err(LineError::Value(m)) if m.contains("Item.at a"))
        );
        assert!(
            matches!(parse_line(f, false, r#"{"Item":{"a":{"Z":"1"}}}"#), Err(LineError::Value(m)) if m.contains("unknown type descriptor"))
        );
        assert!(matches!(
            parse_line(f, true, r#"{"NewImage":{}}"#),
            Err(LineError::Structure(_))
        ));
    }
}
