//! The `--emit slurm` recipe on a real single-node Slurm (tools/slurm-up.sh: munged, slurmctld
//! and slurmd from Debian's packages, every file in a temporary folder, stopped after): 3 shards
//! of a small CPU evaluation, one array task cancelled (scancel) after it finished part of its
//! share, the recipe resubmitted for that shard only, and the collect job's scores compared with
//! a single process's; no finished training may be computed twice. Skipped, saying so, only when
//! the Slurm packages are not installed (`.ci/run` installs them).

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use ddr_fast::metrics::cache::Store;

const SHARDS: usize = 3;
/// The shard that is cancelled midway: shard 0 has three trainings of about a second each here.
const VICTIM: usize = 0;
/// Longest wait for any one Slurm step; the whole test takes well under a minute when idle.
const STEP_TIMEOUT: Duration = Duration::from_secs(300);

fn manifest() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The evaluation: the demo's embedded data, 9 trainings of ~1 s each, one per cohort.
fn eval_args(cache: &Path) -> Vec<String> {
    let mut a: Vec<String> = [
        "eval",
        "--quiet",
        "--device",
        "cpu",
        "--width",
        "4",
        "--epochs",
        "30",
        "--full-epochs",
        "2",
        "--num-eval",
        "2",
        "--test-interval",
        "10",
        "--lr-grid",
        "0.01,0.05",
        "--max-students",
        "1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    a.extend(["--cache-dir".into(), cache.display().to_string()]);
    a
}

/// Stops the cluster however the test ends.
struct Cluster {
    dir: PathBuf,
    conf: String,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new(manifest().join("tools/slurm-down.sh"))
            .arg(&self.dir)
            .status();
    }
}

impl Cluster {
    fn cmd(&self, prog: &str) -> Command {
        let mut c = Command::new(prog);
        c.env("SLURM_CONF", &self.conf);
        c
    }

    fn run(&self, prog: &str, args: &[&str]) -> String {
        let out = self
            .cmd(prog)
            .args(args)
            .output()
            .expect("slurm command runs");
        assert!(out.status.success(), "{prog} {args:?}: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Job ids still known to the controller (pending, running or completing).
    fn queued(&self) -> Vec<String> {
        self.run("squeue", &["-h", "-o", "%i %T"])
            .lines()
            .map(|l| l.to_string())
            .collect()
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !done() {
        assert!(t0.elapsed() < STEP_TIMEOUT, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// (shards job, collect job) from the recipe's last line.
fn job_ids(submit: &str) -> (String, String) {
    let words: Vec<&str> = submit.split_whitespace().collect();
    let after = |w: &str| {
        let i = words.iter().position(|x| *x == w).expect(w);
        words[i + 2]
            .trim_end_matches(|c: char| !c.is_ascii_digit())
            .to_string()
    };
    (after("shards:"), after("collect:"))
}

/// "… N already finished …" of a shard's line.
fn finished_before_victim(line: &str) -> usize {
    let i = line.find(" already finished").expect("shard line format");
    line[..i]
        .split_whitespace()
        .last()
        .and_then(|w| w.parse().ok())
        .expect("a count")
}

fn records(cache: &Path) -> Vec<ddr_fast::metrics::cache::Record> {
    Store::open(cache, "trainings.jsonl")
        .unwrap()
        .load_all()
        .unwrap()
}

#[test]
fn slurm_array_survives_a_cancelled_shard() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("slurm");
    let up = Command::new(manifest().join("tools/slurm-up.sh"))
        .arg(&dir)
        .output()
        .unwrap();
    if up.status.code() == Some(3) {
        crate::common::announce(&format!(
            "SKIPPED: Slurm is not installed ({}); apt-get install slurmctld slurmd \
             slurm-client munge, as .ci/run does",
            text(&up).trim()
        ));
        return;
    }
    let cluster = Cluster {
        dir: dir.clone(),
        conf: dir.join("slurm.conf").display().to_string(),
    };
    assert!(up.status.success(), "slurm-up failed:\n{}", text(&up));

    // The single-process reference, on a cache of its own.
    let bin = env!("CARGO_BIN_EXE_ddr-fast");
    let one = tmp.path().join("one");
    let r = Command::new(bin)
        .args(eval_args(&tmp.path().join("ref")))
        .arg("--out")
        .arg(&one)
        .output()
        .unwrap();
    assert!(r.status.success(), "{}", text(&r));

    // The recipe, written where the jobs run (its --chdir is this folder).
    let work = tmp.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let cache = work.join("cache");
    let out = work.join("result");
    let emitted = Command::new(bin)
        .current_dir(&work)
        .args(eval_args(&cache))
        .arg("--out")
        .arg(&out)
        .args(["--emit", "slurm", "--shards", &SHARDS.to_string()])
        .output()
        .unwrap();
    assert!(emitted.status.success(), "{}", text(&emitted));
    let script = work.join("eval.slurm.sh");
    std::fs::write(&script, &emitted.stdout).unwrap();

    let submit = |array: Option<&str>| {
        let mut c = cluster.cmd("bash");
        c.arg(&script).args(array).current_dir(&work);
        let o = c.output().unwrap();
        assert!(o.status.success(), "submit: {}", text(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let first = submit(None);
    let (array, collect) = job_ids(&first);
    crate::common::announce(&format!("submitted: {}", first.trim()));

    // Cancel the victim once it has recorded a training and before it has recorded all.
    let victim_out = work.join(format!("ddr-shard-{array}_{VICTIM}.out"));
    // The victim names its file prefix first thing; count the records under it.
    let victim_records = || -> usize {
        let log = std::fs::read_to_string(&victim_out).unwrap_or_default();
        let Some(prefix) = log
            .lines()
            .find_map(|l| l.split("trainings.jsonl.d/").nth(1))
            .and_then(|rest| rest.strip_suffix("-*.jsonl"))
        else {
            return 0;
        };
        let Ok(entries) = std::fs::read_dir(cache.join("trainings.jsonl.d")) else {
            return 0;
        };
        entries
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
            .map(|e| {
                std::fs::read_to_string(e.path())
                    .map(|t| t.lines().count())
                    .unwrap_or(0)
            })
            .sum()
    };
    let mut before = 0;
    wait_for("the victim shard's first record", || {
        before = victim_records();
        before >= 1
    });
    cluster.run("scancel", &[&format!("{array}_{VICTIM}")]);
    crate::common::announce(&format!(
        "cancelled array task {array}_{VICTIM} after {before} record(s)"
    ));
    // Everything of the first submission ends: the other shards finish, the collect job is
    // cancelled because its dependency can never be met.
    wait_for("the first submission to leave the queue", || {
        cluster
            .queued()
            .iter()
            .all(|l| !l.starts_with(&array) && !l.starts_with(&collect))
    });
    let victim_log = std::fs::read_to_string(&victim_out).unwrap_or_default();
    assert!(
        !victim_log.contains("already finished"),
        "the victim finished before the cancel landed; make its trainings longer:\n{victim_log}"
    );
    assert!(
        !out.join("result.json").exists(),
        "collect ran although a shard was cancelled"
    );
    let finished_before = records(&cache).len();
    let victim_done = victim_records();

    // Resubmit only the victim; its new collect job reduces the scores.
    let second = submit(Some(&VICTIM.to_string()));
    let (array2, collect2) = job_ids(&second);
    crate::common::announce(&format!("resubmitted: {}", second.trim()));
    wait_for("the resubmission and its collect job", || {
        cluster
            .queued()
            .iter()
            .all(|l| !l.starts_with(&array2) && !l.starts_with(&collect2))
    });
    let collect_log = std::fs::read_to_string(work.join(format!("ddr-collect-{collect2}.out")))
        .unwrap_or_default();
    assert!(
        out.join("result.json").exists(),
        "the collect job wrote no result:\n{collect_log}"
    );
    let rerun_log =
        std::fs::read_to_string(work.join(format!("ddr-shard-{array2}_{VICTIM}.out"))).unwrap();
    let line = rerun_log
        .lines()
        .find(|l| {
            l.starts_with(&format!("shard {VICTIM}/{SHARDS}:")) && l.contains("already finished")
        })
        .unwrap_or_else(|| panic!("no shard line:\n{rerun_log}"));
    crate::common::announce(&format!("resubmitted shard: {line}"));

    let want: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(one.join("result.json")).unwrap()).unwrap();
    let got: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("result.json")).unwrap()).unwrap();
    assert_eq!(got["summary"], want["summary"]);
    assert_eq!(got["runs"], want["runs"]);

    let all = records(&cache);
    let mut per_key: HashMap<&str, usize> = HashMap::new();
    for r in &all {
        *per_key.entry(&r.key).or_default() += 1;
    }
    let recomputed: usize = per_key.values().map(|n| n - 1).sum();
    crate::common::announce(&format!(
        "jobs: shards {array}, collect {collect} (cancelled with the shard), resubmitted shard \
         {array2}_{VICTIM}, collect {collect2}; killed task {array}_{VICTIM}; {} trainings \
         finished before the resubmission; recomputed trainings: {recomputed}",
        finished_before
    ));
    assert_eq!(per_key.len(), 9, "every training recorded");
    assert_eq!(recomputed, 0, "a finished training was computed again");
    // Every record of the cancelled task was found, not retrained, by its resubmission.
    let found = finished_before_victim(line);
    assert!(victim_done >= before);
    assert_eq!(
        found, victim_done,
        "{line}: the resubmitted shard must find exactly what the cancelled task recorded"
    );
}
