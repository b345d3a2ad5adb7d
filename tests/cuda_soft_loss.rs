//! The soft-label losses of a cohort (KL with temperature, SCE, MSE-GT) in one launch for all S
//! students (`loss_forward_backward`, grid = S, one block per student), against the CPU reference:
//! S = 5 students, each with its own teacher logits, and batches both below and above the 128
//! threads of a block (B = 7 and 130: a thread then owns several rows). `cuda_parity` covers S = 3
//! with B = 7; this adds the multi-row case and checks each student against an S = 1 launch of its
//! rows alone, so a student's result cannot depend on the cohort it runs in.
//! Runs on a real GPU when one opens, else under emulation, and says which.
//!
//! `cargo test --release --test cuda_soft_loss`

mod common;

use ddr_fast::backend::cpu::CpuBackend;
use ddr_fast::backend::cuda::CudaBackend;
use ddr_fast::backend::{Backend, LossKind};

/// f32 kernel vs the reference (which sums in f64): per row a K-term f32 log-sum-exp and a K-term
/// sum, then a B-term f32 block sum for the loss; n·2⁻²⁴·Σ|terms| for n ≤ 130 and terms of size
/// ≤ ~10 is ≤ ~1e-4 relative, so 2e-5 absolute + 2e-4 relative as in cuda_parity, 5× on the loss
/// (a sum over 130 rows).
const GRAD_ATOL: f32 = 2e-5;
const GRAD_RTOL: f32 = 2e-4;
const LOSS_ATOL: f32 = 1e-4;
const LOSS_RTOL: f32 = 1e-3;

fn cuda() -> CudaBackend {
    common::cuda_under_test("cuda_soft_loss")
}

/// Reproducible values in [lo, hi) from a hash of the index.
fn values(n: usize, salt: u64, lo: f32, hi: f32) -> Vec<f32> {
    (0..n as u64)
        .map(|i| {
            let mut z = (i ^ (salt << 40)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            z = (z ^ (z >> 29)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            lo + (hi - lo) * ((z >> 40) as f32 / (1u64 << 24) as f32)
        })
        .collect()
}

/// Loss (S) and dlogits (S, B, K) of one call on `b`.
fn run<B: Backend>(
    b: &B,
    kind: LossKind,
    (s, bt, k): (usize, usize, usize),
    z: &[f32],
    y: &[u32],
    t: &[f32],
) -> (Vec<f32>, Vec<f32>) {
    let (zb, yb, tb) = (
        b.upload(z).unwrap(),
        b.upload(y).unwrap(),
        b.upload(t).unwrap(),
    );
    let mut l = b.alloc::<f32>(s).unwrap();
    let mut d = b.alloc::<f32>(z.len()).unwrap();
    b.loss(kind, s, bt, k, &zb, &yb, Some(&tb), &mut l, &mut d)
        .unwrap();
    (b.download(&l).unwrap(), b.download(&d).unwrap())
}

fn assert_close(what: &str, got: &[f32], want: &[f32], atol: f32, rtol: f32) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let mut worst: Option<(usize, f32)> = None;
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let excess = (g - w).abs() - (atol + rtol * w.abs());
        if (excess > 0.0 || excess.is_nan()) && worst.is_none_or(|(_, e)| excess > e) {
            worst = Some((
                i,
                if excess.is_nan() {
                    f32::INFINITY
                } else {
                    excess
                },
            ));
        }
    }
    if let Some((i, _)) = worst {
        panic!(
            "{what}: worst at {i}: got {} want {} (atol {atol}, rtol {rtol})",
            got[i], want[i]
        );
    }
}

#[test]
fn soft_losses_of_every_student_in_one_launch_match_cpu() {
    let be = cuda();
    let kinds = [
        LossKind::Kl {
            temperature: 4.0,
            scale_loss: true,
        },
        LossKind::Sce {
            temperature: 2.0,
            scale_loss: true,
        },
        LossKind::MseGt {
            w_mse: 0.7,
            w_ce: 0.3,
        },
    ];
    let s = 5;
    for (bt, k) in [(7, 10), (130, 10), (130, 100)] {
        let n = s * bt * k;
        let z = values(n, 1, -6.0, 6.0);
        // Every student has its own teacher logits (mode M's mean of teachers differs per batch).
        let t = values(n, 2, -6.0, 6.0);
        let y: Vec<u32> = values(s * bt, 3, 0.0, k as f32)
            .iter()
            .map(|&v| (v as u32).min(k as u32 - 1))
            .collect();
        for kind in kinds {
            let tag = format!("{kind:?} S{s} B{bt} K{k}");
            let (l, d) = run(&be, kind, (s, bt, k), &z, &y, &t);
            let (l0, d0) = run(&CpuBackend::reference(), kind, (s, bt, k), &z, &y, &t);
            assert_close(&format!("loss {tag}"), &l, &l0, LOSS_ATOL, LOSS_RTOL);
            assert_close(&format!("dlogits {tag}"), &d, &d0, GRAD_ATOL, GRAD_RTOL);
            // Each student alone (S = 1) gives what it gets inside the cohort, bit for bit: its
            // block reads only its own rows.
            let (row, lab) = (bt * k, bt);
            for st in 0..s {
                let (la, da) = run(
                    &be,
                    kind,
                    (1, bt, k),
                    &z[st * row..(st + 1) * row],
                    &y[st * lab..(st + 1) * lab],
                    &t[st * row..(st + 1) * row],
                );
                assert_eq!(
                    la[0].to_bits(),
                    l[st].to_bits(),
                    "{tag}: loss of student {st}"
                );
                assert_eq!(
                    da,
                    d[st * row..(st + 1) * row],
                    "{tag}: dlogits of student {st}"
                );
            }
            assert!(l.iter().all(|v| v.is_finite() && *v != 0.0), "{tag}: {l:?}");
        }
    }
}
