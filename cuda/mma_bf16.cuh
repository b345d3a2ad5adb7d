// mma_bf16.cuh: one warp's m16n8k16 bf16 tensor-core step (mma.sync, fp32 accumulate) with a whole
// warp tile's fragments read by 128-bit shared loads from the tiles conv_gemm_bf16.cuh stages in
// fp32 and converts IN PLACE to bf16 once per stage (each 16 × 16 block by one warp, not by every
// warp that reads it): round to nearest, ties to even (`cvt.rn.bf16x2.f32`, one F2FP per two
// values), exactly what the CPU's `GemmPrecision::Bf16` (src/ops/precision.rs) does to each
// operand. Products of two bf16 values are exact in fp32, so the GPU result and the CPU's fp32
// GEMM on rounded operands differ only in summation order.
//
// Shared layout ("x-major, 16 k per x"): a 16-deep k tile of an operand is stored x-major (x = m
// for A, n for B), the 16 k of one x as four 16-byte chunks, chunk c holding k = 4c .. 4c + 3,
// XOR-swizzled by x: element (x, k) sits at sw16(x, k) = 16·x + 4·((k / 4) ^ ((x / 2) % 4)) + k % 4.
// - The mma's k order inside a tile is free as long as A and B agree, so lane (g, t) takes the
//   true k 4t .. 4t + 3 for the PTX fragment slots k = 2t, 2t + 1, 2t + 8, 2t + 9: its A fragment
//   comes from one 16-byte chunk of row g and one of row g + 8, its B fragments j, j + 1 from one
//   chunk of columns g and g + 8. The conversion reads those two fp32 chunks and writes the
//   fragment's four bf16x2 registers over the first: afterwards ONE 128-bit load per A fragment
//   and per B fragment pair.
// - Conflict-free: a 128-bit phase (lanes with g ∈ {2p, 2p + 1}, t ∈ 0..3) touches chunks
//   4·(g % 2) + (t ^ (g / 2) % 4) (mod 8) — all 8 distinct; a loader warp writing 4-byte elements
//   of 8 consecutive x and 4 consecutive k of one chunk (conv_gemm_bf16.cuh) hits 32 banks.
//
// API (the same on the GPU and in the host emulator; FragC, fill_zero, store_c, SmemAddr,
// smem_addr, kSmemFloat and lds128 are mma_tf32.cuh's, whose accumulator layout m16n8k16 shares):
//   FragA16 (16 × 16 of A), FragB16 (16 × 8 of B)
//   sw16(x, k): where element (x, k) of a 16-deep tile sits (floats from the tile's x = 0)
//   frag16_lane_offset(): this lane's offset (floats) inside a tile, relative to a 16-block of x
//   convert_a16_block(p + off), convert_b16_pair(p + off): the 16-block of x at p (fp32) → bf16
//     fragments, in place; every lane of one warp calls it, then a barrier before any load
//   load_a16_tile(a[FM], p + off): a[i] = A[16i .. 16i + 15][0 .. 15], A[m][k] = tile[sw16(m, k)]
//   load_b16_tile(b[FN], p + off): b[j] = B[0 .. 15][8j .. 8j + 7], B[k][n] = tile[sw16(n, k)]
//     (p: the SmemAddr of the warp tile's x = 0, converted; off = frag16_lane_offset() · kSmemFloat)
//   mma16(c, a, b): C += A·B in fp32
// The emulator keeps the fp32 layout: its conversion rounds the block in place (lane 0), its
// loads read the rounded values.
#pragma once
#include "mma_tf32.cuh"

__host__ __device__ constexpr int sw16(int x, int k) { return 16 * x + 4 * ((k / 4) ^ ((x / 2) % 4)) + k % 4; }

#ifndef DDR_HOST_EMU

// PTX ISA, "Matrix fragments for mma.m16n8k16" (.bf16), g = lane / 4, t = lane % 4: a holds
// A[g][kk], A[g+8][kk], A[g][kk+8], A[g+8][kk+8] for kk = 2t, 2t+1 (two bf16 per register, the
// lower k in the low half); b holds B[kk][g], B[kk+8][g]. Here slot kk = 2t + i is true k 4t + i
// and slot 2t + 8 + i is true k 4t + 2 + i (see above).
struct FragA16 {
  u32 x[4];
};
struct FragB16 {
  u32 x[2];
};

// (lo, hi) → one register of two bf16, lo in the low half; round to nearest even.
__device__ __forceinline__ u32 pack_bf16(float lo, float hi) {
  u32 r;
  asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
  return r;
}
__device__ __forceinline__ int frag16_lane_offset() {
  const int g = (threadIdx.x % 32) / 4, t = threadIdx.x % 4;
  return sw16(g, 4 * t);
}
__device__ __forceinline__ void sts128(SmemAddr p, u32 a, u32 b, u32 c, u32 d) {
  asm volatile("st.shared.v4.b32 [%0], {%1, %2, %3, %4};\n" ::"r"(p), "r"(a), "r"(b), "r"(c), "r"(d) : "memory");
}
// In place: this lane's chunks (g, t) and (g + 8, t) of a 16-row block (fp32) → chunk (g, t) holds
// the four bf16x2 registers of its fragment; chunk (g + 8, t) is dead afterwards.
__device__ __forceinline__ void convert_a16_block(SmemAddr p) {
  const float4 lo = lds128(p);                        // A[g][4t .. 4t + 3]
  const float4 hi = lds128(p + 16 * 8 * kSmemFloat);  // A[g + 8][4t .. 4t + 3]
  sts128(p, pack_bf16(lo.x, lo.y), pack_bf16(hi.x, hi.y), pack_bf16(lo.z, lo.w), pack_bf16(hi.z, hi.w));
}
// In place, for B's columns g and g + 8 of a 16-column block: fragment j's two registers, then
// fragment j + 1's.
__device__ __forceinline__ void convert_b16_pair(SmemAddr p) {
  const float4 lo = lds128(p);                        // B[4t .. 4t + 3][g]
  const float4 hi = lds128(p + 16 * 8 * kSmemFloat);  // B[4t .. 4t + 3][g + 8]
  sts128(p, pack_bf16(lo.x, lo.y), pack_bf16(lo.z, lo.w), pack_bf16(hi.x, hi.y), pack_bf16(hi.z, hi.w));
}
template <int FM>
__device__ __forceinline__ void load_a16_tile(FragA16 (&a)[FM], SmemAddr p) {
#pragma unroll
  for (int i = 0; i < FM; ++i) {
    const float4 v = lds128(p + 16 * 16 * i * kSmemFloat);
    a[i].x[0] = __float_as_uint(v.x);
    a[i].x[1] = __float_as_uint(v.y);
    a[i].x[2] = __float_as_uint(v.z);
    a[i].x[3] = __float_as_uint(v.w);
  }
}
template <int FN>
__device__ __forceinline__ void load_b16_tile(FragB16 (&b)[FN], SmemAddr p) {
  static_assert(FN % 2 == 0, "B fragments come in pairs per 16-column block");
#pragma unroll
  for (int j = 0; j < FN / 2; ++j) {
    const float4 v = lds128(p + 16 * 16 * j * kSmemFloat);
    b[2 * j].x[0] = __float_as_uint(v.x);
    b[2 * j].x[1] = __float_as_uint(v.y);
    b[2 * j + 1].x[0] = __float_as_uint(v.z);
    b[2 * j + 1].x[1] = __float_as_uint(v.w);
  }
}
__device__ __forceinline__ void mma16(FragC& c, const FragA16& a, const FragB16& b) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(c.x[0]), "+f"(c.x[1]), "+f"(c.x[2]), "+f"(c.x[3])
      : "r"(a.x[0]), "r"(a.x[1]), "r"(a.x[2]), "r"(a.x[3]), "r"(b.x[0]), "r"(b.x[1]));
}

#else  // the host emulator: every lane holds the whole (rounded) tile, lane 0 computes

// Round to nearest even keeping 7 mantissa bits, NaN kept (src/ops/precision.rs round_bf16).
inline float round_bf16(float v) {
  if (v != v) return v;
  const u32 u = __float_as_uint(v);
  return __uint_as_float((u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u);
}

struct FragA16 {
  float x[16 * 16];  // A[m][k] at x[m * 16 + k]
};
struct FragB16 {
  float x[16 * 8];  // B[k][n] at x[k * 8 + n]
};

inline int frag16_lane_offset() { return 0; }
// Lane 0 rounds the whole block in place (fp32 layout kept); the loads then read rounded values.
inline void convert_a16_block(float* p) {
  if (ddr_emu::lane_id() != 0) return;
  for (int m = 0; m < 16; ++m)
    for (int k = 0; k < 16; ++k) p[sw16(m, k)] = round_bf16(p[sw16(m, k)]);
}
inline void convert_b16_pair(float* p) { convert_a16_block(p); }
template <int FM>
inline void load_a16_tile(FragA16 (&a)[FM], const float* p) {
  for (int i = 0; i < FM; ++i)
    for (int m = 0; m < 16; ++m)
      for (int k = 0; k < 16; ++k) a[i].x[m * 16 + k] = p[sw16(16 * i + m, k)];
}
template <int FN>
inline void load_b16_tile(FragB16 (&b)[FN], const float* p) {
  static_assert(FN % 2 == 0, "B fragments come in pairs per 16-column block");
  for (int j = 0; j < FN; ++j)
    for (int k = 0; k < 16; ++k)
      for (int n = 0; n < 8; ++n) b[j].x[k * 8 + n] = p[sw16(8 * j + n, k)];
}
// Only lane 0 computes, as mma() in mma_tf32.cuh; fp32 products of bf16 values are exact.
inline void mma16(FragC& c, const FragA16& a, const FragB16& b) {
  if (ddr_emu::lane_id() != 0) return;
  for (int m = 0; m < 16; ++m)
    for (int n = 0; n < 8; ++n) {
      float acc = c.x[m * 8 + n];
      for (int k = 0; k < 16; ++k) acc += a.x[m * 16 + k] * b.x[k * 8 + n];
      c.x[m * 8 + n] = acc;
    }
}

#endif
