// host_emu.h: lets the host C++ compiler (g++ -std=c++20) build the kernels in cuda/*.cu and run
// them on the CPU, so the whole CUDA backend (same Rust launch code, same params structs) is tested
// on machines without a GPU. Included first by build.rs's emulator translation units, which also
// define DDR_HOST_EMU; nvcc never sees this file.
//
// Model (see host_emu_fiber.h for the scheduler itself):
// - A launch spreads its blocks over persistent worker OS threads, one per host core (the calling
//   thread is one of them; DDR_EMU_THREADS=N overrides the count). Blocks run concurrently, as on
//   a GPU, in no defined order.
// - A worker runs one block at a time, to completion. The block's CUDA threads are fibers on that
//   worker (own stacks, switched by a few instructions of hand-written assembly on x86_64, by
//   ucontext elsewhere): a fiber runs until it waits at a barrier, then hands the core to the next
//   fiber of its block. `__syncthreads` is a block barrier, warp shuffles a warp barrier over a
//   double-buffered exchange slot, so no OS thread ever blocks inside a launch.
// - `__shared__` arrays are `static thread_local`: every fiber of a block runs on its worker's OS
//   thread and sees the same array, and concurrently running blocks (on other workers) do not.
//   A worker finishes a block before it starts the next, so reuse is safe, as on a GPU.
// - atomics are std::atomic_ref (blocks on different workers really race); wmma fragments hold
//   the whole tile in every lane.
//
// Rules for kernels (the emulator reports a deadlock and aborts, or lies, otherwise; the GPU would
// misbehave too): every thread of a block reaches every __syncthreads (no early return before one);
// shuffles, __syncwarp and wmma calls are made by all 32 lanes of a full warp; block sizes are
// multiples of 32; `__shared__` only inside functions, never `extern __shared__` (dynamic shared
// memory); no inline PTX; no assumption about the order in which blocks run.
//
// The pool and the launch lock are process-wide on purpose: they are the one emulated device, and
// a launch returns only when all its blocks have finished (a synchronous stream).
#pragma once

#include <algorithm>
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static thread_local
#define __restrict__ __restrict
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))

struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

// The CUDA built-in index registers, per OS thread: the scheduler rewrites threadIdx at every
// fiber switch and the other three when its worker starts a block.
inline thread_local dim3 threadIdx;
inline thread_local dim3 blockIdx;
inline thread_local dim3 blockDim;
inline thread_local dim3 gridDim;

#include "host_emu_fiber.h"

namespace ddr_emu {

// Runs kernel `k` over grid × block with its params struct copied from `params`, as the GPU would
// (the kernel receives the struct by value). grid and block are 3 unsigned each (x, y, z).
template <class P>
void launch(void (*k)(P), const unsigned* grid, const unsigned* block, const void* params) {
  P p;
  std::memcpy(&p, params, sizeof(P));
  Launch L;
  L.grid = dim3(grid[0], grid[1], grid[2]);
  L.block = dim3(block[0], block[1], block[2]);
  L.threads = block[0] * block[1] * block[2];
  L.blocks = static_cast<uint64_t>(grid[0]) * grid[1] * grid[2];
  if (L.threads == 0 || L.threads % kWarp != 0 || L.blocks == 0) {
    std::fprintf(stderr, "host_emu: grid (%u, %u, %u) × block (%u, %u, %u): need a non-empty grid and a "
                 "block of a positive multiple of 32 threads\n", grid[0], grid[1], grid[2], block[0],
                 block[1], block[2]);
    std::abort();
  }
  L.body = [&p, k] { k(p); };
  pool().run(L);
}

template <class T>
T shfl_from(T v, unsigned src_lane) {
  static_assert(sizeof(T) <= 8, "shuffle of a value wider than 8 bytes");
  Fiber& me = *tls.cur;
  WarpState& w = tls.block->warps[me.id / kWarp];
  // Two slot sets, alternated per shuffle: a lane that races ahead to its next shuffle writes the
  // other set, and cannot reach a third before every lane has passed the barrier of the second,
  // i.e. has read the first. One barrier per shuffle instead of two.
  const unsigned set = me.shuffles++ & 1u;
  uint64_t bits = 0;
  std::memcpy(&bits, &v, sizeof(T));
  w.slot[set][me.lane] = bits;
  arrive(w.bar);
  const uint64_t got = w.slot[set][src_lane];
  T out;
  std::memcpy(&out, &got, sizeof(T));
  return out;
}

inline unsigned lane_id() { return tls.cur->lane; }

}  // namespace ddr_emu

// ---- synchronisation ------------------------------------------------------------------------
inline void __syncthreads() { ddr_emu::arrive(ddr_emu::tls.block->block_bar); }
inline void __syncwarp(unsigned = 0xffffffffu) {
  ddr_emu::arrive(ddr_emu::tls.block->warps[ddr_emu::tls.cur->id / ddr_emu::kWarp].bar);
}

// ---- warp shuffles (full warps only; `width` a power of two ≤ 32) ----------------------------
template <class T>
T __shfl_sync(unsigned, T v, int src, int width = 32) {
  unsigned lane = ddr_emu::lane_id();
  unsigned base = lane & ~static_cast<unsigned>(width - 1);
  return ddr_emu::shfl_from(v, base + (static_cast<unsigned>(src) & static_cast<unsigned>(width - 1)));
}
template <class T>
T __shfl_xor_sync(unsigned, T v, int mask, int width = 32) {
  unsigned lane = ddr_emu::lane_id();
  unsigned src = lane ^ static_cast<unsigned>(mask);
  // A source outside the caller's width-segment returns the caller's own value, as on the GPU.
  if ((src & ~static_cast<unsigned>(width - 1)) != (lane & ~static_cast<unsigned>(width - 1))) src = lane;
  return ddr_emu::shfl_from(v, src);
}
template <class T>
T __shfl_down_sync(unsigned, T v, unsigned delta, int width = 32) {
  unsigned lane = ddr_emu::lane_id();
  unsigned seg_end = (lane & ~static_cast<unsigned>(width - 1)) + static_cast<unsigned>(width);
  unsigned src = lane + delta < seg_end ? lane + delta : lane;
  return ddr_emu::shfl_from(v, src);
}

// ---- atomics --------------------------------------------------------------------------------
template <class T>
T atomicAdd(T* addr, T v) {
  return std::atomic_ref<T>(*addr).fetch_add(v);
}
template <class T>
T atomicMax(T* addr, T v) {
  std::atomic_ref<T> a(*addr);
  T old = a.load();
  while (old < v && !a.compare_exchange_weak(old, v)) {
  }
  return old;
}
template <class T>
T atomicMin(T* addr, T v) {
  std::atomic_ref<T> a(*addr);
  T old = a.load();
  while (v < old && !a.compare_exchange_weak(old, v)) {
  }
  return old;
}
template <class T>
T atomicCAS(T* addr, T compare, T v) {
  std::atomic_ref<T>(*addr).compare_exchange_strong(compare, v);
  return compare;
}

// ---- device math the kernels use ------------------------------------------------------------
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline float __expf(float x) { return std::exp(x); }
inline float __logf(float x) { return std::log(x); }
inline float __fdividef(float a, float b) { return a / b; }
inline unsigned __float_as_uint(float f) {
  unsigned u;
  std::memcpy(&u, &f, 4);
  return u;
}
inline float __uint_as_float(unsigned u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
template <class T>
T __ldg(const T* p) {
  return *p;
}

// ---- nvcuda::wmma, TF32 m16n16k8 only -------------------------------------------------------
// Every lane holds the whole tile (the GPU spreads it over the lanes in an unspecified order, so
// kernels may only apply element-wise operations to `x[]`, which stays correct here). Loads and
// fills happen in every lane; mma_sync and store_matrix_sync only in lane 0, whose accumulators
// are therefore the authoritative ones: the other lanes' copies go stale, which no legal kernel
// can observe (x[] has no defined lane mapping), and 32× less emulated arithmetic keeps tests fast.
namespace nvcuda {
namespace wmma {
struct row_major {};
struct col_major {};
struct matrix_a {};
struct matrix_b {};
struct accumulator {};
namespace precision {
struct tf32 {};
}  // namespace precision
enum layout_t { mem_row_major, mem_col_major };

template <class Use, int M, int N, int K, class T, class Layout = void>
struct fragment;

template <class Layout>
struct fragment<matrix_a, 16, 16, 8, precision::tf32, Layout> {
  static constexpr int num_elements = 16 * 8;  // logical A[r][k] at x[r * 8 + k]
  float x[num_elements];
};
template <class Layout>
struct fragment<matrix_b, 16, 16, 8, precision::tf32, Layout> {
  static constexpr int num_elements = 8 * 16;  // logical B[k][c] at x[k * 16 + c]
  float x[num_elements];
};
template <>
struct fragment<accumulator, 16, 16, 8, float, void> {
  static constexpr int num_elements = 16 * 16;  // logical C[r][c] at x[r * 16 + c]
  float x[num_elements];
};

// CUDA's cvt.rna.tf32.f32: round to nearest, ties away from zero, keep 10 mantissa bits.
inline float __float_to_tf32(float f) {
  if (!std::isfinite(f)) return f;
  unsigned u = __float_as_uint(f);
  u = (u + 0x1000u) & 0xffffe000u;
  return __uint_as_float(u);
}
// What the tensor core reads from an fp32 register in TF32 mode: the top 19 bits.
inline float tf32_truncate(float f) { return __uint_as_float(__float_as_uint(f) & 0xffffe000u); }

template <class Frag, class T>
void fill_fragment(Frag& f, T v) {
  for (int i = 0; i < Frag::num_elements; ++i) f.x[i] = static_cast<float>(v);
}

inline void load_matrix_sync(fragment<matrix_a, 16, 16, 8, precision::tf32, row_major>& f, const float* p, unsigned ldm) {
  for (int r = 0; r < 16; ++r)
    for (int k = 0; k < 8; ++k) f.x[r * 8 + k] = p[r * ldm + k];
}
inline void load_matrix_sync(fragment<matrix_a, 16, 16, 8, precision::tf32, col_major>& f, const float* p, unsigned ldm) {
  for (int r = 0; r < 16; ++r)
    for (int k = 0; k < 8; ++k) f.x[r * 8 + k] = p[k * ldm + r];
}
inline void load_matrix_sync(fragment<matrix_b, 16, 16, 8, precision::tf32, row_major>& f, const float* p, unsigned ldm) {
  for (int k = 0; k < 8; ++k)
    for (int c = 0; c < 16; ++c) f.x[k * 16 + c] = p[k * ldm + c];
}
inline void load_matrix_sync(fragment<matrix_b, 16, 16, 8, precision::tf32, col_major>& f, const float* p, unsigned ldm) {
  for (int k = 0; k < 8; ++k)
    for (int c = 0; c < 16; ++c) f.x[k * 16 + c] = p[c * ldm + k];
}
inline void load_matrix_sync(fragment<accumulator, 16, 16, 8, float, void>& f, const float* p, unsigned ldm, layout_t l) {
  for (int r = 0; r < 16; ++r)
    for (int c = 0; c < 16; ++c) f.x[r * 16 + c] = l == mem_row_major ? p[r * ldm + c] : p[c * ldm + r];
}
inline void store_matrix_sync(float* p, const fragment<accumulator, 16, 16, 8, float, void>& f, unsigned ldm, layout_t l) {
  // Lane 0 holds the authoritative accumulator (see mma_sync).
  if (ddr_emu::lane_id() != 0) return;
  for (int r = 0; r < 16; ++r)
    for (int c = 0; c < 16; ++c) (l == mem_row_major ? p[r * ldm + c] : p[c * ldm + r]) = f.x[r * 16 + c];
}

template <class LA, class LB>
void mma_sync(fragment<accumulator, 16, 16, 8, float, void>& d,
              const fragment<matrix_a, 16, 16, 8, precision::tf32, LA>& a,
              const fragment<matrix_b, 16, 16, 8, precision::tf32, LB>& b,
              const fragment<accumulator, 16, 16, 8, float, void>& c) {
  if (ddr_emu::lane_id() != 0) return;
  float out[256];
  for (int r = 0; r < 16; ++r)
    for (int col = 0; col < 16; ++col) {
      float acc = c.x[r * 16 + col];
      for (int k = 0; k < 8; ++k) acc += tf32_truncate(a.x[r * 8 + k]) * tf32_truncate(b.x[k * 16 + col]);
      out[r * 16 + col] = acc;
    }
  std::memcpy(d.x, out, sizeof(out));
}
}  // namespace wmma
}  // namespace nvcuda

#include "host_emu_pipeline.h"  // cp.async primitives (cuda_pipeline.h), owned by the conv kernels
