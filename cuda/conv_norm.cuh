// conv_norm.cuh: the epilogue of the fused conv forward (conv.cu conv3x3_forward_norm_*), run by a
// block after its conv tile's outputs y are stored. Per (channel, image) segment of the tile, one
// warp computes the segment's moments (count, mean, M2: shifted sums per lane, merged by Chan's
// formula, never a raw sum of squares) and leaves them in `partials` for the norm pass; when the
// tile holds whole planes (instance norm with tile_m a multiple of h·w) it finishes the block tail
// itself: statistics, normalise → ReLU → 2×2 pool. Eval-mode batch norm and no norm need no
// statistics: the per-channel affine folds into this epilogue, which pools any tile holding whole
// pooling windows. The launcher (src/backend/cuda/ops.rs) sets `fused` when the tile shape allows
// it for every tile; otherwise norm.cu's norm_relu_pool_forward_partials finishes from the
// partials, with no statistics pass over y.
//
// The y values are re-read from global memory: the block itself just wrote them, so after
// __syncthreads they are visible to it and sit in L1/L2; HBM sees y written once and not read
// back for statistics (the separate statistics pass it replaces read y twice).
#pragma once
#include "norm_common.cuh"

template <int WARPS>
__device__ __forceinline__ void conv_norm_epilogue(const NormParams& p, const NormPartials& part, u64 s, u32 t,
                                                   u32 n0, u32 bn) {
  const u32 hw = p.h * p.w, M = p.batch * hw;
  const u32 m0 = t * part.tile_m, m1 = m0 + part.tile_m < M ? m0 + part.tile_m : M;
  const u32 nn = n0 + bn < p.c ? bn : p.c - n0;  // channels of this tile
  const u32 bf = m0 / hw, segs = (m1 - 1) / hw - bf + 1;
  const u32 warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const bool moments = p.kind == 0 || (p.kind == 1 && p.train);
  const FastDiv d_pw(p.pw);
  for (u32 pair = warp; pair < nn * segs; pair += WARPS) {
    const u32 j = pair / nn, ch = n0 + (pair - j * nn), b = bf + j;
    const u32 lo = (m0 > b * hw ? m0 : b * hw) - b * hw, hi = (m1 < (b + 1) * hw ? m1 : (b + 1) * hw) - b * hw;
    const u64 plane = ((u64)s * p.batch + b) * p.c + ch;
    float mean = 0.0f, rstd = 1.0f, gamma = 1.0f, beta = 0.0f;
    if (p.kind != 2) {
      gamma = p.params[s * p.param_row + p.w_off + ch];
      beta = p.params[s * p.param_row + p.b_off + ch];
    }
    if (moments) {
      const float* yp = p.y + plane * hw;
      const float shift = yp[lo];
      float n = 0.0f, s1 = 0.0f, s2 = 0.0f;
      for (u32 e = lo + lane; e < hi; e += 32) {
        const float d = yp[e] - shift;
        s1 += d;
        s2 += d * d;
        n += 1.0f;
      }
      const Moments m = warp_moments(moments_of_sums(n, shift, s1, s2));
      if (lane == 0) {
        float* pp = partial_at(part, p, s, t, ch, j);
        pp[0] = m.n;
        pp[1] = m.mean;
        pp[2] = m.m2;
      }
      if (!part.fused) continue;
      // fused instance norm: [lo, hi) is the whole plane.
      mean_rstd(p, m, &mean, &rstd);
      if (lane == 0) {
        Group gr{s, ch, b, 1, hw};
        store_stats(p, gr, m, mean, rstd);
      }
    } else {
      if (!part.fused) continue;
      if (p.kind == 1) {
        running_stats(p, s, ch, &mean, &rstd);
        if (t == 0 && j == 0 && lane == 0) {
          p.stats[((u64)s * p.c + ch) * 2] = mean;
          p.stats[((u64)s * p.c + ch) * 2 + 1] = rstd;
        }
      }
    }
    // Pooled rows whose two input rows lie in [lo, hi): the launcher only fuses when segments
    // start and end on even rows.
    const u32 q0 = lo / (2 * p.w) * p.pw, q1r = hi / (2 * p.w) * p.pw, phw = p.ph * p.pw;
    pool_plane(p, plane, q0, q1r < phw ? q1r : phw, lane, 32, mean, rstd, gamma, beta, d_pw);
  }
}
