// mma_tf32.cuh: one warp's m16n8k8 TF32 tensor-core step (mma.sync) with a whole warp tile's
// fragments loaded from "pair-row" shared-memory tiles by 128-bit shared loads, for conv_gemm.cuh. Used
// instead of nvcuda::wmma because wmma's TF32 fragment loads compile to generic (not shared) loads
// with a 64-bit address computation each, and its m16n16k8 steps to the half-size m16n8k4
// instructions: both showed in the kernel report (tools/kernel-report.sh) as the largest part of
// the main loop.
//
// Shared layout ("pair rows"): an 8-deep k tile is stored as 4 rows, row k % 4 holding k and
// k + 4 interleaved with x (m for A, n for B), so that each lane's fragment registers are four
// consecutive floats, one 128-bit shared load straight into the mma operand registers:
//   A: a = A[g][t], A[g+8][t], A[g][t+4], A[g+8][t+4]  → chunk (m / 16)·8 + m % 8 of row t holds
//      A[m][t], A[m+8][t], A[m][t+4], A[m+8][t+4] for m % 16 < 8: a_pos(m, k / 4)
//   B: b = B[t][g], B[t+4][g] for fragments j, j + 1 → chunk (n / 16)·8 + n % 8 of row t holds
//      B[t][n], B[t+4][n], B[t][n+8], B[t+4][n+8] for n % 16 < 8: b_pos(n, k / 4)
// With a row pitch ≡ 8 (mod 32) floats the loads are conflict-free: the 8 lanes of a 128-bit
// phase (g ∈ {2p, 2p + 1}, t ∈ 0..3) hit 16-byte chunks 2t + g (mod 8 chunks of the 32 banks).
// A warp writing 16 consecutive x (16-aligned) of rows k and k + 4 (lane / 16 = which) hits 32
// distinct banks.
//
// API (the same on the GPU and in the host emulator):
//   FragA (16 × 8 of A), FragB (8 × 8 of B), FragC (16 × 8 accumulator); kElems elements each
//   a_pos(m, kk), b_pos(n, kk): where element (k = 4·kk + r, x) goes in pair row r
//   SmemAddr, smem_addr(p), kSmemFloat: a shared-memory address (a 32-bit shared-window byte
//     address on the GPU, a pointer in the emulator); `a + n * kSmemFloat` is n floats further
//   frag_lane_offset(ld): this lane's offset (floats) inside a pair-row tile of pitch ld
//   load_a_tile(a[FM], p + off, ld): a[i] = A[16i .. 16i + 15][0 .. 7], A[m][k] = p[(k % 4)·ld + a_pos(m, k / 4)]
//   load_b_tile(b[FN], p + off, ld): b[j] = B[0 .. 7][8j .. 8j + 7], B[k][n] = p[(k % 4)·ld + b_pos(n, k / 4)]
//     (p: a SmemAddr, the warp tile's x = 0, at pair-row offset 2·x0 with x0 a multiple of 16;
//     off = frag_lane_offset(ld) · kSmemFloat; FN even)
//   mma(c, a, b):     C += A·B, operands read as TF32 (top 19 bits of each fp32)
//   store_c(p, c, ld): p[m·ld + n] = C[m][n]      (then __syncwarp before other lanes read it)
// Fragment elements may only be changed element-wise (x[i] → f(x[i])): their lane mapping is the
// PTX one on the GPU and "every lane holds the whole tile" in the emulator.
#pragma once
#include "common.cuh"

// Positions inside a pair row (see above); x0 = 16·blk is at 2·x0.
__host__ __device__ constexpr int a_pos(int m, int kk) { return ((m / 16) * 8 + m % 8) * 4 + 2 * kk + (m / 8) % 2; }
__host__ __device__ constexpr int b_pos(int n, int kk) { return ((n / 16) * 8 + n % 8) * 4 + 2 * ((n / 8) % 2) + kk; }

#ifndef DDR_HOST_EMU

// PTX ISA, "Matrix fragments for mma.m16n8k8" (.tf32): with g = lane / 4 and t = lane % 4,
// a = A[g][t], A[g+8][t], A[g][t+4], A[g+8][t+4]; b = B[t][g], B[t+4][g];
// c = C[g][2t], C[g][2t+1], C[g+8][2t], C[g+8][2t+1].
struct FragA {
  static constexpr int kElems = 4;
  float x[4];
};
struct FragB {
  static constexpr int kElems = 2;
  float x[2];
};
struct FragC {
  static constexpr int kElems = 4;
  float x[4];
};

__device__ __forceinline__ void fill_zero(FragC& c) {
  c.x[0] = c.x[1] = c.x[2] = c.x[3] = 0.0f;
}
using SmemAddr = u32;
constexpr u32 kSmemFloat = 4;  // bytes
__device__ __forceinline__ SmemAddr smem_addr(float* p) { return (u32)__cvta_generic_to_shared(p); }
// A 128-bit shared load by address register: the fragment loads' addresses are computed once,
// outside the K loop, and only offsets (immediates) vary inside it.
__device__ __forceinline__ float4 lds128(SmemAddr p) {
  float4 v;
  asm volatile("ld.shared.v4.f32 {%0, %1, %2, %3}, [%4];\n" : "=f"(v.x), "=f"(v.y), "=f"(v.z), "=f"(v.w) : "r"(p));
  return v;
}
// Lane g·4 + t reads pair row t, chunk g of each 16-wide block of x.
__device__ __forceinline__ int frag_lane_offset(int ld) { return (threadIdx.x % 4) * ld + (threadIdx.x % 32) / 4 * 4; }
template <int FM>
__device__ __forceinline__ void load_a_tile(FragA (&a)[FM], SmemAddr p, int) {
#pragma unroll
  for (int i = 0; i < FM; ++i) {
    const float4 v = lds128(p + 32 * i * kSmemFloat);
    a[i].x[0] = v.x;
    a[i].x[1] = v.y;
    a[i].x[2] = v.z;
    a[i].x[3] = v.w;
  }
}
template <int FN>
__device__ __forceinline__ void load_b_tile(FragB (&b)[FN], SmemAddr p, int) {
  static_assert(FN % 2 == 0, "B fragments come in pairs per 16-wide block");
#pragma unroll
  for (int j = 0; j < FN / 2; ++j) {
    const float4 v = lds128(p + 32 * j * kSmemFloat);
    b[2 * j].x[0] = v.x;
    b[2 * j].x[1] = v.y;
    b[2 * j + 1].x[0] = v.z;
    b[2 * j + 1].x[1] = v.w;
  }
}
__device__ __forceinline__ void mma(FragC& c, const FragA& a, const FragB& b) {
  asm volatile(
      "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(c.x[0]), "+f"(c.x[1]), "+f"(c.x[2]), "+f"(c.x[3])
      : "r"(__float_as_uint(a.x[0])), "r"(__float_as_uint(a.x[1])), "r"(__float_as_uint(a.x[2])),
        "r"(__float_as_uint(a.x[3])), "r"(__float_as_uint(b.x[0])), "r"(__float_as_uint(b.x[1])));
}
__device__ __forceinline__ void store_c(float* p, const FragC& c, int ld) {
  const int g = (threadIdx.x % 32) / 4, t = threadIdx.x % 4;
  p[g * ld + 2 * t] = c.x[0];
  p[g * ld + 2 * t + 1] = c.x[1];
  p[(g + 8) * ld + 2 * t] = c.x[2];
  p[(g + 8) * ld + 2 * t + 1] = c.x[3];
}
__device__ __forceinline__ float to_tf32(float v) { return nvcuda::wmma::__float_to_tf32(v); }

#else  // the host emulator: every lane holds the whole tile, lane 0's accumulator is authoritative

struct FragA {
  static constexpr int kElems = 16 * 8;  // A[m][k] at x[m * 8 + k]
  float x[kElems];
};
struct FragB {
  static constexpr int kElems = 8 * 8;  // B[k][n] at x[k * 8 + n]
  float x[kElems];
};
struct FragC {
  static constexpr int kElems = 16 * 8;  // C[m][n] at x[m * 8 + n]
  float x[kElems];
};

using SmemAddr = float*;
constexpr u32 kSmemFloat = 1;  // floats
inline SmemAddr smem_addr(float* p) { return p; }
// Every lane loads the whole tile.
inline int frag_lane_offset(int) { return 0; }
inline void fill_zero(FragC& c) {
  for (float& v : c.x) v = 0.0f;
}
template <int FM>
inline void load_a_tile(FragA (&a)[FM], const float* p, int ld) {
  for (int i = 0; i < FM; ++i)
    for (int m = 0; m < 16; ++m)
      for (int k = 0; k < 8; ++k) a[i].x[m * 8 + k] = p[(k % 4) * ld + a_pos(16 * i + m, k / 4)];
}
template <int FN>
inline void load_b_tile(FragB (&b)[FN], const float* p, int ld) {
  static_assert(FN % 2 == 0, "B fragments come in pairs per 16-wide block");
  for (int j = 0; j < FN; ++j)
    for (int k = 0; k < 8; ++k)
      for (int n = 0; n < 8; ++n) b[j].x[k * 8 + n] = p[(k % 4) * ld + b_pos(8 * j + n, k / 4)];
}
// As the wmma emulation: only lane 0 computes (32× less emulated arithmetic); the other lanes'
// accumulators go stale, which no kernel obeying the element-wise rule can observe.
inline void mma(FragC& c, const FragA& a, const FragB& b) {
  if (ddr_emu::lane_id() != 0) return;
  for (int m = 0; m < 16; ++m)
    for (int n = 0; n < 8; ++n) {
      float acc = c.x[m * 8 + n];
      for (int k = 0; k < 8; ++k)
        acc += nvcuda::wmma::tf32_truncate(a.x[m * 8 + k]) * nvcuda::wmma::tf32_truncate(b.x[k * 8 + n]);
      c.x[m * 8 + n] = acc;
    }
}
inline void store_c(float* p, const FragC& c, int ld) {
  if (ddr_emu::lane_id() != 0) return;
  for (int m = 0; m < 16; ++m)
    for (int n = 0; n < 8; ++n) p[m * ld + n] = c.x[m * 8 + n];
}
inline float to_tf32(float v) { return nvcuda::wmma::__float_to_tf32(v); }

#endif
