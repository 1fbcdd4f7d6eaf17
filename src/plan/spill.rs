//! Spilling to disk: lines keyed by a string, spread over partition files
//! by the key's hash, then read back one partition at a time, so grouping
//! by key (collisions, partition-key totals) takes the memory of one
//! partition, not of the table. The folder is removed when dropped.

use std::fs::File;
use std::hash::{Hash, Hasher};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

/// A temporary folder of spill files, removed on drop.
#[derive(Debug)]
pub struct SpillDir {
    pub path: PathBuf,
    pub partitions: usize,
}

impl SpillDir {
    /// A new folder under `parent` (default: the system's temp folder).
    pub fn new(parent: Option<&Path>, partitions: usize) -> std::io::Result<SpillDir> {
        let base = parent.map_or_else(std::env::temp_dir, Path::to_path_buf);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let path = base.join(format!("singletable-plan-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&path)?;
        Ok(SpillDir {
            path,
            partitions: partitions.max(1),
        })
    }

    fn file(&self, kind: &str, worker: usize, partition: usize) -> PathBuf {
        self.path.join(format!("{kind}-{worker}-{partition}.jsonl"))
    }

    /// One writer's files of one kind.
    pub fn writer(&self, kind: &str, worker: usize) -> std::io::Result<Spill> {
        let files = (0..self.partitions)
            .map(|p| File::create(self.file(kind, worker, p)).map(BufWriter::new))
            .collect::<std::io::Result<Vec<_>>>()?;
        Ok(Spill { files })
    }

    /// Calls `each` with every line of partition `p` of `kind`, from all
    /// `workers` writers.
    pub fn read_partition(
        &self,
        kind: &str,
        workers: usize,
        p: usize,
        mut each: impl FnMut(&str),
    ) -> std::io::Result<()> {
        for w in 0..workers {
            let path = self.file(kind, w, p);
            let file = match File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            for line in BufReader::new(file).lines() {
                each(&line?);
            }
        }
        Ok(())
    }
}

impl Drop for SpillDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// One writer's partition files of one kind.
pub struct Spill {
    files: Vec<BufWriter<File>>,
}

/// The partition of a key.
pub fn partition_of(key: &str, partitions: usize) -> usize {
    let mut h = std::hash::DefaultHasher::new();
    key.hash(&mut h);
    (h.finish() % partitions.max(1) as u64) as usize
}

impl Spill {
    /// Appends `line` (one line, no newline) to the partition of `key`.
    pub fn push(&mut self, key: &str, line: &str) -> std::io::Result<()> {
        let n = self.files.len();
        let f = &mut self.files[partition_of(key, n)];
        f.write_all(line.as_bytes())?;
        f.write_all(b"\n")
    }

    /// Flushes every file.
    pub fn finish(mut self) -> std::io::Result<()> {
        for f in &mut self.files {
            f.flush()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_of_one_key_meet_in_one_partition_and_the_folder_goes() {
        let dir = SpillDir::new(None, 8).unwrap();
        let path = dir.path.clone();
        for w in 0..2 {
            let mut s = dir.writer("k", w).unwrap();
            for i in 0..100 {
                s.push(&format!("key{i}"), &format!("{w} key{i}")).unwrap();
            }
            s.finish().unwrap();
        }
        let p = partition_of("key7", 8);
        let mut seen = Vec::new();
        dir.read_partition("k", 2, p, |l| seen.push(l.to_string()))
            .unwrap();
        assert!(seen.contains(&"0 key7".to_string()) && seen.contains(&"1 key7".to_string()));
        assert!(seen.len() < 200);
        drop(dir);
        assert!(!path.exists());
    }
}
