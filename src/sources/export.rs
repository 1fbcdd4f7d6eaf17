//! The export source: DynamoDB's Export-to-S3 files, from S3 or a local copy.
//!
//! Opening an export reads and checks its manifests (their own checksums,
//! the summary's format and table, the per-file item counts against the
//! summary's total) and lists the data files the manifest names; an export
//! without manifests (moto writes those) is read by listing its `data/`
//! folder, with a warning that nothing can be checked. Reading a data file
//! streams it once: the bytes are hashed (MD5, checked against the
//! manifest) as they are read, gunzipped and split into lines on the fly,
//! and the records go out in small batches through the bounded channel, so
//! memory stays flat however large the export. A bad file is an error
//! naming it and the line; a bad item in a good file is a record the
//! transform dead-letters. A transient failure while reading from S3 (a
//! reset, a 5xx, a body cut short) re-opens the object and reads it again
//! from the start, skipping the records already sent, for as long as the
//! stall timeout allows; a shutdown stops a file at its next record.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use md5::{Digest as _, Md5};

use crate::checkpoint::{Cursor, Step};
use tokio::io::{AsyncBufReadExt as _, AsyncRead, AsyncReadExt as _, BufReader, ReadBuf};
use tokio::sync::{mpsc, watch};

use super::proof::{prove, Spool};
use crate::retry::{classify_sdk, Patience};

use super::{SourceBatch, SourceMsg, SourceRecord};
use crate::export::{
    parse_line, parse_manifest_files, ExportError, Format, LineError, Location, Object, Record,
    Summary,
};

/// Reads export objects from local disk or S3.
#[derive(Clone)]
pub struct Store {
    s3: Option<aws_sdk_s3::Client>,
    /// Where S3 data files are proven before they are read.
    pub spool: Spool,
}

impl Store {
    /// `s3` is needed only for `s3://` locations.
    pub fn new(s3: Option<aws_sdk_s3::Client>) -> Store {
        Store {
            s3,
            spool: Spool::default(),
        }
    }

    /// The same store, spooling S3 data files into `spool`.
    pub fn with_spool(self, spool: Spool) -> Store {
        Store { spool, ..self }
    }

    /// The S3 client, when one was configured.
    pub fn s3_client(&self) -> Option<&aws_sdk_s3::Client> {
        self.s3.as_ref()
    }

    fn s3(&self, obj: &Object) -> Result<&aws_sdk_s3::Client, ExportError> {
        self.s3
            .as_ref()
            .ok_or_else(|| ExportError::new(obj.to_string(), "no S3 client was configured"))
    }

    /// Opens an object for streaming; `Ok(None)` when it does not exist.
    pub async fn open(
        &self,
        obj: &Object,
    ) -> Result<Option<Box<dyn AsyncRead + Send + Unpin>>, ExportError> {
        match self.open_sized(obj).await {
            Ok(o) => Ok(o.map(|o| o.reader)),
            Err(f) => Err(f.error),
        }
    }

    /// Opens an object with its length, telling a transient failure apart.
    pub(super) async fn open_sized(&self, obj: &Object) -> Result<Option<Opened>, Failure> {
        match obj {
            Object::Local(path) => match tokio::fs::File::open(path).await {
                Ok(f) => Ok(Some(Opened {
                    reader: Box::new(f),
                    len: None,
                })),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(Failure::lasting(ExportError::new(
                    obj.to_string(),
                    e.to_string(),
                ))),
            },
            Object::S3 { bucket, key } => {
                let out = self
                    .s3(obj)
                    .map_err(Failure::lasting)?
                    .get_object()
                    .bucket(bucket)
                    .key(key)
                    .send()
                    .await;
                match out {
                    Ok(o) => Ok(Some(Opened {
                        len: o.content_length().and_then(|l| u64::try_from(l).ok()),
                        reader: Box::new(o.body.into_async_read()),
                    })),
                    Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => Ok(None),
                    Err(e) => Err(Failure {
                        transient: classify_sdk(&e).retryable(),
                        error: ExportError::new(obj.to_string(), crate::aws::describe_error(&e)),
                    }),
                }
            }
        }
    }

    /// Reads a small object whole; `Ok(None)` when it does not exist.
    pub async fn read(&self, obj: &Object) -> Result<Option<Vec<u8>>, ExportError> {
        let Some(mut r) = self.open(obj).await? else {
            return Ok(None);
        };
        let mut buf = Vec::new();
        r.read_to_end(&mut buf)
            .await
            .map_err(|e| ExportError::new(obj.to_string(), e.to_string()))?;
        Ok(Some(buf))
    }

    /// Lists the objects under a folder (`data/`), sorted.
    pub async fn list(&self, dir: &Object) -> Result<Vec<Object>, ExportError> {
        let mut out = Vec::new();
        match dir {
            Object::Local(path) => {
                let mut rd = tokio::fs::read_dir(path)
                    .await
                    .map_err(|e| ExportError::new(dir.to_string(), e.to_string()))?;
                while let Some(e) = rd
                    .next_entry()
                    .await
                    .map_err(|e| ExportError::new(dir.to_string(), e.to_string()))?
                {
                    if e.file_type().await.is_ok_and(|t| t.is_file()) {
                        out.push(Object::Local(e.path()));
                    }
                }
            }
            Object::S3 { bucket, key } => {
                let mut pages = self
                    .s3(dir)?
                    .list_objects_v2()
                    .bucket(bucket)
                    .prefix(key)
                    .into_paginator()
                    .send();
                while let Some(page) = pages.next().await {
                    let page = page.map_err(|e| {
                        ExportError::new(dir.to_string(), crate::aws::describe_error(&e))
                    })?;
                    for o in page.contents() {
                        if let Some(k) = o.key().filter(|k| !k.ends_with('/')) {
                            out.push(Object::S3 {
                                bucket: bucket.clone(),
                                key: k.to_string(),
                            });
                        }
                    }
                }
            }
        }
        out.sort_by_key(|o| o.to_string());
        Ok(out)
    }
}

/// One data file to read, and what its manifest says of it.
#[derive(Debug, Clone)]
pub struct DataFile {
    pub object: Object,
    pub md5: Option<String>,
    pub item_count: Option<u64>,
}

/// An opened, checked export of one table.
#[derive(Debug, Clone)]
pub struct Export {
    /// As the user wrote it.
    pub label: String,
    pub format: Format,
    pub incremental: bool,
    pub has_old_images: bool,
    /// The time its data is as of, for ordering incrementals.
    pub as_of: String,
    /// An incremental export's window start (`exportFromTime`).
    pub from_time: Option<String>,
    /// The summary's item count (None without manifests).
    pub item_count: Option<u64>,
    pub files: Vec<DataFile>,
    /// Accept checksum and count mismatches (recorded as warnings).
    pub accept_mismatch: bool,
}

/// Opens an export: reads and checks its manifests. Returns it and warnings.
pub async fn open(
    store: &Store,
    label: &str,
    table: &str,
    accept_mismatch: bool,
) -> Result<(Export, Vec<String>), ExportError> {
    let location = Location::parse(label)?;
    let mut warnings = Vec::new();
    let summary_obj = location.own("manifest-summary.json");
    let Some(summary_bytes) = store.read(&summary_obj).await? else {
        // moto's exports: data files only.
        let files: Vec<DataFile> = store
            .list(&location.data_dir())
            .await?
            .into_iter()
            .filter(|o| o.to_string().ends_with(".gz"))
            .map(|object| DataFile {
                object,
                md5: None,
                item_count: None,
            })
            .collect();
        if files.is_empty() {
            return Err(ExportError::new(
                summary_obj.to_string(),
                "no manifest-summary.json and no data/*.gz files: not an export",
            ));
        }
        warnings.push(format!(
            "{label}: no manifest-summary.json; read {} data file(s) from data/ as a full DYNAMODB_JSON export, with nothing to check them against",
            files.len()
        ));
        let export = Export {
            label: label.into(),
            format: Format::DynamoDbJson,
            incremental: false,
            has_old_images: true,
            as_of: String::new(),
            from_time: None,
            item_count: None,
            files,
            accept_mismatch,
        };
        return Ok((export, warnings));
    };
    let mut mismatch = |file: String, message: String| -> Result<(), ExportError> {
        if accept_mismatch {
            warnings.push(format!("{file}: {message} (accepted)"));
            Ok(())
        } else {
            Err(ExportError::new(
                file,
                format!("{message}; pass --accept-export-mismatch to read it anyway"),
            ))
        }
    };
    check_sidecar(
        store,
        &location,
        "manifest-summary",
        &summary_bytes,
        &mut mismatch,
    )
    .await?;
    let summary_name = summary_obj.to_string();
    let summary = Summary::parse(&summary_name, &summary_bytes)?;
    let format = summary.format(&summary_name)?;
    if let Some(arn) = &summary.table_arn {
        let exported = arn.rsplit('/').next().unwrap_or_default();
        if !exported.is_empty() && exported != table {
            return Err(ExportError::new(
                summary_name,
                format!("this is an export of table {exported:?}, named for table {table:?}"),
            ));
        }
    }
    let files_obj = location.resolve(&summary.manifest_files_s3_key, summary.s3_prefix.as_deref());
    let files_bytes = store.read(&files_obj).await?.ok_or_else(|| {
        ExportError::new(
            files_obj.to_string(),
            "missing (named by manifest-summary.json's manifestFilesS3Key)",
        )
    })?;
    check_sidecar(
        store,
        &location,
        "manifest-files",
        &files_bytes,
        &mut mismatch,
    )
    .await?;
    let entries = parse_manifest_files(&files_obj.to_string(), &files_bytes)?;
    let listed: u64 = entries.iter().map(|e| e.item_count).sum();
    if let Some(total) = summary.item_count {
        if total != listed {
            mismatch(
                summary_name.clone(),
                format!("itemCount is {total}, but manifest-files.json's files hold {listed}"),
            )?;
        }
    }
    let files = entries
        .into_iter()
        .map(|e| DataFile {
            object: location.resolve(&e.data_file_s3_key, summary.s3_prefix.as_deref()),
            md5: Some(e.md5_checksum),
            item_count: Some(e.item_count),
        })
        .collect();
    let export = Export {
        label: label.into(),
        format,
        incremental: summary.incremental(),
        has_old_images: summary.has_old_images(),
        as_of: summary.as_of().to_string(),
        from_time: summary.export_from_time.clone(),
        item_count: summary.item_count.or(Some(listed)),
        files,
        accept_mismatch,
    };
    Ok((export, warnings))
}

/// Checks `NAME.md5` or `NAME.checksum` (whichever exists) against `bytes`.
async fn check_sidecar(
    store: &Store,
    location: &Location,
    name: &str,
    bytes: &[u8],
    mismatch: &mut impl FnMut(String, String) -> Result<(), ExportError>,
) -> Result<(), ExportError> {
    for ext in ["md5", "checksum"] {
        let obj = location.own(&format!("{name}.{ext}"));
        if let Some(sum) = store.read(&obj).await? {
            let want = String::from_utf8_lossy(&sum).trim().to_string();
            let got = crate::export::md5_base64(bytes);
            if want != got {
                mismatch(
                    obj.to_string(),
                    format!("checksum {want} does not match {name}.json's MD5 {got}"),
                )?;
            }
            return Ok(());
        }
    }
    Ok(())
}

/// An object opened for reading, with its length when the store says.
pub(super) struct Opened {
    pub reader: Box<dyn AsyncRead + Send + Unpin>,
    pub len: Option<u64>,
}

/// A failure to read a file, and whether another try may succeed.
pub(super) struct Failure {
    pub error: ExportError,
    pub transient: bool,
}

impl Failure {
    fn lasting(error: ExportError) -> Failure {
        Failure {
            error,
            transient: false,
        }
    }
}

/// Hashes and counts the bytes that pass through it.
pub(super) struct Md5Reader<R> {
    inner: R,
    hasher: Md5,
    bytes: u64,
}

impl<R> Md5Reader<R> {
    pub fn new(inner: R) -> Md5Reader<R> {
        Md5Reader {
            inner,
            hasher: Md5::new(),
            bytes: 0,
        }
    }

    /// The base64 MD5 of everything read, as manifests give it.
    pub fn finish(self) -> String {
        super::proof::md5_of(self.hasher)
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for Md5Reader<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &r {
            this.hasher.update(&buf.filled()[before..]);
            this.bytes += (buf.filled().len() - before) as u64;
        }
        r
    }
}

/// Records per batch sent downstream.
const BATCH: usize = 256;

/// What reading one file found.
#[derive(Debug, Default)]
pub struct FileOutcome {
    pub records: u64,
    /// A shutdown stopped the file before its end.
    pub interrupted: bool,
    /// Accepted mismatches.
    pub warnings: Vec<String>,
}

/// Where the records of one file go, and what stops or bounds the read.
pub struct FileSink<'a> {
    pub entity: usize,
    pub tx: &'a mpsc::Sender<SourceMsg>,
    pub on_records: &'a (dyn Fn(usize, u64) + Send + Sync),
    /// Set on a signal: the file stops at its next record.
    pub shutdown: Option<&'a watch::Receiver<bool>>,
    /// How long transient failures are retried without progress.
    pub stall: Duration,
    /// Prove the file (MD5, record count) before sending any record.
    pub prove: bool,
    /// Records an earlier run acknowledged: read past, not sent.
    pub skip: u64,
    /// Issues each batch's ticket when the run keeps a state.
    pub cursor: Option<Cursor>,
}

/// Streams one data file into `out.tx` as records of `out.entity`,
/// re-reading it after a transient failure and skipping what was sent.
pub async fn read_file(
    store: &Store,
    export: &Export,
    file: &DataFile,
    out: &FileSink<'_>,
) -> Result<FileOutcome, ExportError> {
    let checked = file.md5.is_some() || file.item_count.is_some();
    let proven = match out.prove && checked {
        true => Some(prove(store, export, file, &store.spool, out.stall).await?),
        false => None,
    };
    let source = Source {
        name: file.object.to_string(),
        open: proven.as_ref().map_or(&file.object, |p| &p.object),
        check: proven.is_none(),
    };
    let mut sent = out.skip;
    let mut patience = Patience::new(out.stall);
    loop {
        let before = sent;
        let failure = match read_once(store, export, file, &source, out, &mut sent).await {
            Ok(mut outcome) => {
                outcome
                    .warnings
                    .extend(proven.into_iter().flat_map(|p| p.warnings));
                if let (Some(c), false) = (&out.cursor, outcome.interrupted) {
                    c.finish();
                }
                return Ok(outcome);
            }
            Err(f) if !f.transient => return Err(f.error),
            Err(f) => f,
        };
        if sent > before {
            patience.success();
        }
        match patience.failure() {
            Some(wait) => tokio::time::sleep(wait).await,
            None => {
                let mut e = failure.error;
                e.message = format!(
                    "{} (retried for {} s without progress; --stall-timeout)",
                    e.message,
                    patience.stalled_for().as_secs()
                );
                return Err(e);
            }
        }
    }
}

/// What one read opens, and what it calls it.
struct Source<'a> {
    /// The file's name in errors and dead letters (its S3 URI, not the spool's).
    name: String,
    /// The object to read: the file, or its proven, spooled copy.
    open: &'a Object,
    /// Compare MD5 and record count at the end (not proven before).
    check: bool,
}

/// One read of a file from its start; the first `*sent` records were sent
/// by an earlier read and are skipped unparsed.
async fn read_once(
    store: &Store,
    export: &Export,
    file: &DataFile,
    source: &Source<'_>,
    out: &FileSink<'_>,
    sent: &mut u64,
) -> Result<FileOutcome, Failure> {
    let name = source.name.clone();
    let at = |line: usize, message: String| ExportError {
        file: name.clone(),
        line: Some(line),
        message,
    };
    let opened = store.open_sized(source.open).await?.ok_or_else(|| {
        Failure::lasting(ExportError::new(
            &name,
            "missing (named by manifest-files.json)",
        ))
    })?;
    let hashing = BufReader::with_capacity(64 * 1024, Md5Reader::new(opened.reader));
    let mut gz = async_compression::tokio::bufread::GzipDecoder::new(hashing);
    gz.multiple_members(true);
    let mut lines = BufReader::with_capacity(64 * 1024, gz);
    // One buffer for every line of the file.
    let mut buf = Vec::with_capacity(4096);
    // A body cut short by the network, not a bad file: read it again.
    let cut_short = |lines: &mut Decoded| opened.len.is_some_and(|len| bytes_read(lines) < len);
    let skip = *sent;
    let mut outcome = FileOutcome::default();
    let mut batch = Vec::with_capacity(BATCH);
    let mut line_no = 0usize;
    loop {
        if out.shutdown.is_some_and(|s| *s.borrow()) {
            outcome.interrupted = true;
            break;
        }
        buf.clear();
        match lines.read_until(b'\n', &mut buf).await {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                return Err(Failure {
                    transient: cut_short(&mut lines),
                    error: at(line_no + 1, format!("cannot decompress: {e}")),
                })
            }
        }
        let Ok(line) = std::str::from_utf8(trim_newline(&buf)) else {
            return Err(Failure::lasting(at(
                line_no + 1,
                "cannot decompress: stream did not contain valid UTF-8".into(),
            )));
        };
        line_no += 1;
        if line.trim().is_empty() {
            continue;
        }
        outcome.records += 1;
        if outcome.records <= skip {
            continue;
        }
        let record = match parse_line(export.format, export.incremental, line) {
            Ok(Record::Item(i)) => SourceRecord::Item(i),
            Ok(Record::Change { keys, new, old }) => SourceRecord::Change { keys, new, old },
            Err(LineError::Structure(m)) => return Err(Failure::lasting(at(line_no, m))),
            Err(LineError::Value(m)) => SourceRecord::Bad {
                reason: format!("{name}:{line_no}: {m}"),
                raw: line.to_string(),
            },
        };
        batch.push(record);
        if batch.len() >= BATCH {
            send(
                out,
                &name,
                std::mem::replace(&mut batch, Vec::with_capacity(BATCH)),
            )
            .await?;
            *sent = outcome.records;
        }
    }
    if !batch.is_empty() {
        send(out, &name, batch).await?;
        *sent = outcome.records;
    }
    if outcome.interrupted || !source.check {
        // Stopped early (the checks need the whole file), or proven before.
        return Ok(outcome);
    }
    // Hash whatever the decoder left unread, then compare.
    let mut hashing = lines.into_inner().into_inner();
    let mut rest = Vec::new();
    hashing.read_to_end(&mut rest).await.map_err(|e| Failure {
        transient: opened.len.is_some(),
        error: ExportError::new(&name, e.to_string()),
    })?;
    let got = hashing.into_inner().finish();
    let accepted = check_file(export, file, &name, &got, outcome.records);
    outcome.warnings = accepted.map_err(Failure::lasting)?;
    Ok(outcome)
}

/// The line reader over the gunzipped, hashed bytes of one object.
type Decoded = BufReader<
    async_compression::tokio::bufread::GzipDecoder<
        BufReader<Md5Reader<Box<dyn AsyncRead + Send + Unpin>>>,
    >,
>;

/// Bytes of the object read so far.
fn bytes_read(lines: &mut Decoded) -> u64 {
    lines.get_ref().get_ref().get_ref().bytes
}

/// A line without its `\n` (or `\r\n`), as `lines()` gives it.
fn trim_newline(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

async fn send(out: &FileSink<'_>, name: &str, records: Vec<SourceRecord>) -> Result<(), Failure> {
    (out.on_records)(out.entity, records.len() as u64);
    let step = Step {
        records: records.len() as u64,
        ..Step::default()
    };
    let batch = SourceBatch {
        entity: out.entity,
        records,
        part: out.cursor.as_ref().map(|c| c.issue(step)),
    };
    out.tx
        .send(SourceMsg::Batch(batch))
        .await
        .map_err(|_| Failure::lasting(ExportError::new(name, "the pipeline stopped")))
}

/// Compares a file read to its end (its MD5, its record count) with its
/// manifest entry; the mismatches the export accepts, as warnings.
pub(super) fn check_file(
    export: &Export,
    file: &DataFile,
    name: &str,
    md5: &str,
    records: u64,
) -> Result<Vec<String>, ExportError> {
    let mut warnings = Vec::new();
    let mut problem = |message: String| -> Result<(), ExportError> {
        if export.accept_mismatch {
            warnings.push(format!("{name}: {message} (accepted)"));
            Ok(())
        } else {
            Err(ExportError::new(
                name,
                format!("{message}; nothing of it was written; pass --accept-export-mismatch to read it anyway"),
            ))
        }
    };
    if let Some(want) = &file.md5 {
        if want != md5 {
            problem(format!(
                "MD5 of the file as read is {md5}, manifest-files.json says {want}"
            ))?;
        }
    }
    if let Some(want) = file.item_count {
        if want != records {
            problem(format!(
                "holds {records} records, manifest-files.json says {want}"
            ))?;
        }
    }
    Ok(warnings)
}

/// Reads the first `limit` records of an export (for `preview`).
pub async fn read_first(
    store: &Store,
    export: &Export,
    limit: usize,
    stall: Duration,
) -> Result<Vec<SourceRecord>, ExportError> {
    let mut out = Vec::new();
    for file in &export.files {
        if out.len() >= limit {
            break;
        }
        let (tx, mut rx) = mpsc::channel(4);
        let store = store.clone();
        let (export, file) = (export.clone(), file.clone());
        let task = tokio::spawn(async move {
            let out = FileSink {
                entity: 0,
                tx: &tx,
                on_records: &|_, _| {},
                shutdown: None,
                stall,
                prove: false,
                skip: 0,
                cursor: None,
            };
            read_file(&store, &export, &file, &out).await
        });
        while let Some(msg) = rx.recv().await {
            if let SourceMsg::Batch(b) = msg {
                out.extend(b.records);
            }
            if out.len() >= limit {
                break;
            }
        }
        drop(rx);
        if out.len() < limit {
            // Read to the end: a broken file is an error here too.
            task.await
                .map_err(|e| ExportError::new("(task)", e.to_string()))??;
        } else {
            task.abort();
        }
    }
    out.truncate(limit);
    Ok(out)
}
