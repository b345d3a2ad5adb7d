//! ZCA as DD-Ranking applies it: kornia's `ZCAWhitening(eps=0.1)` fitted on the training split in
//! raw [0, 1] pixels (no mean/std normalisation when `use_zca` is set) and applied to raw test
//! pixels. Golden file: tests/fixtures/zca_kornia_raw.safetensors, from tools/make_zca_golden.py.

use std::path::Path;

use ddr_fast::data::{Dataset, Norm, RealData};
use ddr_fast::metrics::config::EvalConfig;
use ddr_fast::metrics::inputs::{fit_zca, to_image_set};

use ddr_fast::data::safetensors_io::load_safetensors;
use ddr_fast::data::torch::TensorData;

/// Relative to the largest output: kornia's float32 covariance + eigensolver against ddr-fast's
/// float64 fit, then a 108-long float32 product (the aug golden measures ≤ 2e-5 at D = 192).
const ZCA_OUTPUT_REL_MAX: f64 = 1e-4;

fn split(t: &ddr_fast::data::torch::Tensor) -> Dataset {
    let TensorData::I64(bytes) = &t.data else {
        panic!("expected a uint8 tensor");
    };
    let shape = &t.shape;
    Dataset {
        images: bytes.iter().map(|&b| b as f32 / 255.0).collect(),
        labels: vec![0; shape[0]],
        classes: 10,
        channels: shape[1],
        height: shape[2],
        width: shape[3],
        class_names: (0..10).map(|i| i.to_string()).collect(),
    }
}

#[test]
fn zca_is_fitted_and_applied_on_raw_pixels_like_kornia() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/zca_kornia_raw.safetensors");
    let g = load_safetensors(&path).unwrap();
    let TensorData::F32(want) = &g.get("test_out").unwrap().data else {
        panic!("test_out: expected float32");
    };
    assert_eq!(g.metadata["eps"], "0.1");
    let real = RealData {
        train: split(g.get("train_u8").unwrap()),
        test: split(g.get("test_u8").unwrap()),
        name: "cifar10".into(),
        format: "test".into(),
        // CIFAR constants: a fit on normalised pixels would give another transform.
        norm: Norm::cifar(),
    };
    let cfg = EvalConfig {
        use_zca: true,
        ..EvalConfig::default()
    };
    let zca = fit_zca(&cfg, &real)
        .unwrap()
        .expect("use_zca fits a whitening");
    let got = to_image_set(&real.test, &real, Some(&zca)).unwrap().images;
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs())) as f64;
    let (worst, err) = got
        .iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs() as f64)
        .enumerate()
        .fold((0, 0.0), |acc, (i, e)| if e > acc.1 { (i, e) } else { acc });
    assert!(
        err <= ZCA_OUTPUT_REL_MAX * scale,
        "worst index {worst}: got {} want {} (|err| {err:.3e} > {:.3e})",
        got[worst],
        want[worst],
        ZCA_OUTPUT_REL_MAX * scale
    );
}
