//! bf16 activations between eval blocks (issue 8; contracts.md "Interface between act16 and
//! plane16"): the bf16 direct eval kernel (cuda/conv_eval.cu) stores its pooled output as bf16
//! when the launcher gets an `out` of ⌈n/2⌉ f32 slots; the launcher infers that format from the
//! length and refuses it wherever no kernel writes or reads bf16; the eval workspace uses it only
//! when the next block's kernel reads bf16 (`reads_bf16_x`: the bf16 plane kernel of blocks 2–3),
//! and a whole bf16 test forward is then bit for bit the one with fp32 activations.
//! Runs on a real GPU when one can be opened, else on the emulated device.
//!
//! `cargo test --release --test cuda_act_bf16`

mod common;

use common::bf16::{pack_bf16, unpack_bf16};
use common::block::{BlockBufs, BlockCase, Rng, RowPad};
use ddr_fast::backend::cuda::{
    act_bf16_between, eval_kernel_for, reads_bf16_x, CudaBackend, TestPrecision, H100_SMEM_OPTIN,
};
use ddr_fast::backend::{Backend, ConvGeom, Mode, NormKind};
use ddr_fast::model::{ConvNet, ConvNetSpec};
use ddr_fast::ops::precision::round_bf16;

fn cuda(p: TestPrecision) -> CudaBackend {
    common::cuda_under_test("cuda_act_bf16").with_test_precision(p)
}

/// No entries around the block in its parameter row: its weights start the row, as a ConvNet's
/// first block's do.
const NO_PAD: RowPad = RowPad { lead: 0, tail: 0 };

/// The block of `cg` with `kind` norm alone in its parameter row, drawn from `seed`.
fn case(cg: ConvGeom, kind: NormKind, shared: bool, seed: u64) -> BlockCase {
    BlockCase::new(cg, kind, shared, NO_PAD, seed)
}

/// One eval-mode block forward with a y of `y_len` elements (0: the eval kernel), an x of the
/// first `x_len` of `c.x` (half its length: x given as bf16) and an out of `out_len` elements:
/// (stats, out) or the error's message.
fn run(
    be: &CudaBackend,
    c: &BlockCase,
    y_len: usize,
    x_len: usize,
    out_len: usize,
) -> Result<[Vec<f32>; 2], String> {
    let mut bufs = BlockBufs::new(be, c, y_len);
    bufs.x = be.upload(&c.x[..x_len]).unwrap();
    bufs.out = be.alloc::<f32>(out_len).unwrap();
    bufs.forward(be, c, Mode::Eval).map_err(|e| e.to_string())?;
    let [_, stats, out, _] = bufs.download(be);
    Ok([stats, out])
}

/// The first index where two vectors differ bit for bit.
fn first_bit_difference(a: &[f32], b: &[f32]) -> Option<(usize, f32, f32)> {
    a.iter()
        .zip(b)
        .enumerate()
        .find(|(_, (x, y))| x.to_bits() != y.to_bits())
        .map(|(i, (x, y))| (i, *x, *y))
}

/// The bf16 direct and plane kernels with a ⌈n/2⌉-slot `out` store exactly round_bf16 of what they store
/// with an n-element `out` (same inputs, same launch otherwise), bit for bit, for every norm
/// kind, with and without the wide shared-input first layer, and with an odd n (30×30 planes
/// pool to 15×15, 3 channels, one image: the last slot's high half is not a value); the
/// statistics are unchanged. The rounding must matter somewhere (else the check proves nothing).
#[test]
fn bf16_out_is_the_fp32_out_rounded_to_nearest_even() {
    let be = cuda(TestPrecision::Bf16);
    let wide = ConvGeom {
        students: 2,
        batch: 2,
        cin: 3,
        cout: 40,
        h: 32,
        w: 32,
        pad: 1,
    };
    let odd = ConvGeom {
        students: 1,
        batch: 1,
        cin: 2,
        cout: 3,
        h: 30,
        w: 30,
        pad: 1,
    };
    // The plane kernel (cuda/conv_eval_plane.cu) writes bf16 between blocks 2 and 3: a 16×16
    // block (one image per 256-row block) and 8×8 (four images per block, batch 5: one block
    // holds a single real image).
    let plane16 = ConvGeom {
        students: 2,
        batch: 3,
        cin: 32,
        cout: 128,
        h: 16,
        w: 16,
        pad: 1,
    };
    let plane8 = ConvGeom {
        students: 1,
        batch: 5,
        cin: 16,
        cout: 40,
        h: 8,
        w: 8,
        pad: 1,
    };
    for (cg, shared) in [
        (wide, true),
        (wide, false),
        (odd, false),
        (plane16, false),
        (plane8, false),
    ] {
        for kind in [NormKind::Instance, NormKind::Batch, NormKind::None] {
            let c = case(cg, kind, shared, 11);
            let x_len = c.x.len();
            let n = c.pooled_len();
            let tag = format!("{kind:?} shared={shared} {cg:?} (n = {n})");
            let [st32, out32] = run(&be, &c, 0, x_len, n).unwrap();
            let [st16, out16] = run(&be, &c, 0, x_len, n.div_ceil(2)).unwrap();
            let got = unpack_bf16(&out16, n);
            let want: Vec<f32> = out32.iter().map(|&v| round_bf16(v)).collect();
            assert_eq!(first_bit_difference(&got, &want), None, "bf16 out {tag}");
            // The helper packs as the kernel stores (full pairs; an odd n's last high half is
            // no value): bits, since a pair of bf16 may read as an f32 NaN.
            let bits = |v: &[f32]| v[..n / 2].iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&out16), bits(&pack_bf16(&out32)), "slots {tag}");
            assert_eq!(first_bit_difference(&st16, &st32), None, "stats {tag}");
            assert!(
                out32.iter().any(|&v| round_bf16(v) != v),
                "{tag}: no value needed rounding"
            );
        }
    }
}

/// The launcher infers the storage from `out`'s length: n fp32, ⌈n/2⌉ bf16 (bf16 kernel only),
/// anything else the usual length error; the TF32 direct kernel refuses a bf16 `out`; the
/// stored-y forward refuses a half-length `out`, and the direct kernel and the stored-y forward
/// refuse a half-length x (only the plane kernel reads bf16 x).
#[test]
fn the_launcher_infers_the_format_and_refuses_it_elsewhere() {
    let cg = ConvGeom {
        students: 2,
        batch: 1,
        cin: 3,
        cout: 16,
        h: 32,
        w: 32,
        pad: 1,
    };
    let c = case(cg, NormKind::Instance, false, 5);
    let (x_len, n, y_len) = (c.x.len(), c.pooled_len(), c.y_len());
    let bf16 = cuda(TestPrecision::Bf16);
    for bad in [n / 2 - 1, n / 2 + 1, n - 1, n + 1, 0] {
        let e = run(&bf16, &c, 0, x_len, bad).unwrap_err();
        assert!(
            e.contains(&format!("`out` has {bad} elements, expected {n}")),
            "{bad}: {e}"
        );
    }
    let e = run(&cuda(TestPrecision::Tf32), &c, 0, x_len, n / 2).unwrap_err();
    assert!(
        e.contains("conv3x3_eval_direct_tf32 writes fp32 only") && e.contains("expected"),
        "{e}"
    );
    // The stored-y fused forward (a y buffer given) writes fp32 only.
    let e = run(&bf16, &c, y_len, x_len, n / 2).unwrap_err();
    assert!(
        e.contains(&format!("`out` has {} elements, expected {n}", n / 2)),
        "{e}"
    );
    // A bf16 x (half length) is refused by the eval kernel and the stored-y forward alike.
    for y in [0, y_len] {
        let e = run(&bf16, &c, y, x_len / 2, n).unwrap_err();
        assert!(
            e.contains(&format!("`x` has {} elements, expected {x_len}", x_len / 2)),
            "y = {y}: {e}"
        );
    }
    assert!(run(&bf16, &c, y_len, x_len, n).is_ok());
}

/// The bf16 plane kernel reads bf16 x, so in bf16 test passes a ConvNet-3 eval workspace stores
/// blocks 1 and 2's pooled outputs as bf16 (⌈n/2⌉ slots) and block 3's (the linear head's input)
/// as fp32; TF32 and 3xTF32 test passes keep every activation fp32 (no reader). The rule itself:
/// only a bf16 writer followed by a bf16 reader.
#[test]
fn eval_workspace_stores_bf16_between_bf16_eval_blocks_only() {
    let spec = ConvNetSpec::from_name("ConvNet-3", 3, 32, 10).unwrap();
    let net = ConvNet::new(spec);
    let (s, b) = (2, 2);
    for p in [
        TestPrecision::Bf16,
        TestPrecision::Tf32,
        TestPrecision::Tf32x3,
    ] {
        let be = cuda(p);
        for d in 0..2 {
            let (cg, ng) = (net.conv_geom(d, s, b), net.norm_geom(d, s, b));
            let (next_cg, next_ng) = (net.conv_geom(d + 1, s, b), net.norm_geom(d + 1, s, b));
            assert_eq!(
                be.eval_out_bf16(&cg, &ng, &next_cg, &next_ng),
                p == TestPrecision::Bf16,
                "{p:?} block {d}"
            );
        }
        let ws = net.workspace(&be, s, b, false).unwrap();
        for d in 0..3 {
            let side = 32 >> (d + 1);
            let n = s * b * 128 * side * side;
            let bf16 = p == TestPrecision::Bf16 && d < 2;
            assert_eq!(ws.block_out_is_bf16(d), bf16, "{p:?} block {d}");
            let want = if bf16 { n.div_ceil(2) } else { n };
            assert_eq!(be.len(ws.block_out(d)), want, "{p:?} block {d}");
        }
    }
    let g = |d| net.norm_geom(d, s, b);
    let l1 = eval_kernel_for(TestPrecision::Bf16, &g(0), 3, H100_SMEM_OPTIN).unwrap();
    let l2 = eval_kernel_for(TestPrecision::Bf16, &g(1), 128, H100_SMEM_OPTIN).unwrap();
    assert_eq!(l1.name, "conv3x3_eval_direct_bf16");
    assert_eq!(l2.name, "conv3x3_eval_plane_bf16");
    assert!(!reads_bf16_x(l1.name) && reads_bf16_x(l2.name));
    assert!(!reads_bf16_x("conv3x3_forward_norm_bf16"));
    assert!(act_bf16_between(Some(&l1), Some(&l2)) && act_bf16_between(Some(&l2), Some(&l2)));
    assert!(!act_bf16_between(Some(&l1), Some(&l1)) && !act_bf16_between(Some(&l2), None));
    let tf32 = eval_kernel_for(TestPrecision::Tf32, &g(0), 3, H100_SMEM_OPTIN).unwrap();
    assert!(!act_bf16_between(Some(&tf32), Some(&l2)) && !act_bf16_between(None, Some(&l2)));
}

/// A whole bf16 test forward of ConvNet-3 (width 16, the workspace's bf16 activations between
/// blocks) gives bit for bit the head input and logits of the same forward run block by block
/// with fp32 activations: the plane kernel rounds an fp32 x to nearest even as it loads it, which
/// is what the producer stored (contracts: storing bf16 costs no accuracy at all).
#[test]
fn bf16_activations_change_no_bit_of_a_test_forward() {
    let spec = ConvNetSpec::from_name("ConvNet-3-W16", 3, 32, 10).unwrap();
    let net = ConvNet::new(spec);
    let be = cuda(TestPrecision::Bf16);
    let (s, b) = (2, 3);
    let params = be
        .upload(&Rng(7).vec(s * net.param_len(), -0.3, 0.3))
        .unwrap();
    let mut running = be.alloc::<f32>(s * net.buffer_len()).unwrap();
    let x = be.upload(&Rng(8).vec(b * 3 * 32 * 32, -1.0, 1.0)).unwrap();
    let mut ws = net.workspace(&be, s, b, false).unwrap();
    assert!(ws.block_out_is_bf16(0) && ws.block_out_is_bf16(1) && !ws.block_out_is_bf16(2));
    net.forward_shared_input(&be, &mut ws, &x, &params, &mut running, Mode::Eval)
        .unwrap();
    let chain_feat = be.download(ws.block_out(2)).unwrap();
    let chain_logits = be.download(ws.logits()).unwrap();

    // Block by block with fp32 activations (full-length buffers), the same kernels.
    let mut input = None;
    for d in 0..3 {
        let (cg, ng) = (net.conv_geom(d, s, b), net.norm_geom(d, s, b));
        let at = net.layout.blocks[d];
        let mut y = be.alloc::<f32>(be.conv_out_len_eval(&cg, &ng)).unwrap();
        let mut st = be.alloc::<f32>(s * b * ng.c * 2).unwrap();
        let mut scratch = be.alloc::<f32>(be.conv_norm_scratch_len(&cg)).unwrap();
        let n = s * b * ng.c * (ng.h / 2) * (ng.w / 2);
        let mut out = be.alloc::<f32>(n).unwrap();
        be.conv_norm_relu_pool_forward(
            &cg,
            &ng,
            Mode::Eval,
            input.as_ref().unwrap_or(&x),
            d == 0,
            &params,
            at.conv,
            at.norm,
            &mut running,
            at.running,
            &mut y,
            &mut st,
            &mut scratch,
            &mut out,
        )
        .unwrap();
        input = Some(out);
    }
    let f32_feat = be.download(input.as_ref().unwrap()).unwrap();
    assert_eq!(
        first_bit_difference(&chain_feat, &f32_feat),
        None,
        "head input"
    );
    let mut logits = be.alloc::<f32>(s * b * 10).unwrap();
    be.linear_forward(
        &net.linear_geom(s, b),
        input.as_ref().unwrap(),
        &params,
        net.layout.classifier,
        &mut logits,
    )
    .unwrap();
    let f32_logits = be.download(&logits).unwrap();
    assert_eq!(
        first_bit_difference(&chain_logits, &f32_logits),
        None,
        "logits"
    );
}

/// The host helpers: unpack(pack(v)) is v rounded to nearest even (ties to even, both
/// directions, an odd count), value 2j in the low half of slot j.
#[test]
fn pack_and_unpack_round_to_nearest_even() {
    let ulp = 2f32.powi(-7); // bf16's spacing at 1.0
    let v = [
        1.0 + ulp / 2.0,
        1.0 + 1.5 * ulp,
        -1.0 - 0.51 * ulp,
        3.0,
        0.1234,
    ];
    let slots = pack_bf16(&v);
    assert_eq!(slots.len(), 3);
    assert_eq!(slots[0].to_bits() & 0xffff, 1f32.to_bits() >> 16);
    assert_eq!(
        slots[2].to_bits() >> 16,
        0,
        "an odd count's last high half is empty"
    );
    let got = unpack_bf16(&slots, v.len());
    assert_eq!(got[..4], [1.0, 1.0 + 2.0 * ulp, -1.0 - ulp, 3.0]);
    assert_eq!(got[4], round_bf16(0.1234));
    assert_ne!(got[4], 0.1234);
}
