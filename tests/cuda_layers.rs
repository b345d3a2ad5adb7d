//! The layer-list ops of the non-ConvNet students (cuda/layers.cu) against their CPU references
//! (src/ops/{norm, relu, pool}/cpu.rs), called through `Backend` on both: group norm (instance
//! norm, 4 and 2 groups), batch norm in train mode (batch statistics, running statistics) and eval
//! mode, ReLU, max and average pooling with every window shape the students use. Runs on the GPU
//! when one opens, else emulated (it says which). S = 2 everywhere, odd map sizes.
//!
//! `cargo test --release --test cuda_layers`

mod common;

use common::{check_close, Tol};
use ddr_fast::backend::cpu::CpuBackend;
use ddr_fast::backend::cuda::CudaBackend;
use ddr_fast::backend::{Backend, Mode, NormLayerGeom, NormLayerKind, ParamAt, PoolGeom, PoolKind};

/// Norm forward (y, saved mean and 1/std, running statistics), relative to the largest |want|:
/// the kernel sums in f32 (per-thread shifted sums merged by Chan's formula) where the reference
/// sums in f64, so the statistics differ by a few f32 roundings over groups of ≤ 240 elements
/// (≈ √n·2⁻²⁴ ≈ 1e-6); 1e-5 leaves headroom while a wrong group, channel or γ moves values by
/// their whole size.
const NORM_FWD_TOL: f64 = 1e-5;
/// Norm backward (dx, dγ, dβ): dx = rstd·(dy·γ − mean − x̂·mean) cancels to about a tenth of its
/// terms, and dγ sums B·h·w products in f32 against the reference's f64: 1e-4 of the largest.
const NORM_BWD_TOL: f64 = 1e-4;
/// Inputs around 1000 (std ≈ 0.58): f32 spacing there is 6e-5, so the saved mean (rounded to f32
/// on both sides) may differ by that, i.e. 1e-4 of a standard deviation in x̂. A one-pass
/// E[x²] − E[x]² in f32 would be off by ~1e6·2⁻²⁴ ≈ 0.06 in the variance (20 %): 1e-3 of the
/// largest value separates the two cleanly.
const LARGE_MEAN_TOL: f64 = 1e-3;
/// ReLU and pooling: the kernels compute each element with the reference's operations in the
/// reference's order (pool sums row-major, backward gathers windows in row-major order, max-pool
/// ties go to the first maximum), so results are bit-identical.
const EXACT: f64 = 0.0;

fn wave(n: usize, seed: usize) -> Vec<f32> {
    (0..n)
        .map(|i| (((i * 7919 + seed * 104_729) % 2003) as f32 / 1001.5) - 1.0)
        .collect()
}

fn cuda() -> CudaBackend {
    common::cuda_under_test("cuda_layers")
}

fn up<B: Backend>(be: &B, v: &[f32]) -> B::Buf<f32> {
    be.upload(v).expect("upload")
}

fn down<B: Backend>(be: &B, b: &B::Buf<f32>) -> Vec<f32> {
    be.download(b).expect("download")
}

/// Everything a norm forward + backward produces on one backend.
struct NormOut {
    y: Vec<f32>,
    stats: Vec<f32>,
    running: Vec<f32>,
    dx: Vec<f32>,
    grads: Vec<f32>,
}

/// Forward in `mode` then (train-mode semantics) backward, on `be`. Parameter row: [pad, γ (c),
/// β (c)]; running row: [mean (c), var (c), pad] so no span starts at 0.
fn norm_run<B: Backend>(be: &B, g: &NormLayerGeom, mode: Mode, x: &[f32]) -> NormOut {
    let row = 2 * g.c + 1;
    let at = ParamAt {
        weight: 1,
        bias: 1 + g.c,
        row,
    };
    let run_at = ParamAt {
        weight: 0,
        bias: g.c,
        row: 2 * g.c + 1,
    };
    let params: Vec<f32> = wave(g.students * row, 2)
        .iter()
        .map(|v| 1.0 + 0.5 * v)
        .collect();
    let running0: Vec<f32> = wave(g.students * run_at.row, 5)
        .iter()
        .map(|v| 0.6 + 0.5 * v) // variances stay positive
        .collect();
    let dy = wave(g.len(), 3);
    let (xb, pb, dyb) = (up(be, x), up(be, &params), up(be, &dy));
    let mut running = up(be, &running0);
    let mut stats = up(be, &vec![0.0; g.stats_len()]);
    let mut y = up(be, &vec![0.0; g.len()]);
    be.norm_forward(
        g,
        mode,
        &xb,
        &pb,
        at,
        &mut running,
        run_at,
        &mut stats,
        &mut y,
    )
    .expect("norm forward");
    let mut dx = up(be, &vec![9.0; g.len()]);
    // Entries outside γ and β must be left alone: 7 everywhere to see it.
    let mut grads = up(be, &vec![7.0; g.students * row]);
    be.norm_backward(g, &xb, &pb, at, &stats, &dyb, &mut dx, &mut grads)
        .expect("norm backward");
    NormOut {
        y: down(be, &y),
        stats: down(be, &stats),
        running: down(be, &running),
        dx: down(be, &dx),
        grads: down(be, &grads),
    }
}

fn rel(tol: f64, want: &[f32]) -> Tol {
    Tol::new(tol, 0.0).rel_to_max(tol, want)
}

fn norm_case(g: &NormLayerGeom, mode: Mode, x: &[f32], fwd: f64, bwd: f64) -> Result<(), String> {
    let want = norm_run(&CpuBackend::new(), g, mode, x);
    let got = norm_run(&cuda(), g, mode, x);
    let what = |k: &str| format!("{:?} {mode:?} {k}", g.kind);
    check_close(&what("y"), &got.y, &want.y, rel(fwd, &want.y))?;
    check_close(
        &what("stats"),
        &got.stats,
        &want.stats,
        rel(fwd, &want.stats),
    )?;
    check_close(
        &what("running"),
        &got.running,
        &want.running,
        rel(fwd, &want.running),
    )?;
    check_close(&what("dx"), &got.dx, &want.dx, rel(bwd, &want.dx))?;
    check_close(
        &what("grads"),
        &got.grads,
        &want.grads,
        rel(bwd, &want.grads),
    )
}

fn norm_geom(kind: NormLayerKind) -> NormLayerGeom {
    NormLayerGeom {
        students: 2,
        batch: 3,
        c: 8,
        h: 5,
        w: 7,
        kind,
        eps: 1e-5,
        momentum: 0.1,
    }
}

const NORM_KINDS: [NormLayerKind; 4] = [
    NormLayerKind::Group { groups: 8 }, // instance norm
    NormLayerKind::Group { groups: 4 },
    NormLayerKind::Group { groups: 2 },
    NormLayerKind::Batch,
];

#[test]
fn norm_matches_the_cpu_reference() {
    let mut failures = Vec::new();
    for kind in NORM_KINDS {
        for mode in [Mode::Train, Mode::Eval] {
            let g = norm_geom(kind);
            let x = wave(g.len(), 1);
            if let Err(e) = norm_case(&g, mode, &x, NORM_FWD_TOL, NORM_BWD_TOL) {
                failures.push(e);
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Groups of 1000 + small values: the statistics must not cancel (shifted sums, Chan's merge).
#[test]
fn norm_statistics_survive_a_large_mean() {
    let mut failures = Vec::new();
    for kind in NORM_KINDS {
        let g = norm_geom(kind);
        let x: Vec<f32> = wave(g.len(), 1).iter().map(|v| 1000.0 + v).collect();
        if let Err(e) = norm_case(&g, Mode::Train, &x, LARGE_MEAN_TOL, LARGE_MEAN_TOL) {
            failures.push(e);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A group larger than a block (2 × 16 × 16 = 512 elements > 128 threads) and batch norm over
/// B = 5 images: every thread loops, and the block reduction merges uneven per-thread counts.
#[test]
fn norm_over_groups_larger_than_a_block() {
    let mut failures = Vec::new();
    for kind in [NormLayerKind::Group { groups: 2 }, NormLayerKind::Batch] {
        let g = NormLayerGeom {
            students: 2,
            batch: 5,
            c: 4,
            h: 16,
            w: 16,
            kind,
            eps: 1e-5,
            momentum: 0.1,
        };
        let x = wave(g.len(), 4);
        if let Err(e) = norm_case(&g, Mode::Train, &x, NORM_FWD_TOL, NORM_BWD_TOL) {
            failures.push(e);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn relu_matches_the_cpu_reference() {
    // Exact zeros included: both sides give dx = 0 there.
    let x: Vec<f32> = wave(2 * 3 * 4 * 5 * 5, 1)
        .iter()
        .enumerate()
        .map(|(i, &v)| if i % 7 == 0 { 0.0 } else { v })
        .collect();
    let dy = wave(x.len(), 2);
    let gpu = cuda();
    fn both<B: Backend>(be: &B, x: &[f32], dy: &[f32]) -> (Vec<f32>, Vec<f32>) {
        let xb = up(be, x);
        let mut y = up(be, &vec![9.0; x.len()]);
        be.relu_forward(&xb, &mut y).expect("relu forward");
        let mut dx = up(be, &vec![9.0; x.len()]);
        be.relu_backward(&y, &up(be, dy), &mut dx)
            .expect("relu backward");
        (down(be, &y), down(be, &dx))
    }
    let (want_y, want_dx) = both(&CpuBackend::new(), &x, &dy);
    let (got_y, got_dx) = both(&gpu, &x, &dy);
    check_close("relu y", &got_y, &want_y, Tol::new(0.0, EXACT)).unwrap();
    check_close("relu dx", &got_dx, &want_dx, Tol::new(0.0, EXACT)).unwrap();
    let mut short = up(&gpu, &[0.0; 3]);
    assert!(gpu.relu_forward(&up(&gpu, &x), &mut short).is_err());
}

fn pool_run<B: Backend>(be: &B, g: &PoolGeom, x: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let xb = up(be, x);
    let mut y = up(be, &vec![9.0; g.out_len()]);
    be.pool_forward(g, &xb, &mut y).expect("pool forward");
    let dy = wave(g.out_len(), 2);
    let mut dx = up(be, &vec![9.0; g.in_len()]);
    be.pool_backward(g, &xb, &up(be, &dy), &mut dx)
        .expect("pool backward");
    (down(be, &y), down(be, &dx))
}

/// Every window the students use (2×2/2, AlexNet's and ResNet-64's 3×3/2 pad 1, LeNet's 2×2/2,
/// a global average over the map) plus overlapping and non-dividing ones, on inputs with many
/// ties (values from a set of 5), so max-pool backward must break ties as the reference does.
#[test]
fn pool_matches_the_cpu_reference() {
    let mut failures = Vec::new();
    for (kind, k, stride, pad, h, w) in [
        (PoolKind::Max, 2, 2, 0, 6, 7),
        (PoolKind::Max, 3, 2, 1, 7, 8),
        (PoolKind::Max, 3, 1, 1, 5, 5),
        (PoolKind::Max, 2, 1, 0, 4, 5),
        (PoolKind::Avg, 2, 2, 0, 6, 7),
        (PoolKind::Avg, 3, 2, 1, 7, 8),
        (PoolKind::Avg, 4, 4, 0, 4, 4), // global: ResNet's avg_pool2d(out, 4)
        (PoolKind::Avg, 5, 5, 0, 5, 5), // global: AdaptiveAvgPool2d(1) on a 5×5 map
        (PoolKind::Avg, 1, 2, 0, 5, 6),
    ] {
        let g = PoolGeom {
            students: 2,
            batch: 3,
            c: 2,
            h,
            w,
            k,
            stride,
            pad,
            kind,
        };
        for (name, x) in [
            ("distinct", wave(g.in_len(), 1)),
            (
                "ties",
                (0..g.in_len())
                    .map(|i| ((i * 7) % 5) as f32 - 2.0)
                    .collect(),
            ),
        ] {
            let (want_y, want_dx) = pool_run(&CpuBackend::new(), &g, &x);
            let (got_y, got_dx) = pool_run(&cuda(), &g, &x);
            let tag = format!("{kind:?} k{k} s{stride} p{pad} {h}×{w} {name}");
            for (what, got, want) in [("y", &got_y, &want_y), ("dx", &got_dx, &want_dx)] {
                if let Err(e) =
                    check_close(&format!("{tag} {what}"), got, want, Tol::new(0.0, EXACT))
                {
                    failures.push(e);
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Bad shapes are the reference's errors, not launches.
#[test]
fn bad_shapes_are_errors() {
    let be = cuda();
    let g = PoolGeom {
        students: 2,
        batch: 1,
        c: 1,
        h: 2,
        w: 2,
        k: 3,
        stride: 1,
        pad: 0,
        kind: PoolKind::Max,
    };
    let e = be
        .pool_forward(&g, &up(&be, &[0.0; 8]), &mut up(&be, &[0.0; 2]))
        .unwrap_err();
    assert!(e.to_string().contains("does not fit"), "{e}");
    let g = NormLayerGeom {
        c: 3,
        kind: NormLayerKind::Group { groups: 2 },
        ..norm_geom(NormLayerKind::Batch)
    };
    let at = ParamAt {
        weight: 0,
        bias: 3,
        row: 6,
    };
    let n = g.len();
    let e = be
        .norm_forward(
            &g,
            Mode::Train,
            &up(&be, &vec![0.0; n]),
            &up(&be, &[0.0; 12]),
            at,
            &mut up(&be, &[]),
            at,
            &mut up(&be, &[0.0; 2 * 3 * 2 * 2]),
            &mut up(&be, &vec![0.0; n]),
        )
        .unwrap_err();
    assert!(e.to_string().contains("groups"), "{e}");
}
