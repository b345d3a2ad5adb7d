//! The HTML report as a person sees it, through the binary: a tiny real demo run writes
//! result.json and report.html; every number the page shows in a checked cell equals result.json's
//! (formatted here independently: percent with two decimals, learning rates as JSON has them), every
//! inline SVG parses as XML on its own, and `ddr-fast report A B` makes a leaderboard of both.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ddr-fast"))
}

/// The demo with a shrunken recipe (the full demo takes minutes; README "HTML report").
fn tiny_demo(out: &Path, cache: &Path, seed: &str) {
    let o = bin()
        .args([
            "eval",
            "--quiet",
            "--width",
            "4",
            "--epochs",
            "3",
            "--full-epochs",
            "2",
        ])
        .args([
            "--num-eval",
            "2",
            "--test-interval",
            "2",
            "--lr-grid",
            "0.01,0.05",
        ])
        .args(["--seed", seed])
        .arg("--out")
        .arg(out)
        .arg("--cache-dir")
        .arg(cache)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

fn report(args: &[&Path]) -> std::process::Output {
    let mut c = bin();
    c.arg("report");
    for a in args {
        c.arg(a);
    }
    c.output().unwrap()
}

fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The value at a dotted path (`summary.lrs.mean`, `runs.0.acc.syn_hard`).
fn at<'a>(v: &'a Value, path: &str) -> &'a Value {
    path.split('.').fold(v, |v, k| match k.parse::<usize>() {
        Ok(i) if v.is_array() => &v[i],
        _ => &v[k],
    })
}

/// What the page must show for the JSON number at `path`.
fn shown(path: &str, v: &Value) -> String {
    let x = v
        .as_f64()
        .unwrap_or_else(|| panic!("{path}: not a number in result.json: {v}"));
    if path.contains(".lr.") {
        format!("{x}")
    } else {
        format!("{:.2}", 100.0 * x)
    }
}

/// The page as XML; its `<!DOCTYPE html>` is a DTD, which roxmltree refuses unless told.
fn parse_page(page: &str) -> roxmltree::Document<'_> {
    let opt = roxmltree::ParsingOptions {
        allow_dtd: true,
        ..Default::default()
    };
    roxmltree::Document::parse_with_options(page, opt).expect("the page is well-formed XML")
}

/// Every checked cell (`data-k`) in document order: (key, text).
fn checked_cells(doc: &roxmltree::Document) -> Vec<(String, String)> {
    doc.descendants()
        .filter_map(|n| Some((n.attribute("data-k")?.to_string(), n.text()?.to_string())))
        .collect()
}

/// Parses every `<svg>…</svg>` of the page on its own; returns how many.
fn svgs_parse(page: &str) -> usize {
    let mut n = 0;
    let mut rest = page;
    while let Some(start) = rest.find("<svg") {
        let len = rest[start..].find("</svg>").expect("every <svg> is closed") + "</svg>".len();
        let svg = &rest[start..start + len];
        let doc = roxmltree::Document::parse(svg)
            .unwrap_or_else(|e| panic!("SVG {n} does not parse: {e}\n{svg}"));
        assert_eq!(doc.root_element().tag_name().name(), "svg");
        assert!(
            doc.descendants().any(|e| e.tag_name().name() == "polyline"
                || e.tag_name().name() == "circle"
                || e.tag_name().name() == "line"),
            "SVG {n} draws nothing:\n{svg}"
        );
        n += 1;
        rest = &rest[start + len..];
    }
    n
}

#[test]
fn report_numbers_equal_result_json_and_svgs_parse() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let a = tmp.path().join("a");
    tiny_demo(&a, &cache, "0");
    let rec = json(&a.join("result.json"));

    // Item 1: every training carries its curves into result.json.
    let trainings = rec["timings"]["trainings"].as_array().unwrap();
    assert_eq!(trainings.len(), 9, "2 runs × (2 syn + 2 random) + 1 full");
    for t in trainings {
        let c = &t["curve"];
        let epochs = c["epochs"].as_u64().unwrap() as usize;
        let best = c["tests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .fold(0.0, f64::max);
        assert_eq!(best, t["acc"].as_f64().unwrap(), "{t}");
        assert_eq!(c["train_loss"].as_array().unwrap().len(), epochs, "{t}");
        assert!(c["quantity"].as_str().is_some_and(|q| !q.is_empty()), "{t}");
    }

    // Item 2/3: eval wrote report.html; the numbers in it are result.json's.
    let page = std::fs::read_to_string(a.join("report.html")).unwrap();
    let doc = parse_page(&page);
    let cells = checked_cells(&doc);
    for (k, text) in &cells {
        assert_eq!(text, &shown(k, at(&rec, k)), "cell {k}");
    }
    let keys: Vec<&str> = cells.iter().map(|(k, _)| k.as_str()).collect();
    for name in rec["summary"].as_object().unwrap().keys() {
        for f in ["mean", "std"] {
            let k = format!("summary.{name}.{f}");
            assert!(keys.contains(&k.as_str()), "{k} not shown");
        }
    }
    for (i, r) in rec["runs"].as_array().unwrap().iter().enumerate() {
        for s in ["hlr", "ior", "lrs"] {
            assert!(
                keys.contains(&format!("runs.{i}.{s}").as_str()),
                "run {i} {s}: {r}"
            );
        }
        for q in r["acc"].as_object().unwrap().keys() {
            assert!(keys.contains(&format!("runs.{i}.acc.{q}").as_str()));
            assert!(keys.contains(&format!("runs.{i}.lr.{q}").as_str()));
        }
    }
    // Decomposition + (accuracy, loss) for full_hard, syn_hard, rdm_recipe + the lr grid.
    assert_eq!(svgs_parse(&page), 1 + 2 * 3 + 1);

    // Several results: the leaderboard shows each one's score in its row, then each section.
    let b = tmp.path().join("b");
    tiny_demo(&b, &cache, "1");
    let rec_b = json(&b.join("result.json"));
    let board = tmp.path().join("board.html");
    let o = bin()
        .arg("report")
        .arg(&a)
        .arg(&b)
        .arg("--out")
        .arg(&board)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let page = std::fs::read_to_string(&board).unwrap();
    let doc = parse_page(&page);
    let cells = checked_cells(&doc);
    let recs = [&rec, &rec_b];
    let mut lrs_cells = Vec::new();
    for (k, text) in &cells {
        if let Some(rest) = k.strip_prefix("board.") {
            let (i, col) = rest.split_once('.').unwrap();
            let r = recs[i.parse::<usize>().unwrap()];
            let name = match col.split('.').next().unwrap() {
                "score" => "lrs",
                "part0" => "hlr",
                "part1" => "ior",
                _ => "syn_hard",
            };
            let path = format!("summary.{name}.{}", col.rsplit('.').next().unwrap());
            assert_eq!(text, &shown(&path, at(r, &path)), "cell {k}");
        } else if k == "summary.lrs.mean" {
            lrs_cells.push(text.clone());
        }
    }
    assert_eq!(
        cells
            .iter()
            .filter(|(k, _)| k.starts_with("board."))
            .count(),
        2 * 8
    );
    assert_eq!(
        lrs_cells,
        [&rec, &rec_b].map(|r| shown("summary.lrs.mean", at(r, "summary.lrs.mean")))
    );
    // The LRS-vs-accuracy chart and both sections' charts.
    assert_eq!(svgs_parse(&page), 1 + 2 * 8);

    // A result.json from before curves existed still renders, saying it has none.
    let old = tmp.path().join("old");
    std::fs::create_dir_all(&old).unwrap();
    let mut stripped = rec.clone();
    for t in stripped["timings"]["trainings"].as_array_mut().unwrap() {
        t.as_object_mut().unwrap().remove("curve");
    }
    std::fs::write(old.join("result.json"), stripped.to_string()).unwrap();
    let o = report(&[&old]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let page = std::fs::read_to_string(old.join("report.html")).unwrap();
    assert!(page.contains("before ddr-fast kept curves"));
    parse_page(&page);
}

#[test]
fn report_of_a_missing_or_foreign_folder_is_one_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("nothing-here");
    let o = report(&[&missing]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("nothing-here") && !err.contains("panicked"),
        "{err}"
    );
    let foreign = tmp.path().join("foreign");
    std::fs::create_dir_all(&foreign).unwrap();
    std::fs::write(foreign.join("result.json"), "{\"hello\": 1}").unwrap();
    let o = report(&[&foreign]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("result.json") && err.contains("not a ddr-fast result.json"),
        "{err}"
    );
}
