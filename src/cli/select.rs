//! `ddr-fast select`: a coreset of a real training set (herding or random), saved as a synthetic
//! set (safetensors, [0,1] pixels, class-major order) that `ddr-fast eval --syn` reads.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;

use crate::backend::{DeviceChoice, Opened, Origin};
use crate::data::safetensors_io::save_f32;
use crate::error::Result;
use crate::metrics::config::{DatasetInfo, EvalConfig};
use crate::metrics::coreset::{select, FeatureKind, SelectMethod};
use crate::metrics::inputs::{load_real_for, to_image_set};

#[derive(Args, Debug)]
pub struct SelectArgs {
    /// herding | random
    #[arg(long, value_enum, default_value_t = SelectMethod::Herding)]
    pub method: SelectMethod,
    /// Herding features: convnet (random-init ConvNet-3) | pixels.
    #[arg(long, value_enum, default_value_t = FeatureKind::Convnet)]
    pub features: FeatureKind,
    /// CIFAR10, CIFAR100, MNIST, FashionMNIST, TinyImageNet, embedded.
    #[arg(long, default_value = "embedded")]
    pub dataset: String,
    /// Folder of the real dataset (default $DDR_DATA_DIR).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    #[arg(long, default_value_t = 10)]
    pub ipc: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Random method only: draw the subset of evaluation run R (the one `eval` uses as its run-R
    /// baseline with the same seed) instead of a subset disjoint from every run's draw.
    #[arg(long)]
    pub run: Option<u64>,
    /// Output .safetensors file.
    #[arg(long)]
    pub out: PathBuf,
    /// auto | cpu | cuda | cuda:N | emulated: where the ConvNet features are computed.
    #[arg(long, default_value = "auto")]
    pub device: String,
}

pub fn run(a: &SelectArgs) -> Result<()> {
    let cfg = EvalConfig {
        dataset: DatasetInfo::parse(&a.dataset)?.name.to_string(),
        data_dir: a.data_dir.clone(),
        ..EvalConfig::default()
    };
    let real = load_real_for(&cfg)?;
    let train = to_image_set(&real.train, &real, None)?;
    let idx = match (a.method, a.run) {
        (SelectMethod::Random, Some(run)) => {
            crate::data::random_subset(&train.labels, train.classes, a.ipc, a.seed, run)?
        }
        _ => {
            let (opened, line) = DeviceChoice::parse(&a.device)?.open(Origin::Flag)?;
            eprintln!("{line}");
            match opened {
                Opened::Cpu(be) => {
                    select(&Arc::new(be), &train, a.method, a.features, a.ipc, a.seed)?
                }
                Opened::Cuda(be) => {
                    select(&Arc::new(be), &train, a.method, a.features, a.ipc, a.seed)?
                }
            }
        }
    };
    let d = &real.train;
    let mut images = Vec::with_capacity(idx.len() * d.image_len()); // (N, C, H, W) pixels in [0, 1]
    for &i in &idx {
        images.extend_from_slice(d.image(i));
    }
    let meta = HashMap::from([
        ("pixel_space".to_string(), "true".to_string()),
        (
            "ddr_fast_select".to_string(),
            format!(
                "{:?} features {:?} seed {} ipc {}",
                a.method, a.features, a.seed, a.ipc
            ),
        ),
    ]);
    let shape = vec![idx.len(), d.channels, d.height, d.width];
    save_f32(&a.out, &[("images".to_string(), shape, images)], Some(meta))?;
    println!(
        "wrote {} ({} images, {} per class, {:?}) from {}",
        a.out.display(),
        idx.len(),
        a.ipc,
        a.method,
        real.name
    );
    Ok(())
}
