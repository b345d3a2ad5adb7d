//! `ddr-fast data info --json` on synthetic sets, lone tensors and checkpoints: it reports what it
//! found with the numbers eval would use.

mod common;

use std::process::Command;

use common::shared;

/// lr is stored as f32: 0.0123 is off by up to half an ulp at 0.0123 (about 4.7e-10); 1e-7
/// also absorbs the JSON round trip.
const LR_F32_ATOL: f64 = 1e-7;

fn info(args: &[&str], path: &std::path::Path) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_ddr-fast"))
        .args(["data", "info", "--json"])
        .arg(path)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn synthetic_set_tensor_and_checkpoint() {
    let Some(dir) = shared("fixtures/pt") else {
        return;
    };
    let v = info(&[], &dir.join("expected.safetensors"));
    assert_eq!(v["kind"], "synthetic set");
    assert_eq!(
        (
            v["images"].as_u64(),
            v["ipc"].as_u64(),
            v["classes"].as_u64()
        ),
        (Some(20), Some(2), Some(10))
    );
    assert_eq!(v["labels"], "from file");
    assert_eq!(v["soft_labels"], serde_json::json!([20, 10]));
    assert!(
        (v["lr"].as_f64().unwrap() - 0.0123).abs() <= LR_F32_ATOL,
        "{}",
        v["lr"]
    ); // f32 of 0.0123

    let v = info(
        &["--dataset", "cifar10", "--ipc", "2"],
        &dir.join("images.pt"),
    );
    assert_eq!(
        (v["format"].as_str(), v["labels"].as_str()),
        (Some("pt"), Some("class-major (none in file)"))
    );

    let v = info(&[], &dir.join("labels.pt"));
    assert_eq!(
        (v["kind"].as_str(), v["dtype"].as_str()),
        (Some("tensor"), Some("int64"))
    );

    let v = info(&[], &dir.join("teacher_convnet3_w16.pth"));
    assert_eq!(v["kind"], "model weights");
    let want: u64 = ddr_fast::data::load_teacher(&dir.join("teacher_convnet3_w16.pth"))
        .unwrap()
        .numel() as u64;
    let from_shapes: u64 = v["shapes"]
        .as_object()
        .unwrap()
        .values()
        .map(|s| {
            s.as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_u64().unwrap())
                .product::<u64>()
        })
        .sum();
    assert_eq!(v["parameters"].as_u64(), Some(want));
    assert_eq!(from_shapes, want);
    assert_eq!(v["tensors"], 14);
}

/// A safetensors file that means to be a synthetic set (it has `labels`, `soft_labels` or `lr`)
/// but no `images` is refused with one clear error, not described as model weights.
#[test]
fn synthetic_safetensors_without_images_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("syn.safetensors");
    ddr_fast::data::safetensors_io::save_f32(
        &path,
        &[
            ("soft_labels".into(), vec![20, 10], vec![0.5; 200]),
            ("lr".into(), vec![1], vec![0.01]),
        ],
        None,
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ddr-fast"))
        .args(["data", "info"])
        .arg(&path)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "exit 0 on a set without images");
    assert!(
        err.contains("syn.safetensors") && err.contains("`images`"),
        "{err}"
    );
}
