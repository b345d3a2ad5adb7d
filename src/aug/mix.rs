//! Mixup and CutMix over one student's batch (B, C, H, W), as `ddranking.aug.Mixup` / `Cutmix`:
//! one λ per batch, every image mixed with its partner x[perm[b]]; labels are not mixed.

use super::draws::{ImageDraws, StudentDraws};
use super::ImageDims;
use crate::error::{Error, Result};

fn check_partners(dims: ImageDims, draws: &[ImageDraws]) -> Result<()> {
    dims.check_per_image("mix partners", draws.len())?;
    if let Some((b, d)) = draws
        .iter()
        .enumerate()
        .find(|(_, d)| d.partner as usize >= dims.n)
    {
        return Err(Error::shape(format!(
            "mix partner of image {b} is {} but the batch has {} images",
            d.partner, dims.n
        )));
    }
    Ok(())
}

/// out[b] = mix_self·x[b] + mix_other·x[partner(b)], each product rounded to f32 before the sum
/// (PyTorch's `lam * x + (1 - lam) * x[perm]`). x, out (B, C, H, W).
pub fn mixup(
    dims: ImageDims,
    student: &StudentDraws,
    draws: &[ImageDraws],
    x: &[f32],
    out: &mut [f32],
) -> Result<()> {
    dims.check("mixup input", x.len())?;
    dims.check("mixup output", out.len())?;
    check_partners(dims, draws)?;
    let img = dims.image_len();
    let (a, b) = (student.mix_self, student.mix_other);
    for (n, d) in draws.iter().enumerate() {
        let own = &x[n * img..(n + 1) * img];
        let other = &x[d.partner as usize * img..(d.partner as usize + 1) * img];
        for ((o, &u), &v) in out[n * img..(n + 1) * img].iter_mut().zip(own).zip(other) {
            let p = a * u;
            let q = b * v;
            *o = p + q;
        }
    }
    Ok(())
}

/// out = x with rows [box_r0, box_r1) × columns [box_c0, box_c1) of image b replaced by those of
/// x[partner(b)] on all channels. x, out (B, C, H, W).
pub fn cutmix(
    dims: ImageDims,
    student: &StudentDraws,
    draws: &[ImageDraws],
    x: &[f32],
    out: &mut [f32],
) -> Result<()> {
    dims.check("cutmix input", x.len())?;
    dims.check("cutmix output", out.len())?;
    check_partners(dims, draws)?;
    let s = student;
    let in_range = |lo: i32, hi: i32, len: usize| 0 <= lo && lo <= hi && hi as usize <= len;
    if !in_range(s.box_r0, s.box_r1, dims.h) || !in_range(s.box_c0, s.box_c1, dims.w) {
        return Err(Error::shape(format!(
            "cutmix box rows {}..{} columns {}..{} outside a {}×{} image",
            s.box_r0, s.box_r1, s.box_c0, s.box_c1, dims.h, dims.w
        )));
    }
    out.copy_from_slice(x);
    let img = dims.image_len();
    let (c0, c1) = (s.box_c0 as usize, s.box_c1 as usize);
    for (n, d) in draws.iter().enumerate() {
        let p = d.partner as usize;
        for ch in 0..dims.c {
            for i in s.box_r0 as usize..s.box_r1 as usize {
                let row = (ch * dims.h + i) * dims.w;
                out[n * img + row + c0..n * img + row + c1]
                    .copy_from_slice(&x[p * img + row + c0..p * img + row + c1]);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aug::draws::{cutmix_box, mix_weights};

    fn setup() -> (ImageDims, Vec<f32>, Vec<ImageDraws>) {
        let dims = ImageDims {
            n: 4,
            c: 2,
            h: 5,
            w: 6,
        };
        let x: Vec<f32> = (0..dims.len()).map(|i| (i % 23) as f32 - 11.5).collect();
        let perm = [2u32, 0, 3, 1];
        let draws = perm
            .iter()
            .map(|&p| ImageDraws {
                partner: p,
                ..Default::default()
            })
            .collect();
        (dims, x, draws)
    }

    #[test]
    fn mixup_with_lambda_one_is_identity_and_zero_is_the_permutation() {
        let (dims, x, draws) = setup();
        let mut out = vec![0.0; dims.len()];
        let (a, b) = mix_weights(1.0);
        mixup(
            dims,
            &StudentDraws {
                mix_self: a,
                mix_other: b,
                ..Default::default()
            },
            &draws,
            &x,
            &mut out,
        )
        .unwrap();
        assert_eq!(out, x);
        let (a, b) = mix_weights(0.0);
        mixup(
            dims,
            &StudentDraws {
                mix_self: a,
                mix_other: b,
                ..Default::default()
            },
            &draws,
            &x,
            &mut out,
        )
        .unwrap();
        let img = dims.image_len();
        for (n, d) in draws.iter().enumerate() {
            let p = d.partner as usize;
            assert_eq!(out[n * img..(n + 1) * img], x[p * img..(p + 1) * img]);
        }
    }

    #[test]
    fn cutmix_replaces_exactly_the_box() {
        let (dims, x, draws) = setup();
        let (r0, r1, c0, c1) = cutmix_box(0.6, dims.h, dims.w, 2, 3);
        let s = StudentDraws {
            box_r0: r0,
            box_r1: r1,
            box_c0: c0,
            box_c1: c1,
            ..Default::default()
        };
        let mut out = vec![0.0; dims.len()];
        cutmix(dims, &s, &draws, &x, &mut out).unwrap();
        let img = dims.image_len();
        let mut changed = 0;
        for n in 0..4 {
            for ch in 0..2 {
                for i in 0..5 {
                    for j in 0..6 {
                        let at = (ch * 5 + i) * 6 + j;
                        let inside =
                            (r0..r1).contains(&(i as i32)) && (c0..c1).contains(&(j as i32));
                        let src = if inside { draws[n].partner as usize } else { n };
                        assert_eq!(out[n * img + at], x[src * img + at]);
                        changed += inside as usize;
                    }
                }
            }
        }
        assert_eq!(changed, 4 * 2 * ((r1 - r0) * (c1 - c0)) as usize);
        assert!(changed > 0);
    }

    #[test]
    fn bad_partner_or_box_is_an_error() {
        let (dims, x, mut draws) = setup();
        let mut out = vec![0.0; dims.len()];
        let s = StudentDraws {
            box_r0: 0,
            box_r1: 9,
            box_c0: 0,
            box_c1: 1,
            ..Default::default()
        };
        assert!(cutmix(dims, &s, &draws, &x, &mut out).is_err());
        draws[0].partner = 4;
        assert!(mixup(dims, &StudentDraws::default(), &draws, &x, &mut out).is_err());
    }
}
