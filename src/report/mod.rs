//! The HTML report (`ddr-fast report DIR…`, and `report.html` at the end of `ddr-fast eval --out`):
//! one self-contained file built from result.json records. One result: its scores, curves,
//! learning-rate grid, diverged students and settings. Several: a leaderboard first, then each
//! result's section.
//!
//! A result's method name is the stem of its synthetic set's file (`syn_path`: `dm_ipc10.safetensors`
//! → `dm_ipc10`; a folder's own name), `herding (demo)` for the demo, which has no file.

mod board;
mod html;
mod plots;
mod single;

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::metrics::cache::write_atomic;
use crate::metrics::report::EvalRecord;

pub use board::{main_score, plain_accuracy};

/// One result.json as the report shows it.
#[derive(Clone, Debug)]
pub struct Loaded {
    /// The method's name (see the module docs).
    pub name: String,
    /// Where it was read from, as the user named it.
    pub origin: String,
    pub rec: EvalRecord,
}

/// The method name of a result: its synthetic set's file stem, or the demo's coreset.
pub fn method_name(rec: &EvalRecord) -> String {
    match &rec.config.syn_path {
        Some(p) => p
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| p.display().to_string()),
        None => "herding (demo)".into(),
    }
}

/// Reads `path/result.json` (or `path` itself when it is a file).
pub fn load(path: &Path) -> Result<Loaded> {
    let file: PathBuf = if path.is_dir() {
        path.join("result.json")
    } else {
        path.to_path_buf()
    };
    let text = std::fs::read_to_string(&file).map_err(|e| Error::io(&file, e))?;
    let rec: EvalRecord = serde_json::from_str(&text)
        .map_err(|e| Error::format(&file, format!("not a ddr-fast result.json: {e}")))?;
    Ok(Loaded {
        name: method_name(&rec),
        origin: path.display().to_string(),
        rec,
    })
}

/// The results of a folder or file: `load` of it, or, for a cross-architecture folder (a
/// `models.json` and no result.json), each model's result named `<method> on <model>`, so the
/// page starts with their table (the leaderboard, one row per model).
pub fn load_all(path: &Path) -> Result<Vec<Loaded>> {
    let index = match path.is_dir() && !path.join("result.json").exists() {
        true => crate::metrics::models::ModelsIndex::load(path)?,
        false => None,
    };
    let Some(index) = index else {
        return Ok(vec![load(path)?]);
    };
    index
        .rows
        .iter()
        .map(|row| {
            let mut l = load(&path.join(&row.dir))?;
            l.name = format!("{} on {}", l.name, row.model);
            Ok(l)
        })
        .collect()
}

/// The whole page: one result's section, or the leaderboard followed by every result's section.
pub fn render(results: &[Loaded]) -> Result<String> {
    if results.is_empty() {
        return Err(Error::config("report: no results to show"));
    }
    let anchors: Vec<String> = (0..results.len()).map(|i| format!("result-{i}")).collect();
    let mut body = String::new();
    let title = if results.len() == 1 {
        let l = &results[0];
        format!(
            "ddr-fast report: {} ({} on {} IPC {})",
            l.name, l.rec.outcome.metric, l.rec.config.dataset, l.rec.config.ipc
        )
    } else {
        format!("ddr-fast leaderboard: {} results", results.len())
    };
    body.push_str(&format!("<h1>{}</h1>\n", html::esc(&title)));
    body.push_str(&format!(
        "<p class=\"muted\">made by ddr-fast {} from {}</p>\n",
        crate::VERSION,
        html::esc(
            &results
                .iter()
                .map(|l| l.origin.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )
    ));
    if results.len() > 1 {
        body.push_str(&board::leaderboard(results, &anchors)?);
    }
    for (l, a) in results.iter().zip(&anchors) {
        body.push_str(&single::section(l, a)?);
    }
    Ok(html::page(&title, &body))
}

/// Writes the page of `results` to `out` (atomically).
pub fn write(results: &[Loaded], out: &Path) -> Result<()> {
    write_atomic(out, render(results)?.as_bytes())
}

/// `report.html` of a finished evaluation, next to its result.json; returns its path.
pub fn write_eval_report(rec: &EvalRecord, dir: &Path) -> Result<PathBuf> {
    let l = Loaded {
        name: method_name(rec),
        origin: dir.display().to_string(),
        rec: rec.clone(),
    };
    let out = dir.join("report.html");
    write(&[l], &out)?;
    Ok(out)
}
