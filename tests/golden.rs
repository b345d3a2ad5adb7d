//! Parity with PyTorch: every `golden_kind = model` file in the golden folder (README there, §2 and
//! §4) is rebuilt from its metadata and checked end to end on the CPU backend: activations, logits,
//! every loss and d/dlogits, every parameter gradient, batch-norm running statistics, eval-mode
//! logits, two SGD / Adam / AdamW steps. `aug` files belong to the augmentation test. Any other
//! kind, an unreadable file, a missing tensor or a mismatch fails the test; all files are reported.
//!
//! `golden_models`: every DD-Ranking student network (issue #9 item 4), each golden_models file
//! (tests/fixtures/golden_models/, plus `$DDR_GOLDEN_MODELS_DIR`) on the CPU backend, one line per
//! file. Its checker, generic over the backend, is tests/common/golden_models.rs; the CUDA run of
//! the same files is tests/cuda_golden_models.rs.

mod common;

use common::golden_models::{check_golden_models_files, golden_models_files};
use common::{check_close, check_near_zero, golden_files, Golden, Tol};
use ddr_fast::backend::cpu::CpuBackend;
use ddr_fast::backend::{Backend, Elem, LossKind, Mode, NormKind, OptimizerCfg, OptimizerKind};
use ddr_fast::model::{ConvNet, ConvNetSpec, Workspace};

// Tolerances of golden/README.md §4.1 (the reasons are given there and repeated briefly here).
/// Activations and logits: float32 sums of up to 9·W products in another order.
const ACT_RTOL: f64 = 1e-5;
/// ... with an absolute floor of 1e-5 · max|want| ("rel to max").
const ACT_ATOL_REL_MAX: f64 = 1e-5;
/// Losses: KL has cancellation; PyTorch's own f32 vs f64 gap is ≤ 2.6e-6 relative.
const LOSS: Tol = Tol::new(1e-5, 0.0);
/// d loss / d logits: closed forms from our own logits.
const DLOGITS: Tol = Tol::new(1e-5, 1e-7);
/// Parameter gradients: float32 reductions over N·H·W; PyTorch's f32 vs f64 gap ≤ 4.6e-7.
const GRAD: Tol = Tol::new(1e-4, 1e-6);
/// Gradients of conv biases in front of a norm (true value 0): both sides rounding noise (§4.3).
const ZERO_GRAD_BOUND: f64 = 1e-6;
/// Batch-norm running statistics: one reduction over N·H·W.
const RUNNING: Tol = Tol::new(1e-5, 1e-7);
/// Optimizer steps fed with stored gradients, and SGD with our own: elementwise float32 only
/// (measured ≤ 2.5e-7); SGD moves p by lr·δ for a gradient error δ.
const OPT: Tol = Tol::new(0.0, 1e-6);

type Res<T> = Result<T, String>;

#[test]
fn golden_models() {
    let files = golden_models_files().unwrap_or_else(|e| panic!("{e}"));
    if let Err(e) =
        check_golden_models_files(&CpuBackend::new(), "golden_models", &files, |_, _| {})
    {
        panic!("{e}");
    }
}

#[test]
fn golden() {
    let files = golden_files().unwrap_or_else(|e| panic!("{e}"));
    let mut failures = Vec::new();
    for path in &files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        match check_file(path) {
            Ok(Checked::Model) => println!("golden: {name} ok"),
            Ok(Checked::NotMine(kind)) => {
                println!("golden: {name} has golden_kind = {kind}: checked by the aug test")
            }
            Err(errs) => {
                for e in &errs {
                    println!("golden: {name} FAILED: {e}");
                }
                failures.push(format!(
                    "{name}: {} problem(s), first: {}",
                    errs.len(),
                    errs[0]
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "golden failures:\n{}",
        failures.join("\n")
    );
}

enum Checked {
    Model,
    NotMine(String),
}

/// Collects every problem of one file instead of stopping at the first.
#[derive(Default)]
struct Problems(Vec<String>);

impl Problems {
    fn note(&mut self, r: Res<()>) {
        if let Err(e) = r {
            self.0.push(e);
        }
    }
}

fn check_file(path: &std::path::Path) -> Result<Checked, Vec<String>> {
    let g = Golden::open(path).map_err(|e| vec![e])?;
    let kind = g.meta("golden_kind").map_err(|e| vec![e])?.to_string();
    match kind.as_str() {
        "model" => {}
        "aug" => return Ok(Checked::NotMine(kind)),
        other => return Err(vec![format!("unknown golden_kind `{other}`")]),
    }
    let mut p = Problems::default();
    check_on_every_backend(&g, &mut p);
    if p.0.is_empty() {
        Ok(Checked::Model)
    } else {
        Err(p.0)
    }
}

/// The same checks on every backend this build has; a new device adds one line here.
fn check_on_every_backend(g: &Golden, p: &mut Problems) {
    check_on(g, &CpuBackend::new(), p);
}

/// Runs the model checks on one backend; its problems are prefixed with the device.
fn check_on<B: Backend>(g: &Golden, be: &B, p: &mut Problems) {
    let mut mine = Problems::default();
    if let Err(e) = check_model(g, be, &mut mine) {
        mine.0.push(e);
    }
    let dev = be.describe();
    p.0.extend(mine.0.into_iter().map(|e| format!("[{dev}] {e}")));
}

/// The file's model, data and expectations, loaded once per backend.
struct Case<'a, B: Backend> {
    g: &'a Golden,
    be: &'a B,
    net: ConvNet,
    batch: usize,
    /// (1, B, C, H, W) on the device
    x: B::Buf<f32>,
    /// (1, B) on the device
    labels: B::Buf<u32>,
    /// (1, B, K) on the device
    teacher: B::Buf<f32>,
    /// (1, P) `param.*`
    params: Vec<f32>,
    /// (1, R) `buffer.*`
    running: Vec<f32>,
    zero_grad: Vec<String>,
}

fn spec_from_meta(g: &Golden) -> Res<ConvNetSpec> {
    let norm = match g.meta("norm")? {
        "instancenorm" => NormKind::Instance,
        "batchnorm" => NormKind::Batch,
        "none" => NormKind::None,
        other => return Err(format!("unknown norm `{other}`")),
    };
    let spec = ConvNetSpec::new(
        g.meta_usize("depth")?,
        g.meta_usize("width")?,
        norm,
        g.meta_usize("channels")?,
        g.meta_usize("im")?,
        g.meta_usize("classes")?,
    )
    .map_err(|e| e.to_string())?;
    // Our derived geometry must agree with what the file says the reference used.
    for (key, ours) in [
        ("first_conv_padding", spec.pad(0)),
        ("conv_hw", spec.conv_hw()),
        ("feat_hw", spec.feat_hw()),
        ("num_feat", spec.num_feat()),
    ] {
        let theirs = g.meta_usize(key)?;
        if theirs != ours {
            return Err(format!("metadata {key} = {theirs}, our ConvNet has {ours}"));
        }
    }
    for (key, ours) in [("norm_eps", 1e-5), ("bn_momentum", 0.1)] {
        let v: f64 = g
            .meta(key)?
            .parse()
            .map_err(|_| format!("metadata {key} is not a number"))?;
        if v != ours {
            return Err(format!("metadata {key} = {v}, ddr-fast implements {ours}"));
        }
    }
    Ok(spec)
}

fn load_case<'a, B: Backend>(g: &'a Golden, be: &'a B) -> Res<Case<'a, B>> {
    let net = ConvNet::new(spec_from_meta(g)?);
    let s = &net.spec;
    let batch = g.meta_usize("batch")?;
    // Names and order must be PyTorch's.
    let names: Vec<String> =
        serde_json::from_value(g.meta_json("param_names")?).map_err(|e| e.to_string())?;
    let ours: Vec<String> = net.layout.params.iter().map(|e| e.name.clone()).collect();
    if names != ours {
        return Err(format!(
            "param_names {names:?} differ from our layout {ours:?}"
        ));
    }
    let bnames: Vec<String> =
        serde_json::from_value(g.meta_json("buffer_names")?).map_err(|e| e.to_string())?;
    let bnames: Vec<String> = bnames
        .into_iter()
        .filter(|n| !n.ends_with("num_batches_tracked"))
        .collect();
    let bours: Vec<String> = net.layout.buffers.iter().map(|e| e.name.clone()).collect();
    if bnames != bours {
        return Err(format!(
            "buffer_names {bnames:?} differ from our layout {bours:?}"
        ));
    }
    let x = g.f32_shaped("input", &[batch, s.channels, s.im_size, s.im_size])?;
    let (labels, lshape) = g.i64("labels")?;
    if lshape != [batch] {
        return Err(format!("labels has shape {lshape:?}, expected [{batch}]"));
    }
    let labels = labels
        .iter()
        .map(|&y| {
            u32::try_from(y)
                .ok()
                .filter(|&y| (y as usize) < s.classes)
                .ok_or(format!("label {y} out of range"))
        })
        .collect::<Res<Vec<u32>>>()?;
    let teacher = g.f32_shaped("teacher_logits", &[batch, s.classes])?;
    let params = load_row(g, &net.layout.params, "param", net.param_len())?;
    let running = load_row(g, &net.layout.buffers, "buffer", net.buffer_len())?;
    let zero_grad: Vec<String> =
        serde_json::from_value(g.meta_json("zero_grad_params")?).map_err(|e| e.to_string())?;
    Ok(Case {
        g,
        be,
        net,
        batch,
        x: be.upload(&x).map_err(|e| e.to_string())?,
        labels: be.upload(&labels).map_err(|e| e.to_string())?,
        teacher: be.upload(&teacher).map_err(|e| e.to_string())?,
        params,
        running,
        zero_grad,
    })
}

/// Packs the tensors `<prefix>.<name>` of every entry into one row.
fn load_row(
    g: &Golden,
    entries: &[ddr_fast::model::Entry],
    prefix: &str,
    len: usize,
) -> Res<Vec<f32>> {
    let mut row = vec![0f32; len];
    for e in entries {
        row[e.range()].copy_from_slice(&g.f32_shaped(&format!("{prefix}.{}", e.name), &e.shape)?);
    }
    Ok(row)
}

impl<B: Backend> Case<'_, B> {
    fn up<T: Elem>(&self, host: &[T]) -> Res<B::Buf<T>> {
        self.be.upload(host).map_err(|e| e.to_string())
    }

    fn down<T: Elem>(&self, buf: &B::Buf<T>) -> Res<Vec<T>> {
        self.be.download(buf).map_err(|e| e.to_string())
    }

    fn workspace(&self) -> Res<Workspace<B>> {
        self.net
            .workspace(self.be, 1, self.batch, true)
            .map_err(|e| e.to_string())
    }

    fn forward(
        &self,
        ws: &mut Workspace<B>,
        params: &B::Buf<f32>,
        running: &mut B::Buf<f32>,
        mode: Mode,
    ) -> Res<()> {
        self.net
            .forward(self.be, ws, &self.x, params, running, mode)
            .map_err(|e| e.to_string())
    }

    fn loss(&self, ws: &mut Workspace<B>, kind: LossKind) -> Res<()> {
        self.net
            .loss(self.be, ws, kind, &self.labels, Some(&self.teacher))
            .map_err(|e| e.to_string())
    }

    /// CE gradients (1, P) at `params`, from a fresh train-mode forward (running stats on a copy).
    fn ce_grads(&self, params: &B::Buf<f32>) -> Res<B::Buf<f32>> {
        let mut ws = self.workspace()?;
        let mut running = self.up(&self.running)?;
        self.forward(&mut ws, params, &mut running, Mode::Train)?;
        self.loss(&mut ws, LossKind::CrossEntropy)?;
        let mut grads = self.up(&vec![0f32; self.net.param_len()])?;
        self.net
            .backward(self.be, &mut ws, &self.x, params, &mut grads)
            .map_err(|e| e.to_string())?;
        Ok(grads)
    }

    /// Compares a (1, P) row with the tensors `<prefix>.<name>`: gradients of the zero-gradient
    /// biases with the absolute bound when `grads`, everything else with `tol`.
    fn check_row(&self, p: &mut Problems, row: &B::Buf<f32>, prefix: &str, tol: Tol, grads: bool) {
        let row = match self.down(row) {
            Ok(r) => r,
            Err(e) => return p.0.push(e),
        };
        for e in &self.net.layout.params {
            let key = format!("{prefix}.{}", e.name);
            let r = self.g.f32_shaped(&key, &e.shape).and_then(|want| {
                if grads && self.zero_grad.contains(&e.name) {
                    check_near_zero(&key, &row[e.range()], &want, ZERO_GRAD_BOUND)
                } else {
                    check_close(&key, &row[e.range()], &want, tol)
                }
            });
            p.note(r);
        }
    }

    fn check_act(&self, p: &mut Problems, key: &str, got: &B::Buf<f32>) {
        let r = self.g.f32(key).and_then(|(want, _)| {
            check_close(
                key,
                &self.down(got)?,
                &want,
                Tol::new(ACT_RTOL, 0.0).rel_to_max(ACT_ATOL_REL_MAX, &want),
            )
        });
        p.note(r);
    }

    fn optimizer(&self, key: &str) -> Res<(OptimizerCfg, f32)> {
        let all = self.g.meta_json("optimizers")?;
        let o = all
            .get(key)
            .ok_or(format!("metadata optimizers has no `{key}`"))?;
        let num = |k: &str| {
            o.get(k)
                .and_then(|v| v.as_f64())
                .ok_or(format!("optimizers.{key}.{k} missing"))
        };
        let betas = |i: usize| {
            o.get("betas")
                .and_then(|b| b.get(i))
                .and_then(|v| v.as_f64())
                .unwrap_or(0.0) as f32
        };
        let kind = match o.get("cls").and_then(|v| v.as_str()) {
            Some("SGD") => {
                if num("dampening")? != 0.0
                    || o.get("nesterov").and_then(|v| v.as_bool()) != Some(false)
                {
                    return Err(format!(
                        "optimizers.{key}: only dampening 0 without Nesterov is implemented"
                    ));
                }
                OptimizerKind::Sgd
            }
            Some("Adam") => OptimizerKind::Adam,
            Some("AdamW") => OptimizerKind::AdamW,
            other => {
                return Err(format!(
                    "optimizers.{key}.cls = {other:?} is not SGD/Adam/AdamW"
                ))
            }
        };
        let cfg = OptimizerCfg {
            kind,
            momentum: if kind == OptimizerKind::Sgd {
                num("momentum")? as f32
            } else {
                0.0
            },
            beta1: betas(0),
            beta2: betas(1),
            eps: if kind == OptimizerKind::Sgd {
                0.0
            } else {
                num("eps")? as f32
            },
            weight_decay: num("weight_decay")? as f32,
        };
        Ok((cfg, num("lr")? as f32))
    }

    fn opt_step(
        &self,
        cfg: &OptimizerCfg,
        lr: f32,
        t: u32,
        params: &mut B::Buf<f32>,
        grads: &B::Buf<f32>,
        st: &mut (B::Buf<f32>, B::Buf<f32>),
    ) -> Res<()> {
        self.be
            .optimizer_step(
                cfg,
                t,
                &self.up(&[lr])?,
                params,
                grads,
                &mut st.0,
                &mut st.1,
            )
            .map_err(|e| e.to_string())
    }
}

/// LossKind of one entry of the `losses` metadata.
fn loss_kind(key: &str, v: &serde_json::Value) -> Res<LossKind> {
    let num = |k: &str| {
        v.get(k)
            .and_then(|x| x.as_f64())
            .ok_or(format!("losses.{key}.{k} missing"))
            .map(|x| x as f32)
    };
    let flag = |k: &str| {
        v.get(k)
            .and_then(|x| x.as_bool())
            .ok_or(format!("losses.{key}.{k} missing"))
    };
    match v.get("fn").and_then(|f| f.as_str()) {
        Some("F.cross_entropy") => Ok(LossKind::CrossEntropy),
        Some("KLDivergenceLoss") => Ok(LossKind::Kl {
            temperature: num("temperature")?,
            scale_loss: flag("scale_loss")?,
        }),
        Some("SoftCrossEntropyLoss") => Ok(LossKind::Sce {
            temperature: num("temperature")?,
            scale_loss: flag("scale_loss")?,
        }),
        Some("MSEGTLoss") => Ok(LossKind::MseGt {
            w_mse: num("mse_weight")?,
            w_ce: num("ce_weight")?,
        }),
        other => Err(format!("losses.{key}.fn = {other:?} is unknown")),
    }
}

fn check_model<B: Backend>(g: &Golden, be: &B, p: &mut Problems) -> Res<()> {
    let c = load_case(g, be)?;
    let params0 = c.up(&c.params)?; // (1, P)
    let zeros = vec![0f32; c.net.param_len()];
    let net = &c.net;
    let depth = net.spec.depth;
    let is_bn = net.spec.norm == NormKind::Batch;

    // ---- train-mode forward: activations, logits, running statistics ----------------------------
    let mut ws = c.workspace()?;
    let mut running = c.up(&c.running)?; // (1, R)
    c.forward(&mut ws, &params0, &mut running, Mode::Train)?;
    for d in 0..depth {
        c.check_act(p, &format!("act.block{}", d + 1), ws.block_out(d));
    }
    c.check_act(p, "logits", ws.logits());
    let running_after_train = c.down(&running)?; // (1, R)
    if is_bn {
        let running = &running_after_train;
        for e in &net.layout.buffers {
            let key = format!("train1.buffer.{}", e.name);
            p.note(
                g.f32_shaped(&key, &e.shape)
                    .and_then(|want| check_close(&key, &running[e.range()], &want, RUNNING)),
            );
        }
        // num_batches_tracked is a host-side counter: one train forward adds exactly one.
        for e in net
            .layout
            .buffers
            .iter()
            .filter(|e| e.name.ends_with("running_mean"))
        {
            let layer = e.name.trim_end_matches("running_mean");
            let before = g.i64(&format!("buffer.{layer}num_batches_tracked"))?.0;
            let after = g
                .i64(&format!("train1.buffer.{layer}num_batches_tracked"))?
                .0;
            if before.len() != 1 || after != [before[0] + 1] {
                p.0.push(format!(
                    "{layer}num_batches_tracked: before {before:?}, after {after:?}, expected +1"
                ));
            }
        }
    }

    // ---- every loss and its d/dlogits ------------------------------------------------------------
    let losses = g.meta_json("losses")?;
    let losses = losses
        .as_object()
        .ok_or("metadata losses is not a JSON object")?;
    for (key, v) in losses {
        let kind = loss_kind(key, v)?;
        c.loss(&mut ws, kind)?;
        let loss_key = format!("loss.{key}");
        p.note(g.f32(&loss_key).and_then(|(want, _)| {
            check_close(&loss_key, &c.down(ws.loss().unwrap())?, &want, LOSS)
        }));
        let dkey = format!("dlogits.{key}");
        p.note(g.f32(&dkey).and_then(|(want, _)| {
            check_close(&dkey, &c.down(ws.dlogits().unwrap())?, &want, DLOGITS)
        }));
    }

    // ---- gradients of CE and MSE-GT ---------------------------------------------------------------
    for (loss_key, prefix) in [("ce", "grad_ce"), ("mse_gt", "grad_msegt")] {
        let v = losses
            .get(loss_key)
            .ok_or(format!("metadata losses has no `{loss_key}`"))?;
        c.loss(&mut ws, loss_kind(loss_key, v)?)?;
        let mut grads = c.up(&zeros)?; // (1, P)
        net.backward(be, &mut ws, &c.x, &params0, &mut grads)
            .map_err(|e| e.to_string())?;
        c.check_row(p, &grads, prefix, GRAD, true);
    }

    // ---- eval mode: batch norm normalises with the running statistics after the train forward ----
    let mut running = c.up(&running_after_train)?;
    c.forward(&mut ws, &params0, &mut running, Mode::Eval)?;
    c.check_act(p, "logits_eval", ws.logits());
    for d in 0..depth {
        let key = format!("act_eval.block{}", d + 1);
        // Stored for batch norm only (other norms have no train/eval difference); required there.
        if is_bn || g.has(&key) {
            c.check_act(p, &key, ws.block_out(d));
        }
    }

    // ---- SGD: both steps with our own gradients ---------------------------------------------------
    let (cfg, lr) = c.optimizer("sgd")?;
    let mut params = c.up(&c.params)?;
    let mut st = (c.up(&zeros)?, c.up(&zeros)?);
    let grads = c.ce_grads(&params)?;
    c.opt_step(&cfg, lr, 1, &mut params, &grads, &mut st)?;
    c.check_row(p, &params, "sgd1.param", OPT, false);
    let grads = c.ce_grads(&params)?;
    c.opt_step(&cfg, lr, 2, &mut params, &grads, &mut st)?;
    c.check_row(p, &params, "sgd2.param", OPT, false);

    // ---- Adam / AdamW: fed with the stored gradients (README §4.2), plus our gradients at step 1 --
    for opt in ["adam", "adamw"] {
        let (cfg, lr) = c.optimizer(opt)?;
        let mut params = c.up(&c.params)?;
        let mut st = (c.up(&zeros)?, c.up(&zeros)?);
        let g1 = c.up(&load_row(
            g,
            &net.layout.params,
            "grad_ce",
            net.param_len(),
        )?)?;
        c.opt_step(&cfg, lr, 1, &mut params, &g1, &mut st)?;
        c.check_row(p, &params, &format!("{opt}1.param"), OPT, false);
        let g2 = c.up(&load_row(
            g,
            &net.layout.params,
            &format!("{opt}2.grad_ce"),
            net.param_len(),
        )?)?;
        c.opt_step(&cfg, lr, 2, &mut params, &g2, &mut st)?;
        c.check_row(p, &params, &format!("{opt}2.param"), OPT, false);
        let stored_step1 = c.up(&load_row(
            g,
            &net.layout.params,
            &format!("{opt}1.param"),
            net.param_len(),
        )?)?;
        let ours = c.ce_grads(&stored_step1)?;
        c.check_row(p, &ours, &format!("{opt}2.grad_ce"), GRAD, true);
    }
    Ok(())
}
