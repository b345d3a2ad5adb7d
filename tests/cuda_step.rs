//! The step-bookkeeping kernels (`batch_rows`, `loss_watch`: cuda/rows.cu) against their CPU
//! reference (src/ops/step/cpu.rs), launched directly rather than inside a whole training.
//! Both are integer indexing and one f64 add per student per step, so the two backends must agree
//! bitwise.

mod common;

use ddr_fast::backend::cpu::CpuBackend;
use ddr_fast::backend::Backend;
use ddr_fast::ops::step::{CLOCK_EPOCH, CLOCK_EPOCH_FIRST, CLOCK_LEN, CLOCK_STEP};

/// S students, N images each, full batches of B: three steps, the last one short.
const S: usize = 3;
const N: usize = 10;
const B: usize = 4;
const EPOCHS: usize = 2;

/// (idx, labels) of every step of epoch 1, then (sums, stopped, clock) after the steps' losses.
type Trace = (Vec<Vec<u32>>, Vec<Vec<u32>>, Vec<f64>, Vec<u32>, Vec<u32>);

fn run<B_: Backend>(be: &B_) -> Trace {
    let steps = N.div_ceil(B);
    // Each student's permutation of its N rows, and its rows' base in the cohort's data.
    let perms: Vec<u32> = (0..S)
        .flat_map(|s| (0..N).map(move |i| ((i * 7 + s * 3) % N) as u32))
        .collect(); // (S, N)
    let base: Vec<u32> = (0..S as u32).map(|s| s * N as u32).collect(); // (S)
    let row_labels: Vec<u32> = (0..(S * N) as u32).map(|r| (r * 5 + 1) % 10).collect(); // (S·N)
                                                                                        // Epoch 1 starts at global step `steps`.
    let first = steps as u32;
    let mut clock_host = vec![0u32; CLOCK_LEN];
    clock_host[CLOCK_STEP] = first;
    clock_host[CLOCK_EPOCH_FIRST] = first;
    clock_host[CLOCK_EPOCH] = 1;
    let mut clock = be.upload(&clock_host).unwrap(); // (4)
    let perms = be.upload(&perms).unwrap();
    let base = be.upload(&base).unwrap();
    let row_labels = be.upload(&row_labels).unwrap();
    let mut sums = be.upload(&[0.5f64; EPOCHS * S]).unwrap(); // (E, S)
    let mut stopped = be.alloc::<u32>(S).unwrap(); // (S)
    let (mut idxs, mut labelss) = (Vec::new(), Vec::new());
    for j in 0..steps {
        let b = B.min(N - j * B);
        let mut idx = be.alloc::<u32>(S * b).unwrap(); // (S·b)
        let mut labels = be.alloc::<u32>(S * b).unwrap(); // (S·b)
        be.batch_rows(&clock, &perms, &base, &row_labels, B, &mut idx, &mut labels)
            .unwrap();
        idxs.push(be.download(&idx).unwrap());
        labelss.push(be.download(&labels).unwrap());
        // Student 1 diverges at the second step; the others' losses vary by step and student.
        let loss: Vec<f32> = (0..S)
            .map(|s| {
                if s == 1 && j == 1 {
                    f32::NAN
                } else {
                    0.1 + 0.37 * (s * steps + j) as f32
                }
            })
            .collect(); // (S)
        let loss = be.upload(&loss).unwrap();
        be.loss_watch(&mut clock, &loss, &mut sums, &mut stopped)
            .unwrap();
    }
    (
        idxs,
        labelss,
        be.download(&sums).unwrap(),
        be.download(&stopped).unwrap(),
        be.download(&clock).unwrap(),
    )
}

#[test]
fn step_kernels_equal_the_cpu_reference_bitwise() {
    let cuda = common::cuda_under_test("cuda_step");
    let want = run(&CpuBackend::new());
    let got = run(&cuda);
    assert_eq!(got.0, want.0, "batch_rows idx per step");
    assert_eq!(got.1, want.1, "batch_rows labels per step");
    let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&got.2), bits(&want.2), "loss_watch sums (E, S)");
    assert_eq!(got.3, want.3, "loss_watch stop marks");
    assert_eq!(got.4, want.4, "clock after the epoch");
    // The reference itself did something: student 1 stopped at its epoch's second step (1-based
    // global step), having summed only its first step's loss; epoch 0's row stayed untouched.
    let steps = N.div_ceil(B) as u32;
    assert_eq!(want.3, vec![0, steps + 2, 0]);
    assert_eq!(want.2[..S], [0.5; S]);
    let first_loss = 0.1f32 + 0.37 * (steps as f32);
    assert_eq!(want.2[S + 1], 0.5 + first_loss as f64);
    assert!(want.2[S] > 0.5 && want.2[S + 2] > want.2[S]);
}
