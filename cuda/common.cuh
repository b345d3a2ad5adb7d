// common.cuh: what every kernel file shares: the emulator switch, index types, and block-wide
// reductions. Kernels are `extern "C"`, named <op>_<pass>, and take one params struct by value
// that is declared identically in src/backend/cuda/params.rs (size asserts on both sides).
#pragma once

#ifndef DDR_HOST_EMU
#include <mma.h>
#endif

typedef unsigned long long u64;
typedef unsigned int u32;

// Threads per block of the simple kernels; a multiple of 32 (warp reductions, the emulator).
#define DDR_BLOCK 128

// Grid-stride loops everywhere: the launcher sizes the grid from the device's multiprocessor count,
// and every element index is 64-bit because S·B·C·H·W passes 2^31 for large cohorts.
__device__ __forceinline__ u64 grid_start() { return (u64)blockIdx.x * blockDim.x + threadIdx.x; }
__device__ __forceinline__ u64 grid_step() { return (u64)gridDim.x * blockDim.x; }

__device__ __forceinline__ u32 mulhi_u32(u32 a, u32 b) { return (u32)(((u64)a * b) >> 32); }

// x / d for x < 2³¹ by a multiply and a shift (the round-up method; CUTLASS's FastDivmod does the
// same): set up once per thread, used where a division would sit in an inner loop or a gather.
struct FastDiv {
  u32 d, mul, shift;
  __device__ __forceinline__ explicit FastDiv(u32 d_) : d(d_), mul(0), shift(0) {
    if (d > 1) {
      u32 l = 0;
      while ((1u << l) < d) ++l;  // ⌈log₂ d⌉
      mul = (u32)(((1ull << (31 + l)) + d - 1) / d);
      shift = l - 1;
    }
  }
  __device__ __forceinline__ u32 div(u32 x) const { return d == 1 ? x : mulhi_u32(x, mul) >> shift; }
};

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Sum of `v` over a block of DDR_BLOCK threads; every thread gets the total. `scratch` is a
// __shared__ float[DDR_BLOCK / 32] owned by the caller (one per reduction in flight).
__device__ __forceinline__ float block_sum(float v, float* scratch) {
  v = warp_sum(v);
  const u32 warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  float t = 0.0f;
  for (u32 w = 0; w < DDR_BLOCK / 32; ++w) t += scratch[w];
  __syncthreads();  // scratch may be reused right after
  return t;
}
