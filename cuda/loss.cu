// loss.cu: the training losses of DESIGN.md §3 fused with their gradients, batched over students:
// hard-label cross-entropy, soft-label KL and SCE with temperature, and MSE-GT. One block per
// student; one thread per batch row (serial over the K classes), the per-student mean by a block sum.
#include "common.cuh"

struct LossParams {
  const float* logits;  // (S, B, K)
  const u32* labels;    // (S, B)
  const float* soft;    // (S, B, K) teacher logits; unused by cross-entropy
  float* loss;          // (S)
  float* dlogits;       // (S, B, K)
  u32 students, batch, classes, kind;  // kind: 0 CE, 1 KL, 2 SCE, 3 MSE-GT
  float temperature;
  float scale;  // T² when the soft loss is scaled, else 1
  float w_mse, w_ce;
};
static_assert(sizeof(LossParams) == 72, "LossParams must match src/backend/cuda/params.rs");

// log Σ_k exp(z_k · inv_t), stable.
__device__ __forceinline__ float log_sum_exp(const float* z, u32 k_n, float inv_t) {
  float m = -INFINITY;
  for (u32 k = 0; k < k_n; ++k) m = fmaxf(m, z[k] * inv_t);
  float s = 0.0f;
  for (u32 k = 0; k < k_n; ++k) s += expf(z[k] * inv_t - m);
  return m + logf(s);
}

extern "C" __global__ void __launch_bounds__(DDR_BLOCK) loss_forward_backward(const LossParams p) {
  __shared__ float scratch[DDR_BLOCK / 32];
  const u64 s = blockIdx.x;
  const u32 K = p.classes;
  const float inv_b = 1.0f / (float)p.batch;
  float part = 0.0f;  // this thread's rows' share of the (un-normalised) batch loss
  for (u32 b = threadIdx.x; b < p.batch; b += blockDim.x) {
    const u64 row = (s * p.batch + b) * K;
    const float* z = p.logits + row;
    float* dz = p.dlogits + row;
    const u32 y = p.labels[s * p.batch + b];
    if (p.kind == 0 || p.kind == 3) {
      const float w_ce = p.kind == 0 ? 1.0f : p.w_ce;
      const float lse = log_sum_exp(z, K, 1.0f);
      float l = y < K ? w_ce * (lse - z[y]) : 0.0f;
      for (u32 k = 0; k < K; ++k) {
        float g = w_ce * (expf(z[k] - lse) - (k == y ? 1.0f : 0.0f)) * inv_b;
        if (p.kind == 3) {
          const float d = z[k] - p.soft[row + k];
          l += p.w_mse * d * d / (float)K;
          g += p.w_mse * 2.0f * d * inv_b / (float)K;
        }
        dz[k] = g;
      }
      part += l;
    } else {
      const float* t = p.soft + row;
      const float inv_t = 1.0f / p.temperature;
      const float lse_s = log_sum_exp(z, K, inv_t), lse_t = log_sum_exp(t, K, inv_t);
      float l = 0.0f;
      for (u32 k = 0; k < K; ++k) {
        const float log_q = z[k] * inv_t - lse_s, log_p = t[k] * inv_t - lse_t;
        const float pk = expf(log_p);
        l += p.kind == 1 ? pk * (log_p - log_q) : -pk * log_q;
        dz[k] = p.scale * (expf(log_q) - pk) * inv_t * inv_b;
      }
      part += p.scale * l;
    }
  }
  const float total = block_sum(part, scratch);
  if (threadIdx.x == 0) p.loss[s] = total * inv_b;
}

struct CountParams {
  const float* logits;  // (S, B, K)
  const u32* labels;    // (S, B)
  u32* correct;         // (S), accumulated
  u32 students, batch, classes, unused;
};
static_assert(sizeof(CountParams) == 40, "CountParams must match src/backend/cuda/params.rs");

// correct[s] += #rows whose first arg-max equals the label. One block per student.
extern "C" __global__ void __launch_bounds__(DDR_BLOCK) count_correct(const CountParams p) {
  __shared__ float scratch[DDR_BLOCK / 32];
  const u64 s = blockIdx.x;
  float hits = 0.0f;  // exact: batch sizes stay far below 2^24
  for (u32 b = threadIdx.x; b < p.batch; b += blockDim.x) {
    const float* z = p.logits + (s * p.batch + b) * p.classes;
    u32 best = 0;
    for (u32 k = 1; k < p.classes; ++k)
      if (z[k] > z[best]) best = k;
    hits += best == p.labels[s * p.batch + b] ? 1.0f : 0.0f;
  }
  const float total = block_sum(hits, scratch);
  if (threadIdx.x == 0) p.correct[s] += (u32)total;
}

#ifdef DDR_HOST_EMU
extern "C" void emu_loss_forward_backward(const unsigned* grid, const unsigned* block, const void* params) {
  ddr_emu::launch(loss_forward_backward, grid, block, params);
}
extern "C" void emu_count_correct(const unsigned* grid, const unsigned* block, const void* params) {
  ddr_emu::launch(count_correct, grid, block, params);
}
#endif
