//! `ConvNet`: forward and hand-written backward of S ConvNet students over a flat (S, P) parameter
//! buffer, generic over the `Backend`. Forward keeps in a `Workspace` exactly what backward needs:
//! each block's conv output, its norm statistics and its pooled output.

use super::layout::ParamLayout;
use super::spec::{ConvNetSpec, BN_MOMENTUM, NORM_EPS};
use crate::backend::{Backend, ConvGeom, LinearGeom, LossKind, Mode, NormGeom};
use crate::error::{Error, Result};
use crate::ops::norm_relu_pool::stats_len;

/// A ConvNet architecture and its parameter layout (no weights: those live in (S, P) buffers).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConvNet {
    pub spec: ConvNetSpec,
    pub layout: ParamLayout,
}

/// Activations and gradient scratch for S students × B images. Rebuild it when S or B change.
pub struct Workspace<B: Backend> {
    pub students: usize,
    pub batch: usize,
    /// The network this workspace was sized for.
    net_spec: ConvNetSpec,
    /// Per block: conv output (S, B, W, h_d, h_d).
    conv_out: Vec<B::Buf<f32>>,
    /// Per block: saved norm statistics (layout `ops::norm_relu_pool::Saved`).
    stats: Vec<B::Buf<f32>>,
    /// Per block: the fused block forward's scratch, `Backend::conv_norm_scratch_len` elements
    /// (the CUDA backend's per-tile partial norm statistics; empty on the CPU).
    scratch: Vec<B::Buf<f32>>,
    /// Per block: pooled output (S, B, W, h_d/2, h_d/2); the last one is the (S, B, num_feat) features.
    /// Where `block_out_bf16[d]`, the n values are bf16 in ⌈n/2⌉ f32 slots (value i at byte 2·i).
    block_out: Vec<B::Buf<f32>>,
    /// Per block: its pooled output is stored as bf16 (`Backend::eval_out_bf16`; eval-only
    /// workspaces, never the last block, whose features feed the fp32 linear head).
    block_out_bf16: Vec<bool>,
    /// (S, B, K)
    logits: B::Buf<f32>,
    /// Backward scratch, absent in an evaluation-only workspace.
    grad: Option<GradScratch<B>>,
}

struct GradScratch<B: Backend> {
    /// (S)
    loss: B::Buf<f32>,
    /// (S, B, K)
    dlogits: B::Buf<f32>,
    /// Per block: d loss / d block output, shaped like `block_out`.
    d_block_out: Vec<B::Buf<f32>>,
    /// Per block: d loss / d conv output, shaped like `conv_out`.
    d_conv_out: Vec<B::Buf<f32>>,
}

impl<B: Backend> Workspace<B> {
    /// Per-block pooled outputs (S, B, W, s, s), s = conv_hw / 2^(d+1); block d is `act.block{d+1}`.
    /// fp32, except where [`Workspace::block_out_is_bf16`]: then packed bf16 (⌈n/2⌉ slots).
    pub fn block_out(&self, d: usize) -> &B::Buf<f32> {
        &self.block_out[d]
    }
    /// Whether block d's pooled output is stored as bf16 (see [`Workspace::block_out`]).
    pub fn block_out_is_bf16(&self, d: usize) -> bool {
        self.block_out_bf16[d]
    }
    /// (S, B, K) logits of the last forward.
    pub fn logits(&self) -> &B::Buf<f32> {
        &self.logits
    }
    /// (S) per-student loss of the last `ConvNet::loss` call.
    pub fn loss(&self) -> Option<&B::Buf<f32>> {
        self.grad.as_ref().map(|g| &g.loss)
    }
    /// (S, B, K) d loss / d logits of the last `ConvNet::loss` call.
    pub fn dlogits(&self) -> Option<&B::Buf<f32>> {
        self.grad.as_ref().map(|g| &g.dlogits)
    }
}

impl ConvNet {
    pub fn new(spec: ConvNetSpec) -> ConvNet {
        ConvNet {
            layout: ParamLayout::new(&spec),
            spec,
        }
    }

    /// P: parameters per student.
    pub fn param_len(&self) -> usize {
        self.layout.len
    }

    /// R: batch-norm buffer elements per student (0 without batch norm).
    pub fn buffer_len(&self) -> usize {
        self.layout.buffer_len
    }

    pub fn conv_geom(&self, d: usize, students: usize, batch: usize) -> ConvGeom {
        let hw = self.spec.block_in_hw(d);
        ConvGeom {
            students,
            batch,
            cin: self.spec.block_cin(d),
            cout: self.spec.width,
            h: hw,
            w: hw,
            pad: self.spec.pad(d),
        }
    }

    pub fn norm_geom(&self, d: usize, students: usize, batch: usize) -> NormGeom {
        let hw = self.spec.block_conv_hw(d);
        NormGeom {
            students,
            batch,
            c: self.spec.width,
            h: hw,
            w: hw,
            kind: self.spec.norm,
            eps: NORM_EPS,
            momentum: BN_MOMENTUM,
        }
    }

    pub fn linear_geom(&self, students: usize, batch: usize) -> LinearGeom {
        LinearGeom {
            students,
            batch,
            fin: self.spec.num_feat(),
            fout: self.spec.classes,
        }
    }

    /// Allocates a workspace; `with_grad` adds the backward scratch (training), without it the
    /// workspace only serves eval-mode forwards.
    pub fn workspace<B: Backend>(
        &self,
        be: &B,
        students: usize,
        batch: usize,
        with_grad: bool,
    ) -> Result<Workspace<B>> {
        let w = self.spec.width;
        let (mut conv_out, mut stats, mut block_out) = (Vec::new(), Vec::new(), Vec::new());
        let (mut scratch, mut block_out_bf16) = (Vec::new(), Vec::new());
        let depth = self.spec.depth;
        for d in 0..depth {
            let hw = self.spec.block_conv_hw(d);
            // An eval-only workspace asks the backend: its eval kernel may keep y on chip.
            let y_len = if with_grad {
                students * batch * w * hw * hw
            } else {
                be.conv_out_len_eval(
                    &self.conv_geom(d, students, batch),
                    &self.norm_geom(d, students, batch),
                )
            };
            conv_out.push(be.alloc(y_len)?);
            stats.push(be.alloc(stats_len(&self.norm_geom(d, students, batch)))?);
            scratch.push(be.alloc(be.conv_norm_scratch_len(&self.conv_geom(d, students, batch)))?);
            // An eval-only workspace asks again: may this block hand the next one bf16? Then
            // its n pooled values take ⌈n/2⌉ slots (half the bytes written and read).
            let bf16 = !with_grad
                && d + 1 < depth
                && be.eval_out_bf16(
                    &self.conv_geom(d, students, batch),
                    &self.norm_geom(d, students, batch),
                    &self.conv_geom(d + 1, students, batch),
                    &self.norm_geom(d + 1, students, batch),
                );
            let n_out = students * batch * w * (hw / 2) * (hw / 2);
            block_out.push(be.alloc(if bf16 { n_out.div_ceil(2) } else { n_out })?);
            block_out_bf16.push(bf16);
        }
        let logits_len = students * batch * self.spec.classes;
        let grad = if with_grad {
            let mut d_conv_out = Vec::new();
            let mut d_block_out = Vec::new();
            for d in 0..self.spec.depth {
                d_conv_out.push(be.alloc(be.len(&conv_out[d]))?);
                d_block_out.push(be.alloc(be.len(&block_out[d]))?);
            }
            Some(GradScratch {
                loss: be.alloc(students)?,
                dlogits: be.alloc(logits_len)?,
                d_block_out,
                d_conv_out,
            })
        } else {
            None
        };
        Ok(Workspace {
            net_spec: self.spec,
            students,
            batch,
            conv_out,
            stats,
            scratch,
            block_out,
            block_out_bf16,
            logits: be.alloc(logits_len)?,
            grad,
        })
    }

    /// A workspace made by another network would index the wrong buffers; refuse it.
    fn check_workspace<B: Backend>(&self, ws: &Workspace<B>) -> Result<()> {
        if ws.conv_out.len() != self.spec.depth || ws.net_spec != self.spec {
            return Err(Error::config(format!(
                "workspace was built for {:?}, not for this network {:?}",
                ws.net_spec, self.spec
            )));
        }
        Ok(())
    }

    /// Forward of S students on their own batches. x (S, B, C, H, W), params (S, P), running (S, R)
    /// (batch norm: updated in train mode, read in eval mode; otherwise unused and may be empty).
    /// The logits land in `ws.logits()`.
    pub fn forward<B: Backend>(
        &self,
        be: &B,
        ws: &mut Workspace<B>,
        x: &B::Buf<f32>,
        params: &B::Buf<f32>,
        running: &mut B::Buf<f32>,
        mode: Mode,
    ) -> Result<()> {
        self.forward_blocks(be, ws, x, false, params, running, mode)
    }

    /// [`ConvNet::forward`] of S students on the same images: x (B, C, H, W) is one copy read by
    /// every student (a test pass's chunk; the CUDA backend then reads it once for all S instead
    /// of S gathered copies). The logits land in `ws.logits()`, (S, B, K).
    pub fn forward_shared_input<B: Backend>(
        &self,
        be: &B,
        ws: &mut Workspace<B>,
        x: &B::Buf<f32>,
        params: &B::Buf<f32>,
        running: &mut B::Buf<f32>,
        mode: Mode,
    ) -> Result<()> {
        self.forward_blocks(be, ws, x, true, params, running, mode)
    }

    #[allow(clippy::too_many_arguments)]
    fn forward_blocks<B: Backend>(
        &self,
        be: &B,
        ws: &mut Workspace<B>,
        x: &B::Buf<f32>,
        x_shared: bool,
        params: &B::Buf<f32>,
        running: &mut B::Buf<f32>,
        mode: Mode,
    ) -> Result<()> {
        self.check_workspace(ws)?;
        let (s, b) = (ws.students, ws.batch);
        for d in 0..self.spec.depth {
            let at = self.layout.blocks[d];
            // Block d reads block d − 1's pooled output and writes its own.
            let (lower, upper) = ws.block_out.split_at_mut(d);
            let input = if d == 0 { x } else { &lower[d - 1] };
            be.conv_norm_relu_pool_forward(
                &self.conv_geom(d, s, b),
                &self.norm_geom(d, s, b),
                mode,
                input,
                x_shared && d == 0,
                params,
                at.conv,
                at.norm,
                running,
                at.running,
                &mut ws.conv_out[d],
                &mut ws.stats[d],
                &mut ws.scratch[d],
                &mut upper[0],
            )?;
        }
        let feat = &ws.block_out[self.spec.depth - 1];
        be.linear_forward(
            &self.linear_geom(s, b),
            feat,
            params,
            self.layout.classifier,
            &mut ws.logits,
        )
    }

    /// Per-student loss and d loss / d logits of the last forward's logits.
    /// labels (S, B), soft (S, B, K) for the soft losses.
    pub fn loss<B: Backend>(
        &self,
        be: &B,
        ws: &mut Workspace<B>,
        kind: LossKind,
        labels: &B::Buf<u32>,
        soft: Option<&B::Buf<f32>>,
    ) -> Result<()> {
        let g = ws.grad.as_mut().ok_or_else(no_grad)?;
        be.loss(
            kind,
            ws.students,
            ws.batch,
            self.spec.classes,
            &ws.logits,
            labels,
            soft,
            &mut g.loss,
            &mut g.dlogits,
        )
    }

    /// Backward of the last train-mode forward from the d loss / d logits in the workspace (set by
    /// [`ConvNet::loss`]), in reverse order of forward. Overwrites every element of grads (S, P).
    /// x (S, B, C, H, W) and params (S, P) must be the ones forward saw.
    pub fn backward<B: Backend>(
        &self,
        be: &B,
        ws: &mut Workspace<B>,
        x: &B::Buf<f32>,
        params: &B::Buf<f32>,
        grads: &mut B::Buf<f32>,
    ) -> Result<()> {
        self.check_workspace(ws)?;
        let (s, b, depth) = (ws.students, ws.batch, self.spec.depth);
        let g = ws.grad.as_mut().ok_or_else(no_grad)?;
        be.linear_backward(
            &self.linear_geom(s, b),
            &ws.block_out[depth - 1],
            params,
            self.layout.classifier,
            &g.dlogits,
            Some(&mut g.d_block_out[depth - 1]),
            grads,
        )?;
        for d in (0..depth).rev() {
            let at = self.layout.blocks[d];
            // d_block_out[d] is this block's pooled gradient; d_block_out[d − 1] receives dx.
            let (lower, upper) = g.d_block_out.split_at_mut(d);
            let (input, dx) = if d == 0 {
                (x, None)
            } else {
                (&ws.block_out[d - 1], Some(&mut lower[d - 1]))
            };
            be.conv_norm_relu_pool_backward(
                &self.conv_geom(d, s, b),
                &self.norm_geom(d, s, b),
                input,
                params,
                at.conv,
                at.norm,
                &ws.conv_out[d],
                &ws.stats[d],
                &upper[0],
                &mut g.d_conv_out[d],
                dx,
                grads,
            )?;
        }
        Ok(())
    }
}

fn no_grad() -> Error {
    Error::config("this workspace was built for evaluation only (with_grad = false); it has no backward scratch")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cpu::CpuBackend;

    /// A shared-input forward equals the ordinary forward on S copies of the images, bit for bit.
    #[test]
    fn shared_input_forward_is_the_forward_on_copies() {
        let be = CpuBackend::new();
        let spec = ConvNetSpec::from_name("ConvNet-2-W4", 3, 8, 3).unwrap();
        let net = ConvNet::new(spec);
        let (s, b) = (3, 2);
        let one: Vec<f32> = (0..b * 3 * 8 * 8)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 40.0)
            .collect();
        let copies: Vec<f32> = (0..s).flat_map(|_| one.iter().copied()).collect(); // (S, B, 3, 8, 8)
        let params: Vec<f32> = (0..s * net.param_len())
            .map(|i| ((i * 13 % 29) as f32 - 14.0) / 30.0)
            .collect();
        let mut ws = net.workspace(&be, s, b, false).unwrap();
        net.forward(&be, &mut ws, &copies, &params, &mut vec![], Mode::Eval)
            .unwrap();
        let want = ws.logits().clone();
        net.forward_shared_input(&be, &mut ws, &one, &params, &mut vec![], Mode::Eval)
            .unwrap();
        assert_eq!(ws.logits(), &want);
    }

    /// The CPU backend keeps the trait's default: no block hands the next one bf16, so every
    /// eval-only workspace buffer is fp32 at its full length.
    #[test]
    fn cpu_eval_workspace_stays_fp32() {
        let be = CpuBackend::new().with_test_precision(crate::ops::precision::GemmPrecision::Bf16);
        let spec = ConvNetSpec::from_name("ConvNet-3", 3, 32, 10).unwrap();
        let net = ConvNet::new(spec);
        let (s, b) = (2, 3);
        for d in 0..2 {
            let (cg, ng) = (net.conv_geom(d, s, b), net.norm_geom(d, s, b));
            let (next_cg, next_ng) = (net.conv_geom(d + 1, s, b), net.norm_geom(d + 1, s, b));
            assert!(!be.eval_out_bf16(&cg, &ng, &next_cg, &next_ng), "block {d}");
        }
        let ws = net.workspace(&be, s, b, false).unwrap();
        for d in 0..3 {
            let side = 32 >> (d + 1);
            assert!(!ws.block_out_is_bf16(d));
            assert_eq!(
                ws.block_out(d).len(),
                s * b * 128 * side * side,
                "block {d}"
            );
        }
    }

    /// Misused workspaces are errors, not panics or silent garbage.
    #[test]
    fn foreign_and_eval_only_workspaces_are_refused() {
        let be = CpuBackend::new();
        let spec = ConvNetSpec::from_name("ConvNet-2-W4", 3, 8, 3).unwrap();
        let (two, three) = (
            ConvNet::new(spec),
            ConvNet::new(ConvNetSpec { depth: 3, ..spec }),
        );
        let x = vec![0f32; 2 * 3 * 8 * 8]; // (1, 2, 3, 8, 8)
        let params = vec![0.1f32; three.param_len()];
        let mut ws = two.workspace(&be, 1, 2, false).unwrap();
        assert!(three
            .forward(&be, &mut ws, &x, &params, &mut vec![], Mode::Train)
            .is_err());
        let params = vec![0.1f32; two.param_len()];
        two.forward(&be, &mut ws, &x, &params, &mut vec![], Mode::Eval)
            .unwrap();
        let mut grads = vec![0f32; two.param_len()];
        assert!(two.backward(&be, &mut ws, &x, &params, &mut grads).is_err());
    }
}
