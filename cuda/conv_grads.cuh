// conv_grads.cuh: what the gradient passes of conv.cu (3×3) and conv2d.cu (k×k) share, written
// once: the divisor of their weight gradients' k rows, the clearing of the weight-gradient slots
// the split-K atomics add into, and the bias gradient. Each file keeps its own extern "C" kernels
// (their names and parameter structs are the launchers' interface) as one-line calls to these.
#pragma once
#include "common.cuh"

// x / d for x < 2³¹, d ≥ 1: ⌊2x·mul / 2³²⌋ >> l with l = ⌈log₂ d⌉ and mul = ⌈2^(31 + l) / d⌉
// (< 2³² for every d; exact for x < 2³¹ by Granlund and Montgomery's round-up method). FastDiv's
// d = 1 special case costs a compare and a select per division; this has none, which matters
// where the divisions sit inside the K loop (the weight gradients' k rows).
struct Div31 {
  u32 mul, l;
  __device__ __forceinline__ explicit Div31(u32 d) : mul(0), l(0) {
    while ((1u << l) < d) ++l;
    mul = (u32)(((1ull << (31 + l)) + d - 1) / d);
  }
  __device__ __forceinline__ u32 div(u32 x) const { return mulhi_u32(2 * x, mul) >> l; }
};

// Zeroes each student's weight-gradient slot: `slot` floats at grads[s · param_row + w_off] for
// s < students, grid-stride over all of them.
__device__ __forceinline__ void conv_clear_weight_grads(float* grads, u64 param_row, u64 w_off, u64 slot,
                                                        u32 students) {
  const u64 n = (u64)students * slot;
  for (u64 i = grid_start(); i < n; i += grid_step()) grads[(i / slot) * param_row + w_off + i % slot] = 0.0f;
}

// db[co] = Σ_{b,oy,ox} dy[s,b,co,oy,ox] in fp32 into grads[s · param_row + b_off + co]; blocks
// (DDR_BLOCK threads) loop over the S·cout (s, co) pairs. dy is (S, B, cout, ohw).
__device__ __forceinline__ void conv_bias_grad(const float* dy, float* grads, u64 param_row, u64 b_off,
                                               u32 students, u32 batch, u32 cout, u64 ohw) {
  __shared__ float scratch[DDR_BLOCK / 32];
  const u64 pairs = (u64)students * cout;
  for (u64 g = blockIdx.x; g < pairs; g += gridDim.x) {
    const u64 s = g / cout, co = g % cout;
    float acc = 0.0f;
    for (u32 b = 0; b < batch; ++b) {
      const float* dys = dy + ((s * batch + b) * cout + co) * ohw;
      for (u64 i = threadIdx.x; i < ohw; i += blockDim.x) acc += dys[i];
    }
    acc = block_sum(acc, scratch);
    if (threadIdx.x == 0) grads[s * param_row + b_off + co] = acc;
  }
}
