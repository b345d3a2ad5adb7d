//! Timing sweep of the GEMM conv fast path at the ConvNet-3 shapes (width 128, batch 100, 32 px):
//! achieved GFLOP/s per layer and pass, to set against the ~170–200 GFLOP/s `gemm` reaches on this
//! 2-core machine. Plain timing (no criterion) so a sweep takes seconds:
//! `cargo bench --bench conv_ops`.

use std::time::Instant;

use ddr_fast::backend::{ConvGeom, ParamAt};
use ddr_fast::ops::conv::cpu_fast::{
    backward_input_with, backward_weight_with, forward_with, ConvPath,
};
use ddr_fast::ops::scratch::ScratchPool;

/// CPU seconds this process's threads have run (the scheduler's nanosecond counters in
/// /proc/self/task/*/schedstat): on a machine shared with other jobs, wall time overstates the
/// cost, so the sweep also reports GFLOP/s per CPU-second × threads.
fn cpu_seconds() -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return f64::NAN;
    };
    let mut ns = 0u64;
    for t in tasks.flatten() {
        let stat = std::fs::read_to_string(t.path().join("schedstat")).unwrap_or_default();
        ns += stat
            .split_whitespace()
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
    }
    ns as f64 * 1e-9
}

/// (wall seconds, CPU seconds) per call, after one warm-up call.
fn time_it(reps: usize, mut f: impl FnMut()) -> (f64, f64) {
    f(); // warm-up: fills the scratch pool and the caches
    let (t, c) = (Instant::now(), cpu_seconds());
    for _ in 0..reps {
        f();
    }
    (
        t.elapsed().as_secs_f64() / reps as f64,
        (cpu_seconds() - c) / reps as f64,
    )
}

fn main() {
    // An optional argument keeps only the rows whose label contains it, e.g. "Winograd cin 128 16".
    let filter = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .unwrap_or_default();
    let reps = 5;
    let pool = ScratchPool::new();
    println!("threads {}", rayon::current_num_threads());
    for (cin, hw) in [(3usize, 32usize), (128, 16), (128, 8)] {
        let g = ConvGeom {
            students: 1,
            batch: 100,
            cin,
            cout: 128,
            h: hw,
            w: hw,
            pad: 1,
        };
        let wlen = g.cout * g.cin * 9;
        let at = ParamAt {
            weight: 0,
            bias: wlen,
            row: wlen + g.cout,
        };
        let x = vec![0.5f32; g.batch * cin * hw * hw]; // (S, B, cin, h, w)
        let params = vec![0.01f32; at.row]; // (S, P)
        let mut y = vec![0f32; g.batch * g.cout * hw * hw]; // (S, B, cout, h, w)
        let mut dx = vec![0f32; x.len()];
        let mut grads = vec![0f32; at.row];
        let flop = 2.0 * (g.batch * g.cout * hw * hw * 9 * cin) as f64;
        for path in [ConvPath::Im2col, ConvPath::Winograd] {
            if path.resolve(&g) != path || !format!("{path:?} cin {cin} {hw}px").contains(&filter) {
                continue;
            }
            let fwd = time_it(reps, || {
                forward_with(path, &g, &x, &params, at, &mut y, &pool).unwrap()
            });
            let wgr = time_it(reps, || {
                backward_weight_with(path, &g, &x, &y, at, &mut grads, &pool).unwrap()
            });
            let dxt = time_it(reps, || {
                backward_input_with(path, &g, &params, at, &y, &mut dx, &pool).unwrap()
            });
            let th = rayon::current_num_threads() as f64;
            for (name, (wall, cpu)) in [("forward", fwd), ("weight grad", wgr), ("input grad", dxt)]
            {
                println!(
                "{path:?} cin {cin:3} {hw:2}px {name:11}: {:7.2} ms wall {:6.1} GFLOP/s | {:7.2} ms CPU {:6.1} GFLOP/s per {th} busy threads",
                wall * 1e3,
                flop / wall / 1e9,
                cpu * 1e3,
                flop / (cpu / th) / 1e9
            );
            }
        }
    }
}
