//! Image folders: ImageFolder trees (one sub-folder per class, PNG/JPEG), TinyImageNet (train/ by
//! class, val/ regrouped with val_annotations.txt) and ImageNet subsets chosen by a class list.
//! Decoding runs with size limits so a decompression bomb is refused before it is allocated.

use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::data::io::read_file;
use crate::data::Dataset;
use crate::error::{Error, Result};

/// Largest accepted image side (ImageNet originals rarely exceed 4k; distilled images are tiny).
pub const MAX_SIDE: u32 = 8192;
/// Largest allocation the decoder may make for one image.
pub const MAX_DECODE_BYTES: u64 = 256 << 20;

fn is_image(p: &Path) -> bool {
    matches!(
        p.extension()
            .and_then(|e| e.to_str())
            .map(|e| e.to_ascii_lowercase())
            .as_deref(),
        Some("png" | "jpg" | "jpeg")
    )
}

/// Entries of a folder, sorted by name; an unreadable folder (or a symlink loop) is an error.
fn entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let rd = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let mut out = Vec::new();
    for e in rd {
        out.push(e.map_err(|e| Error::io(dir, e))?.path());
    }
    out.sort();
    Ok(out)
}

/// `metadata` that follows symlinks, so a symlink loop surfaces as an error naming the path.
fn is_dir(p: &Path) -> Result<bool> {
    Ok(std::fs::metadata(p).map_err(|e| Error::io(p, e))?.is_dir())
}

/// The PNG/JPEG files of one class folder (or of its `images/` sub-folder, TinyImageNet style).
fn class_images(dir: &Path) -> Result<Vec<PathBuf>> {
    let sub = dir.join("images");
    let dir = if sub.is_dir() { sub } else { dir.to_path_buf() };
    let mut out = Vec::new();
    for p in entries(&dir)? {
        if is_image(&p) && !is_dir(&p)? {
            out.push(p);
        }
    }
    if out.is_empty() {
        return Err(Error::format(
            &dir,
            "class folder is empty (no .png/.jpg/.jpeg images)",
        ));
    }
    Ok(out)
}

/// Decode one image with limits, as (C, H, W) floats in \[0,1\]; `gray` picks 1 channel, else RGB.
pub fn decode(path: &Path, gray: Option<bool>) -> Result<(usize, usize, usize, Vec<f32>)> {
    let bytes = read_file(path, MAX_DECODE_BYTES)?;
    let mut reader = image::ImageReader::new(std::io::Cursor::new(&bytes[..]))
        .with_guessed_format()
        .map_err(|e| Error::io(path, e))?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    reader.limits(limits);
    let img = reader
        .decode()
        .map_err(|e| Error::format(path, format!("cannot decode image: {e}")))?;
    let gray = gray.unwrap_or(matches!(
        img.color(),
        image::ColorType::L8
            | image::ColorType::L16
            | image::ColorType::La8
            | image::ColorType::La16
    ));
    let (w, h) = (img.width() as usize, img.height() as usize);
    if gray {
        let g = img.to_luma8();
        return Ok((
            1,
            h,
            w,
            g.as_raw().iter().map(|&v| v as f32 / 255.0).collect(),
        ));
    }
    let rgb = img.to_rgb8(); // (H, W, 3)
    let raw = rgb.as_raw();
    let mut out = vec![0f32; 3 * h * w]; // (3, H, W)
    for (k, px) in raw.chunks_exact(3).enumerate() {
        for c in 0..3 {
            out[c * h * w + k] = px[c] as f32 / 255.0;
        }
    }
    Ok((3, h, w, out))
}

/// Decode a labelled list of files into one split; all images must share one size.
fn decode_all(files: &[(PathBuf, u32)], class_names: Vec<String>) -> Result<Dataset> {
    let Some((first, _)) = files.first() else {
        return Err(Error::config("no images to read"));
    };
    let (c, h, w, _) = decode(first, None)?;
    let chw = c * h * w;
    let total = files
        .len()
        .checked_mul(chw)
        .ok_or_else(|| Error::format(first, "too many images to hold in memory"))?;
    // Decode straight into the final buffer: one copy of the set in memory, not two.
    let mut images = vec![0f32; total]; // (N, C, H, W)
    images
        .par_chunks_mut(chw)
        .zip(files.par_iter())
        .try_for_each(|(dst, (p, _))| {
            let (c2, h2, w2, v) = decode(p, Some(c == 1))?;
            if (c2, h2, w2) != (c, h, w) {
                return Err(Error::format(
                    p,
                    format!(
                        "image is {c2}x{h2}x{w2} but {} is {c}x{h}x{w}",
                        first.display()
                    ),
                ));
            }
            dst.copy_from_slice(&v);
            Ok(())
        })?;
    Ok(Dataset {
        images,
        labels: files.iter().map(|(_, l)| *l).collect(),
        classes: class_names.len(),
        channels: c,
        height: h,
        width: w,
        class_names,
    })
}

/// One folder per class (sorted by name, or the given class list in its order).
pub fn read_class_folders(dir: &Path, classes: Option<&[String]>) -> Result<Dataset> {
    if !is_dir(dir)? {
        return Err(Error::format(dir, "expected a folder of class folders"));
    }
    let names: Vec<String> = match classes {
        Some(list) => list.to_vec(),
        None => {
            let mut v = Vec::new();
            for p in entries(dir)? {
                if is_dir(&p)? {
                    v.push(
                        p.file_name()
                            .map(|s| s.to_string_lossy().into_owned())
                            .unwrap_or_default(),
                    );
                }
            }
            v
        }
    };
    if names.is_empty() {
        return Err(Error::format(dir, "folder is empty: no class sub-folders"));
    }
    let mut files = Vec::new();
    for (k, name) in names.iter().enumerate() {
        let cdir = dir.join(name);
        if !cdir.exists() {
            return Err(Error::format(
                &cdir,
                format!("class folder {name} from the class list is missing"),
            ));
        }
        for f in class_images(&cdir)? {
            files.push((f, k as u32));
        }
    }
    decode_all(&files, names)
}

/// `train/` and `val/` (or `test/`) class folders; `classes` restricts to (and orders) a subset.
pub fn load_image_folder_splits(
    root: &Path,
    classes: Option<&[String]>,
) -> Result<(Dataset, Dataset)> {
    let train = read_class_folders(&root.join("train"), classes)?;
    let test_dir = if root.join("val").is_dir() {
        root.join("val")
    } else {
        root.join("test")
    };
    let test = read_class_folders(&test_dir, Some(&train.class_names))?;
    Ok((train, test))
}

/// TinyImageNet: classes from wnids.txt (sorted, as ImageFolder sorts them), train/<wnid>/images/,
/// and val/images/ regrouped by val/val_annotations.txt (filename, wnid, box).
pub fn load_tinyimagenet(root: &Path) -> Result<(Dataset, Dataset)> {
    let wpath = root.join("wnids.txt");
    let text = String::from_utf8(read_file(&wpath, 1 << 20)?)
        .map_err(|_| Error::format(&wpath, "not UTF-8 text"))?;
    let mut wnids: Vec<String> = text
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect();
    wnids.sort();
    if wnids.is_empty() {
        return Err(Error::format(&wpath, "no class ids"));
    }
    let train = read_class_folders(&root.join("train"), Some(&wnids))?;
    let apath = root.join("val").join("val_annotations.txt");
    let text = String::from_utf8(read_file(&apath, 64 << 20)?)
        .map_err(|_| Error::format(&apath, "not UTF-8 text"))?;
    let mut files = Vec::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let mut it = line.split('\t');
        let (Some(file), Some(wnid)) = (it.next(), it.next()) else {
            return Err(Error::format(
                &apath,
                format!("line {}: expected <file>\\t<wnid>\\t...", i + 1),
            ));
        };
        let k = wnids.binary_search(&wnid.to_string()).map_err(|_| {
            Error::format(
                &apath,
                format!("line {}: class {wnid} is not in wnids.txt", i + 1),
            )
        })?;
        let f = root.join("val").join("images").join(file);
        if !f.is_file() {
            return Err(Error::format(
                &f,
                format!("listed in {} but missing", apath.display()),
            ));
        }
        files.push((f, k as u32));
    }
    if files.is_empty() {
        return Err(Error::format(&apath, "no validation images listed"));
    }
    let test = decode_all(&files, wnids)?;
    Ok((train, test))
}
