// norm.cu: the fused block tail of ConvNet: norm (instance, batch or none) → ReLU → 2×2 average
// pool, forward and backward, batched over students. Instance norm normalises each (s, b, c) plane
// over H×W; batch norm each (s, c) over (B, H, W) with running statistics (momentum, unbiased
// running variance, eval mode uses them). One block per normalisation group, walking it plane by
// plane (no division per element: pooled and pixel coordinates come from precomputed divisors);
// statistics in one pass, shifted per-thread sums merged by Chan's formula (see Moments), so large
// activations do not cancel.
#include "norm_common.cuh"

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
        running_stats(p, gr.s, gr.ch, &mean, &rstd);
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
        const Moments m = block_moments(moments_of_sums(n, shift, s1, s2), scratch);
        mean_rstd(p, m, &mean, &rstd);
        if (threadIdx.x == 0) store_stats(p, gr, m, mean, rstd);
      }
    }
    // One thread per pooled output: average of the four ReLU'd normalised inputs.
    for (u32 b = gr.b0; b < gr.b0 + gr.nb; ++b)
      pool_plane(p, plane_of(p, gr.s, b, gr.ch), 0, phw, threadIdx.x, blockDim.x, mean, rstd, gamma, beta, d_pw);
  }
}

// The norm pass after a fused conv forward that could not finish the groups itself (conv.cu
// conv3x3_forward_norm_*): the statistics come from the conv epilogue's per-tile partials, merged
// by Chan's formula, instead of a pass over y; then one pass normalises, ReLUs and pools. Batch
// norm in eval mode and no norm need no statistics; eval-mode batch norm still fills `stats` with
// the running statistics, as the CPU reference does.
extern "C" __global__ void __launch_bounds__(DDR_BLOCK) norm_relu_pool_forward_partials(const NormPartialsParams q) {
  __shared__ Moments scratch[DDR_BLOCK / 32];
  const NormParams& p = q.norm;
  const u32 hw = p.h * p.w, phw = p.ph * p.pw, M = p.batch * hw;
  const FastDiv d_pw(p.pw);
  const u64 groups = group_count(p);
  for (u64 g = blockIdx.x; g < groups; g += gridDim.x) {
    const Group gr = group_of(p, g);
    float mean = 0.0f, rstd = 1.0f, gamma = 1.0f, beta = 0.0f;
    if (p.kind != 2) {
      gamma = p.params[gr.s * p.param_row + p.w_off + gr.ch];
      beta = p.params[gr.s * p.param_row + p.b_off + gr.ch];
      if (p.kind == 1 && !p.train) {
        running_stats(p, gr.s, gr.ch, &mean, &rstd);
        if (threadIdx.x == 0) {
          p.stats[stats_at(p, gr)] = mean;
          p.stats[stats_at(p, gr) + 1] = rstd;
        }
      } else {
        // The tiles holding rows of images b0 .. b0 + nb, and in each the segments of those images.
        const u32 t0 = gr.b0 * hw / q.part.tile_m, t1 = ((gr.b0 + gr.nb) * hw - 1) / q.part.tile_m;
        Moments m{0.0f, 0.0f, 0.0f};
        for (u32 t = t0 + threadIdx.x; t <= t1; t += blockDim.x) {
          const u32 m0 = t * q.part.tile_m, m1 = m0 + q.part.tile_m < M ? m0 + q.part.tile_m : M;
          const u32 bf = m0 / hw, bl = (m1 - 1) / hw;
          for (u32 b = bf > gr.b0 ? bf : gr.b0; b <= bl && b < gr.b0 + gr.nb; ++b) {
            const float* pp = partial_at(q.part, p, gr.s, t, gr.ch, b - bf);
            m = chan(m, Moments{pp[0], pp[1], pp[2]});
          }
        }
        m = block_moments(m, scratch);
        mean_rstd(p, m, &mean, &rstd);
        if (threadIdx.x == 0) store_stats(p, gr, m, mean, rstd);
      }
    }
    for (u32 b = gr.b0; b < gr.b0 + gr.nb; ++b)
      pool_plane(p, plane_of(p, gr.s, b, gr.ch), 0, phw, threadIdx.x, blockDim.x, mean, rstd, gamma, beta, d_pw);
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

// Σ dz and Σ dz · x̂ over planes [b0, b0 + nb) of (s, ch), every thread getting both.
struct DzSums {
  float dz, dz_xhat;
};
__device__ __forceinline__ DzSums dz_sums(const NormParams& p, u64 s, u32 ch, u32 b0, u32 nb, float mean, float rstd,
                                          float gamma, float beta, const FastDiv& d_w, float* scratch) {
  const u32 hw = p.h * p.w, phw = p.ph * p.pw;
  float sd = 0.0f, sdx = 0.0f;
  for (u32 b = b0; b < b0 + nb; ++b) {
    const u64 plane = plane_of(p, s, b, ch);
    const float *yp = p.y + plane * hw, *dp = p.dout + plane * phw;
    for (u32 e = threadIdx.x; e < hw; e += blockDim.x) {
      float xh;
      const float dz = dz_of(p, yp, dp, d_w, e, mean, rstd, gamma, beta, &xh);
      sd += dz;
      sdx += dz * xh;
    }
  }
  sd = block_sum(sd, scratch);
  sdx = block_sum(sdx, scratch);
  return {sd, sdx};
}

// The whole backward of the block tail in one pass over y and the pooled gradient:
//   dy = rstd · γ · (dz − mean(dz) − x̂ · mean(dz · x̂)) per normalisation group (dz for no norm),
//   dγ[c] = Σ_{b,h,w} dz · x̂,  dβ[c] = Σ_{b,h,w} dz.
// One block per (s, c): instance norm walks its B groups (one plane each) in turn, batch norm has
// one group of B planes, so the block holds every term dγ and dβ sum over and writes them itself,
// in a fixed order, without atomics or the second pass over y and the pooled gradient that a
// separate γ/β kernel needed. Each group is read twice (sums, then dy): for instance norm the
// second reading is of the plane just read (L1/L2), so HBM sees y and dout once and dy written once.
// With `conv_bias` the block also sums the dy it writes: the gradient of the conv bias, which
// conv3x3_backward_bias would otherwise get by reading dy back.
struct NormBackwardParams {
  NormParams norm;
  u64 conv_bias_off;  // the bias (c) of the conv that produced y, at grads[s · param_row + conv_bias_off]
  u32 conv_bias;      // 1: write its gradient Σ_{b,h,w} dy there
  u32 unused;
};
static_assert(sizeof(NormBackwardParams) == 168, "NormBackwardParams must match src/backend/cuda/params.rs");

extern "C" __global__ void __launch_bounds__(DDR_BLOCK) norm_relu_pool_backward(const NormBackwardParams q) {
  const NormParams& p = q.norm;
  __shared__ float scratch[DDR_BLOCK / 32];
  const u32 hw = p.h * p.w, phw = p.ph * p.pw;
  const FastDiv d_w(p.w);
  const u32 nb = p.kind == 1 ? p.batch : 1;  // planes per normalisation group
  // __fdividef: no IEEE-division subroutine (see chan); n ≤ 2²⁴ is far inside its range.
  const float inv_n = __fdividef(1.0f, (float)(nb * hw));
  const u64 pairs = (u64)p.students * p.c;
  for (u64 g = blockIdx.x; g < pairs; g += gridDim.x) {
    const u64 s = g / p.c;
    const u32 ch = g % p.c;
    float gamma = 1.0f, beta = 0.0f;
    if (p.kind != 2) {
      gamma = p.params[s * p.param_row + p.w_off + ch];
      beta = p.params[s * p.param_row + p.b_off + ch];
    }
    float dg = 0.0f, db = 0.0f;
    float sdy = 0.0f;  // this thread's part of Σ dy: the gradient of the conv bias, when asked
    for (u32 b0 = 0; b0 < p.batch; b0 += nb) {
      float mean = 0.0f, rstd = 1.0f, md = 0.0f, mdx = 0.0f;
      if (p.kind != 2) {
        const Group gr{s, ch, b0, nb, (u64)nb * hw};
        mean = p.stats[stats_at(p, gr)];
        rstd = p.stats[stats_at(p, gr) + 1];
        const DzSums sums = dz_sums(p, s, ch, b0, nb, mean, rstd, gamma, beta, d_w, scratch);
        db += sums.dz;
        dg += sums.dz_xhat;
        md = sums.dz * inv_n;
        mdx = sums.dz_xhat * inv_n;
      }
      for (u32 b = b0; b < b0 + nb; ++b) {
        const u64 plane = plane_of(p, s, b, ch);
        const float *yp = p.y + plane * hw, *dp = p.dout + plane * phw;
        float* dyp = p.out + plane * hw;
        for (u32 e = threadIdx.x; e < hw; e += blockDim.x) {
          float xh;
          const float dz = dz_of(p, yp, dp, d_w, e, mean, rstd, gamma, beta, &xh);
          const float d = p.kind == 2 ? dz : rstd * gamma * (dz - md - xh * mdx);
          dyp[e] = d;
          sdy += d;
        }
      }
    }
    if (p.kind != 2 && threadIdx.x == 0) {
      p.grads[s * p.param_row + p.w_off + ch] = dg;
      p.grads[s * p.param_row + p.b_off + ch] = db;
    }
    if (q.conv_bias) {  // the same for the whole launch, so every thread reaches block_sum
      sdy = block_sum(sdy, scratch);
      if (threadIdx.x == 0) p.grads[s * p.param_row + q.conv_bias_off + ch] = sdy;
    }
  }
}

#ifdef DDR_HOST_EMU
extern "C" void emu_norm_relu_pool_forward(const unsigned* grid, const unsigned* block, const void* params) {
  ddr_emu::launch(norm_relu_pool_forward, grid, block, params);
}
extern "C" void emu_norm_relu_pool_forward_partials(const unsigned* grid, const unsigned* block, const void* params) {
  ddr_emu::launch(norm_relu_pool_forward_partials, grid, block, params);
}
extern "C" void emu_norm_relu_pool_backward(const unsigned* grid, const unsigned* block, const void* params) {
  ddr_emu::launch(norm_relu_pool_backward, grid, block, params);
}
#endif
