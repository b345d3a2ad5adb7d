//! Tests of the GEMM conv fast path against plain loops accumulated in f64, on odd shapes: several
//! students, batches of 1 and 7, 1/3/8 input channels, non-square images, padding 0 to 3.

use super::cpu_fast::{
    backward_input, backward_input_with, backward_weight, backward_weight_with, forward,
    forward_with, ConvPath,
};
use super::ConvGeom;
use crate::ops::scratch::ScratchPool;
use crate::ops::ParamAt;

/// Forward and input-gradient entries are sums of at most 9·16 = 144 products of values in [−1, 1].
/// f32 rounding of such a sum stays near √144·2⁻²⁴·|sum| ≈ 1e-6 in practice (worst case
/// 144·2⁻²⁴·144 ≈ 1.2e-3, never approached by a blocked GEMM); an indexing error moves an entry by
/// O(0.1–1), so 1e-4 separates the two by orders of magnitude.
const ATOL_SHORT_SUM: f32 = 1e-4;
/// Weight-gradient entries sum up to 7·32·32 = 7168 products (|sum| up to ~60): the same √n
/// argument gives ~3e-5; 1e-3 keeps a 30× margin and still catches a dropped image (O(1) shift).
const ATOL_LONG_SUM: f32 = 1e-3;
/// Relative part for large entries (the f32 unit roundoff 6e-8 times the √n growth above, rounded up).
const RTOL: f32 = 1e-5;
/// Written into every output before the call, to prove the op overwrites rather than accumulates.
const SENTINEL: f32 = 1234.5;

/// |got − want| ≤ atol + rtol·|want| elementwise; on failure names the worst index.
fn assert_close(what: &str, got: &[f32], want: &[f64], atol: f32, rtol: f32) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let mut worst = (0usize, 0f64, 0f64); // (index, excess over the bound, error)
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let err = (g as f64 - w).abs();
        let excess = err - (atol as f64 + rtol as f64 * w.abs());
        if excess > worst.1 || !err.is_finite() {
            worst = (i, excess.max(f64::MIN_POSITIVE), err);
        }
    }
    let (i, excess, err) = worst;
    assert!(
        excess <= 0.0,
        "{what}: index {i}: got {} want {} (error {err:e}, atol {atol:e}, rtol {rtol:e})",
        got[i],
        want[i]
    );
}

/// Deterministic values in [−1, 1) from a splitmix64 stream.
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut state = seed;
    (0..n)
        .map(|_| {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            ((z >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// x (S, B, cin, h, w), params (S, P) → y (S, B, cout, oh, ow) by the definition.
fn reference_forward(g: &ConvGeom, x: &[f32], params: &[f32], at: ParamAt) -> Vec<f64> {
    let (oh, ow) = (g.out_h(), g.out_w());
    let mut y = vec![0f64; g.students * g.batch * g.cout * oh * ow];
    for s in 0..g.students {
        let p = &params[s * at.row..];
        for b in 0..g.batch {
            let i = s * g.batch + b;
            for co in 0..g.cout {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let mut acc = p[at.bias + co] as f64;
                        for ci in 0..g.cin {
                            for ky in 0..3 {
                                for kx in 0..3 {
                                    let iy = (oy + ky) as isize - g.pad as isize;
                                    let ix = (ox + kx) as isize - g.pad as isize;
                                    if iy < 0 || ix < 0 || iy >= g.h as isize || ix >= g.w as isize
                                    {
                                        continue;
                                    }
                                    let xv = x[((i * g.cin + ci) * g.h + iy as usize) * g.w
                                        + ix as usize];
                                    let wv = p[at.weight + ((co * g.cin + ci) * 3 + ky) * 3 + kx];
                                    acc += xv as f64 * wv as f64;
                                }
                            }
                        }
                        y[((i * g.cout + co) * oh + oy) * ow + ox] = acc;
                    }
                }
            }
        }
    }
    y
}

/// The backward of `reference_forward` by scattering each output's gradient: dx (S, B, cin, h, w),
/// and the student rows' gradients (S, P) with only the weight and bias ranges filled.
fn reference_backward(
    g: &ConvGeom,
    x: &[f32],
    params: &[f32],
    at: ParamAt,
    dy: &[f32],
) -> (Vec<f64>, Vec<f64>) {
    let (oh, ow) = (g.out_h(), g.out_w());
    let mut dx = vec![0f64; x.len()];
    let mut grads = vec![0f64; params.len()];
    for s in 0..g.students {
        for b in 0..g.batch {
            let i = s * g.batch + b;
            for co in 0..g.cout {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let d = dy[((i * g.cout + co) * oh + oy) * ow + ox] as f64;
                        grads[s * at.row + at.bias + co] += d;
                        for ci in 0..g.cin {
                            for ky in 0..3 {
                                for kx in 0..3 {
                                    let iy = (oy + ky) as isize - g.pad as isize;
                                    let ix = (ox + kx) as isize - g.pad as isize;
                                    if iy < 0 || ix < 0 || iy >= g.h as isize || ix >= g.w as isize
                                    {
                                        continue;
                                    }
                                    let xi =
                                        ((i * g.cin + ci) * g.h + iy as usize) * g.w + ix as usize;
                                    let wi = at.weight + ((co * g.cin + ci) * 3 + ky) * 3 + kx;
                                    dx[xi] += d * params[s * at.row + wi] as f64;
                                    grads[s * at.row + wi] += d * x[xi] as f64;
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    (dx, grads)
}

/// Runs forward and backward of the fast path on one geometry and compares with the reference.
/// The weight and bias sit at odd offsets inside a longer row, so `ParamAt` is honoured.
fn check_geometry(g: ConvGeom) {
    let wlen = g.cout * g.cin * 9;
    let at = ParamAt {
        weight: 5,
        bias: 5 + wlen + 3,
        row: 5 + wlen + 3 + g.cout + 2,
    };
    let seed = (g.students * 1000 + g.batch * 100 + g.cin * 10 + g.pad) as u64;
    let x = values(g.students * g.batch * g.cin * g.h * g.w, seed); // (S, B, cin, h, w)
    let params = values(g.students * at.row, seed + 1); // (S, P)
    let dy = values(
        g.students * g.batch * g.cout * g.out_h() * g.out_w(),
        seed + 2,
    ); // like y
    let pool = ScratchPool::new();
    let want_y = reference_forward(&g, &x, &params, at);
    let (want_dx, want_grads) = reference_backward(&g, &x, &params, at, &dy);
    // The engine's f32 reference loops agree with the f64 definition too (same tolerances), so
    // the fast path and `cpu.rs` are interchangeable.
    let mut y_ref = vec![SENTINEL; dy.len()];
    super::cpu::forward(&g, &x, &params, at, &mut y_ref).expect("valid geometry");
    assert_close(
        &format!("{g:?} cpu.rs y"),
        &y_ref,
        &want_y,
        ATOL_SHORT_SUM,
        RTOL,
    );
    let mut dx_ref = vec![SENTINEL; x.len()];
    super::cpu::backward_input(&g, &params, at, &dy, &mut dx_ref).expect("valid geometry");
    assert_close(
        &format!("{g:?} cpu.rs dx"),
        &dx_ref,
        &want_dx,
        ATOL_SHORT_SUM,
        RTOL,
    );
    for path in [ConvPath::Im2col, ConvPath::Winograd, ConvPath::Auto] {
        let what = format!("{g:?} {path:?} (runs {:?})", path.resolve(&g));
        let mut y = vec![SENTINEL; dy.len()];
        forward_with(path, &g, &x, &params, at, &mut y, &pool).expect("valid geometry");
        assert_close(&format!("{what} y"), &y, &want_y, ATOL_SHORT_SUM, RTOL);

        let mut dx = vec![SENTINEL; x.len()];
        backward_input_with(path, &g, &params, at, &dy, &mut dx, &pool).expect("valid geometry");
        assert_close(&format!("{what} dx"), &dx, &want_dx, ATOL_SHORT_SUM, RTOL);

        let mut grads = vec![SENTINEL; params.len()];
        backward_weight_with(path, &g, &x, &dy, at, &mut grads, &pool).expect("valid geometry");
        for s in 0..g.students {
            let got = &grads[s * at.row..][..at.row];
            let want = &want_grads[s * at.row..][..at.row];
            let w = at.weight..at.weight + wlen;
            let b = at.bias..at.bias + g.cout;
            let name = format!("{what} dW s={s}");
            assert_close(
                &name,
                &got[w.clone()],
                &want[w.clone()],
                ATOL_LONG_SUM,
                RTOL,
            );
            let name = format!("{what} db s={s}");
            assert_close(
                &name,
                &got[b.clone()],
                &want[b.clone()],
                ATOL_LONG_SUM,
                RTOL,
            );
            for (j, &v) in got.iter().enumerate() {
                if !w.contains(&j) && !b.contains(&j) {
                    assert_eq!(
                        v, SENTINEL,
                        "{what}: grads[{s}, {j}] outside this layer was written"
                    );
                }
            }
        }
    }
}

fn geom(
    students: usize,
    batch: usize,
    cin: usize,
    cout: usize,
    h: usize,
    w: usize,
    pad: usize,
) -> ConvGeom {
    ConvGeom {
        students,
        batch,
        cin,
        cout,
        h,
        w,
        pad,
    }
}

#[test]
fn one_gray_image_28px_padding_3() {
    check_geometry(geom(1, 1, 1, 4, 28, 28, 3));
}

#[test]
fn three_students_batch_7_rgb_32px() {
    check_geometry(geom(3, 7, 3, 5, 32, 32, 1));
}

#[test]
fn eight_channels_non_square() {
    check_geometry(geom(3, 1, 8, 16, 9, 7, 1));
    check_geometry(geom(1, 7, 8, 6, 5, 11, 3));
}

#[test]
fn padding_0_and_2() {
    check_geometry(geom(2, 2, 2, 3, 5, 6, 0));
    check_geometry(geom(2, 3, 3, 2, 4, 4, 2));
}

#[test]
fn batch_split_into_many_runs() {
    // 7 images of one student are cut into several partial sums (chunking in the weight grads).
    check_geometry(geom(1, 7, 8, 16, 32, 32, 1));
}

#[test]
fn wide_layers_take_winograd_and_odd_sizes_crop_tiles() {
    // 16 → 16 channels is where Auto switches to Winograd; 7×9 outputs leave half tiles; many
    // images per student make several GEMM groups per run (tiles per image 4·5 = 20 → 6 images).
    let g = geom(2, 13, 16, 16, 7, 9, 1);
    assert_eq!(ConvPath::Auto.resolve(&g), ConvPath::Winograd);
    check_geometry(g);
    check_geometry(geom(1, 2, 16, 24, 6, 5, 0));
}

#[test]
fn bad_shapes_are_errors_not_panics() {
    let pool = ScratchPool::new();
    let g = geom(1, 2, 3, 4, 8, 8, 1);
    let at = ParamAt {
        weight: 0,
        bias: 108,
        row: 112,
    };
    let x = vec![0.0; 2 * 3 * 64]; // (1, 2, 3, 8, 8)
    let params = vec![0.0; 112]; // (1, 112)
    let mut y = vec![0.0; 2 * 4 * 64]; // (1, 2, 4, 8, 8)
    assert!(forward(&g, &x[1..], &params, at, &mut y, &pool).is_err());
    assert!(forward(&g, &x, &params[1..], at, &mut y, &pool).is_err());
    let short = ParamAt {
        weight: 0,
        bias: 108,
        row: 111,
    };
    assert!(forward(&g, &x, &params[..111], short, &mut y, &pool).is_err());
    let tiny = geom(1, 1, 1, 1, 1, 1, 0);
    let at_tiny = ParamAt {
        weight: 0,
        bias: 9,
        row: 10,
    };
    assert!(forward(&tiny, &[0.0], &[0.0; 10], at_tiny, &mut [0.0], &pool).is_err());
    let mut grads = vec![0.0; 112];
    let mut dx = vec![0.0; 5];
    assert!(backward_input(&g, &params, at, &y, &mut dx, &pool).is_err());
    assert!(backward_weight(&g, &x, &y[3..], at, &mut grads, &pool).is_err());
    assert!(backward_weight(&g, &x, &y, at, &mut grads[1..], &pool).is_err());
}

/// A student's outputs and gradients are bitwise the same whether it runs alone or in a cohort
/// (the trainer's S-students equivalence rests on this), on both paths.
#[test]
fn cohort_results_equal_single_student_results_bitwise() {
    let pool = ScratchPool::new();
    for (cin, cout) in [(3, 8), (16, 16)] {
        let g3 = geom(3, 11, cin, cout, 8, 8, 1);
        let g1 = ConvGeom { students: 1, ..g3 };
        let wlen = cout * cin * 9;
        let at = ParamAt {
            weight: 0,
            bias: wlen,
            row: wlen + cout,
        };
        let x = values(3 * 11 * cin * 64, 5); // (3, 11, cin, 8, 8)
        let params = values(3 * at.row, 6); // (3, P)
        let dy = values(3 * 11 * cout * 64, 7); // (3, 11, cout, 8, 8)
        let (mut y3, mut dx3, mut gr3) = (
            vec![0.0; dy.len()],
            vec![0.0; x.len()],
            vec![0.0; params.len()],
        );
        forward(&g3, &x, &params, at, &mut y3, &pool).unwrap();
        backward_input(&g3, &params, at, &dy, &mut dx3, &pool).unwrap();
        backward_weight(&g3, &x, &dy, at, &mut gr3, &pool).unwrap();
        let (xl, yl) = (x.len() / 3, dy.len() / 3);
        for s in 0..3 {
            let (xs, ps, dys) = (
                &x[s * xl..][..xl],
                &params[s * at.row..][..at.row],
                &dy[s * yl..][..yl],
            );
            let (mut y1, mut dx1, mut gr1) = (vec![0.0; yl], vec![0.0; xl], vec![0.0; at.row]);
            forward(&g1, xs, ps, at, &mut y1, &pool).unwrap();
            backward_input(&g1, ps, at, dys, &mut dx1, &pool).unwrap();
            backward_weight(&g1, xs, dys, at, &mut gr1, &pool).unwrap();
            let what = format!("cin {cin} cout {cout} student {s}");
            assert!(y1 == y3[s * yl..][..yl], "{what}: y differs");
            assert!(dx1 == dx3[s * xl..][..xl], "{what}: dx differs");
            assert!(
                gr1 == gr3[s * at.row..][..at.row],
                "{what}: weight gradient differs"
            );
        }
    }
}

/// The GPU-mode emulation (precision study): in TF32 and bf16 mode each pass equals the f64
/// definition on operands rounded beforehand (bias and bias gradient unrounded, as on the GPU),
/// and 3xTF32 stays at fp32 accuracy, while TF32 measurably does not: the rounding is really
/// applied, to the right operands, on a wide layer (where fp32 would take Winograd) and a thin one.
#[test]
fn gemm_precision_modes_round_the_operands_the_gpu_rounds() {
    use super::cpu_fast::{backward_input_prec, backward_weight_prec, forward_prec};
    use crate::ops::precision::GemmPrecision;
    let pool = ScratchPool::new();
    for g in [geom(2, 3, 16, 16, 6, 5, 1), geom(1, 2, 3, 8, 7, 7, 1)] {
        let wlen = g.cout * g.cin * 9;
        let at = ParamAt {
            weight: 2,
            bias: 2 + wlen,
            row: 2 + wlen + g.cout,
        };
        let x = values(g.students * g.batch * g.cin * g.h * g.w, 11); // (S, B, cin, h, w)
        let params = values(g.students * at.row, 12); // (S, P)
        let dy = values(g.students * g.batch * g.cout * g.out_h() * g.out_w(), 13); // like y
        let run = |p: GemmPrecision| {
            let mut y = vec![SENTINEL; dy.len()];
            forward_prec(p, &g, &x, &params, at, &mut y, &pool).unwrap();
            let mut dx = vec![SENTINEL; x.len()];
            backward_input_prec(p, &g, &params, at, &dy, &mut dx, &pool).unwrap();
            let mut gr = vec![SENTINEL; params.len()];
            backward_weight_prec(p, &g, &x, &dy, at, &mut gr, &pool).unwrap();
            (y, dx, gr)
        };
        for p in [GemmPrecision::Tf32, GemmPrecision::Bf16] {
            let r = |v: &[f32]| v.iter().map(|&a| p.head(a)).collect::<Vec<f32>>();
            let mut pr = r(&params);
            for s in 0..g.students {
                let b = s * at.row + at.bias..s * at.row + at.bias + g.cout;
                pr[b.clone()].copy_from_slice(&params[b]);
            }
            let want_y = reference_forward(&g, &r(&x), &pr, at);
            let (want_dx, _) = reference_backward(&g, &x, &pr, at, &r(&dy));
            let (_, mut want_gr) = reference_backward(&g, &r(&x), &pr, at, &r(&dy));
            let (_, exact_gr) = reference_backward(&g, &x, &params, at, &dy);
            let (y, dx, gr) = run(p);
            let what = format!("{g:?} {p:?}");
            assert_close(&format!("{what} y"), &y, &want_y, ATOL_SHORT_SUM, RTOL);
            assert_close(&format!("{what} dx"), &dx, &want_dx, ATOL_SHORT_SUM, RTOL);
            for s in 0..g.students {
                let b = s * at.row + at.bias..s * at.row + at.bias + g.cout;
                want_gr[b.clone()].copy_from_slice(&exact_gr[b]);
                let row = s * at.row + at.weight..s * at.row + at.bias + g.cout;
                let name = format!("{what} dW, db s={s}");
                assert_close(&name, &gr[row.clone()], &want_gr[row], ATOL_LONG_SUM, RTOL);
            }
        }
        // 3xTF32 keeps ~21 bits per operand: the fp32 tolerances hold against the exact result.
        let want_y = reference_forward(&g, &x, &params, at);
        let (want_dx, _) = reference_backward(&g, &x, &params, at, &dy);
        let (y, dx, _) = run(GemmPrecision::Tf32x3);
        assert_close(
            &format!("{g:?} 3xTF32 y"),
            &y,
            &want_y,
            ATOL_SHORT_SUM,
            RTOL,
        );
        assert_close(
            &format!("{g:?} 3xTF32 dx"),
            &dx,
            &want_dx,
            ATOL_SHORT_SUM,
            RTOL,
        );
        // Plain TF32 moves outputs by ~2^-11 relative per operand, far above fp32 summation error.
        let (y, _, _) = run(GemmPrecision::Tf32);
        let worst = y
            .iter()
            .zip(&want_y)
            .map(|(&a, &b)| (a as f64 - b).abs())
            .fold(0.0, f64::max);
        assert!(
            worst > 10.0 * ATOL_SHORT_SUM as f64 / 100.0,
            "{g:?}: TF32 moved y by only {worst:e}"
        );
    }
}
