//! The CUDA general convolution (`Backend::conv2d_forward` / `conv2d_backward`, cuda/conv2d.cu)
//! against the plain CPU reference (`ops::conv2d::cpu`) on a table of small shapes covering every
//! conv of the student zoo — 3×3 stride 1 and 2 (odd sizes), 1×1 (Bottleneck) and 1×1 stride 2
//! (ResNet shortcut), 5×5 (LeNet, AlexNet; padding 0, 2 and 4, stride 2 on 1-channel inputs),
//! VGG's 1-channel 3×3 with padding 3 — plus 7×7 stride 2 padding 3 and 11×11 stride 4 padding 2,
//! shapes spanning several GEMM tiles and a weight gradient split over K, with and without bias,
//! S ≥ 2 students with different weights: forward, input gradient (and "dx not asked"), weight and
//! bias gradients, in both conv precisions. Runs on a real GPU when one opens, else emulated.
//!
//! `cargo test --release --test cuda_conv2d`

mod common;

use common::{announce, check_close, cuda_under_test, Tol};
use ddr_fast::backend::cuda::{ConvPrecision, CudaBackend};
use ddr_fast::backend::{Backend, Conv2dGeom, ParamAt};
use ddr_fast::ops::conv2d::cpu;

// ---- tolerances ------------------------------------------------------------------------------
// Inputs, weights and dy are uniform in [−1, 1); the bound is atol_of_max · max|want| + rtol·|want|
// per tensor, since an output near zero is a sum of large terms that cancel.
/// 3xTF32 keeps ~21 bits of each operand product (the dropped tail·tail term is ≤ 2⁻²² of it)
/// and sums in fp32 in another order than the CPU: over K ≤ 1,024 terms of random sign the error
/// stays within a few 1e-6 of the largest output (measured under emulation: ≤ 1.7e-6, dW).
const TF32X3_ATOL_OF_MAX: f64 = 1e-5;
const TF32X3_RTOL: f64 = 1e-4;
/// Plain TF32 truncates each operand to 10 mantissa bits (≤ 2⁻¹⁰ relative each, ≤ 2·2⁻¹⁰ per
/// product, biased toward zero): sums of K terms land within ~2e-3 of the largest output
/// (cuda_fused's and cuda_parity's TF32 bound for the 3×3 conv; measured under emulation: ≤ 9.2e-4,
/// dx), with room for a GPU's other summation order.
const TF32_ATOL_OF_MAX: f64 = 2.5e-3;
const TF32_RTOL: f64 = 2.5e-3;
/// The bias gradient is a plain fp32 sum on both sides (no tensor cores), ≤ 1,024 terms.
const BIAS_ATOL_OF_MAX: f64 = 1e-5;
const BIAS_RTOL: f64 = 1e-5;
/// The same backward with and without dx: the same kernels on the same data, but the weight
/// gradient's split-K partials are added by atomics in whatever order the blocks finish (≤ 64
/// fp32 partials per entry on a GPU), so not necessarily bit for bit.
const SAME_DEVICE_ATOL_OF_MAX: f64 = 1e-6;
const SAME_DEVICE_RTOL: f64 = 1e-6;

fn tol(p: ConvPrecision) -> (f64, f64) {
    match p {
        ConvPrecision::Tf32x3 => (TF32X3_ATOL_OF_MAX, TF32X3_RTOL),
        ConvPrecision::Tf32 => (TF32_ATOL_OF_MAX, TF32_RTOL),
    }
}

/// SplitMix64: reproducible inputs without a dependency.
struct Rng(u64);
impl Rng {
    fn uniform(&mut self) -> f32 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        2.0 * ((z >> 40) as f32 / (1u64 << 24) as f32) - 1.0
    }
    fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.uniform()).collect()
    }
}

/// One table row: a name saying which zoo layer it stands for, and its geometry.
struct Case {
    name: &'static str,
    g: Conv2dGeom,
}

#[allow(clippy::too_many_arguments)]
fn case(
    name: &'static str,
    students: usize,
    batch: usize,
    cin: usize,
    cout: usize,
    (h, w): (usize, usize),
    k: usize,
    stride: usize,
    pad: usize,
    bias: bool,
) -> Case {
    Case {
        name,
        g: Conv2dGeom {
            students,
            batch,
            cin,
            cout,
            h,
            w,
            k,
            stride,
            pad,
            bias,
        },
    }
}

fn cases() -> Vec<Case> {
    vec![
        case("3x3 s1 p1 bias (VGG)", 2, 2, 3, 5, (7, 6), 3, 1, 1, true),
        case(
            "3x3 s2 p1 odd (ResNet down)",
            3,
            2,
            4,
            6,
            (9, 7),
            3,
            2,
            1,
            false,
        ),
        case("1x1 s1 (Bottleneck)", 2, 2, 8, 12, (5, 5), 1, 1, 0, false),
        case("1x1 s2 odd (shortcut)", 2, 2, 6, 10, (7, 9), 1, 2, 0, false),
        case(
            "5x5 s1 p2 bias (AlexNet)",
            2,
            1,
            5,
            7,
            (8, 8),
            5,
            1,
            2,
            true,
        ),
        case(
            "5x5 s2 p4 cin1 (AlexNet 28px)",
            2,
            2,
            1,
            6,
            (12, 11),
            5,
            2,
            4,
            true,
        ),
        case("5x5 s1 p0 bias (LeNet)", 2, 2, 3, 6, (10, 9), 5, 1, 0, true),
        case(
            "3x3 s1 p3 cin1 (VGG 1ch)",
            2,
            2,
            1,
            4,
            (6, 6),
            3,
            1,
            3,
            true,
        ),
        case("7x7 s2 p3", 2, 1, 3, 8, (13, 12), 7, 2, 3, false),
        case(
            "11x11 s4 p2 (AlexNet-like)",
            2,
            1,
            3,
            8,
            (19, 21),
            11,
            4,
            2,
            true,
        ),
        // Several M and N tiles in both precisions (3xTF32's tile is 128 × 64).
        case(
            "3x3 s1 p1 multi-tile",
            2,
            3,
            20,
            70,
            (12, 12),
            3,
            1,
            1,
            false,
        ),
        // B·oh·ow = 1,024: 128 K tiles, so the weight gradient splits K in two.
        case("3x3 s1 p1 split-K", 2, 4, 2, 3, (16, 16), 3, 1, 1, true),
    ]
}

/// Weight at offset 3 of a row with spare entries on both sides, bias after it: the kernels
/// must honour `at` and leave the rest of the row alone.
fn layout(g: &Conv2dGeom) -> ParamAt {
    let weight = 3;
    ParamAt {
        weight,
        bias: weight + g.weight_len() + 2,
        row: weight + g.weight_len() + 2 + g.cout + 4,
    }
}

/// What one backward call returns: dx (when asked) and the whole gradient buffer.
struct Grads {
    dx: Option<Vec<f32>>,
    grads: Vec<f32>,
}

/// The CPU reference: forward, dx, and dW/db written into a copy of `sentinel`.
fn reference(
    g: &Conv2dGeom,
    x: &[f32],
    p: &[f32],
    dy: &[f32],
    sentinel: &[f32],
) -> (Vec<f32>, Grads) {
    let at = layout(g);
    let mut y = vec![0.0; g.out_len()];
    cpu::forward(g, x, p, at, &mut y).unwrap();
    let mut dx = vec![0.0; g.in_len()];
    cpu::backward_input(g, p, at, dy, &mut dx).unwrap();
    let mut grads = sentinel.to_vec();
    cpu::backward_weight(g, x, dy, at, &mut grads).unwrap();
    (
        y,
        Grads {
            dx: Some(dx),
            grads,
        },
    )
}

fn run_cuda(
    be: &CudaBackend,
    g: &Conv2dGeom,
    x: &[f32],
    p: &[f32],
    dy: &[f32],
    sentinel: &[f32],
    want_dx: bool,
) -> (Vec<f32>, Grads) {
    let at = layout(g);
    let (xb, pb, dyb) = (
        be.upload(x).unwrap(),
        be.upload(p).unwrap(),
        be.upload(dy).unwrap(),
    );
    // Stale values in the outputs: the kernels must overwrite, not add.
    let mut y = be.upload(&vec![7.0f32; g.out_len()]).unwrap();
    be.conv2d_forward(g, &xb, &pb, at, &mut y).unwrap();
    let mut dx = be.upload(&vec![9.0f32; g.in_len()]).unwrap();
    let mut grads = be.upload(sentinel).unwrap();
    be.conv2d_backward(
        g,
        &xb,
        &pb,
        at,
        &dyb,
        want_dx.then_some(&mut dx),
        &mut grads,
    )
    .unwrap();
    (
        be.download(&y).unwrap(),
        Grads {
            dx: want_dx.then(|| be.download(&dx).unwrap()),
            grads: be.download(&grads).unwrap(),
        },
    )
}

/// Weight-gradient entries (dW and db) of the gradient buffer vs everything else, compared with
/// their own tolerances; entries outside the layer's spans must be the untouched sentinel.
fn check_grads(
    what: &str,
    g: &Conv2dGeom,
    got: &[f32],
    want: &[f32],
    (atol, rtol): (f64, f64),
) -> Result<(), String> {
    let at = layout(g);
    let pick = |v: &[f32], off: usize, len: usize| -> Vec<f32> {
        (0..g.students)
            .flat_map(|s| v[s * at.row + off..][..len].to_vec())
            .collect()
    };
    let (gw, ww) = (
        pick(got, at.weight, g.weight_len()),
        pick(want, at.weight, g.weight_len()),
    );
    check_close(
        &format!("{what} dW"),
        &gw,
        &ww,
        Tol::new(rtol, 0.0).rel_to_max(atol, &ww),
    )?;
    if g.bias {
        let (gb, wb) = (pick(got, at.bias, g.cout), pick(want, at.bias, g.cout));
        let t = Tol::new(BIAS_RTOL, 0.0).rel_to_max(BIAS_ATOL_OF_MAX, &wb);
        check_close(&format!("{what} db"), &gb, &wb, t)?;
    }
    // Everything outside the spans: bit-identical (the sentinel).
    let outside = |v: &[f32]| -> Vec<f32> {
        let mut v = v.to_vec();
        for s in 0..g.students {
            v[s * at.row + at.weight..][..g.weight_len()].fill(0.0);
            if g.bias {
                v[s * at.row + at.bias..][..g.cout].fill(0.0);
            }
        }
        v
    };
    let (go, wo) = (outside(got), outside(want));
    if let Some(i) = (0..go.len()).find(|&i| go[i].to_bits() != wo[i].to_bits()) {
        return Err(format!(
            "{what}: gradient entry {i} outside the layer's spans changed: {} (was {})",
            go[i], wo[i]
        ));
    }
    Ok(())
}

/// max |got − want| / max |want|: the measured error in the units of the `*_ATOL_OF_MAX` bounds.
fn err_of_max(got: &[f32], want: &[f32]) -> f64 {
    let max = want.iter().fold(0f64, |m, &w| m.max(w.abs() as f64));
    let err = got
        .iter()
        .zip(want)
        .fold(0f64, |m, (&g, &w)| m.max((g as f64 - w as f64).abs()));
    err / max.max(f64::MIN_POSITIVE)
}

/// Worst measured err_of_max over the cases: y, dx, dW.
type Worst = [f64; 3];

fn check_case(
    be: &CudaBackend,
    prec: ConvPrecision,
    c: &Case,
    seed: u64,
    worst: &mut Worst,
) -> Result<(), String> {
    let g = &c.g;
    let at = layout(g);
    let mut rng = Rng(seed);
    let x = rng.vec(g.in_len());
    let p = rng.vec(g.students * at.row); // every student its own weights
    let dy = rng.vec(g.out_len());
    let sentinel = rng.vec(p.len());
    let (atol, rtol) = tol(prec);
    let what = format!("{prec:?} {} {g:?}", c.name);
    let (y0, r0) = reference(g, &x, &p, &dy, &sentinel);
    let (y1, r1) = run_cuda(be, g, &x, &p, &dy, &sentinel, true);
    check_close(
        &format!("{what} y"),
        &y1,
        &y0,
        Tol::new(rtol, 0.0).rel_to_max(atol, &y0),
    )?;
    let (dx0, dx1) = (r0.dx.unwrap(), r1.dx.unwrap());
    check_close(
        &format!("{what} dx"),
        &dx1,
        &dx0,
        Tol::new(rtol, 0.0).rel_to_max(atol, &dx0),
    )?;
    check_grads(&what, g, &r1.grads, &r0.grads, (atol, rtol))?;
    let dw = |v: &[f32]| -> Vec<f32> {
        (0..g.students)
            .flat_map(|s| v[s * at.row + at.weight..][..g.weight_len()].to_vec())
            .collect()
    };
    let measured = [
        err_of_max(&y1, &y0),
        err_of_max(&dx1, &dx0),
        err_of_max(&dw(&r1.grads), &dw(&r0.grads)),
    ];
    for (w, m) in worst.iter_mut().zip(measured) {
        *w = w.max(m);
    }
    // dx not asked: the same parameter gradients (the same kernels ran; see SAME_DEVICE_*).
    let (_, r2) = run_cuda(be, g, &x, &p, &dy, &sentinel, false);
    let same = (SAME_DEVICE_ATOL_OF_MAX, SAME_DEVICE_RTOL);
    check_grads(&format!("{what} without dx"), g, &r2.grads, &r1.grads, same)?;
    Ok(())
}

fn check_all(prec: ConvPrecision) {
    let be = cuda_under_test("cuda_conv2d").with_conv_precision(prec);
    let mut worst = [0.0; 3];
    let failures: Vec<String> = cases()
        .iter()
        .enumerate()
        .filter_map(|(i, c)| check_case(&be, prec, c, 100 + i as u64, &mut worst).err())
        .collect();
    announce(&format!(
        "cuda_conv2d {prec:?}: worst max|err| / max|want| over {} shapes: y {:.1e}, dx {:.1e}, \
         dW {:.1e} (bound {:.1e})",
        cases().len(),
        worst[0],
        worst[1],
        worst[2],
        tol(prec).0
    ));
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn conv2d_matches_the_cpu_reference_in_3xtf32() {
    check_all(ConvPrecision::Tf32x3);
}

#[test]
fn conv2d_matches_the_cpu_reference_in_tf32() {
    check_all(ConvPrecision::Tf32);
}

/// The two precisions really differ (3xTF32 is not plain TF32 under another name) and 3xTF32
/// is the closer to fp32, on a shape whose sums are long enough for TF32's truncation to show.
#[test]
fn tf32x3_is_closer_to_fp32_than_tf32() {
    let c = &cases()[10];
    let g = &c.g;
    let at = layout(g);
    let mut rng = Rng(7);
    let (x, p) = (rng.vec(g.in_len()), rng.vec(g.students * at.row));
    let mut want = vec![0.0; g.out_len()];
    cpu::forward(g, &x, &p, at, &mut want).unwrap();
    let err = |prec| {
        let be = cuda_under_test("cuda_conv2d").with_conv_precision(prec);
        let (xb, pb) = (be.upload(&x).unwrap(), be.upload(&p).unwrap());
        let mut y = be.alloc(g.out_len()).unwrap();
        be.conv2d_forward(g, &xb, &pb, at, &mut y).unwrap();
        let y = be.download(&y).unwrap();
        y.iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max)
    };
    let (e3, e1) = (err(ConvPrecision::Tf32x3), err(ConvPrecision::Tf32));
    assert!(e3 * 10.0 < e1, "3xTF32 max error {e3} vs TF32 {e1}");
}

/// Bad geometry is one clear error, never a launch.
#[test]
fn windows_that_do_not_fit_are_errors() {
    let be = cuda_under_test("cuda_conv2d");
    let g = Conv2dGeom {
        students: 1,
        batch: 1,
        cin: 1,
        cout: 1,
        h: 2,
        w: 2,
        k: 5,
        stride: 1,
        pad: 1,
        bias: false,
    };
    let at = ParamAt {
        weight: 0,
        bias: 0,
        row: 25,
    };
    let (x, p) = (
        be.upload(&[0.0f32; 4]).unwrap(),
        be.upload(&[0.0f32; 25]).unwrap(),
    );
    let mut y = be.alloc(1).unwrap();
    let e = be.conv2d_forward(&g, &x, &p, at, &mut y).unwrap_err();
    assert!(e.to_string().contains("does not fit"), "{e}");
}
