//! One result's section of the report: the score and its decomposition per run, the curves of
//! every training grouped by quantity and learning rate, the learning-rate grid, the diverged
//! students, and the resolved settings and versions.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::html::{cell, esc, header, lr, pct, td};
use super::plots::{self, Line, LrSeries, Spread};
use super::Loaded;
use crate::error::Result;
use crate::metrics::config::Metric;
use crate::metrics::report::TrainingTiming;
use crate::metrics::scores::mean_std;

/// The scores of a metric in the order they are read: the parts, then the score.
pub fn score_names(m: Metric) -> &'static [&'static str] {
    match m {
        Metric::LrsHard | Metric::LrsSoft => &["hlr", "ior", "alpha", "lrs"],
        Metric::Ars => &["with_aug", "without_aug", "beta", "ars"],
        Metric::Acc => &["accuracy"],
    }
}

/// The parts drawn in the decomposition chart (α and β are the exponents, not parts).
fn parts(m: Metric) -> &'static [&'static str] {
    match m {
        Metric::LrsHard | Metric::LrsSoft => &["hlr", "ior", "lrs"],
        Metric::Ars => &["with_aug", "without_aug", "ars"],
        Metric::Acc => &["accuracy"],
    }
}

/// Which data a quantity trains on, as the issue names the roles.
fn role(quantity: &str) -> &'static str {
    if quantity.starts_with("syn") {
        "syn"
    } else if quantity.starts_with("rdm") {
        "random"
    } else {
        "full"
    }
}

/// The epoch of a training's i-th test: every `interval` epochs, the last after the last epoch.
fn test_epoch(i: usize, interval: usize, epochs: usize) -> f64 {
    ((i + 1) * interval.max(1)).min(epochs) as f64
}

/// The section of one result; `anchor` is its HTML id.
pub fn section(l: &Loaded, anchor: &str) -> Result<String> {
    let rec = &l.rec;
    let o = &rec.outcome;
    let cfg = &rec.config;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "<h2 id=\"{}\">{} — {} on {} IPC {}</h2>\n<p class=\"muted\">{} width {}, {} run(s), \
         device {}, ddr-fast {}; from {}</p>",
        esc(anchor),
        esc(&l.name),
        esc(&rec.outcome.metric.to_string()),
        esc(&cfg.dataset),
        cfg.ipc,
        esc(&cfg.model),
        cfg.width,
        o.runs.len(),
        esc(&rec.device),
        esc(&rec.ddr_fast_version),
        esc(&l.origin)
    );
    scores(&mut s, l)?;
    curves(&mut s, l)?;
    grid(&mut s, l)?;
    s.push_str("<h3>Diverged students</h3>\n");
    if o.stopped.is_empty() {
        s.push_str("<p>none: every training's loss stayed finite.</p>\n");
    } else {
        s.push_str("<ul class=\"warn\">");
        for w in &o.stopped {
            let _ = write!(s, "<li>{}</li>", esc(w));
        }
        s.push_str("</ul>\n");
    }
    settings(&mut s, l);
    Ok(s)
}

/// The score table (mean, std, each run) and the decomposition chart.
fn scores(s: &mut String, l: &Loaded) -> Result<()> {
    let o = &l.rec.outcome;
    s.push_str("<h3>Scores (×100, mean ± population std over runs)</h3>\n<table>");
    let mut cols = vec!["".to_string(), "mean".into(), "std".into()];
    cols.extend(
        o.runs
            .iter()
            .map(|r| format!("run {} (seed {})", r.run, r.seed)),
    );
    s.push_str(&header(
        &cols.iter().map(String::as_str).collect::<Vec<_>>(),
    ));
    s.push_str("<tbody>");
    let acc_names: Vec<&String> = o
        .runs
        .first()
        .map(|r| r.acc.keys().collect())
        .unwrap_or_default();
    let names = score_names(o.metric)
        .iter()
        .map(|n| (n.to_string(), false))
        .chain(acc_names.iter().map(|n| (n.to_string(), true)));
    for (n, is_acc) in names {
        let Some(m) = o.summary.get(&n) else { continue };
        let label = if is_acc {
            format!("accuracy {n}")
        } else {
            n.to_uppercase()
        };
        let _ = write!(
            s,
            "<tr>{}{}{}",
            td(&label),
            cell(&format!("summary.{n}.mean"), &pct(m.mean), m.mean),
            cell(&format!("summary.{n}.std"), &pct(m.std), m.std)
        );
        for (i, r) in o.runs.iter().enumerate() {
            let (v, key) = if is_acc {
                (r.acc.get(&n), format!("runs.{i}.acc.{n}"))
            } else {
                (r.scores.get(&n), format!("runs.{i}.{n}"))
            };
            let v = v.copied().unwrap_or(f64::NAN);
            s.push_str(&cell(&key, &pct(v), v));
        }
        s.push_str("</tr>\n");
    }
    for n in &acc_names {
        let _ = write!(s, "<tr>{}<td></td><td></td>", td(&format!("chosen lr {n}")));
        for (i, r) in o.runs.iter().enumerate() {
            match r.lr.get(*n) {
                Some(&v) => s.push_str(&cell(&format!("runs.{i}.lr.{n}"), &lr(v), v)),
                None => s.push_str(&td("given")),
            }
        }
        s.push_str("</tr>\n");
    }
    s.push_str("</tbody></table>\n");
    let cats: Vec<Spread> = parts(o.metric)
        .iter()
        .filter_map(|n| {
            let m = o.summary.get(*n)?;
            Some(Spread {
                name: n.to_uppercase(),
                values: o
                    .runs
                    .iter()
                    .filter_map(|r| r.scores.get(*n))
                    .map(|v| 100.0 * v)
                    .collect(),
                mean: 100.0 * m.mean,
                std: 100.0 * m.std,
            })
        })
        .collect();
    let chart = plots::spreads(
        "score decomposition: runs (dots), mean ± std (bars)",
        "×100",
        &cats,
    )?;
    let _ = writeln!(
        s,
        "<div class=\"wide\" style=\"max-width:640px\">{chart}</div>"
    );
    Ok(())
}

/// Every distinct learning rate of the trainings, ascending: the colour of each curve.
fn lr_order(ts: &[TrainingTiming]) -> Vec<f64> {
    let mut v: Vec<f64> = ts
        .iter()
        .map(|t| t.curve.lr)
        .filter(|l| l.is_finite())
        .collect();
    v.sort_by(f64::total_cmp);
    v.dedup();
    v
}

fn colour_of(order: &[f64], lr: f64) -> usize {
    order.iter().position(|&l| l == lr).unwrap_or(order.len())
}

/// Quantities in plan order.
fn quantities(ts: &[TrainingTiming]) -> Vec<String> {
    let mut q: Vec<String> = Vec::new();
    for t in ts {
        if !t.curve.quantity.is_empty() && !q.contains(&t.curve.quantity) {
            q.push(t.curve.quantity.clone());
        }
    }
    q
}

/// The learning rate run `run` chose for `quantity` (the full-data training has no run: any run's).
fn chosen_lr(l: &Loaded, quantity: &str, run: Option<u32>) -> Option<f64> {
    let runs = &l.rec.outcome.runs;
    let r = match run {
        Some(i) => runs.iter().find(|r| r.run == i)?,
        None => runs.first()?,
    };
    r.lr.get(quantity).copied()
}

/// Accuracy and loss curves per quantity, every learning rate and run on one chart.
fn curves(s: &mut String, l: &Loaded) -> Result<()> {
    let ts = &l.rec.timings.trainings;
    s.push_str("<h3>Training curves</h3>\n");
    if ts.iter().all(|t| t.curve.tests.is_empty()) {
        s.push_str(
            "<p>This result.json was written before ddr-fast kept curves: no curves to show.</p>\n",
        );
        return Ok(());
    }
    let order = lr_order(ts);
    s.push_str("<p class=\"key\">learning rate:");
    for (i, v) in order.iter().enumerate() {
        let _ = write!(
            s,
            "<span style=\"background:{}\"></span>{}",
            plots::css_colour(i),
            lr(*v)
        );
    }
    s.push_str(
        " — bold: the learning rate its run chose; dot: that training's best test (its accuracy); \
                faint: the other learning rates.</p>\n<div class=\"grid\">\n",
    );
    for q in quantities(ts) {
        let mine: Vec<&TrainingTiming> = ts.iter().filter(|t| t.curve.quantity == q).collect();
        let epochs = mine.iter().map(|t| t.curve.epochs).max().unwrap_or(1) as f64;
        let mut acc_lines = Vec::new();
        let mut loss_lines = Vec::new();
        for t in &mine {
            let c = &t.curve;
            let colour = colour_of(&order, c.lr);
            let chosen = chosen_lr(l, &q, c.run) == Some(c.lr);
            let pts: Vec<(f64, f64)> = c
                .tests
                .iter()
                .enumerate()
                .map(|(i, a)| (test_epoch(i, c.test_interval, c.epochs), 100.0 * a))
                .collect();
            // The first best test: the one the training's accuracy comes from.
            let best = pts
                .iter()
                .copied()
                .reduce(|b, p| if p.1 > b.1 { p } else { b });
            acc_lines.push(Line {
                points: pts,
                colour,
                chosen,
                mark: best.filter(|_| chosen),
            });
            loss_lines.push(Line {
                points: c
                    .train_loss
                    .iter()
                    .enumerate()
                    .map(|(i, v)| ((i + 1) as f64, *v))
                    .collect(),
                colour,
                chosen,
                mark: None,
            });
        }
        let title = format!("{q} ({}): test accuracy", role(&q));
        let _ = writeln!(
            s,
            "<div>{}</div>",
            plots::curves(&title, "accuracy %", epochs, &acc_lines)?
        );
        let title = format!("{q} ({}): mean training loss per epoch", role(&q));
        let _ = writeln!(
            s,
            "<div>{}</div>",
            plots::curves(&title, "loss", epochs, &loss_lines)?
        );
    }
    s.push_str("</div>\n");
    Ok(())
}

/// Accuracy per learning rate per quantity (mean ± std over runs), with the edge warning.
fn grid(s: &mut String, l: &Loaded) -> Result<()> {
    let ts = &l.rec.timings.trainings;
    let order = lr_order(ts);
    let grid = &l.rec.config.lr_grid;
    s.push_str("<h3>Learning-rate grid (accuracy ×100, mean ± std over runs)</h3>\n<table>");
    let mut cols = vec!["quantity".to_string()];
    cols.extend(order.iter().map(|v| format!("lr {}", lr(*v))));
    cols.push("chosen per run".into());
    s.push_str(&header(
        &cols.iter().map(String::as_str).collect::<Vec<_>>(),
    ));
    s.push_str("<tbody>");
    let mut series = Vec::new();
    let mut warnings = Vec::new();
    for (qi, q) in quantities(ts).iter().enumerate() {
        // lr → accuracies of that lr over runs.
        let mut by_lr: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
        for t in ts.iter().filter(|t| &t.curve.quantity == q) {
            by_lr
                .entry(colour_of(&order, t.curve.lr))
                .or_default()
                .push(t.acc);
        }
        let _ = write!(s, "<tr>{}", td(&format!("{q} ({})", role(q))));
        let mut pts = Vec::new();
        for (i, v) in order.iter().enumerate() {
            match by_lr.get(&i).map(|xs| mean_std(q, xs)).transpose()? {
                Some(m) => {
                    let _ = write!(
                        s,
                        "<td data-sort=\"{}\">{} ± {}</td>",
                        m.mean,
                        pct(m.mean),
                        pct(m.std)
                    );
                    pts.push((*v, 100.0 * m.mean, 100.0 * m.std));
                }
                None => s.push_str("<td></td>"),
            }
        }
        let chosen: Vec<(Option<u32>, f64)> = l
            .rec
            .outcome
            .runs
            .iter()
            .filter_map(|r| r.lr.get(q).map(|v| (Some(r.run), *v)))
            .collect();
        let text: Vec<String> = chosen.iter().map(|(_, v)| lr(*v)).collect();
        let _ = writeln!(s, "{}</tr>", td(&text.join(" ")));
        // Only a searched quantity has an edge: the grid's rates it tried, two or more of them
        // (the full-data training uses its recipe's one rate; a given syn_lr is not searched).
        let tried: Vec<f64> = order
            .iter()
            .enumerate()
            .filter(|(i, v)| by_lr.contains_key(i) && grid.contains(v))
            .map(|(_, v)| *v)
            .collect();
        let (lo, hi) = (tried.first().copied(), tried.last().copied());
        let at_edge: Vec<String> = chosen
            .iter()
            .filter(|(_, v)| tried.len() >= 2 && (Some(*v) == lo || Some(*v) == hi))
            .map(|(r, v)| format!("run {} (lr {})", r.unwrap_or(0), lr(*v)))
            .collect();
        if !at_edge.is_empty() {
            warnings.push(format!(
                "{q}: the best learning rate is at the grid's edge in {}; a wider grid may score higher.",
                at_edge.join(", ")
            ));
        }
        series.push(LrSeries {
            points: pts,
            colour: qi,
        });
    }
    s.push_str("</tbody></table>\n");
    for w in &warnings {
        let _ = writeln!(s, "<p class=\"warn\">⚠ {}</p>", esc(w));
    }
    if !order.is_empty() {
        s.push_str("<p class=\"key\">quantity:");
        for (i, q) in quantities(ts).iter().enumerate() {
            let _ = write!(
                s,
                "<span style=\"background:{}\"></span>{}",
                plots::css_colour(i),
                esc(q)
            );
        }
        let chart = plots::lr_grid("accuracy per learning rate", &series)?;
        let _ = writeln!(
            s,
            "</p>\n<div class=\"wide\" style=\"max-width:640px\">{chart}</div>"
        );
    }
    Ok(())
}

/// Every resolved setting with its source, the versions and the timings.
fn settings(s: &mut String, l: &Loaded) {
    let rec = &l.rec;
    let t = &rec.timings;
    let _ = writeln!(
        s,
        "<h3>Run</h3>\n<p>ddr-fast {} on {}; {:.1} s total, {:.1} s training; trainings: {} run, {} from \
         cache, {} resumed, in {} cohort(s).</p>",
        esc(&rec.ddr_fast_version),
        esc(&rec.device),
        t.total_s,
        t.train_s,
        t.ran,
        t.cached,
        t.resumed,
        t.cohorts_run
    );
    if !rec.notes.is_empty() {
        s.push_str("<ul>");
        for n in &rec.notes {
            let _ = write!(s, "<li>{}</li>", esc(n));
        }
        s.push_str("</ul>\n");
    }
    s.push_str("<details><summary>Resolved settings</summary>\n<table>");
    s.push_str(&header(&["setting", "value", "from"]));
    s.push_str("<tbody>");
    for (k, v) in &rec.settings {
        let _ = writeln!(
            s,
            "<tr>{}{}{}</tr>",
            td(k),
            td(&v.value.to_string()),
            td(&v.source)
        );
    }
    s.push_str("</tbody></table></details>\n");
}
