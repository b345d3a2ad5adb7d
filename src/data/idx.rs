//! MNIST-family IDX files (raw or .gz): images with magic 0x00000803 (uint8, N×H×W) and labels with
//! magic 0x00000801 (uint8, N). Header dimensions are checked against the data length before any
//! allocation, so a lying count cannot trigger a huge allocation.

use std::path::{Path, PathBuf};

use std::io::Read;

use crate::data::io::{
    checked_product, file_len, is_gz, read_file, u8_to_unit, Cursor, MAX_FILE_BYTES,
};
use crate::data::Dataset;
use crate::error::{Error, Result};

/// Largest decompressed IDX file accepted (full MNIST train images are 47 MB).
const MAX_IDX_BYTES: u64 = 1 << 30;

/// Check the magic and dimensions of an IDX header; returns the dims and the data byte count.
fn parse_header(path: &Path, head: &[u8], magic: u32, ndim: usize) -> Result<(Vec<usize>, usize)> {
    let mut cur = Cursor::new(path, head);
    let m = cur.u32_be()?;
    if m != magic {
        return Err(Error::format(
            path,
            format!("wrong IDX magic 0x{m:08x}, expected 0x{magic:08x}"),
        ));
    }
    let mut dims = Vec::with_capacity(ndim);
    for _ in 0..ndim {
        dims.push(cur.u32_be()? as usize);
    }
    let need = checked_product(path, &dims, "IDX header")?;
    if need as u64 > MAX_IDX_BYTES {
        return Err(Error::format(
            path,
            format!("IDX header claims {dims:?} = {need} bytes of data, more than the {MAX_IDX_BYTES} allowed (lying header?)"),
        ));
    }
    Ok((dims, need))
}

/// Parse an IDX file already in memory: its dimensions and data bytes (exactly as many as the
/// header says).
pub fn parse_idx<'a>(
    path: &Path,
    buf: &'a [u8],
    magic: u32,
    ndim: usize,
) -> Result<(Vec<usize>, &'a [u8])> {
    let header_len = 4 + 4 * ndim;
    if buf.len() < header_len {
        return Err(Error::format(
            path,
            format!(
                "truncated: {} bytes, an IDX header needs {header_len}",
                buf.len()
            ),
        ));
    }
    let (dims, need) = parse_header(path, &buf[..header_len], magic, ndim)?;
    if buf.len() - header_len != need {
        return Err(Error::format(
            path,
            format!("IDX header says {dims:?} = {need} bytes of data but it holds {} (truncated or lying header)", buf.len() - header_len),
        ));
    }
    Ok((dims, &buf[header_len..]))
}

/// Read an IDX file (raw or .gz): its dimensions and data bytes. The data must be exactly as long
/// as the header says; a .gz is never decompressed past that length (decompression bombs).
pub fn read_idx(path: &Path, magic: u32, ndim: usize) -> Result<(Vec<usize>, Vec<u8>)> {
    let header_len = 4 + 4 * ndim;
    let mismatch = |dims: &[usize], need: usize, got: String| {
        Error::format(path, format!("IDX header says {dims:?} = {need} bytes of data but the file holds {got} (truncated or lying header)"))
    };
    if is_gz(path) {
        let raw = read_file(path, MAX_FILE_BYTES)?;
        if raw.len() < 2 || raw[0] != 0x1f || raw[1] != 0x8b {
            return Err(Error::format(
                path,
                "not a gzip file (wrong magic; expected 1f 8b)",
            ));
        }
        let mut dec = flate2::read::MultiGzDecoder::new(&raw[..]);
        let mut head = vec![0u8; header_len];
        dec.read_exact(&mut head)
            .map_err(|e| Error::format(path, format!("corrupt or truncated gzip data: {e}")))?;
        let (dims, need) = parse_header(path, &head, magic, ndim)?;
        let mut data = Vec::new();
        dec.take(need as u64 + 1)
            .read_to_end(&mut data)
            .map_err(|e| Error::format(path, format!("corrupt gzip data: {e}")))?;
        if data.len() > need {
            return Err(mismatch(
                &dims,
                need,
                "more (the gzip data decompresses past it)".into(),
            ));
        }
        if data.len() != need {
            return Err(mismatch(&dims, need, data.len().to_string()));
        }
        return Ok((dims, data));
    }
    let len = file_len(path)?;
    if len < header_len as u64 {
        return Err(Error::format(
            path,
            format!("truncated: {len} bytes, an IDX header needs {header_len}"),
        ));
    }
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut head = vec![0u8; header_len];
    f.read_exact(&mut head).map_err(|e| Error::io(path, e))?;
    let (dims, need) = parse_header(path, &head, magic, ndim)?;
    if len - header_len as u64 != need as u64 {
        return Err(mismatch(&dims, need, (len - header_len as u64).to_string()));
    }
    let mut data = Vec::with_capacity(need);
    f.take(need as u64)
        .read_to_end(&mut data)
        .map_err(|e| Error::io(path, e))?;
    if data.len() != need {
        return Err(mismatch(&dims, need, data.len().to_string()));
    }
    Ok((dims, data))
}

/// Read an image file and its label file into one split with 10 classes.
pub fn read_split(images: &Path, labels: &Path, class_names: &[String]) -> Result<Dataset> {
    let (dims, pixels) = read_idx(images, 0x0000_0803, 3)?;
    let (ldims, lab) = read_idx(labels, 0x0000_0801, 1)?;
    if ldims[0] != dims[0] {
        return Err(Error::format(
            labels,
            format!(
                "{} labels for {} images in {}",
                ldims[0],
                dims[0],
                images.display()
            ),
        ));
    }
    if dims[0] == 0 || dims[1] == 0 || dims[2] == 0 {
        return Err(Error::format(
            images,
            format!("empty IDX image array {dims:?}"),
        ));
    }
    let classes = class_names.len();
    let mut out = Vec::with_capacity(lab.len());
    for (i, &l) in lab.iter().enumerate() {
        if l as usize >= classes {
            return Err(Error::format(
                labels,
                format!(
                    "label {i} is {l}, out of range (expected 0..{})",
                    classes - 1
                ),
            ));
        }
        out.push(l as u32);
    }
    Ok(Dataset {
        images: u8_to_unit(&pixels),
        labels: out,
        classes,
        channels: 1,
        height: dims[1],
        width: dims[2],
        class_names: class_names.to_vec(),
    })
}

/// Find `<stem>` or `<stem>.gz` in a folder (also the `t10k-images.idx3-ubyte` spelling).
pub fn find(dir: &Path, stems: &[&str]) -> Option<PathBuf> {
    for s in stems {
        for name in [s.to_string(), format!("{s}.gz")] {
            let p = dir.join(&name);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

pub const FASHION_CLASSES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

/// Write an IDX file (used by tests and the embedded-set tool): magic, big-endian dims, data.
pub fn encode(magic: u32, dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut out = magic.to_be_bytes().to_vec();
    for d in dims {
        out.extend_from_slice(&d.to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}
