//! Helpers of the `golden_aug` test: locating the golden files, reading safetensors tensors by
//! name with their dtype checked, and the one tolerance comparison (|got − want| ≤ atol + rtol·|want|)
//! that reports the worst index. Shared by `golden_aug` (CPU) and `cuda_aug` (CUDA backend), so
//! both hold the golden file to the same tolerances and read its draws the same way.
#![allow(dead_code)] // each test target uses a subset

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use ddr_fast::aug::{DsaParams, ImageDraws};
use safetensors::{Dtype, SafeTensors};

/// `$DDR_GOLDEN_DIR`, else `<crate>/../shared/golden`.
pub fn golden_dir() -> PathBuf {
    match std::env::var_os("DDR_GOLDEN_DIR") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join("shared")
            .join("golden"),
    }
}

/// Every `*.safetensors` in the directory, sorted by name.
pub fn golden_files(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        format!(
            "cannot list golden directory {}: {e} (set DDR_GOLDEN_DIR)",
            dir.display()
        )
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .collect();
    files.sort();
    Ok(files)
}

/// One opened golden file.
pub struct Golden<'a> {
    pub name: String,
    pub st: SafeTensors<'a>,
    pub meta: HashMap<String, String>,
}

impl<'a> Golden<'a> {
    pub fn open(name: &str, bytes: &'a [u8]) -> Result<Self, String> {
        let (_, header) = SafeTensors::read_metadata(bytes)
            .map_err(|e| format!("{name}: unreadable header: {e}"))?;
        let meta = header.metadata().clone().unwrap_or_default();
        let st = SafeTensors::deserialize(bytes).map_err(|e| format!("{name}: unreadable: {e}"))?;
        Ok(Golden {
            name: name.to_string(),
            st,
            meta,
        })
    }

    pub fn meta(&self, key: &str) -> Result<&str, String> {
        self.meta
            .get(key)
            .map(String::as_str)
            .ok_or_else(|| format!("{}: metadata key `{key}` missing", self.name))
    }

    fn view(&self, key: &str, dtype: Dtype) -> Result<(Vec<usize>, &'a [u8]), String> {
        let t = self
            .st
            .tensor(key)
            .map_err(|e| format!("{}: tensor `{key}`: {e}", self.name))?;
        if t.dtype() != dtype {
            return Err(format!(
                "{}: tensor `{key}` is {:?}, expected {dtype:?}",
                self.name,
                t.dtype()
            ));
        }
        Ok((t.shape().to_vec(), t.data()))
    }

    pub fn shape(&self, key: &str) -> Result<Vec<usize>, String> {
        let t = self
            .st
            .tensor(key)
            .map_err(|e| format!("{}: tensor `{key}`: {e}", self.name))?;
        Ok(t.shape().to_vec())
    }

    pub fn f32s(&self, key: &str) -> Result<Vec<f32>, String> {
        let (_, d) = self.view(key, Dtype::F32)?;
        Ok(d.chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect())
    }

    pub fn f64s(&self, key: &str) -> Result<Vec<f64>, String> {
        let (_, d) = self.view(key, Dtype::F64)?;
        Ok(d.chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")))
            .collect())
    }

    pub fn i64s(&self, key: &str) -> Result<Vec<i64>, String> {
        let (_, d) = self.view(key, Dtype::I64)?;
        Ok(d.chunks_exact(8)
            .map(|b| i64::from_le_bytes(b.try_into().expect("8 bytes")))
            .collect())
    }

    pub fn u8s(&self, key: &str) -> Result<Vec<u8>, String> {
        Ok(self.view(key, Dtype::U8)?.1.to_vec())
    }

    /// A one-element I64 / F64 tensor as a scalar.
    pub fn i64_scalar(&self, key: &str) -> Result<i64, String> {
        let v = self.i64s(key)?;
        v.first()
            .copied()
            .filter(|_| v.len() == 1)
            .ok_or_else(|| format!("{}: `{key}` is not one value", self.name))
    }
    pub fn f64_scalar(&self, key: &str) -> Result<f64, String> {
        let v = self.f64s(key)?;
        v.first()
            .copied()
            .filter(|_| v.len() == 1)
            .ok_or_else(|| format!("{}: `{key}` is not one value", self.name))
    }
}

/// A tolerance: pass when |got − want| ≤ atol + rtol·|want|.
#[derive(Clone, Copy, Debug)]
pub struct Tol {
    pub atol: f64,
    pub rtol: f64,
}

impl Tol {
    pub const EXACT: Tol = Tol {
        atol: 0.0,
        rtol: 0.0,
    };
    pub const fn abs(atol: f64) -> Tol {
        Tol { atol, rtol: 0.0 }
    }
}

/// Compares got with want; on failure returns a message with the number of failing elements, the
/// worst index (largest |err| over its allowance) and the worst absolute error.
pub fn compare(what: &str, got: &[f64], want: &[f64], tol: Tol) -> Result<(), String> {
    if got.len() != want.len() {
        return Err(format!(
            "{what}: {} values, the golden tensor has {}",
            got.len(),
            want.len()
        ));
    }
    let mut fails = 0usize;
    let mut worst: Option<(usize, f64)> = None;
    let mut max_err = 0.0f64;
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let err = (g - w).abs();
        let allow = tol.atol + tol.rtol * w.abs();
        max_err = max_err.max(if err.is_nan() { f64::INFINITY } else { err });
        // NaN errors fail too.
        if err.is_nan() || err > allow {
            fails += 1;
            let ratio = if allow > 0.0 {
                err / allow
            } else {
                f64::INFINITY
            };
            let ratio = if ratio.is_nan() { f64::INFINITY } else { ratio };
            if worst.is_none_or(|(_, r)| ratio > r) {
                worst = Some((i, ratio));
            }
        }
    }
    match worst {
        None => Ok(()),
        Some((i, _)) => Err(format!(
            "{what}: {fails} of {} values outside atol {:e} + rtol {:e}·|want|; worst index {i}: got {} want {} (|err| {:e}); max |err| {:e}",
            got.len(),
            tol.atol,
            tol.rtol,
            got[i],
            want[i],
            (got[i] - want[i]).abs(),
            max_err
        )),
    }
}

pub fn to_f64<T: Copy + Into<f64>>(v: &[T]) -> Vec<f64> {
    v.iter().map(|&x| x.into()).collect()
}

/// max |v| (for tolerances relative to the largest value).
pub fn max_abs(v: &[f64]) -> f64 {
    v.iter().fold(0.0, |m, x| m.max(x.abs()))
}

/// The golden file's tolerances (../shared/golden/README.md §4.5).
pub mod tolerances {
    use super::Tol;

    /// flip, crop, cutout (and its mask), CutMix, every integer draw: pure copies and zero fills.
    pub const COPY_TOL: Tol = Tol::EXACT;
    /// Mixup computed as f32(λ)·x + f32(1 − λ)·x[perm] in f32 is PyTorch's own arithmetic.
    pub const MIXUP_TOL: Tol = Tol::EXACT;
    /// brightness, saturation, contrast: one mean and one multiply-add on N(0,1) data (measured
    /// float64 replay gap ≤ 5.9e-7).
    pub const COLOR_OP_TOL: Tol = Tol::abs(2e-6);
    /// color and its intermediates: three chained ops (measured ≤ 1.0e-6).
    pub const COLOR_TOL: Tol = Tol::abs(4e-6);
    /// scale / rotate outputs: the f32 source coordinate is rounded (~2e-6 px at 32 px) and N(0,1)
    /// pixels change by up to ~5 per pixel (float64 replay ≤ 1.6e-5 at 32 px, 2.6e-5 at 64 px).
    pub const WARP_TOL: Tol = Tol::abs(5e-5);
    /// affine grids: three f32 products summed in another order than PyTorch's bmm.
    pub const GRID_TOL: Tol = Tol {
        atol: 1e-6,
        rtol: 1e-6,
    };
    /// θ: f32 cos/sin of our libm vs PyTorch's vectorised ones may differ by one ulp (≤ 1.2e-7).
    pub const THETA_TOL: Tol = Tol {
        atol: 1e-6,
        rtol: 1e-6,
    };
    /// dsa_m.output from the input through all six stages: two grid_samples and the colour ops (up
    /// to ×2 saturation, ×1.5 contrast) amplify the rounding.
    pub const DSA_M_END_TOL: Tol = Tol::abs(2e-4);
    /// zca.mean: a float32 mean of 64 values.
    pub const ZCA_MEAN_TOL: Tol = Tol::abs(1e-6);
    /// zca.transform, relative to its largest value: kornia's float32 covariance + eigensolver vs a
    /// float64 one differ by ≤ 3.6e-6 on values up to ~2.6.
    pub const ZCA_TRANSFORM_REL_MAX: f64 = 1e-5;
    /// zca outputs, relative to their largest value: a 192-long float32 dot product after the
    /// transform (measured ≤ 1.9e-5).
    pub const ZCA_OUTPUT_REL_MAX: f64 = 1e-4;
}

/// The per-image draws of all six DSA ops stored under `prefix` (`"dsa_m."` for mode M).
pub fn read_draws(
    g: &Golden,
    prefix: &str,
    n: usize,
    p: &DsaParams,
) -> Result<Vec<ImageDraws>, String> {
    let mut d = vec![ImageDraws::default(); n];
    let get = |k: &str| g.f32s(&format!("{prefix}{k}"));
    let geti = |k: &str| g.i64s(&format!("{prefix}{k}"));
    let (sx, sy, angle, randf) = (
        get("scale.sx")?,
        get("scale.sy")?,
        get("rotate.angle")?,
        get("flip.randf")?,
    );
    let (rb, rs, rc) = (
        get("color.randb")?,
        get("color.rands")?,
        get("color.randc")?,
    );
    let (tx, ty) = (geti("crop.translation_x")?, geti("crop.translation_y")?);
    let (ox, oy) = (geti("cutout.offset_x")?, geti("cutout.offset_y")?);
    for (name, len) in [
        ("scale.sx", sx.len()),
        ("rotate.angle", angle.len()),
        ("crop.translation_x", tx.len()),
    ] {
        if len != n {
            return Err(format!(
                "{}: {prefix}{name} has {len} values for {n} images",
                g.name
            ));
        }
    }
    for i in 0..n {
        let (sin, cos) = angle[i].sin_cos();
        d[i] = ImageDraws {
            scale_x: sx[i],
            scale_y: sy[i],
            rot_cos: cos,
            rot_sin: sin,
            flip: ((randf[i] as f64) < p.flip) as u32,
            brightness: rb[i],
            saturation: rs[i],
            contrast: rc[i],
            crop_x: tx[i] as i32,
            crop_y: ty[i] as i32,
            cutout_x: ox[i] as i32,
            cutout_y: oy[i] as i32,
            partner: i as u32,
        };
    }
    Ok(d)
}
