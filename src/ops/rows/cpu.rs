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

/// y[y_at + i] = a·x[x_at + i] + b·y[y_at + i] for i < n, x given as (buffer, offset). Without x
/// the term is dropped; with b = 0 y is not read (it may hold anything there).
pub fn scale_add(
    n: usize,
    a: f32,
    x: Option<(&[f32], usize)>,
    b: f32,
    y: &mut [f32],
    y_at: usize,
) -> Result<()> {
    let span = |what: &str, len: usize, at: usize| {
        if at.checked_add(n).is_none_or(|end| end > len) {
            Err(Error::shape(format!(
                "scale_add: {what} has {len} elements, {n} asked for at offset {at}"
            )))
        } else {
            Ok(())
        }
    };
    span("y", y.len(), y_at)?;
    let y = &mut y[y_at..y_at + n];
    match x {
        None => y.iter_mut().for_each(|v| *v *= b),
        Some((x, x_at)) => {
            span("x", x.len(), x_at)?;
            let x = &x[x_at..x_at + n];
            if b == 0.0 {
                y.iter_mut().zip(x).for_each(|(v, &x)| *v = a * x);
            } else {
                y.iter_mut().zip(x).for_each(|(v, &x)| *v = a * x + b * *v);
            }
        }
    }
    Ok(())
}
