//! The golden_models checker (issue #9 item 4), generic over the backend: tests/golden_models.rs
//! runs it on the CPU, tests/cuda_golden_models.rs on the CUDA backend. Files: every
//! `*.safetensors` in tests/fixtures/golden_models/ (and in `$DDR_GOLDEN_MODELS_DIR` when set),
//! written by tools/golden_models.py from `ddranking.utils.model.build_model`. Parameters, BN
//! buffers and the input come from the integer-hash FORMULA stated in each file's metadata (computed
//! here bit-exactly, then checked against the stored values), so ResNet-sized models need no stored
//! weights; large outputs are stored as moments (mean, std, max|x|) plus sampled entries.
//! Per file: logits (train, eval), CE and KL losses and d/dlogits, every CE gradient, BN running
//! statistics, two SGD steps (own gradients), two Adam steps (fed the stored gradients, README of
//! ../shared/golden §4.2). The model comes from the metadata key `model`; one that cannot be built
//! fails with its name. Tolerances are derived from the network's depth and reduction lengths
//! (metadata `layer_facts`), see [`Tols::derive`]: they are fp32 tolerances, so a CUDA run uses
//! the near-fp32 conv precision (3xTF32).

use super::{check_close, check_near_zero, Golden, Tol};
use ddr_fast::backend::{Backend, LossKind, Mode, OptimizerCfg, OptimizerKind};
use ddr_fast::model::{Entry, Net, NetWorkspace};
use std::path::{Path, PathBuf};

type Res<T> = Result<T, String>;

// ---- the model type -------------------------------------------------------------------------

/// The student type every file is checked on.
type Model = Net;
/// Its workspace type.
type Ws<B> = NetWorkspace<B>;

/// Builds the network the file names, or says which model cannot be built.
fn build_model(name: &str, channels: usize, im: usize, classes: usize) -> Res<Model> {
    Net::from_name(name, channels, im, classes)
        .map_err(|e| format!("model `{name}` cannot be built: {e}"))
}

/// Parameter and buffer entries of the model in state_dict order.
fn entries(m: &Model) -> (&[Entry], &[Entry]) {
    (&m.layout().params, &m.layout().buffers)
}

// ---- tolerances ---------------------------------------------------------------------------------

/// Unit roundoff of float32 (round to nearest).
const U32: f64 = 1.0 / 16_777_216.0;
/// Safety factor over the random-walk estimate √n·u of one float32 reduction of length n summed
/// in another order: the estimate is a standard deviation, the test takes the worst of thousands.
const SAFETY: f64 = 4.0;
/// The floors ../shared/golden §4.1 uses for the ConvNet files (measured there): never tighter.
const ACT_FLOOR: f64 = 1e-5;
const GRAD_FLOOR: f64 = 1e-4;
/// Elementwise optimizer arithmetic alone (§4.1, measured ≤ 2.5e-7).
const OPT_ATOL: f64 = 1e-6;
/// Conv biases in front of a norm: true gradient 0, both sides rounding noise (§4.3). The floor
/// measured on the ConvNet files; a network whose noise is larger (its dL/dy are larger: VGG-11-BN's
/// first conv reaches 1.06e-6 here) is held to SAFETY × PyTorch's own noise on the same sum.
const ZERO_GRAD_BOUND: f64 = 1e-6;

/// Relative-to-max tolerances of one file, derived from its network.
#[derive(Clone, Copy, Debug)]
struct Tols {
    /// Logits and BN statistics: rtol and atol = act·max|want|.
    act: f64,
    /// Gradients: rtol and atol = grad·max|want| of the tensor.
    grad: f64,
}

impl Tols {
    /// One float32 reduction of length n in another order differs by about √n·u relative to the
    /// magnitude of its terms; a chain of L weight layers (norms renormalise, ReLU and pooling do
    /// not amplify) adds L such errors: act = SAFETY·L·√n·u with n the longest forward reduction
    /// (fan-in or norm statistics). Backward walks the chain again (another L) and ends in the
    /// weight-gradient reduction over batch × output pixels (m): grad = SAFETY·(2L·√n + √m)·u.
    /// ConvNet-3-BN (L = 4, n = 4096): act 6.1e-5, grad 1.4e-4; VGG-11 (L = 9, n = 4608): act
    /// 1.5e-4, grad 3.1e-4; ResNet-18 (L = 18, n = 4608): act 2.9e-4, grad 6.0e-4. PyTorch's own
    /// float32-vs-float64 logit gap stays ≥ 40× below act·max|logits| on all nine files.
    fn derive(g: &Golden) -> Res<Tols> {
        let f = g.meta_json("layer_facts")?;
        let get = |k: &str| {
            f.get(k)
                .and_then(|v| v.as_f64())
                .ok_or(format!("{}: layer_facts.{k} missing", g.name))
        };
        let l = get("weight_layers_on_path")?;
        let n = get("max_fan_in")?.max(get("max_norm_reduction")?);
        let m = get("max_grad_reduction")?;
        Ok(Tols {
            act: (SAFETY * l * n.sqrt() * U32).max(ACT_FLOOR),
            grad: (SAFETY * (2.0 * l * n.sqrt() + m.sqrt()) * U32).max(GRAD_FLOOR),
        })
    }

    /// Fails when PyTorch's own float32-vs-float64 logit gap (metadata `tolerance_hints`) exceeds
    /// the derived bound: then the derivation, not the code under test, would be wrong.
    fn sanity(&self, g: &Golden, logits_max: f64) -> Res<()> {
        let gap = hint(g, "logits")?;
        let bound = 2.0 * self.act * logits_max;
        if gap > bound {
            return Err(format!(
                "derived logits tolerance {bound:.2e} is below PyTorch's own float32 gap {gap:.2e}"
            ));
        }
        Ok(())
    }

    /// The absolute gradient bound of a tensor whose largest |gradient| is `max`: the rounding
    /// bound above, or FLIP_FACTOR × PyTorch's own float32-vs-float64 gradient gap on this file,
    /// whichever is larger. Where a ReLU input or a max-pool pair lies within float32 rounding of
    /// a tie, two correct float32 implementations route that element's gradient differently — a
    /// jump, not a rounding error (measured: AlexNet 8e-4, ResNet-18 5e-3, ConvNet-3 6e-7).
    fn grad_atol(&self, max: f64, flip_gap: f64) -> f64 {
        (self.grad * max).max(FLIP_FACTOR * flip_gap)
    }
}

/// Headroom over PyTorch's measured float32-vs-float64 gradient jump: our float32 and PyTorch's
/// float32 may flip different near-ties, each as large as a float32-vs-float64 flip.
const FLIP_FACTOR: f64 = 2.0;

/// A number from the metadata `tolerance_hints`.
fn hint(g: &Golden, key: &str) -> Res<f64> {
    g.meta_json("tolerance_hints")?[key]
        .as_f64()
        .ok_or(format!("{}: tolerance_hints.{key} missing", g.name))
}

// ---- the formula ----------------------------------------------------------------------------------

/// z(t, i): the metadata's integer hash (splitmix64's finaliser over a Weyl combination).
fn hashed(t: u64, i: u64) -> u64 {
    let mut z = t
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(i.wrapping_mul(0xD1B5_4A32_D192_ED03))
        .wrapping_add(0x632B_E59B_D9B4_E019);
    z ^= z >> 30;
    z = z.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z ^= z >> 27;
    z = z.wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// 2^−e built from its bits (no libm): exact for the exponents the files use.
fn pow2_neg(e: i64) -> f64 {
    f64::from_bits(((1023 - e) as u64) << 52)
}

/// value(t, i) = f32(offset + u·2^−e), u = (2·(z >> 40) − (2^24 − 1))/2^24; exact in f64.
fn formula(t: u64, n: usize, e: i64, offset: f64) -> Vec<f32> {
    let scale = pow2_neg(e);
    (0..n as u64)
        .map(|i| {
            let u = (2.0 * (hashed(t, i) >> 40) as f64 - 16_777_215.0) / 16_777_216.0;
            (offset + u * scale) as f32
        })
        .collect()
}

/// One `[name, t, e, offset]` entry of `param_formula` / `buffer_formula`.
fn formula_row(g: &Golden, key: &str, entries: &[Entry], len: usize) -> Res<Vec<f32>> {
    let list: Vec<(String, u64, i64, f64)> =
        serde_json::from_value(g.meta_json(key)?).map_err(|e| format!("{key}: {e}"))?;
    let names: Vec<&str> = list.iter().map(|r| r.0.as_str()).collect();
    let ours: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
    if names != ours {
        return Err(format!(
            "{key} names {names:?} differ from our layout {ours:?}"
        ));
    }
    let mut row = vec![0f32; len]; // (P) or (R)
    for (e, (_, t, exp, off)) in entries.iter().zip(&list) {
        row[e.range()].copy_from_slice(&formula(*t, e.len(), *exp, *off));
    }
    Ok(row)
}

// ---- comparing whole or sampled tensors -----------------------------------------------------------

/// What a file stores for `<prefix>.<name>`: the whole tensor, or moments plus sampled entries.
enum Stored {
    Whole(Vec<f32>),
    Sampled {
        /// mean, population std, max|x| (float64 of the float32 tensor)
        moments: Vec<f64>,
        index: Vec<usize>,
        values: Vec<f32>,
    },
}

impl Stored {
    fn load(g: &Golden, prefix: &str, e: &Entry) -> Res<Stored> {
        let key = format!("{prefix}.{}", e.name);
        if g.has(&key) {
            return g.f32_shaped(&key, &e.shape).map(Stored::Whole);
        }
        let (moments, _) = g.f64(&format!("{key}@moments"))?;
        let (values, _) = g.f32(&format!("{key}@sample"))?;
        let (index, _) = g.i64(&format!("index.{}", e.name))?;
        let index = index
            .iter()
            .map(|&i| usize::try_from(i).ok().filter(|&i| i < e.len()))
            .collect::<Option<Vec<usize>>>()
            .ok_or(format!("index.{}: an index outside the tensor", e.name))?;
        if moments.len() != 3 || values.len() != index.len() {
            return Err(format!(
                "{key}: moments need 3 values and one sample per index"
            ));
        }
        Ok(Stored::Sampled {
            moments,
            index,
            values,
        })
    }

    fn max_abs(&self) -> f64 {
        match self {
            Stored::Whole(v) => v.iter().fold(0f64, |m, &x| m.max((x as f64).abs())),
            Stored::Sampled { moments, .. } => moments[2],
        }
    }

    /// Elementwise |got − want| ≤ tol on what is stored; for sampled tensors also the moments,
    /// each within tol.atol + tol.rtol·max|want| (an elementwise bound bounds the mean, the rms
    /// of the difference, hence the std, and the max|x| by the same amount).
    fn check(&self, key: &str, got: &[f32], tol: Tol) -> Res<()> {
        match self {
            Stored::Whole(want) => check_close(key, got, want, tol),
            Stored::Sampled {
                moments,
                index,
                values,
            } => {
                let picked: Vec<f32> = index.iter().map(|&i| got[i]).collect();
                check_close(&format!("{key}@sample"), &picked, values, tol)?;
                let ours = moments_of(got);
                // Plus the float64 summation of n terms in another order than numpy's (≤ n·ε·max).
                let f64_slack = got.len() as f64 * f64::EPSILON * moments[2];
                let bound = tol.atol + tol.rtol * moments[2] + f64_slack;
                for (k, what) in ["mean", "std", "max|x|"].iter().enumerate() {
                    let d = (ours[k] - moments[k]).abs();
                    if d > bound || d.is_nan() {
                        return Err(format!(
                            "{key}: {what} {:.9e}, want {:.9e}, |diff| {d:.3e} > {bound:.3e}",
                            ours[k], moments[k]
                        ));
                    }
                }
                Ok(())
            }
        }
    }

    /// Zero-gradient tensors: every stored value and ours within `bound` of 0.
    fn check_zero(&self, key: &str, got: &[f32], floor: f64) -> Res<()> {
        let bound = floor.max(SAFETY * self.max_abs());
        let want: Vec<f32> = match self {
            Stored::Whole(w) => w.clone(),
            Stored::Sampled { values, .. } => values.clone(),
        };
        check_near_zero(key, got, &want, bound)
    }

    /// Overwrites `row` at the stored positions (whole: all; sampled: the indices).
    fn feed(&self, row: &mut [f32]) {
        match self {
            Stored::Whole(v) => row.copy_from_slice(v),
            Stored::Sampled { index, values, .. } => {
                for (&i, &v) in index.iter().zip(values) {
                    row[i] = v;
                }
            }
        }
    }
}

fn moments_of(x: &[f32]) -> [f64; 3] {
    let n = x.len() as f64;
    let mean = x.iter().map(|&v| v as f64).sum::<f64>() / n;
    let var = x.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
    let max = x.iter().fold(0f64, |m, &v| m.max((v as f64).abs()));
    [mean, var.sqrt(), max]
}

// ---- the checker ---------------------------------------------------------------------------------

/// The fixture folder's `*.safetensors`, plus `$DDR_GOLDEN_MODELS_DIR`'s when set, each sorted.
pub fn golden_models_files() -> Res<Vec<PathBuf>> {
    let mut dirs = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/golden_models")];
    if let Some(d) = std::env::var_os("DDR_GOLDEN_MODELS_DIR") {
        dirs.push(PathBuf::from(d));
    }
    let mut files = Vec::new();
    for dir in &dirs {
        let rd =
            std::fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
        let mut here: Vec<PathBuf> = rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
            .collect();
        here.sort();
        files.extend(here);
    }
    if files.is_empty() {
        return Err(format!("no *.safetensors in {dirs:?}"));
    }
    Ok(files)
}

/// Every check of one file on `backend`. Err: a setup error (unreadable file, missing key, a
/// model that cannot be built — or has no kernels on this backend); Ok: the problems found (empty:
/// the file passes).
pub fn check_golden_models_file<B: Backend>(backend: &B, path: &Path) -> Res<Vec<String>> {
    let g = Golden::open(path)?;
    let mut problems = Vec::new();
    check_file(backend, &g, &mut problems)?;
    Ok(problems)
}

/// The line a passing file prints: its model, parameter count and derived tolerances (a property
/// of the file, whatever the backend).
pub fn golden_models_summary(path: &Path) -> Res<String> {
    let g = Golden::open(path)?;
    let (name, p, tols) = file_model(&g)?;
    Ok(format!(
        "{name}, P = {p}, act tol {:.1e}, grad tol {:.1e}",
        tols.act, tols.grad
    ))
}

/// Checks every file of `files` on `backend`, printing one line per file prefixed by `tag`
/// (`<tag>: <file> ok (<summary>)`, or one `<tag>: <file> FAILED: <problem>` line per problem);
/// `after` is called with each file's name and seconds taken. Err: one line per failing file.
pub fn check_golden_models_files<B: Backend>(
    backend: &B,
    tag: &str,
    files: &[PathBuf],
    mut after: impl FnMut(&str, f64),
) -> Res<()> {
    let mut failures = Vec::new();
    for path in files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let t0 = std::time::Instant::now();
        let result = check_golden_models_file(backend, path)
            .and_then(|problems| Ok((problems, golden_models_summary(path)?)));
        after(&name, t0.elapsed().as_secs_f64());
        let problems = match result {
            Ok((problems, s)) if problems.is_empty() => {
                println!("{tag}: {name} ok ({s})");
                continue;
            }
            Ok((problems, _)) => problems,
            Err(e) => vec![e],
        };
        for e in &problems {
            println!("{tag}: {name} FAILED: {e}");
        }
        failures.push(format!(
            "{name}: {} problem(s), first: {}",
            problems.len(),
            problems[0]
        ));
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(format!("{tag} failures:\n{}", failures.join("\n")))
    }
}

/// The file's model name, parameter count and tolerances, after checking its kind.
fn file_model(g: &Golden) -> Res<(String, usize, Tols)> {
    match g.meta("golden_kind")? {
        "model_formula" => {}
        other => return Err(format!("golden_kind `{other}` is not model_formula")),
    }
    let name = g.meta("model")?;
    let (c, im, k) = (
        g.meta_usize("channels")?,
        g.meta_usize("im")?,
        g.meta_usize("classes")?,
    );
    let model = build_model(name, c, im, k)?;
    Ok((name.to_string(), model.param_len(), Tols::derive(g)?))
}

/// One file's network and the formula-built data it is checked on (host side), for op-by-op
/// comparisons of two backends (tests/cuda_layer_lists.rs).
pub struct FormulaCase {
    pub model: Model,
    pub batch: usize,
    /// (P)
    pub params: Vec<f32>,
    /// (R) BN buffers
    pub running: Vec<f32>,
    /// (B, C, IM, IM)
    pub x: Vec<f32>,
    /// (B)
    pub labels: Vec<u32>,
}

/// The network and formula data of the file at `path`.
pub fn formula_case(path: &Path) -> Res<FormulaCase> {
    let g = Golden::open(path)?;
    let (c, im, k, b) = (
        g.meta_usize("channels")?,
        g.meta_usize("im")?,
        g.meta_usize("classes")?,
        g.meta_usize("batch")?,
    );
    let model = build_model(g.meta("model")?, c, im, k)?;
    let (pe, re) = entries(&model);
    let params = formula_row(&g, "param_formula", pe, model.param_len())?;
    let running = formula_row(&g, "buffer_formula", re, model.buffer_len())?;
    let io: serde_json::Value = g.meta_json("input_formula")?;
    let (t, e, off): (u64, i64, f64) = serde_json::from_value(io["input"].clone())
        .map_err(|e| format!("input_formula.input: {e}"))?;
    let lt = io["labels"]
        .as_u64()
        .ok_or("input_formula.labels missing")?;
    Ok(FormulaCase {
        batch: b,
        params,
        running,
        x: formula(t, b * c * im * im, e, off),
        labels: (0..b as u64)
            .map(|i| ((hashed(lt, i) >> 11) % k as u64) as u32)
            .collect(),
        model,
    })
}

/// Runs every check of one loaded file on `be`; problems are collected, a setup error (missing
/// key, unbuildable model) returns early.
fn check_file<B: Backend>(be: &B, g: &Golden, p: &mut Vec<String>) -> Res<()> {
    match g.meta("golden_kind")? {
        "model_formula" => {}
        other => return Err(format!("golden_kind `{other}` is not model_formula")),
    }
    let name = g.meta("model")?;
    let (c, im, k, b) = (
        g.meta_usize("channels")?,
        g.meta_usize("im")?,
        g.meta_usize("classes")?,
        g.meta_usize("batch")?,
    );
    let model = build_model(name, c, im, k)?;
    let tols = Tols::derive(g)?;
    let (pe, re) = entries(&model);
    let params = formula_row(g, "param_formula", pe, model.param_len())?; // (P)
    let running0 = formula_row(g, "buffer_formula", re, model.buffer_len())?; // (R)
                                                                              // Our formula must give PyTorch's values bit for bit.
    for e in pe {
        p.extend(exact(g, "param", e, &params[e.range()]).err());
    }
    for e in re {
        p.extend(exact(g, "buffer", e, &running0[e.range()]).err());
    }
    let io: serde_json::Value = g.meta_json("input_formula")?;
    let tf = |k: &str| -> Res<(u64, i64, f64)> {
        serde_json::from_value(io[k].clone()).map_err(|e| format!("input_formula.{k}: {e}"))
    };
    let (t, e, off) = tf("input")?;
    let x = formula(t, b * c * im * im, e, off); // (B, C, IM, IM)
    let (t, e, off) = tf("teacher_logits")?;
    let teacher = formula(t, b * k, e, off); // (B, K)
    p.extend(
        check_close(
            "teacher_logits",
            &teacher,
            &g.f32_shaped("teacher_logits", &[b, k])?,
            Tol::new(0.0, 0.0),
        )
        .err(),
    );
    let lt = io["labels"]
        .as_u64()
        .ok_or("input_formula.labels missing")?;
    let labels: Vec<u32> = (0..b as u64)
        .map(|i| ((hashed(lt, i) >> 11) % k as u64) as u32)
        .collect();
    let stored: Vec<u32> = g.i64("labels")?.0.iter().map(|&y| y as u32).collect();
    if labels != stored {
        p.push(format!(
            "labels: formula gives {labels:?}, file has {stored:?}"
        ));
    }

    let r = Run {
        g,
        be,
        model: &model,
        b,
        x: up(be, &x)?,
        labels: up(be, &labels)?,
        teacher: up(be, &teacher)?,
        running0,
        tols,
    };
    let logits_max = r.forward_checks(&params, p)?;
    p.extend(tols.sanity(g, logits_max).err());
    r.optimizer_checks(&params, p)?;
    Ok(())
}

/// Stored `<prefix>.<name>` equal to ours bit for bit.
fn exact(g: &Golden, prefix: &str, e: &Entry, ours: &[f32]) -> Res<()> {
    Stored::load(g, prefix, e)?
        .check(&format!("{prefix}.{}", e.name), ours, Tol::new(0.0, 0.0))
        .map_err(|m| format!("the formula disagrees with the file: {m}"))
}

fn up<B: Backend, T: ddr_fast::backend::Elem>(be: &B, host: &[T]) -> Res<B::Buf<T>> {
    be.upload(host).map_err(|e| e.to_string())
}

fn down<B: Backend, T: ddr_fast::backend::Elem>(be: &B, buf: &B::Buf<T>) -> Res<Vec<T>> {
    be.download(buf).map_err(|e| e.to_string())
}

/// One file's model and data on one backend.
struct Run<'a, B: Backend> {
    g: &'a Golden,
    be: &'a B,
    model: &'a Model,
    b: usize,
    /// (1, B, C, IM, IM)
    x: B::Buf<f32>,
    /// (1, B)
    labels: B::Buf<u32>,
    /// (1, B, K)
    teacher: B::Buf<f32>,
    /// (1, R) the formula's BN buffers
    running0: Vec<f32>,
    tols: Tols,
}

impl<B: Backend> Run<'_, B> {
    fn ws(&self) -> Res<Ws<B>> {
        self.model
            .workspace(self.be, 1, self.b, true)
            .map_err(|e| e.to_string())
    }

    fn forward(
        &self,
        ws: &mut Ws<B>,
        params: &B::Buf<f32>,
        running: &mut B::Buf<f32>,
        mode: Mode,
    ) -> Res<()> {
        self.model
            .forward(self.be, ws, &self.x, params, running, mode)
            .map_err(|e| e.to_string())
    }

    fn loss(&self, ws: &mut Ws<B>, kind: LossKind) -> Res<()> {
        self.model
            .loss(self.be, ws, kind, &self.labels, Some(&self.teacher))
            .map_err(|e| e.to_string())
    }

    /// CE gradients (P) at `params`, train mode, BN buffers from the formula (on a copy).
    fn ce_grads(&self, params: &[f32]) -> Res<Vec<f32>> {
        let params = up(self.be, params)?;
        let mut ws = self.ws()?;
        let mut running = up(self.be, &self.running0)?;
        self.forward(&mut ws, &params, &mut running, Mode::Train)?;
        self.loss(&mut ws, LossKind::CrossEntropy)?;
        let mut grads = up(self.be, &vec![0f32; self.model.param_len()])?; // (1, P)
        self.model
            .backward(self.be, &mut ws, &self.x, &params, &mut grads)
            .map_err(|e| e.to_string())?;
        down(self.be, &grads)
    }

    fn act_tol(&self, want_max: f64) -> Tol {
        Tol::new(self.tols.act, self.tols.act * want_max)
    }

    fn check_whole(&self, p: &mut Vec<String>, key: &str, got: &[f32], tol: impl Fn(f64) -> Tol) {
        p.extend(
            self.g
                .f32(key)
                .and_then(|(want, _)| {
                    let max = want.iter().fold(0f64, |m, &v| m.max((v as f64).abs()));
                    check_close(key, got, &want, tol(max))
                })
                .err(),
        );
    }

    /// Train and eval forwards, losses, d/dlogits, CE gradients, BN statistics. Returns max|logits|.
    fn forward_checks(&self, params: &[f32], p: &mut Vec<String>) -> Res<f64> {
        let (pe, re) = entries(self.model);
        let dev_params = up(self.be, params)?;
        let mut ws = self.ws()?;
        let mut running = up(self.be, &self.running0)?;
        self.forward(&mut ws, &dev_params, &mut running, Mode::Train)?;
        let logits = down(self.be, ws.logits())?;
        self.check_whole(p, "logits", &logits, |m| self.act_tol(m));
        let train1 = down(self.be, &running)?; // (R)
        for e in re {
            let key = format!("train1.buffer.{}", e.name);
            p.extend(
                Stored::load(self.g, "train1.buffer", e)
                    .and_then(|s| {
                        let tol = self.act_tol(s.max_abs());
                        s.check(&key, &train1[e.range()], tol)
                    })
                    .err(),
            );
        }
        // Losses: |d loss/d z| summed over a row is ≤ 2/T (CE: T = 1), so a logit error δ moves
        // the batch-mean loss by ≤ 2δ/T; d/dlogits = (softmax(z/T) − p)/(T·B) moves by ≤ δ/(T²·B)
        // per element (softmax is 1/2-Lipschitz per coordinate in the max-norm, doubled for safety).
        let dz = self.tols.act * logits.iter().fold(0f64, |m, &v| m.max((v as f64).abs()));
        let losses = self.g.meta_json("losses")?;
        for (key, kind, t) in [
            ("ce", LossKind::CrossEntropy, 1.0f64),
            ("kl", kl_kind(&losses)?, kl_t(&losses)?),
        ] {
            self.loss(&mut ws, kind)?;
            let l = down(self.be, ws.loss().ok_or("no loss")?)?;
            self.check_whole(p, &format!("loss.{key}"), &l, |_| {
                Tol::new(1e-6, 2.0 * dz / t)
            });
            let d = down(self.be, ws.dlogits().ok_or("no dlogits")?)?;
            let b = self.b as f64;
            self.check_whole(p, &format!("dlogits.{key}"), &d, |_| {
                Tol::new(1e-6, dz / (t * t * b) + 1e-9)
            });
        }
        // CE gradients.
        self.loss(&mut ws, LossKind::CrossEntropy)?;
        let mut grads = up(self.be, &vec![0f32; self.model.param_len()])?; // (1, P)
        self.model
            .backward(self.be, &mut ws, &self.x, &dev_params, &mut grads)
            .map_err(|e| e.to_string())?;
        let grads = down(self.be, &grads)?;
        self.check_grads(p, "grad_ce", pe, &grads);
        // Eval mode with the running statistics after the train forward.
        let mut running = up(self.be, &train1)?;
        self.forward(&mut ws, &dev_params, &mut running, Mode::Eval)?;
        let le = down(self.be, ws.logits())?;
        self.check_whole(p, "logits_eval", &le, |m| self.act_tol(m));
        Ok(logits.iter().fold(0f64, |m, &v| m.max((v as f64).abs())))
    }

    fn check_grads(&self, p: &mut Vec<String>, prefix: &str, pe: &[Entry], grads: &[f32]) {
        let zero: Vec<String> = self
            .g
            .meta_json("zero_grad_params")
            .ok()
            .and_then(|v| serde_json::from_value(v).ok())
            .unwrap_or_default();
        let flip_gap = match hint(self.g, "grad_ce") {
            Ok(v) => v,
            Err(e) => return p.push(e),
        };
        for e in pe {
            let key = format!("{prefix}.{}", e.name);
            p.extend(
                Stored::load(self.g, prefix, e)
                    .and_then(|s| {
                        if zero.contains(&e.name) {
                            s.check_zero(&key, &grads[e.range()], ZERO_GRAD_BOUND)
                        } else {
                            let atol = self.tols.grad_atol(s.max_abs(), flip_gap);
                            s.check(&key, &grads[e.range()], Tol::new(self.tols.grad, atol))
                        }
                    })
                    .err(),
            );
        }
    }

    /// SGD: two steps with our own gradients. Adam: two steps whose gradients are the stored ones
    /// wherever the file has them (§4.2: Adam normalises rounding noise), ours elsewhere.
    fn optimizer_checks(&self, params0: &[f32], p: &mut Vec<String>) -> Res<()> {
        let (pe, _) = entries(self.model);
        let zeros = vec![0f32; self.model.param_len()];
        for opt in ["sgd", "adam"] {
            let (cfg, lr) = optimizer(self.g, opt)?;
            let mut params = params0.to_vec(); // (P)
            let mut st = (up(self.be, &zeros)?, up(self.be, &zeros)?);
            for step in 1..=2u32 {
                let mut grads = self.ce_grads(&params)?;
                if opt == "adam" {
                    let prefix = if step == 1 {
                        "grad_ce"
                    } else {
                        "adam2.grad_ce"
                    };
                    for e in pe {
                        Stored::load(self.g, prefix, e)?.feed(&mut grads[e.range()]);
                    }
                }
                let mut dev = up(self.be, &params)?;
                self.be
                    .optimizer_step(
                        &cfg,
                        step,
                        &up(self.be, &[lr])?,
                        &mut dev,
                        &up(self.be, &grads)?,
                        &mut st.0,
                        &mut st.1,
                    )
                    .map_err(|e| e.to_string())?;
                params = down(self.be, &dev)?;
                let prefix = format!("{opt}{step}.param");
                for e in pe {
                    let key = format!("{prefix}.{}", e.name);
                    p.extend(
                        Stored::load(self.g, &prefix, e)
                            .and_then(|s| {
                                let tol = if opt == "sgd" {
                                    // SGD is linear in g: step t moves p by lr·Σ momentum^k·δ ≤ lr·(1 + 1.9)·δ
                                    // after two steps, δ the gradient bound of this tensor.
                                    let g = Stored::load(self.g, "grad_ce", e)?.max_abs();
                                    let delta =
                                        2.0 * self.tols.grad_atol(g, hint(self.g, "grad_ce")?);
                                    Tol::new(
                                        0.0,
                                        OPT_ATOL
                                            + lr as f64
                                                * (1.0 + cfg.momentum as f64)
                                                * step as f64
                                                * delta,
                                    )
                                } else {
                                    Tol::new(0.0, OPT_ATOL)
                                };
                                self.check_adam_aware(
                                    &s,
                                    &key,
                                    &params[e.range()],
                                    tol,
                                    opt,
                                    lr as f64 * step as f64,
                                )
                            })
                            .err(),
                    );
                }
            }
        }
        Ok(())
    }

    /// Adam's stored entries are fed stored gradients and compare elementwise; its moments are
    /// over elements that used our own gradients, so they only bound: each element within 2·lr per
    /// step of PyTorch's (§4.2), hence the moments too.
    fn check_adam_aware(
        &self,
        s: &Stored,
        key: &str,
        got: &[f32],
        tol: Tol,
        opt: &str,
        lr_steps: f64,
    ) -> Res<()> {
        match (opt, s) {
            (
                "adam",
                Stored::Sampled {
                    moments,
                    index,
                    values,
                },
            ) => {
                let picked: Vec<f32> = index.iter().map(|&i| got[i]).collect();
                check_close(&format!("{key}@sample"), &picked, values, tol)?;
                let ours = moments_of(got);
                for k in 0..3 {
                    if (ours[k] - moments[k]).abs() > 2.0 * lr_steps {
                        return Err(format!(
                            "{key}: moment {k} {:.6e} vs {:.6e} beyond 2·lr per step",
                            ours[k], moments[k]
                        ));
                    }
                }
                Ok(())
            }
            _ => s.check(key, got, tol),
        }
    }
}

fn kl_kind(losses: &serde_json::Value) -> Res<LossKind> {
    let kl = &losses["kl"];
    Ok(LossKind::Kl {
        temperature: kl_t(losses)? as f32,
        scale_loss: kl["scale_loss"]
            .as_bool()
            .ok_or("losses.kl.scale_loss missing")?,
    })
}

fn kl_t(losses: &serde_json::Value) -> Res<f64> {
    losses["kl"]["temperature"]
        .as_f64()
        .ok_or("losses.kl.temperature missing".into())
}

/// SGD (no dampening, no Nesterov) or Adam from the `optimizers` metadata.
fn optimizer(g: &Golden, key: &str) -> Res<(OptimizerCfg, f32)> {
    let all = g.meta_json("optimizers")?;
    let o = &all[key];
    let num = |k: &str| o[k].as_f64().ok_or(format!("optimizers.{key}.{k} missing"));
    let kind = match o["cls"].as_str() {
        Some("SGD") => {
            if num("dampening")? != 0.0 || o["nesterov"].as_bool() != Some(false) {
                return Err(format!(
                    "optimizers.{key}: only dampening 0 without Nesterov is implemented"
                ));
            }
            OptimizerKind::Sgd
        }
        Some("Adam") => OptimizerKind::Adam,
        other => return Err(format!("optimizers.{key}.cls = {other:?} is not SGD/Adam")),
    };
    let sgd = kind == OptimizerKind::Sgd;
    let cfg = OptimizerCfg {
        kind,
        momentum: if sgd { num("momentum")? as f32 } else { 0.0 },
        beta1: o["betas"][0].as_f64().unwrap_or(0.0) as f32,
        beta2: o["betas"][1].as_f64().unwrap_or(0.0) as f32,
        eps: if sgd { 0.0 } else { num("eps")? as f32 },
        weight_decay: num("weight_decay")? as f32,
    };
    Ok((cfg, num("lr")? as f32))
}
