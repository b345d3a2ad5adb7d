//! Cross-architecture evaluation (`eval --model A,B,…`, YAML `model_name: [A, B]`) through the
//! binary, on the embedded Fashion-MNIST demo data with ConvNet variants and a shrunken recipe:
//! each model's numbers are those of a separate single-model evaluation, bit for bit; the table
//! has one row per model; a rerun that adds a model trains only that model; an interrupted list
//! resumes per model; a bad name fails before anything trains.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Output};

use ddr_fast::data::safetensors_io::save_f32;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ddr-fast"))
}

/// The demo (herding coreset of the embedded set) with a recipe small enough for CI.
fn demo(out: &Path, cache: &Path, models: &str, extra: &[&str]) -> Output {
    bin()
        .args(["eval", "--quiet", "--width", "4", "--epochs", "2"])
        .args([
            "--full-epochs",
            "1",
            "--num-eval",
            "2",
            "--test-interval",
            "1",
        ])
        .args(["--lr-grid", "0.01,0.05", "--model", models])
        .args(extra)
        .arg("--out")
        .arg(out)
        .arg("--cache-dir")
        .arg(cache)
        .output()
        .unwrap()
}

fn ok(o: &Output) -> String {
    let (so, se) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert!(o.status.success(), "exit {:?}\n{so}\n{se}", o.status.code());
    so.into_owned()
}

fn json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// (ran, cached, resumed) of a result.json.
fn counts(r: &serde_json::Value) -> (u64, u64, u64) {
    let t = &r["timings"];
    let n = |k: &str| t[k].as_u64().unwrap();
    (n("ran"), n("cached"), n("resumed"))
}

/// 2 runs × (2 syn + 2 random) + 1 full data.
const TRAININGS: u64 = 9;

#[test]
fn each_model_matches_its_own_eval_and_the_cache_serves_a_rerun() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let multi = tmp.path().join("multi");
    let stdout = ok(&demo(&multi, &cache, "ConvNet-2,ConvNet-3", &[]));

    // Separate single-model evaluations with their own empty cache: trained, not looked up.
    let alone_cache = tmp.path().join("alone-cache");
    for m in ["ConvNet-2", "ConvNet-3"] {
        let alone = tmp.path().join(format!("alone-{m}"));
        ok(&demo(&alone, &alone_cache, m, &[]));
        let (a, b) = (
            json(&alone.join("result.json")),
            json(&multi.join(m).join("result.json")),
        );
        assert_eq!(counts(&a), (TRAININGS, 0, 0), "{m} alone");
        assert_eq!(counts(&b), (TRAININGS, 0, 0), "{m} in the list");
        assert_eq!(b["config"]["model"], m);
        // Same seeds, same plan: every accuracy, chosen lr and score equal bit for bit (JSON
        // prints f64 in shortest round-trip form, so equal text is equal bits).
        assert_eq!(a["runs"], b["runs"], "{m}: runs differ");
        assert_eq!(a["summary"], b["summary"], "{m}: summary differs");
        // A single-model folder keeps today's layout: no index.
        assert!(!alone.join("models.json").exists());
    }
    assert_ne!(
        json(&multi.join("ConvNet-2/result.json"))["summary"],
        json(&multi.join("ConvNet-3/result.json"))["summary"],
        "two different models gave identical summaries"
    );

    // One table row per model, on stdout and in models.csv / models.json.
    let rows = |text: &str, m: &str| {
        text.lines()
            .filter(|l| l.trim_start().starts_with(m))
            .count()
    };
    assert_eq!(rows(&stdout, "ConvNet-2 "), 1, "{stdout}");
    assert_eq!(rows(&stdout, "ConvNet-3 "), 1, "{stdout}");
    let csv = std::fs::read_to_string(multi.join("models.csv")).unwrap();
    assert_eq!(csv.lines().count(), 3, "{csv}");
    assert!(csv.lines().next().unwrap().contains("lrs_mean"), "{csv}");
    let index = json(&multi.join("models.json"));
    let models: Vec<&str> = index["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["model"].as_str().unwrap())
        .collect();
    assert_eq!(models, ["ConvNet-2", "ConvNet-3"]);
    assert_eq!(
        index["rows"][1]["summary"],
        json(&multi.join("ConvNet-3/result.json"))["summary"]
    );

    // The folder's HTML report: every model's section after their table.
    let page = std::fs::read_to_string(multi.join("report.html")).unwrap();
    assert!(page.contains("Leaderboard"), "no table in the report");
    for m in ["on ConvNet-2", "on ConvNet-3"] {
        assert!(page.contains(m), "{m} missing from the report");
    }

    // One more model: only its trainings run, the others come from the shared cache.
    let more = tmp.path().join("more");
    ok(&demo(
        &more,
        &cache,
        "ConvNet-2,ConvNet-3,ConvNet-3-BN",
        &[],
    ));
    for m in ["ConvNet-2", "ConvNet-3"] {
        let r = json(&more.join(m).join("result.json"));
        assert_eq!(counts(&r), (0, TRAININGS, 0), "{m} on the rerun");
        assert_eq!(
            r["summary"],
            json(&multi.join(m).join("result.json"))["summary"]
        );
    }
    assert_eq!(
        counts(&json(&more.join("ConvNet-3-BN/result.json"))),
        (TRAININGS, 0, 0)
    );
}

#[test]
fn an_interrupted_list_resumes_per_model() {
    let tmp = tempfile::tempdir().unwrap();
    let (out, cache) = (tmp.path().join("out"), tmp.path().join("cache"));
    let flags = ["--no-cache", "--stop-after-cohorts", "1"];
    let stopped = demo(&out, &cache, "ConvNet-2,ConvNet-3", &flags);
    assert!(!stopped.status.success());
    assert!(String::from_utf8_lossy(&stopped.stderr).contains("interrupted"));
    assert!(out.join("ConvNet-2/journal.jsonl.d").exists());
    assert!(!out.join("ConvNet-3").exists(), "the second model started");
    ok(&demo(&out, &cache, "ConvNet-2,ConvNet-3", &["--no-cache"]));
    let (ran, cached, resumed) = counts(&json(&out.join("ConvNet-2/result.json")));
    assert!(resumed >= 1 && cached == 0 && ran + resumed == TRAININGS);
    assert_eq!(
        counts(&json(&out.join("ConvNet-3/result.json"))),
        (TRAININGS, 0, 0)
    );
}

#[test]
fn a_bad_or_repeated_name_fails_before_any_training() {
    let tmp = tempfile::tempdir().unwrap();
    let (out, cache) = (tmp.path().join("out"), tmp.path().join("cache"));
    for (models, want) in [
        ("ConvNet-3,ConvNet-99", "ConvNet-99"),
        ("ConvNet-3,Nope", "Nope"),
        ("ConvNet-2,ConvNet-2", "listed twice"),
    ] {
        let o = demo(&out, &cache, models, &[]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "an error, not a panic: {err}");
        assert!(err.contains("--model") && err.contains(want), "{err}");
        assert!(!out.exists() && !cache.exists(), "{models}: something ran");
    }
    let cfg = tmp.path().join("bad.yaml");
    std::fs::write(&cfg, "model_name: [ConvNet-3, Bogus-1]\n").unwrap();
    let o = bin()
        .args(["eval", "--dry-run", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("bad.yaml") && err.contains("model_name") && err.contains("Bogus-1"),
        "{err}"
    );
}

/// A YAML list plans every model under --dry-run and sums them; the string form still works.
#[test]
fn yaml_list_dry_run_shows_each_plan_and_the_total() {
    let tmp = tempfile::tempdir().unwrap();
    // A distilled set of the embedded data's shape: 10 classes × 10 images, 1×28×28, class-major
    // (no labels tensor).
    let n = 100;
    let images: Vec<f32> = (0..n * 28 * 28)
        .map(|i| ((i * 7919) % 1000) as f32 / 1000.0)
        .collect();
    let syn = tmp.path().join("syn.safetensors");
    let meta = HashMap::from([("pixel_space".to_string(), "true".to_string())]);
    save_f32(
        &syn,
        &[("images".into(), vec![n, 1, 28, 28], images)],
        Some(meta),
    )
    .unwrap();
    let plan = |model_line: &str| {
        let cfg = tmp.path().join("c.yaml");
        std::fs::write(
            &cfg,
            format!(
                "metric: lrs-hard\ndataset: embedded\nsyn_path: {}\n{model_line}\nnum_eval: 2\n\
                 num_epochs: 2\nlr_grid: [0.01, 0.05]\neval_full_data: true\nwidth: 4\n",
                syn.display()
            ),
        )
        .unwrap();
        let o = bin()
            .args([
                "eval",
                "--dry-run",
                "--device",
                "cpu",
                "--no-cache",
                "--config",
            ])
            .arg(&cfg)
            .output()
            .unwrap();
        ok(&o)
    };
    let list = plan("model_name: [ConvNet-2, ConvNet-3-BN]");
    assert!(list.contains("model 1/2: ConvNet-2") && list.contains("model 2/2: ConvNet-3-BN"));
    assert_eq!(list.matches("9 trainings: 9 to train").count(), 2, "{list}");
    assert!(
        list.contains("total over 2 models: 18 trainings, 18 to train"),
        "{list}"
    );
    let one = plan("model_name: ConvNet-3-BN");
    assert!(
        !one.contains("total over") && !one.contains("model 1/"),
        "{one}"
    );
    assert!(one.contains("9 trainings: 9 to train"), "{one}");
}
