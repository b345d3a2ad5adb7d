//! Finite-difference checks of every hand-written gradient on tiny shapes: each op family (conv,
//! norm → ReLU → pool for every norm kind, linear, every loss) and the whole ConvNet for every norm
//! and loss. For each tensor we compare the analytic directional derivative gᵀv along a random
//! direction v with the central difference (f(x + hv) − f(x − hv))/2h of a scalar f evaluated in
//! f32 by the code under test and summed in f64.

mod common;

use ddr_fast::backend::cpu::CpuBackend;
use ddr_fast::backend::{
    Backend, ConvGeom, LinearGeom, LossKind, Mode, NormGeom, NormKind, ParamAt,
};
use ddr_fast::model::{init_params, ConvNet, ConvNetSpec, SplitMix64};
use ddr_fast::ops::norm_relu_pool::stats_len;

/// Step for ops linear in the perturbed tensor (conv, linear): the central difference is exact up
/// to rounding, so a large step keeps rounding noise small.
const H_LINEAR: f32 = 1e-1;
/// Step for nonlinear functions: truncation error O(h²·f''') ≈ 1e-6 relative, and few ReLU kinks
/// are crossed.
const H_NONLINEAR: f32 = 1e-3;
/// Step for the whole network: ±hv over a whole first-layer weight moves hundreds of
/// pre-activations at once, and every ReLU kink crossed adds an error that does not shrink with h
/// (only its probability does). h = 1e-4 keeps crossings rare at a tolerable rounding term.
const H_MODEL: f32 = 1e-4;
/// Relative tolerance of the whole-network check: measured errors are ≤ 5e-3 except first-layer
/// weights under instance norm, where one crossed kink gave 3.4e-2. The op-level checks above and
/// the golden parity test hold the formulas to 2e-3 and 1e-4; this one catches wiring mistakes
/// (a wrong buffer, order or missing term), which are off by O(1).
const MODEL_RTOL: f64 = 1e-1;
/// Relative tolerance on gᵀv: covers the O(h²) truncation and the rare ReLU kink crossed by ±hv
/// (measured errors are well below it; a wrong formula is off by O(1)).
const FD_RTOL: f64 = 2e-3;
/// Rounding noise of f: each f32 output carries a relative error of an ulp or two, so each of
/// f(x + hv), f(x − hv) is uncertain by at most about 2 ulps of Σ|terms|; twice that, over 2h.
const NOISE_ULPS: f64 = 4.0;

fn rand_vec(rng: &mut SplitMix64, n: usize, scale: f32) -> Vec<f32> {
    (0..n)
        .map(|_| (2.0 * rng.next_f32() - 1.0) * scale)
        .collect()
}

/// Σ w·out in f64, and Σ |w·out| (the scale of its rounding error).
fn dot(w: &[f32], out: &[f32]) -> (f64, f64) {
    w.iter().zip(out).fold((0.0, 0.0), |(s, a), (&w, &o)| {
        let t = w as f64 * o as f64;
        (s + t, a + t.abs())
    })
}

/// Central difference of f along v restricted to `range` of x, against the analytic gᵀv.
#[allow(clippy::too_many_arguments)]
fn check_direction(
    what: &str,
    x: &[f32],
    range: std::ops::Range<usize>,
    grad: &[f32],
    h: f32,
    rtol: f64,
    rng: &mut SplitMix64,
    f: &dyn Fn(&[f32]) -> (f64, f64),
) -> Result<(), String> {
    let v = rand_vec(rng, range.len(), 1.0);
    let mut xp = x.to_vec();
    let mut xm = x.to_vec();
    for (i, &vi) in range.clone().zip(&v) {
        xp[i] += h * vi;
        xm[i] -= h * vi;
    }
    let (fp, sp) = f(&xp);
    let (fm, sm) = f(&xm);
    let fd: f64 = (fp - fm) / (2.0 * h as f64);
    let an: f64 = range
        .clone()
        .zip(&v)
        .map(|(i, &vi)| grad[i] as f64 * vi as f64)
        .sum();
    let noise = NOISE_ULPS * f32::EPSILON as f64 * sp.max(sm) / (2.0 * h as f64);
    let bound = noise + rtol * an.abs();
    if (fd - an).abs() <= bound {
        Ok(())
    } else {
        Err(format!("{what}: finite difference {fd:.6e}, analytic {an:.6e}, |diff| {:.3e} > bound {bound:.3e}", (fd - an).abs()))
    }
}

fn run(checks: Vec<Result<(), String>>) {
    let fails: Vec<String> = checks.into_iter().filter_map(Result::err).collect();
    assert!(
        fails.is_empty(),
        "finite-difference mismatches:\n{}",
        fails.join("\n")
    );
}

#[test]
fn conv_gradients_match_finite_differences() {
    let be = CpuBackend::new();
    let mut rng = SplitMix64::new(11);
    let mut checks = Vec::new();
    for pad in [1, 3] {
        let g = ConvGeom {
            students: 2,
            batch: 2,
            cin: 3,
            cout: 4,
            h: 5,
            w: 6,
            pad,
        };
        let at = ParamAt {
            weight: 1,
            bias: 1 + 4 * 3 * 9,
            row: 1 + 4 * 3 * 9 + 4 + 2,
        };
        let x = rand_vec(&mut rng, 2 * 2 * 3 * 5 * 6, 1.0); // (S, B, cin, h, w)
        let params = rand_vec(&mut rng, 2 * at.row, 0.5); // (S, P)
        let y_len = 2 * 2 * 4 * g.out_h() * g.out_w();
        let w = rand_vec(&mut rng, y_len, 1.0); // weights of the scalar f = Σ w·y
        let f_x = |xv: &[f32]| {
            let mut y = vec![0f32; y_len];
            be.conv3x3_forward(&g, &xv.to_vec(), &params, at, &mut y)
                .unwrap();
            dot(&w, &y)
        };
        let f_p = |pv: &[f32]| {
            let mut y = vec![0f32; y_len];
            be.conv3x3_forward(&g, &x, &pv.to_vec(), at, &mut y)
                .unwrap();
            dot(&w, &y)
        };
        let mut dx = vec![0f32; x.len()];
        let mut grads = vec![f32::NAN; params.len()];
        be.conv3x3_backward(&g, &x, &params, at, &w, Some(&mut dx), &mut grads)
            .unwrap();
        checks.push(check_direction(
            &format!("conv pad {pad} dx"),
            &x,
            0..x.len(),
            &dx,
            H_LINEAR,
            FD_RTOL,
            &mut rng,
            &f_x,
        ));
        for s in 0..2 {
            let base = s * at.row;
            let wr = base + at.weight..base + at.bias;
            let br = base + at.bias..base + at.bias + 4;
            checks.push(check_direction(
                &format!("conv pad {pad} s{s} dW"),
                &params,
                wr,
                &grads,
                H_LINEAR,
                FD_RTOL,
                &mut rng,
                &f_p,
            ));
            checks.push(check_direction(
                &format!("conv pad {pad} s{s} db"),
                &params,
                br,
                &grads,
                H_LINEAR,
                FD_RTOL,
                &mut rng,
                &f_p,
            ));
        }
    }
    run(checks);
}

#[test]
fn linear_gradients_match_finite_differences() {
    let be = CpuBackend::new();
    let mut rng = SplitMix64::new(12);
    let g = LinearGeom {
        students: 2,
        batch: 3,
        fin: 7,
        fout: 5,
    };
    let at = ParamAt {
        weight: 0,
        bias: 35,
        row: 40,
    };
    let x = rand_vec(&mut rng, 2 * 3 * 7, 1.0); // (S, B, fin)
    let params = rand_vec(&mut rng, 2 * 40, 0.5); // (S, P)
    let w = rand_vec(&mut rng, 2 * 3 * 5, 1.0);
    let f_x = |xv: &[f32]| {
        let mut y = vec![0f32; 30];
        be.linear_forward(&g, &xv.to_vec(), &params, at, &mut y)
            .unwrap();
        dot(&w, &y)
    };
    let f_p = |pv: &[f32]| {
        let mut y = vec![0f32; 30];
        be.linear_forward(&g, &x, &pv.to_vec(), at, &mut y).unwrap();
        dot(&w, &y)
    };
    let mut dx = vec![0f32; x.len()];
    let mut grads = vec![0f32; params.len()];
    be.linear_backward(&g, &x, &params, at, &w, Some(&mut dx), &mut grads)
        .unwrap();
    let mut checks = vec![check_direction(
        "linear dx",
        &x,
        0..x.len(),
        &dx,
        H_LINEAR,
        FD_RTOL,
        &mut rng,
        &f_x,
    )];
    for s in 0..2 {
        checks.push(check_direction(
            &format!("linear s{s} dW"),
            &params,
            s * 40..s * 40 + 35,
            &grads,
            H_LINEAR,
            FD_RTOL,
            &mut rng,
            &f_p,
        ));
        checks.push(check_direction(
            &format!("linear s{s} db"),
            &params,
            s * 40 + 35..s * 40 + 40,
            &grads,
            H_LINEAR,
            FD_RTOL,
            &mut rng,
            &f_p,
        ));
    }
    run(checks);
}

#[test]
fn norm_relu_pool_gradients_match_finite_differences() {
    let be = CpuBackend::new();
    let mut rng = SplitMix64::new(13);
    let mut checks = Vec::new();
    for kind in [NormKind::Instance, NormKind::Batch, NormKind::None] {
        let g = NormGeom {
            students: 2,
            batch: 3,
            c: 2,
            h: 4,
            w: 6,
            kind,
            eps: 1e-5,
            momentum: 0.1,
        };
        let at = ParamAt {
            weight: 1,
            bias: 3,
            row: 6,
        };
        let run_at = ParamAt {
            weight: 0,
            bias: 2,
            row: 4,
        };
        let y = rand_vec(&mut rng, 2 * 3 * 2 * 4 * 6, 1.5); // (S, B, c, h, w)
        let mut params = rand_vec(&mut rng, 12, 0.5); // (S, P): γ around 1, β around 0
        for s in 0..2 {
            for ch in 0..2 {
                params[s * 6 + 1 + ch] += 1.0;
            }
        }
        let out_len = 2 * 3 * 2 * 2 * 3;
        let w = rand_vec(&mut rng, out_len, 1.0);
        let fwd = |yv: &[f32], pv: &[f32]| {
            let mut running = vec![0.5f32; 8];
            let mut stats = vec![0f32; stats_len(&g)];
            let mut out = vec![0f32; out_len];
            be.norm_relu_pool_forward(
                &g,
                Mode::Train,
                &yv.to_vec(),
                &pv.to_vec(),
                at,
                &mut running,
                run_at,
                &mut stats,
                &mut out,
            )
            .unwrap();
            (out, stats)
        };
        let (_, stats) = fwd(&y, &params);
        let mut dy = vec![0f32; y.len()];
        let mut grads = vec![0f32; params.len()];
        be.norm_relu_pool_backward(&g, &y, &params, at, &stats, &w, &mut dy, &mut grads)
            .unwrap();
        let f_y = |yv: &[f32]| dot(&w, &fwd(yv, &params).0);
        let f_p = |pv: &[f32]| dot(&w, &fwd(&y, pv).0);
        checks.push(check_direction(
            &format!("{kind:?} dy"),
            &y,
            0..y.len(),
            &dy,
            H_NONLINEAR,
            FD_RTOL,
            &mut rng,
            &f_y,
        ));
        if kind != NormKind::None {
            for s in 0..2 {
                let (gw, gb) = (s * 6 + 1..s * 6 + 3, s * 6 + 3..s * 6 + 5);
                checks.push(check_direction(
                    &format!("{kind:?} s{s} dγ"),
                    &params,
                    gw,
                    &grads,
                    H_NONLINEAR,
                    FD_RTOL,
                    &mut rng,
                    &f_p,
                ));
                checks.push(check_direction(
                    &format!("{kind:?} s{s} dβ"),
                    &params,
                    gb,
                    &grads,
                    H_NONLINEAR,
                    FD_RTOL,
                    &mut rng,
                    &f_p,
                ));
            }
        }
    }
    run(checks);
}

fn all_losses() -> Vec<LossKind> {
    vec![
        LossKind::CrossEntropy,
        LossKind::Kl {
            temperature: 1.2,
            scale_loss: false,
        },
        LossKind::Kl {
            temperature: 4.0,
            scale_loss: true,
        },
        LossKind::Sce {
            temperature: 1.2,
            scale_loss: false,
        },
        LossKind::Sce {
            temperature: 2.0,
            scale_loss: true,
        },
        LossKind::MseGt {
            w_mse: 1.0,
            w_ce: 0.025,
        },
    ]
}

#[test]
fn loss_gradients_match_finite_differences() {
    let be = CpuBackend::new();
    let mut rng = SplitMix64::new(14);
    let (s, b, k) = (2, 3, 5);
    let z = rand_vec(&mut rng, s * b * k, 2.0); // (S, B, K)
    let t = rand_vec(&mut rng, s * b * k, 2.0); // (S, B, K)
    let labels: Vec<u32> = (0..s * b).map(|i| (i * 3 % k) as u32).collect();
    let mut checks = Vec::new();
    for kind in all_losses() {
        let f = |zv: &[f32]| {
            let mut loss = vec![0f32; s];
            let mut d = vec![0f32; s * b * k];
            be.loss(
                kind,
                s,
                b,
                k,
                &zv.to_vec(),
                &labels,
                Some(&t),
                &mut loss,
                &mut d,
            )
            .unwrap();
            dot(&[1.0; 2], &loss)
        };
        let mut loss = vec![0f32; s];
        let mut d = vec![0f32; s * b * k];
        be.loss(kind, s, b, k, &z, &labels, Some(&t), &mut loss, &mut d)
            .unwrap();
        checks.push(check_direction(
            &format!("{kind:?} dlogits"),
            &z,
            0..z.len(),
            &d,
            H_NONLINEAR,
            FD_RTOL,
            &mut rng,
            &f,
        ));
    }
    run(checks);
}

/// The whole ConvNet, every parameter tensor of every student, for every norm kind and loss.
#[test]
fn convnet_gradients_match_finite_differences() {
    let be = CpuBackend::new();
    let mut rng = SplitMix64::new(15);
    let mut checks = Vec::new();
    let cases: Vec<(NormKind, LossKind)> = [NormKind::Instance, NormKind::Batch, NormKind::None]
        .into_iter()
        .map(|n| (n, LossKind::CrossEntropy))
        .chain(
            all_losses()
                .into_iter()
                .skip(1)
                .map(|l| (NormKind::Instance, l)),
        )
        .collect();
    for (norm, kind) in cases {
        let spec = ConvNetSpec::new(2, 4, norm, 3, 8, 5).unwrap();
        let net = ConvNet::new(spec);
        let (s, b, p) = (2, 3, net.param_len());
        let mut params = vec![0f32; s * p]; // (S, P)
        for (i, row) in params.chunks_mut(p).enumerate() {
            init_params(&net.layout, 100 + i as u64, row);
        }
        let x = rand_vec(&mut rng, s * b * 3 * 8 * 8, 1.0); // (S, B, C, H, W)
        let t = rand_vec(&mut rng, s * b * 5, 2.0); // (S, B, K)
        let labels: Vec<u32> = (0..s * b).map(|i| (i % 5) as u32).collect();
        let f = |pv: &[f32]| {
            let mut ws = net.workspace(&be, s, b, true).unwrap();
            let mut running = vec![1f32; s * net.buffer_len()];
            net.forward(&be, &mut ws, &x, &pv.to_vec(), &mut running, Mode::Train)
                .unwrap();
            net.loss(&be, &mut ws, kind, &labels, Some(&t)).unwrap();
            dot(&[1.0; 2], ws.loss().unwrap())
        };
        let mut ws = net.workspace(&be, s, b, true).unwrap();
        let mut running = vec![1f32; s * net.buffer_len()];
        net.forward(&be, &mut ws, &x, &params, &mut running, Mode::Train)
            .unwrap();
        net.loss(&be, &mut ws, kind, &labels, Some(&t)).unwrap();
        let mut grads = vec![f32::NAN; s * p];
        net.backward(&be, &mut ws, &x, &params, &mut grads).unwrap();
        for st in 0..s {
            for e in &net.layout.params {
                let r = st * p + e.offset..st * p + e.offset + e.len();
                let what = format!("{norm:?} {kind:?} student {st} {}", e.name);
                checks.push(check_direction(
                    &what, &params, r, &grads, H_MODEL, MODEL_RTOL, &mut rng, &f,
                ));
            }
        }
    }
    run(checks);
}
