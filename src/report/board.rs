//! The leaderboard of several results: one row per result (method × dataset × IPC, like
//! DD-Ranking's table), sortable by any column, and the score plotted against plain accuracy.

use std::fmt::Write as _;

use super::html::{cell, esc, header, pct, td};
use super::plots::{self, Labelled};
use super::Loaded;
use crate::error::Result;
use crate::metrics::config::Metric;
use crate::metrics::scores::MeanStd;

/// The headline score of a metric.
pub fn main_score(m: Metric) -> &'static str {
    match m {
        Metric::LrsHard | Metric::LrsSoft => "lrs",
        Metric::Ars => "ars",
        Metric::Acc => "accuracy",
    }
}

/// The method's own accuracy, the x axis of the paper's figures: hard-label LRS trains the
/// synthetic set with hard labels, soft-label LRS and accuracy with its recipe, ARS with
/// augmentation.
pub fn plain_accuracy(m: Metric) -> &'static str {
    match m {
        Metric::LrsHard => "syn_hard",
        Metric::LrsSoft | Metric::Acc => "syn_recipe",
        Metric::Ars => "syn_aug",
    }
}

/// The two parts shown next to the score.
fn part_names(m: Metric) -> [&'static str; 2] {
    match m {
        Metric::LrsHard | Metric::LrsSoft => ["hlr", "ior"],
        Metric::Ars => ["with_aug", "without_aug"],
        Metric::Acc => ["", ""],
    }
}

const MISSING: MeanStd = MeanStd {
    mean: f64::NAN,
    std: f64::NAN,
};

/// The leaderboard table and chart; `anchors[i]` is the id of result i's section.
pub fn leaderboard(results: &[Loaded], anchors: &[String]) -> Result<String> {
    let mut s = String::from(
        "<h2>Leaderboard</h2>\n<p class=\"muted\">×100, mean ± population std over runs. Click a column \
         to sort; rows start sorted by score, best first.</p>\n<table class=\"sortable\">",
    );
    s.push_str(&header(&[
        "method",
        "dataset",
        "IPC",
        "metric",
        "score",
        "±",
        "HLR / with aug",
        "±",
        "IOR / without aug",
        "±",
        "accuracy",
        "±",
        "result",
    ]));
    s.push_str("<tbody>\n");
    // Best score first (NaN last); ties keep the command line's order.
    let mut order: Vec<usize> = (0..results.len()).collect();
    let score_of = |l: &Loaded| {
        let m = l.rec.outcome.metric;
        l.rec
            .outcome
            .summary
            .get(main_score(m))
            .map(|v| v.mean)
            .unwrap_or(f64::NAN)
    };
    order.sort_by(|&a, &b| {
        let (x, y) = (score_of(&results[a]), score_of(&results[b]));
        y.partial_cmp(&x)
            .unwrap_or_else(|| x.is_nan().cmp(&y.is_nan()))
    });
    let mut points = Vec::new();
    for &i in &order {
        let l = &results[i];
        let rec = &l.rec;
        let m = rec.outcome.metric;
        let get = |n: &str| rec.outcome.summary.get(n).copied().unwrap_or(MISSING);
        let mut row = format!(
            "<tr>{}{}<td data-sort=\"{}\">{}</td>{}",
            td(&l.name),
            td(&rec.config.dataset),
            rec.config.ipc,
            rec.config.ipc,
            td(&m.to_string())
        );
        let cols = [
            ("score", main_score(m)),
            ("part0", part_names(m)[0]),
            ("part1", part_names(m)[1]),
            ("accuracy", plain_accuracy(m)),
        ];
        for (col, name) in cols {
            let v = get(name);
            row.push_str(&cell(
                &format!("board.{i}.{col}.mean"),
                &pct(v.mean),
                v.mean,
            ));
            row.push_str(&cell(&format!("board.{i}.{col}.std"), &pct(v.std), v.std));
        }
        let _ = writeln!(
            row,
            "<td><a href=\"#{}\">{}</a></td></tr>",
            esc(&anchors[i]),
            esc(&l.origin)
        );
        s.push_str(&row);
        let (sc, acc) = (get(main_score(m)), get(plain_accuracy(m)));
        if m != Metric::Acc && sc.mean.is_finite() && acc.mean.is_finite() {
            // Two results of one method (two IPCs, say) are told apart by their folders.
            let twins = results.iter().filter(|o| o.name == l.name).count() > 1;
            points.push(Labelled {
                label: if twins {
                    format!("{} [{}]", l.name, l.origin)
                } else {
                    l.name.clone()
                },
                x: (100.0 * acc.mean, 100.0 * acc.std),
                y: (100.0 * sc.mean, 100.0 * sc.std),
            });
        }
    }
    s.push_str("</tbody></table>\n");
    if !points.is_empty() {
        let chart = plots::scatter(
            "score against plain accuracy (mean ± std)",
            "accuracy of the method's own training %",
            "LRS / ARS ×100",
            &points,
        )?;
        let _ = writeln!(
            s,
            "<div class=\"wide\" style=\"max-width:700px\">{chart}</div>"
        );
    }
    Ok(s)
}
