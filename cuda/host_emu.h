// host_emu.h: lets the host C++ compiler (g++ -std=c++20) build the kernels in cuda/*.cu and run
// them on the CPU, so the whole CUDA backend (same Rust launch code, same params structs) is tested
// on machines without a GPU. Included first by build.rs's emulator translation units, which also
// define DDR_HOST_EMU; nvcc never sees this file.
//
// Model: a launch runs the grid's blocks one after another; the threads of a block are persistent
// OS threads from one pool (a 128-thread block would otherwise spawn 128 threads per launch).
// Because blocks never overlap, `__shared__` arrays can be function statics. `__syncthreads` is a
// block-wide barrier, warp shuffles go through a per-warp exchange buffer between two warp
// barriers, atomics are std::atomic_ref, and wmma fragments hold the whole tile in every lane.
//
// Rules for kernels (the emulator deadlocks or lies otherwise; the GPU would misbehave too):
// every thread of a block reaches every __syncthreads (no early return before one); shuffles and
// wmma calls are made by all 32 lanes of a full warp; block sizes are multiples of 32; no inline PTX.
//
// The pool and the launch lock are process-wide on purpose: they are the one emulated device, and
// the function-static `__shared__` arrays make two overlapping launches unsafe.
#pragma once

#include <algorithm>
#include <atomic>
#include <barrier>
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
#define __shared__ static
#define __restrict__ __restrict
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))

struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

// The CUDA built-in index registers: each emulated CUDA thread is one OS thread.
inline thread_local dim3 threadIdx;
inline thread_local dim3 blockIdx;
inline thread_local dim3 blockDim;
inline thread_local dim3 gridDim;

namespace ddr_emu {

constexpr unsigned kWarp = 32;

// One warp's shuffle mailbox: every lane writes its value, all wait, every lane reads one, all wait.
struct Warp {
  std::barrier<> bar;
  uint64_t slot[kWarp];
  explicit Warp(unsigned lanes) : bar(lanes), slot{} {}
};

// What a launch shares between the threads of the current block.
struct Launch {
  dim3 grid, block;
  unsigned threads = 0;
  std::function<void()> body;
  std::unique_ptr<std::barrier<>> block_bar;
  std::vector<std::unique_ptr<Warp>> warps;
};

struct ThreadState {
  Launch* launch = nullptr;
  Warp* warp = nullptr;
  unsigned lane = 0;
};
inline thread_local ThreadState tls;

inline void run_thread(Launch& L, unsigned id) {
  blockDim = L.block;
  gridDim = L.grid;
  threadIdx = dim3(id % L.block.x, (id / L.block.x) % L.block.y, id / (L.block.x * L.block.y));
  tls.launch = &L;
  tls.warp = L.warps[id / kWarp].get();
  tls.lane = id % kWarp;
  for (unsigned bz = 0; bz < L.grid.z; ++bz)
    for (unsigned by = 0; by < L.grid.y; ++by)
      for (unsigned bx = 0; bx < L.grid.x; ++bx) {
        blockIdx = dim3(bx, by, bz);
        L.body();
        // The next block reuses the function-static shared arrays: nobody may start it early.
        L.block_bar->arrive_and_wait();
      }
  tls = ThreadState{};
}

// Persistent workers: worker i plays CUDA thread i of every block of every launch.
class Pool {
 public:
  ~Pool() {
    {
      std::lock_guard<std::mutex> lk(m_);
      stop_ = true;
    }
    cv_.notify_all();
    for (auto& t : workers_) t.join();
  }

  void run(Launch& L) {
    std::lock_guard<std::mutex> one_launch_at_a_time(launch_m_);
    std::unique_lock<std::mutex> lk(m_);
    while (workers_.size() < L.threads) {
      unsigned id = static_cast<unsigned>(workers_.size());
      workers_.emplace_back([this, id] { worker(id); });
    }
    job_ = &L;
    remaining_ = static_cast<unsigned>(workers_.size());
    ++generation_;
    cv_.notify_all();
    done_cv_.wait(lk, [this] { return remaining_ == 0; });
    job_ = nullptr;
  }

 private:
  void worker(unsigned id) {
    uint64_t seen = 0;
    {
      std::lock_guard<std::mutex> lk(m_);
      seen = generation_ - (job_ != nullptr ? 1 : 0);
    }
    for (;;) {
      std::unique_lock<std::mutex> lk(m_);
      cv_.wait(lk, [&] { return stop_ || generation_ != seen; });
      if (stop_) return;
      seen = generation_;
      Launch* L = job_;
      lk.unlock();
      if (id < L->threads) run_thread(*L, id);
      lk.lock();
      if (--remaining_ == 0) done_cv_.notify_one();
    }
  }

  std::mutex launch_m_;
  std::mutex m_;
  std::condition_variable cv_, done_cv_;
  std::vector<std::thread> workers_;
  Launch* job_ = nullptr;
  uint64_t generation_ = 0;
  unsigned remaining_ = 0;
  bool stop_ = false;
};

inline Pool& pool() {
  static Pool p;
  return p;
}

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
  if (L.threads == 0 || L.threads % kWarp != 0 || L.grid.x * L.grid.y * L.grid.z == 0) {
    std::fprintf(stderr, "host_emu: block of %u threads (need a positive multiple of 32)\n", L.threads);
    std::abort();
  }
  L.body = [&p, k] { k(p); };
  L.block_bar = std::make_unique<std::barrier<>>(L.threads);
  for (unsigned w = 0; w < L.threads / kWarp; ++w) L.warps.push_back(std::make_unique<Warp>(kWarp));
  pool().run(L);
}

template <class T>
T shfl_from(T v, unsigned src_lane) {
  static_assert(sizeof(T) <= 8, "shuffle of a value wider than 8 bytes");
  Warp& w = *tls.warp;
  uint64_t bits = 0;
  std::memcpy(&bits, &v, sizeof(T));
  w.slot[tls.lane] = bits;
  w.bar.arrive_and_wait();
  uint64_t got = w.slot[src_lane];
  w.bar.arrive_and_wait();  // nobody overwrites a slot before every lane has read it
  T out;
  std::memcpy(&out, &got, sizeof(T));
  return out;
}

inline unsigned lane_id() { return tls.lane; }

}  // namespace ddr_emu

// ---- synchronisation ------------------------------------------------------------------------
inline void __syncthreads() { ddr_emu::tls.launch->block_bar->arrive_and_wait(); }
inline void __syncwarp(unsigned = 0xffffffffu) { ddr_emu::tls.warp->bar.arrive_and_wait(); }

// ---- warp shuffles (full warps only; `width` a power of two ≤ 32) ----------------------------
template <class T>
T __shfl_sync(unsigned, T v, int src, int width = 32) {
  unsigned lane = ddr_emu::tls.lane;
  unsigned base = lane & ~static_cast<unsigned>(width - 1);
  return ddr_emu::shfl_from(v, base + (static_cast<unsigned>(src) & static_cast<unsigned>(width - 1)));
}
template <class T>
T __shfl_xor_sync(unsigned, T v, int mask, int width = 32) {
  unsigned lane = ddr_emu::tls.lane;
  unsigned src = lane ^ static_cast<unsigned>(mask);
  // A source outside the caller's width-segment returns the caller's own value, as on the GPU.
  if ((src & ~static_cast<unsigned>(width - 1)) != (lane & ~static_cast<unsigned>(width - 1))) src = lane;
  return ddr_emu::shfl_from(v, src);
}
template <class T>
T __shfl_down_sync(unsigned, T v, unsigned delta, int width = 32) {
  unsigned lane = ddr_emu::tls.lane;
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
