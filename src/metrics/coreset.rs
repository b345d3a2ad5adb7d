//! Coreset selection, the classic dataset-distillation baselines `ddr-fast select` and the demo
//! score: herding (Welling 2009) and class-balanced random selection.
//!
//! Herding runs per class on features: greedily add the image that brings the mean of the chosen
//! features closest to the class mean. Features are the flattened output of the last block of a
//! randomly initialised ConvNet-3 (width 128, seeded) by default: random conv features keep the
//! spatial structure that raw pixels lose and need no training (the feature extractor of
//! distribution matching, DM, is the same kind of network); `pixels` uses the normalised images.

use std::sync::Arc;

use crate::backend::{Backend, Mode};
use crate::data::random_subset;
use crate::error::{Error, Result};
use crate::model::{init_buffers, init_params, ConvNet, ConvNetSpec};
use crate::train::trainer::ImageSet;

/// The `run` under which a random coreset is drawn: far above any evaluation run, so a random
/// coreset never coincides with the random-subset baseline it is compared with.
pub const CORESET_RUN: u64 = 1 << 40;

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum SelectMethod {
    Herding,
    Random,
}

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum FeatureKind {
    /// Last-block features of a random-init ConvNet-3 (width 128).
    Convnet,
    /// The normalised pixels.
    Pixels,
}

/// Class-major indices of `ipc` images per class of `set`.
pub fn select<B: Backend>(
    be: &Arc<B>,
    set: &ImageSet,
    method: SelectMethod,
    features: FeatureKind,
    ipc: usize,
    seed: u64,
) -> Result<Vec<usize>> {
    match method {
        SelectMethod::Random => random_subset(&set.labels, set.classes, ipc, seed, CORESET_RUN),
        SelectMethod::Herding => {
            let (f, dim) = match features {
                FeatureKind::Pixels => (set.images.clone(), set.image_len()),
                FeatureKind::Convnet => convnet_features(be, set, seed)?,
            };
            let mut out = Vec::with_capacity(set.classes * ipc);
            for c in 0..set.classes as u32 {
                let members: Vec<usize> = (0..set.len()).filter(|&i| set.labels[i] == c).collect();
                if members.len() < ipc {
                    return Err(Error::config(format!(
                        "class {c} has {} images, fewer than IPC {ipc}",
                        members.len()
                    )));
                }
                out.extend(herding(&f, dim, &members, ipc));
            }
            Ok(out)
        }
    }
}

/// Herding on features (N, dim) restricted to `members`: `k` indices in selection order.
pub fn herding(f: &[f32], dim: usize, members: &[usize], k: usize) -> Vec<usize> {
    let row = |i: usize| &f[i * dim..(i + 1) * dim];
    let mut mean = vec![0f64; dim]; // (dim)
    for &i in members {
        for (m, &v) in mean.iter_mut().zip(row(i)) {
            *m += f64::from(v);
        }
    }
    mean.iter_mut().for_each(|m| *m /= members.len() as f64);
    let mut sum = vec![0f64; dim]; // (dim) sum of the chosen features
    let mut chosen = Vec::with_capacity(k);
    let mut taken = vec![false; members.len()];
    for step in 1..=k {
        let mut best: Option<(f64, usize)> = None;
        for (j, &i) in members.iter().enumerate() {
            if taken[j] {
                continue;
            }
            let d: f64 = row(i)
                .iter()
                .zip(&sum)
                .zip(&mean)
                .map(|((&v, &s), &m)| {
                    let e = m - (s + f64::from(v)) / step as f64;
                    e * e
                })
                .sum();
            if best.is_none_or(|(bd, _)| d < bd) {
                best = Some((d, j));
            }
        }
        let Some((_, j)) = best else { break };
        taken[j] = true;
        chosen.push(members[j]);
        for (s, &v) in sum.iter_mut().zip(row(members[j])) {
            *s += f64::from(v);
        }
    }
    chosen
}

/// Last-block features of a random-init ConvNet-3 (width 128) → ((N, F), F).
pub fn convnet_features<B: Backend>(
    be: &Arc<B>,
    set: &ImageSet,
    seed: u64,
) -> Result<(Vec<f32>, usize)> {
    let spec = ConvNetSpec::from_name("ConvNet-3", set.channels, set.size, set.classes)?;
    let net = ConvNet::new(spec);
    let mut params = vec![0f32; net.param_len()]; // (1, P)
    init_params(&net.layout, seed, &mut params);
    let mut running = vec![0f32; net.buffer_len()]; // (1, R)
    init_buffers(&net.layout, &mut running);
    let params = be.upload(&params)?;
    let mut running = be.upload(&running)?;
    let (img, dim) = (set.image_len(), spec.num_feat());
    let mut out = Vec::with_capacity(set.len() * dim); // (N, F)
    const BATCH: usize = 250;
    let mut lo = 0;
    while lo < set.len() {
        let b = BATCH.min(set.len() - lo);
        let mut ws = net.workspace(&**be, 1, b, false)?;
        let x = be.upload(&set.images[lo * img..(lo + b) * img])?;
        net.forward(&**be, &mut ws, &x, &params, &mut running, Mode::Eval)?;
        out.extend(be.download(ws.block_out(spec.depth - 1))?);
        lo += b;
    }
    Ok((out, dim))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn herding_first_pick_is_closest_to_mean_and_tracks_it() {
        // 1-D features 0, 1, 2, 3, 10: mean 3.2 → first pick 3 (index 3); then the pair mean
        // closest to 3.2 is (3 + x)/2 → x = 3.4 → 2 (|2.5 − 3.2| = .7) vs 10 (6.5): pick index 2.
        let f = [0.0, 1.0, 2.0, 3.0, 10.0];
        let members: Vec<usize> = (0..5).collect();
        assert_eq!(herding(&f, 1, &members, 2), vec![3, 2]);
        // Third: sum 5; (5 + x)/3 closest to 3.2 → x = 4.6: 10 gives 5, 1 gives 2 → |5−3.2| = 1.8
        // vs |2−3.2| = 1.2: index 1.
        assert_eq!(herding(&f, 1, &members, 3), vec![3, 2, 1]);
    }
}
