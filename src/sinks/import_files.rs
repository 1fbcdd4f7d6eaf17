//! Files for ImportTable: target items as gzip DYNAMODB_JSON, shuffled.
//!
//! This module owns the file side of the import path: it writes each item
//! as an `{"Item":{...}}` line (the format ImportTable reads, raw UTF-8 as
//! serde_json writes it) into one of several open gzip files chosen at
//! random, so that a run of one partition key's items in the source spreads
//! over many files, as AWS advises for sorted data. A file is closed once
//! its lines reach the size bound and a new one takes its place, so memory
//! stays flat. The files go under `data/` and a `manifest.json` beside that
//! folder lists them (name, items, bytes, MD5): ImportTable reads every
//! object under its prefix, so the manifest must live outside `data/`.
//! [`run`] is the sink `migrate --to-import` uses in place of the writer.
//! It does no S3 and no DynamoDB: uploading and importing are the caller's.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use flate2::write::GzEncoder;
use md5::{Digest as _, Md5};
use rand::{Rng as _, SeedableRng as _};
use serde::{Deserialize, Serialize};

use std::collections::HashSet;
use std::sync::Arc;

use crate::checkpoint::tracker::Outcome;
use crate::item::{key_display, project, Item, JsonItem};
use crate::report::RunStats;
use crate::sinks::batcher::{Op, WriteRequest};
use crate::sinks::dead_letter::{DeadLetter, Stage};
use crate::sinks::writer::{SinkError, SinkIo, SinkMsg};

/// ImportTable's limit on S3 objects per import.
pub const MAX_IMPORT_OBJECTS: usize = 50_000;
/// ImportTable's limit on the data of one import (15 TB in the large
/// regions; 1 TB in the others, which the tool cannot tell apart).
pub const MAX_IMPORT_BYTES: u64 = 15_000_000_000_000;
/// Files open at once, among which items are shuffled.
pub const SPREAD: usize = 16;

/// One finished file, as the manifest lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Its path under the location, `data/part-00001.json.gz`.
    pub name: String,
    pub items: u64,
    /// Its size on disk (compressed).
    pub bytes: u64,
    /// Base64 MD5 of its bytes, as export manifests give it.
    pub md5: String,
}

/// `manifest.json`: every file written, and the totals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub compression: String,
    pub files: Vec<FileEntry>,
    pub items: u64,
    pub bytes: u64,
}

/// Why the files cannot be written or imported.
#[derive(Debug, thiserror::Error)]
pub enum ImportFilesError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{0} already holds import files (data/ or manifest.json): ImportTable would import them too; choose an empty folder or remove them")]
    NotEmpty(String),
    #[error("{0} bytes of items is over ImportTable's 15 TB per import (1 TB outside the large regions); split the migration (a mapping for some of the entities, then another)")]
    TooLarge(u64),
    #[error("{files} files is over ImportTable's {MAX_IMPORT_OBJECTS} objects per import; raise --import-file-size (now {bound} bytes)")]
    TooManyFiles { files: usize, bound: u64 },
}

/// The writer of one location's files.
pub struct ImportFiles {
    dir: PathBuf,
    bound: u64,
    open: Vec<Option<Open>>,
    done: Vec<FileEntry>,
    next: usize,
    /// Uncompressed bytes written, all files.
    raw_total: u64,
    rng: rand_chacha::ChaCha8Rng,
    line: Vec<u8>,
}

/// A file being written: gzip over an MD5 over the file.
struct Open {
    name: String,
    gz: GzEncoder<Hashing<BufWriter<File>>>,
    items: u64,
    /// Uncompressed bytes written (the size bound counts these).
    raw: u64,
}

/// A writer that hashes and counts what passes through it.
struct Hashing<W> {
    inner: W,
    md5: Md5,
    bytes: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.md5.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

impl ImportFiles {
    /// Starts writing under `dir` (its `data/` folder is created), files of
    /// about `bound` uncompressed bytes each; `seed` makes the shuffle
    /// repeatable.
    pub fn create(dir: &Path, bound: u64, seed: u64) -> Result<ImportFiles, ImportFilesError> {
        let data = dir.join("data");
        std::fs::create_dir_all(&data).map_err(|e| io(&data, e))?;
        // ImportTable would read an earlier run's files too.
        let mut old = std::fs::read_dir(&data).map_err(|e| io(&data, e))?;
        if old.next().is_some() || dir.join("manifest.json").exists() {
            return Err(ImportFilesError::NotEmpty(dir.display().to_string()));
        }
        Ok(ImportFiles {
            dir: dir.to_path_buf(),
            bound: bound.max(1),
            open: (0..SPREAD).map(|_| None).collect(),
            done: Vec::new(),
            next: 0,
            raw_total: 0,
            rng: rand_chacha::ChaCha8Rng::seed_from_u64(seed),
            line: Vec::with_capacity(1024),
        })
    }

    /// Writes one item into a file chosen at random.
    pub fn put(&mut self, item: &Item) -> Result<(), ImportFilesError> {
        self.line.clear();
        self.line.extend_from_slice(b"{\"Item\":");
        // Serializing our own values into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut self.line, &JsonItem(item));
        self.line.extend_from_slice(b"}\n");
        let slot = self.rng.random_range(0..self.open.len());
        if self.open[slot].is_none() {
            self.open[slot] = Some(self.start()?);
        }
        let Some(file) = self.open[slot].as_mut() else {
            unreachable!("the slot was just filled");
        };
        let path = self.dir.join(&file.name);
        file.gz.write_all(&self.line).map_err(|e| io(&path, e))?;
        file.items += 1;
        file.raw += self.line.len() as u64;
        self.raw_total += self.line.len() as u64;
        if file.raw >= self.bound {
            if let Some(full) = self.open[slot].take() {
                self.close(full)?;
            }
        }
        Ok(())
    }

    fn start(&mut self) -> Result<Open, ImportFilesError> {
        self.next += 1;
        let name = format!("data/part-{:05}.json.gz", self.next);
        let path = self.dir.join(&name);
        let file = File::create(&path).map_err(|e| io(&path, e))?;
        let hashing = Hashing {
            inner: BufWriter::with_capacity(64 * 1024, file),
            md5: Md5::new(),
            bytes: 0,
        };
        Ok(Open {
            name,
            gz: GzEncoder::new(hashing, flate2::Compression::default()),
            items: 0,
            raw: 0,
        })
    }

    /// Finishes a file's gzip stream and syncs it to disk.
    fn close(&mut self, open: Open) -> Result<(), ImportFilesError> {
        let path = self.dir.join(&open.name);
        let err = |e| io(&path, e);
        let hashing = open.gz.finish().map_err(err)?;
        let file = hashing
            .inner
            .into_inner()
            .map_err(|e| err(e.into_error()))?;
        file.sync_all().map_err(err)?;
        self.done.push(FileEntry {
            name: open.name,
            items: open.items,
            bytes: hashing.bytes,
            md5: base64::engine::general_purpose::STANDARD.encode(hashing.md5.finalize()),
        });
        Ok(())
    }

    /// Closes every file and writes `manifest.json`; refuses a set of files
    /// ImportTable would not take.
    pub fn finish(mut self) -> Result<Manifest, ImportFilesError> {
        let open: Vec<Open> = self.open.iter_mut().filter_map(Option::take).collect();
        for f in open {
            self.close(f)?;
        }
        self.done.sort_by(|a, b| a.name.cmp(&b.name));
        if self.raw_total > MAX_IMPORT_BYTES {
            return Err(ImportFilesError::TooLarge(self.raw_total));
        }
        if self.done.len() > MAX_IMPORT_OBJECTS {
            return Err(ImportFilesError::TooManyFiles {
                files: self.done.len(),
                bound: self.bound,
            });
        }
        let manifest = Manifest {
            format: "DYNAMODB_JSON".into(),
            compression: "GZIP".into(),
            items: self.done.iter().map(|f| f.items).sum(),
            bytes: self.done.iter().map(|f| f.bytes).sum(),
            files: self.done,
        };
        let path = self.dir.join("manifest.json");
        let text = serde_json::to_string_pretty(&manifest).unwrap_or_default();
        std::fs::write(&path, text + "\n").map_err(|e| io(&path, e))?;
        Ok(manifest)
    }
}

/// What the import sink needs to know.
#[derive(Debug, Clone)]
pub struct ImportConfig {
    pub dir: PathBuf,
    /// Write the files although two records map to one target key.
    pub allow_collisions: bool,
    /// The target's primary key attributes.
    pub key_names: Vec<String>,
}

/// The sink of `migrate --to-import`: every put becomes a line of one of
/// `files` (created by the caller, so that an unusable folder fails the
/// run before anything is read); nothing is sent to DynamoDB. Collisions are found exactly (a 128-bit
/// digest of each target key in memory, about 40 bytes an item): without
/// `allow_collisions` they fail the run before a manifest is written, since
/// ImportTable would keep one record of each at random. A run stopped by a
/// signal writes no manifest either: its files are not the whole data.
pub async fn run(
    mut files: ImportFiles,
    cfg: ImportConfig,
    mut io: SinkIo,
    stats: Arc<RunStats>,
) -> Result<(), SinkError> {
    let place = cfg.dir.display().to_string();
    let fatal = |message: String| SinkError::Fatal {
        table: place.clone(),
        message,
    };
    let names: Vec<&str> = cfg.key_names.iter().map(String::as_str).collect();
    let mut seen: HashSet<u128> = HashSet::new();
    let mut collisions: (u64, Option<String>) = (0, None);
    // Once the run must stop, what still comes is recorded as not written.
    let mut stopped: Option<String> = None;
    while let Some(msg) = io.rx.recv().await {
        let req = match msg {
            SinkMsg::Write(r) => r,
            // Everything before it is in the files' buffers.
            SinkMsg::Barrier(ack) => {
                let _ = ack.send(());
                continue;
            }
        };
        if stopped.is_none() && req.op == Op::Delete {
            stopped = Some(format!(
                "ImportTable cannot delete ({}, from an incremental export's change or a moved key): --to-import reads full exports and scans only",
                key_display(&req.item)
            ));
        }
        if stopped.is_none() {
            if let Err(e) = files.put(&req.item) {
                stopped = Some(e.to_string());
            }
        }
        if let Some(why) = &stopped {
            let _ = io.on_stop.send(true);
            let letter = unwritten(req, why);
            io.dead
                .send(letter)
                .await
                .map_err(|_| SinkError::DeadLetterClosed)?;
            continue;
        }
        // `req.key` is the target key's text, worked out in the transform.
        let digest = u128::from_be_bytes(Md5::digest(req.key.as_bytes()).into());
        let repeated = !seen.insert(digest);
        if repeated {
            collisions.0 += 1;
            collisions
                .1
                .get_or_insert_with(|| key_display(&project(&req.item, &names)));
        }
        let c = stats.entity(req.entity);
        let (counter, outcome) = match repeated {
            true => (&c.overwritten, Outcome::Overwritten),
            false => (&c.written, Outcome::Written),
        };
        RunStats::add(counter, 1);
        if let Some(part) = req.part {
            part.count(outcome);
            part.settle();
        }
    }
    if let Some(why) = stopped {
        return Err(fatal(why));
    }
    if *io.shutdown.borrow() {
        return Ok(());
    }
    if let (n @ 1.., Some(first)) = (collisions.0, &collisions.1) {
        if !cfg.allow_collisions {
            return Err(fatal(format!(
                "{n} record(s) map to a target key an earlier record has (first: {first}); ImportTable would keep one of each at random, so no manifest was written. Fix the mapping's keys, or pass --allow-collisions"
            )));
        }
    }
    files.finish().map_err(|e| fatal(e.to_string()))?;
    Ok(())
}

/// A write the stopped sink did not make, for the dead-letter file.
fn unwritten(r: WriteRequest, why: &str) -> DeadLetter {
    DeadLetter {
        entity: r.entity,
        source_key: r.source_key,
        stage: Stage::Unwritten,
        op: r.op,
        reason: format!("not written: {why}"),
        item: r.item,
        raw: None,
        counted: r.counted,
        part: r.part,
    }
}

fn io(path: &Path, source: std::io::Error) -> ImportFilesError {
    ImportFilesError::Io {
        path: path.display().to_string(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::{parse_line, Format, Record};
    use aws_sdk_dynamodb::types::AttributeValue;
    use std::io::BufRead as _;

    fn item(pk: &str, n: usize) -> Item {
        [
            ("pk".to_string(), AttributeValue::S(pk.into())),
            ("sk".to_string(), AttributeValue::S(format!("S#{n:05}"))),
            (
                "text".to_string(),
                AttributeValue::S("héllo \"q\"\n".into()),
            ),
        ]
        .into()
    }

    /// Every line of every file the manifest lists, parsed back.
    fn read_back(dir: &Path, m: &Manifest) -> Vec<(String, Item)> {
        let mut out = Vec::new();
        for f in &m.files {
            let bytes = std::fs::read(dir.join(&f.name)).unwrap();
            assert_eq!(bytes.len() as u64, f.bytes, "{}", f.name);
            assert_eq!(crate::export::md5_base64(&bytes), f.md5, "{}", f.name);
            let gz = flate2::read::MultiGzDecoder::new(&bytes[..]);
            let lines: Vec<String> = std::io::BufReader::new(gz)
                .lines()
                .map(Result::unwrap)
                .collect();
            assert_eq!(lines.len() as u64, f.items, "{}", f.name);
            for l in lines {
                match parse_line(Format::DynamoDbJson, false, &l).unwrap() {
                    Record::Item(i) => out.push((f.name.clone(), i)),
                    other => panic!("{other:?}"),
                }
            }
        }
        out
    }

    #[test]
    fn files_hold_every_item_once_shuffled_and_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = ImportFiles::create(dir.path(), 4_000, 7).unwrap();
        let items: Vec<Item> = (0..2_000)
            .map(|n| item(if n < 1_000 { "A" } else { "B" }, n))
            .collect();
        for i in &items {
            w.put(i).unwrap();
        }
        let m = w.finish().unwrap();
        assert_eq!(m.items, 2_000);
        // Bounded: about 4 KB of lines a file (some 160 KB in all), so 40 or more.
        assert!(m.files.len() >= 40, "{} files", m.files.len());
        let back = read_back(dir.path(), &m);
        let mut got: Vec<String> = back
            .iter()
            .map(|(_, i)| crate::item::key_text(i, &["pk", "sk"]))
            .collect();
        let mut want: Vec<String> = items
            .iter()
            .map(|i| crate::item::key_text(i, &["pk", "sk"]))
            .collect();
        got.sort();
        want.sort();
        assert_eq!(got, want);
        assert!(back
            .iter()
            .all(|(_, i)| i["text"] == AttributeValue::S("héllo \"q\"\n".into())));
        // Shuffled: the first 32 items of A's run landed in many files.
        let first_run: std::collections::HashSet<&String> = back
            .iter()
            .filter(|(_, i)| {
                matches!((&i["pk"], &i["sk"]), (AttributeValue::S(p), AttributeValue::S(s)) if p == "A" && s.as_str() < "S#00032")
            })
            .map(|(f, _)| f)
            .collect();
        assert!(
            first_run.len() >= 8,
            "32 items in {} files",
            first_run.len()
        );
        // The manifest is beside data/, not in it.
        let listed: Manifest = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join("manifest.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(listed, m);
        assert!(m.files.iter().all(|f| f.name.starts_with("data/")));
    }

    #[test]
    fn a_folder_holding_earlier_files_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = ImportFiles::create(dir.path(), 1_000, 1).unwrap();
        w.put(&item("A", 1)).unwrap();
        w.finish().unwrap();
        let e = ImportFiles::create(dir.path(), 1_000, 1)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("already holds import files"), "{e}");
    }

    #[test]
    fn more_than_an_import_takes_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = ImportFiles::create(dir.path(), 1_000, 1).unwrap();
        w.put(&item("A", 1)).unwrap();
        w.raw_total = MAX_IMPORT_BYTES + 1;
        let e = w.finish().unwrap_err().to_string();
        assert!(
            e.contains("15 TB") && e.contains("split the migration"),
            "{e}"
        );
        assert!(!dir.path().join("manifest.json").exists());
    }

    #[test]
    fn too_many_files_are_refused_naming_the_flag() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = ImportFiles::create(dir.path(), 1, 1).unwrap();
        w.done = (0..MAX_IMPORT_OBJECTS)
            .map(|n| FileEntry {
                name: format!("data/x{n}"),
                items: 1,
                bytes: 1,
                md5: String::new(),
            })
            .collect();
        w.put(&item("A", 1)).unwrap();
        let e = w.finish().unwrap_err().to_string();
        assert!(
            e.contains("50001 files") && e.contains("--import-file-size"),
            "{e}"
        );
    }
}
