//! `ddr-fast data info PATH [--json]` and `ddr-fast data fetch NAME`: inspect and validate any
//! dataset, synthetic set, `.pt` file or checkpoint exactly as `eval` would load it; download
//! official archives.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde_json::{json, Value as Json};

use crate::data::{self, Dataset, RealData};
use crate::error::Result;

#[derive(Args, Debug)]
pub struct DataArgs {
    #[command(subcommand)]
    pub command: DataCommand,
}

#[derive(Subcommand, Debug)]
pub enum DataCommand {
    /// Detect, validate and describe a dataset folder, synthetic set, .pt file or checkpoint.
    Info(InfoArgs),
}

#[derive(Args, Debug)]
pub struct InfoArgs {
    /// A dataset folder, a .safetensors / .pt / .pth file, or a synthetic image folder.
    pub path: PathBuf,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &DataArgs) -> Result<()> {
    match &args.command {
        DataCommand::Info(a) => info(a),
    }
}

fn info(a: &InfoArgs) -> Result<()> {
    let report = describe_real(&data::load_real(&a.path)?, &a.path);
    print(&report, a.json);
    Ok(())
}

fn print(report: &Json, as_json: bool) {
    if as_json {
        println!("{report:#}");
    } else {
        print_text(report, 0);
    }
}

/// Indented `key: value` lines for people; the JSON form is for scripts and tests.
fn print_text(v: &Json, indent: usize) {
    let pad = " ".repeat(indent);
    if let Json::Object(m) = v {
        for (k, x) in m {
            match x {
                Json::Object(_) => {
                    println!("{pad}{k}:");
                    print_text(x, indent + 2);
                }
                _ => println!("{pad}{k}: {x}"),
            }
        }
    }
}

fn describe_split(d: &Dataset) -> Json {
    let st = data::channel_stats(&d.images, d.channels, d.height * d.width);
    json!({
        "images": d.len(),
        "per_class": d.class_counts(),
        "mean": st.mean,
        "std": st.std,
        "first_labels": d.labels.iter().take(10).collect::<Vec<_>>(),
    })
}

fn describe_real(r: &RealData, path: &std::path::Path) -> Json {
    json!({
        "path": path.display().to_string(),
        "kind": "real dataset",
        "dataset": r.name,
        "format": r.format,
        "classes": r.train.classes,
        "class_names": r.train.class_names,
        "image_shape": [r.train.channels, r.train.height, r.train.width],
        "pixel_space": "[0,1]",
        "normalisation": {"mean": r.norm.mean, "std": r.norm.std},
        "train": describe_split(&r.train),
        "test": describe_split(&r.test),
    })
}
