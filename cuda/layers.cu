// layers.cu: the standalone layer-list ops of the non-ConvNet students (src/model/layers.rs),
// batched over students, each matching its CPU reference in src/ops/<op>/cpu.rs:
// - norm_layer_*: GroupNorm(groups, c) (instance norm: groups = c) and BatchNorm2d (train: batch
//   statistics, running statistics moved by the momentum with the unbiased variance; eval: the
//   running statistics). One block per normalisation group ("pair": (image, group) or (student,
//   channel)); statistics in one pass of shifted per-thread sums merged by Chan's formula
//   (norm_common.cuh), so a large mean does not cancel.
// - relu_*: elementwise.
// - pool_*: max and average pooling, k×k window, stride, zero padding (average: divide by k², as
//   PyTorch's count_include_pad); one thread per output forward, one per input backward, which
//   gathers from the windows covering it in the reference's row-major order (so the sums are the
//   reference's, bit for bit) and, for max pooling, takes a window's gradient exactly when it is
//   that window's FIRST maximum in row-major order, the reference's tie rule.
#include "norm_common.cuh"

struct NormLayerParams {
  const float* x;       // (S, B, c, h, w)
  const float* params;  // (S, param_row): γ at w_off, β at b_off (c each)
  float* running;       // (S, running_row): running mean at rmean_off, var at rvar_off (batch norm)
  float* stats;         // group (S, B, groups, 2), batch (S, c, 2): mean, 1/std
  const float* dy;      // (S, B, c, h, w), backward only
  float* out;           // forward y, backward dx: (S, B, c, h, w)
  float* grads;         // (S, param_row), backward_params only
  u64 param_row, w_off, b_off;
  u64 running_row, rmean_off, rvar_off;
  u32 students, batch, c, hw;
  u32 groups;  // group norm: groups per image; 0: batch norm
  u32 train;   // 1 train mode, 0 eval mode (batch norm only)
  float eps, momentum;
};
static_assert(sizeof(NormLayerParams) == 136, "NormLayerParams must match src/backend/cuda/ops/layers.rs");

// The elements of pair k: `nb` runs of `run` contiguous elements, run j at x + first + j·stride;
// channel of element e of run j: ch0 + e / hw.
struct Pair {
  u64 first, stride;
  u32 nb, run, ch0;
  u64 s;  // the student
};

__device__ __forceinline__ u64 pair_count(const NormLayerParams& p) {
  return p.groups ? (u64)p.students * p.batch * p.groups : (u64)p.students * p.c;
}

__device__ __forceinline__ Pair pair_of(const NormLayerParams& p, u64 k) {
  Pair q;
  if (p.groups) {
    // Group norm: one image's channels [g·per, (g+1)·per) are contiguous.
    const u32 per = p.c / p.groups;
    const u64 img = k / p.groups;
    q.ch0 = (u32)(k % p.groups) * per;
    q.first = (img * p.c + q.ch0) * p.hw;
    q.stride = 0;
    q.nb = 1;
    q.run = per * p.hw;
    q.s = img / p.batch;
  } else {
    // Batch norm: channel ch's plane in each of the student's B images.
    q.s = k / p.c;
    q.ch0 = (u32)(k % p.c);
    q.first = (q.s * p.batch * p.c + q.ch0) * p.hw;
    q.stride = (u64)p.c * p.hw;
    q.nb = p.batch;
    q.run = p.hw;
  }
  return q;
}

// (mean, biased var) of a pair: its moments over the block (every thread gets them).
__device__ __forceinline__ void pair_stats(const Pair& q, const float* x, float* mean, float* var, Moments* scratch) {
  const float shift = x[q.first];
  float n = 0.0f, s1 = 0.0f, s2 = 0.0f;
  for (u32 j = 0; j < q.nb; ++j) {
    const float* r = x + q.first + j * q.stride;
    for (u32 e = threadIdx.x; e < q.run; e += blockDim.x) {
      const float d = r[e] - shift;
      s1 += d;
      s2 += d * d;
      n += 1.0f;
    }
  }
  const Moments m = block_moments(moments_of_sums(n, shift, s1, s2), scratch);
  *mean = m.mean;
  *var = m.m2 / m.n;
}

extern "C" __global__ void __launch_bounds__(DDR_BLOCK) norm_layer_forward(const NormLayerParams p) {
  __shared__ Moments scratch[DDR_BLOCK / 32];
  const u64 pairs = pair_count(p);
  const FastDiv d_hw(p.hw);
  for (u64 k = blockIdx.x; k < pairs; k += gridDim.x) {
    const Pair q = pair_of(p, k);
    float mean, var;
    if (p.groups == 0 && !p.train) {
      mean = p.running[q.s * p.running_row + p.rmean_off + q.ch0];
      var = p.running[q.s * p.running_row + p.rvar_off + q.ch0];
    } else {
      pair_stats(q, p.x, &mean, &var, scratch);
      if (p.groups == 0 && threadIdx.x == 0) {
        float* rm = p.running + q.s * p.running_row + p.rmean_off + q.ch0;
        float* rv = p.running + q.s * p.running_row + p.rvar_off + q.ch0;
        const float n = (float)q.nb * q.run;
        const float unbiased = n > 1.0f ? var * n / (n - 1.0f) : var;
        *rm = (1.0f - p.momentum) * *rm + p.momentum * mean;
        *rv = (1.0f - p.momentum) * *rv + p.momentum * unbiased;
      }
    }
    const float rstd = 1.0f / sqrtf(var + p.eps);
    if (threadIdx.x == 0) {
      p.stats[2 * k] = mean;
      p.stats[2 * k + 1] = rstd;
    }
    const float* prow = p.params + q.s * p.param_row;
    for (u32 j = 0; j < q.nb; ++j) {
      const u64 at = q.first + j * q.stride;
      for (u32 e = threadIdx.x; e < q.run; e += blockDim.x) {
        const u32 ch = q.ch0 + d_hw.div(e);
        p.out[at + e] = (p.x[at + e] - mean) * rstd * prow[p.w_off + ch] + prow[p.b_off + ch];
      }
    }
  }
}

// dx = rstd · (dy·γ − mean(dy·γ) − x̂ · mean(dy·γ·x̂)) over each pair (train-mode semantics, the
// saved statistics of the forward).
extern "C" __global__ void __launch_bounds__(DDR_BLOCK) norm_layer_backward(const NormLayerParams p) {
  __shared__ float scratch[DDR_BLOCK / 32];
  const u64 pairs = pair_count(p);
  const FastDiv d_hw(p.hw);
  for (u64 k = blockIdx.x; k < pairs; k += gridDim.x) {
    const Pair q = pair_of(p, k);
    const float mean = p.stats[2 * k], rstd = p.stats[2 * k + 1];
    const float* gamma = p.params + q.s * p.param_row + p.w_off;
    float sg = 0.0f, sgx = 0.0f;
    for (u32 j = 0; j < q.nb; ++j) {
      const u64 at = q.first + j * q.stride;
      for (u32 e = threadIdx.x; e < q.run; e += blockDim.x) {
        const float g = p.dy[at + e] * gamma[q.ch0 + d_hw.div(e)];
        sg += g;
        sgx += g * ((p.x[at + e] - mean) * rstd);
      }
    }
    const float n = (float)q.nb * q.run;
    sg = block_sum(sg, scratch) / n;
    sgx = block_sum(sgx, scratch) / n;
    for (u32 j = 0; j < q.nb; ++j) {
      const u64 at = q.first + j * q.stride;
      for (u32 e = threadIdx.x; e < q.run; e += blockDim.x) {
        const float xh = (p.x[at + e] - mean) * rstd;
        p.out[at + e] = rstd * (p.dy[at + e] * gamma[q.ch0 + d_hw.div(e)] - sg - xh * sgx);
      }
    }
  }
}

// dγ[c] = Σ_{b,h,w} dy · x̂, dβ[c] = Σ dy, one block per (student, channel); overwrites both.
extern "C" __global__ void __launch_bounds__(DDR_BLOCK) norm_layer_backward_params(const NormLayerParams p) {
  __shared__ float scratch[DDR_BLOCK / 32];
  const u64 n_sc = (u64)p.students * p.c;
  const u32 per = p.groups ? p.c / p.groups : 1;
  for (u64 k = blockIdx.x; k < n_sc; k += gridDim.x) {
    const u64 s = k / p.c;
    const u32 ch = k % p.c;
    float dg = 0.0f, db = 0.0f;
    for (u32 b = 0; b < p.batch; ++b) {
      // The pair holding (s, b, ch): its saved statistics.
      const u64 pair = p.groups ? (s * p.batch + b) * p.groups + ch / per : k;
      const float mean = p.stats[2 * pair], rstd = p.stats[2 * pair + 1];
      const u64 at = ((s * p.batch + b) * p.c + ch) * p.hw;
      for (u32 e = threadIdx.x; e < p.hw; e += blockDim.x) {
        const float d = p.dy[at + e];
        dg += d * ((p.x[at + e] - mean) * rstd);
        db += d;
      }
    }
    dg = block_sum(dg, scratch);
    db = block_sum(db, scratch);
    if (threadIdx.x == 0) {
      p.grads[s * p.param_row + p.w_off + ch] = dg;
      p.grads[s * p.param_row + p.b_off + ch] = db;
    }
  }
}

struct ReluParams {
  const float* x;   // forward: x; backward: the forward's output y (same length n)
  const float* dy;  // backward only (n)
  float* out;       // forward y, backward dx (n)
  u64 n;
};
static_assert(sizeof(ReluParams) == 32, "ReluParams must match src/backend/cuda/ops/layers.rs");

extern "C" __global__ void __launch_bounds__(DDR_BLOCK) relu_forward(const ReluParams p) {
  for (u64 i = grid_start(); i < p.n; i += grid_step()) p.out[i] = fmaxf(p.x[i], 0.0f);
}

// dx = dy where y > 0 (PyTorch's subgradient 0 at 0).
extern "C" __global__ void __launch_bounds__(DDR_BLOCK) relu_backward(const ReluParams p) {
  for (u64 i = grid_start(); i < p.n; i += grid_step()) p.out[i] = p.x[i] > 0.0f ? p.dy[i] : 0.0f;
}

struct PoolParams {
  const float* x;   // (planes, h, w)
  const float* dy;  // (planes, oh, ow), backward only
  float* out;       // forward y (planes, oh, ow); backward dx (planes, h, w)
  u64 planes;
  u32 h, w, oh, ow, k, stride, pad;
  u32 kind;  // 0 max, 1 average
};
static_assert(sizeof(PoolParams) == 64, "PoolParams must match src/backend/cuda/ops/layers.rs");

// Input rows (or columns) [lo, hi) of window o: [o·stride − pad, + k) clipped to [0, n).
__device__ __forceinline__ void window(const PoolParams& p, u32 o, u32 n, u32* lo, u32* hi) {
  const int a = (int)(o * p.stride) - (int)p.pad;
  *lo = a > 0 ? (u32)a : 0u;
  *hi = a + (int)p.k < (int)n ? (u32)(a + (int)p.k) : n;
}

// Index within the plane of window (oy, ox)'s first maximum in row-major order.
__device__ __forceinline__ u32 argmax_of(const PoolParams& p, const float* xp, u32 oy, u32 ox) {
  u32 y0, y1, x0, x1;
  window(p, oy, p.h, &y0, &y1);
  window(p, ox, p.w, &x0, &x1);
  u32 best = y0 * p.w + x0;
  float v = xp[best];
  for (u32 iy = y0; iy < y1; ++iy)
    for (u32 ix = x0; ix < x1; ++ix)
      if (xp[iy * p.w + ix] > v) {
        v = xp[iy * p.w + ix];
        best = iy * p.w + ix;
      }
  return best;
}

extern "C" __global__ void __launch_bounds__(DDR_BLOCK) pool_forward(const PoolParams p) {
  const u32 ohw = p.oh * p.ow;
  const u64 n = p.planes * ohw;
  const float area = (float)(p.k * p.k);
  for (u64 i = grid_start(); i < n; i += grid_step()) {
    const u64 plane = i / ohw;
    const u32 q = (u32)(i - plane * ohw), oy = q / p.ow, ox = q % p.ow;
    const float* xp = p.x + plane * p.h * p.w;
    u32 y0, y1, x0, x1;
    window(p, oy, p.h, &y0, &y1);
    window(p, ox, p.w, &x0, &x1);
    // Max starts from a real pixel (every window holds one: pad ≤ k/2), so an all −∞ window gives −∞.
    float acc = p.kind == 0 ? xp[y0 * p.w + x0] : 0.0f;
    for (u32 iy = y0; iy < y1; ++iy)
      for (u32 ix = x0; ix < x1; ++ix) acc = p.kind == 0 ? fmaxf(acc, xp[iy * p.w + ix]) : acc + xp[iy * p.w + ix];
    p.out[i] = p.kind == 0 ? acc : acc / area;
  }
}

// Outputs o whose window covers input i along one axis: o·stride − pad ≤ i < o·stride − pad + k,
// 0 ≤ o < n_out; [lo, hi).
__device__ __forceinline__ void covering(const PoolParams& p, u32 i, u32 n_out, u32* lo, u32* hi) {
  const int top = (int)i + (int)p.pad;  // o·stride ≤ top and o·stride > top − k
  const int first = top - (int)p.k + 1 <= 0 ? 0 : (top - (int)p.k + (int)p.stride) / (int)p.stride;
  const int last = top / (int)p.stride;  // top ≥ 0
  *lo = (u32)first;
  *hi = last + 1 < (int)n_out ? (u32)(last + 1) : n_out;
}

// One block per input plane (grid-stride over planes): no 64-bit division per element.
extern "C" __global__ void __launch_bounds__(DDR_BLOCK) pool_backward(const PoolParams p) {
  const u32 hw = p.h * p.w;
  const FastDiv d_w(p.w);
  const float area = (float)(p.k * p.k);
  for (u64 plane = blockIdx.x; plane < p.planes; plane += gridDim.x) {
    const float* xp = p.x + plane * hw;
    const float* gp = p.dy + plane * p.oh * p.ow;
    for (u32 e = threadIdx.x; e < hw; e += blockDim.x) {
      const u32 iy = d_w.div(e), ix = e - iy * p.w;
      u32 oy0, oy1, ox0, ox1;
      covering(p, iy, p.oh, &oy0, &oy1);
      covering(p, ix, p.ow, &ox0, &ox1);
      float acc = 0.0f;
      if (p.kind == 1) {
        for (u32 oy = oy0; oy < oy1; ++oy)
          for (u32 ox = ox0; ox < ox1; ++ox) acc += gp[oy * p.ow + ox] / area;
      } else {
        for (u32 oy = oy0; oy < oy1; ++oy)
          for (u32 ox = ox0; ox < ox1; ++ox)
            if (argmax_of(p, xp, oy, ox) == e) acc += gp[oy * p.ow + ox];
      }
      p.out[plane * hw + e] = acc;
    }
  }
}

#ifdef DDR_HOST_EMU
extern "C" void emu_norm_layer_forward(const unsigned* grid, const unsigned* block, const void* params) {
  ddr_emu::launch(norm_layer_forward, grid, block, params);
}
extern "C" void emu_norm_layer_backward(const unsigned* grid, const unsigned* block, const void* params) {
  ddr_emu::launch(norm_layer_backward, grid, block, params);
}
extern "C" void emu_norm_layer_backward_params(const unsigned* grid, const unsigned* block, const void* params) {
  ddr_emu::launch(norm_layer_backward_params, grid, block, params);
}
extern "C" void emu_relu_forward(const unsigned* grid, const unsigned* block, const void* params) {
  ddr_emu::launch(relu_forward, grid, block, params);
}
extern "C" void emu_relu_backward(const unsigned* grid, const unsigned* block, const void* params) {
  ddr_emu::launch(relu_backward, grid, block, params);
}
extern "C" void emu_pool_forward(const unsigned* grid, const unsigned* block, const void* params) {
  ddr_emu::launch(pool_forward, grid, block, params);
}
extern "C" void emu_pool_backward(const unsigned* grid, const unsigned* block, const void* params) {
  ddr_emu::launch(pool_backward, grid, block, params);
}
#endif
