//! safetensors in and out, into the same [`Tensor`] type the `.pt` reader returns, so synthetic
//! sets and teachers are handled identically whichever format they came in. The `safetensors`
//! crate validates the header (offsets, shapes vs. byte lengths) before we touch the data.

use std::collections::HashMap;
use std::path::Path;

use safetensors::{Dtype, SafeTensors};

use crate::data::io::{read_file, MAX_FILE_BYTES};
use crate::data::pickle::DType;
use crate::data::torch::{Tensor, TensorData};
use crate::error::{Error, Result};

/// The tensors of a safetensors file (in name order) and its `__metadata__` strings.
pub struct SafetensorsFile {
    pub tensors: Vec<(String, Tensor)>,
    pub metadata: HashMap<String, String>,
}

impl SafetensorsFile {
    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.tensors.iter().find(|(n, _)| n == name).map(|(_, t)| t)
    }

    /// Whether the file means to be a synthetic set: it has `images`, a tensor only synthetic
    /// sets carry (`labels`, `soft_labels`, `lr`, MTT's `image_syn` / `label_syn` / `syn_lr`),
    /// or `pixel_space` metadata. State-dict names always contain a dot, so none collides.
    pub fn is_synthetic(&self) -> bool {
        const SYNTHETIC_NAMES: [&str; 7] = [
            "images",
            "labels",
            "soft_labels",
            "lr",
            "image_syn",
            "label_syn",
            "syn_lr",
        ];
        self.metadata.contains_key("pixel_space")
            || self
                .tensors
                .iter()
                .any(|(n, _)| SYNTHETIC_NAMES.contains(&n.as_str()))
    }

    /// The synthetic set's `images`, or one error naming the file and what it holds instead.
    pub fn images(&self, path: &Path) -> Result<&Tensor> {
        self.get("images").ok_or_else(|| {
            let names: Vec<&str> = self.tensors.iter().map(|(n, _)| n.as_str()).collect();
            Error::format(
                path,
                format!(
                    "no `images` tensor [N, C, H, W], which a synthetic set needs (tensors: \
                     {names:?})"
                ),
            )
        })
    }
}

/// Read a safetensors file whole; float tensors widen to f32, integer tensors to i64.
pub fn load_safetensors(path: &Path) -> Result<SafetensorsFile> {
    let buf = read_file(path, MAX_FILE_BYTES)?;
    let st = SafeTensors::deserialize(&buf)
        .map_err(|e| Error::format(path, format!("invalid safetensors file: {e}")))?;
    let (_, meta) = SafeTensors::read_metadata(&buf)
        .map_err(|e| Error::format(path, format!("invalid safetensors header: {e}")))?;
    let metadata = meta.metadata().clone().unwrap_or_default();
    let mut tensors = Vec::new();
    let mut names: Vec<String> = st.names().iter().map(|s| s.to_string()).collect();
    names.sort();
    for name in names {
        let v = st
            .tensor(&name)
            .map_err(|e| Error::format(path, format!("tensor {name}: {e}")))?;
        let b = v.data();
        let (dtype, data) = match v.dtype() {
            Dtype::F32 => (DType::F32, TensorData::F32(b.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes"))).collect())),
            Dtype::F64 => (DType::F64, TensorData::F32(b.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")) as f32).collect())),
            Dtype::F16 => (DType::F16, TensorData::F32(b.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect())),
            Dtype::BF16 => (DType::BF16, TensorData::F32(b.chunks_exact(2).map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect())),
            Dtype::I64 => (DType::I64, TensorData::I64(b.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes"))).collect())),
            Dtype::I32 => (DType::I32, TensorData::I64(b.chunks_exact(4).map(|c| i32::from_le_bytes(c.try_into().expect("4 bytes")) as i64).collect())),
            Dtype::U8 => (DType::U8, TensorData::I64(b.iter().map(|&x| x as i64).collect())),
            other => {
                return Err(Error::format(
                    path,
                    format!("tensor {name} has dtype {other:?}; supported: F32, F64, F16, BF16, I64, I32, U8"),
                ))
            }
        };
        tensors.push((
            name,
            Tensor {
                dtype,
                shape: v.shape().to_vec(),
                data,
            },
        ));
    }
    Ok(SafetensorsFile { tensors, metadata })
}

/// Write f32 tensors (name, shape, values) as a safetensors file with optional metadata.
pub fn save_f32(
    path: &Path,
    tensors: &[(String, Vec<usize>, Vec<f32>)],
    metadata: Option<HashMap<String, String>>,
) -> Result<()> {
    let mut bytes: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::with_capacity(tensors.len());
    for (name, shape, vals) in tensors {
        if shape.iter().product::<usize>() != vals.len() {
            return Err(Error::shape(format!(
                "tensor {name}: shape {shape:?} but {} values",
                vals.len()
            )));
        }
        bytes.push((
            name.clone(),
            shape.clone(),
            vals.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ));
    }
    let mut views = Vec::with_capacity(bytes.len());
    for (name, shape, b) in &bytes {
        let v = safetensors::tensor::TensorView::new(Dtype::F32, shape.clone(), b)
            .map_err(|e| Error::shape(format!("tensor {name}: {e}")))?;
        views.push((name.clone(), v));
    }
    let out = safetensors::serialize(views, metadata)
        .map_err(|e| Error::format(path, format!("cannot serialise: {e}")))?;
    std::fs::write(path, out).map_err(|e| Error::io(path, e))
}
