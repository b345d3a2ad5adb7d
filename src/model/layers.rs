//! `LayerList`: a network as an explicit list of layers with shapes, run op by op on any backend
//! with the layer-list ops. Value 0 is the input image batch; layer i reads value `input` (and,
//! for a residual add, value `other`) and writes value i + 1; the last value is the logits.
//! Forward keeps every value for backward; backward walks the list in reverse, adding the
//! gradients of a value read by two layers (a residual block's input).

use super::layout::ParamLayout;
use crate::backend::{
    Backend, Conv2dGeom, LinearGeom, LossKind, Mode, NormLayerGeom, NormLayerKind, ParamAt,
    PoolGeom, PoolKind,
};
use crate::error::{Error, Result};

/// Norm eps and BN momentum, PyTorch's defaults (GroupNorm and BatchNorm2d).
pub const EPS: f32 = 1e-5;
pub const MOMENTUM: f32 = 0.1;

/// What one layer computes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Op {
    /// k×k conv, weight (cout, cin, k, k) [+ bias (cout)] at `at`.
    Conv {
        cout: usize,
        k: usize,
        stride: usize,
        pad: usize,
        bias: bool,
        at: ParamAt,
    },
    /// Group or batch norm, γ/β at `at`, running_mean/var at `running` (batch norm only).
    Norm {
        kind: NormLayerKind,
        at: ParamAt,
        running: ParamAt,
    },
    Relu,
    Pool {
        kind: PoolKind,
        k: usize,
        stride: usize,
        pad: usize,
    },
    /// out = input + value `other` (same shapes).
    Add {
        other: usize,
    },
    /// Flattens its input (c·h·w features, PyTorch's `view(B, -1)` order) and applies
    /// y = x·Wᵀ + b, W (fout, fin) at `at`.
    Linear {
        fout: usize,
        at: ParamAt,
    },
}

/// One layer: its op, the value it reads and the (c, h, w) shape of the value it writes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Layer {
    pub op: Op,
    pub input: usize,
    pub in_shape: [usize; 3],
    pub out_shape: [usize; 3],
}

/// A network as a layer list plus its parameter layout.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerList {
    pub layers: Vec<Layer>,
    pub layout: ParamLayout,
    pub channels: usize,
    pub im_size: usize,
    pub classes: usize,
}

/// Activations and gradients of a layer list for S students × B images.
pub struct LayerWorkspace<B: Backend> {
    pub students: usize,
    pub batch: usize,
    /// The layers this workspace was sized for (a workspace of another network is refused).
    shapes: Vec<[usize; 3]>,
    /// Value i + 1 (the output of layer i): (S, B, c, h, w).
    vals: Vec<B::Buf<f32>>,
    /// Per layer: saved norm statistics (empty for other layers).
    stats: Vec<B::Buf<f32>>,
    grad: Option<LayerGrad<B>>,
}

struct LayerGrad<B: Backend> {
    /// (S)
    loss: B::Buf<f32>,
    /// d loss / d value i + 1, shaped like `vals`; the last one is d loss / d logits.
    dvals: Vec<B::Buf<f32>>,
    /// Per value read by more than one layer: a second gradient, added into `dvals` (by index
    /// of value − 1; None for values read once).
    spare: Vec<Option<B::Buf<f32>>>,
}

impl<B: Backend> LayerWorkspace<B> {
    pub fn logits(&self) -> &B::Buf<f32> {
        self.vals.last().expect("a layer list has layers")
    }
    pub fn loss(&self) -> Option<&B::Buf<f32>> {
        self.grad.as_ref().map(|g| &g.loss)
    }
    pub fn dlogits(&self) -> Option<&B::Buf<f32>> {
        self.grad.as_ref().and_then(|g| g.dvals.last())
    }

    /// f32 values this workspace holds (what [`LayerList::workspace_floats`] models), per `be`.
    pub fn allocated_floats(&self, be: &B) -> usize {
        let bufs = self.vals.iter().chain(&self.stats);
        let mut n: usize = bufs.map(|b| be.len(b)).sum();
        if let Some(g) = &self.grad {
            n += be.len(&g.loss);
            n += g.dvals.iter().map(|b| be.len(b)).sum::<usize>();
            n += g.spare.iter().flatten().map(|b| be.len(b)).sum::<usize>();
        }
        n
    }
}

fn elems(shape: [usize; 3]) -> usize {
    shape.iter().product()
}

impl LayerList {
    fn conv_geom(&self, l: &Layer, s: usize, b: usize) -> Conv2dGeom {
        let Op::Conv {
            cout,
            k,
            stride,
            pad,
            bias,
            ..
        } = l.op
        else {
            unreachable!("conv_geom of a conv layer")
        };
        let [cin, h, w] = l.in_shape;
        Conv2dGeom {
            students: s,
            batch: b,
            cin,
            cout,
            h,
            w,
            k,
            stride,
            pad,
            bias,
        }
    }

    fn norm_geom(&self, l: &Layer, kind: NormLayerKind, s: usize, b: usize) -> NormLayerGeom {
        let [c, h, w] = l.in_shape;
        NormLayerGeom {
            students: s,
            batch: b,
            c,
            h,
            w,
            kind,
            eps: EPS,
            momentum: MOMENTUM,
        }
    }

    fn pool_geom(&self, l: &Layer, s: usize, b: usize) -> PoolGeom {
        let Op::Pool {
            kind,
            k,
            stride,
            pad,
        } = l.op
        else {
            unreachable!("pool_geom of a pool layer")
        };
        let [c, h, w] = l.in_shape;
        PoolGeom {
            students: s,
            batch: b,
            c,
            h,
            w,
            k,
            stride,
            pad,
            kind,
        }
    }

    /// Elements of value v for S·B images.
    fn value_len(&self, v: usize, sb: usize) -> usize {
        let shape = if v == 0 {
            [self.channels, self.im_size, self.im_size]
        } else {
            self.layers[v - 1].out_shape
        };
        sb * elems(shape)
    }

    /// How many layers read each value.
    fn readers(&self) -> Vec<usize> {
        let mut n = vec![0; self.layers.len() + 1];
        for l in &self.layers {
            n[l.input] += 1;
            if let Op::Add { other } = l.op {
                n[other] += 1;
            }
        }
        n
    }

    /// f32 values [`LayerList::workspace`] allocates per student at `batch` images: every value
    /// and norm's saved statistics, and with `with_grad` the gradients (a second one for values
    /// read twice) and the loss. The memory model (`train::memory`) sizes cohorts with it.
    pub fn workspace_floats(&self, batch: usize, with_grad: bool) -> u64 {
        let mut n = 0;
        for (i, l) in self.layers.iter().enumerate() {
            n += self.value_len(i + 1, batch);
            if let Op::Norm { kind, .. } = l.op {
                n += self.norm_geom(l, kind, 1, batch).stats_len();
            }
        }
        if with_grad {
            let readers = self.readers();
            n += 1;
            // readers has one entry per value: the input (0) and each layer's output (1..=L).
            for (v, &r) in readers.iter().enumerate().skip(1) {
                n += self.value_len(v, batch) * if r > 1 { 2 } else { 1 };
            }
        }
        n as u64
    }

    pub fn workspace<B: Backend>(
        &self,
        be: &B,
        students: usize,
        batch: usize,
        with_grad: bool,
    ) -> Result<LayerWorkspace<B>> {
        let sb = students * batch;
        let mut vals = Vec::new();
        let mut stats = Vec::new();
        for (i, l) in self.layers.iter().enumerate() {
            vals.push(be.alloc(self.value_len(i + 1, sb))?);
            let n = match l.op {
                Op::Norm { kind, .. } => self.norm_geom(l, kind, students, batch).stats_len(),
                _ => 0,
            };
            stats.push(be.alloc(n)?);
        }
        let grad = if with_grad {
            let readers = self.readers();
            let mut dvals = Vec::new();
            let mut spare = Vec::new();
            for (v, &r) in readers.iter().enumerate().skip(1) {
                dvals.push(be.alloc(self.value_len(v, sb))?);
                spare.push(if r > 1 {
                    Some(be.alloc(self.value_len(v, sb))?)
                } else {
                    None
                });
            }
            Some(LayerGrad {
                loss: be.alloc(students)?,
                dvals,
                spare,
            })
        } else {
            None
        };
        Ok(LayerWorkspace {
            students,
            batch,
            shapes: self.layers.iter().map(|l| l.out_shape).collect(),
            vals,
            stats,
            grad,
        })
    }

    fn check_workspace<B: Backend>(&self, ws: &LayerWorkspace<B>) -> Result<()> {
        if ws.shapes.len() != self.layers.len()
            || ws
                .shapes
                .iter()
                .zip(&self.layers)
                .any(|(s, l)| *s != l.out_shape)
        {
            return Err(Error::config("workspace was built for another network"));
        }
        Ok(())
    }

    /// x (S, B, C, H, W), params (S, P), running (S, R) → every value, the logits last.
    pub fn forward<B: Backend>(
        &self,
        be: &B,
        ws: &mut LayerWorkspace<B>,
        x: &B::Buf<f32>,
        params: &B::Buf<f32>,
        running: &mut B::Buf<f32>,
        mode: Mode,
    ) -> Result<()> {
        self.check_workspace(ws)?;
        let (s, b) = (ws.students, ws.batch);
        for (i, l) in self.layers.iter().enumerate() {
            // Layer i reads earlier values and writes value i + 1 = vals[i].
            let (lower, upper) = ws.vals.split_at_mut(i);
            let out = &mut upper[0];
            let value = |v: usize| if v == 0 { x } else { &lower[v - 1] };
            let inp = value(l.input);
            match l.op {
                Op::Conv { at, .. } => {
                    be.conv2d_forward(&self.conv_geom(l, s, b), inp, params, at, out)?
                }
                Op::Norm {
                    kind,
                    at,
                    running: run_at,
                } => be.norm_forward(
                    &self.norm_geom(l, kind, s, b),
                    mode,
                    inp,
                    params,
                    at,
                    running,
                    run_at,
                    &mut ws.stats[i],
                    out,
                )?,
                Op::Relu => be.relu_forward(inp, out)?,
                Op::Pool { .. } => be.pool_forward(&self.pool_geom(l, s, b), inp, out)?,
                Op::Add { other } => {
                    let n = be.len(out);
                    be.scale_add(n, 1.0, Some((inp, 0)), 0.0, out, 0)?;
                    be.scale_add(n, 1.0, Some((value(other), 0)), 1.0, out, 0)?;
                }
                Op::Linear { fout, at } => {
                    let g = LinearGeom {
                        students: s,
                        batch: b,
                        fin: elems(l.in_shape),
                        fout,
                    };
                    be.linear_forward(&g, inp, params, at, out)?
                }
            }
        }
        Ok(())
    }

    pub fn loss<B: Backend>(
        &self,
        be: &B,
        ws: &mut LayerWorkspace<B>,
        kind: LossKind,
        labels: &B::Buf<u32>,
        soft: Option<&B::Buf<f32>>,
    ) -> Result<()> {
        let (s, b) = (ws.students, ws.batch);
        let g = ws.grad.as_mut().ok_or_else(no_grad)?;
        let logits = ws.vals.last().expect("a layer list has layers");
        let dlogits = g.dvals.last_mut().expect("a layer list has layers");
        be.loss(
            kind,
            s,
            b,
            self.classes,
            logits,
            labels,
            soft,
            &mut g.loss,
            dlogits,
        )
    }

    /// Backward of the last train-mode forward from d loss / d logits (set by `loss`).
    pub fn backward<B: Backend>(
        &self,
        be: &B,
        ws: &mut LayerWorkspace<B>,
        x: &B::Buf<f32>,
        params: &B::Buf<f32>,
        grads: &mut B::Buf<f32>,
    ) -> Result<()> {
        self.check_workspace(ws)?;
        let (s, b) = (ws.students, ws.batch);
        let g = ws.grad.as_mut().ok_or_else(no_grad)?;
        let n = self.layers.len();
        // written[v]: d value v already holds one reader's gradient (the next one adds).
        let mut written = vec![false; n + 1];
        written[n] = true;
        for (i, l) in self.layers.iter().enumerate().rev() {
            if !written[i + 1] {
                return Err(Error::config(format!(
                    "layer {i}'s output is read by no layer"
                )));
            }
            let (lower, upper) = g.dvals.split_at_mut(i);
            let dy = &upper[0];
            let value = |v: usize| if v == 0 { x } else { &ws.vals[v - 1] };
            let inp = value(l.input);
            if let Op::Add { other } = l.op {
                for v in [l.input, other] {
                    if v == 0 {
                        continue;
                    }
                    let keep = if written[v] { 1.0 } else { 0.0 };
                    let len = be.len(dy);
                    be.scale_add(len, 1.0, Some((dy, 0)), keep, &mut lower[v - 1], 0)?;
                    written[v] = true;
                }
                continue;
            }
            let v = l.input;
            let first = v == 0 || !written[v];
            {
                // Where this layer's input gradient goes: straight into d value, or into the
                // spare when another reader already wrote it (added below).
                let target: Option<&mut B::Buf<f32>> = if v == 0 {
                    None
                } else if first {
                    Some(&mut lower[v - 1])
                } else {
                    g.spare[v - 1].as_mut()
                };
                let need = |t| need_input(t, i, &l.op);
                match l.op {
                    Op::Conv { at, .. } => be.conv2d_backward(
                        &self.conv_geom(l, s, b),
                        inp,
                        params,
                        at,
                        dy,
                        target,
                        grads,
                    )?,
                    Op::Linear { fout, at } => {
                        let lg = LinearGeom {
                            students: s,
                            batch: b,
                            fin: elems(l.in_shape),
                            fout,
                        };
                        be.linear_backward(&lg, inp, params, at, dy, target, grads)?
                    }
                    Op::Norm { kind, at, .. } => be.norm_backward(
                        &self.norm_geom(l, kind, s, b),
                        inp,
                        params,
                        at,
                        &ws.stats[i],
                        dy,
                        need(target)?,
                        grads,
                    )?,
                    Op::Relu => be.relu_backward(&ws.vals[i], dy, need(target)?)?,
                    Op::Pool { .. } => {
                        be.pool_backward(&self.pool_geom(l, s, b), inp, dy, need(target)?)?
                    }
                    Op::Add { .. } => unreachable!("handled above"),
                }
            }
            if v > 0 {
                if !first {
                    let spare = g.spare[v - 1]
                        .as_ref()
                        .expect("a value read twice has a spare");
                    let len = be.len(spare);
                    be.scale_add(len, 1.0, Some((spare, 0)), 1.0, &mut lower[v - 1], 0)?;
                }
                written[v] = true;
            }
        }
        Ok(())
    }
}

/// The input-gradient buffer of layer i, which every layer but a conv or linear needs (none of
/// the networks puts a norm, ReLU or pool directly on the image).
fn need_input<'a, T>(t: Option<&'a mut T>, i: usize, op: &Op) -> Result<&'a mut T> {
    t.ok_or_else(|| {
        Error::config(format!(
            "layer {i} ({op:?}) cannot read the input image directly"
        ))
    })
}

fn no_grad() -> Error {
    Error::config("this workspace was built for evaluation only (with_grad = false); it has no backward scratch")
}
