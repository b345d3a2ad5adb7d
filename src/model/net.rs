//! `Net`: any DD-Ranking student — ConvNet on its fused fast path, or every other network as an
//! explicit list of layers ([`LayerList`]) run op by op — behind one API the trainer, metrics and
//! CLI use. Parameters live in the flat (S, P) buffer, BN running statistics in (S, R), both
//! under PyTorch's state_dict names in state_dict order ([`ParamLayout`]).

use super::convnet::{ConvNet, Workspace};
use super::layers::{Layer, LayerList, LayerWorkspace};
use super::layout::ParamLayout;
use super::spec::ConvNetSpec;
use super::zoo;
use crate::backend::{Backend, LossKind, Mode, NormKind};
use crate::error::{Error, Result};

/// Whether `name` is a ConvNet name (the family with the fused fast path and CUDA kernels).
pub fn is_convnet_name(name: &str) -> bool {
    name.get(..7)
        .is_some_and(|p| p.eq_ignore_ascii_case("convnet"))
}

/// Refuses up front a model whose ops `be` has no kernels for (a non-ConvNet student on CUDA),
/// before any data is loaded or any student trained.
pub fn check_model_backend<B: Backend>(name: &str, be: &B) -> Result<()> {
    if is_convnet_name(name) || be.has_layer_ops() {
        return Ok(());
    }
    Err(Error::device(format!(
        "model {name}: {}",
        crate::backend::no_kernel(&be.describe(), "the layer-list ops (conv2d, norm, pool)")
    )))
}

/// A student network: ConvNet (fused fast path) or a layer list.
#[derive(Clone, Debug, PartialEq)]
pub struct Net {
    name: String,
    body: Body,
}

#[derive(Clone, Debug, PartialEq)]
enum Body {
    ConvNet(ConvNet),
    Layers(LayerList),
}

/// Activations and gradient scratch of a [`Net`] for S students × B images.
pub struct NetWorkspace<B: Backend> {
    body: WsBody<B>,
    /// A layer list's shared-input forward: S copies of the shared images (S, B, C, H, W),
    /// allocated on first use (a layer list has no shared first layer yet).
    copies: Option<B::Buf<f32>>,
}

enum WsBody<B: Backend> {
    ConvNet(Workspace<B>),
    Layers(LayerWorkspace<B>),
}

impl<B: Backend> NetWorkspace<B> {
    /// (S, B, K) logits of the last forward.
    pub fn logits(&self) -> &B::Buf<f32> {
        match &self.body {
            WsBody::ConvNet(w) => w.logits(),
            WsBody::Layers(w) => w.logits(),
        }
    }
    /// (S) per-student loss of the last `Net::loss` call (None in an evaluation-only workspace).
    pub fn loss(&self) -> Option<&B::Buf<f32>> {
        match &self.body {
            WsBody::ConvNet(w) => w.loss(),
            WsBody::Layers(w) => w.loss(),
        }
    }
    /// (S, B, K) d loss / d logits of the last `Net::loss` call.
    pub fn dlogits(&self) -> Option<&B::Buf<f32>> {
        match &self.body {
            WsBody::ConvNet(w) => w.dlogits(),
            WsBody::Layers(w) => w.dlogits(),
        }
    }
    /// S this workspace was sized for.
    pub fn students(&self) -> usize {
        match &self.body {
            WsBody::ConvNet(w) => w.students,
            WsBody::Layers(w) => w.students,
        }
    }
    /// B this workspace was sized for.
    pub fn batch(&self) -> usize {
        match &self.body {
            WsBody::ConvNet(w) => w.batch,
            WsBody::Layers(w) => w.batch,
        }
    }
    /// The ConvNet workspace inside (for the fused paths that need it).
    pub fn convnet(&mut self) -> Option<&mut Workspace<B>> {
        match &mut self.body {
            WsBody::ConvNet(w) => Some(w),
            WsBody::Layers(_) => None,
        }
    }
}

impl From<ConvNet> for Net {
    fn from(net: ConvNet) -> Net {
        let s = net.spec;
        Net {
            name: convnet_name(&s),
            body: Body::ConvNet(net),
        }
    }
}

impl From<ConvNetSpec> for Net {
    fn from(spec: ConvNetSpec) -> Net {
        Net::from(ConvNet::new(spec))
    }
}

impl AsRef<ParamLayout> for Net {
    fn as_ref(&self) -> &ParamLayout {
        self.layout()
    }
}

impl AsRef<ParamLayout> for ConvNet {
    fn as_ref(&self) -> &ParamLayout {
        &self.layout
    }
}

/// A canonical name for a ConvNet spec (what `Net::name` reports).
fn convnet_name(s: &ConvNetSpec) -> String {
    let mut n = format!("ConvNet-{}", s.depth);
    if s.width != super::spec::DEFAULT_WIDTH {
        n += &format!("-W{}", s.width);
    }
    match s.norm {
        NormKind::Batch => n += "-BN",
        NormKind::None => n += "-NN",
        NormKind::Instance => {}
    }
    n
}

impl Net {
    /// A DD-Ranking student by name: `ConvNet-3`, `ConvNet-3-BN` (and the other ConvNet forms
    /// `ConvNetSpec::from_name` reads), `MLP`, `LeNet`, `AlexNet`, `VGG-11/13/16/19[-BN]`,
    /// `ResNet-18/34/50[-BN]`, for `channels`-channel `im_size`-px inputs and `classes` classes,
    /// built as `ddranking.utils.networks` builds them.
    pub fn from_name(name: &str, channels: usize, im_size: usize, classes: usize) -> Result<Net> {
        if is_convnet_name(name) {
            return Ok(Net {
                name: name.to_string(),
                body: Body::ConvNet(ConvNet::new(ConvNetSpec::from_name(
                    name, channels, im_size, classes,
                )?)),
            });
        }
        let list = zoo::build(name, channels, im_size, classes)?;
        Ok(Net {
            name: name.to_string(),
            body: Body::Layers(list),
        })
    }

    /// The name it was built from.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The fused ConvNet inside, for paths only ConvNet has (CUDA kernels, the shared-input
    /// test forward, the FLOP and memory models); None for a layer list.
    pub fn convnet(&self) -> Option<&ConvNet> {
        match &self.body {
            Body::ConvNet(n) => Some(n),
            Body::Layers(_) => None,
        }
    }

    /// The layer list inside (None for ConvNet).
    pub fn layers(&self) -> Option<&[Layer]> {
        match &self.body {
            Body::ConvNet(_) => None,
            Body::Layers(l) => Some(&l.layers),
        }
    }

    /// The layer list inside, whole (None for ConvNet).
    pub fn layer_list(&self) -> Option<&LayerList> {
        match &self.body {
            Body::ConvNet(_) => None,
            Body::Layers(l) => Some(l),
        }
    }

    /// P: parameters per student.
    pub fn param_len(&self) -> usize {
        self.layout().len
    }

    /// R: batch-norm buffer elements per student.
    pub fn buffer_len(&self) -> usize {
        self.layout().buffer_len
    }

    /// Parameters and buffers under their PyTorch state_dict names, in state_dict order.
    pub fn layout(&self) -> &ParamLayout {
        match &self.body {
            Body::ConvNet(n) => &n.layout,
            Body::Layers(l) => &l.layout,
        }
    }

    /// (channels, im_size) of the input images.
    pub fn input(&self) -> (usize, usize) {
        match &self.body {
            Body::ConvNet(n) => (n.spec.channels, n.spec.im_size),
            Body::Layers(l) => (l.channels, l.im_size),
        }
    }

    /// Elements of one input image (C·H·W).
    pub fn image_len(&self) -> usize {
        let (c, s) = self.input();
        c * s * s
    }

    /// K: classes.
    pub fn classes(&self) -> usize {
        match &self.body {
            Body::ConvNet(n) => n.spec.classes,
            Body::Layers(l) => l.classes,
        }
    }

    /// Whether any layer is a batch norm (train forwards then count `num_batches_tracked`).
    pub fn has_batch_norm(&self) -> bool {
        self.buffer_len() > 0
    }

    /// An error naming the first op `be` has no kernel for, if this network needs one (a
    /// layer list on a backend without layer ops): the planner calls it before any work.
    pub fn check_backend<B: Backend>(&self, be: &B) -> Result<()> {
        if self.convnet().is_none() && !be.has_layer_ops() {
            return Err(Error::device(format!(
                "{}: {}",
                self.name,
                crate::backend::no_kernel(
                    &be.describe(),
                    "the layer-list ops (conv2d, norm, pool)"
                )
            )));
        }
        Ok(())
    }

    /// Allocates a workspace; `with_grad` adds the backward scratch (training).
    pub fn workspace<B: Backend>(
        &self,
        be: &B,
        students: usize,
        batch: usize,
        with_grad: bool,
    ) -> Result<NetWorkspace<B>> {
        self.check_backend(be)?;
        let body = match &self.body {
            Body::ConvNet(n) => WsBody::ConvNet(n.workspace(be, students, batch, with_grad)?),
            Body::Layers(l) => WsBody::Layers(l.workspace(be, students, batch, with_grad)?),
        };
        Ok(NetWorkspace { body, copies: None })
    }

    /// Forward of S students on their own batches: x (S, B, C, H, W), params (S, P), running
    /// (S, R) (batch norm: updated in train mode, read in eval mode). Logits in `ws.logits()`.
    pub fn forward<B: Backend>(
        &self,
        be: &B,
        ws: &mut NetWorkspace<B>,
        x: &B::Buf<f32>,
        params: &B::Buf<f32>,
        running: &mut B::Buf<f32>,
        mode: Mode,
    ) -> Result<()> {
        match (&self.body, &mut ws.body) {
            (Body::ConvNet(n), WsBody::ConvNet(w)) => n.forward(be, w, x, params, running, mode),
            (Body::Layers(l), WsBody::Layers(w)) => l.forward(be, w, x, params, running, mode),
            _ => Err(foreign_workspace(&self.name)),
        }
    }

    /// [`Net::forward`] of S students on the same images: x (B, C, H, W) is one copy read by every
    /// student (a test pass's chunk). A ConvNet runs its shared-input forward (the CUDA backend's
    /// first conv is then one GEMM over the S students' weights); a layer list copies x S times
    /// into the workspace and runs the ordinary forward (bitwise the same logits).
    pub fn forward_shared_input<B: Backend>(
        &self,
        be: &B,
        ws: &mut NetWorkspace<B>,
        x: &B::Buf<f32>,
        params: &B::Buf<f32>,
        running: &mut B::Buf<f32>,
        mode: Mode,
    ) -> Result<()> {
        match (&self.body, &mut ws.body) {
            (Body::ConvNet(n), WsBody::ConvNet(w)) => {
                n.forward_shared_input(be, w, x, params, running, mode)
            }
            (Body::Layers(l), WsBody::Layers(w)) => {
                let (s, one) = (w.students, be.len(x));
                if ws.copies.is_none() {
                    ws.copies = Some(be.alloc(s * one)?);
                }
                let copies = ws.copies.as_mut().expect("allocated above");
                for i in 0..s {
                    be.scale_add(one, 1.0, Some((x, 0)), 0.0, copies, i * one)?;
                }
                l.forward(be, w, copies, params, running, mode)
            }
            _ => Err(foreign_workspace(&self.name)),
        }
    }

    /// Per-student loss and d loss / d logits of the last forward. labels (S, B), soft (S, B, K).
    pub fn loss<B: Backend>(
        &self,
        be: &B,
        ws: &mut NetWorkspace<B>,
        kind: LossKind,
        labels: &B::Buf<u32>,
        soft: Option<&B::Buf<f32>>,
    ) -> Result<()> {
        match (&self.body, &mut ws.body) {
            (Body::ConvNet(n), WsBody::ConvNet(w)) => n.loss(be, w, kind, labels, soft),
            (Body::Layers(l), WsBody::Layers(w)) => l.loss(be, w, kind, labels, soft),
            _ => Err(foreign_workspace(&self.name)),
        }
    }

    /// Backward of the last train-mode forward; overwrites every element of grads (S, P).
    pub fn backward<B: Backend>(
        &self,
        be: &B,
        ws: &mut NetWorkspace<B>,
        x: &B::Buf<f32>,
        params: &B::Buf<f32>,
        grads: &mut B::Buf<f32>,
    ) -> Result<()> {
        match (&self.body, &mut ws.body) {
            (Body::ConvNet(n), WsBody::ConvNet(w)) => n.backward(be, w, x, params, grads),
            (Body::Layers(l), WsBody::Layers(w)) => l.backward(be, w, x, params, grads),
            _ => Err(foreign_workspace(&self.name)),
        }
    }
}

fn foreign_workspace(name: &str) -> Error {
    Error::config(format!(
        "workspace was built for another network, not for {name}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cpu::CpuBackend;
    use crate::model::{init_buffers, init_params, SplitMix64};

    fn uniform(n: usize, seed: u64) -> Vec<f32> {
        let mut g = SplitMix64::new(seed);
        (0..n).map(|_| 2.0 * g.next_f32() - 1.0).collect()
    }

    /// Fresh students of `net`: (S, P) parameters and (S, R) buffers.
    fn students(net: &Net, s: usize) -> (Vec<f32>, Vec<f32>) {
        let (p, r) = (net.param_len(), net.buffer_len());
        let mut params = vec![0f32; s * p];
        for (i, row) in params.chunks_mut(p).enumerate() {
            init_params(net.layout(), 10 + i as u64, row);
        }
        let mut running = vec![0f32; s * r];
        for row in running.chunks_mut(r.max(1)) {
            init_buffers(net.layout(), row);
        }
        (params, running)
    }

    /// Σ over students of the train-mode cross-entropy of `params`.
    fn loss_of(
        net: &Net,
        be: &CpuBackend,
        x: &[f32],
        y: &[u32],
        params: &[f32],
        s: usize,
        b: usize,
    ) -> f64 {
        let mut ws = net.workspace(be, s, b, true).unwrap();
        let mut running = students(net, s).1;
        net.forward(
            be,
            &mut ws,
            &x.to_vec(),
            &params.to_vec(),
            &mut running,
            Mode::Train,
        )
        .unwrap();
        net.loss(be, &mut ws, LossKind::CrossEntropy, &y.to_vec(), None)
            .unwrap();
        ws.loss().unwrap().iter().map(|&v| v as f64).sum()
    }

    /// Step (along a unit direction) of the directional difference and its tolerance. The step is
    /// small because instance norm over a few pixels (VGG's last 2×2 maps) curves the loss
    /// strongly (at 1e-3 VGG-11-W8 was 2.2% off along its gradient); the loss's f32 resolution
    /// at this step is allowed for as `noise` below.
    const DIR_STEP: f64 = 1e-4;
    const DIR_TOL: f64 = 2e-2;

    /// Every family's backward is the gradient of its forward: along three random directions in
    /// parameter space, the central difference of the loss equals ⟨gradient, direction⟩.
    #[test]
    fn backward_is_the_gradient_of_forward_for_every_family() {
        let be = CpuBackend::new();
        let (s, b) = (2, 3);
        for name in [
            "MLP",
            "LeNet",
            "ResNet-18-W4",
            "ResNet-18-W4-BN",
            "VGG-11-W8",
            "VGG-13-W8-BN",
        ] {
            let net = Net::from_name(name, 3, 32, 5).unwrap();
            let x = uniform(s * b * net.image_len(), 1);
            let y: Vec<u32> = (0..s * b).map(|i| (i * 3 % 5) as u32).collect();
            let (params, _) = students(&net, s);
            let mut ws = net.workspace(&be, s, b, true).unwrap();
            let mut running = students(&net, s).1;
            net.forward(&be, &mut ws, &x, &params, &mut running, Mode::Train)
                .unwrap();
            net.loss(&be, &mut ws, LossKind::CrossEntropy, &y, None)
                .unwrap();
            let mut grads = vec![f32::NAN; params.len()];
            net.backward(&be, &mut ws, &x, &params, &mut grads).unwrap();
            assert!(
                grads.iter().all(|g| g.is_finite()),
                "{name}: every gradient is written"
            );
            // Directions: the gradient's own, then half gradient, half random (so ⟨grad, v⟩ is
            // well above the loss's f32 resolution while random components are still checked).
            let gnorm = grads
                .iter()
                .map(|&g| (g as f64).powi(2))
                .sum::<f64>()
                .sqrt();
            let base = loss_of(&net, &be, &x, &y, &params, s, b);
            // The difference quotient cannot resolve less than a few f32 steps of the loss.
            let noise = 8.0 * base.abs() * f32::EPSILON as f64 / (2.0 * DIR_STEP);
            for seed in 0..3u64 {
                let r = uniform(params.len(), 100 + seed);
                let rnorm = r.iter().map(|&d| (d as f64).powi(2)).sum::<f64>().sqrt();
                let mix = if seed == 0 { 0.0 } else { 1.0 };
                let mut v: Vec<f64> = grads
                    .iter()
                    .zip(&r)
                    .map(|(&g, &d)| g as f64 / gnorm + mix * d as f64 / rnorm)
                    .collect();
                let vnorm = v.iter().map(|d| d * d).sum::<f64>().sqrt();
                v.iter_mut().for_each(|d| *d /= vnorm);
                let at = |t: f64| -> Vec<f32> {
                    params
                        .iter()
                        .zip(&v)
                        .map(|(&p, &d)| p + (t * d) as f32)
                        .collect()
                };
                let fd = (loss_of(&net, &be, &x, &y, &at(DIR_STEP), s, b)
                    - loss_of(&net, &be, &x, &y, &at(-DIR_STEP), s, b))
                    / (2.0 * DIR_STEP);
                let dot: f64 = grads.iter().zip(&v).map(|(&g, &d)| g as f64 * d).sum();
                assert!(
                    (fd - dot).abs() <= DIR_TOL * fd.abs().max(dot.abs()) + noise,
                    "{name} direction {seed}: difference {fd} vs ⟨grad, v⟩ {dot} (noise {noise})"
                );
            }
        }
    }

    /// A ConvNet through `Net` is the fused ConvNet itself: the same logits, bit for bit.
    #[test]
    fn convnet_through_net_is_the_fused_convnet() {
        let be = CpuBackend::new();
        let net = Net::from_name("ConvNet-2-W8-BN", 3, 16, 4).unwrap();
        let direct = ConvNet::new(ConvNetSpec::from_name("ConvNet-2-W8-BN", 3, 16, 4).unwrap());
        assert_eq!(net.convnet(), Some(&direct));
        let (s, b) = (2, 3);
        let x = uniform(s * b * net.image_len(), 5);
        let (params, running) = students(&net, s);
        let mut ws = net.workspace(&be, s, b, false).unwrap();
        net.forward(&be, &mut ws, &x, &params, &mut running.clone(), Mode::Eval)
            .unwrap();
        let mut wd = direct.workspace(&be, s, b, false).unwrap();
        direct
            .forward(&be, &mut wd, &x, &params, &mut running.clone(), Mode::Eval)
            .unwrap();
        assert_eq!(ws.logits(), wd.logits());
    }

    /// ResNet-18 on CIFAR has PyTorch's parameter count (11,173,962 with instance norm) and its
    /// batch-norm variant 2 × 9,600 running-statistics values (4,800 channels of norm).
    #[test]
    fn resnet18_sizes_match_pytorch() {
        let net = Net::from_name("ResNet-18", 3, 32, 10).unwrap();
        assert_eq!(net.param_len(), 11_173_962);
        let bn = Net::from_name("ResNet-18-BN", 3, 32, 10).unwrap();
        assert_eq!((bn.param_len(), bn.buffer_len()), (11_173_962, 9_600));
        assert!(bn.has_batch_norm() && !net.has_batch_norm());
    }

    /// Both backends run every family (CUDA through cuda/conv2d.cu and cuda/layers.cu); a
    /// backend without the layer-list ops would be refused up front with `no_kernel`'s error.
    #[test]
    fn every_backend_here_runs_every_family() {
        let cuda = crate::backend::cuda::CudaBackend::emulated();
        for name in [
            "ConvNet-3",
            "ConvNet-3-BN",
            "ResNet-18",
            "VGG-11-BN",
            "LeNet",
        ] {
            assert!(check_model_backend(name, &cuda).is_ok(), "{name} on CUDA");
            assert!(
                check_model_backend(name, &CpuBackend::new()).is_ok(),
                "{name} on CPU"
            );
        }
        let net = Net::from_name("VGG-11-W8", 3, 32, 10).unwrap();
        assert!(net.workspace(&cuda, 1, 2, false).is_ok());
        let msg = crate::backend::no_kernel("cuda:0", "conv2d").to_string();
        assert!(msg.contains("--device cpu"), "{msg}");
    }
}
