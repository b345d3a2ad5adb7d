//! The report's charts, drawn by plotters' SVG backend into strings that the page inlines. Each
//! function takes plain numbers (percent, epochs, learning rates) so the page decides what to plot
//! and this file only how. No fonts are loaded: text stays `<text>` elements the browser lays out.

use plotters::prelude::*;

use crate::error::{Error, Result};

/// Chart size in pixels (the browser scales it to the column width).
pub const WIDTH: u32 = 560;
pub const HEIGHT: u32 = 300;

/// Okabe–Ito: eight colours told apart by colour-blind readers, indexed by learning-rate position.
const PALETTE: [RGBColor; 8] = [
    RGBColor(0, 114, 178),
    RGBColor(230, 159, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(86, 180, 233),
    RGBColor(213, 94, 0),
    RGBColor(240, 228, 66),
    RGBColor(0, 0, 0),
];

pub fn colour(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

/// The CSS colour of palette entry `i`, for legends drawn in HTML.
pub fn css_colour(i: usize) -> String {
    let c = colour(i);
    format!("rgb({},{},{})", c.0, c.1, c.2)
}

fn plot_err(what: &str, e: impl std::fmt::Debug) -> Error {
    Error::config(format!("report: drawing the {what} chart failed: {e:?}"))
}

/// One line of a curve chart: (x, y) points, a palette index, and whether it is emphasised
/// (the chosen learning rate of its run, with its best point marked).
pub struct Line {
    pub points: Vec<(f64, f64)>,
    pub colour: usize,
    pub chosen: bool,
    /// The point to mark with a dot (the best test of a chosen training).
    pub mark: Option<(f64, f64)>,
}

/// (lo, hi) of the values with a margin, never empty.
fn span(values: impl Iterator<Item = f64>, floor_zero: bool) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    if floor_zero {
        lo = lo.min(0.0);
    }
    let pad = ((hi - lo) * 0.08).max(0.5);
    (lo - pad, hi + pad)
}

/// Lines over epochs (test accuracy or training loss); `legend` names each palette index used.
pub fn curves(title: &str, y_desc: &str, x_max: f64, lines: &[Line]) -> Result<String> {
    let (y_lo, y_hi) = span(
        lines.iter().flat_map(|l| l.points.iter().map(|p| p.1)),
        false,
    );
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| plot_err(title, e))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 15))
            .margin(8)
            .x_label_area_size(32)
            .y_label_area_size(48)
            .build_cartesian_2d(0f64..x_max.max(1.0), y_lo..y_hi)
            .map_err(|e| plot_err(title, e))?;
        chart
            .configure_mesh()
            .x_desc("epoch")
            .x_labels((x_max as usize).clamp(2, 10))
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_desc(y_desc)
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(|e| plot_err(title, e))?;
        // Unchosen first, so the chosen lines lie on top.
        for chosen in [false, true] {
            for l in lines.iter().filter(|l| l.chosen == chosen) {
                let c = colour(l.colour);
                let style = if chosen {
                    c.stroke_width(2)
                } else {
                    c.mix(0.35).stroke_width(1)
                };
                chart
                    .draw_series(LineSeries::new(l.points.iter().copied(), style))
                    .map_err(|e| plot_err(title, e))?;
                if let Some(m) = l.mark {
                    chart
                        .draw_series(std::iter::once(Circle::new(m, 4, c.filled())))
                        .map_err(|e| plot_err(title, e))?;
                }
            }
        }
        root.present().map_err(|e| plot_err(title, e))?;
    }
    Ok(svg)
}

/// One category of a points-and-error-bar chart: per-run values and their mean ± std.
pub struct Spread {
    pub name: String,
    pub values: Vec<f64>,
    pub mean: f64,
    pub std: f64,
}

/// Per-run dots and the mean with a ±std error bar for each category (the score decomposition).
pub fn spreads(title: &str, y_desc: &str, cats: &[Spread]) -> Result<String> {
    let n = cats.len().max(1);
    let (y_lo, y_hi) = span(
        cats.iter().flat_map(|c| {
            c.values
                .iter()
                .copied()
                .chain([c.mean - c.std, c.mean + c.std])
        }),
        true,
    );
    let names: Vec<String> = cats.iter().map(|c| c.name.clone()).collect();
    let label = |x: &f64| {
        let i = x.round();
        if (x - i).abs() < 1e-6 && i >= 0.0 {
            names.get(i as usize).cloned().unwrap_or_default()
        } else {
            String::new()
        }
    };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| plot_err(title, e))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 15))
            .margin(8)
            .x_label_area_size(32)
            .y_label_area_size(48)
            .build_cartesian_2d(-0.5f64..n as f64 - 0.5, y_lo..y_hi)
            .map_err(|e| plot_err(title, e))?;
        chart
            .configure_mesh()
            .x_labels(n)
            .x_label_formatter(&label)
            .disable_x_mesh()
            .light_line_style(WHITE.mix(0.0))
            .y_desc(y_desc)
            .draw()
            .map_err(|e| plot_err(title, e))?;
        chart
            .draw_series(LineSeries::new(
                [(-0.5, 0.0), (n as f64 - 0.5, 0.0)],
                BLACK.mix(0.4),
            ))
            .map_err(|e| plot_err(title, e))?;
        for (i, c) in cats.iter().enumerate() {
            let x = i as f64;
            let k = c.values.len().max(1) as f64;
            // Runs spread side by side (±0.2) so equal values stay visible.
            let dots = c.values.iter().enumerate().map(|(r, &v)| {
                let dx = if k > 1.0 {
                    -0.2 + 0.4 * r as f64 / (k - 1.0)
                } else {
                    0.0
                };
                Circle::new((x + dx, v), 3, colour(i).mix(0.6).filled())
            });
            chart.draw_series(dots).map_err(|e| plot_err(title, e))?;
            chart
                .draw_series(std::iter::once(ErrorBar::new_vertical(
                    x,
                    c.mean - c.std,
                    c.mean,
                    c.mean + c.std,
                    BLACK.stroke_width(2),
                    14,
                )))
                .map_err(|e| plot_err(title, e))?;
        }
        root.present().map_err(|e| plot_err(title, e))?;
    }
    Ok(svg)
}

/// One series of the learning-rate chart: (lr, mean, std) points and a palette index.
pub struct LrSeries {
    pub points: Vec<(f64, f64, f64)>,
    pub colour: usize,
}

/// Accuracy (mean ± std over runs) against the learning rate, log-scaled.
pub fn lr_grid(title: &str, series: &[LrSeries]) -> Result<String> {
    let lrs = series.iter().flat_map(|s| s.points.iter().map(|p| p.0));
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for l in lrs.filter(|l| *l > 0.0 && l.is_finite()) {
        lo = lo.min(l);
        hi = hi.max(l);
    }
    if !lo.is_finite() {
        (lo, hi) = (1e-3, 1e-1);
    }
    // Half a decade of margin each side keeps the edge points off the frame.
    let (lo, hi) = (lo / 1.6, hi * 1.6);
    let (y_lo, y_hi) = span(
        series
            .iter()
            .flat_map(|s| s.points.iter().flat_map(|p| [p.1 - p.2, p.1 + p.2])),
        false,
    );
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| plot_err(title, e))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 15))
            .margin(8)
            .x_label_area_size(32)
            .y_label_area_size(48)
            .build_cartesian_2d((lo..hi).log_scale(), y_lo..y_hi)
            .map_err(|e| plot_err(title, e))?;
        chart
            .configure_mesh()
            .x_desc("learning rate")
            .y_desc("accuracy %")
            .x_label_formatter(&|x| format!("{x}"))
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(|e| plot_err(title, e))?;
        for s in series {
            let c = colour(s.colour);
            let pts = s.points.iter().map(|p| (p.0, p.1));
            chart
                .draw_series(LineSeries::new(pts, c.stroke_width(2)))
                .map_err(|e| plot_err(title, e))?;
            let bars = s
                .points
                .iter()
                .map(|&(l, m, sd)| ErrorBar::new_vertical(l, m - sd, m, m + sd, c.filled(), 8));
            chart.draw_series(bars).map_err(|e| plot_err(title, e))?;
        }
        root.present().map_err(|e| plot_err(title, e))?;
    }
    Ok(svg)
}

/// One labelled point of the leaderboard scatter: x and y as mean ± std.
pub struct Labelled {
    pub label: String,
    pub x: (f64, f64),
    pub y: (f64, f64),
}

/// The score against plain accuracy, one labelled point with error bars per result.
pub fn scatter(title: &str, x_desc: &str, y_desc: &str, pts: &[Labelled]) -> Result<String> {
    let (x_lo, x_hi) = span(
        pts.iter().flat_map(|p| [p.x.0 - p.x.1, p.x.0 + p.x.1]),
        false,
    );
    let (y_lo, y_hi) = span(
        pts.iter().flat_map(|p| [p.y.0 - p.y.1, p.y.0 + p.y.1]),
        false,
    );
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT + 60)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| plot_err(title, e))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 15))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(48)
            .build_cartesian_2d(x_lo..x_hi, y_lo..y_hi)
            .map_err(|e| plot_err(title, e))?;
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc(y_desc)
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(|e| plot_err(title, e))?;
        for (i, p) in pts.iter().enumerate() {
            let c = colour(i);
            let (x, y) = (p.x.0, p.y.0);
            chart
                .draw_series(std::iter::once(ErrorBar::new_vertical(
                    x,
                    y - p.y.1,
                    y,
                    y + p.y.1,
                    c.stroke_width(1),
                    8,
                )))
                .map_err(|e| plot_err(title, e))?;
            chart
                .draw_series(std::iter::once(ErrorBar::new_horizontal(
                    y,
                    x - p.x.1,
                    x,
                    x + p.x.1,
                    c.stroke_width(1),
                    8,
                )))
                .map_err(|e| plot_err(title, e))?;
            chart
                .draw_series(std::iter::once(Circle::new((x, y), 5, c.filled())))
                .map_err(|e| plot_err(title, e))?;
            chart
                .draw_series(std::iter::once(Text::new(
                    p.label.clone(),
                    (x, y),
                    ("sans-serif", 12).into_font().color(&BLACK),
                )))
                .map_err(|e| plot_err(title, e))?;
        }
        root.present().map_err(|e| plot_err(title, e))?;
    }
    Ok(svg)
}
