//! One ConvNet block (conv 3×3 → norm → ReLU → 2×2 pool) for the kernel tests that compare a
//! CUDA block with the CPU (tests/cuda_eval.rs, cuda_bf16.rs, cuda_fused.rs,
//! cuda_block_backward.rs): reproducible uniform inputs, the block's parameters placed inside a
//! longer parameter row (so a kernel that ignores an offset reads the wrong numbers), its buffers
//! on any backend and one forward through `Backend::conv_norm_relu_pool_forward`; and a small
//! ConvNet's eval-mode logits. Tolerances stay in the tests that own them.

use ddr_fast::backend::{Backend, ConvGeom, Mode, NormGeom, NormKind, ParamAt};
use ddr_fast::model::ConvNet;

/// SplitMix64: reproducible inputs without a dependency.
pub struct Rng(pub u64);

impl Rng {
    pub fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        lo + (hi - lo) * ((z >> 40) as f32 / (1u64 << 24) as f32)
    }

    pub fn vec(&mut self, n: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..n).map(|_| self.uniform(lo, hi)).collect()
    }
}

pub fn max_abs(v: &[f32]) -> f32 {
    v.iter().fold(0f32, |m, x| m.max(x.abs()))
}

pub fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()))
}

/// Elements of the conv output of `cg`: (S, B, cout, oh, ow).
pub fn y_len(cg: &ConvGeom) -> usize {
    cg.students * cg.batch * cg.cout * cg.out_h() * cg.out_w()
}

/// Entries of every student's parameter row before (`lead`) and after (`tail`) the block's own,
/// which no kernel may read as the block's or write.
#[derive(Clone, Copy, Debug)]
pub struct RowPad {
    pub lead: usize,
    pub tail: usize,
}

/// The padding most block tests use.
pub const PAD_3_1: RowPad = RowPad { lead: 3, tail: 1 };

/// One block inside a parameter row, and its inputs.
#[derive(Clone)]
pub struct BlockCase {
    pub cg: ConvGeom,
    /// The norm over the conv output y (S, B, cout, oh, ow).
    pub ng: NormGeom,
    pub conv_at: ParamAt,
    pub norm_at: ParamAt,
    pub running_at: ParamAt,
    /// (S, B, cin, h, w), or one (B, cin, h, w) copy read by every student when `shared`.
    pub x: Vec<f32>,
    pub shared: bool,
    /// (S, P): `lead` values, conv weight (cout, cin, 3, 3) and bias (cout), norm γ and β (cout
    /// each), then `tail` values.
    pub params: Vec<f32>,
    /// (S, 2·cout): running mean, then running variance.
    pub running: Vec<f32>,
}

impl BlockCase {
    /// The block of `cg` with `kind` norm, drawn from `seed` in this order: parameters (weights
    /// uniform in PyTorch's fan-in bound, γ near 1, padding values likewise), running statistics
    /// (mean in [−0.2, 0.2), variance in [0.2, 1)), x uniform in [−1, 1).
    pub fn new(cg: ConvGeom, kind: NormKind, shared: bool, pad: RowPad, seed: u64) -> BlockCase {
        let mut r = Rng(seed);
        let mut c = BlockCase::params_only(cg, kind, pad, &mut r);
        let ch = cg.cout;
        c.running = r.vec(cg.students * 2 * ch, -0.2, 0.2);
        for s in 0..cg.students {
            for k in 0..ch {
                c.running[s * 2 * ch + ch + k] = r.uniform(0.2, 1.0); // a variance is positive
            }
        }
        c.shared = shared;
        let copies = if shared { 1 } else { cg.students };
        c.x = r.vec(copies * cg.batch * cg.cin * cg.h * cg.w, -1.0, 1.0);
        c
    }

    /// The layout and parameters alone, drawn from `r` (x and running left empty), for a test
    /// that draws its other inputs in its own order.
    pub fn params_only(cg: ConvGeom, kind: NormKind, pad: RowPad, r: &mut Rng) -> BlockCase {
        let (w_len, c) = (cg.cout * cg.cin * 9, cg.cout);
        let conv_at = ParamAt {
            weight: pad.lead,
            bias: pad.lead + w_len,
            row: pad.lead + w_len + 3 * c + pad.tail,
        };
        let norm_at = ParamAt {
            weight: conv_at.bias + c,
            bias: conv_at.bias + 2 * c,
            row: conv_at.row,
        };
        let bound = 1.0 / ((cg.cin * 9) as f32).sqrt();
        let mut params = r.vec(cg.students * conv_at.row, -bound, bound);
        for s in 0..cg.students {
            for ch in 0..c {
                params[s * conv_at.row + norm_at.weight + ch] += 1.0; // γ near 1
            }
        }
        BlockCase {
            ng: NormGeom {
                students: cg.students,
                batch: cg.batch,
                c,
                h: cg.out_h(),
                w: cg.out_w(),
                kind,
                eps: 1e-5,
                momentum: 0.1,
            },
            cg,
            conv_at,
            norm_at,
            running_at: ParamAt {
                weight: 0,
                bias: c,
                row: 2 * c,
            },
            x: Vec::new(),
            shared: false,
            params,
            running: Vec::new(),
        }
    }

    /// Elements of the conv output y: (S, B, cout, oh, ow).
    pub fn y_len(&self) -> usize {
        y_len(&self.cg)
    }

    /// Elements of the norm statistics: (S, B, cout, 2) per instance, (S, cout, 2) per batch.
    pub fn stats_len(&self) -> usize {
        let ng = &self.ng;
        match ng.kind {
            NormKind::Instance => ng.students * ng.batch * ng.c * 2,
            NormKind::Batch => ng.students * ng.c * 2,
            NormKind::None => 0,
        }
    }

    /// Elements of the pooled output: (S, B, cout, oh/2, ow/2).
    pub fn pooled_len(&self) -> usize {
        let ng = &self.ng;
        ng.students * ng.batch * ng.c * (ng.h / 2) * (ng.w / 2)
    }

    /// (y, stats, out, running) of one `conv_norm_relu_pool_forward` on `b` with a y buffer of
    /// `y_len` elements (0 lets an eval kernel keep y on chip).
    pub fn forward<B: Backend>(&self, b: &B, mode: Mode, y_len: usize) -> [Vec<f32>; 4] {
        let mut bufs = BlockBufs::new(b, self, y_len);
        bufs.forward(b, self, mode).unwrap();
        bufs.download(b)
    }
}

/// A block's buffers on one backend, for tests that run the ops themselves.
pub struct BlockBufs<B: Backend> {
    /// (S, B, cin, h, w), or (B, cin, h, w) when shared.
    pub x: B::Buf<f32>,
    /// (S, P).
    pub params: B::Buf<f32>,
    /// (S, 2·cout).
    pub running: B::Buf<f32>,
    /// (S, B, cout, oh, ow), or as many elements as asked for.
    pub y: B::Buf<f32>,
    /// (S, B, cout, 2) or (S, cout, 2); empty without a norm.
    pub stats: B::Buf<f32>,
    /// `conv_norm_scratch_len` elements.
    pub scratch: B::Buf<f32>,
    /// (S, B, cout, oh/2, ow/2).
    pub out: B::Buf<f32>,
}

impl<B: Backend> BlockBufs<B> {
    /// `c`'s inputs uploaded to `b`, its outputs allocated, y with `y_len` elements.
    pub fn new(b: &B, c: &BlockCase, y_len: usize) -> BlockBufs<B> {
        BlockBufs {
            x: b.upload(&c.x).unwrap(),
            params: b.upload(&c.params).unwrap(),
            running: b.upload(&c.running).unwrap(),
            y: b.alloc::<f32>(y_len).unwrap(),
            stats: b.alloc::<f32>(c.stats_len()).unwrap(),
            scratch: b.alloc::<f32>(b.conv_norm_scratch_len(&c.cg)).unwrap(),
            out: b.alloc::<f32>(c.pooled_len()).unwrap(),
        }
    }

    /// The block forward `conv_norm_relu_pool_forward` of `c` in `mode` on these buffers.
    pub fn forward(&mut self, b: &B, c: &BlockCase, mode: Mode) -> ddr_fast::Result<()> {
        b.conv_norm_relu_pool_forward(
            &c.cg,
            &c.ng,
            mode,
            &self.x,
            c.shared,
            &self.params,
            c.conv_at,
            c.norm_at,
            &mut self.running,
            c.running_at,
            &mut self.y,
            &mut self.stats,
            &mut self.scratch,
            &mut self.out,
        )
    }

    /// (y, stats, out, running) downloaded.
    pub fn download(&self, b: &B) -> [Vec<f32>; 4] {
        [&self.y, &self.stats, &self.out, &self.running].map(|v| b.download(v).unwrap())
    }
}

/// The logits (S, B, classes) of `net`'s eval-mode forward on `be`, as a test pass runs it (an
/// eval-only workspace): x is one shared chunk (B, C, H, W) read by every student when `shared`,
/// else (S, B, C, H, W); params (S, P); running (S, R), empty for a net without buffers.
#[allow(clippy::too_many_arguments)] // the workspace's own arguments, each a plain value
pub fn convnet_eval_forward<B: Backend>(
    be: &B,
    net: &ConvNet,
    s: usize,
    b: usize,
    x: &[f32],
    shared: bool,
    params: &[f32],
    running: &[f32],
) -> Vec<f32> {
    let mut ws = net.workspace(be, s, b, false).unwrap();
    let xb = be.upload(x).unwrap();
    let pb = be.upload(params).unwrap();
    let mut rb = be.upload(running).unwrap();
    if shared {
        net.forward_shared_input(be, &mut ws, &xb, &pb, &mut rb, Mode::Eval)
    } else {
        net.forward(be, &mut ws, &xb, &pb, &mut rb, Mode::Eval)
    }
    .unwrap();
    be.download(ws.logits()).unwrap()
}
