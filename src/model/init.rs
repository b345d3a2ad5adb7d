//! Student initialisation, equal in distribution to PyTorch's defaults: conv and linear weights and
//! biases U(−1/√fan_in, 1/√fan_in) (kaiming_uniform with a = √5 gives the same bound), norm γ = 1,
//! β = 0, running_mean 0, running_var 1. Seeded per student by a u64, so a student's weights do not
//! depend on which cohort it is trained in.

use super::layout::ParamLayout;

/// SplitMix64 (Steele, Lea, Flood 2014): a tiny, well-mixed 64-bit generator. Used here only for
/// initial weights; `stream` derives independent generators from (seed, tensor index).
#[derive(Clone, Debug)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64 { state: seed }
    }

    /// An independent generator for substream `index` of `seed`.
    pub fn stream(seed: u64, index: u64) -> SplitMix64 {
        let mut g =
            SplitMix64::new(seed ^ index.wrapping_add(1).wrapping_mul(0xD1B5_4A32_D192_ED03));
        SplitMix64::new(g.next_u64())
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(Self::GAMMA);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1) with 24 random bits (every value exactly representable in f32).
    pub fn next_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 * (1.0 / (1u64 << 24) as f32)
    }
}

/// Fills one student's parameter row (P) with PyTorch-default values drawn from `seed`.
pub fn init_params(layout: &ParamLayout, seed: u64, row: &mut [f32]) {
    for (j, e) in layout.params.iter().enumerate() {
        let dst = &mut row[e.range()];
        let is_norm = e.shape.len() == 1 && !is_bias_of_weighted(layout, j);
        if is_norm {
            let v = if e.name.ends_with(".weight") {
                1.0
            } else {
                0.0
            };
            dst.fill(v);
            continue;
        }
        let fan_in = fan_in(layout, j);
        let bound = 1.0 / (fan_in as f32).sqrt();
        let mut rng = SplitMix64::stream(seed, j as u64);
        for v in dst.iter_mut() {
            *v = (2.0 * rng.next_f32() - 1.0) * bound;
        }
    }
}

/// Fills one student's buffer row (R): running_mean 0, running_var 1.
pub fn init_buffers(layout: &ParamLayout, row: &mut [f32]) {
    for e in &layout.buffers {
        let v = if e.name.ends_with("running_var") {
            1.0
        } else {
            0.0
        };
        row[e.range()].fill(v);
    }
}

/// True when entry `j` is the bias of a conv or linear weight (the entry before it is that weight).
fn is_bias_of_weighted(layout: &ParamLayout, j: usize) -> bool {
    j > 0 && layout.params[j].name.ends_with(".bias") && layout.params[j - 1].shape.len() > 1
}

/// fan_in of a conv/linear weight (its shape without the first dimension) or of the weight a bias
/// belongs to.
fn fan_in(layout: &ParamLayout, j: usize) -> usize {
    let w = if layout.params[j].shape.len() > 1 {
        &layout.params[j]
    } else {
        &layout.params[j - 1]
    };
    w.shape[1..].iter().product()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ConvNetSpec;

    #[test]
    fn bounds_and_norm_values_match_pytorch_defaults() {
        let spec = ConvNetSpec::from_name("ConvNet-2-W8", 3, 32, 10).unwrap();
        let l = ParamLayout::new(&spec);
        let mut row = vec![f32::NAN; l.len];
        init_params(&l, 7, &mut row);
        let conv1 = &row[l.param("features.4.weight").unwrap().range()];
        let bound = 1.0 / ((8 * 9) as f32).sqrt();
        assert!(conv1.iter().all(|v| v.abs() <= bound));
        // 576 draws of U(−b, b): the largest magnitude is above 0.9·b unless something is off.
        assert!(conv1.iter().any(|v| v.abs() > 0.9 * bound));
        assert!(row[l.param("features.1.weight").unwrap().range()]
            .iter()
            .all(|&v| v == 1.0));
        assert!(row[l.param("features.5.bias").unwrap().range()]
            .iter()
            .all(|&v| v == 0.0));
        let cb = &row[l.param("classifier.bias").unwrap().range()];
        assert!(cb.iter().all(
            |v| v.abs() <= 1.0 / (l.param("classifier.weight").unwrap().shape[1] as f32).sqrt()
        ));
        let mut other = vec![0f32; l.len];
        init_params(&l, 8, &mut other);
        assert_ne!(row, other, "different seeds give different students");
    }
}
