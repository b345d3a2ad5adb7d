//! Helpers shared by the integration tests: the one tolerance check (|got − want| ≤ atol +
//! rtol·|want|, worst index reported), a small safetensors reader for the golden files in
//! ../shared/golden (or `$DDR_GOLDEN_DIR`), fixture lookup, writers for the formats the data tests
//! generate (torch-style zips, pickles), and the CUDA backend the CUDA tests run on.
#![allow(dead_code)]

/// One ConvNet block's inputs, buffers and forward for the CUDA block tests (cuda_eval, cuda_bf16,
/// cuda_fused, cuda_block_backward).
pub mod block;
/// The golden_models checker, generic over the backend (tests/golden_models.rs, cuda_golden_models.rs).
pub mod golden_models;

/// bf16 activations packed two per f32 slot (tests of the eval kernels' bf16 storage).
pub mod bf16;

use safetensors::{Dtype, SafeTensors};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ddr_fast::backend::cuda::CudaBackend;
use ddr_fast::backend::Backend;

/// A tolerance: pass when |got − want| ≤ atol + rtol·|want| element by element.
#[derive(Clone, Copy, Debug)]
pub struct Tol {
    pub rtol: f64,
    pub atol: f64,
}

impl Tol {
    pub const fn new(rtol: f64, atol: f64) -> Tol {
        Tol { rtol, atol }
    }

    /// The "rel to max" form: atol = `atol_rel` · max|want|.
    pub fn rel_to_max(self, atol_rel: f64, want: &[f32]) -> Tol {
        let max = want.iter().fold(0f64, |m, &v| m.max((v as f64).abs()));
        Tol {
            rtol: self.rtol,
            atol: self.atol.max(atol_rel * max),
        }
    }
}

/// Compares element by element; on failure the message names `what`, the number of failing
/// elements, the worst index (largest excess over the bound) with both values.
pub fn check_close(what: &str, got: &[f32], want: &[f32], tol: Tol) -> Result<(), String> {
    if got.len() != want.len() {
        return Err(format!(
            "{what}: got {} elements, want {}",
            got.len(),
            want.len()
        ));
    }
    let mut bad = 0usize;
    let mut worst: Option<(usize, f64)> = None;
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let (g, w) = (g as f64, w as f64);
        let bound = tol.atol + tol.rtol * w.abs();
        let err = (g - w).abs();
        // A NaN on either side fails too.
        if err > bound || err.is_nan() {
            bad += 1;
            let excess = if err.is_nan() {
                f64::INFINITY
            } else {
                err - bound
            };
            if worst.is_none_or(|(_, e)| excess > e) {
                worst = Some((i, excess));
            }
        }
    }
    match worst {
        None => Ok(()),
        Some((i, _)) => Err(format!(
            "{what}: {bad} of {} elements outside atol {:.1e} + rtol {:.1e}·|want|; worst index {i}: got {:.9e}, want {:.9e}, |diff| {:.3e}",
            got.len(), tol.atol, tol.rtol, got[i], want[i], (got[i] as f64 - want[i] as f64).abs()
        )),
    }
}

/// Both sides must be within `bound` of zero (values whose true value is 0).
pub fn check_near_zero(what: &str, got: &[f32], want: &[f32], bound: f64) -> Result<(), String> {
    for (side, v) in [("got", got), ("want", want)] {
        if let Some((i, x)) = v
            .iter()
            .enumerate()
            .find(|(_, x)| x.is_nan() || (x.abs() as f64) > bound)
        {
            return Err(format!(
                "{what}: {side}[{i}] = {x:.3e} exceeds the zero bound {bound:.1e}"
            ));
        }
    }
    Ok(())
}

/// The golden folder: `$DDR_GOLDEN_DIR`, else `<manifest>/../shared/golden`. A git worktree one
/// level deeper (`/work/wt/<name>`) finds the same folder at `<manifest>/../../shared/golden`.
pub fn golden_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("DDR_GOLDEN_DIR") {
        return PathBuf::from(d);
    }
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let default = manifest.join("../shared/golden");
    let worktree = manifest.join("../../shared/golden");
    if !default.is_dir() && worktree.is_dir() {
        worktree
    } else {
        default
    }
}

/// Every `*.safetensors` in the golden folder, sorted by name.
pub fn golden_files() -> Result<Vec<PathBuf>, String> {
    let dir = golden_dir();
    let rd = std::fs::read_dir(&dir)
        .map_err(|e| format!("cannot read golden folder {}: {e}", dir.display()))?;
    let mut files: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(format!(
            "no *.safetensors in golden folder {}",
            dir.display()
        ));
    }
    Ok(files)
}

/// A loaded safetensors file with typed accessors whose errors name the file and the tensor.
pub struct Golden {
    pub name: String,
    bytes: Vec<u8>,
    pub meta: HashMap<String, String>,
}

impl Golden {
    pub fn open(path: &Path) -> Result<Golden, String> {
        let name = path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        let bytes = std::fs::read(path).map_err(|e| format!("{name}: cannot read: {e}"))?;
        let (_, header) = SafeTensors::read_metadata(&bytes)
            .map_err(|e| format!("{name}: not a safetensors file: {e}"))?;
        let meta = header.metadata().clone().unwrap_or_default();
        SafeTensors::deserialize(&bytes)
            .map_err(|e| format!("{name}: bad safetensors data: {e}"))?;
        Ok(Golden { name, bytes, meta })
    }

    fn st(&self) -> SafeTensors<'_> {
        SafeTensors::deserialize(&self.bytes).expect("validated in Golden::open")
    }

    pub fn has(&self, tensor: &str) -> bool {
        self.st().tensor(tensor).is_ok()
    }

    pub fn meta(&self, key: &str) -> Result<&str, String> {
        self.meta
            .get(key)
            .map(String::as_str)
            .ok_or_else(|| format!("{}: metadata key `{key}` missing", self.name))
    }

    pub fn meta_usize(&self, key: &str) -> Result<usize, String> {
        let v = self.meta(key)?;
        v.parse()
            .map_err(|_| format!("{}: metadata `{key}` = `{v}` is not an integer", self.name))
    }

    pub fn meta_json(&self, key: &str) -> Result<serde_json::Value, String> {
        let v = self.meta(key)?;
        serde_json::from_str(v)
            .map_err(|e| format!("{}: metadata `{key}` is not JSON: {e}", self.name))
    }

    fn raw(&self, tensor: &str, dtype: Dtype) -> Result<(Vec<u8>, Vec<usize>), String> {
        let st = self.st();
        let t = st
            .tensor(tensor)
            .map_err(|_| format!("{}: tensor `{tensor}` missing", self.name))?;
        if t.dtype() != dtype {
            return Err(format!(
                "{}: tensor `{tensor}` is {:?}, expected {dtype:?}",
                self.name,
                t.dtype()
            ));
        }
        Ok((t.data().to_vec(), t.shape().to_vec()))
    }

    pub fn f32(&self, tensor: &str) -> Result<(Vec<f32>, Vec<usize>), String> {
        let (b, shape) = self.raw(tensor, Dtype::F32)?;
        Ok((
            b.chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect(),
            shape,
        ))
    }

    pub fn f64(&self, tensor: &str) -> Result<(Vec<f64>, Vec<usize>), String> {
        let (b, shape) = self.raw(tensor, Dtype::F64)?;
        Ok((
            b.chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
                .collect(),
            shape,
        ))
    }

    pub fn i64(&self, tensor: &str) -> Result<(Vec<i64>, Vec<usize>), String> {
        let (b, shape) = self.raw(tensor, Dtype::I64)?;
        Ok((
            b.chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
                .collect(),
            shape,
        ))
    }

    /// An F32 tensor whose shape must be `shape`.
    pub fn f32_shaped(&self, tensor: &str, shape: &[usize]) -> Result<Vec<f32>, String> {
        let (v, s) = self.f32(tensor)?;
        if s != shape {
            return Err(format!(
                "{}: tensor `{tensor}` has shape {s:?}, expected {shape:?}",
                self.name
            ));
        }
        Ok(v)
    }
}

/// Pass when |got − want| ≤ atol + rtol·|want| everywhere; on failure name the worst index and
/// how many elements fail.
pub fn assert_close(what: &str, got: &[f32], want: &[f32], atol: f32, rtol: f32) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let mut worst: Option<(usize, f32)> = None;
    let mut bad = 0;
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let excess = (g - w).abs() - (atol + rtol * w.abs());
        // NaN excess (a NaN value) must fail too, hence the explicit is_nan.
        let fails = excess > 0.0 || excess.is_nan();
        if fails {
            bad += 1;
            if worst.is_none_or(|(_, e)| excess > e || excess.is_nan()) {
                worst = Some((i, excess));
            }
        }
    }
    if let Some((i, e)) = worst {
        panic!(
            "{what}: {bad} of {} out of tolerance (atol {atol}, rtol {rtol}); worst at index {i}: got {} want {} (over tolerance by {e})",
            got.len(),
            got[i],
            want[i]
        );
    }
}

/// A folder under shared/ from the main checkout (`../shared`) or a worktree (`../../shared`).
pub fn shared(rel: &str) -> Option<PathBuf> {
    let m = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let found = [
        m.join("../shared").join(rel),
        m.join("../../shared").join(rel),
    ]
    .into_iter()
    .find(|p| p.exists());
    if found.is_none() {
        eprintln!("SKIPPED: shared/{rel} not found next to the checkout");
    }
    found
}

/// Write a zip with stored (uncompressed) entries, as torch.save does.
pub fn write_zip(path: &Path, entries: &[(&str, &[u8])]) {
    let f = std::fs::File::create(path).unwrap();
    let mut z = zip::ZipWriter::new(f);
    let opts =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, data) in entries {
        z.start_file(*name, opts).unwrap();
        z.write_all(data).unwrap();
    }
    z.finish().unwrap();
}

/// Protocol-2 pickle pieces for hand-built test pickles.
pub mod pk {
    pub fn global(module: &str, name: &str) -> Vec<u8> {
        format!("c{module}\n{name}\n").into_bytes()
    }
    pub fn unicode(s: &str) -> Vec<u8> {
        let mut v = vec![b'X'];
        v.extend((s.len() as u32).to_le_bytes());
        v.extend(s.as_bytes());
        v
    }
    pub fn binstring(b: &[u8]) -> Vec<u8> {
        let mut v = vec![b'T'];
        v.extend((b.len() as u32).to_le_bytes());
        v.extend(b);
        v
    }
    pub fn int(i: i32) -> Vec<u8> {
        let mut v = vec![b'J'];
        v.extend(i.to_le_bytes());
        v
    }
    /// `torch._utils._rebuild_tensor_v2(('storage', torch.<st>, key, 'cpu', numel), offset, size, stride, False, OrderedDict())`
    pub fn tensor(
        st: &str,
        key: &str,
        numel: i32,
        offset: i32,
        size: &[i32],
        stride: &[i32],
    ) -> Vec<u8> {
        let mut v = global("torch._utils", "_rebuild_tensor_v2");
        v.extend(b"((");
        v.extend(unicode("storage"));
        v.extend(global("torch", st));
        v.extend(unicode(key));
        v.extend(unicode("cpu"));
        v.extend(int(numel));
        v.extend(b"tQ");
        v.extend(int(offset));
        v.push(b'(');
        for s in size {
            v.extend(int(*s));
        }
        v.extend(b"t(");
        for s in stride {
            v.extend(int(*s));
        }
        v.push(b't');
        v.push(0x89);
        v.extend(global("collections", "OrderedDict"));
        v.extend(b")RtR");
        v
    }
}

/// A torch-style zip holding one pickle and its storages.
pub fn write_pt(path: &Path, pickle: &[u8], storages: &[(&str, &[u8])]) {
    let mut entries: Vec<(String, &[u8])> = vec![
        ("archive/data.pkl".into(), pickle),
        ("archive/byteorder".into(), b"little"),
    ];
    for (k, b) in storages {
        entries.push((format!("archive/data/{k}"), b));
    }
    let refs: Vec<(&str, &[u8])> = entries.iter().map(|(n, b)| (n.as_str(), *b)).collect();
    write_zip(path, &refs);
}

/// Write a safetensors file from raw little-endian bytes per tensor.
pub fn write_st(
    path: &Path,
    tensors: &[(&str, safetensors::Dtype, Vec<usize>, Vec<u8>)],
    meta: &[(&str, &str)],
) {
    let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
        .iter()
        .map(|(n, d, s, b)| {
            (
                n.to_string(),
                safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap(),
            )
        })
        .collect();
    let md = if meta.is_empty() {
        None
    } else {
        Some(
            meta.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    };
    std::fs::write(path, safetensors::serialize(views, md).unwrap()).unwrap();
}

pub fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

pub fn i64_bytes(v: &[i64]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Save an 8-bit RGB PNG of a solid colour.
pub fn write_png(path: &Path, w: u32, h: u32, rgb: [u8; 3]) {
    let img = image::RgbImage::from_pixel(w, h, image::Rgb(rgb));
    img.save(path).unwrap();
}

/// n CIFAR binary records with labels i % classes; `header` = 1 (CIFAR-10) or 2 (CIFAR-100,
/// coarse then fine). Pixel k of record i is (i + k) mod 256.
pub fn cifar_records(n: usize, header: usize, classes: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n * (header + 3072));
    for i in 0..n {
        if header == 2 {
            out.push((i % 20) as u8);
        }
        out.push((i % classes) as u8);
        out.extend((0..3072).map(|k| ((i + k) % 256) as u8));
    }
    out
}

/// A CIFAR-10 binary folder with `n` records per batch file.
pub fn write_cifar10_bin(dir: &Path, n: usize) {
    std::fs::create_dir_all(dir).unwrap();
    for i in 1..=5 {
        std::fs::write(
            dir.join(format!("data_batch_{i}.bin")),
            cifar_records(n, 1, 10),
        )
        .unwrap();
    }
    std::fs::write(dir.join("test_batch.bin"), cifar_records(n, 1, 10)).unwrap();
}

/// A py2-style protocol-2 pickle of {'data': uint8 array [n, 3072], label_key: [labels]} as the
/// official CIFAR python batches hold it (numpy array via _reconstruct + BUILD).
pub fn cifar_py_pickle(data: &[u8], n: usize, labels: &[i32], label_key: &str) -> Vec<u8> {
    cifar_pickle(data, n, labels, label_key, false)
}

/// The same batch as Python 3 re-saves it with `pickle.dump(d, f, protocol=2)`: the array's bytes
/// become `_codecs.encode(<latin-1 string>, 'latin1')`.
pub fn cifar_py3_pickle(data: &[u8], n: usize, labels: &[i32], label_key: &str) -> Vec<u8> {
    cifar_pickle(data, n, labels, label_key, true)
}

fn cifar_pickle(data: &[u8], n: usize, labels: &[i32], label_key: &str, py3: bool) -> Vec<u8> {
    use pk::*;
    let short = |s: &str| {
        let mut v = vec![b'U', s.len() as u8];
        v.extend(s.as_bytes());
        v
    };
    let mut p = vec![0x80, 2, b'}', b'('];
    p.extend(short("data"));
    p.extend(global("numpy.core.multiarray", "_reconstruct"));
    p.extend(global("numpy", "ndarray"));
    p.extend(int(0));
    p.push(0x85);
    p.extend(short("b"));
    p.push(0x87);
    p.push(b'R');
    // state: (1, (n, 3072), dtype('u1'), False, bytes)
    p.push(b'(');
    p.extend(int(1));
    p.push(b'(');
    p.extend(int(n as i32));
    p.extend(int(3072));
    p.push(b't');
    p.extend(global("numpy", "dtype"));
    p.push(b'(');
    p.extend(short("u1"));
    p.extend([0x89, 0x88, b't', b'R']);
    p.push(b'(');
    p.extend(int(3));
    p.extend(short("|"));
    p.extend(b"NNN");
    p.extend(int(-1));
    p.extend(int(-1));
    p.extend(int(0));
    p.extend([b't', b'b']);
    p.push(0x89);
    if py3 {
        p.extend(global("_codecs", "encode"));
        let latin1: String = data.iter().map(|&b| char::from(b)).collect();
        p.extend(unicode(&latin1));
        p.extend(unicode("latin1"));
        p.extend([0x86, b'R']);
    } else {
        p.extend(binstring(data));
    }
    p.extend([b't', b'b']);
    p.extend(short(label_key));
    p.extend([b']', b'(']);
    for l in labels {
        p.extend(int(*l));
    }
    p.extend([b'e', b'u', b'.']);
    p
}

/// gzip-compress bytes.
pub fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// An MNIST-style IDX folder: n_train/n_test images of 28×28 (pixel (i+k) mod 256), labels i % 10.
pub fn write_idx_dir(dir: &Path, n_train: usize, n_test: usize, gzip: bool) {
    std::fs::create_dir_all(dir).unwrap();
    let put = |name: &str, bytes: Vec<u8>| {
        if gzip {
            std::fs::write(dir.join(format!("{name}.gz")), gz(&bytes)).unwrap();
        } else {
            std::fs::write(dir.join(name), bytes).unwrap();
        }
    };
    for (prefix, n) in [("train", n_train), ("t10k", n_test)] {
        let px: Vec<u8> = (0..n * 784)
            .map(|k| ((k / 784 + k % 784) % 256) as u8)
            .collect();
        put(
            &format!("{prefix}-images-idx3-ubyte"),
            ddr_fast::data::idx::encode(0x803, &[n as u32, 28, 28], &px),
        );
        let lab: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
        put(
            &format!("{prefix}-labels-idx1-ubyte"),
            ddr_fast::data::idx::encode(0x801, &[n as u32], &lab),
        );
    }
}

/// The CUDA backend the CUDA tests run on: the GPU when one opens, else the host emulator. `test`
/// names the test binary in the one line announcing the choice on stderr (outside the harness's
/// capture, so a green run still says where it ran). With DDR_REQUIRE_GPU=1 (tools/gpu-check.sh
/// sets it) a missing GPU fails instead of emulating.
pub fn cuda_under_test(test: &str) -> CudaBackend {
    static NOTE: OnceLock<()> = OnceLock::new();
    let (b, why) = CudaBackend::real_or_emulated(0);
    if let (Some(e), Ok("1")) = (&why, std::env::var("DDR_REQUIRE_GPU").as_deref()) {
        panic!("DDR_REQUIRE_GPU=1 but the GPU could not be opened: {e}");
    }
    NOTE.get_or_init(|| {
        let line = match &why {
            None => format!("{test}: running on the GPU: {}\n", b.describe()),
            Some(e) => format!("{test}: running under EMULATION (no usable GPU: {e})\n"),
        };
        let _ = std::io::stderr().write_all(line.as_bytes());
    });
    b
}

/// One line on the process's stderr outside the test harness's capture (which takes `eprintln!`),
/// so a passing test's report — where it ran, how long it took, Slurm job ids — shows in CI logs.
pub fn announce(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}
