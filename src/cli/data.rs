//! `ddr-fast data info PATH [--json]` and `ddr-fast data fetch NAME`: inspect and validate any
//! dataset, synthetic set, `.pt` file or checkpoint exactly as `eval` would load it; download
//! official archives.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use serde_json::{json, Value as Json};

use crate::data::safetensors_io::load_safetensors;
use crate::data::synthetic::load_synthetic_for;
use crate::data::torch::{load_pt, PtValue};
use crate::data::{self, Dataset, RealData, SyntheticSet};
use crate::error::{Error, Result};

#[derive(Args, Debug)]
pub struct DataArgs {
    #[command(subcommand)]
    pub command: DataCommand,
}

#[derive(Subcommand, Debug)]
pub enum DataCommand {
    /// Detect, validate and describe a dataset folder, synthetic set, .pt file or checkpoint.
    Info(InfoArgs),
    /// Download an official dataset archive, verify its published MD5, unpack it.
    Fetch(FetchArgs),
}

#[derive(Args, Debug)]
pub struct FetchArgs {
    /// cifar10, cifar100, fashion-mnist or tinyimagenet.
    pub dataset: String,
    /// Target folder (default: $DDR_DATA_DIR, else ./data).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Download from this base URL (a mirror) instead of the publisher; checksums are still checked.
    #[arg(long)]
    pub url_base: Option<String>,
}

#[derive(Args, Debug)]
pub struct InfoArgs {
    /// A dataset folder, a .safetensors / .pt / .pth file, or a synthetic image folder.
    pub path: PathBuf,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// For synthetic sets: the real dataset they belong to (default: inferred from the shape).
    #[arg(long)]
    pub dataset: Option<String>,
    /// For synthetic sets: the expected images per class (default: N / classes).
    #[arg(long)]
    pub ipc: Option<usize>,
}

pub fn run(args: &DataArgs) -> Result<()> {
    match &args.command {
        DataCommand::Info(a) => info(a),
        DataCommand::Fetch(a) => fetch(a),
    }
}

fn info(a: &InfoArgs) -> Result<()> {
    let report = describe_path(a)?;
    print(&report, a.json);
    Ok(())
}

/// Decide what the path is, load it exactly as `eval` would, and describe it.
fn describe_path(a: &InfoArgs) -> Result<Json> {
    let path = &a.path;
    if !path.exists()
        && (path.as_os_str() == "fashion-mnist-embedded" || path.as_os_str() == "embedded")
    {
        return Ok(describe_real(&data::embedded::fashion_mnist()?, path));
    }
    let md = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if md.is_dir() {
        // A real dataset layout first; otherwise a synthetic image folder (class sub-folders).
        return match data::detect::detect(path) {
            Ok(fmt) => Ok(describe_real(&data::detect::load_format(&fmt)?, path)),
            Err(real_err) => {
                let has_subdirs = std::fs::read_dir(path)
                    .map_err(|e| Error::io(path, e))?
                    .any(|e| e.map(|e| e.path().is_dir()).unwrap_or(false));
                if a.dataset.is_none() && !has_subdirs {
                    return Err(real_err);
                }
                let (syn, name) = load_synthetic_for(path, a.dataset.as_deref(), a.ipc)?;
                Ok(describe_syn(&syn, &name, path))
            }
        };
    }
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    match ext.as_str() {
        "safetensors" => {
            let f = load_safetensors(path)?;
            if f.is_synthetic() {
                f.images(path)?;
                let (syn, name) = load_synthetic_for(path, a.dataset.as_deref(), a.ipc)?;
                Ok(describe_syn(&syn, &name, path))
            } else {
                Ok(describe_weights(&data::load_teacher(path)?, path, "safetensors"))
            }
        }
        "pt" | "pth" | "ckpt" => {
            let v = load_pt(path)?;
            let is_set = matches!(&v, PtValue::Tensor(t) if t.shape.len() == 4)
                || v.get("images").is_some()
                || v.get("image_syn").is_some();
            if let PtValue::Tensor(t) = &v {
                if !is_set {
                    return describe_tensor(t, path);
                }
            }
            if is_set {
                let (syn, name) = load_synthetic_for(path, a.dataset.as_deref(), a.ipc)?;
                Ok(describe_syn(&syn, &name, path))
            } else {
                Ok(describe_weights(&data::load_teacher(path)?, path, "pytorch state_dict"))
            }
        }
        _ => Err(Error::format(
            path,
            "unknown kind of input (expected a dataset folder, an image folder, .safetensors, .pt or .pth)",
        )),
    }
}

fn describe_syn(s: &SyntheticSet, dataset: &str, path: &Path) -> Json {
    // Statistics in [0,1] pixel space: undo the dataset normalisation on a copy.
    let norm = data::Norm::for_dataset(dataset.trim_end_matches("-embedded"))
        .unwrap_or_else(|| data::Norm::identity(s.channels));
    let mut pixels = s.images.clone(); // (N, C, H, W)
    norm.invert(&mut pixels, s.channels, s.height * s.width);
    let st = data::channel_stats(&pixels, s.channels, s.height * s.width);
    let mut counts = vec![0usize; s.classes];
    for &l in &s.labels {
        counts[l as usize] += 1;
    }
    json!({
        "path": path.display().to_string(),
        "kind": "synthetic set",
        "format": s.format,
        "dataset": dataset,
        "images": s.len(),
        "ipc": s.ipc,
        "classes": s.classes,
        "image_shape": [s.channels, s.height, s.width],
        "labels": if s.labels_given { "from file" } else { "class-major (none in file)" },
        "per_class": counts,
        "soft_labels": s.soft_labels.as_ref().map(|v| vec![s.len(), v.len() / s.len().max(1)]),
        "lr": s.lr,
        "stored_as": if s.was_pixel_space { "[0,1] pixels" } else { "normalised" },
        "mean": st.mean,
        "std": st.std,
    })
}

fn describe_weights(w: &data::TeacherWeights, path: &Path, format: &str) -> Json {
    let tensors: serde_json::Map<String, Json> = w
        .tensors
        .iter()
        .map(|(k, (s, _))| (k.clone(), json!(s)))
        .collect();
    json!({
        "path": path.display().to_string(),
        "kind": "model weights",
        "format": format,
        "tensors": w.tensors.len(),
        "parameters": w.numel(),
        "shapes": tensors,
    })
}

fn fetch(a: &FetchArgs) -> Result<()> {
    let dir = a
        .dir
        .clone()
        .or_else(|| std::env::var_os("DDR_DATA_DIR").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("data"));
    let spec = data::fetch::spec(&a.dataset, a.url_base.as_deref())?;
    let out = data::fetch::fetch(&spec, &dir, true)?;
    let fmt = data::detect::detect(&out)?;
    println!(
        "{}: {} ready at {}",
        a.dataset,
        fmt.dataset_name(),
        out.display()
    );
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

fn describe_real(r: &RealData, path: &Path) -> Json {
    json!({
        "path": path.display().to_string(),
        "kind": "real dataset",
        "dataset": r.name,
        "format": r.format,
        "classes": r.train.classes,
        "class_names": r.train.class_names,
        "image_shape": [r.train.channels, r.train.height, r.train.width],
        "pixel_space": "[0,1]",
        "normalisation": {"mean": short(&r.norm.mean), "std": short(&r.norm.std)},
        "train": describe_split(&r.train),
        "test": describe_split(&r.test),
    })
}

/// A lone tensor that is not an image set (labels, a learning rate, soft labels): shape and dtype,
/// refused if any value is not finite.
fn describe_tensor(t: &data::torch::Tensor, path: &Path) -> Result<Json> {
    let v = t.to_f32();
    if let Some(i) = v.iter().position(|x| !x.is_finite()) {
        return Err(Error::format(
            path,
            format!("tensor has a non-finite value at flat index {i}"),
        ));
    }
    Ok(json!({
        "path": path.display().to_string(),
        "kind": "tensor",
        "dtype": t.dtype.name(),
        "shape": t.shape,
        "values": if v.len() <= 10 { json!(v) } else { json!(format!("{} values", v.len())) },
    }))
}

/// f32 constants as the decimals they were written with (0.4914, not 0.49140000343322754).
fn short(v: &[f32]) -> Vec<f64> {
    v.iter()
        .map(|x| x.to_string().parse().unwrap_or(*x as f64))
        .collect()
}
