//! The augmentation kernels (cuda/aug.cu) and ZCA whitening on the device (cuda/zca.cu) against the
//! CPU reference (`aug::apply`, `aug::zca::whiten`) and the PyTorch golden file
//! ../shared/golden/aug_*.safetensors: each DSA op alone, DSA modes S and M, Mixup, CutMix, every
//! op chained in one student, on odd shapes (S = 3, B = 5, C = 1 and 3, 28 and 32 px, and a
//! non-square 20 × 24 so rows and columns cannot be swapped unnoticed). The draws are sampled on
//! the host and uploaded; the test downloads what the kernels read and checks it bit for bit.
//! Runs on a real GPU when one opens, else under emulation, and says which.
//!
//! `cargo test --release --test cuda_aug -- --nocapture` (the measured errors print per check).

mod aug_common;

mod common;

use aug_common::tolerances::{
    COLOR_TOL, COPY_TOL, DSA_M_END_TOL, MIXUP_TOL, WARP_TOL, ZCA_OUTPUT_REL_MAX,
};
use aug_common::{compare, golden_dir, golden_files, max_abs, read_draws, to_f64, Golden, Tol};
use ddr_fast::aug::draws::{
    cutmix_box, mix_weights, DSA_OPS, OP_COLOR, OP_CROP, OP_CUTMIX, OP_CUTOUT, OP_FLIP, OP_MIXUP,
    OP_ROTATE, OP_SCALE,
};
use ddr_fast::aug::{
    self, AugPlan, BatchDims, BatchDraws, DrawKey, DsaMode, DsaParams, ImageDraws, StudentDraws,
    Zca,
};
use ddr_fast::backend::cpu::CpuBackend;
use ddr_fast::backend::cuda::CudaBackend;
use ddr_fast::backend::Backend;

// ---- tolerances (CUDA vs the CPU reference) ---------------------------------------------------
/// flip, crop, cutout, CutMix: copies and zero fills; Mixup: two products and a sum, each rounded
/// once in f32 on both sides (the kernel uses __fmul_rn / __fadd_rn, so no FMA contraction).
const CPU_COPY_TOL: Tol = Tol::EXACT;
/// scale, rotate: the kernel repeats the reference's f32 operations in its order with contraction
/// off (grid point, source coordinate, floor, weights, four taps summed left to right), so they
/// are expected bitwise equal; one ulp of slack (2⁻²³ relative) for a GPU whose floorf or
/// division rounded differently, which would then show here as a nonzero measured error.
const CPU_WARP_TOL: Tol = Tol {
    atol: 1e-7,
    rtol: 1.2e-7,
};
/// color (and chains through it): the contrast mean is an f64 sum in another order (per thread,
/// then a block tree) than the reference's sequential f64 sum; rounded to f32 it can differ by one
/// ulp of the mean, which moves an output by ≤ 1.5·ulp(mean) + one rounding of the output.
const CPU_COLOR_TOL: Tol = Tol {
    atol: 1e-6,
    rtol: 2.4e-7,
};

// ---- device and helpers ----------------------------------------------------------------------

fn cuda() -> CudaBackend {
    common::cuda_under_test("cuda_aug")
}

/// The shapes of the CPU parity checks: (S, B, C, H, W).
const SHAPES: [BatchDims; 3] = [
    BatchDims {
        students: 3,
        batch: 5,
        c: 1,
        h: 28,
        w: 28,
    },
    BatchDims {
        students: 3,
        batch: 5,
        c: 3,
        h: 32,
        w: 32,
    },
    BatchDims {
        students: 3,
        batch: 5,
        c: 3,
        h: 20,
        w: 24,
    },
];

fn dsa(mode: DsaMode) -> AugPlan {
    AugPlan::Dsa {
        params: DsaParams::ddranking(),
        mode,
    }
}

/// Every student keyed (roles 10, 11, ...) at `step`.
fn keys(dims: BatchDims, step: u32) -> Vec<Option<DrawKey>> {
    (0..dims.students as u32)
        .map(|r| {
            Some(DrawKey {
                seed: 2024,
                run: 3,
                role: 10 + r,
                step,
            })
        })
        .collect()
}

/// Pixels like normalised images: N(0, 1)-ish values from a hash of the index.
fn batch(dims: BatchDims, salt: u64) -> Vec<f32> {
    (0..dims.len() as u64)
        .map(|i| {
            let mut z = (i ^ salt.rotate_left(32)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            z = (z ^ (z >> 31)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            let u = (z >> 40) as f32 / (1u64 << 24) as f32;
            (u - 0.5) * 4.0
        })
        .collect()
}

/// The bytes of a draws struct slice, for bit-for-bit comparison (−0.0 and NaN included).
fn bits<T: Copy>(v: &[T]) -> Vec<u8> {
    // SAFETY: StudentDraws / ImageDraws are #[repr(C)] 4-byte fields without padding.
    unsafe { std::slice::from_raw_parts(v.as_ptr() as *const u8, std::mem::size_of_val(v)) }
        .to_vec()
}

/// x augmented by the CPU reference and by the CUDA kernels (with the draws checked bit for bit
/// after the upload and again after the kernels ran).
fn both(
    be: &CudaBackend,
    plan: &AugPlan,
    draws: &BatchDraws,
    dims: BatchDims,
    x: &[f32],
) -> (Vec<f32>, Vec<f32>) {
    let mut want = x.to_vec();
    aug::apply(plan, draws, dims, &mut want).expect("CPU augment");
    let mut ws = be.aug_workspace(dims).expect("workspace");
    be.write_draws(draws, &mut ws).expect("upload draws");
    let mut xb = be.upload(x).expect("upload x");
    be.augment_with(plan, &mut ws, &mut xb)
        .expect("CUDA augment");
    let read = be.read_draws(&ws).expect("download draws");
    assert_eq!(bits(&read.students), bits(&draws.students), "student draws");
    assert_eq!(bits(&read.images), bits(&draws.images), "image draws");
    (be.download(&xb).expect("download x"), want)
}

/// Compare; panic with the worst index on failure, else return the largest |error|.
fn check(what: &str, got: &[f32], want: &[f32], tol: Tol) -> f64 {
    let (g, w) = (to_f64(got), to_f64(want));
    if let Err(e) = compare(what, &g, &w, tol) {
        panic!("{e}");
    }
    g.iter().zip(&w).fold(0.0, |m, (a, b)| m.max((a - b).abs()))
}

fn dims_tag(d: BatchDims) -> String {
    format!("S{} B{} C{} {}x{}", d.students, d.batch, d.c, d.h, d.w)
}

// ---- the draws -------------------------------------------------------------------------------

#[test]
fn the_kernels_read_bitwise_the_host_draws() {
    let be = cuda();
    let dims = SHAPES[1];
    for (plan, step) in [
        (dsa(DsaMode::All), 1),
        (dsa(DsaMode::Single), 2),
        (AugPlan::Mixup { alpha: 0.8 }, 3),
        (AugPlan::Cutmix { beta: 1.0 }, 4),
    ] {
        let d = aug::sample(&plan, &keys(dims, step), dims).unwrap();
        let mut ws = be.aug_workspace(dims).unwrap();
        be.write_draws(&d, &mut ws).unwrap();
        let read = be.read_draws(&ws).unwrap();
        assert_eq!(bits(&read.students), bits(&d.students), "{plan:?} students");
        assert_eq!(bits(&read.images), bits(&d.images), "{plan:?} images");
        // The draws are the host's values themselves, not a re-sampling: mutate one and see it.
        let mut d2 = d.clone();
        d2.images[7].scale_x = f32::from_bits(d2.images[7].scale_x.to_bits() ^ 1);
        be.write_draws(&d2, &mut ws).unwrap();
        assert_eq!(be.read_draws(&ws).unwrap().images[7], d2.images[7]);
    }
}

// ---- against the CPU reference ---------------------------------------------------------------

/// The tolerance of a batch whose students ran `ops`.
fn tol_for(ops: u32) -> Tol {
    if ops & OP_COLOR != 0 {
        CPU_COLOR_TOL
    } else if ops & (OP_SCALE | OP_ROTATE) != 0 {
        CPU_WARP_TOL
    } else {
        CPU_COPY_TOL
    }
}

#[test]
fn each_dsa_op_alone_matches_cpu() {
    let be = cuda();
    let names = ["scale", "rotate", "flip", "color", "crop", "cutout"];
    for (k, dims) in SHAPES.into_iter().enumerate() {
        let plan = dsa(DsaMode::All);
        let x = batch(dims, k as u64);
        for (op, name) in DSA_OPS.into_iter().zip(names) {
            let mut d = aug::sample(&plan, &keys(dims, 7 + k as u32), dims).unwrap();
            // Student 1 is left out: the kernels must not touch its batch.
            for (s, st) in d.students.iter_mut().enumerate() {
                st.ops = if s == 1 { 0 } else { op };
            }
            let (got, want) = both(&be, &plan, &d, dims, &x);
            let per = dims.len() / dims.students;
            assert_eq!(
                got[per..2 * per],
                x[per..2 * per],
                "{name}: student 1 changed"
            );
            assert_ne!(want, x, "{name} {}: the op changed nothing", dims_tag(dims));
            let err = check(
                &format!("{name} {}", dims_tag(dims)),
                &got,
                &want,
                tol_for(op),
            );
            eprintln!("cuda_aug: {name:>7} {}: max |err| {err:e}", dims_tag(dims));
        }
    }
}

#[test]
fn dsa_modes_s_and_m_match_cpu() {
    let be = cuda();
    for (k, dims) in SHAPES.into_iter().enumerate() {
        let x = batch(dims, 100 + k as u64);
        let d = aug::sample(&dsa(DsaMode::All), &keys(dims, 1), dims).unwrap();
        let (got, want) = both(&be, &dsa(DsaMode::All), &d, dims, &x);
        let err = check(
            &format!("mode M {}", dims_tag(dims)),
            &got,
            &want,
            CPU_COLOR_TOL,
        );
        eprintln!("cuda_aug:  mode M {}: max |err| {err:e}", dims_tag(dims));
        // Mode S over several steps: students run different ops in the same launches.
        let mut seen = 0u32;
        for step in 0..6 {
            let d = aug::sample(&dsa(DsaMode::Single), &keys(dims, step), dims).unwrap();
            let ops: Vec<u32> = d.students.iter().map(|s| s.ops).collect();
            seen |= ops.iter().fold(0, |a, o| a | o);
            let (got, want) = both(&be, &dsa(DsaMode::Single), &d, dims, &x);
            let tol = tol_for(ops.iter().fold(0, |a, o| a | o));
            let err = check(
                &format!("mode S step {step} ops {ops:?} {}", dims_tag(dims)),
                &got,
                &want,
                tol,
            );
            eprintln!(
                "cuda_aug:  mode S {} step {step} ops {ops:?}: max |err| {err:e}",
                dims_tag(dims)
            );
        }
        assert!(seen.count_ones() >= 3, "mode S drew too few ops: {seen:#b}");
    }
}

#[test]
fn mixup_and_cutmix_match_cpu() {
    let be = cuda();
    for (k, dims) in SHAPES.into_iter().enumerate() {
        let x = batch(dims, 200 + k as u64);
        for (plan, tol) in [
            (AugPlan::Mixup { alpha: 0.8 }, CPU_COPY_TOL),
            (AugPlan::Cutmix { beta: 1.0 }, CPU_COPY_TOL),
        ] {
            for step in 0..3 {
                let d = aug::sample(&plan, &keys(dims, step), dims).unwrap();
                let (got, want) = both(&be, &plan, &d, dims, &x);
                let err = check(
                    &format!("{plan:?} step {step} {}", dims_tag(dims)),
                    &got,
                    &want,
                    tol,
                );
                eprintln!(
                    "cuda_aug: {plan:?} {} step {step}: max |err| {err:e}",
                    dims_tag(dims)
                );
            }
        }
    }
}

/// Students with every parity of out-of-place ops (0 to 5 moves), so batches end in x and in
/// scratch and each op reads the right buffer: all DSA ops then Mixup then CutMix in one student.
#[test]
fn chained_ops_follow_apply_student_order() {
    let be = cuda();
    let dims = BatchDims {
        students: 6,
        ..SHAPES[2]
    };
    let plan = dsa(DsaMode::All);
    let mut d = aug::sample(&plan, &keys(dims, 9), dims).unwrap();
    let m = aug::sample(&AugPlan::Cutmix { beta: 1.0 }, &keys(dims, 9), dims).unwrap();
    let (lam_self, lam_other) = mix_weights(0.3);
    let all_dsa = DSA_OPS.iter().fold(0, |a, o| a | o);
    let ops = [
        OP_FLIP | OP_CUTOUT,             // 0 moves
        OP_SCALE,                        // 1
        OP_SCALE | OP_ROTATE | OP_COLOR, // 2
        all_dsa,                         // 3
        all_dsa | OP_MIXUP,              // 4
        all_dsa | OP_MIXUP | OP_CUTMIX,  // 5
    ];
    for (s, &o) in ops.iter().enumerate() {
        d.students[s] = StudentDraws {
            ops: o,
            mix_self: lam_self,
            mix_other: lam_other,
            ..m.students[s]
        };
        for b in 0..dims.batch {
            d.images[s * dims.batch + b].partner = m.images[s * dims.batch + b].partner;
        }
    }
    let x = batch(dims, 300);
    let (got, want) = both(&be, &plan, &d, dims, &x);
    let per = dims.len() / dims.students;
    for (s, &o) in ops.iter().enumerate() {
        let err = check(
            &format!("student {s} ops {o:#b}"),
            &got[s * per..(s + 1) * per],
            &want[s * per..(s + 1) * per],
            tol_for(o),
        );
        eprintln!("cuda_aug: chained ops {o:#010b}: max |err| {err:e}");
    }
}

#[test]
fn bad_draws_and_shapes_are_errors_on_cuda() {
    let be = cuda();
    let dims = SHAPES[0];
    let plan = AugPlan::Mixup { alpha: 1.0 };
    let d = aug::sample(&plan, &keys(dims, 0), dims).unwrap();
    let x = batch(dims, 1);
    let mut bad = d.clone();
    bad.images[3].partner = dims.batch as u32;
    let mut xb = be.upload(&x).unwrap();
    let e = be.augment(&plan, &bad, dims, &mut xb).unwrap_err();
    assert!(e.to_string().contains("partner"), "{e}");
    assert_eq!(be.download(&xb).unwrap(), x, "nothing may change");
    let mut short = be.upload(&x[1..]).unwrap();
    assert!(be.augment(&plan, &d, dims, &mut short).is_err());
    let few = BatchDraws {
        students: d.students[..2].to_vec(),
        images: d.images.clone(),
    };
    assert!(be.augment(&plan, &few, dims, &mut xb).is_err());
}

/// No student augmented (`AugPlan::None`, or no keys): x unchanged, shapes still checked.
#[test]
fn a_step_without_augmentation_leaves_x_alone() {
    let be = cuda();
    let dims = SHAPES[2];
    let x = batch(dims, 5);
    for (plan, keys) in [
        (AugPlan::None, keys(dims, 0)),
        (dsa(DsaMode::All), vec![None; dims.students]),
    ] {
        let d = aug::sample(&plan, &keys, dims).unwrap();
        let mut xb = be.upload(&x).unwrap();
        be.augment(&plan, &d, dims, &mut xb).unwrap();
        assert_eq!(be.download(&xb).unwrap(), x, "{plan:?}");
        let mut short = be.upload(&x[1..]).unwrap();
        assert!(be.augment(&plan, &d, dims, &mut short).is_err());
    }
}

/// `Backend::augment` (fresh workspace per call) gives what `augment_with` gives.
#[test]
fn backend_augment_equals_the_workspace_path() {
    let be = cuda();
    let dims = SHAPES[1];
    let plan = dsa(DsaMode::All);
    let d = aug::sample(&plan, &keys(dims, 5), dims).unwrap();
    let x = batch(dims, 400);
    let (via_ws, _) = both(&be, &plan, &d, dims, &x);
    let mut xb = be.upload(&x).unwrap();
    be.augment(&plan, &d, dims, &mut xb).unwrap();
    assert_eq!(be.download(&xb).unwrap(), via_ws);
}

// ---- ZCA -------------------------------------------------------------------------------------

/// Both devices' whitening vs an f64 evaluation of the same f32 inputs: a D-term f32 dot product
/// (after the f32 centring) is within γ_D·Σ|terms| of the exact value, γ_D = D·2⁻²⁴/(1 − D·2⁻²⁴)
/// (the classic bound for any summation order, FMA or not). Two such results differ by at most
/// twice that.
fn zca_case(n: usize, dim: usize, seed: u64) {
    let be = cuda();
    let fit = batch(
        BatchDims {
            students: 1,
            batch: 3 * dim,
            c: 1,
            h: 1,
            w: dim,
        },
        seed,
    );
    let zca = Zca::fit(&fit, 3 * dim, dim, aug::zca::ZCA_EPS).unwrap();
    let x: Vec<f32> = fit[..n * dim].iter().map(|v| v * 0.5 + 0.25).collect();
    let mut cpu = vec![0.0f32; x.len()];
    CpuBackend::new()
        .zca_whiten(dim, &zca.mean, &zca.transform, &x, &mut cpu)
        .unwrap();
    let (mb, tb, xb) = (
        be.upload(&zca.mean).unwrap(),
        be.upload(&zca.transform).unwrap(),
        be.upload(&x).unwrap(),
    );
    let mut ob = be.alloc::<f32>(x.len()).unwrap();
    be.zca_whiten(dim, &mb, &tb, &xb, &mut ob).unwrap();
    let gpu = be.download(&ob).unwrap();
    let u = f64::from(f32::EPSILON) / 2.0;
    let gamma = dim as f64 * u / (1.0 - dim as f64 * u);
    let mut worst = (0.0f64, 0usize);
    for r in 0..n {
        for j in 0..dim {
            let (mut exact, mut mag) = (0.0f64, 0.0f64);
            for k in 0..dim {
                let t =
                    f64::from(x[r * dim + k] - zca.mean[k]) * f64::from(zca.transform[k * dim + j]);
                exact += t;
                mag += t.abs();
            }
            let i = r * dim + j;
            let bound = gamma * mag + 1e-30;
            for (who, v) in [("cpu", cpu[i]), ("cuda", gpu[i])] {
                let err = (f64::from(v) - exact).abs();
                assert!(
                    err <= bound,
                    "zca {who} N{n} D{dim} at {i}: got {v} exact {exact} |err| {err:e} > {bound:e}"
                );
            }
            let d = f64::from((cpu[i] - gpu[i]).abs()) / bound;
            if d > worst.0 {
                worst = (d, i);
            }
        }
    }
    eprintln!(
        "cuda_aug: zca N{n} D{dim}: worst |cpu − cuda| = {:.3} of the per-element bound (at {})",
        worst.0, worst.1
    );
}

#[test]
fn zca_whiten_matches_cpu() {
    // D = 3·8·8 (one tile column plus a partial one) and 1·12·12 (a partial inner slice).
    zca_case(37, 192, 1);
    zca_case(70, 144, 2);
    // Bad shapes are errors.
    let be = cuda();
    let m = be.alloc::<f32>(4).unwrap();
    let t = be.alloc::<f32>(15).unwrap();
    let x = be.alloc::<f32>(8).unwrap();
    let mut o = be.alloc::<f32>(8).unwrap();
    assert!(be.zca_whiten(4, &m, &t, &x, &mut o).is_err());
}

// ---- the golden file -------------------------------------------------------------------------

/// x (N, C, H, W) of the golden file through `augment` as one student of N images.
fn run_golden(
    be: &CudaBackend,
    p: &DsaParams,
    st: StudentDraws,
    imgs: &[ImageDraws],
    shape: [usize; 4],
    x: &[f32],
) -> Vec<f32> {
    let [n, c, h, w] = shape;
    let dims = BatchDims {
        students: 1,
        batch: n,
        c,
        h,
        w,
    };
    let draws = BatchDraws {
        students: vec![st],
        images: imgs.to_vec(),
    };
    let plan = AugPlan::Dsa {
        params: *p,
        mode: DsaMode::All,
    };
    let mut xb = be.upload(x).expect("upload");
    be.augment(&plan, &draws, dims, &mut xb).expect("augment");
    be.download(&xb).expect("download")
}

fn one_op(ops: u32) -> StudentDraws {
    StudentDraws {
        ops,
        ..Default::default()
    }
}

fn golden_checks(be: &CudaBackend, g: &Golden) -> Result<Vec<String>, String> {
    let mut errs = Vec::new();
    let mut cmp = |what: &str, got: &[f32], key: &str, tol: Tol| -> Result<(), String> {
        let want = g.f32s(key)?;
        if let Err(e) = compare(what, &to_f64(got), &to_f64(&want), tol) {
            errs.push(e);
        }
        Ok(())
    };
    let shape = g.shape("input")?;
    let [n, c, h, w] = shape[..] else {
        return Err(format!("{}: input has shape {shape:?}", g.name));
    };
    let sh = [n, c, h, w];
    let p: DsaParams = serde_json::from_str(g.meta("dsa_params")?)
        .map_err(|e| format!("{}: dsa_params: {e}", g.name))?;
    let x = g.f32s("input")?;
    // Single ops: mode M's draws hold every field; the single-op tensors use their own draws.
    let single = read_draws(g, "", n, &p)?;
    for (op, name, tol) in [
        (OP_SCALE, "scale", WARP_TOL),
        (OP_ROTATE, "rotate", WARP_TOL),
        (OP_FLIP, "flip", COPY_TOL),
        (OP_COLOR, "color", COLOR_TOL),
        (OP_CROP, "crop", COPY_TOL),
        (OP_CUTOUT, "cutout", COPY_TOL),
    ] {
        let got = run_golden(be, &p, one_op(op), &single, sh, &x);
        cmp(
            &format!("cuda {name}.output"),
            &got,
            &format!("{name}.output"),
            tol,
        )?;
    }
    // DSA mode M end to end.
    let m = read_draws(g, "dsa_m.", n, &p)?;
    let all = DSA_OPS.iter().fold(0, |a, o| a | o);
    let got = run_golden(be, &p, one_op(all), &m, sh, &x);
    cmp(
        "cuda dsa_m.output (end to end)",
        &got,
        "dsa_m.output",
        DSA_M_END_TOL,
    )?;
    // Mixup and CutMix.
    let partners = |key: &str| -> Result<Vec<ImageDraws>, String> {
        Ok(g.i64s(key)?
            .iter()
            .map(|&q| ImageDraws {
                partner: q as u32,
                ..Default::default()
            })
            .collect())
    };
    let (a, b) = mix_weights(g.f64_scalar("mixup.lam")?);
    let st = StudentDraws {
        ops: OP_MIXUP,
        mix_self: a,
        mix_other: b,
        ..Default::default()
    };
    let got = run_golden(be, &p, st, &partners("mixup.perm")?, sh, &x);
    cmp("cuda mixup.output", &got, "mixup.output", MIXUP_TOL)?;
    let lam = g.f64_scalar("cutmix.lam")?;
    let (cx, cy) = (g.i64_scalar("cutmix.cx")?, g.i64_scalar("cutmix.cy")?);
    let (r0, r1, c0, c1) = cutmix_box(lam, h, w, cx as i32, cy as i32);
    let st = StudentDraws {
        ops: OP_CUTMIX,
        box_r0: r0,
        box_r1: r1,
        box_c0: c0,
        box_c1: c1,
        ..Default::default()
    };
    let got = run_golden(be, &p, st, &partners("cutmix.perm")?, sh, &x);
    cmp("cuda cutmix.output", &got, "cutmix.output", COPY_TOL)?;
    // ZCA: fitted on the host, applied on the device.
    let eps = serde_json::from_str::<serde_json::Value>(g.meta("zca_params")?)
        .map_err(|e| format!("{}: zca_params: {e}", g.name))?["eps"]
        .as_f64()
        .ok_or_else(|| format!("{}: zca_params has no number `eps`", g.name))?;
    let fs = g.shape("zca.fit_input")?;
    let (fn_, dim) = (fs[0], fs[1..].iter().product::<usize>());
    let zca = Zca::fit(&g.f32s("zca.fit_input")?, fn_, dim, eps).map_err(|e| e.to_string())?;
    let (mb, tb) = (
        be.upload(&zca.mean).map_err(|e| e.to_string())?,
        be.upload(&zca.transform).map_err(|e| e.to_string())?,
    );
    for (input, output) in [
        ("zca.fit_input", "zca.fit_output"),
        ("zca.input", "zca.output"),
    ] {
        let xi = g.f32s(input)?;
        let xb = be.upload(&xi).map_err(|e| e.to_string())?;
        let mut ob = be.alloc::<f32>(xi.len()).map_err(|e| e.to_string())?;
        be.zca_whiten(dim, &mb, &tb, &xb, &mut ob)
            .map_err(|e| e.to_string())?;
        let got = be.download(&ob).map_err(|e| e.to_string())?;
        let tol = Tol::abs(ZCA_OUTPUT_REL_MAX * max_abs(&to_f64(&g.f32s(output)?)));
        cmp(&format!("cuda {output}"), &got, output, tol)?;
    }
    Ok(errs)
}

#[test]
fn golden_aug_through_cuda() {
    let be = cuda();
    let dir = golden_dir();
    let mut failures = Vec::new();
    let mut seen = 0;
    for path in golden_files(&dir).unwrap_or_else(|e| panic!("{e}")) {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        let g = Golden::open(&name, &bytes).unwrap_or_else(|e| panic!("{e}"));
        if g.meta("golden_kind").ok() != Some("aug") {
            continue;
        }
        seen += 1;
        match golden_checks(&be, &g) {
            Ok(errs) if errs.is_empty() => eprintln!("cuda_aug: golden {name} ok"),
            Ok(errs) => failures.extend(errs.into_iter().map(|e| format!("{name}: {e}"))),
            Err(e) => failures.push(e),
        }
    }
    assert!(
        seen > 0,
        "no golden file of kind `aug` in {}",
        dir.display()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
