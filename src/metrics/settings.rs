//! The resolved settings of one evaluation and where each came from (default, demo, YAML, flag,
//! the synthetic file), so that nothing that changes a score goes unseen: `eval` prints them and
//! stores them in `result.json`.
//!
//! Provenance is tracked per [`EvalConfig`] field, by the names serde gives them. The YAML reader
//! reports the fields its keys set; flags are found by comparing the config before and after they
//! are applied (a flag equal to the value it replaces keeps the earlier source).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::config::{EvalConfig, Metric};
use super::plan::full_data_recipe;

/// One resolved setting.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Setting {
    pub value: Value,
    /// `default`, `demo`, `yaml <path>`, `flag`, `file <path>`, or `derived (...)`.
    pub source: String,
}

/// Where each config field's value came from.
#[derive(Clone, Debug, PartialEq)]
pub struct Provenance {
    sources: BTreeMap<String, String>,
}

fn fields(cfg: &EvalConfig) -> serde_json::Map<String, Value> {
    match serde_json::to_value(cfg) {
        Ok(Value::Object(m)) => m,
        // EvalConfig is a plain struct of serialisable fields: always an object.
        _ => serde_json::Map::new(),
    }
}

impl Provenance {
    /// Every field of `cfg` attributed to `base` ("default" or "demo").
    pub fn new(cfg: &EvalConfig, base: &str) -> Provenance {
        Provenance {
            sources: fields(cfg)
                .keys()
                .map(|k| (k.clone(), base.to_string()))
                .collect(),
        }
    }

    /// The named fields now come from `source`.
    pub fn mark<'a>(&mut self, names: impl IntoIterator<Item = &'a str>, source: &str) {
        for n in names {
            self.sources.insert(n.to_string(), source.to_string());
        }
    }

    /// Fields whose value differs between `before` and `after` now come from `source`.
    pub fn mark_changed(&mut self, before: &EvalConfig, after: &EvalConfig, source: &str) {
        let (b, a) = (fields(before), fields(after));
        for (k, v) in &a {
            if b.get(k) != Some(v) {
                self.sources.insert(k.clone(), source.to_string());
            }
        }
    }

    pub fn source(&self, field: &str) -> Option<&str> {
        self.sources.get(field).map(String::as_str)
    }

    /// Every setting with its value and source; fields left to a rule (`step_size`,
    /// `test_interval`, `full_epochs`, ARS's batch size) show the value the rule gives, and the
    /// full-data recipe is added when the metric trains on full data.
    pub fn resolve(&self, cfg: &EvalConfig) -> BTreeMap<String, Setting> {
        let src = |k: &str| self.source(k).unwrap_or("default").to_string();
        let mut out: BTreeMap<String, Setting> = fields(cfg)
            .into_iter()
            .map(|(k, value)| {
                let source = src(&k);
                (k, Setting { value, source })
            })
            .collect();
        fn derive(out: &mut BTreeMap<String, Setting>, k: &str, value: Value, rule: &str) {
            if out.get(k).is_some_and(|s| s.value.is_null()) {
                out.insert(
                    k.to_string(),
                    Setting {
                        value,
                        source: format!("derived ({rule})"),
                    },
                );
            }
        }
        derive(
            &mut out,
            "step_size",
            cfg.step_size().into(),
            "num_epochs / 2",
        );
        derive(
            &mut out,
            "test_interval",
            cfg.test_interval().into(),
            "the metric's reference interval",
        );
        derive(
            &mut out,
            "full_epochs",
            cfg.full_epochs().into(),
            "num_epochs",
        );
        if cfg.metric == Metric::Ars {
            derive(
                &mut out,
                "batch_size",
                cfg.ars_batch_size().into(),
                "syn_batch_size",
            );
        }
        if matches!(cfg.metric, Metric::LrsHard | Metric::LrsSoft) {
            if cfg.eval_full_data {
                if let Ok((lr, recipe)) = full_data_recipe(cfg) {
                    let mut v = serde_json::to_value(recipe).unwrap_or(Value::Null);
                    if let Value::Object(m) = &mut v {
                        m.insert("lr".into(), lr.into());
                    }
                    out.insert(
                        "full_data_recipe".into(),
                        Setting {
                            value: v,
                            source:
                                "derived (DD-Ranking's REAL_DATA_TRAINING_CONFIG, else default_lr)"
                                    .into(),
                        },
                    );
                }
            } else if cfg.full_acc.is_none() {
                if let Some(a) = cfg.known_full_acc() {
                    derive(
                        &mut out,
                        "full_acc",
                        a.into(),
                        "DD-Ranking's REAL_DATA_ACC_CACHE",
                    );
                }
            }
        }
        out
    }
}

/// The settings as lines `  key = value  (source)`, for the terminal.
pub fn settings_text(settings: &BTreeMap<String, Setting>) -> String {
    let mut s = String::from("settings (value, source):\n");
    for (k, v) in settings {
        let _ = writeln!(s, "  {k:<20} = {:<40} ({})", v.value.to_string(), v.source);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::yaml::apply_yaml_str;
    use std::path::Path;

    #[test]
    fn sources_follow_the_layers() {
        let mut cfg = EvalConfig::default();
        let mut p = Provenance::new(&cfg, "default");
        // num_epochs: 300 equals the default, yet the YAML set it.
        let rep = apply_yaml_str(
            Path::new("c.yaml"),
            "metric: lrs-hard\nnum_epochs: 300\nipc: 50\n",
            &mut cfg,
        )
        .unwrap();
        p.mark(rep.set.iter().copied(), "yaml c.yaml");
        let before = cfg.clone();
        cfg.ipc = 1;
        cfg.seed = 7;
        p.mark_changed(&before, &cfg, "flag");
        let r = p.resolve(&cfg);
        assert_eq!(r["num_epochs"].source, "yaml c.yaml");
        assert_eq!(r["ipc"].source, "flag");
        assert_eq!(r["ipc"].value, Value::from(1));
        assert_eq!(r["seed"].source, "flag");
        assert_eq!(r["momentum"].source, "default");
        assert_eq!(r["step_size"].value, Value::from(150));
        assert!(r["step_size"].source.starts_with("derived"));
        assert_eq!(r["test_interval"].value, Value::from(10));
        let text = settings_text(&r);
        assert!(
            text.contains("num_epochs") && text.contains("(yaml c.yaml)"),
            "{text}"
        );
    }

    #[test]
    fn full_data_recipe_is_shown_when_trained() {
        let cfg = EvalConfig {
            eval_full_data: true,
            ..EvalConfig::default()
        };
        let r = Provenance::new(&cfg, "default").resolve(&cfg);
        let v = &r["full_data_recipe"].value;
        assert_eq!(v["lr"], Value::from(0.01));
        assert_eq!(v["step_size"], Value::from(100));
    }
}
