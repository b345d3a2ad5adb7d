//! Synthetic sets: safetensors (f32/f16/bf16, normalised or pixel space), `.pt` files and image
//! folders load with the right labels, normalisation and IPC; the checks refuse what eval must not use.

mod common;

use ddr_fast::data::{load_synthetic, Norm, SynExpect};
use safetensors::Dtype;

use common::{assert_close, f32_bytes, i64_bytes, shared, write_png, write_st};

/// f32 normalisation arithmetic on values near 1: a few ulps.
const NORM_ATOL: f32 = 1e-6;
const NORM_RTOL: f32 = 1e-6;
/// f16 keeps 11 bits of mantissa: relative rounding error ≤ 2^-11.
const F16_RTOL: f32 = 1.0 / 2048.0;
/// bf16 keeps 8 bits of mantissa: relative error ≤ 2^-8.
const BF16_RTOL: f32 = 1.0 / 256.0;

fn cifar(ipc: Option<usize>) -> SynExpect {
    SynExpect::for_name("cifar10", ipc).unwrap()
}

fn ramp(n: usize) -> Vec<f32> {
    (0..n).map(|i| ((i % 97) as f32) / 97.0).collect()
}

#[test]
fn safetensors_normalised_defaults_to_class_major() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("s.safetensors");
    let x = ramp(20 * 3 * 32 * 32);
    write_st(
        &p,
        &[
            ("images", Dtype::F32, vec![20, 3, 32, 32], f32_bytes(&x)),
            ("lr", Dtype::F32, vec![], f32_bytes(&[0.01])),
        ],
        &[],
    );
    let s = load_synthetic(&p, &cifar(Some(2))).unwrap();
    assert_eq!(s.ipc, 2);
    assert_eq!(s.labels, (0..20).map(|i| i / 2).collect::<Vec<u32>>());
    assert!(!s.labels_given);
    assert_close("normalised images unchanged", &s.images, &x, 0.0, 0.0);
    assert_eq!(s.lr, Some(0.01));
}

#[test]
fn safetensors_pixel_space_is_normalised_on_load() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("s.safetensors");
    let x = ramp(10 * 3 * 32 * 32);
    let labels: Vec<i64> = (0..10).rev().collect();
    write_st(
        &p,
        &[
            ("images", Dtype::F32, vec![10, 3, 32, 32], f32_bytes(&x)),
            ("labels", Dtype::I64, vec![10], i64_bytes(&labels)),
        ],
        &[("pixel_space", "true")],
    );
    let s = load_synthetic(&p, &cifar(None)).unwrap();
    let n = Norm::cifar();
    let want: Vec<f32> = x
        .iter()
        .enumerate()
        .map(|(k, v)| (v - n.mean[(k / 1024) % 3]) / n.std[(k / 1024) % 3])
        .collect();
    assert_close("pixel → normalised", &s.images, &want, NORM_ATOL, NORM_RTOL);
    assert_eq!(s.labels, (0..10).rev().collect::<Vec<u32>>());
    assert!(s.was_pixel_space && s.labels_given);
}

#[test]
fn safetensors_half_types_widen() {
    let tmp = tempfile::tempdir().unwrap();
    let x = ramp(10 * 3 * 32 * 32);
    for (dt, bytes, rtol) in [
        (
            Dtype::F16,
            x.iter()
                .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
                .collect::<Vec<u8>>(),
            F16_RTOL,
        ),
        (
            Dtype::BF16,
            x.iter()
                .flat_map(|v| half::bf16::from_f32(*v).to_le_bytes())
                .collect(),
            BF16_RTOL,
        ),
    ] {
        let p = tmp.path().join("h.safetensors");
        write_st(&p, &[("images", dt, vec![10, 3, 32, 32], bytes)], &[]);
        let s = load_synthetic(&p, &cifar(Some(1))).unwrap();
        assert_close("half", &s.images, &x, 0.0, rtol);
    }
}

#[test]
fn pt_fixtures_as_synthetic_sets() {
    let Some(dir) = shared("fixtures/pt") else {
        return;
    };
    let s = load_synthetic(&dir.join("images.pt"), &cifar(Some(2))).unwrap();
    assert_eq!((s.len(), s.ipc, s.format.as_str()), (20, 2, "pt"));
    // bundle.pt: 4 images with labels 0,0,1,1 and lr 0.05 — a 2-class set of IPC 2
    let mut e = cifar(Some(2));
    e.classes = 2;
    let b = load_synthetic(&dir.join("bundle.pt"), &e).unwrap();
    assert_eq!(b.labels, vec![0, 0, 1, 1]);
    assert_eq!(b.lr, Some(0.05));
}

#[test]
fn image_folder_synthetic_set() {
    let tmp = tempfile::tempdir().unwrap();
    for (c, name) in ["a", "b"].iter().enumerate() {
        std::fs::create_dir(tmp.path().join(name)).unwrap();
        for i in 0..3 {
            write_png(
                &tmp.path().join(name).join(format!("{i}.png")),
                32,
                32,
                [255 * c as u8, 0, 51],
            );
        }
    }
    let mut e = cifar(Some(3));
    e.classes = 2;
    let s = load_synthetic(tmp.path(), &e).unwrap();
    assert_eq!(s.labels, vec![0, 0, 0, 1, 1, 1]);
    let n = Norm::cifar();
    // first image, channel 2 = 51/255 = 0.2, normalised
    assert_close(
        "folder pixel",
        &s.images[2048..2049],
        &[(0.2 - n.mean[2]) / n.std[2]],
        NORM_ATOL,
        NORM_RTOL,
    );
}

/// (name, dtype, shape, bytes) of one tensor to write.
type Named<'a> = (&'a str, Dtype, Vec<usize>, Vec<u8>);

#[test]
fn checks_refuse_bad_sets() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("bad.safetensors");
    let x = ramp(20 * 3 * 32 * 32);
    let cases: Vec<(Vec<Named>, SynExpect, &str)> = vec![
        (
            vec![("images", Dtype::F32, vec![20, 3, 32, 32], f32_bytes(&x))],
            cifar(Some(3)),
            "IPC 3",
        ),
        (
            vec![("images", Dtype::F32, vec![20, 1, 32, 96], f32_bytes(&x))],
            cifar(None),
            "1x32x96",
        ),
        (
            vec![("x", Dtype::F32, vec![20, 3, 32, 32], f32_bytes(&x))],
            cifar(None),
            "no `images`",
        ),
        (
            vec![
                ("images", Dtype::F32, vec![20, 3, 32, 32], f32_bytes(&x)),
                ("labels", Dtype::I64, vec![20], i64_bytes(&[10; 20])),
            ],
            cifar(None),
            "out of range",
        ),
        (
            vec![
                ("images", Dtype::F32, vec![20, 3, 32, 32], f32_bytes(&x)),
                ("labels", Dtype::I64, vec![20], i64_bytes(&[0; 20])),
            ],
            cifar(None),
            "class 0 has 20",
        ),
        (
            vec![
                ("images", Dtype::F32, vec![20, 3, 32, 32], f32_bytes(&x)),
                (
                    "soft_labels",
                    Dtype::F32,
                    vec![20, 9],
                    f32_bytes(&[0.0; 180]),
                ),
            ],
            cifar(None),
            "soft_labels",
        ),
        (
            vec![
                ("images", Dtype::F32, vec![20, 3, 32, 32], f32_bytes(&x)),
                ("lr", Dtype::F32, vec![], f32_bytes(&[-1.0])),
            ],
            cifar(None),
            "lr",
        ),
    ];
    for (tensors, e, want) in cases {
        write_st(&p, &tensors, &[]);
        let err = load_synthetic(&p, &e).expect_err(want).to_string();
        assert!(
            err.contains(want) && err.contains("bad.safetensors"),
            "wanted {want:?} in: {err}"
        );
    }
    let mut nan = x.clone();
    nan[777] = f32::NAN;
    write_st(
        &p,
        &[("images", Dtype::F32, vec![20, 3, 32, 32], f32_bytes(&nan))],
        &[],
    );
    let err = load_synthetic(&p, &cifar(None)).unwrap_err().to_string();
    assert!(err.contains("non-finite") && err.contains("777"), "{err}");
}

#[test]
fn separate_files_like_mtt() {
    let Some(dir) = shared("fixtures/pt") else {
        return;
    };
    let files = ddr_fast::data::SynFiles {
        images: dir.join("images.pt"),
        labels: Some(dir.join("labels.pt")),
        soft_labels: Some(dir.join("soft_labels.pt")),
        lr: Some(dir.join("lr.pt")),
    };
    let s = ddr_fast::data::load_synthetic_files(&files, &cifar(Some(2))).unwrap();
    assert!(s.labels_given);
    assert_eq!(s.labels, (0..20).map(|i| i / 2).collect::<Vec<u32>>()); // labels.pt is class-major
    assert_eq!(s.lr, Some(0.0123));
    assert_eq!(s.soft_labels.as_ref().map(|v| v.len()), Some(200));
}
