// mma_tf32.cuh: one warp's m16n8k8 TF32 tensor-core step (mma.sync) with fragments loaded from
// k-major shared-memory tiles by plain shared loads, for conv_gemm.cuh. Used instead of nvcuda::wmma
// because wmma's TF32 fragment loads compile to generic (not shared) loads with a 64-bit address
// computation each, and its m16n16k8 steps to the half-size m16n8k4 instructions: both showed in
// the kernel report (tools/kernel-report.sh) as the largest part of the main loop.
//
// API (the same on the GPU and in the host emulator):
//   FragA (16 × 8 of A), FragB (8 × 8 of B), FragC (16 × 8 accumulator); kElems elements each
//   frag_lane_offset(ld): this lane's offset inside a k-major tile of pitch ld (compute it once)
//   load_a(f, p + off, ld): A[m][k] = p[k·ld + m] (k-major tile, m contiguous)
//   load_b(f, p + off, ld): B[k][n] = p[k·ld + n] (k-major tile, n contiguous)
//   mma(c, a, b):     C += A·B, operands read as TF32 (top 19 bits of each fp32)
//   store_c(p, c, ld): p[m·ld + n] = C[m][n]      (then __syncwarp before other lanes read it)
// Fragment elements may only be changed element-wise (x[i] → f(x[i])): their lane mapping is the
// PTX one on the GPU and "every lane holds the whole tile" in the emulator.
#pragma once
#include "common.cuh"

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
// Lane g·4 + t reads row t (and t + 4), column g (and g + 8) of a k-major tile.
__device__ __forceinline__ int frag_lane_offset(int ld) { return (threadIdx.x % 4) * ld + (threadIdx.x % 32) / 4; }
__device__ __forceinline__ void load_a(FragA& f, const float* p, int ld) {
  f.x[0] = p[0];
  f.x[1] = p[8];
  f.x[2] = p[4 * ld];
  f.x[3] = p[4 * ld + 8];
}
__device__ __forceinline__ void load_b(FragB& f, const float* p, int ld) {
  f.x[0] = p[0];
  f.x[1] = p[4 * ld];
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

// Every lane loads the whole tile.
inline int frag_lane_offset(int) { return 0; }
inline void fill_zero(FragC& c) {
  for (float& v : c.x) v = 0.0f;
}
inline void load_a(FragA& f, const float* p, int ld) {
  for (int m = 0; m < 16; ++m)
    for (int k = 0; k < 8; ++k) f.x[m * 8 + k] = p[k * ld + m];
}
inline void load_b(FragB& f, const float* p, int ld) {
  for (int k = 0; k < 8; ++k)
    for (int n = 0; n < 8; ++n) f.x[k * 8 + n] = p[k * ld + n];
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
