// norm.cu: the fused block tail of ConvNet: norm (instance, batch or none) → ReLU → 2×2 average
// pool, forward and backward, batched over students. Instance norm normalises each (s, b, c) plane
// over H×W; batch norm each (s, c) over (B, H, W) with running statistics (momentum, unbiased
// running variance, eval mode uses them). One block per normalisation group, walking it plane by
// plane (no division per element: pooled and pixel coordinates come from precomputed divisors);
// statistics in one pass, shifted per-thread sums merged by Chan's formula (see Moments), so large
// activations do not cancel.
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

extern "C" __global__ void __launch_bounds__(DDR_BLOCK) norm_relu_pool_forward(const NormParams p) {
  __shared__ Moments scratch[DDR_BLOCK / 32];
  const u32 hw = p.h * p.w, phw = p.ph * p.pw;
  const FastDiv d_pw(p.pw);
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
        // One pass over the group, plane by plane: per-thread sums of (v − shift) and its square
        // (shift = one of the values, so the sums do not cancel however large the mean is),
        // turned into per-thread moments and combined over the block by Chan's formula.
        const float shift = p.y[plane_of(p, gr.s, gr.b0, gr.ch) * hw];
        float n = 0.0f, s1 = 0.0f, s2 = 0.0f;
        for (u32 b = gr.b0; b < gr.b0 + gr.nb; ++b) {
          const float* yp = p.y + plane_of(p, gr.s, b, gr.ch) * hw;
          for (u32 e = threadIdx.x; e < hw; e += blockDim.x) {
            const float d = yp[e] - shift;
            s1 += d;
            s2 += d * d;
            n += 1.0f;
          }
        }
        const float local_mean = n > 0.0f ? s1 / n : 0.0f;
        Moments m{n, shift + local_mean, fmaxf(s2 - s1 * local_mean, 0.0f)};
        m = block_moments(m, scratch);
        mean = m.mean;
        const float var = m.m2 / m.n;
        rstd = 1.0f / sqrtf(var + p.eps);
        if (threadIdx.x == 0) {
          p.stats[stats_at(p, gr)] = mean;
          p.stats[stats_at(p, gr) + 1] = rstd;
          if (p.kind == 1) {
            float* rm = p.running + gr.s * p.running_row + p.rmean_off + gr.ch;
            float* rv = p.running + gr.s * p.running_row + p.rvar_off + gr.ch;
            const float unbiased = m.n > 1.0f ? m.m2 / (m.n - 1.0f) : var;
            *rm = (1.0f - p.momentum) * *rm + p.momentum * mean;
            *rv = (1.0f - p.momentum) * *rv + p.momentum * unbiased;
          }
        }
      }
    }
    // One thread per pooled output: average of the four ReLU'd normalised inputs.
    for (u32 b = gr.b0; b < gr.b0 + gr.nb; ++b) {
      const u64 plane = plane_of(p, gr.s, b, gr.ch);
      const float* yp = p.y + plane * hw;
      float* op = p.out + plane * phw;
      for (u32 q = threadIdx.x; q < phw; q += blockDim.x) {
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
  }
}

// d loss / d z of element e of a plane (z the pre-ReLU normalised value), and its x̂. yp is the
// (h, w) input plane, dp the (ph, pw) pooled-gradient plane; d_w divides by w.
__device__ __forceinline__ float dz_of(const NormParams& p, const float* yp, const float* dp, const FastDiv& d_w, u32 e,
                                       float mean, float rstd, float gamma, float beta, float* xhat) {
  const float v = yp[e];
  *xhat = (v - mean) * rstd;
  const float z = p.kind == 2 ? v : gamma * *xhat + beta;
  const u32 yy = d_w.div(e), xx = e - yy * p.w, py = yy / 2, px = xx / 2;
  // Rows and columns past 2·ph, 2·pw (odd h or w) feed no pooled output.
  return (z > 0.0f && py < p.ph && px < p.pw) ? 0.25f * dp[py * p.pw + px] : 0.0f;
}

// dy = rstd · (dx̂ − mean(dx̂) − x̂ · mean(dx̂ · x̂)) with dx̂ = γ · dz, per normalisation group.
extern "C" __global__ void __launch_bounds__(DDR_BLOCK) norm_relu_pool_backward(const NormParams p) {
  __shared__ float scratch[DDR_BLOCK / 32];
  const u32 hw = p.h * p.w, phw = p.ph * p.pw;
  const FastDiv d_w(p.w);
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
      for (u32 b = gr.b0; b < gr.b0 + gr.nb; ++b) {
        const u64 plane = plane_of(p, gr.s, b, gr.ch);
        const float *yp = p.y + plane * hw, *dp = p.dout + plane * phw;
        for (u32 e = threadIdx.x; e < hw; e += blockDim.x) {
          float xh;
          const float d = gamma * dz_of(p, yp, dp, d_w, e, mean, rstd, gamma, beta, &xh);
          sum_d += d;
          sum_dx += d * xh;
        }
      }
      sum_d = block_sum(sum_d, scratch) / (float)gr.n;
      sum_dx = block_sum(sum_dx, scratch) / (float)gr.n;
    }
    for (u32 b = gr.b0; b < gr.b0 + gr.nb; ++b) {
      const u64 plane = plane_of(p, gr.s, b, gr.ch);
      const float *yp = p.y + plane * hw, *dp = p.dout + plane * phw;
      float* dyp = p.out + plane * hw;
      for (u32 e = threadIdx.x; e < hw; e += blockDim.x) {
        float xh;
        const float dz = dz_of(p, yp, dp, d_w, e, mean, rstd, gamma, beta, &xh);
        dyp[e] = p.kind == 2 ? dz : rstd * (gamma * dz - sum_d - xh * sum_dx);
      }
    }
  }
}

// dγ[c] = Σ_{b,h,w} dz · x̂, dβ[c] = Σ dz, one block per (s, c); not launched for kind none.
extern "C" __global__ void __launch_bounds__(DDR_BLOCK) norm_relu_pool_backward_params(const NormParams p) {
  __shared__ float scratch[DDR_BLOCK / 32];
  const u32 hw = p.h * p.w, phw = p.ph * p.pw;
  const FastDiv d_w(p.w);
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
      gr.n = (u64)gr.nb * hw;
      const float mean = p.stats[stats_at(p, gr)], rstd = p.stats[stats_at(p, gr) + 1];
      const u64 plane = plane_of(p, s, b, ch);
      const float *yp = p.y + plane * hw, *dp = p.dout + plane * phw;
      for (u32 e = threadIdx.x; e < hw; e += blockDim.x) {
        float xh;
        const float dz = dz_of(p, yp, dp, d_w, e, mean, rstd, gamma, beta, &xh);
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
