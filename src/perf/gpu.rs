//! The GPUs the performance model knows, as named figures with their sources, and the few
//! assumptions about how close hand-written kernels get to them (named, with the reason, and
//! replaced by calibration once a GPU run exists: see `super::calibrate`).

/// Tensor-core operand modes of the conv kernels (`ConvPrecision` in src/backend/cuda/mod.rs,
/// plus bf16 from branch `kernels`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TensorMode {
    /// 3 TF32 MMAs per product (head·head + head·tail + tail·head): near-fp32 accuracy.
    Tf32x3,
    Tf32,
    Bf16,
}

impl TensorMode {
    pub const ALL: [TensorMode; 3] = [TensorMode::Tf32x3, TensorMode::Tf32, TensorMode::Bf16];

    pub fn name(self) -> &'static str {
        match self {
            TensorMode::Tf32x3 => "3xTF32",
            TensorMode::Tf32 => "TF32",
            TensorMode::Bf16 => "bf16",
        }
    }

    /// Tensor-core MMAs per logical multiply-add.
    pub fn mma_per_mac(self) -> f64 {
        match self {
            TensorMode::Tf32x3 => 3.0,
            TensorMode::Tf32 | TensorMode::Bf16 => 1.0,
        }
    }

    /// Multiply-adds of one warp-level HMMA instruction in SASS: TF32 m16n8k8 (HMMA.1688, 1,024
    /// MACs), bf16 m16n8k16 (HMMA.16816, 2,048 MACs); tools/kernel_report.py's MMA_MACS table.
    pub fn macs_per_hmma(self) -> f64 {
        match self {
            TensorMode::Tf32x3 | TensorMode::Tf32 => 1024.0,
            TensorMode::Bf16 => 2048.0,
        }
    }
}

/// One GPU's figures. Dense peaks (no 2:4 sparsity), per second.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GpuSpec {
    pub name: &'static str,
    pub sms: u32,
    /// Dense TF32 tensor-core FLOP/s.
    pub tf32_flops: f64,
    /// Dense bf16 tensor-core FLOP/s (fp32 accumulate).
    pub bf16_flops: f64,
    /// FP32 FLOP/s on the CUDA cores (FMA = 2).
    pub fp32_flops: f64,
    /// HBM bytes/s.
    pub hbm_bytes: f64,
    pub source: &'static str,
}

/// NVIDIA H100 Tensor Core GPU datasheet (H100 SXM column): TF32 Tensor Core 989 TFLOPS,
/// BF16 1,979 TFLOPS, both marked "with sparsity" (dense = half: 494.7 and 989.4), FP32
/// 67 TFLOPS, GPU memory bandwidth 3.35 TB/s; 132 SMs (NVIDIA H100 Tensor Core GPU Architecture
/// whitepaper, "H100 SXM5").
pub const H100_SXM: GpuSpec = GpuSpec {
    name: "H100 SXM5 80GB",
    sms: 132,
    tf32_flops: 494.7e12,
    bf16_flops: 989.4e12,
    fp32_flops: 66.9e12,
    hbm_bytes: 3.35e12,
    source: "NVIDIA H100 datasheet (SXM): TF32 989 / BF16 1,979 TFLOPS with sparsity, dense half; FP32 67 TFLOPS; 3.35 TB/s; 132 SMs",
};

/// NVIDIA H100 datasheet (H100 PCIe column, the 114-SM card): TF32 756 / BF16 1,513 TFLOPS with
/// sparsity, FP32 51 TFLOPS, 2 TB/s.
pub const H100_PCIE: GpuSpec = GpuSpec {
    name: "H100 PCIe 80GB",
    sms: 114,
    tf32_flops: 378e12,
    bf16_flops: 756.5e12,
    fp32_flops: 51.2e12,
    hbm_bytes: 2.0e12,
    source: "NVIDIA H100 datasheet (PCIe): TF32 756 / BF16 1,513 TFLOPS with sparsity, dense half; FP32 51 TFLOPS; 2 TB/s; 114 SMs",
};

/// NVIDIA H200 Tensor Core GPU datasheet (H200 SXM): the H100 SXM's compute (TF32 989 / BF16
/// 1,979 TFLOPS with sparsity, FP32 67 TFLOPS) with 141 GB of HBM3e at 4.8 TB/s.
pub const H200_SXM: GpuSpec = GpuSpec {
    name: "H200 SXM 141GB",
    sms: 132,
    tf32_flops: 494.7e12,
    bf16_flops: 989.4e12,
    fp32_flops: 66.9e12,
    hbm_bytes: 4.8e12,
    source: "NVIDIA H200 datasheet (SXM): H100 SXM compute, 4.8 TB/s HBM3e; 132 SMs",
};

pub const GPUS: [GpuSpec; 3] = [H100_SXM, H200_SXM, H100_PCIE];

impl GpuSpec {
    /// Dense tensor-core FLOP/s of a mode (3xTF32 runs at the TF32 rate, on 3× the MMAs).
    pub fn tensor_flops(&self, m: TensorMode) -> f64 {
        match m {
            TensorMode::Tf32x3 | TensorMode::Tf32 => self.tf32_flops,
            TensorMode::Bf16 => self.bf16_flops,
        }
    }

    /// The SM clock the datasheet's tensor peak implies: Hopper's SM does 4,096 dense bf16
    /// FLOP per clock (2× A100's 1,024 FMA, whitepaper), 2,048 TF32; 989.4e12 / (132 · 4,096)
    /// = 1.83 GHz.
    pub fn clock_hz(&self) -> f64 {
        self.bf16_flops / (self.sms as f64 * HOPPER_BF16_FLOP_PER_CLK_SM)
    }

    /// L2 read bytes/s: [`L2_BYTES_PER_CLK`] at [`GpuSpec::clock_hz`] (H100 SXM: 9.4 TB/s).
    pub fn l2_bytes(&self) -> f64 {
        L2_BYTES_PER_CLK * self.clock_hz()
    }
}

/// Dense bf16 tensor FLOP per clock per Hopper SM (4 sub-partitions × 1,024).
pub const HOPPER_BF16_FLOP_PER_CLK_SM: f64 = 4096.0;
/// Warp instructions one SM issues per clock: 4 schedulers, one each (whitepaper).
pub const ISSUE_PER_CLK_SM: f64 = 4.0;

/// ASSUMPTION (uncalibrated): the fraction of the tensor/issue bound a main loop sustains once
/// pipeline fill, tile-edge waste, occupancy and the `mma.sync` path (the kernels use wmma/mma,
/// not Hopper's wgmma, which alone reaches the datasheet rate) are paid. 0.7 is what CUTLASS's
/// Ampere-style multistage kernels are commonly reported to reach on Hopper; replace with the
/// measured value (`calibrate`) when a GPU run exists.
pub const MAINLOOP_EFFICIENCY: f64 = 0.7;
/// ASSUMPTION: streaming kernels (norm, pool, optimizer, augmentation) reach 80 % of the HBM
/// datasheet bandwidth (STREAM-like copies on H100 reach ~ 90 %; these kernels also reduce).
pub const HBM_EFFICIENCY: f64 = 0.8;
/// L2 read bandwidth per clock, bytes: the NVIDIA A100 Tensor Core GPU Architecture whitepaper's
/// figure for A100 (5,120 bytes/clk, against V100's 2,048: the "2.3× the L2 read bandwidth" it
/// quotes at the two parts' clocks). NVIDIA publishes none for H100/H200; ASSUMPTION: at least
/// A100's per clock (Hopper's L2 is larger and no narrower), at the clock the tensor peak implies.
pub const L2_BYTES_PER_CLK: f64 = 5120.0;
/// ASSUMPTION: operand reads through L2 sustain the same fraction of peak as HBM streams.
pub const L2_EFFICIENCY: f64 = HBM_EFFICIENCY;
/// ASSUMPTION: the cost of one kernel launch on a stream (host enqueue ≈ 2–4 µs; the device-side
/// gap between back-to-back kernels ≈ 1 µs). A kernel shorter than this is launch-bound.
pub const LAUNCH_S: f64 = 3e-6;
/// ASSUMPTION: one blocking device→host copy of a few bytes (a test point's loss sums, stop
/// marks and correct counts, `predict::TEST_POINT_SYNCS`): synchronise + copy + driver round trip.
pub const SYNC_S: f64 = 15e-6;
/// The issue's target and CI's committed threshold (tools/kernel-report-thresholds.txt) for
/// other instructions per HMMA in a conv main loop, used when no kernel report is given.
pub const TARGET_OTHER_PER_HMMA: f64 = 4.0;

#[cfg(test)]
mod tests {
    use super::*;

    /// The datasheet figures are self-consistent: 1.83 GHz for the SXM parts, and TF32 is half
    /// of bf16 per clock on every part (the dense/sparse halving was applied once).
    #[test]
    fn datasheet_figures_are_consistent() {
        for g in GPUS {
            assert!(
                (g.bf16_flops / g.tf32_flops - 2.0).abs() < 1e-2,
                "{}",
                g.name
            );
            let f = g.clock_hz();
            assert!(f > 1.6e9 && f < 2.0e9, "{}: implied clock {f}", g.name);
        }
        assert!((H100_SXM.clock_hz() - 1.83e9).abs() < 0.01e9);
    }
}
