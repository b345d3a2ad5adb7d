//! CPU row gather (a copy per row, rayon over rows).

use rayon::prelude::*;

use crate::error::{Error, Result};

/// src (N, row_len), idx (M), dst (M, row_len).
pub fn gather_rows(src: &[f32], row_len: usize, idx: &[u32], dst: &mut [f32]) -> Result<()> {
    if row_len == 0 || src.len() % row_len != 0 {
        return Err(Error::shape(format!(
            "gather_rows: src has {} elements, not rows of {row_len}",
            src.len()
        )));
    }
    crate::ops::check_len("gather_rows", "dst", dst.len(), idx.len() * row_len)?;
    let n = src.len() / row_len;
    if let Some((m, &i)) = idx.iter().enumerate().find(|(_, &i)| i as usize >= n) {
        return Err(Error::shape(format!(
            "gather_rows: index {i} at position {m} is not below {n} rows"
        )));
    }
    dst.par_chunks_mut(row_len)
        .zip(idx.par_iter())
        .for_each(|(d, &i)| {
            d.copy_from_slice(&src[i as usize * row_len..][..row_len]);
        });
    Ok(())
}
