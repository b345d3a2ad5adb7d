//! Cross-architecture scores: `ddr-fast eval --model ConvNet-3,VGG-11,…` (or a YAML
//! `model_name` list) scores the set on each model, one ordinary evaluation per model, and prints
//! one table with a row per model.
//!
//! Each model's evaluation is exactly the single-model one with `model` set to that name (same
//! plan, same seeds, same cache keys), so its numbers are those of a separate `--model NAME` run,
//! the shared cache serves a rerun that adds a model with every earlier model's trainings, and
//! `--shard` / `--collect` / `--workers` / `--emit` work per model unchanged. A single model
//! keeps today's behaviour and output layout exactly. With several models, `--out DIR` holds one
//! subfolder per model (its result.json, result.csv, report.html and resume journal) and
//! `models.json` + `models.csv` (metrics/models.rs) beside them, with a `report.html` of all
//! models (`ddr-fast report DIR` writes the same page again).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::eval::human_time;
use crate::error::Result;
use crate::metrics::config::EvalConfig;
use crate::metrics::models::{model_dir, ModelsIndex};
use crate::metrics::report::EvalRecord;
use crate::metrics::settings::{settings_text, Provenance};

/// What one model's dry run counts, summed over a model list.
#[derive(Clone, Copy, Debug, Default)]
pub struct DryTotals {
    pub trainings: usize,
    pub todo: usize,
    pub cohorts: usize,
    /// Estimated seconds for the trainings still to run.
    pub seconds: f64,
}

/// The config of one model of `cfg`'s list: `model` is that name; with several models the
/// outputs move to the model's subfolder of `out_dir`, and DD-Ranking's `save_path` CSV gets the
/// model's name before its extension. A single-model config comes back unchanged.
pub fn for_model(cfg: &EvalConfig, name: &str) -> EvalConfig {
    let mut m = cfg.clone();
    if cfg.models().len() > 1 {
        m.model = name.to_string();
        m.out_dir = cfg.out_dir.as_ref().map(|d| d.join(model_dir(name)));
        m.csv_path = cfg.csv_path.as_ref().map(|p| suffixed(p, name));
    }
    m
}

/// `dir/stem.ext` → `dir/stem-NAME.ext`.
fn suffixed(p: &Path, name: &str) -> PathBuf {
    let stem = p.file_stem().map(|s| s.to_string_lossy().into_owned());
    let mut file = format!("{}-{}", stem.unwrap_or_default(), model_dir(name).display());
    if let Some(e) = p.extension() {
        file = format!("{file}.{}", e.to_string_lossy());
    }
    p.with_file_name(file)
}

/// The one config per model, in the order given.
fn configs(cfg: &EvalConfig) -> Vec<(String, EvalConfig)> {
    cfg.models()
        .into_iter()
        .map(|n| (n.to_string(), for_model(cfg, n)))
        .collect()
}

/// Validates every model's config before anything is loaded or trained; each name was checked
/// by `check_model_names` when the YAML or the flag set it.
pub fn validate(cfg: &EvalConfig) -> Result<()> {
    for (_, m) in configs(cfg) {
        m.validate()?;
    }
    Ok(())
}

/// The settings to print: a single model's as today; for a list, the shared settings and then,
/// per model, the settings that differ for it (its output folder, its full-data recipe, ...).
pub fn settings_text_for(prov: &Provenance, cfg: &EvalConfig) -> String {
    let shared = prov.resolve(cfg);
    let mut s = settings_text(&shared);
    if cfg.models().len() == 1 {
        return s;
    }
    for (name, m) in configs(cfg) {
        let own: BTreeMap<_, _> = prov
            .resolve(&m)
            .into_iter()
            .filter(|(k, v)| k != "model" && shared.get(k) != Some(v))
            .collect();
        if !own.is_empty() {
            let text = settings_text(&own);
            let lines = text.lines().skip(1).collect::<Vec<_>>().join("\n");
            s.push_str(&format!("settings of {name} where they differ:\n{lines}\n"));
        }
    }
    s
}

/// `--dry-run`: each model's plan (by `one`), then the totals over the list.
pub fn dry_run_models(
    cfg: &EvalConfig,
    mut one: impl FnMut(&EvalConfig) -> Result<DryTotals>,
) -> Result<()> {
    let all = configs(cfg);
    if all.len() == 1 {
        return one(&all[0].1).map(|_| ());
    }
    let mut sum = DryTotals::default();
    for (i, (name, m)) in all.iter().enumerate() {
        println!("\nmodel {}/{}: {name}", i + 1, all.len());
        let t = one(m)?;
        sum.trainings += t.trainings;
        sum.todo += t.todo;
        sum.cohorts += t.cohorts;
        sum.seconds += t.seconds;
    }
    println!(
        "\ntotal over {} models: {} trainings, {} to train in {} cohort(s), {} already finished; \
         estimated ≈ {}",
        all.len(),
        sum.trainings,
        sum.todo,
        sum.cohorts,
        sum.trainings - sum.todo,
        human_time(sum.seconds)
    );
    Ok(())
}

/// Runs `one` (one model's evaluation; None for a shard) for every model; with several, prints
/// the table of all models and writes `models.json` / `models.csv` under `out_dir`.
pub fn score_models(
    cfg: &EvalConfig,
    mut one: impl FnMut(&EvalConfig) -> Result<Option<EvalRecord>>,
) -> Result<()> {
    let all = configs(cfg);
    if all.len() == 1 {
        return one(&all[0].1).map(|_| ());
    }
    let mut done = Vec::new();
    for (i, (name, m)) in all.iter().enumerate() {
        let dest = m
            .out_dir
            .as_ref()
            .map(|d| format!(" → {}", d.display()))
            .unwrap_or_default();
        eprintln!("model {}/{}: {name}{dest}", i + 1, all.len());
        // Errors pass unchanged (callers match on Interrupted); the line above names the model.
        if let Some(rec) = one(m)? {
            done.push((name.clone(), model_dir(name), rec));
        }
    }
    if done.is_empty() {
        return Ok(()); // shards: the scores come from --collect
    }
    let index = ModelsIndex::new(cfg.metric, &done);
    let syn = cfg
        .syn_path
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "the demo coreset".into());
    let title = format!("{} of {syn} on {} IPC {}", cfg.metric, cfg.dataset, cfg.ipc);
    print!("\n{}", index.table(&title));
    if let Some(d) = &cfg.out_dir {
        index.write(d)?;
        let page = d.join("report.html");
        crate::report::write(&crate::report::load_all(d)?, &page)?;
        println!(
            "  wrote {}, {} and {}",
            d.join(crate::metrics::models::INDEX_FILE).display(),
            d.join(crate::metrics::models::CSV_FILE).display(),
            page.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_model_keeps_its_config_and_several_get_subfolders() {
        let cfg = EvalConfig {
            out_dir: Some("out".into()),
            csv_path: Some("res/x.csv".into()),
            ..EvalConfig::default()
        };
        assert_eq!(for_model(&cfg, "ConvNet-3"), cfg);
        let list = EvalConfig {
            model: "ConvNet-3,ConvNet-3-BN".into(),
            ..cfg
        };
        let m = for_model(&list, "ConvNet-3-BN");
        assert_eq!(m.model, "ConvNet-3-BN");
        assert_eq!(m.out_dir, Some(PathBuf::from("out/ConvNet-3-BN")));
        assert_eq!(m.csv_path, Some(PathBuf::from("res/x-ConvNet-3-BN.csv")));
        assert_eq!(configs(&list).len(), 2);
    }
}
