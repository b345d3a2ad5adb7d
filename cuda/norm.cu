// norm.cu: the fused block tail of ConvNet: norm (instance, batch or none) → ReLU → 2×2 average
// pool, forward and backward, batched over students. Instance norm normalises each (s, b, c) plane
// over H×W; batch norm each (s, c) over (B, H, W) with running statistics (momentum, unbiased
// running variance, eval mode uses them). One block per normalisation group; statistics by two-pass
// block sums (mean first, then the centred variance) so large activations do not cancel.
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
  u32 train;  // 1 train mode, 0 eval mode
  u32 unused;
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

// Offset in (S, B, c, h, w) of the group's element e.
__device__ __forceinline__ u64 elem_at(const NormParams& p, const Group& gr, u64 e) {
  const u64 hw = (u64)p.h * p.w;
  const u64 b = gr.b0 + e / hw;
  return ((gr.s * p.batch + b) * p.c + gr.ch) * hw + e % hw;
}

// Offset in (S, B, c, ph, pw) of the pooled output that element e feeds, or ~0 when the 2×2
// pooling window drops it (odd h or w).
__device__ __forceinline__ u64 pooled_at(const NormParams& p, const Group& gr, u64 e) {
  const u64 hw = (u64)p.h * p.w;
  const u64 b = gr.b0 + e / hw;
  const u32 yy = (u32)((e % hw) / p.w), xx = (u32)(e % p.w);
  const u32 py = yy / 2, px = xx / 2;
  if (py >= p.ph || px >= p.pw) return ~0ull;
  return (((gr.s * p.batch + b) * p.c + gr.ch) * p.ph + py) * p.pw + px;
}

__device__ __forceinline__ u64 stats_at(const NormParams& p, const Group& gr) {
  return p.kind == 1 ? (gr.s * p.c + gr.ch) * 2 : ((gr.s * p.batch + gr.b0) * p.c + gr.ch) * 2;
}

extern "C" __global__ void __launch_bounds__(DDR_BLOCK) norm_relu_pool_forward(const NormParams p) {
  __shared__ float scratch[DDR_BLOCK / 32];
  const u64 groups = group_count(p);
  for (u64 g = blockIdx.x; g < groups; g += gridDim.x) {
    const Group gr = group_of(p, g);
    float mean = 0.0f, rstd = 1.0f, gamma = 1.0f, beta = 0.0f;
    if (p.kind != 2) {
      gamma = p.params[gr.s * p.param_row + p.w_off + gr.ch];
      beta = p.params[gr.s * p.param_row + p.b_off + gr.ch];
      if (p.kind == 1 && !p.train) {
        mean = p.running[gr.s * p.running_row + p.rmean_off + gr.ch];
        rstd = 1.0f / sqrtf(p.running[gr.s * p.running_row + p.rvar_off + gr.ch] + p.eps);
      } else {
        float sum = 0.0f;
        for (u64 e = threadIdx.x; e < gr.n; e += blockDim.x) sum += p.y[elem_at(p, gr, e)];
        mean = block_sum(sum, scratch) / (float)gr.n;
        float sq = 0.0f;
        for (u64 e = threadIdx.x; e < gr.n; e += blockDim.x) {
          const float d = p.y[elem_at(p, gr, e)] - mean;
          sq += d * d;
        }
        const float var = block_sum(sq, scratch) / (float)gr.n;
        rstd = 1.0f / sqrtf(var + p.eps);
        if (threadIdx.x == 0) {
          p.stats[stats_at(p, gr)] = mean;
          p.stats[stats_at(p, gr) + 1] = rstd;
          if (p.kind == 1) {
            float* rm = p.running + gr.s * p.running_row + p.rmean_off + gr.ch;
            float* rv = p.running + gr.s * p.running_row + p.rvar_off + gr.ch;
            const float unbiased = gr.n > 1 ? var * (float)gr.n / (float)(gr.n - 1) : var;
            *rm = (1.0f - p.momentum) * *rm + p.momentum * mean;
            *rv = (1.0f - p.momentum) * *rv + p.momentum * unbiased;
          }
        }
      }
    }
    // One thread per pooled output of the group: average of the four ReLU'd normalised inputs.
    const u64 pooled = (u64)gr.nb * p.ph * p.pw;
    for (u64 q = threadIdx.x; q < pooled; q += blockDim.x) {
      const u64 b = gr.b0 + q / ((u64)p.ph * p.pw);
      const u32 py = (u32)((q / p.pw) % p.ph), px = (u32)(q % p.pw);
      const float* plane = p.y + ((gr.s * p.batch + b) * p.c + gr.ch) * p.h * p.w;
      float acc = 0.0f;
      for (u32 dy = 0; dy < 2; ++dy)
        for (u32 dx = 0; dx < 2; ++dx) {
          const float v = plane[(2 * py + dy) * p.w + 2 * px + dx];
          const float z = p.kind == 2 ? v : gamma * (v - mean) * rstd + beta;
          acc += z > 0.0f ? z : 0.0f;
        }
      p.out[(((gr.s * p.batch + b) * p.c + gr.ch) * p.ph + py) * p.pw + px] = 0.25f * acc;
    }
  }
}

// d loss / d z for element e (z the pre-ReLU normalised value), and its x̂.
__device__ __forceinline__ float dz_of(const NormParams& p, const Group& gr, u64 e, float mean, float rstd,
                                       float gamma, float beta, float* xhat) {
  const float v = p.y[elem_at(p, gr, e)];
  *xhat = (v - mean) * rstd;
  const float z = p.kind == 2 ? v : gamma * *xhat + beta;
  const u64 o = pooled_at(p, gr, e);
  return (z > 0.0f && o != ~0ull) ? 0.25f * p.dout[o] : 0.0f;
}

// dy = rstd · (dx̂ − mean(dx̂) − x̂ · mean(dx̂ · x̂)) with dx̂ = γ · dz, per normalisation group.
extern "C" __global__ void __launch_bounds__(DDR_BLOCK) norm_relu_pool_backward(const NormParams p) {
  __shared__ float scratch[DDR_BLOCK / 32];
  const u64 groups = group_count(p);
  for (u64 g = blockIdx.x; g < groups; g += gridDim.x) {
    const Group gr = group_of(p, g);
    float mean = 0.0f, rstd = 1.0f, gamma = 1.0f, beta = 0.0f;
    if (p.kind != 2) {
      mean = p.stats[stats_at(p, gr)];
      rstd = p.stats[stats_at(p, gr) + 1];
      gamma = p.params[gr.s * p.param_row + p.w_off + gr.ch];
      beta = p.params[gr.s * p.param_row + p.b_off + gr.ch];
    }
    float sum_d = 0.0f, sum_dx = 0.0f;
    if (p.kind != 2) {
      for (u64 e = threadIdx.x; e < gr.n; e += blockDim.x) {
        float xh;
        const float d = gamma * dz_of(p, gr, e, mean, rstd, gamma, beta, &xh);
        sum_d += d;
        sum_dx += d * xh;
      }
      sum_d = block_sum(sum_d, scratch) / (float)gr.n;
      sum_dx = block_sum(sum_dx, scratch) / (float)gr.n;
    }
    for (u64 e = threadIdx.x; e < gr.n; e += blockDim.x) {
      float xh;
      const float dz = dz_of(p, gr, e, mean, rstd, gamma, beta, &xh);
      p.out[elem_at(p, gr, e)] = p.kind == 2 ? dz : rstd * (gamma * dz - sum_d - xh * sum_dx);
    }
  }
}

// dγ[c] = Σ_{b,h,w} dz · x̂, dβ[c] = Σ dz, one block per (s, c); not launched for kind none.
extern "C" __global__ void __launch_bounds__(DDR_BLOCK) norm_relu_pool_backward_params(const NormParams p) {
  __shared__ float scratch[DDR_BLOCK / 32];
  const u64 groups = (u64)p.students * p.c;
  for (u64 g = blockIdx.x; g < groups; g += gridDim.x) {
    const u64 s = g / p.c;
    const u32 ch = g % p.c;
    const float gamma = p.params[s * p.param_row + p.w_off + ch];
    const float beta = p.params[s * p.param_row + p.b_off + ch];
    float dg = 0.0f, db = 0.0f;
    for (u32 b = 0; b < p.batch; ++b) {
      Group gr;
      gr.s = s;
      gr.ch = ch;
      gr.b0 = p.kind == 1 ? 0 : b;
      gr.nb = p.kind == 1 ? p.batch : 1;
      gr.n = (u64)gr.nb * p.h * p.w;
      const float mean = p.stats[stats_at(p, gr)], rstd = p.stats[stats_at(p, gr) + 1];
      const u64 hw = (u64)p.h * p.w;
      const u64 first = p.kind == 1 ? (u64)b * hw : 0;  // batch groups span all images
      for (u64 k = threadIdx.x; k < hw; k += blockDim.x) {
        float xh;
        const float dz = dz_of(p, gr, first + k, mean, rstd, gamma, beta, &xh);
        dg += dz * xh;
        db += dz;
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

#ifdef DDR_HOST_EMU
extern "C" void emu_norm_relu_pool_forward(const unsigned* grid, const unsigned* block, const void* params) {
  ddr_emu::launch(norm_relu_pool_forward, grid, block, params);
}
extern "C" void emu_norm_relu_pool_backward(const unsigned* grid, const unsigned* block, const void* params) {
  ddr_emu::launch(norm_relu_pool_backward, grid, block, params);
}
extern "C" void emu_norm_relu_pool_backward_params(const unsigned* grid, const unsigned* block, const void* params) {
  ddr_emu::launch(norm_relu_pool_backward_params, grid, block, params);
}
#endif
