//! Teacher weights for soft-label evaluation: a PyTorch state_dict (`.pth`/`.pt`, read natively)
//! or safetensors with PyTorch's parameter names (`features.0.weight`, `classifier.bias`, ...).
//! The model code maps these names onto its flat (P,) layout; this module only moves named
//! tensors in and out, and saves ddr-fast models under the same names.

use std::collections::BTreeMap;
use std::path::Path;

use crate::data::safetensors_io::{load_safetensors, save_f32};
use crate::data::torch::{load_pt, PtValue, Tensor};
use crate::error::{Error, Result};

/// Named tensors: name → (shape, row-major values as f32).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TeacherWeights {
    pub tensors: BTreeMap<String, (Vec<usize>, Vec<f32>)>,
}

impl TeacherWeights {
    /// Total number of values.
    pub fn numel(&self) -> usize {
        self.tensors.values().map(|(_, v)| v.len()).sum()
    }

    /// Shape and values of one tensor, or an error naming what is missing.
    pub fn get(&self, name: &str) -> Result<(&[usize], &[f32])> {
        self.tensors
            .get(name)
            .map(|(s, v)| (s.as_slice(), v.as_slice()))
            .ok_or_else(|| {
                Error::config(format!(
                    "teacher has no tensor {name}; it has {:?}",
                    self.tensors.keys().collect::<Vec<_>>()
                ))
            })
    }
}

/// Load teacher weights from a state_dict file (`.pth`/`.pt`; also a dict holding it under
/// `state_dict`, `model` or `net`) or from safetensors. Every value must be finite.
pub fn load_teacher(path: &Path) -> Result<TeacherWeights> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let named: Vec<(String, Tensor)> = match ext.as_str() {
        "safetensors" => load_safetensors(path)?.tensors,
        "pth" | "pt" | "ckpt" => {
            let v = load_pt(path)?;
            let sd = ["state_dict", "model", "net"]
                .iter()
                .find_map(|k| v.get(k).filter(|x| matches!(x, PtValue::Dict(_))))
                .unwrap_or(&v);
            let PtValue::Dict(entries) = sd else {
                return Err(Error::format(
                    path,
                    format!(
                        "expected a state_dict (a dict of tensors), found {}",
                        v.describe()
                    ),
                ));
            };
            let mut out = Vec::with_capacity(entries.len());
            for (k, x) in entries {
                match x {
                    PtValue::Tensor(t) => out.push((k.clone(), t.clone())),
                    other => {
                        return Err(Error::format(
                            path,
                            format!(
                                "state_dict entry {k} is {}, expected a tensor",
                                other.describe()
                            ),
                        ))
                    }
                }
            }
            out
        }
        _ => {
            return Err(Error::format(
                path,
                "unknown teacher format (expected .pth, .pt or .safetensors)",
            ))
        }
    };
    if named.is_empty() {
        return Err(Error::format(path, "no tensors in the teacher file"));
    }
    let mut tensors = BTreeMap::new();
    for (name, t) in named {
        let v = t.to_f32();
        if let Some(i) = v.iter().position(|x| !x.is_finite()) {
            return Err(Error::format(
                path,
                format!("tensor {name} has a non-finite value at flat index {i}"),
            ));
        }
        tensors.insert(name, (t.shape, v));
    }
    Ok(TeacherWeights { tensors })
}

/// Save weights as safetensors (f32) under their names.
pub fn save_teacher(path: &Path, w: &TeacherWeights) -> Result<()> {
    let list: Vec<(String, Vec<usize>, Vec<f32>)> = w
        .tensors
        .iter()
        .map(|(k, (s, v))| (k.clone(), s.clone(), v.clone()))
        .collect();
    save_f32(path, &list, None)
}
