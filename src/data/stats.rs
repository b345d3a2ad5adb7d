//! Per-channel mean and standard deviation of an image array, for `ddr-fast data info` and for
//! checking that a dataset looks like what it claims (e.g. CIFAR-10 train means .4914 .4822 .4465).

/// Mean and population std (ddof 0) per channel.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ChannelStats {
    pub mean: Vec<f64>,
    pub std: Vec<f64>,
}

/// Statistics of `images`: (N, C, plane) with plane = H·W. Accumulates in f64 (6e7 values of
/// CIFAR-10 would lose digits in an f32 sum).
pub fn channel_stats(images: &[f32], channels: usize, plane: usize) -> ChannelStats {
    let mut sum = vec![0f64; channels];
    let mut sq = vec![0f64; channels];
    let mut count = vec![0u64; channels];
    if channels > 0 && plane > 0 {
        for (k, chunk) in images.chunks(plane).enumerate() {
            let c = k % channels;
            let (mut s, mut q) = (0f64, 0f64);
            for &v in chunk {
                s += v as f64;
                q += (v as f64) * (v as f64);
            }
            sum[c] += s;
            sq[c] += q;
            count[c] += chunk.len() as u64;
        }
    }
    let mean: Vec<f64> = sum
        .iter()
        .zip(&count)
        .map(|(s, &n)| if n > 0 { s / n as f64 } else { 0.0 })
        .collect();
    let std = sq
        .iter()
        .zip(&count)
        .zip(&mean)
        .map(|((q, &n), m)| {
            if n > 0 {
                (q / n as f64 - m * m).max(0.0).sqrt()
            } else {
                0.0
            }
        })
        .collect();
    ChannelStats { mean, std }
}
