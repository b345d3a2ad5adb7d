//! Finished trainings on disk: the cross-method cache of baselines and the resume journal.
//!
//! A training's key is the SHA-256 of a canonical JSON of everything its result depends on
//! (the [`Training`] itself, the identities of dataset / synthetic set / teachers / device, the
//! crate version and [`TRAINER_REVISION`]). Records are JSON lines appended with one `write` call
//! each and flushed to disk before the next cohort starts; a reader skips a torn last line, so a
//! killed process loses at most the cohort it was running.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::plan::{DataSource, Identities, LabelMode, Training, TRAINER_REVISION};
use crate::error::{Error, Result};

/// The hex SHA-256 of everything a training's result depends on.
pub fn training_key(t: &Training, ids: &Identities) -> Result<String> {
    #[derive(Serialize)]
    struct KeyInput<'a> {
        version: &'a str,
        trainer_revision: u32,
        training: &'a Training,
        ids: &'a Identities,
    }
    // Only the inputs a training reads enter its key: a random-subset baseline must not change
    // with the synthetic set under evaluation, a hard-label one not with the teachers.
    let ids = &Identities {
        dataset: ids.dataset.clone(),
        syn: if t.data == DataSource::Syn {
            ids.syn.clone()
        } else {
            String::new()
        },
        teachers: if t.labels == LabelMode::Hard {
            String::new()
        } else {
            ids.teachers.clone()
        },
        device: ids.device.clone(),
    };
    let input = KeyInput {
        version: crate::VERSION,
        trainer_revision: TRAINER_REVISION,
        training: t,
        ids,
    };
    // serde_json writes struct fields in declaration order, so the text is canonical.
    let text =
        serde_json::to_string(&input).map_err(|e| Error::config(format!("cache key: {e}")))?;
    Ok(hex(&Sha256::digest(text.as_bytes())))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The identity of a file or folder: SHA-256 of its content for files up to `HASH_LIMIT` bytes,
/// otherwise of the (relative name, size, modification time) of every file, two levels deep.
/// Large real datasets are identified by their listing so that planning does not read 180 MB.
pub fn identity_of_path(path: &Path) -> Result<String> {
    const HASH_LIMIT: u64 = 64 << 20;
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    let mut h = Sha256::new();
    if meta.is_file() && meta.len() <= HASH_LIMIT {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        h.update(&bytes);
        return Ok(format!("sha256:{}", hex(&h.finalize())));
    }
    let mut entries = Vec::new();
    list(path, path, 2, &mut entries)?;
    entries.sort();
    for e in &entries {
        h.update(e.as_bytes());
        h.update(b"\n");
    }
    Ok(format!("listing:{}", hex(&h.finalize())))
}

fn list(root: &Path, p: &Path, depth: usize, out: &mut Vec<String>) -> Result<()> {
    let meta = std::fs::metadata(p).map_err(|e| Error::io(p, e))?;
    if meta.is_file() {
        let mtime = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let rel = p.strip_prefix(root).unwrap_or(p).display().to_string();
        out.push(format!("{rel}\t{}\t{mtime}", meta.len()));
    } else if meta.is_dir() && depth > 0 {
        for entry in std::fs::read_dir(p).map_err(|e| Error::io(p, e))? {
            let entry = entry.map_err(|e| Error::io(p, e))?;
            list(root, &entry.path(), depth - 1, out)?;
        }
    }
    Ok(())
}

/// The outcome of one finished training.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub key: String,
    /// Best test accuracy (fraction); 0 when the student diverged before its first test.
    pub acc: f64,
    /// Every test accuracy in order (fractions).
    pub tests: Vec<f64>,
    /// Mean training loss of each epoch run, in order (the curve of the HTML report). Absent from
    /// records written before it existed, which load with an empty curve.
    #[serde(default)]
    pub train_loss: Vec<f64>,
    /// Why the student stopped early (NaN/Inf loss at epoch e), if it did.
    pub stopped: Option<String>,
    /// Wall-clock seconds of its cohort divided by the cohort's size.
    pub seconds: f64,
    /// `Training::describe()`, for people reading the file.
    pub what: String,
}

/// An append-only JSON-lines file of [`Record`]s.
#[derive(Debug)]
pub struct Store {
    path: PathBuf,
}

impl Store {
    /// Opens (creating the folder if needed) the store at `dir/name`.
    pub fn open(dir: &Path, name: &str) -> Result<Store> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        Ok(Store {
            path: dir.join(name),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every complete record, last one winning per key. A torn or foreign line (from a killed
    /// writer) is skipped, not fatal.
    pub fn load(&self) -> Result<HashMap<String, Record>> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(HashMap::new()),
            Err(e) => return Err(Error::io(&self.path, e)),
        };
        Ok(text
            .lines()
            .filter_map(|l| serde_json::from_str::<Record>(l).ok())
            .map(|r| (r.key.clone(), r))
            .collect())
    }

    /// Append records as one write, then fsync, so a crash leaves whole lines or a torn tail.
    pub fn append(&self, records: &[Record]) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let mut buf = String::new();
        for r in records {
            let line =
                serde_json::to_string(r).map_err(|e| Error::format(&self.path, e.to_string()))?;
            buf.push_str(&line);
            buf.push('\n');
        }
        let mut f: File = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| Error::io(&self.path, e))?;
        // A torn line left by a killed writer must not swallow our first record.
        if f.metadata().map(|m| m.len() > 0).unwrap_or(false) && !ends_with_newline(&self.path) {
            buf.insert(0, '\n');
        }
        f.write_all(buf.as_bytes())
            .map_err(|e| Error::io(&self.path, e))?;
        f.sync_data().map_err(|e| Error::io(&self.path, e))?;
        Ok(())
    }
}

fn ends_with_newline(path: &Path) -> bool {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut f) = File::open(path) else {
        return true;
    };
    if f.seek(SeekFrom::End(-1)).is_err() {
        return true;
    }
    let mut b = [0u8; 1];
    f.read_exact(&mut b).is_ok() && b[0] == b'\n'
}

/// Write `bytes` to `path` atomically: a temporary file in the same folder, then a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    {
        let mut f = File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        f.write_all(bytes).map_err(|e| Error::io(&tmp, e))?;
        f.sync_data().map_err(|e| Error::io(&tmp, e))?;
    }
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(key: &str, acc: f64) -> Record {
        Record {
            key: key.into(),
            acc,
            tests: vec![acc],
            train_loss: vec![2.0, 1.5],
            stopped: None,
            seconds: 1.0,
            what: "t".into(),
        }
    }

    #[test]
    fn store_round_trip_and_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), "r.jsonl").unwrap();
        s.append(&[rec("a", 0.5), rec("b", 0.25)]).unwrap();
        // A writer killed mid-line leaves a torn tail; later appends must still be readable.
        let mut f = OpenOptions::new().append(true).open(s.path()).unwrap();
        f.write_all(b"{\"key\":\"c\",\"ac").unwrap();
        drop(f);
        s.append(&[rec("d", 0.75)]).unwrap();
        let m = s.load().unwrap();
        assert_eq!(m.len(), 3, "{m:?}");
        assert_eq!(m["a"].acc, 0.5);
        assert_eq!(m["d"].acc, 0.75);
        assert!(!m.contains_key("c"));
    }

    /// A line written before the loss curve existed (no `train_loss`) still loads, with an empty
    /// curve; a new record keeps its curve through the file.
    #[test]
    fn record_without_curve_still_loads() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), "r.jsonl").unwrap();
        let old =
            r#"{"key":"old","acc":0.5,"tests":[0.25,0.5],"stopped":null,"seconds":1.0,"what":"t"}"#;
        std::fs::write(s.path(), format!("{old}\n")).unwrap();
        s.append(&[rec("new", 0.75)]).unwrap();
        let m = s.load().unwrap();
        assert_eq!(m["old"].tests, vec![0.25, 0.5]);
        assert!(m["old"].train_loss.is_empty());
        assert_eq!(m["new"].train_loss, vec![2.0, 1.5]);
    }

    #[test]
    fn identity_changes_with_content() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.bin");
        std::fs::write(&p, b"one").unwrap();
        let a = identity_of_path(&p).unwrap();
        std::fs::write(&p, b"two").unwrap();
        assert_ne!(a, identity_of_path(&p).unwrap());
        assert!(identity_of_path(&dir.path().join("missing")).is_err());
    }
}
