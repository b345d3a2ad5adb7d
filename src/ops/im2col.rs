//! im2col: the input windows of one image laid out as the columns of a GEMM operand. One helper
//! for the ConvNet 3×3 conv (`ops::conv::cpu_fast`, which also runs its input gradient as a
//! gather of dy through it) and the general k×k strided conv (`ops::conv2d::cpu_fast`).

/// The windows to gather: a k×k kernel stepped by `stride`, `pad` zeros (may be negative: a
/// crop) before each spatial edge of the source, oh×ow output positions.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Windows {
    pub k: usize,
    pub stride: usize,
    pub pad: isize,
    pub oh: usize,
    pub ow: usize,
}

/// src (c, sh, sw) → col (c·k·k, oh·ow): col[(ci, ky, kx), (oy, ox)] =
/// src[ci, oy·stride + ky − pad, ox·stride + kx − pad], zero outside the image. At stride 1 each
/// output row is one contiguous run of a source row, copied whole (memcpy speed); other strides
/// gather element by element. Either way col holds copies of src values and zeros only.
pub(crate) fn im2col(src: &[f32], c: usize, sh: usize, sw: usize, win: &Windows, col: &mut [f32]) {
    let Windows {
        k,
        stride,
        pad,
        oh,
        ow,
    } = *win;
    let ohw = oh * ow;
    for ci in 0..c {
        let plane = &src[ci * sh * sw..][..sh * sw]; // (sh, sw)
        for ky in 0..k {
            for kx in 0..k {
                let row = &mut col[((ci * k + ky) * k + kx) * ohw..][..ohw]; // (oh, ow)
                let shift = kx as isize - pad; // ix = ox·stride + shift
                for oy in 0..oh {
                    let iy = (oy * stride + ky) as isize - pad;
                    let dst = &mut row[oy * ow..][..ow];
                    if iy < 0 || iy >= sh as isize {
                        dst.fill(0.0);
                        continue;
                    }
                    let srow = &plane[iy as usize * sw..][..sw];
                    if stride == 1 {
                        copy_shifted(srow, shift, dst);
                    } else {
                        for (ox, d) in dst.iter_mut().enumerate() {
                            let ix = (ox * stride) as isize + shift;
                            *d = if ix >= 0 && ix < sw as isize {
                                srow[ix as usize]
                            } else {
                                0.0
                            };
                        }
                    }
                }
            }
        }
    }
}

/// dst[ox] = srow[ox + shift] where that index is inside srow, else 0.
fn copy_shifted(srow: &[f32], shift: isize, dst: &mut [f32]) {
    let (sw, ow) = (srow.len() as isize, dst.len() as isize);
    let ox0 = (-shift).clamp(0, ow) as usize;
    let ox1 = (sw - shift).clamp(ox0 as isize, ow) as usize;
    if ox1 == ox0 {
        dst.fill(0.0); // the window misses the row
        return;
    }
    let s0 = (ox0 as isize + shift) as usize;
    dst[..ox0].fill(0.0);
    dst[ox0..ox1].copy_from_slice(&srow[s0..s0 + (ox1 - ox0)]);
    dst[ox1..].fill(0.0);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The definition, one element at a time.
    fn naive(src: &[f32], c: usize, sh: usize, sw: usize, w: &Windows) -> Vec<f32> {
        let mut col = vec![f32::NAN; c * w.k * w.k * w.oh * w.ow];
        for ci in 0..c {
            for ky in 0..w.k {
                for kx in 0..w.k {
                    for oy in 0..w.oh {
                        for ox in 0..w.ow {
                            let iy = (oy * w.stride + ky) as isize - w.pad;
                            let ix = (ox * w.stride + kx) as isize - w.pad;
                            let inside =
                                (0..sh as isize).contains(&iy) && (0..sw as isize).contains(&ix);
                            col[(((ci * w.k + ky) * w.k + kx) * w.oh + oy) * w.ow + ox] = if inside
                            {
                                src[(ci * sh + iy as usize) * sw + ix as usize]
                            } else {
                                0.0
                            };
                        }
                    }
                }
            }
        }
        col
    }

    /// Stride 1 (the row-copy path) and strides 2, 3 (the gather), padding 0..3 and a crop (the
    /// ConvNet input gradient's 2 − pad can be negative), kernels 1, 3, 7, windows that run off
    /// either edge: equal to the definition bit for bit (both only copy values).
    #[test]
    fn im2col_equals_its_definition() {
        let (c, sh, sw) = (2, 7, 6);
        let src: Vec<f32> = (0..c * sh * sw).map(|i| i as f32 + 0.5).collect();
        for k in [1, 3, 7] {
            for stride in [1, 2, 3] {
                for pad in [-1isize, 0, 1, 3] {
                    let span = |n: usize| (n as isize + 2 * pad - k as isize) / stride as isize + 1;
                    let (oh, ow) = (span(sh), span(sw));
                    if oh <= 0 || ow <= 0 {
                        continue;
                    }
                    let w = Windows {
                        k,
                        stride,
                        pad,
                        oh: oh as usize,
                        ow: ow as usize,
                    };
                    let mut col = vec![f32::NAN; c * k * k * w.oh * w.ow];
                    im2col(&src, c, sh, sw, &w, &mut col);
                    assert_eq!(col, naive(&src, c, sh, sw, &w), "{w:?}");
                }
            }
        }
    }
}
