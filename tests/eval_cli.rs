//! `ddr-fast eval` end to end through the binary: the three DD-Ranking configs of ../shared/configs
//! load and print a plan under --dry-run (paths overridden to the real CIFAR-10), and the demo
//! writes its JSON, reuses its cache on a second run and resumes after an interruption.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use ddr_fast::data::safetensors_io::save_f32;
use ddr_fast::data::save_teacher;
use ddr_fast::metrics::inputs::weights_of;
use ddr_fast::metrics::scores::lrs_from_parts;
use ddr_fast::model::{init_buffers, init_params, ConvNet, ConvNetSpec};

/// LRS in the JSON vs the formula applied to the JSON's hlr / ior: the same f64 formula on both
/// sides, so only JSON's shortest round-trip printing (exact for f64) could separate them.
const LRS_JSON_ATOL: f64 = 1e-12;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ddr-fast"))
}

fn manifest() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// ../shared from the main checkout or from a worktree (/work/wt/<name> → /work/shared).
fn shared(rel: &str) -> Option<PathBuf> {
    [
        manifest().join("../shared").join(rel),
        manifest().join("../../shared").join(rel),
    ]
    .into_iter()
    .find(|p| p.exists())
}

fn cifar10() -> Option<PathBuf> {
    std::env::var_os("DDR_DATA_DIR")
        .map(PathBuf::from)
        .filter(|p| p.exists())
        .or_else(|| shared("data/cifar10"))
}

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().expect("binary runs");
    let (so, se) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        out.status.success(),
        "exit {:?}\nstdout:\n{so}\nstderr:\n{se}",
        out.status.code()
    );
    format!("{so}{se}")
}

/// A CIFAR-shaped synthetic set: 100 images in [0,1] pixel space, class-major, with soft labels.
fn write_syn(path: &Path) {
    let n = 100;
    let images: Vec<f32> = (0..n * 3 * 32 * 32)
        .map(|i| ((i * 7919) % 1000) as f32 / 1000.0)
        .collect();
    let soft: Vec<f32> = (0..n * 10)
        .map(|i| if i % 10 == (i / 10) / 10 { 3.0 } else { 0.0 })
        .collect();
    let meta = HashMap::from([("pixel_space".to_string(), "true".to_string())]);
    save_f32(
        path,
        &[
            ("images".into(), vec![n, 3, 32, 32], images),
            ("soft_labels".into(), vec![n, 10], soft),
        ],
        Some(meta),
    )
    .unwrap();
}

/// A random-init ConvNet-3 teacher saved under PyTorch names, where eval looks for it.
fn write_teacher(dir: &Path) {
    let net = ConvNet::new(ConvNetSpec::from_name("ConvNet-3", 3, 32, 10).unwrap());
    let mut p = vec![0f32; net.param_len()];
    init_params(&net.layout, 42, &mut p);
    let mut r = vec![0f32; net.buffer_len()];
    init_buffers(&net.layout, &mut r);
    std::fs::create_dir_all(dir).unwrap();
    save_teacher(
        &dir.join("ConvNet-3.safetensors"),
        &weights_of(&net, &p, &r),
    )
    .unwrap();
}

#[test]
fn shared_configs_dry_run_on_real_cifar10() {
    let (Some(configs), Some(data)) = (shared("configs"), cifar10()) else {
        eprintln!("SKIPPED: ../shared/configs or CIFAR-10 (../shared/data/cifar10 or $DDR_DATA_DIR) not found");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let syn = tmp.path().join("syn.safetensors");
    write_syn(&syn);
    write_teacher(&tmp.path().join("teachers"));
    for (file, metric, trainings) in [
        // 5 runs × (5 syn + 5 random) + 1 full data.
        ("lrs_hard_cifar10_ipc10.yaml", "lrs-hard", 51),
        // 5 runs × (5 syn hard + 5 syn soft + 5 random soft) + 1 full data.
        ("lrs_soft_cifar10_ipc10.yaml", "lrs-soft", 76),
        // 5 runs × 4 tuned quantities × 5 learning rates.
        ("ars_cifar10_ipc10.yaml", "ars", 100),
    ] {
        let out = run_ok(
            bin()
                .args([
                    "eval",
                    "--dry-run",
                    "--quiet",
                    "--device",
                    "cpu",
                    "--config",
                ])
                .arg(configs.join(file))
                .arg("--data-dir")
                .arg(&data)
                .arg("--syn")
                .arg(&syn)
                .arg("--teacher-dir")
                .arg(tmp.path().join("teachers"))
                .arg("--cache-dir")
                .arg(tmp.path().join("cache")),
        );
        assert!(
            out.contains(&format!("plan: {metric} on cifar10 IPC 10")),
            "{file}:\n{out}"
        );
        assert!(
            out.contains(&format!("{trainings} trainings: {trainings} to train")),
            "{file}:\n{out}"
        );
        assert!(
            out.contains("cohort  1:") && out.contains("estimated:") && out.contains("assumed"),
            "{file}:\n{out}"
        );
        assert!(out.contains("50000 train / 10000 test"), "{file}:\n{out}");
        // Every key DD-Ranking reads is known (none is warned about as unknown).
        assert!(!out.contains("unknown key"), "{file}:\n{out}");
        // The resolved settings are printed with their source.
        assert!(
            out.contains("settings (value, source):") && out.contains("(yaml "),
            "{file}:\n{out}"
        );
    }
}

/// `eval --help` names every default, and they are DD-Ranking's (ddranking 0.2.0 constructors).
#[test]
fn eval_help_shows_the_reference_defaults() {
    let out = run_ok(bin().args(["eval", "--help"]));
    let flat = out.split_whitespace().collect::<Vec<_>>().join(" ");
    for want in [
        "data_aug_func; default cutmix",
        "use_aug_for_hard; default false",
        "label_type; default soft",
        "soft_label_criterion; default kl",
        "temperature; default 1.2",
        "ce_weight (default 0.0)",
        "eval_full_data; default false",
        "num_epochs (default 300)",
        "num_eval; default 5",
        "random_data_format; default tensor",
    ] {
        assert!(flat.contains(want), "missing {want:?} in:\n{out}");
    }
}

#[test]
fn config_errors_name_file_and_key() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("bad.yaml");
    std::fs::write(&cfg, "dataset: CIFAR10\noptimizer: rmsprop\n").unwrap();
    let out = bin()
        .args(["eval", "--dry-run", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert_eq!(out.status.code(), Some(1), "an error, not a panic: {err}");
    assert!(
        err.contains("bad.yaml") && err.contains("'optimizer'") && err.contains("rmsprop"),
        "{err}"
    );
}

/// The demo with a shrunken recipe (the real demo's timing is checked by hand, see README).
fn demo(out: &Path, cache: &Path, extra: &[&str]) -> std::process::Output {
    bin()
        .args([
            "eval",
            "--quiet",
            "--width",
            "4",
            "--epochs",
            "2",
            "--full-epochs",
            "1",
            "--num-eval",
            "2",
        ])
        .args(["--test-interval", "1", "--lr-grid", "0.01,0.05"])
        .args(extra)
        .arg("--out")
        .arg(out)
        .arg("--cache-dir")
        .arg(cache)
        .output()
        .unwrap()
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn demo_writes_json_reuses_cache_and_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let first = demo(&tmp.path().join("a"), &cache, &[]);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let stdout = String::from_utf8_lossy(&first.stdout);
    assert!(
        stdout.contains("LRS") && stdout.contains("demo"),
        "{stdout}"
    );
    let a = json(&tmp.path().join("a/result.json"));
    let runs = a["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2);
    for r in runs {
        let (hlr, ior, lrs) = (
            r["hlr"].as_f64().unwrap(),
            r["ior"].as_f64().unwrap(),
            r["lrs"].as_f64().unwrap(),
        );
        assert!(
            (lrs - lrs_from_parts(hlr, ior, 0.5).lrs).abs() <= LRS_JSON_ATOL,
            "{r}"
        );
        assert!(
            r["acc"]["full_hard"].as_f64().is_some() && r["lr"]["syn_hard"].as_f64().is_some(),
            "{r}"
        );
    }
    assert!(
        a["summary"]["lrs"]["mean"].as_f64().is_some()
            && a["summary"]["lrs"]["std"].as_f64().is_some()
    );
    // 2 runs × (2 syn + 2 random) + 1 full data.
    assert_eq!(a["timings"]["ran"], 9);
    assert!(tmp.path().join("a/result.csv").exists());

    // Same config again, another output folder: everything comes from the shared cache.
    let second = demo(&tmp.path().join("b"), &cache, &[]);
    assert!(second.status.success());
    let b = json(&tmp.path().join("b/result.json"));
    assert_eq!(
        (
            b["timings"]["ran"].as_u64(),
            b["timings"]["cached"].as_u64()
        ),
        (Some(0), Some(9))
    );
    assert_eq!(a["summary"], b["summary"]);

    // Interrupted after one cohort, then resumed from the journal of its output folder.
    let c_out = tmp.path().join("c");
    let stopped = demo(&c_out, &cache, &["--no-cache", "--stop-after-cohorts", "1"]);
    assert!(!stopped.status.success());
    assert!(String::from_utf8_lossy(&stopped.stderr).contains("interrupted"));
    let resumed = demo(&c_out, &cache, &["--no-cache"]);
    assert!(
        resumed.status.success(),
        "{}",
        String::from_utf8_lossy(&resumed.stderr)
    );
    let c = json(&c_out.join("result.json"));
    assert!(
        c["timings"]["resumed"].as_u64().unwrap() >= 1,
        "{}",
        c["timings"]
    );
    assert_eq!(c["timings"]["cached"], 0);
    assert_eq!(
        a["summary"], c["summary"],
        "resuming must not change the numbers"
    );
}
