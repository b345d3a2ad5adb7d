// norm_common.cuh: what the norm kernels (norm.cu) and the fused conv + norm epilogue (conv.cu,
// conv_norm.cuh) share: the norm params struct, normalisation groups, moments merged by Chan's
// formula, the pooled-output loop, and the partial statistics a conv epilogue leaves for the norm
// pass (NormPartials).
#pragma once
#include "common.cuh"

struct NormParams {
  const float* y;       // (S, B, c, h, w) the conv output
  const float* params;  // (S, param_row): γ at w_off, β at b_off (c each)
  float* running;       // (S, running_row): running mean at rmean_off, running var at rvar_off
  float* stats;         // instance (S, B, c, 2), batch (S, c, 2): mean, 1/std
  const float* dout;    // (S, B, c, ph, pw), backward only
  float* out;           // forward: (S, B, c, ph, pw); backward: dy (S, B, c, h, w)
  float* grads;         // (S, param_row), backward_params only
  u64 param_row, w_off, b_off;
  u64 running_row, rmean_off, rvar_off;
  u32 students, batch, c, h, w, ph, pw;
  u32 kind;   // 0 instance, 1 batch, 2 none
  u32 train;     // 1 train mode, 0 eval mode
  u32 act_bf16;  // eval kernels only: bit 0 `out` is bf16, bit 1 the conv's x is bf16 (params.rs ACT_*)
  float eps, momentum;
};
static_assert(sizeof(NormParams) == 152, "NormParams must match src/backend/cuda/params.rs");

// The normalisation group a block works on: student s, channel ch, and the images b0 .. b0+nb.
struct Group {
  u64 s;
  u32 ch, b0, nb;
  u64 n;  // elements in the group: nb · h · w
};

__device__ __forceinline__ u64 group_count(const NormParams& p) {
  return p.kind == 1 ? (u64)p.students * p.c : (u64)p.students * p.batch * p.c;
}

__device__ __forceinline__ Group group_of(const NormParams& p, u64 g) {
  Group gr;
  if (p.kind == 1) {
    gr.s = g / p.c;
    gr.ch = g % p.c;
    gr.b0 = 0;
    gr.nb = p.batch;
  } else {
    gr.s = g / ((u64)p.batch * p.c);
    gr.ch = g % p.c;
    gr.b0 = (g / p.c) % p.batch;
    gr.nb = 1;
  }
  gr.n = (u64)gr.nb * p.h * p.w;
  return gr;
}

// Index of the (s, b, ch) plane in (S, B, c, ·, ·) tensors.
__device__ __forceinline__ u64 plane_of(const NormParams& p, u64 s, u32 b, u32 ch) { return (s * p.batch + b) * p.c + ch; }

__device__ __forceinline__ u64 stats_at(const NormParams& p, const Group& gr) {
  return p.kind == 1 ? (gr.s * p.c + gr.ch) * 2 : ((gr.s * p.batch + gr.b0) * p.c + gr.ch) * 2;
}

// Count, mean and sum of squared deviations of a set of values; two sets combine exactly by Chan
// et al.'s formula, so per-thread partials merge without a raw sum of squares.
struct Moments {
  float n, mean, m2;
};

__device__ __forceinline__ Moments chan(const Moments& a, const Moments& b) {
  const float n = a.n + b.n;
  if (n == 0.0f) return a;
  // __fdividef: a couple of ulp, and no IEEE-division subroutine call (whose stack frame ptxas
  // counts as a spill in this hot kernel).
  const float d = b.mean - a.mean, fb = __fdividef(b.n, n);
  return {n, a.mean + d * fb, a.m2 + b.m2 + d * d * a.n * fb};
}

// The moments of a block's values, every thread getting the same result. `scratch` is a
// __shared__ Moments[DDR_BLOCK / 32] owned by the caller.
__device__ __forceinline__ Moments block_moments(Moments v, Moments* scratch) {
  for (int o = 16; o > 0; o >>= 1) {
    const Moments other{__shfl_xor_sync(0xffffffffu, v.n, o), __shfl_xor_sync(0xffffffffu, v.mean, o),
                        __shfl_xor_sync(0xffffffffu, v.m2, o)};
    v = chan(v, other);
  }
  if (threadIdx.x % 32 == 0) scratch[threadIdx.x / 32] = v;
  __syncthreads();
  Moments t{0.0f, 0.0f, 0.0f};
  for (u32 w = 0; w < DDR_BLOCK / 32; ++w) t = chan(t, scratch[w]);
  __syncthreads();  // scratch may be reused right after
  return t;
}


// The moments of a warp's values, every lane getting the result.
__device__ __forceinline__ Moments warp_moments(Moments v) {
  for (int o = 16; o > 0; o >>= 1) {
    const Moments other{__shfl_xor_sync(0xffffffffu, v.n, o), __shfl_xor_sync(0xffffffffu, v.mean, o),
                        __shfl_xor_sync(0xffffffffu, v.m2, o)};
    v = chan(v, other);
  }
  return v;
}

// Moments of a thread's shifted sums: n values v, s1 = Σ(v − shift), s2 = Σ(v − shift)².
__device__ __forceinline__ Moments moments_of_sums(float n, float shift, float s1, float s2) {
  const float local_mean = n > 0.0f ? s1 / n : 0.0f;
  return {n, shift + local_mean, fmaxf(s2 - s1 * local_mean, 0.0f)};
}

// A group's (mean, 1/std) from its moments (biased variance, as PyTorch normalises).
__device__ __forceinline__ void mean_rstd(const NormParams& p, const Moments& m, float* mean, float* rstd) {
  *mean = m.mean;
  *rstd = 1.0f / sqrtf(m.m2 / m.n + p.eps);
}

// Writes a group's (mean, 1/std) and, for batch norm (train mode), moves the running statistics
// (unbiased variance). Called by one thread per group.
__device__ __forceinline__ void store_stats(const NormParams& p, const Group& gr, const Moments& m, float mean,
                                            float rstd) {
  p.stats[stats_at(p, gr)] = mean;
  p.stats[stats_at(p, gr) + 1] = rstd;
  if (p.kind == 1) {
    float* rm = p.running + gr.s * p.running_row + p.rmean_off + gr.ch;
    float* rv = p.running + gr.s * p.running_row + p.rvar_off + gr.ch;
    const float var = m.m2 / m.n;
    const float unbiased = m.n > 1.0f ? m.m2 / (m.n - 1.0f) : var;
    *rm = (1.0f - p.momentum) * *rm + p.momentum * mean;
    *rv = (1.0f - p.momentum) * *rv + p.momentum * unbiased;
  }
}

// Batch norm in eval mode: the running statistics as (mean, 1/std).
__device__ __forceinline__ void running_stats(const NormParams& p, u64 s, u32 ch, float* mean, float* rstd) {
  *mean = p.running[s * p.running_row + p.rmean_off + ch];
  *rstd = 1.0f / sqrtf(p.running[s * p.running_row + p.rvar_off + ch] + p.eps);
}

// Pooled outputs q ∈ [q0, q1) of one (s, b, c) plane, q = first, first + step, ...: the average of
// the four ReLU'd normalised inputs of each. Reads y rows 2·py and 2·py + 1 of output row py.
__device__ __forceinline__ void pool_plane(const NormParams& p, u64 plane, u32 q0, u32 q1, u32 first, u32 step,
                                           float mean, float rstd, float gamma, float beta, const FastDiv& d_pw) {
  const float* yp = p.y + plane * p.h * p.w;
  float* op = p.out + plane * p.ph * p.pw;
  for (u32 q = q0 + first; q < q1; q += step) {
    const u32 py = d_pw.div(q), px = q - py * p.pw;
    const float* v = yp + 2 * py * p.w + 2 * px;
    float acc = 0.0f;
    for (u32 dy = 0; dy < 2; ++dy)
      for (u32 dx = 0; dx < 2; ++dx) {
        const float z = p.kind == 2 ? v[dy * p.w + dx] : gamma * (v[dy * p.w + dx] - mean) * rstd + beta;
        acc += z > 0.0f ? z : 0.0f;
      }
    op[q] = 0.25f * acc;
  }
}

// Per-tile partial statistics a fused conv forward leaves (conv.cu conv3x3_forward_norm_*): for
// student s, M tile t (one block's rows [t·tile_m, (t+1)·tile_m) of the conv GEMM, m = b·h·w + pixel), channel
// ch and the j-th image the tile touches (b = t·tile_m / (h·w) + j): (count, mean, M2) at
// partials[(((s·m_tiles + t)·c + ch)·seg_max + j)·3]. `fused` = 1 when the conv kernel already
// wrote every output (no norm pass follows).
struct NormPartials {
  float* partials;  // (S, m_tiles, c, seg_max, 3)
  u32 tile_m, m_tiles, seg_max, fused;
  u32 m_sub;  // conv register tiles (BM rows each) per M tile: tile_m = m_sub · BM
  u32 unused;
};

__device__ __forceinline__ float* partial_at(const NormPartials& q, const NormParams& p, u64 s, u32 t, u32 ch, u32 j) {
  return q.partials + ((((u64)s * q.m_tiles + t) * p.c + ch) * q.seg_max + j) * 3;
}

// The norm pass after a fused conv forward (norm.cu norm_relu_pool_forward_partials).
struct NormPartialsParams {
  NormParams norm;
  NormPartials part;
};
static_assert(sizeof(NormPartialsParams) == 184, "NormPartialsParams must match src/backend/cuda/params.rs");
