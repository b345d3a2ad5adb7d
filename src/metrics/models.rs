//! A cross-architecture evaluation's summary: one row per student model with the metric's tuned
//! accuracies and scores (mean ± std over runs), as the terminal table, `models.csv` and the
//! `models.json` index that `ddr-fast report` reads. Each model's own record stays a plain
//! `result.json` in its subfolder; this file only gathers their summaries.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::cache::write_atomic;
use super::config::Metric;
use super::report::EvalRecord;
use super::scores::MeanStd;
use crate::error::{Error, Result};

/// The index written as `models.json` next to the per-model folders.
pub const INDEX_FILE: &str = "models.json";
/// The table as CSV, next to the index.
pub const CSV_FILE: &str = "models.csv";

/// One model's row.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelRow {
    /// The model name as given (`ConvNet-3`, `VGG-11`, ...).
    pub model: String,
    /// Its result folder, relative to the index's folder.
    pub dir: PathBuf,
    /// Accuracy or score name → mean ± std over runs (fractions), as in its `result.json`.
    pub summary: BTreeMap<String, MeanStd>,
}

/// `models.json`: which models were evaluated, in order, and their summaries.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelsIndex {
    pub ddr_fast_version: String,
    pub metric: Metric,
    pub rows: Vec<ModelRow>,
}

/// The score columns of a metric, in the order its single-model table prints them.
pub fn score_names(m: Metric) -> &'static [&'static str] {
    match m {
        Metric::LrsHard | Metric::LrsSoft => &["hlr", "ior", "lrs"],
        Metric::Ars => &["with_aug", "without_aug", "ars"],
        Metric::Acc => &["accuracy"],
    }
}

impl ModelsIndex {
    /// The index of finished per-model records: (model name, its folder, its record).
    pub fn new(metric: Metric, records: &[(String, PathBuf, EvalRecord)]) -> ModelsIndex {
        ModelsIndex {
            ddr_fast_version: crate::VERSION.to_string(),
            metric,
            rows: records
                .iter()
                .map(|(model, dir, rec)| ModelRow {
                    model: model.clone(),
                    dir: dir.clone(),
                    summary: rec.outcome.summary.clone(),
                })
                .collect(),
        }
    }

    /// Columns: the accuracies (every name of the summary that is not a score, in name order,
    /// over all rows) and then the metric's scores.
    pub fn columns(&self) -> Vec<String> {
        let scores = score_names(self.metric);
        let mut acc: Vec<String> = Vec::new();
        for r in &self.rows {
            for k in r.summary.keys() {
                // alpha / beta are intermediate terms of the score, not columns of the table.
                let skip = scores.contains(&k.as_str()) || k == "alpha" || k == "beta";
                if !skip && !acc.contains(k) {
                    acc.push(k.clone());
                }
            }
        }
        acc.sort();
        acc.extend(scores.iter().map(|s| s.to_string()));
        acc
    }

    /// The terminal table: ×100, mean ± population std; "-" where a model lacks a column.
    pub fn table(&self, title: &str) -> String {
        let cols = self.columns();
        let width = self
            .rows
            .iter()
            .map(|r| r.model.len())
            .max()
            .unwrap_or(0)
            .max("model".len());
        let mut s = format!(
            "cross-architecture {title}: {} model(s) (×100, mean ± population std over runs)\n\n  {:<width$}",
            self.rows.len(),
            "model"
        );
        let scores = score_names(self.metric);
        for c in &cols {
            // Scores in capitals, accuracies by quantity name, as the single-model table has them.
            let head = match scores.contains(&c.as_str()) {
                true => c.to_uppercase(),
                false => c.clone(),
            };
            let _ = write!(s, "  {head:>15}");
        }
        s.push('\n');
        for r in &self.rows {
            let _ = write!(s, "  {:<width$}", r.model);
            for c in &cols {
                let cell = match r.summary.get(c) {
                    Some(m) => format!("{:.2} ± {:.2}", 100.0 * m.mean, 100.0 * m.std),
                    None => "-".into(),
                };
                let _ = write!(s, "  {cell:>15}");
            }
            s.push('\n');
        }
        s
    }

    /// `models.csv`: `model,<col>_mean,<col>_std,…` with fractions, as result.csv has them.
    pub fn csv(&self) -> String {
        let cols = self.columns();
        let mut s = String::from("model");
        for c in &cols {
            let _ = write!(s, ",{c}_mean,{c}_std");
        }
        s.push('\n');
        for r in &self.rows {
            s.push_str(&r.model);
            for c in &cols {
                match r.summary.get(c) {
                    Some(m) => {
                        let _ = write!(s, ",{},{}", m.mean, m.std);
                    }
                    None => s.push_str(",,"),
                }
            }
            s.push('\n');
        }
        s
    }

    /// Writes `models.json` and `models.csv` into `dir` (each atomically).
    pub fn write(&self, dir: &Path) -> Result<()> {
        let json =
            serde_json::to_string_pretty(self).map_err(|e| Error::format(dir, e.to_string()))?;
        write_atomic(&dir.join(INDEX_FILE), json.as_bytes())?;
        write_atomic(&dir.join(CSV_FILE), self.csv().as_bytes())
    }

    /// Reads `dir/models.json`; None when the folder has none (a single-model result).
    pub fn load(dir: &Path) -> Result<Option<ModelsIndex>> {
        let file = dir.join(INDEX_FILE);
        if !file.is_file() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&file).map_err(|e| Error::io(&file, e))?;
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| Error::format(&file, format!("not a ddr-fast models.json: {e}")))
    }
}

/// A model name as a folder name: names are letters, digits and `-`; anything else becomes `_`
/// so that no name can leave the output folder.
pub fn model_dir(name: &str) -> PathBuf {
    PathBuf::from(
        name.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect::<String>(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(model: &str, lrs: f64, extra: Option<&str>) -> ModelRow {
        let ms = |mean| MeanStd { mean, std: 0.01 };
        let mut summary = BTreeMap::from([
            ("syn_hard".to_string(), ms(0.5)),
            ("hlr".to_string(), ms(0.25)),
            ("ior".to_string(), ms(0.125)),
            ("alpha".to_string(), ms(0.0)),
            ("lrs".to_string(), ms(lrs)),
        ]);
        if let Some(e) = extra {
            summary.insert(e.to_string(), ms(0.75));
        }
        ModelRow {
            model: model.into(),
            dir: model_dir(model),
            summary,
        }
    }

    /// One row per model; accuracies first (every one any model has), then the metric's scores;
    /// alpha stays out; a missing cell is "-" in the table and empty in the CSV.
    #[test]
    fn table_and_csv_have_one_row_per_model() {
        let idx = ModelsIndex {
            ddr_fast_version: "t".into(),
            metric: Metric::LrsHard,
            rows: vec![
                row("ConvNet-3", 0.5, Some("full_hard")),
                row("VGG-11", 0.25, None),
            ],
        };
        assert_eq!(
            idx.columns(),
            ["full_hard", "syn_hard", "hlr", "ior", "lrs"]
        );
        let csv = idx.csv();
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(
            lines[0],
            "model,full_hard_mean,full_hard_std,syn_hard_mean,syn_hard_std,hlr_mean,hlr_std,\
             ior_mean,ior_std,lrs_mean,lrs_std"
        );
        assert_eq!(lines[2], "VGG-11,,,0.5,0.01,0.25,0.01,0.125,0.01,0.25,0.01");
        assert_eq!(lines.len(), 3);
        let t = idx.table("LRS");
        let rows: Vec<&str> = t.lines().filter(|l| l.contains("VGG-11")).collect();
        assert_eq!(rows.len(), 1);
        assert!(
            rows[0].contains("25.00 ± 1.00") && rows[0].contains(" -"),
            "{t}"
        );
    }

    #[test]
    fn index_round_trips_and_absent_index_is_none() {
        let dir = tempfile::tempdir().unwrap();
        assert!(ModelsIndex::load(dir.path()).unwrap().is_none());
        let idx = ModelsIndex {
            ddr_fast_version: "t".into(),
            metric: Metric::Ars,
            rows: vec![row("ConvNet-2", 0.5, None)],
        };
        idx.write(dir.path()).unwrap();
        assert_eq!(ModelsIndex::load(dir.path()).unwrap(), Some(idx));
        assert!(dir.path().join(CSV_FILE).is_file());
    }

    #[test]
    fn folder_names_stay_inside() {
        assert_eq!(model_dir("ConvNet-3-BN"), PathBuf::from("ConvNet-3-BN"));
        assert_eq!(model_dir("../x/y"), PathBuf::from("___x_y"));
    }
}
