//! The fast instance-norm path against the reference loops (`cpu.rs`) on odd shapes: several
//! students, batch 1 and 3, widths that are not a multiple of the 16-lane blocks, random γ and β.

use super::{cpu, cpu_fast, stats_len};
use super::{NormGeom, NormKind};
use crate::model::SplitMix64;
use crate::ops::scratch::ScratchPool;
use crate::ops::{Mode, ParamAt};

/// Outputs and statistics: the reference sums in f64 in one order, the fast path in 16 f32 lanes
/// combined in f64; over ≤ 1024 values of size O(1) the two differ by a few f32 ulps of the sum
/// (~1e-6 relative). 1e-5 absolute on O(1) values keeps a 10× margin; a wrong index or a missing
/// term moves values by O(0.1).
const ATOL: f32 = 1e-5;
const RTOL: f32 = 1e-4;
/// γ and β gradients sum up to 3 planes × 1024 values of size ≤ 0.25 each: 1e-4 absolute.
const ATOL_PARAM_GRAD: f32 = 1e-4;

/// |got − want| ≤ atol + rtol·|want| elementwise; on failure names the worst index.
fn assert_close(what: &str, got: &[f32], want: &[f32], atol: f32, rtol: f32) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let mut worst: Option<(usize, f32)> = None;
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let excess = (g - w).abs() - (atol + rtol * w.abs());
        let bad = excess > 0.0 || excess.is_nan();
        if bad && worst.is_none_or(|(_, e)| excess > e || excess.is_nan()) {
            worst = Some((i, excess));
        }
    }
    if let Some((i, _)) = worst {
        panic!(
            "{what}: index {i}: got {} want {} (atol {atol:e}, rtol {rtol:e})",
            got[i], want[i]
        );
    }
}

fn values(n: usize, seed: u64, lo: f32, hi: f32) -> Vec<f32> {
    let mut g = SplitMix64::new(seed);
    (0..n).map(|_| lo + (hi - lo) * g.next_f32()).collect()
}

fn check(students: usize, batch: usize, c: usize, h: usize, w: usize) {
    let g = NormGeom {
        students,
        batch,
        c,
        h,
        w,
        kind: NormKind::Instance,
        eps: 1e-5,
        momentum: 0.1,
    };
    let at = ParamAt {
        weight: 3,
        bias: 3 + c,
        row: 3 + 2 * c + 1,
    };
    let n = students * batch * c * h * w;
    let seed = (students * 100 + batch * 10 + w) as u64;
    // A conv output with a channel-dependent offset, so the mean matters.
    let y: Vec<f32> = values(n, seed, -1.0, 1.0)
        .iter()
        .enumerate()
        .map(|(i, v)| v + ((i / (h * w)) % 3) as f32)
        .collect();
    let params = values(students * at.row, seed + 1, -1.5, 1.5); // (S, P): γ, β random
    let dout = values(n / 4, seed + 2, -1.0, 1.0); // (S, B, c, h/2, w/2)
    let sl = stats_len(&g);
    let no_running = ParamAt {
        weight: 0,
        bias: 0,
        row: 0,
    };

    let (mut st_ref, mut out_ref) = (vec![0f32; sl], vec![0f32; n / 4]);
    cpu::forward(
        &g,
        Mode::Train,
        &y,
        &params,
        at,
        &mut [],
        no_running,
        &mut st_ref,
        &mut out_ref,
    )
    .unwrap();
    let (mut st, mut out) = (vec![f32::NAN; sl], vec![f32::NAN; n / 4]);
    cpu_fast::forward(
        &g,
        Mode::Train,
        &y,
        &params,
        at,
        &mut [],
        no_running,
        &mut st,
        &mut out,
    )
    .unwrap();
    let what = format!("{g:?}");
    assert_close(&format!("{what} stats"), &st, &st_ref, ATOL, RTOL);
    assert_close(&format!("{what} out"), &out, &out_ref, ATOL, RTOL);

    let (mut dy_ref, mut gr_ref) = (vec![0f32; n], vec![7f32; params.len()]);
    cpu::backward(
        &g,
        &y,
        &params,
        at,
        &st_ref,
        &dout,
        &mut dy_ref,
        &mut gr_ref,
    )
    .unwrap();
    let (mut dy, mut gr) = (vec![f32::NAN; n], vec![7f32; params.len()]);
    let pool = ScratchPool::new();
    cpu_fast::backward(&g, &y, &params, at, &st_ref, &dout, &mut dy, &mut gr, &pool).unwrap();
    assert_close(&format!("{what} dy"), &dy, &dy_ref, ATOL, RTOL);
    // Untouched entries stay 7 in both; γ, β gradients compared with the summation tolerance.
    assert_close(
        &format!("{what} grads"),
        &gr,
        &gr_ref,
        ATOL_PARAM_GRAD,
        RTOL,
    );
}

#[test]
fn matches_reference_on_odd_shapes() {
    check(1, 1, 1, 2, 2);
    check(2, 3, 5, 6, 10);
    check(3, 1, 4, 8, 18);
    check(1, 3, 3, 32, 32);
}

#[test]
fn bad_lengths_are_errors() {
    let g = NormGeom {
        students: 1,
        batch: 1,
        c: 2,
        h: 4,
        w: 4,
        kind: NormKind::Instance,
        eps: 1e-5,
        momentum: 0.1,
    };
    let at = ParamAt {
        weight: 0,
        bias: 2,
        row: 4,
    };
    let no_running = ParamAt {
        weight: 0,
        bias: 0,
        row: 0,
    };
    let y = vec![0f32; 32];
    let mut st = vec![0f32; 4];
    let mut out = vec![0f32; 7]; // should be 8
    assert!(cpu_fast::forward(
        &g,
        Mode::Train,
        &y,
        &[0.0; 4],
        at,
        &mut [],
        no_running,
        &mut st,
        &mut out
    )
    .is_err());
    let mut dy = vec![0f32; 31]; // should be 32
    let pool = ScratchPool::new();
    assert!(cpu_fast::backward(
        &g,
        &y,
        &[0.0; 4],
        at,
        &st,
        &[0.0; 8],
        &mut dy,
        &mut [0.0; 4],
        &pool
    )
    .is_err());
}
