// mma_bf16.cuh: one warp's m16n8k16 bf16 tensor-core step (mma.sync, fp32 accumulate) with
// fragments read from the same k-major fp32 shared-memory tiles the TF32 main loop stages
// (conv_gemm_bf16.cuh), converted to bf16 while loading: round to nearest, ties to even
// (`cvt.rn.bf16x2.f32`), exactly what the CPU's `GemmPrecision::Bf16` (src/ops/precision.rs)
// does to each operand. Products of two bf16 values are exact in fp32, so the GPU result and the
// CPU's fp32 GEMM on rounded operands differ only in summation order.
//
// API (the same on the GPU and in the host emulator; FragC, fill_zero and store_c are
// mma_tf32.cuh's, whose accumulator layout m16n8k16 shares):
//   FragA16 (16 × 16 of A), FragB16 (16 × 8 of B)
//   frag16_lane_offset(ld): this lane's offset inside a k-major tile of pitch ld (compute it once)
//   load_a16(f, p + off, ld): A[m][k] = p[k·ld + m], rounded to bf16
//   load_b16(f, p + off, ld): B[k][n] = p[k·ld + n], rounded to bf16
//   mma16(c, a, b): C += A·B in fp32
// Bank conflicts: lane g·4 + t reads rows 2t, 2t + 1 (+ 8) at column g (+ 8); with a pitch ≡ 4
// (mod 32) row 2t starts at bank 8t, so the 32 lanes of one load hit 32 different banks.
#pragma once
#include "mma_tf32.cuh"

#ifndef DDR_HOST_EMU

// PTX ISA, "Matrix fragments for mma.m16n8k16" (.bf16), g = lane / 4, t = lane % 4: a holds
// A[g][2t..2t+1], A[g+8][2t..2t+1], A[g][2t+8..2t+9], A[g+8][2t+8..2t+9] (two bf16 per register,
// the lower k in the low half); b holds B[2t..2t+1][g], B[2t+8..2t+9][g].
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
__device__ __forceinline__ int frag16_lane_offset(int ld) { return 2 * (threadIdx.x % 4) * ld + (threadIdx.x % 32) / 4; }
__device__ __forceinline__ void load_a16(FragA16& f, const float* p, int ld) {
  f.x[0] = pack_bf16(p[0], p[ld]);
  f.x[1] = pack_bf16(p[8], p[ld + 8]);
  f.x[2] = pack_bf16(p[8 * ld], p[9 * ld]);
  f.x[3] = pack_bf16(p[8 * ld + 8], p[9 * ld + 8]);
}
__device__ __forceinline__ void load_b16(FragB16& f, const float* p, int ld) {
  f.x[0] = pack_bf16(p[0], p[ld]);
  f.x[1] = pack_bf16(p[8 * ld], p[9 * ld]);
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

inline int frag16_lane_offset(int) { return 0; }
inline void load_a16(FragA16& f, const float* p, int ld) {
  for (int m = 0; m < 16; ++m)
    for (int k = 0; k < 16; ++k) f.x[m * 16 + k] = round_bf16(p[k * ld + m]);
}
inline void load_b16(FragB16& f, const float* p, int ld) {
  for (int k = 0; k < 16; ++k)
    for (int n = 0; n < 8; ++n) f.x[k * 8 + n] = round_bf16(p[k * ld + n]);
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
