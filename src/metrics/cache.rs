//! Finished trainings on disk: the cross-method cache of baselines and the resume journal.
//!
//! A training's key is the SHA-256 of a canonical JSON of everything its result depends on
//! (the [`Training`] itself, the identities of dataset / synthetic set / teachers / device and,
//! on CUDA, the test passes' precision, the crate version and [`TRAINER_REVISION`]). Records are JSON lines appended with one `write` call
//! each and flushed to disk before the next cohort starts; a reader skips a torn last line, so a
//! killed process loses at most the cohort it was running. Many processes on many machines share
//! one store safely: each writes only its own file ([`Store`] says how and why).

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
        test_precision: ids.test_precision.clone(),
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

/// Finished trainings shared by any number of processes on any number of machines.
///
/// Layout under `dir`: the legacy single file `name` (read, never written any more) and a folder
/// `name.d/` holding one JSON-lines file per writer, `<host>-<pid>-<random>-<n>.jsonl`. Why one file
/// per writer: appends from two processes to one file interleave on NFS (O_APPEND is not atomic
/// across clients) and a lock file outlives a killed holder; a file with a single writer needs
/// neither. Each handle creates its own file on its first append and never touches another's.
///
/// - Write: the records of one cohort as one `write` to our own file, then `fsync` (the folder is
///   fsynced once after the file is created), so a killed writer leaves whole lines and at most
///   one torn last line — in its own file only. A writer never reopens an old file (its name is
///   new per handle), so a torn tail is never followed by more data.
/// - Read: the legacy file and every `*.jsonl` in `name.d/`, in name order; a line that does not
///   parse (a torn tail) is skipped. Records of one key are identical whoever wrote them (the key
///   is the content hash of a deterministic training), so the merge order does not matter.
/// - NFS: close-to-open consistency makes a closed append visible to any later open; a file that
///   another machine created moments ago may be missing from a directory listing until the
///   client's directory attribute cache expires (`actimeo`, seconds). The worst case is a
///   training computed twice, never a corrupt or lost record; `--collect` runs after the shards
///   have ended, so it sees them all.
#[derive(Debug)]
pub struct Store {
    /// The pre-sharing single file, still read so older caches keep working.
    legacy: PathBuf,
    /// `name.d/`: one file per writer.
    dir: PathBuf,
    /// This handle's own file, created on its first append.
    mine: std::sync::OnceLock<PathBuf>,
}

impl Store {
    /// Opens (creating the folders if needed) the store `name` in `dir`.
    pub fn open(dir: &Path, name: &str) -> Result<Store> {
        let writers = dir.join(format!("{name}.d"));
        std::fs::create_dir_all(&writers).map_err(|e| Error::io(&writers, e))?;
        Ok(Store {
            legacy: dir.join(name),
            dir: writers,
            mine: std::sync::OnceLock::new(),
        })
    }

    /// The folder of per-writer files.
    pub fn writers_dir(&self) -> &Path {
        &self.dir
    }

    /// This handle's own file: the one `append` writes (created on the first append).
    pub fn writer_path(&self) -> &Path {
        self.mine.get_or_init(|| self.dir.join(writer_name()))
    }

    /// Every complete record of every writer; a torn or foreign line is skipped, not fatal.
    pub fn load(&self) -> Result<HashMap<String, Record>> {
        Ok(self
            .load_all()?
            .into_iter()
            .map(|r| (r.key.clone(), r))
            .collect())
    }

    /// Every complete record in file-name order, duplicates included (tests count them to prove
    /// that no finished training was computed twice).
    pub fn load_all(&self) -> Result<Vec<Record>> {
        let mut files = vec![self.legacy.clone()];
        let mut writers: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .map_err(|e| Error::io(&self.dir, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
            .collect();
        writers.sort();
        files.extend(writers);
        let mut out = Vec::new();
        for f in &files {
            let text = match std::fs::read_to_string(f) {
                Ok(t) => t,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io(f, e)),
            };
            out.extend(
                text.lines()
                    .filter_map(|l| serde_json::from_str::<Record>(l).ok()),
            );
        }
        Ok(out)
    }

    /// Append records to this writer's own file as one write, then fsync, so a kill leaves whole
    /// lines or a torn tail that readers skip.
    pub fn append(&self, records: &[Record]) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let path = self.writer_path();
        let mut buf = String::new();
        for r in records {
            let line = serde_json::to_string(r).map_err(|e| Error::format(path, e.to_string()))?;
            buf.push_str(&line);
            buf.push('\n');
        }
        let created = !path.exists();
        let mut f: File = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        f.write_all(buf.as_bytes())
            .map_err(|e| Error::io(path, e))?;
        f.sync_data().map_err(|e| Error::io(path, e))?;
        if created {
            // The new name must survive a machine crash too, not only a killed process.
            if let Ok(d) = File::open(&self.dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    }
}

/// `<host>-<pid>-<random>`: the name prefix of every writer file this process creates, unique
/// across machines (host), processes (pid) and pid reuse (random: SHA-256 of the clock and the pid,
/// since the crate has no random-number dependency). Shards print it so a person or a test can
/// tell whose file is whose.
pub fn writer_prefix() -> &'static str {
    static PREFIX: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PREFIX.get_or_init(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .unwrap_or_else(|| "host".into());
        let host: String = host
            .trim()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let pid = std::process::id();
        let r = hex(&Sha256::digest(format!("{nanos}|{pid}").as_bytes())[..8]);
        format!("{host}-{pid}-{r}")
    })
}

/// `<prefix>-<n>.jsonl`: n counts the stores this process has written to.
fn writer_name() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{}-{n}.jsonl", writer_prefix())
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
    fn store_round_trip_torn_tail_and_legacy_file() {
        let dir = tempfile::tempdir().unwrap();
        // A cache written before per-writer files: still read.
        std::fs::write(
            dir.path().join("r.jsonl"),
            format!("{}\n", serde_json::to_string(&rec("old", 0.1)).unwrap()),
        )
        .unwrap();
        let s = Store::open(dir.path(), "r.jsonl").unwrap();
        s.append(&[rec("a", 0.5), rec("b", 0.25)]).unwrap();
        // A writer killed mid-line leaves a torn tail in its own file only.
        let t = Store::open(dir.path(), "r.jsonl").unwrap();
        t.append(&[rec("c", 0.125)]).unwrap();
        let mut f = OpenOptions::new()
            .append(true)
            .open(t.writer_path())
            .unwrap();
        f.write_all(b"{\"key\":\"e\",\"ac").unwrap();
        drop(f);
        s.append(&[rec("d", 0.75)]).unwrap();
        assert_ne!(s.writer_path(), t.writer_path());
        let m = s.load().unwrap();
        assert_eq!(m.len(), 5, "{m:?}");
        assert_eq!(m["old"].acc, 0.1);
        assert_eq!(m["a"].acc, 0.5);
        assert_eq!(m["c"].acc, 0.125);
        assert_eq!(m["d"].acc, 0.75);
        assert!(!m.contains_key("e"));
    }

    /// A line written before the loss curve existed (no `train_loss`) still loads, with an empty
    /// curve; a new record keeps its curve through the file.
    #[test]
    fn record_without_curve_still_loads() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), "r.jsonl").unwrap();
        let old =
            r#"{"key":"old","acc":0.5,"tests":[0.25,0.5],"stopped":null,"seconds":1.0,"what":"t"}"#;
        // In the single file of a cache from before per-writer files (still read, never written).
        std::fs::write(dir.path().join("r.jsonl"), format!("{old}\n")).unwrap();
        s.append(&[rec("new", 0.75)]).unwrap();
        let m = s.load().unwrap();
        assert_eq!(m["old"].tests, vec![0.25, 0.5]);
        assert!(m["old"].train_loss.is_empty());
        assert_eq!(m["new"].train_loss, vec![2.0, 1.5]);
    }

    /// The test passes' precision enters a key only where it is set (CUDA): a key without it is
    /// the key text of before the field existed, so older CPU caches stay readable, while each
    /// CUDA test precision gets a key of its own (a TF32-test result is never a bf16-test one).
    #[test]
    fn test_precision_splits_cuda_keys_and_leaves_cpu_keys_as_they_were() {
        use crate::metrics::config::{EvalConfig, Metric};
        let cfg = |metric| EvalConfig {
            metric,
            eval_full_data: true,
            ..EvalConfig::default()
        };
        let cpu = Identities {
            dataset: "d".into(),
            syn: "s".into(),
            teachers: "t".into(),
            device: "cpu".into(),
            test_precision: None,
        };
        // Hard- and soft-label trainings of every data source.
        let plans = [Metric::LrsHard, Metric::LrsSoft]
            .map(|m| super::super::plan::plan(&cfg(m), &cpu).unwrap());
        // The key input as serialised before `Identities::test_precision` existed.
        #[derive(Serialize)]
        struct OldIds<'a> {
            dataset: &'a str,
            syn: &'a str,
            teachers: &'a str,
            device: &'a str,
        }
        #[derive(Serialize)]
        struct OldKey<'a> {
            version: &'a str,
            trainer_revision: u32,
            training: &'a Training,
            ids: OldIds<'a>,
        }
        for t in plans.iter().flat_map(|p| &p.trainings).map(|t| &t.training) {
            let old = OldKey {
                version: crate::VERSION,
                trainer_revision: TRAINER_REVISION,
                training: t,
                ids: OldIds {
                    dataset: "d",
                    syn: if t.data == DataSource::Syn { "s" } else { "" },
                    teachers: if t.labels == LabelMode::Hard { "" } else { "t" },
                    device: "cpu",
                },
            };
            let old = hex(&Sha256::digest(serde_json::to_string(&old).unwrap()));
            assert_eq!(training_key(t, &cpu).unwrap(), old, "{}", t.describe());
            let cuda = |test: Option<&str>| {
                let ids = Identities {
                    device: "cuda".into(),
                    test_precision: test.map(Into::into),
                    ..cpu.clone()
                };
                training_key(t, &ids).unwrap()
            };
            let keys: std::collections::HashSet<String> = [None, Some("3xtf32"), Some("tf32")]
                .into_iter()
                .chain([Some("bf16")])
                .map(cuda)
                .collect();
            assert_eq!(keys.len(), 4, "{}", t.describe());
        }
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
