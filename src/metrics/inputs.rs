//! Loads what an evaluation reads (real data, synthetic set, teachers) through the data module and
//! turns it into the trainer's normalised [`ImageSet`]s, plus the identities the cache keys need.

use std::path::{Path, PathBuf};

use super::cache::identity_of_path;
use super::config::EvalConfig;
use crate::aug::Zca;
use crate::data::detect::load_named;
use crate::data::teacher::{load_teacher, TeacherWeights};
use crate::data::{load_synthetic, Dataset, RealData, SynExpect};
use crate::error::{Error, Result};
use crate::model::{Net, ParamLayout};
use crate::train::trainer::{ImageSet, Teacher};

/// Folder of the real dataset: the config's, else `$DDR_DATA_DIR`.
pub fn data_dir(cfg: &EvalConfig) -> Option<PathBuf> {
    cfg.data_dir
        .clone()
        .or_else(|| std::env::var_os("DDR_DATA_DIR").map(PathBuf::from))
}

/// The real dataset named by the config.
pub fn load_real_for(cfg: &EvalConfig) -> Result<RealData> {
    let info = cfg.dataset_info()?;
    load_named(info.name, data_dir(cfg).as_deref())
}

/// A split as the students see it: normalised with the dataset's mean/std, or, with ZCA,
/// whitened from raw [0, 1] pixels and not normalised (DD-Ranking's `get_dataset` drops the
/// Normalize transform when `use_zca` is set, as MTT/DATM do).
pub fn to_image_set(d: &Dataset, real: &RealData, zca: Option<&Zca>) -> Result<ImageSet> {
    let images = match zca {
        None => d.normalised(&real.norm), // (N, C, H, W)
        Some(z) => {
            let mut out = vec![0f32; d.images.len()]; // (N, C, H, W)
            z.apply(&d.images, &mut out)?;
            out
        }
    };
    if d.height != d.width {
        return Err(Error::config(format!(
            "{}: only square images are supported, found {}×{}",
            real.name, d.height, d.width
        )));
    }
    Ok(ImageSet {
        images,
        labels: d.labels.clone(),
        soft: None,
        channels: d.channels,
        size: d.height,
        classes: d.classes,
    })
}

/// ZCA fitted on the whole training set in raw [0, 1] pixels (DESIGN.md §3, kornia's
/// `ZCAWhitening(eps=0.1)` as DD-Ranking fits it), when asked.
pub fn fit_zca(cfg: &EvalConfig, real: &RealData) -> Result<Option<Zca>> {
    if !cfg.use_zca {
        return Ok(None);
    }
    let (x, _) = crate::data::zca::fit_input(&real.train); // (N, D) raw pixels
    Ok(Some(Zca::fit(
        x,
        real.train.len(),
        real.train.image_len(),
        crate::aug::zca::ZCA_EPS,
    )?))
}

/// The synthetic set at `path`, checked against the real data; returns the set, its stored
/// learning rate (if any) and its identity. With `use_zca` the set is taken as already whitened:
/// methods that distil in ZCA space save whitened images, and DD-Ranking whitens only the real data.
pub fn load_syn(
    cfg: &EvalConfig,
    path: &Path,
    real: &RealData,
) -> Result<(ImageSet, Option<f64>, String)> {
    let syn = load_synthetic(path, &SynExpect::for_real(real, Some(cfg.ipc)))?;
    let set = ImageSet {
        images: syn.images, // (N, C, H, W), normalised by the loader
        labels: syn.labels,
        soft: syn.soft_labels,
        channels: syn.channels,
        size: syn.height,
        classes: syn.classes,
    };
    Ok((set, syn.lr.map(f64::from), identity_of_path(path)?))
}

/// Where a teacher named `name` is looked for: DD-Ranking's layout
/// `dir/<DATASET>/<name>/ckpt_best.pt` first (the dataset as DD-Ranking spells it, e.g. CIFAR10,
/// then ddr-fast's lower-case name), then `dir/name`, then `dir/name.{safetensors,pt,pth}` and the
/// same under `dir/<dataset>/`.
pub fn teacher_candidates(dir: &Path, dataset: &str, name: &str) -> Vec<PathBuf> {
    let reference = crate::metrics::config::DatasetInfo::parse(dataset)
        .map(|i| i.reference_name())
        .unwrap_or(dataset);
    let mut out = vec![dir.join(reference).join(name).join("ckpt_best.pt")];
    if reference != dataset {
        out.push(dir.join(dataset).join(name).join("ckpt_best.pt"));
    }
    out.push(dir.join(name));
    for base in [dir.to_path_buf(), dir.join(dataset)] {
        for ext in ["safetensors", "pt", "pth"] {
            out.push(base.join(format!("{name}.{ext}")));
        }
    }
    out
}

/// The teachers of a soft-label recipe, and their identity for the cache.
pub fn load_teachers(cfg: &EvalConfig, real: &RealData) -> Result<(Vec<Teacher>, String)> {
    if !cfg.recipe_is_soft() {
        return Ok((Vec::new(), String::new()));
    }
    let dir = cfg.teacher_dir.as_deref().ok_or_else(|| {
        Error::config("teacher_dir: a soft-label recipe needs teachers (--teacher-dir)")
    })?;
    let mut teachers = Vec::new();
    let mut ids = Vec::new();
    for name in &cfg.teacher_names {
        let tried = teacher_candidates(dir, &real.name, name);
        let path =
            tried.iter().find(|p| p.is_file()).ok_or_else(|| {
                Error::config(format!(
                "teacher {name}: no file found; tried {} (train one with `ddr-fast train-teacher`)",
                tried.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
            ))
            })?;
        let net = Net::from_name(
            name,
            real.train.channels,
            real.train.height,
            real.train.classes,
        )?;
        let w = load_teacher(path)?;
        teachers
            .push(teacher_from_weights(net, &w).map_err(|e| Error::format(path, e.to_string()))?);
        ids.push(identity_of_path(path)?);
    }
    Ok((teachers, ids.join(",")))
}

/// Places named weights (PyTorch state_dict names) into the model's flat layout.
pub fn teacher_from_weights(net: impl Into<Net>, w: &TeacherWeights) -> Result<Teacher> {
    let net: Net = net.into();
    let mut params = vec![0f32; net.param_len()]; // (P)
    let mut running = vec![0f32; net.buffer_len()]; // (R)
    for (entries, row) in [
        (&net.layout().params, &mut params),
        (&net.layout().buffers, &mut running),
    ] {
        for e in entries.iter() {
            let (shape, values) = w.get(&e.name)?;
            if shape != e.shape.as_slice() {
                return Err(Error::shape(format!(
                    "teacher tensor {}: shape {shape:?}, the model needs {:?}",
                    e.name, e.shape
                )));
            }
            row[e.range()].copy_from_slice(values);
        }
    }
    Ok(Teacher {
        net,
        params,
        running,
    })
}

/// The named tensors of one student row, for `data::teacher::save_teacher`.
pub fn weights_of(
    net: &impl AsRef<ParamLayout>,
    params: &[f32],
    running: &[f32],
) -> TeacherWeights {
    let layout = net.as_ref();
    let mut w = TeacherWeights::default();
    for e in &layout.params {
        w.tensors.insert(
            e.name.clone(),
            (e.shape.clone(), params[e.range()].to_vec()),
        );
    }
    for e in &layout.buffers {
        w.tensors.insert(
            e.name.clone(),
            (e.shape.clone(), running[e.range()].to_vec()),
        );
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    /// DD-Ranking's `get_pretrained_model_path`: `teacher_dir/<DATASET>/<MODEL>/ckpt_best.pt`,
    /// with the dataset as it spells it (CIFAR10), is found first.
    #[test]
    fn teachers_are_found_in_the_reference_layout() {
        let tmp = tempfile::tempdir().unwrap();
        let want = tmp
            .path()
            .join("CIFAR10")
            .join("ConvNet-3")
            .join("ckpt_best.pt");
        std::fs::create_dir_all(want.parent().unwrap()).unwrap();
        std::fs::write(&want, b"x").unwrap();
        // ddr-fast's own layout is still searched, after the reference's.
        std::fs::write(tmp.path().join("ConvNet-3.safetensors"), b"x").unwrap();
        let tried = teacher_candidates(tmp.path(), "cifar10", "ConvNet-3");
        assert_eq!(tried.iter().find(|p| p.is_file()), Some(&want), "{tried:?}");
        let own = teacher_candidates(tmp.path(), "cifar10", "ConvNet-4");
        assert!(own.contains(&tmp.path().join("cifar10").join("ConvNet-4.pt")));
    }
}
