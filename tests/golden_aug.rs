//! Parity of ddr-fast's CPU augmentations with DD-Ranking's PyTorch ones: for every golden file
//! of kind `aug` in `$DDR_GOLDEN_DIR` (../shared/golden/README.md §3), feed the stored draws to each
//! op and compare every output, grid, intermediate, DSA mode-M stage, Mixup, CutMix and ZCA
//! tensor with the tolerances of README §4.5. Sizes come from the file, never from constants.
//! Run: `cargo test --release --test golden_aug`.

mod aug_common;

use aug_common::tolerances::*;
use aug_common::{compare, golden_dir, golden_files, max_abs, read_draws, to_f64, Golden, Tol};
use ddr_fast::aug::draws::{cutmix_box, cutmix_sides, mix_weights, DSA_OPS, OP_CUTMIX, OP_MIXUP};
use ddr_fast::aug::geometric::{affine_grid, rotate_theta, scale_theta};
use ddr_fast::aug::plan::apply_student;
use ddr_fast::aug::shift::cutout_mask;
use ddr_fast::aug::{color, geometric, shift, DsaParams, ImageDims, ImageDraws, StudentDraws, Zca};

#[test]
fn golden_aug() {
    let dir = golden_dir();
    let files = golden_files(&dir).unwrap_or_else(|e| panic!("{e}"));
    let mut failures: Vec<String> = Vec::new();
    let mut aug_files = 0;
    for path in &files {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) => {
                failures.push(format!("{name}: cannot read: {e}"));
                continue;
            }
        };
        let g = match Golden::open(&name, &bytes) {
            Ok(g) => g,
            Err(e) => {
                failures.push(e);
                continue;
            }
        };
        match g.meta("golden_kind") {
            Ok("aug") => {
                aug_files += 1;
                match check_aug(&g) {
                    Ok(errs) if errs.is_empty() => println!("golden_aug: {name} ok"),
                    Ok(errs) => failures.extend(errs.into_iter().map(|e| format!("{name}: {e}"))),
                    Err(e) => failures.push(e),
                }
            }
            Ok("model") => {} // the `golden` test's files
            Ok(other) => failures.push(format!("{name}: unknown golden_kind `{other}`")),
            Err(e) => failures.push(e),
        }
    }
    if aug_files == 0 {
        failures.push(format!("no golden file of kind `aug` in {}", dir.display()));
    }
    assert!(
        failures.is_empty(),
        "golden_aug failures:\n{}",
        failures.join("\n")
    );
}

/// All checks of one aug file: Err for a missing / malformed tensor, Ok(mismatches) otherwise.
fn check_aug(g: &Golden) -> Result<Vec<String>, String> {
    let mut errs = Vec::new();
    let shape = g.shape("input")?;
    let [n, c, h, w] = shape[..] else {
        return Err(format!(
            "{}: input has shape {shape:?}, expected [N, C, H, W]",
            g.name
        ));
    };
    let dims = ImageDims { n, c, h, w };
    let p: DsaParams = serde_json::from_str(g.meta("dsa_params")?)
        .map_err(|e| format!("{}: dsa_params: {e}", g.name))?;
    let x = g.f32s("input")?;
    check_single_ops(g, dims, &p, &x, &mut errs)?;
    check_dsa_m(g, dims, &p, &x, &mut errs)?;
    check_mix(g, dims, &x, &mut errs)?;
    check_zca(g, &mut errs)?;
    Ok(errs)
}

fn push(errs: &mut Vec<String>, r: Result<(), String>) {
    if let Err(e) = r {
        errs.push(e);
    }
}

/// got (f32) vs the golden F32 tensor `key`.
fn cmp_f32(
    g: &Golden,
    errs: &mut Vec<String>,
    key: &str,
    got: &[f32],
    tol: Tol,
) -> Result<(), String> {
    cmp_as(g, errs, key, key, got, tol)
}

/// got (f32) vs the golden F32 tensor `key`, reported as `label`.
fn cmp_as(
    g: &Golden,
    errs: &mut Vec<String>,
    label: &str,
    key: &str,
    got: &[f32],
    tol: Tol,
) -> Result<(), String> {
    let want = g.f32s(key)?;
    push(errs, compare(label, &to_f64(got), &to_f64(&want), tol));
    Ok(())
}

fn draws_of(n: usize) -> Vec<ImageDraws> {
    vec![ImageDraws::default(); n]
}

/// The stored integer draws lie in the ranges our sampler uses (same formulas as DSA).
fn check_int_ranges(
    prefix: &str,
    d: &[ImageDraws],
    p: &DsaParams,
    dims: ImageDims,
    errs: &mut Vec<String>,
) {
    let (sx, sy) = (p.crop_shift(dims.h), p.crop_shift(dims.w));
    let (kx, ky) = (p.cutout_size(dims.h), p.cutout_size(dims.w));
    for (i, e) in d.iter().enumerate() {
        if e.crop_x.abs() > sx || e.crop_y.abs() > sy {
            errs.push(format!(
                "{prefix}crop translation ({}, {}) of image {i} outside ±({sx}, {sy})",
                e.crop_x, e.crop_y
            ));
        }
        let (hx, hy) = (dims.h as i32 + 1 - kx % 2, dims.w as i32 + 1 - ky % 2);
        if !(0..hx).contains(&e.cutout_x) || !(0..hy).contains(&e.cutout_y) {
            errs.push(format!(
                "{prefix}cutout offset ({}, {}) of image {i} outside [0, {hx}) × [0, {hy})",
                e.cutout_x, e.cutout_y
            ));
        }
    }
}

fn check_single_ops(
    g: &Golden,
    dims: ImageDims,
    p: &DsaParams,
    x: &[f32],
    errs: &mut Vec<String>,
) -> Result<(), String> {
    let n = dims.n;
    let mut out = vec![0.0f32; dims.len()];
    // scale and rotate: θ, grid, output.
    for op in ["scale", "rotate"] {
        let mut d = draws_of(n);
        let thetas: Vec<[f32; 6]> = if op == "scale" {
            let (sx, sy) = (g.f32s("scale.sx")?, g.f32s("scale.sy")?);
            (0..n)
                .map(|i| {
                    d[i].scale_x = sx[i];
                    d[i].scale_y = sy[i];
                    scale_theta(sx[i], sy[i])
                })
                .collect()
        } else {
            let angle = g.f32s("rotate.angle")?;
            (0..n)
                .map(|i| {
                    let (s, c) = angle[i].sin_cos();
                    d[i].rot_cos = c;
                    d[i].rot_sin = s;
                    rotate_theta(c, s)
                })
                .collect()
        };
        cmp_f32(g, errs, &format!("{op}.theta"), &thetas.concat(), THETA_TOL)?;
        let mut grid = vec![0.0f32; n * dims.h * dims.w * 2];
        for (i, t) in thetas.iter().enumerate() {
            affine_grid(
                t,
                dims.h,
                dims.w,
                &mut grid[i * dims.h * dims.w * 2..(i + 1) * dims.h * dims.w * 2],
            );
        }
        cmp_f32(g, errs, &format!("{op}.grid"), &grid, GRID_TOL)?;
        let r = if op == "scale" {
            geometric::scale(dims, &d, x, &mut out)
        } else {
            geometric::rotate(dims, &d, x, &mut out)
        };
        r.map_err(|e| format!("{op}: {e}"))?;
        cmp_f32(g, errs, &format!("{op}.output"), &out, WARP_TOL)?;
    }
    // flip: the decision from randf, then the mirror.
    let randf = g.f32s("flip.randf")?;
    let mut d = draws_of(n);
    let mask: Vec<f64> = (0..n)
        .map(|i| {
            d[i].flip = ((randf[i] as f64) < p.flip) as u32;
            d[i].flip as f64
        })
        .collect();
    push(
        errs,
        compare("flip.mask", &mask, &to_f64(&g.u8s("flip.mask")?), COPY_TOL),
    );
    let mut y = x.to_vec();
    shift::flip(dims, &d, &mut y).map_err(|e| e.to_string())?;
    cmp_f32(g, errs, "flip.output", &y, COPY_TOL)?;
    // brightness, saturation, contrast alone.
    for (op, key) in [
        ("brightness", "randb"),
        ("saturation", "rands"),
        ("contrast", "randc"),
    ] {
        let u = g.f32s(&format!("{op}.{key}"))?;
        let d: Vec<ImageDraws> = u
            .iter()
            .map(|&v| ImageDraws {
                brightness: v,
                saturation: v,
                contrast: v,
                ..Default::default()
            })
            .collect();
        let mut y = x.to_vec();
        let r = match op {
            "brightness" => color::brightness(dims, &d, p, &mut y),
            "saturation" => color::saturation(dims, &d, p, &mut y),
            _ => color::contrast(dims, &d, p, &mut y),
        };
        r.map_err(|e| format!("{op}: {e}"))?;
        cmp_f32(g, errs, &format!("{op}.output"), &y, COLOR_OP_TOL)?;
    }
    // color, stage by stage from our own previous stage.
    let (rb, rs, rc) = (
        g.f32s("color.randb")?,
        g.f32s("color.rands")?,
        g.f32s("color.randc")?,
    );
    let d: Vec<ImageDraws> = (0..n)
        .map(|i| ImageDraws {
            brightness: rb[i],
            saturation: rs[i],
            contrast: rc[i],
            ..Default::default()
        })
        .collect();
    let mut y = x.to_vec();
    color::brightness(dims, &d, p, &mut y).map_err(|e| e.to_string())?;
    cmp_f32(g, errs, "color.after_brightness", &y, COLOR_TOL)?;
    color::saturation(dims, &d, p, &mut y).map_err(|e| e.to_string())?;
    cmp_f32(g, errs, "color.after_saturation", &y, COLOR_TOL)?;
    color::contrast(dims, &d, p, &mut y).map_err(|e| e.to_string())?;
    cmp_f32(g, errs, "color.output", &y, COLOR_TOL)?;
    let mut z = x.to_vec();
    color::color(dims, &d, p, &mut z).map_err(|e| e.to_string())?;
    cmp_as(
        g,
        errs,
        "color.output (fused color op)",
        "color.output",
        &z,
        COLOR_TOL,
    )?;
    // crop and cutout.
    let (tx, ty) = (g.i64s("crop.translation_x")?, g.i64s("crop.translation_y")?);
    let (ox, oy) = (g.i64s("cutout.offset_x")?, g.i64s("cutout.offset_y")?);
    let d: Vec<ImageDraws> = (0..n)
        .map(|i| ImageDraws {
            crop_x: tx[i] as i32,
            crop_y: ty[i] as i32,
            cutout_x: ox[i] as i32,
            cutout_y: oy[i] as i32,
            ..Default::default()
        })
        .collect();
    check_int_ranges("", &d, p, dims, errs);
    shift::crop(dims, &d, x, &mut out).map_err(|e| e.to_string())?;
    cmp_f32(g, errs, "crop.output", &out, COPY_TOL)?;
    let mut mask = vec![0.0f32; n * dims.h * dims.w];
    for (i, di) in d.iter().enumerate() {
        cutout_mask(
            di,
            p,
            dims.h,
            dims.w,
            &mut mask[i * dims.h * dims.w..(i + 1) * dims.h * dims.w],
        );
    }
    cmp_f32(g, errs, "cutout.mask", &mask, COPY_TOL)?;
    let mut y = x.to_vec();
    shift::cutout(dims, &d, p, &mut y).map_err(|e| e.to_string())?;
    cmp_f32(g, errs, "cutout.output", &y, COPY_TOL)?;
    Ok(())
}

fn check_dsa_m(
    g: &Golden,
    dims: ImageDims,
    p: &DsaParams,
    x: &[f32],
    errs: &mut Vec<String>,
) -> Result<(), String> {
    let d = read_draws(g, "dsa_m.", dims.n, p)?;
    check_int_ranges("dsa_m.", &d, p, dims, errs);
    let mut out = vec![0.0f32; dims.len()];
    // One stage at a time, each from the stored previous stage.
    geometric::scale(dims, &d, x, &mut out).map_err(|e| e.to_string())?;
    cmp_f32(g, errs, "dsa_m.after_scale", &out, WARP_TOL)?;
    geometric::rotate(dims, &d, &g.f32s("dsa_m.after_scale")?, &mut out)
        .map_err(|e| e.to_string())?;
    cmp_f32(g, errs, "dsa_m.after_rotate", &out, WARP_TOL)?;
    let mut y = g.f32s("dsa_m.after_rotate")?;
    shift::flip(dims, &d, &mut y).map_err(|e| e.to_string())?;
    cmp_f32(g, errs, "dsa_m.after_flip", &y, COPY_TOL)?;
    let mut y = g.f32s("dsa_m.after_flip")?;
    color::color(dims, &d, p, &mut y).map_err(|e| e.to_string())?;
    cmp_f32(g, errs, "dsa_m.after_color", &y, COLOR_TOL)?;
    shift::crop(dims, &d, &g.f32s("dsa_m.after_color")?, &mut out).map_err(|e| e.to_string())?;
    cmp_f32(g, errs, "dsa_m.after_crop", &out, COPY_TOL)?;
    let mut y = g.f32s("dsa_m.after_crop")?;
    shift::cutout(dims, &d, p, &mut y).map_err(|e| e.to_string())?;
    cmp_as(
        g,
        errs,
        "dsa_m.output (cutout stage from after_crop)",
        "dsa_m.output",
        &y,
        COPY_TOL,
    )?;
    // End to end through the cohort path, all six ops in mode-M order.
    let all = StudentDraws {
        ops: DSA_OPS.iter().fold(0, |a, o| a | o),
        ..Default::default()
    };
    let mut y = x.to_vec();
    apply_student(p, &all, &d, dims, &mut y).map_err(|e| e.to_string())?;
    let want = g.f32s("dsa_m.output")?;
    push(
        errs,
        compare(
            "dsa_m.output (end to end)",
            &to_f64(&y),
            &to_f64(&want),
            DSA_M_END_TOL,
        ),
    );
    Ok(())
}

fn check_perm(name: &str, perm: &[i64], n: usize) -> Result<Vec<u32>, String> {
    let mut sorted = perm.to_vec();
    sorted.sort_unstable();
    if sorted != (0..n as i64).collect::<Vec<_>>() {
        return Err(format!("{name} {perm:?} is not a permutation of 0..{n}"));
    }
    Ok(perm.iter().map(|&v| v as u32).collect())
}

fn check_mix(g: &Golden, dims: ImageDims, x: &[f32], errs: &mut Vec<String>) -> Result<(), String> {
    let p = DsaParams::ddranking(); // unused by the mixes
                                    // Mixup.
    let lam = g.f64_scalar("mixup.lam")?;
    let perm = check_perm("mixup.perm", &g.i64s("mixup.perm")?, dims.n)?;
    let d: Vec<ImageDraws> = perm
        .iter()
        .map(|&q| ImageDraws {
            partner: q,
            ..Default::default()
        })
        .collect();
    let (a, b) = mix_weights(lam);
    let st = StudentDraws {
        ops: OP_MIXUP,
        mix_self: a,
        mix_other: b,
        ..Default::default()
    };
    let mut y = x.to_vec();
    apply_student(&p, &st, &d, dims, &mut y).map_err(|e| e.to_string())?;
    cmp_f32(g, errs, "mixup.output", &y, MIXUP_TOL)?;
    // CutMix: sides and box from λ and the centre, then the paste.
    let lam = g.f64_scalar("cutmix.lam")?;
    let perm = check_perm("cutmix.perm", &g.i64s("cutmix.perm")?, dims.n)?;
    let (cx, cy) = (
        g.i64_scalar("cutmix.cx")? as i32,
        g.i64_scalar("cutmix.cy")? as i32,
    );
    let (cut_r, cut_c) = cutmix_sides(lam, dims.h, dims.w);
    let (r0, r1, c0, c1) = cutmix_box(lam, dims.h, dims.w, cx, cy);
    let got = [cut_r, cut_c, r0, c0, r1, c1].map(|v| v as f64);
    let mut want = [0.0; 6];
    for (slot, key) in want.iter_mut().zip([
        "cutmix.cut_w",
        "cutmix.cut_h",
        "cutmix.bbx1",
        "cutmix.bby1",
        "cutmix.bbx2",
        "cutmix.bby2",
    ]) {
        *slot = g.i64_scalar(key)? as f64;
    }
    push(
        errs,
        compare(
            "cutmix [cut_w, cut_h, bbx1, bby1, bbx2, bby2]",
            &got,
            &want,
            COPY_TOL,
        ),
    );
    let d: Vec<ImageDraws> = perm
        .iter()
        .map(|&q| ImageDraws {
            partner: q,
            ..Default::default()
        })
        .collect();
    let st = StudentDraws {
        ops: OP_CUTMIX,
        box_r0: r0,
        box_r1: r1,
        box_c0: c0,
        box_c1: c1,
        ..Default::default()
    };
    let mut y = x.to_vec();
    apply_student(&p, &st, &d, dims, &mut y).map_err(|e| e.to_string())?;
    cmp_f32(g, errs, "cutmix.output", &y, COPY_TOL)?;
    Ok(())
}

fn check_zca(g: &Golden, errs: &mut Vec<String>) -> Result<(), String> {
    let params: serde_json::Value = serde_json::from_str(g.meta("zca_params")?)
        .map_err(|e| format!("{}: zca_params: {e}", g.name))?;
    let eps = params["eps"]
        .as_f64()
        .ok_or_else(|| format!("{}: zca_params has no number `eps`", g.name))?;
    let shape = g.shape("zca.fit_input")?;
    if shape.len() < 2 {
        return Err(format!("{}: zca.fit_input has shape {shape:?}", g.name));
    }
    let (n, dim) = (shape[0], shape[1..].iter().product::<usize>());
    let fit_input = g.f32s("zca.fit_input")?;
    let zca = Zca::fit(&fit_input, n, dim, eps).map_err(|e| format!("zca fit: {e}"))?;
    cmp_f32(g, errs, "zca.mean", &zca.mean, ZCA_MEAN_TOL)?;
    let rel_max = |key: &str, rel: f64| -> Result<Tol, String> {
        Ok(Tol::abs(rel * max_abs(&to_f64(&g.f32s(key)?))))
    };
    cmp_f32(
        g,
        errs,
        "zca.transform",
        &zca.transform,
        rel_max("zca.transform", ZCA_TRANSFORM_REL_MAX)?,
    )?;
    let mut out = vec![0.0f32; fit_input.len()];
    zca.apply(&fit_input, &mut out)
        .map_err(|e| format!("zca apply: {e}"))?;
    cmp_f32(
        g,
        errs,
        "zca.fit_output",
        &out,
        rel_max("zca.fit_output", ZCA_OUTPUT_REL_MAX)?,
    )?;
    let input = g.f32s("zca.input")?;
    let mut out = vec![0.0f32; input.len()];
    zca.apply(&input, &mut out)
        .map_err(|e| format!("zca apply: {e}"))?;
    cmp_f32(
        g,
        errs,
        "zca.output",
        &out,
        rel_max("zca.output", ZCA_OUTPUT_REL_MAX)?,
    )?;
    Ok(())
}
