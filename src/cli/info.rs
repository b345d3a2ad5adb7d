//! `ddr-fast info [--json]`: what this build and this machine offer: version, CPU threads, the
//! CUDA kernels and GPU architectures embedded at build time, and the GPUs the driver sees.

use clap::Args;

use crate::backend::cuda::{embedded, visible_gpus};
use crate::error::Result;

#[derive(Args, Debug)]
pub struct InfoArgs {
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &InfoArgs) -> Result<()> {
    let threads = rayon::current_num_threads();
    let kernels = embedded::kernel_names();
    // No GPU is not an error for `info`: it reports why instead.
    let (gpus, gpu_note) = match visible_gpus() {
        Ok(g) => (g, None),
        Err(e) => (Vec::new(), Some(e.to_string())),
    };
    if args.json {
        let info = serde_json::json!({
            "version": crate::VERSION,
            "cpu_threads": threads,
            "cuda": {
                "built_with_nvcc": embedded::BUILT_WITH_NVCC,
                "nvcc": embedded::NVCC_VERSION,
                "architectures": embedded::ARCHITECTURES,
                "kernels": kernels,
                "gpus": gpus,
                "gpu_note": gpu_note,
            },
        });
        println!("{info:#}");
    } else {
        println!("ddr-fast {}", crate::VERSION);
        println!("cpu threads: {threads}");
        if embedded::BUILT_WITH_NVCC {
            println!(
                "cuda kernels: {} ({})",
                kernels.len(),
                embedded::NVCC_VERSION
            );
            println!("cuda architectures: {}", embedded::ARCHITECTURES.join(" "));
        } else {
            println!("cuda kernels: none ({})", embedded::HOW_TO_GET_KERNELS);
        }
        match gpu_note {
            None if gpus.is_empty() => println!("gpus: none"),
            None => {
                for (i, g) in gpus.iter().enumerate() {
                    println!("gpu cuda:{i}: {g}");
                }
            }
            Some(note) => println!("gpus: none ({note})"),
        }
    }
    Ok(())
}
