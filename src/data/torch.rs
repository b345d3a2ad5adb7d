//! PyTorch `.pt` / `.pth` files (the zip format `torch.save` writes since 1.6), read natively:
//! `<name>/data.pkl` is unpickled with the safe reader (torch allow-list), storages are read from
//! `<name>/data/<key>` as little-endian bytes, and each tensor view (offset + size + stride) is
//! gathered into a dense row-major tensor. Used for synthetic sets, labels, learned lrs and teachers.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use crate::data::io::{checked_product, read_file, MAX_FILE_BYTES};
use crate::data::pickle::{self, Allow, DType, Obj, Pickle, TensorRef, Value, MAX_DEPTH};
use crate::error::{Error, Result};

/// A dense tensor read from a file: floats widened to f32, integers to i64.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    /// The element type stored in the file.
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub data: TensorData,
}

#[derive(Debug, Clone, PartialEq)]
pub enum TensorData {
    /// Row-major (shape) values of a float tensor (f32/f64/f16/bf16 in the file).
    F32(Vec<f32>),
    /// Row-major (shape) values of an integer tensor (i64/i32/u8 in the file).
    I64(Vec<i64>),
}

impl Tensor {
    pub fn numel(&self) -> usize {
        match &self.data {
            TensorData::F32(v) => v.len(),
            TensorData::I64(v) => v.len(),
        }
    }

    /// Values as f32 (integers converted).
    pub fn to_f32(&self) -> Vec<f32> {
        match &self.data {
            TensorData::F32(v) => v.clone(),
            TensorData::I64(v) => v.iter().map(|&x| x as f32).collect(),
        }
    }
}

/// What a `.pt` file holds, as plain values.
#[derive(Debug, Clone, PartialEq)]
pub enum PtValue {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Tensor(Tensor),
    /// Lists and tuples.
    List(Vec<PtValue>),
    /// Dicts and OrderedDicts (state_dicts), keys in file order.
    Dict(Vec<(String, PtValue)>),
}

impl PtValue {
    /// Value of a key of a dict.
    pub fn get(&self, key: &str) -> Option<&PtValue> {
        match self {
            PtValue::Dict(d) => d.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// A short description for `data info` and error messages.
    pub fn describe(&self) -> String {
        match self {
            PtValue::None => "None".into(),
            PtValue::Bool(b) => format!("bool {b}"),
            PtValue::Int(i) => format!("int {i}"),
            PtValue::Float(f) => format!("float {f}"),
            PtValue::Str(s) => format!("str {s:?}"),
            PtValue::Tensor(t) => format!("{} tensor {:?}", t.dtype.name(), t.shape),
            PtValue::List(l) => format!("list of {}", l.len()),
            PtValue::Dict(d) => format!(
                "dict with keys {:?}",
                d.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>()
            ),
        }
    }
}

/// Objects a pickle may expand into when shared references are unfolded (a DAG of tuples can
/// otherwise describe 2^64 objects in a few hundred bytes).
const MAX_NODES: usize = 1_000_000;

/// Load a `.pt` / `.pth` file written by `torch.save` (zip format).
pub fn load_pt(path: &Path) -> Result<PtValue> {
    let buf = read_file(path, MAX_FILE_BYTES)?;
    if buf.len() < 4 || &buf[..4] != b"PK\x03\x04" {
        if buf.first() == Some(&0x80) {
            return Err(Error::format(
                path,
                "legacy (pre-1.6, non-zip) torch.save format is not supported; re-save with torch >= 1.6",
            ));
        }
        return Err(Error::format(
            path,
            "not a PyTorch zip file (wrong magic; expected PK\\x03\\x04)",
        ));
    }
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(&buf[..]))
        .map_err(|e| Error::format(path, format!("corrupt zip archive: {e}")))?;
    let names: Vec<String> = zip
        .file_names()
        .map(|s| s.map(|n| n.to_string()))
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| Error::format(path, format!("corrupt zip entry name: {e}")))?;
    let pkl: Vec<&String> = names
        .iter()
        .filter(|n| n.ends_with("data.pkl") && n.matches('/').count() <= 1)
        .collect();
    let pkl_name = match pkl.as_slice() {
        [one] => (*one).clone(),
        [] => {
            return Err(Error::format(
                path,
                "zip archive has no data.pkl (not a torch.save file)",
            ))
        }
        _ => {
            return Err(Error::format(
                path,
                "zip archive has more than one data.pkl",
            ))
        }
    };
    let prefix = pkl_name.strip_suffix("data.pkl").unwrap_or("").to_string();
    if let Ok(order) = read_entry(path, &mut zip, &format!("{prefix}byteorder"), 16) {
        if order != b"little" {
            return Err(Error::format(
                path,
                format!(
                    "byteorder is {:?}; only little-endian files are supported",
                    String::from_utf8_lossy(&order)
                ),
            ));
        }
    }
    let pkl_bytes = read_entry(path, &mut zip, &pkl_name, 1 << 28)?;
    let p = pickle::load(path, &pkl_bytes, Allow::Torch)?;
    let mut cx = Convert {
        path,
        zip: &mut zip,
        prefix,
        storages: HashMap::new(),
        nodes: 0,
        budget: 16 * buf.len() + (1 << 20),
    };
    cx.value(&p, p.root, 0)
}

/// Read one zip entry, refusing entries larger than `max` bytes and compressed entries.
fn read_entry(
    path: &Path,
    zip: &mut zip::ZipArchive<std::io::Cursor<&[u8]>>,
    name: &str,
    max: u64,
) -> Result<Vec<u8>> {
    let entry = zip
        .by_name(name)
        .map_err(|e| Error::format(path, format!("zip entry {name}: {e}")))?;
    if entry.size() > max {
        return Err(Error::format(
            path,
            format!(
                "zip entry {name} is {} bytes, more than the {max} allowed",
                entry.size()
            ),
        ));
    }
    // The size field of a zip entry can lie; never reserve more than a modest amount up front.
    let mut out = Vec::with_capacity(entry.size().min(1 << 26) as usize);
    entry.take(max + 1).read_to_end(&mut out).map_err(|e| {
        Error::format(
            path,
            format!("zip entry {name}: {e} (only stored, uncompressed entries are supported)"),
        )
    })?;
    if out.len() as u64 > max {
        return Err(Error::format(
            path,
            format!("zip entry {name} is larger than the {max} bytes allowed"),
        ));
    }
    Ok(out)
}

struct Convert<'a, 'b> {
    path: &'a Path,
    zip: &'a mut zip::ZipArchive<std::io::Cursor<&'b [u8]>>,
    prefix: String,
    /// Raw bytes per storage key, read once even when several tensors view the same storage.
    storages: HashMap<String, Vec<u8>>,
    nodes: usize,
    /// Bytes of tensor data still allowed to be materialised.
    budget: usize,
}

impl Convert<'_, '_> {
    fn value(&mut self, p: &Pickle, v: Value, depth: usize) -> Result<PtValue> {
        self.nodes += 1;
        if depth > MAX_DEPTH || self.nodes > MAX_NODES {
            return Err(Error::format(self.path, format!("data.pkl nests deeper than {MAX_DEPTH} or expands to more than {MAX_NODES} objects")));
        }
        Ok(match v {
            Value::None => PtValue::None,
            Value::Bool(b) => PtValue::Bool(b),
            Value::Int(i) => PtValue::Int(i),
            Value::Float(f) => PtValue::Float(f),
            Value::Obj(i) => match &p.arena[i] {
                Obj::Str(s) => PtValue::Str(s.clone()),
                Obj::Bytes(b) => PtValue::Str(String::from_utf8_lossy(b).into_owned()),
                Obj::Tuple(items) | Obj::List(items) => {
                    let mut out = Vec::with_capacity(items.len());
                    for &x in items {
                        out.push(self.value(p, x, depth + 1)?);
                    }
                    PtValue::List(out)
                }
                Obj::Dict(kv) => {
                    let mut out = Vec::with_capacity(kv.len());
                    for &(k, x) in kv {
                        let key = match k {
                            Value::Int(n) => n.to_string(),
                            _ => p.as_str(k).ok_or_else(|| {
                                Error::format(self.path, "dict key is not a string or int")
                            })?,
                        };
                        out.push((key, self.value(p, x, depth + 1)?));
                    }
                    PtValue::Dict(out)
                }
                Obj::Tensor(t) => PtValue::Tensor(self.tensor(t)?),
                other => {
                    return Err(Error::format(
                        self.path,
                        format!("data.pkl holds an object this reader does not return: {other:?}"),
                    ))
                }
            },
        })
    }

    fn storage(&mut self, key: &str, dtype: DType, numel: usize) -> Result<&Vec<u8>> {
        if !self.storages.contains_key(key) {
            let want = numel.checked_mul(dtype.size()).ok_or_else(|| {
                Error::format(
                    self.path,
                    format!("storage {key}: {numel} elements overflow"),
                )
            })?;
            let name = format!("{}data/{key}", self.prefix);
            let bytes = read_entry(self.path, self.zip, &name, want as u64)?;
            if bytes.len() != want {
                return Err(Error::format(
                    self.path,
                    format!(
                        "storage {key} holds {} bytes, but {numel} {} elements need {want}",
                        bytes.len(),
                        dtype.name()
                    ),
                ));
            }
            self.storages.insert(key.to_string(), bytes);
        }
        Ok(&self.storages[key])
    }

    /// Gather a strided view into a dense tensor, checking that it stays inside its storage.
    fn tensor(&mut self, t: &TensorRef) -> Result<Tensor> {
        let path = self.path;
        let s = &t.storage;
        let n = checked_product(path, &t.shape, "tensor")?;
        if n > s.numel.max(1) && n > 0 {
            return Err(Error::format(path, format!("tensor {:?} has more elements than its storage of {} (expanded views are not supported)", t.shape, s.numel)));
        }
        let bytes_needed = n.saturating_mul(4).max(n.saturating_mul(8));
        if bytes_needed > self.budget {
            return Err(Error::format(
                path,
                "tensors in data.pkl materialise to far more data than the file holds",
            ));
        }
        self.budget -= bytes_needed;
        // Largest element index touched: offset + Σ (size_k − 1)·stride_k, must be < numel.
        if n > 0 {
            let mut last = t.offset;
            for (&d, &st) in t.shape.iter().zip(&t.stride) {
                last = (d - 1)
                    .checked_mul(st)
                    .and_then(|x| x.checked_add(last))
                    .ok_or_else(|| {
                        Error::format(
                            path,
                            format!(
                                "tensor view {:?} / stride {:?} overflows",
                                t.shape, t.stride
                            ),
                        )
                    })?;
            }
            if last >= s.numel {
                return Err(Error::format(
                    path,
                    format!(
                        "tensor view (offset {}, size {:?}, stride {:?}) reaches element {last}, past the end of storage {} with {} elements",
                        t.offset, t.shape, t.stride, s.key, s.numel
                    ),
                ));
            }
        }
        let raw = self.storage(&s.key, s.dtype, s.numel)?;
        let idx = strided_indices(t);
        let es = s.dtype.size();
        let at = |i: usize| &raw[i * es..(i + 1) * es];
        let data = match s.dtype {
            DType::F32 => TensorData::F32(
                idx.iter()
                    .map(|&i| f32::from_le_bytes(at(i).try_into().expect("4 bytes")))
                    .collect(),
            ),
            DType::F64 => TensorData::F32(
                idx.iter()
                    .map(|&i| f64::from_le_bytes(at(i).try_into().expect("8 bytes")) as f32)
                    .collect(),
            ),
            DType::F16 => TensorData::F32(
                idx.iter()
                    .map(|&i| half::f16::from_le_bytes(at(i).try_into().expect("2 bytes")).to_f32())
                    .collect(),
            ),
            DType::BF16 => TensorData::F32(
                idx.iter()
                    .map(|&i| {
                        half::bf16::from_le_bytes(at(i).try_into().expect("2 bytes")).to_f32()
                    })
                    .collect(),
            ),
            DType::I64 => TensorData::I64(
                idx.iter()
                    .map(|&i| i64::from_le_bytes(at(i).try_into().expect("8 bytes")))
                    .collect(),
            ),
            DType::I32 => TensorData::I64(
                idx.iter()
                    .map(|&i| i32::from_le_bytes(at(i).try_into().expect("4 bytes")) as i64)
                    .collect(),
            ),
            DType::U8 => TensorData::I64(idx.iter().map(|&i| raw[i] as i64).collect()),
        };
        Ok(Tensor {
            dtype: s.dtype,
            shape: t.shape.clone(),
            data,
        })
    }
}

/// Storage indices of a view's elements in row-major order (bounds already checked).
fn strided_indices(t: &TensorRef) -> Vec<usize> {
    let n: usize = t.shape.iter().product();
    let mut out = Vec::with_capacity(n); // (prod(shape),)
    if n == 0 {
        return out;
    }
    let mut pos = vec![0usize; t.shape.len()];
    for _ in 0..n {
        out.push(t.offset + pos.iter().zip(&t.stride).map(|(p, s)| p * s).sum::<usize>());
        for k in (0..pos.len()).rev() {
            pos[k] += 1;
            if pos[k] < t.shape[k] {
                break;
            }
            pos[k] = 0;
        }
    }
    out
}
