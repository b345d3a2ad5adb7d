//! What an evaluation hands back to its user: the table on stdout, the JSON record and the CSV.
//!
//! Inside the record everything is a fraction (as DESIGN.md §2's formulas use them); only the
//! table prints ×100.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::cache::write_atomic;
use super::config::{EvalConfig, Metric};
use super::reduce::Outcome;
use super::settings::Setting;
use crate::error::{Error, Result};

/// Where one training's result came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// Trained in this invocation.
    Ran,
    /// Found in the shared cache (a method-independent baseline from an earlier evaluation).
    Cached,
    /// Found in this output folder's journal (an interrupted evaluation resumed).
    Resumed,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainingTiming {
    pub id: usize,
    pub what: String,
    pub key: String,
    pub source: Source,
    /// Seconds it took when it was trained (its cohort's time / cohort size), from the record.
    pub seconds: f64,
    pub acc: f64,
    /// The curve of the training, for the HTML report. Every field defaults, so a result.json
    /// written before curves existed still loads (and its report says it has no curves).
    #[serde(default)]
    pub curve: Curve,
}

/// One training's place in the plan and its curves.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Curve {
    /// The quantity it is a candidate for (`syn_hard`, `rdm_recipe`, `full_hard`, ...).
    pub quantity: String,
    /// The run it belongs to; None for the full-data training shared by all runs.
    pub run: Option<u32>,
    pub lr: f64,
    pub epochs: usize,
    /// Epochs between tests; the last test is after the last epoch.
    pub test_interval: usize,
    /// Every test accuracy in order (fractions).
    pub tests: Vec<f64>,
    /// Mean training loss of each epoch run (empty for records from before curves existed).
    pub train_loss: Vec<f64>,
    /// Why it stopped early (non-finite loss), if it did.
    pub stopped: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Timings {
    /// Wall-clock seconds of this invocation, loading data included.
    pub total_s: f64,
    /// Seconds spent training in this invocation.
    pub train_s: f64,
    pub ran: usize,
    pub cached: usize,
    pub resumed: usize,
    pub cohorts_run: usize,
    pub trainings: Vec<TrainingTiming>,
}

/// The JSON record written under `--out DIR` as `result.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalRecord {
    pub ddr_fast_version: String,
    pub device: String,
    pub config: EvalConfig,
    /// Every resolved setting with where it came from (default / demo / yaml / flag / file).
    #[serde(default)]
    pub settings: BTreeMap<String, Setting>,
    pub timings: Timings,
    /// Flattened: result.json holds `metric`, `runs`, `summary` and `stopped` at the top level, and
    /// `metric` once (the record names it only through its outcome, so its own derived reader can
    /// read the file back).
    #[serde(flatten)]
    pub outcome: Outcome,
    /// Things the user should know (reduced recipe of the demo, warnings of the config, ...).
    pub notes: Vec<String>,
}

fn pct(x: f64) -> String {
    format!("{:6.2}", 100.0 * x)
}

/// The human-readable table.
pub fn table(cfg: &EvalConfig, rec: &EvalRecord) -> String {
    let o = &rec.outcome;
    let mut s = String::new();
    let title = match o.metric {
        Metric::LrsHard => "LRS (hard-label method)",
        Metric::LrsSoft => "LRS (soft-label method)",
        Metric::Ars => "ARS",
        Metric::Acc => "accuracy",
    };
    let _ = writeln!(
        s,
        "ddr-fast {}: {title} of {} on {} IPC {} with {} (width {}), {} run(s), device {}",
        rec.ddr_fast_version,
        cfg.syn_path
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "the demo coreset".into()),
        cfg.dataset,
        cfg.ipc,
        cfg.model,
        cfg.width,
        o.runs.len(),
        rec.device
    );
    let score_names: &[&str] = match o.metric {
        Metric::LrsHard | Metric::LrsSoft => &["hlr", "ior", "lrs"],
        Metric::Ars => &["with_aug", "without_aug", "ars"],
        Metric::Acc => &["accuracy"],
    };
    let _ = writeln!(
        s,
        "\n  {:<12} {:>7}   {:>6}   (×100, mean ± population std over runs)",
        "score", "mean", "std"
    );
    for n in score_names {
        if let Some(m) = o.summary.get(*n) {
            let _ = writeln!(
                s,
                "  {:<12} {} ± {}",
                n.to_uppercase(),
                pct(m.mean),
                pct(m.std)
            );
        }
    }
    let _ = writeln!(
        s,
        "\n  {:<12} {:>7}   {:>6}   chosen learning rate per run",
        "accuracy %", "mean", "std"
    );
    if let Some(first) = o.runs.first() {
        for q in first.acc.keys() {
            let m = &o.summary[q];
            let lrs: Vec<String> = o
                .runs
                .iter()
                .map(|r| {
                    r.lr.get(q)
                        .map(|l| format!("{l}"))
                        .unwrap_or_else(|| "given".into())
                })
                .collect();
            let _ = writeln!(
                s,
                "  {:<12} {} ± {}   {}",
                q,
                pct(m.mean),
                pct(m.std),
                lrs.join(" ")
            );
        }
    }
    let t = &rec.timings;
    let _ = writeln!(
        s,
        "\n  trainings: {} run, {} from cache, {} resumed; {:.1} s total ({:.1} s training)",
        t.ran, t.cached, t.resumed, t.total_s, t.train_s
    );
    for w in &o.stopped {
        let _ = writeln!(s, "  stopped (non-finite loss): {w}");
    }
    for n in &rec.notes {
        let _ = writeln!(s, "  note: {n}");
    }
    s
}

/// The CSV: one row per run, then `mean` and `std` rows; accuracies and scores as fractions.
pub fn csv(rec: &EvalRecord) -> String {
    let o = &rec.outcome;
    let Some(first) = o.runs.first() else {
        return String::new();
    };
    let acc_names: Vec<&String> = first.acc.keys().collect();
    let score_names: Vec<&String> = first.scores.keys().collect();
    let mut s = String::from("run,seed");
    for n in &acc_names {
        let _ = write!(s, ",acc_{n},lr_{n}");
    }
    for n in &score_names {
        let _ = write!(s, ",{n}");
    }
    s.push('\n');
    for r in &o.runs {
        let _ = write!(s, "{},{}", r.run, r.seed);
        for n in &acc_names {
            let lr = r.lr.get(*n).map(|l| l.to_string()).unwrap_or_default();
            let _ = write!(s, ",{},{lr}", r.acc[*n]);
        }
        for n in &score_names {
            let _ = write!(s, ",{}", r.scores[*n]);
        }
        s.push('\n');
    }
    for (label, pick) in [("mean", 0), ("std", 1)] {
        let _ = write!(s, "{label},");
        let get = |n: &str| {
            o.summary
                .get(n)
                .map(|m| if pick == 0 { m.mean } else { m.std })
                .unwrap_or(f64::NAN)
        };
        for n in &acc_names {
            let _ = write!(s, ",{},", get(n));
        }
        for n in &score_names {
            let _ = write!(s, ",{}", get(n));
        }
        s.push('\n');
    }
    s
}

/// The CSV DD-Ranking's `save_path` names, in its schema (`pandas.DataFrame(results).to_csv(
/// index=False)`): one row per run, LRS: `hard_label_recovery,improvement_over_random,lrs`;
/// ARS: `with_aug_scores,without_aug_scores,ars_list`; in its units, percent (accuracy
/// differences × 100). The score column is ddr-fast's score × 100: the reference applies exp() to
/// percent values there (README "Deliberate differences"). `acc` (no DD-Ranking counterpart):
/// `accuracy` in percent.
pub fn reference_csv(rec: &EvalRecord) -> String {
    let cols: [(&str, &str); 3] = match rec.outcome.metric {
        Metric::LrsHard | Metric::LrsSoft => [
            ("hard_label_recovery", "hlr"),
            ("improvement_over_random", "ior"),
            ("lrs", "lrs"),
        ],
        Metric::Ars => [
            ("with_aug_scores", "with_aug"),
            ("without_aug_scores", "without_aug"),
            ("ars_list", "ars"),
        ],
        Metric::Acc => [("accuracy", "accuracy"), ("", ""), ("", "")],
    };
    let cols: Vec<_> = cols.into_iter().filter(|(h, _)| !h.is_empty()).collect();
    let mut s = cols.iter().map(|(h, _)| *h).collect::<Vec<_>>().join(",");
    s.push('\n');
    for r in &rec.outcome.runs {
        let row: Vec<String> = cols
            .iter()
            .map(|(_, k)| {
                r.scores
                    .get(*k)
                    .map(|v| (100.0 * v).to_string())
                    .unwrap_or_default()
            })
            .collect();
        s.push_str(&row.join(","));
        s.push('\n');
    }
    s
}

/// Writes `result.json` and `result.csv` (ddr-fast's fuller table) into `dir` (each atomically),
/// and DD-Ranking's CSV to `csv_path` when its `save_path` asked for one.
pub fn write_outputs(rec: &EvalRecord, dir: Option<&Path>, csv_path: Option<&Path>) -> Result<()> {
    let csv_text = csv(rec);
    if let Some(dir) = dir {
        let json =
            serde_json::to_string_pretty(rec).map_err(|e| Error::format(dir, e.to_string()))?;
        write_atomic(&dir.join("result.json"), json.as_bytes())?;
        write_atomic(&dir.join("result.csv"), csv_text.as_bytes())?;
    }
    if let Some(p) = csv_path {
        write_atomic(p, reference_csv(rec).as_bytes())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::reduce::RunResult;

    fn record(metric: Metric, scores: &[(&str, f64)]) -> EvalRecord {
        let run = |i: u32| RunResult {
            run: i,
            seed: u64::from(i),
            acc: BTreeMap::new(),
            lr: BTreeMap::new(),
            scores: scores
                .iter()
                .map(|(k, v)| (k.to_string(), v + f64::from(i) / 4.0))
                .collect(),
        };
        EvalRecord {
            ddr_fast_version: "t".into(),
            device: "cpu".into(),
            config: EvalConfig::default(),
            settings: BTreeMap::new(),
            timings: Timings {
                total_s: 0.0,
                train_s: 0.0,
                ran: 0,
                cached: 0,
                resumed: 0,
                cohorts_run: 0,
                trainings: Vec::new(),
            },
            outcome: Outcome {
                metric,
                runs: vec![run(0), run(1)],
                summary: BTreeMap::new(),
                stopped: Vec::new(),
            },
            notes: Vec::new(),
        }
    }

    /// The save_path CSV has DD-Ranking's columns (pandas, index=False) and its percent units.
    /// result.json reads back into the record that wrote it (it once held `metric` twice, which the
    /// derived reader refused), and names the metric once.
    #[test]
    fn result_json_round_trips() {
        let rec = record(Metric::LrsSoft, &[("lrs", 0.25)]);
        let text = serde_json::to_string_pretty(&rec).unwrap();
        // Top-level keys sit at two spaces' indent in pretty JSON (`config` has its own `metric`).
        assert_eq!(text.matches("\n  \"metric\":").count(), 1, "{text}");
        let back: EvalRecord = serde_json::from_str(&text).unwrap();
        assert_eq!(back, rec);
    }

    #[test]
    fn save_path_csv_is_in_the_reference_schema() {
        let r = record(
            Metric::LrsHard,
            &[
                ("hlr", 0.25),
                ("ior", 0.125),
                ("alpha", -0.0625),
                ("lrs", 0.5),
            ],
        );
        assert_eq!(
            reference_csv(&r),
            "hard_label_recovery,improvement_over_random,lrs\n25,12.5,50\n50,37.5,75\n"
        );
        let a = record(
            Metric::Ars,
            &[
                ("with_aug", 0.5),
                ("without_aug", 0.25),
                ("beta", 0.0),
                ("ars", 0.75),
            ],
        );
        assert!(reference_csv(&a)
            .starts_with("with_aug_scores,without_aug_scores,ars_list\n50,25,75\n"));
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("results/x.csv");
        write_outputs(&r, None, Some(&p)).unwrap();
        assert_eq!(std::fs::read_to_string(p).unwrap(), reference_csv(&r));
    }
}
