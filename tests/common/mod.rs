//! Shared helpers for integration tests: the one tolerance check (|got − want| ≤ atol + rtol·|want|,
//! worst index reported), and a small safetensors reader for the golden files in
//! ../shared/golden (or `$DDR_GOLDEN_DIR`).
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use safetensors::{Dtype, SafeTensors};

/// A tolerance: pass when |got − want| ≤ atol + rtol·|want| element by element.
#[derive(Clone, Copy, Debug)]
pub struct Tol {
    pub rtol: f64,
    pub atol: f64,
}

impl Tol {
    pub const fn new(rtol: f64, atol: f64) -> Tol {
        Tol { rtol, atol }
    }

    /// The "rel to max" form: atol = `atol_rel` · max|want|.
    pub fn rel_to_max(self, atol_rel: f64, want: &[f32]) -> Tol {
        let max = want.iter().fold(0f64, |m, &v| m.max((v as f64).abs()));
        Tol {
            rtol: self.rtol,
            atol: self.atol.max(atol_rel * max),
        }
    }
}

/// Compares element by element; on failure the message names `what`, the number of failing
/// elements, the worst index (largest excess over the bound) with both values.
pub fn check_close(what: &str, got: &[f32], want: &[f32], tol: Tol) -> Result<(), String> {
    if got.len() != want.len() {
        return Err(format!(
            "{what}: got {} elements, want {}",
            got.len(),
            want.len()
        ));
    }
    let mut bad = 0usize;
    let mut worst: Option<(usize, f64)> = None;
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let (g, w) = (g as f64, w as f64);
        let bound = tol.atol + tol.rtol * w.abs();
        let err = (g - w).abs();
        // A NaN on either side fails too.
        if err > bound || err.is_nan() {
            bad += 1;
            let excess = if err.is_nan() {
                f64::INFINITY
            } else {
                err - bound
            };
            if worst.is_none_or(|(_, e)| excess > e) {
                worst = Some((i, excess));
            }
        }
    }
    match worst {
        None => Ok(()),
        Some((i, _)) => Err(format!(
            "{what}: {bad} of {} elements outside atol {:.1e} + rtol {:.1e}·|want|; worst index {i}: got {:.9e}, want {:.9e}, |diff| {:.3e}",
            got.len(), tol.atol, tol.rtol, got[i], want[i], (got[i] as f64 - want[i] as f64).abs()
        )),
    }
}

/// Both sides must be within `bound` of zero (values whose true value is 0).
pub fn check_near_zero(what: &str, got: &[f32], want: &[f32], bound: f64) -> Result<(), String> {
    for (side, v) in [("got", got), ("want", want)] {
        if let Some((i, x)) = v
            .iter()
            .enumerate()
            .find(|(_, x)| x.is_nan() || (x.abs() as f64) > bound)
        {
            return Err(format!(
                "{what}: {side}[{i}] = {x:.3e} exceeds the zero bound {bound:.1e}"
            ));
        }
    }
    Ok(())
}

/// The golden folder: `$DDR_GOLDEN_DIR`, else `<manifest>/../shared/golden`. A git worktree one
/// level deeper (`/work/wt/<name>`) finds the same folder at `<manifest>/../../shared/golden`.
pub fn golden_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("DDR_GOLDEN_DIR") {
        return PathBuf::from(d);
    }
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let default = manifest.join("../shared/golden");
    let worktree = manifest.join("../../shared/golden");
    if !default.is_dir() && worktree.is_dir() {
        worktree
    } else {
        default
    }
}

/// Every `*.safetensors` in the golden folder, sorted by name.
pub fn golden_files() -> Result<Vec<PathBuf>, String> {
    let dir = golden_dir();
    let rd = std::fs::read_dir(&dir)
        .map_err(|e| format!("cannot read golden folder {}: {e}", dir.display()))?;
    let mut files: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(format!(
            "no *.safetensors in golden folder {}",
            dir.display()
        ));
    }
    Ok(files)
}

/// A loaded safetensors file with typed accessors whose errors name the file and the tensor.
pub struct Golden {
    pub name: String,
    bytes: Vec<u8>,
    pub meta: HashMap<String, String>,
}

impl Golden {
    pub fn open(path: &Path) -> Result<Golden, String> {
        let name = path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        let bytes = std::fs::read(path).map_err(|e| format!("{name}: cannot read: {e}"))?;
        let (_, header) = SafeTensors::read_metadata(&bytes)
            .map_err(|e| format!("{name}: not a safetensors file: {e}"))?;
        let meta = header.metadata().clone().unwrap_or_default();
        SafeTensors::deserialize(&bytes)
            .map_err(|e| format!("{name}: bad safetensors data: {e}"))?;
        Ok(Golden { name, bytes, meta })
    }

    fn st(&self) -> SafeTensors<'_> {
        SafeTensors::deserialize(&self.bytes).expect("validated in Golden::open")
    }

    pub fn has(&self, tensor: &str) -> bool {
        self.st().tensor(tensor).is_ok()
    }

    pub fn meta(&self, key: &str) -> Result<&str, String> {
        self.meta
            .get(key)
            .map(String::as_str)
            .ok_or_else(|| format!("{}: metadata key `{key}` missing", self.name))
    }

    pub fn meta_usize(&self, key: &str) -> Result<usize, String> {
        let v = self.meta(key)?;
        v.parse()
            .map_err(|_| format!("{}: metadata `{key}` = `{v}` is not an integer", self.name))
    }

    pub fn meta_json(&self, key: &str) -> Result<serde_json::Value, String> {
        let v = self.meta(key)?;
        serde_json::from_str(v)
            .map_err(|e| format!("{}: metadata `{key}` is not JSON: {e}", self.name))
    }

    fn raw(&self, tensor: &str, dtype: Dtype) -> Result<(Vec<u8>, Vec<usize>), String> {
        let st = self.st();
        let t = st
            .tensor(tensor)
            .map_err(|_| format!("{}: tensor `{tensor}` missing", self.name))?;
        if t.dtype() != dtype {
            return Err(format!(
                "{}: tensor `{tensor}` is {:?}, expected {dtype:?}",
                self.name,
                t.dtype()
            ));
        }
        Ok((t.data().to_vec(), t.shape().to_vec()))
    }

    pub fn f32(&self, tensor: &str) -> Result<(Vec<f32>, Vec<usize>), String> {
        let (b, shape) = self.raw(tensor, Dtype::F32)?;
        Ok((
            b.chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect(),
            shape,
        ))
    }

    pub fn f64(&self, tensor: &str) -> Result<(Vec<f64>, Vec<usize>), String> {
        let (b, shape) = self.raw(tensor, Dtype::F64)?;
        Ok((
            b.chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
                .collect(),
            shape,
        ))
    }

    pub fn i64(&self, tensor: &str) -> Result<(Vec<i64>, Vec<usize>), String> {
        let (b, shape) = self.raw(tensor, Dtype::I64)?;
        Ok((
            b.chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
                .collect(),
            shape,
        ))
    }

    /// An F32 tensor whose shape must be `shape`.
    pub fn f32_shaped(&self, tensor: &str, shape: &[usize]) -> Result<Vec<f32>, String> {
        let (v, s) = self.f32(tensor)?;
        if s != shape {
            return Err(format!(
                "{}: tensor `{tensor}` has shape {s:?}, expected {shape:?}",
                self.name
            ));
        }
        Ok(v)
    }
}
