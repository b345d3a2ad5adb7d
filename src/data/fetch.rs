//! `ddr-fast data fetch`: download an official dataset archive over HTTP(S), resuming a partial
//! download with a Range request, showing progress on stderr, verifying the publisher's MD5 and
//! unpacking (tar.gz, zip) into the folder layout the readers detect.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use md5::{Digest, Md5};

use crate::error::{Error, Result};

/// One file to download and the MD5 its publisher lists for it.
#[derive(Debug, Clone, PartialEq)]
pub struct Resource {
    pub file: String,
    pub url: String,
    pub md5: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unpack {
    /// Keep the downloaded files as they are (e.g. IDX .gz files, read directly).
    Keep,
    TarGz,
    Zip,
}

/// What to fetch for one dataset.
#[derive(Debug, Clone, PartialEq)]
pub struct FetchSpec {
    pub dataset: String,
    pub resources: Vec<Resource>,
    pub unpack: Unpack,
    /// Sub-folder of the target folder that holds the dataset once done (what `data info` reads).
    pub result: String,
}

/// Largest archive accepted (TinyImageNet is 248 MB, CIFAR-100 binary 168 MB).
const MAX_DOWNLOAD: u64 = 4 << 30;
/// Largest total unpacked size (TinyImageNet unpacks to about 0.5 GB).
const MAX_UNPACKED: u64 = 8 << 30;

/// The official sources. MD5s as published: CIFAR on the CIFAR page (cs.toronto.edu/~kriz/cifar.html),
/// Fashion-MNIST in its README (also torchvision), TinyImageNet as recorded by common loaders.
pub fn spec(dataset: &str, url_base: Option<&str>) -> Result<FetchSpec> {
    let res = |base: &str, file: &str, md5: &str| Resource {
        file: file.to_string(),
        url: format!("{}/{file}", url_base.unwrap_or(base).trim_end_matches('/')),
        md5: md5.to_string(),
    };
    let s = match dataset {
        "cifar10" => FetchSpec {
            dataset: dataset.into(),
            resources: vec![res("https://www.cs.toronto.edu/~kriz", "cifar-10-binary.tar.gz", "c32a1d4ab5d03f1284b67883e8d87530")],
            unpack: Unpack::TarGz,
            result: "cifar-10-batches-bin".into(),
        },
        "cifar100" => FetchSpec {
            dataset: dataset.into(),
            resources: vec![res("https://www.cs.toronto.edu/~kriz", "cifar-100-binary.tar.gz", "03b5dce01913d631647c71ecec9e9cb8")],
            unpack: Unpack::TarGz,
            result: "cifar-100-binary".into(),
        },
        "fashion-mnist" => {
            let base = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com";
            FetchSpec {
                dataset: dataset.into(),
                resources: vec![
                    res(base, "train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
                    res(base, "train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe"),
                    res(base, "t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79"),
                    res(base, "t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310"),
                ],
                unpack: Unpack::Keep,
                result: "fashion-mnist".into(),
            }
        }
        "tinyimagenet" => FetchSpec {
            dataset: dataset.into(),
            resources: vec![res("http://cs231n.stanford.edu", "tiny-imagenet-200.zip", "90528d7ca1a48142e341f4ef8d21d0de")],
            unpack: Unpack::Zip,
            result: "tiny-imagenet-200".into(),
        },
        other => {
            return Err(Error::config(format!(
                "cannot fetch {other:?}: known datasets are cifar10, cifar100, fashion-mnist, tinyimagenet"
            )))
        }
    };
    Ok(s)
}

/// Download (resuming), verify and unpack; returns the dataset folder.
pub fn fetch(spec: &FetchSpec, dir: &Path, progress: bool) -> Result<PathBuf> {
    let out = match spec.unpack {
        Unpack::Keep => dir.join(&spec.result),
        _ => dir.to_path_buf(),
    };
    std::fs::create_dir_all(&out).map_err(|e| Error::io(&out, e))?;
    let mut archives = Vec::new();
    for r in &spec.resources {
        let dest = out.join(&r.file);
        if dest.is_file() && md5_file(&dest)? == r.md5 {
            if progress {
                eprintln!("{}: already present, checksum ok", dest.display());
            }
        } else {
            download(r, &dest, progress)?;
        }
        archives.push(dest);
    }
    for a in &archives {
        match spec.unpack {
            Unpack::Keep => {}
            Unpack::TarGz => untar_gz(a, &out)?,
            Unpack::Zip => unzip(a, &out)?,
        }
    }
    Ok(dir.join(&spec.result))
}

/// Hex MD5 of a file, streamed.
pub fn md5_file(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut h = Md5::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// Download one resource to `dest` through `dest.part`, resuming what is there.
fn download(r: &Resource, dest: &Path, progress: bool) -> Result<()> {
    let part = dest.with_extension(format!(
        "{}.part",
        dest.extension().and_then(|e| e.to_str()).unwrap_or("")
    ));
    let have = std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut req = agent.get(&r.url);
    if have > 0 {
        req = req.header("Range", format!("bytes={have}-"));
    }
    let mut resp = req
        .call()
        .map_err(|e| Error::format(&r.url, format!("download failed: {e}")))?;
    let status = resp.status().as_u16();
    let len = resp
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let (append, start) = match status {
        206 => (true, have),
        200 => (false, 0),
        // The partial file is already complete: only the checksum is left to check.
        416 if have > 0 => {
            return finish(r, &part, dest);
        }
        s => return Err(Error::format(&r.url, format!("server answered HTTP {s}"))),
    };
    let total = len.map(|l| l + start);
    if total.is_some_and(|t| t > MAX_DOWNLOAD) {
        return Err(Error::format(
            &r.url,
            format!(
                "archive is {} bytes, more than the {MAX_DOWNLOAD} allowed",
                total.unwrap_or(0)
            ),
        ));
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(append)
        .truncate(!append)
        .open(&part)
        .map_err(|e| Error::io(&part, e))?;
    let mut reader = resp.body_mut().with_config().limit(MAX_DOWNLOAD).reader();
    let mut buf = vec![0u8; 1 << 16];
    let mut done = start;
    let mut shown = 0u64;
    loop {
        let n = reader.read(&mut buf).map_err(|e| {
            Error::format(
                &r.url,
                format!("download interrupted after {done} bytes: {e} (run again to resume)"),
            )
        })?;
        if n == 0 {
            break;
        }
        file.write_all(&buf[..n]).map_err(|e| Error::io(&part, e))?;
        done += n as u64;
        if progress && done - shown >= (1 << 22) {
            shown = done;
            match total {
                Some(t) => eprint!(
                    "\r{}: {:.1} / {:.1} MB ({:.0}%)",
                    r.file,
                    mb(done),
                    mb(t),
                    100.0 * done as f64 / t as f64
                ),
                None => eprint!("\r{}: {:.1} MB", r.file, mb(done)),
            }
        }
    }
    if progress {
        eprintln!("\r{}: {:.1} MB downloaded", r.file, mb(done));
    }
    file.flush().map_err(|e| Error::io(&part, e))?;
    drop(file);
    if let Some(t) = total {
        if done != t {
            return Err(Error::format(
                &r.url,
                format!("download stopped at {done} of {t} bytes (run again to resume)"),
            ));
        }
    }
    finish(r, &part, dest)
}

fn mb(b: u64) -> f64 {
    b as f64 / 1e6
}

/// Verify the checksum of a finished download and move it into place; a wrong file is deleted.
fn finish(r: &Resource, part: &Path, dest: &Path) -> Result<()> {
    let got = md5_file(part)?;
    if got != r.md5 {
        let _ = std::fs::remove_file(part);
        return Err(Error::format(
            dest,
            format!("checksum mismatch: MD5 {got}, the publisher lists {} (download deleted; run again)", r.md5),
        ));
    }
    std::fs::rename(part, dest).map_err(|e| Error::io(dest, e))
}

/// Unpack a .tar.gz into `out`; entries may not escape `out` (the tar crate refuses `..` paths).
fn untar_gz(archive: &Path, out: &Path) -> Result<()> {
    let f = std::fs::File::open(archive).map_err(|e| Error::io(archive, e))?;
    let dec = flate2::read::GzDecoder::new(f).take(MAX_UNPACKED);
    let mut tar = tar::Archive::new(dec);
    tar.set_preserve_permissions(false);
    tar.unpack(out)
        .map_err(|e| Error::format(archive, format!("cannot unpack: {e}")))
}

/// Unpack a zip (stored or deflated entries) into `out`, refusing names that escape it.
fn unzip(archive: &Path, out: &Path) -> Result<()> {
    let f = std::fs::File::open(archive).map_err(|e| Error::io(archive, e))?;
    let mut zip = zip::ZipArchive::new(std::io::BufReader::new(f))
        .map_err(|e| Error::format(archive, format!("corrupt zip: {e}")))?;
    let mut total = 0u64;
    for i in 0..zip.len() {
        let entry = zip
            .by_index_raw(i)
            .map_err(|e| Error::format(archive, format!("zip entry {i}: {e}")))?;
        let Some(rel) = entry.enclosed_name() else {
            return Err(Error::format(
                archive,
                format!("zip entry {i} has an unsafe name"),
            ));
        };
        let dest = out.join(rel);
        if entry.is_dir() {
            std::fs::create_dir_all(&dest).map_err(|e| Error::io(&dest, e))?;
            continue;
        }
        total += entry.size();
        if total > MAX_UNPACKED {
            return Err(Error::format(
                archive,
                "unpacks to more than the size allowed (zip bomb?)",
            ));
        }
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        let size = entry.size();
        let method = entry.compression();
        let mut w = std::fs::File::create(&dest).map_err(|e| Error::io(&dest, e))?;
        let copied = match method {
            m if m == zip::CompressionMethod::STORE => std::io::copy(&mut entry.take(size), &mut w),
            // The zip crate is built without its deflate feature; flate2 inflates instead.
            m if m == zip::CompressionMethod::DEFLATE => std::io::copy(
                &mut flate2::read::DeflateDecoder::new(entry).take(size),
                &mut w,
            ),
            other => {
                return Err(Error::format(
                    archive,
                    format!(
                        "zip entry {} uses unsupported compression {other:?}",
                        dest.display()
                    ),
                ))
            }
        }
        .map_err(|e| Error::format(archive, format!("cannot unpack {}: {e}", dest.display())))?;
        if copied != size {
            return Err(Error::format(
                archive,
                format!(
                    "zip entry {} is truncated ({copied} of {size} bytes)",
                    dest.display()
                ),
            ));
        }
    }
    Ok(())
}
