//! Bounded file reading for every data reader: whole files with a size cap, gzip with a cap on the
//! decompressed size (decompression bombs), and a byte cursor whose reads fail instead of panicking.

use std::io::Read;
use std::path::Path;

use crate::error::{Error, Result};

/// Largest file any reader loads whole (the biggest supported file, a CIFAR-100 train batch of
/// 153 MB, fits with room; ImageNet-scale folders are read image by image).
pub const MAX_FILE_BYTES: u64 = 1 << 31;

/// Length of a file in bytes, via metadata (no read).
pub fn file_len(path: &Path) -> Result<u64> {
    let md = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if !md.is_file() {
        return Err(Error::format(path, "expected a regular file"));
    }
    Ok(md.len())
}

/// Read a whole file, refusing files larger than `max` bytes before allocating.
pub fn read_file(path: &Path, max: u64) -> Result<Vec<u8>> {
    let len = file_len(path)?;
    if len > max {
        return Err(Error::format(
            path,
            format!("file is {len} bytes, larger than the {max} bytes allowed here"),
        ));
    }
    let mut buf = Vec::with_capacity(len as usize);
    std::fs::File::open(path)
        .and_then(|f| f.take(max + 1).read_to_end(&mut buf))
        .map_err(|e| Error::io(path, e))?;
    if buf.len() as u64 > max {
        return Err(Error::format(
            path,
            format!("file grew past the {max} bytes allowed while reading"),
        ));
    }
    Ok(buf)
}

/// Whether a path names a gzip file (by extension).
pub fn is_gz(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("gz"))
}

/// Decompress gzip bytes (all members), refusing output beyond `max_out` bytes.
pub fn gunzip(path: &Path, raw: &[u8], max_out: u64) -> Result<Vec<u8>> {
    if raw.len() < 2 || raw[0] != 0x1f || raw[1] != 0x8b {
        return Err(Error::format(
            path,
            "not a gzip file (wrong magic; expected 1f 8b)",
        ));
    }
    let mut out = Vec::new();
    let dec = flate2::read::MultiGzDecoder::new(raw);
    dec.take(max_out + 1)
        .read_to_end(&mut out)
        .map_err(|e| Error::format(path, format!("corrupt gzip data: {e}")))?;
    if out.len() as u64 > max_out {
        return Err(Error::format(
            path,
            format!("gzip data decompresses to more than {max_out} bytes (a decompression bomb or the wrong file)"),
        ));
    }
    Ok(out)
}

/// A cursor over bytes whose reads return a format error naming the file instead of panicking.
pub struct Cursor<'a> {
    pub path: &'a Path,
    pub buf: &'a [u8],
    pub pos: usize,
}

impl<'a> Cursor<'a> {
    pub fn new(path: &'a Path, buf: &'a [u8]) -> Self {
        Cursor { path, buf, pos: 0 }
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// The next `n` bytes; an error if fewer remain (checked before any allocation by callers).
    pub fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return Err(Error::format(
                self.path,
                format!(
                    "truncated: needs {n} more bytes at offset {}, only {} left",
                    self.pos,
                    self.remaining()
                ),
            ));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    pub fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    pub fn u16_le(&mut self) -> Result<u16> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    pub fn u32_le(&mut self) -> Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn u32_be(&mut self) -> Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn u64_le(&mut self) -> Result<u64> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
}

/// Product of dimensions with overflow checking (a lying header's shape must not wrap around).
pub fn checked_product(path: &Path, dims: &[usize], what: &str) -> Result<usize> {
    dims.iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| {
            Error::format(
                path,
                format!("{what}: shape {dims:?} has more elements than fit in memory (overflow)"),
            )
        })
}

/// uint8 pixels to \[0,1\] floats.
pub fn u8_to_unit(bytes: &[u8]) -> Vec<f32> {
    bytes.iter().map(|&b| b as f32 / 255.0).collect()
}
