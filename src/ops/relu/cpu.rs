//! Plain-loop reference of ReLU.

use rayon::prelude::*;

use crate::error::Result;
use crate::ops::check_len;

/// Rayon chunk: big enough that the split costs nothing next to the loop.
const CHUNK: usize = 1 << 14;

/// y = max(x, 0).
pub fn forward(x: &[f32], y: &mut [f32]) -> Result<()> {
    check_len("relu forward", "y", y.len(), x.len())?;
    y.par_chunks_mut(CHUNK)
        .zip(x.par_chunks(CHUNK))
        .for_each(|(yc, xc)| {
            for (o, &v) in yc.iter_mut().zip(xc) {
                *o = v.max(0.0);
            }
        });
    Ok(())
}

/// dx = dy where the forward output y > 0, else 0.
pub fn backward(y: &[f32], dy: &[f32], dx: &mut [f32]) -> Result<()> {
    check_len("relu backward", "dy", dy.len(), y.len())?;
    check_len("relu backward", "dx", dx.len(), y.len())?;
    dx.par_chunks_mut(CHUNK)
        .zip(y.par_chunks(CHUNK).zip(dy.par_chunks(CHUNK)))
        .for_each(|(dc, (yc, gc))| {
            for ((o, &v), &d) in dc.iter_mut().zip(yc).zip(gc) {
                *o = if v > 0.0 { d } else { 0.0 };
            }
        });
    Ok(())
}
