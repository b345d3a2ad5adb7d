//! A synthetic set handed over in memory (by the Python bindings) instead of a file: the same
//! checks as a file gets (`validate`), with the caller's argument name in every message.

use sha2::{Digest, Sha256};

use super::read::RawSyn;
use super::validate::validate;
use super::{SynExpect, SyntheticSet};
use crate::data::pickle::DType;
use crate::data::torch::{Tensor, TensorData};
use crate::error::Result;

/// Row-major arrays as a distillation method holds them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SynArrays {
    /// (N, C, H, W) as f32 (the caller converts f16/bf16/f64).
    pub images: Vec<f32>,
    /// The images' shape as given; `validate` checks it is [N, C, H, W] of the dataset.
    pub shape: Vec<usize>,
    /// (N) hard labels; None → class-major order.
    pub labels: Option<Vec<i64>>,
    /// (N, K) stored soft labels, with their shape as given.
    pub soft: Option<(Vec<f32>, Vec<usize>)>,
    /// A learned learning rate.
    pub lr: Option<f64>,
    /// The images are [0, 1] pixels (normalised here) rather than normalised values.
    pub pixel_space: bool,
}

impl SynArrays {
    /// What the cache key takes for a file's bytes: SHA-256 over the shapes and the values (little
    /// endian), so equal arrays share cached trainings and any changed value does not.
    pub fn identity(&self) -> String {
        let mut h = Sha256::new();
        h.update(format!("memory:{:?}:pixel={}", self.shape, self.pixel_space).as_bytes());
        for v in &self.images {
            h.update(v.to_le_bytes());
        }
        if let Some(l) = &self.labels {
            h.update(b"labels");
            for v in l {
                h.update(v.to_le_bytes());
            }
        }
        if let Some((s, shape)) = &self.soft {
            h.update(format!("soft:{shape:?}").as_bytes());
            for v in s {
                h.update(v.to_le_bytes());
            }
        }
        if let Some(lr) = self.lr {
            h.update(lr.to_le_bytes());
        }
        let d = h.finalize();
        format!(
            "sha256:{}",
            d.iter().map(|b| format!("{b:02x}")).collect::<String>()
        )
    }
}

/// Validates arrays against the dataset exactly as a synthetic file is validated; `name` (the
/// argument the images came from, e.g. `image_tensor`) leads every error message.
pub fn synthetic_from_arrays(name: &str, a: SynArrays, expect: &SynExpect) -> Result<SyntheticSet> {
    let n_labels = a.labels.as_ref().map(Vec::len);
    let raw = RawSyn {
        images: Tensor {
            dtype: DType::F32,
            shape: a.shape,
            data: TensorData::F32(a.images),
        },
        labels: a.labels.map(|l| Tensor {
            dtype: DType::I64,
            shape: vec![n_labels.unwrap_or(0)],
            data: TensorData::I64(l),
        }),
        soft: a.soft.map(|(v, shape)| Tensor {
            dtype: DType::F32,
            shape,
            data: TensorData::F32(v),
        }),
        lr: a.lr,
        pixel_space: a.pixel_space,
        format: "memory",
    };
    validate(std::path::Path::new(name), raw, expect)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Norm;

    fn expect() -> SynExpect {
        SynExpect {
            classes: 2,
            channels: 1,
            height: 2,
            width: 2,
            ipc: Some(2),
            norm: Norm::identity(1),
            pixel_space: None,
        }
    }

    fn arrays() -> SynArrays {
        SynArrays {
            images: (0..16).map(|i| i as f32 / 16.0).collect(),
            shape: vec![4, 1, 2, 2],
            ..SynArrays::default()
        }
    }

    #[test]
    fn valid_arrays_become_a_class_major_set() {
        let s = synthetic_from_arrays("image_tensor", arrays(), &expect()).unwrap();
        assert_eq!(s.labels, vec![0, 0, 1, 1]);
        assert_eq!(s.format, "memory");
    }

    #[test]
    fn errors_name_the_argument() {
        let mut nan = arrays();
        nan.images[5] = f32::NAN;
        let mut rank = arrays();
        rank.shape = vec![4, 4];
        let mut labels = arrays();
        labels.labels = Some(vec![0, 1, 2, 0]);
        for (a, what) in [
            (nan, "non-finite"),
            (rank, "[N, C, H, W]"),
            (labels, "out of range"),
        ] {
            let e = synthetic_from_arrays("image_tensor", a, &expect())
                .unwrap_err()
                .to_string();
            assert!(e.starts_with("image_tensor: ") && e.contains(what), "{e}");
        }
    }

    #[test]
    fn identity_changes_with_any_value() {
        let a = arrays();
        let mut b = arrays();
        b.images[15] += 1e-6;
        assert_eq!(a.identity(), arrays().identity());
        assert_ne!(a.identity(), b.identity());
    }
}
