//! Timing of the fused instance norm → ReLU → 2×2 pool at the ConvNet-3 shapes (batch 100,
//! 128 channels, 32/16/8 px): fast path against the reference, wall and CPU time.
//! `cargo bench --bench norm_ops`.

use std::time::Instant;

use ddr_fast::backend::{Mode, NormGeom, NormKind, ParamAt};
use ddr_fast::cli::bench::process_cpu_seconds;
use ddr_fast::ops::norm_relu_pool::{cpu, cpu_fast};
use ddr_fast::ops::scratch::ScratchPool;

/// (wall ms, CPU ms) per call, after one warm-up call.
fn time_it(reps: usize, mut f: impl FnMut()) -> (f64, f64) {
    f();
    let (t, c) = (Instant::now(), process_cpu_seconds().unwrap_or(f64::NAN));
    for _ in 0..reps {
        f();
    }
    let cpu = process_cpu_seconds().unwrap_or(f64::NAN) - c;
    (
        t.elapsed().as_secs_f64() * 1e3 / reps as f64,
        cpu * 1e3 / reps as f64,
    )
}

fn main() {
    let pool = ScratchPool::new();
    let reps = 5;
    for hw in [32usize, 16, 8] {
        let g = NormGeom {
            students: 1,
            batch: 100,
            c: 128,
            h: hw,
            w: hw,
            kind: NormKind::Instance,
            eps: 1e-5,
            momentum: 0.1,
        };
        let n = g.batch * g.c * hw * hw;
        let at = ParamAt {
            weight: 0,
            bias: 128,
            row: 256,
        };
        let y: Vec<f32> = (0..n)
            .map(|i| ((i * 7919) % 1000) as f32 * 0.002 - 1.0)
            .collect(); // (S, B, c, h, w)
        let mut params = vec![1f32; 256]; // γ = 1, β = 0
        params[128..].fill(0.0);
        let dout: Vec<f32> = (0..n / 4)
            .map(|i| ((i * 104729) % 1000) as f32 * 1e-3 - 0.5)
            .collect();
        let (mut st, mut out, mut dy, mut gr) = (
            vec![0f32; 2 * g.batch * g.c],
            vec![0f32; n / 4],
            vec![0f32; n],
            vec![0f32; 256],
        );
        let nr = ParamAt {
            weight: 0,
            bias: 0,
            row: 0,
        };
        let f = time_it(reps, || {
            cpu_fast::forward(
                &g,
                Mode::Train,
                &y,
                &params,
                at,
                &mut [],
                nr,
                &mut st,
                &mut out,
            )
            .unwrap()
        });
        let fr = time_it(reps, || {
            cpu::forward(
                &g,
                Mode::Train,
                &y,
                &params,
                at,
                &mut [],
                nr,
                &mut st,
                &mut out,
            )
            .unwrap()
        });
        let b = time_it(reps, || {
            cpu_fast::backward(&g, &y, &params, at, &st, &dout, &mut dy, &mut gr, &pool).unwrap()
        });
        let br = time_it(reps, || {
            cpu::backward(&g, &y, &params, at, &st, &dout, &mut dy, &mut gr).unwrap()
        });
        println!(
            "{hw:2}px forward fast {:7.2} ms wall {:7.2} ms CPU | reference {:7.2} / {:7.2}",
            f.0, f.1, fr.0, fr.1
        );
        println!(
            "{hw:2}px backward fast {:7.2} ms wall {:7.2} ms CPU | reference {:7.2} / {:7.2}",
            b.0, b.1, br.0, br.1
        );
    }
}
