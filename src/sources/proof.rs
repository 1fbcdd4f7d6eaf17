//! Integrity before writing: in a run that writes (`migrate`, `replay`), a
//! data file is proven before any of its records goes downstream. (`plan`
//! and `verify` write nothing: they check the same in their one pass.)
//!
//! The manifest gives each data file's MD5 and record count; checking them
//! only after the records were written would leave a corrupt or substituted
//! file in the target when the error comes. So a local file is read once
//! first (the compressed bytes hashed, the gunzipped lines counted: a fast
//! pass, no parsing), and an S3 object is downloaded into the spool folder
//! (`--spool-dir`), hashed as it arrives, counted there, and parsed from
//! there. The spool holds at most `--spool-limit-mb` at once: a download
//! waits for room. A download that fails with a transient error starts
//! again, for as long as the stall timeout allows.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use md5::{Digest as _, Md5};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::export::{check_file, DataFile, Export, Store};
use crate::export::{ExportError, Object};
use crate::retry::Patience;

/// Where S3 objects are downloaded to be proven, and how much room there is.
#[derive(Debug, Clone)]
pub struct Spool {
    dir: PathBuf,
    /// Room in MiB.
    room: Arc<Semaphore>,
    limit_mib: u32,
}

impl Spool {
    /// `dir`: the spool folder (default: the system's temp folder).
    pub fn new(dir: Option<PathBuf>, limit_mib: u32) -> Spool {
        let limit_mib = limit_mib.max(1);
        Spool {
            dir: dir.unwrap_or_else(std::env::temp_dir),
            room: Arc::new(Semaphore::new(limit_mib as usize)),
            limit_mib,
        }
    }
}

impl Default for Spool {
    fn default() -> Spool {
        Spool::new(None, 4096)
    }
}

/// A proven file: where to read it from, and accepted mismatches.
#[derive(Debug)]
pub struct Proven {
    pub object: Object,
    pub warnings: Vec<String>,
    _spooled: Option<Spooled>,
}

/// A spooled copy, removed (and its room given back) when dropped.
#[derive(Debug)]
struct Spooled {
    path: PathBuf,
    _room: OwnedSemaphorePermit,
}

impl Drop for Spooled {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Proves `file` against its manifest entry (MD5 and record count); an S3
/// object is spooled first. A mismatch is an error, or a warning when the
/// export accepts mismatches.
pub async fn prove(
    store: &Store,
    export: &Export,
    file: &DataFile,
    spool: &Spool,
    stall: Duration,
) -> Result<Proven, ExportError> {
    let name = file.object.to_string();
    let (local, spooled) = match &file.object {
        Object::Local(_) => (file.object.clone(), None),
        Object::S3 { .. } => {
            let s = download(store, &file.object, spool, stall).await?;
            (Object::Local(s.path.clone()), Some(s))
        }
    };
    let (md5, records) = hash_and_count(&local, &name).await?;
    let warnings = check_file(export, file, &name, &md5, records)?;
    Ok(Proven {
        object: local,
        warnings,
        _spooled: spooled,
    })
}

/// The base64 MD5 of a local file's bytes and the number of non-blank
/// lines once gunzipped.
async fn hash_and_count(local: &Object, name: &str) -> Result<(String, u64), ExportError> {
    let Object::Local(path) = local else {
        return Err(ExportError::new(name, "not a local file"));
    };
    let f = tokio::fs::File::open(path)
        .await
        .map_err(|e| ExportError::new(name, e.to_string()))?;
    let hashing = BufReader::with_capacity(64 * 1024, super::export::Md5Reader::new(Box::new(f)));
    let mut gz = async_compression::tokio::bufread::GzipDecoder::new(hashing);
    gz.multiple_members(true);
    let mut lines = BufReader::with_capacity(64 * 1024, gz);
    let mut buf = Vec::new();
    let (mut line, mut records) = (0usize, 0u64);
    loop {
        buf.clear();
        let n = lines
            .read_until(b'\n', &mut buf)
            .await
            .map_err(|e| ExportError {
                file: name.to_string(),
                line: Some(line + 1),
                message: format!("cannot decompress: {e}"),
            })?;
        if n == 0 {
            break;
        }
        line += 1;
        if !buf.iter().all(u8::is_ascii_whitespace) {
            records += 1;
        }
    }
    let mut hashing = lines.into_inner().into_inner();
    let mut rest = Vec::new();
    hashing
        .read_to_end(&mut rest)
        .await
        .map_err(|e| ExportError::new(name, e.to_string()))?;
    Ok((hashing.into_inner().finish(), records))
}

/// Downloads an S3 object into the spool, starting again after a
/// transient failure while the stall timeout allows.
async fn download(
    store: &Store,
    obj: &Object,
    spool: &Spool,
    stall: Duration,
) -> Result<Spooled, ExportError> {
    let name = obj.to_string();
    let mut patience = Patience::new(stall);
    loop {
        let failure = match download_once(store, obj, spool).await {
            Ok(s) => return Ok(s),
            Err((e, false)) => return Err(e),
            Err((e, true)) => e,
        };
        match patience.failure() {
            Some(wait) => tokio::time::sleep(wait).await,
            None => {
                return Err(ExportError::new(
                    &name,
                    format!(
                        "{} (retried for {} s; --stall-timeout)",
                        failure.message,
                        patience.stalled_for().as_secs()
                    ),
                ))
            }
        }
    }
}

/// One download; the error says whether another try may succeed.
async fn download_once(
    store: &Store,
    obj: &Object,
    spool: &Spool,
) -> Result<Spooled, (ExportError, bool)> {
    let name = obj.to_string();
    let opened = store
        .open_sized(obj)
        .await
        .map_err(|f| (f.error, f.transient))?
        .ok_or_else(|| {
            (
                ExportError::new(&name, "missing (named by manifest-files.json)"),
                false,
            )
        })?;
    let mib = opened
        .len
        .map_or(1, |l| l.div_ceil(1 << 20))
        .clamp(1, spool.limit_mib as u64) as u32;
    let room = spool
        .room
        .clone()
        .acquire_many_owned(mib)
        .await
        .map_err(|_| (ExportError::new(&name, "the spool was closed"), false))?;
    tokio::fs::create_dir_all(&spool.dir)
        .await
        .map_err(|e| (spool_error(spool, e), false))?;
    let path = spool.dir.join(format!(
        "singletable-spool-{}-{:016x}.gz",
        std::process::id(),
        rand::random::<u64>()
    ));
    let spooled = Spooled { path, _room: room };
    let mut out = tokio::fs::File::create(&spooled.path)
        .await
        .map_err(|e| (spool_error(spool, e), false))?;
    let mut reader = opened.reader;
    let copied = tokio::io::copy(&mut reader, &mut out).await;
    let got = copied.map_err(|e| {
        (
            ExportError::new(&name, format!("download failed: {e}")),
            true,
        )
    })?;
    out.flush()
        .await
        .map_err(|e| (spool_error(spool, e), false))?;
    if opened.len.is_some_and(|len| got < len) {
        return Err((ExportError::new(&name, "download cut short"), true));
    }
    Ok(spooled)
}

fn spool_error(spool: &Spool, e: std::io::Error) -> ExportError {
    ExportError::new(
        spool.dir.display().to_string(),
        format!("spool folder (--spool-dir): {e}"),
    )
}

/// The MD5 of some bytes, base64, as manifests give it.
pub fn md5_of(hasher: Md5) -> String {
    base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        hasher.finalize(),
    )
}
