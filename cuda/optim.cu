// optim.cu: one optimizer step over the flat (S, P) parameter buffer of a whole cohort, with a
// learning rate per student, in PyTorch's semantics (DESIGN.md §3): SGD with momentum and weight
// decay added to the gradient (the first step sets the buffer to the gradient), Adam (L2 weight
// decay), AdamW (decoupled weight decay).
#include "common.cuh"

struct OptimParams {
  float* params;       // (S, P)
  const float* grads;  // (S, P)
  float* state1;       // (S, P) SGD momentum buffer, or Adam's m
  float* state2;       // (S, P) Adam's v
  const float* lrs;    // (S)
  u64 n;               // S · P
  u64 row;             // P
  u32 step;            // 1-based
  u32 kind;            // 0 SGD, 1 Adam, 2 AdamW
  float momentum, beta1, beta2, eps, weight_decay, unused;
  // (4) the step clock (cuda/rows.cu), or null. When set, the step is clock[0] + 1 and the rates
  // are row clock[2] of lrs (E, S), read here so that a recorded step replays at every step.
  const u32* clock;
};
static_assert(sizeof(OptimParams) == 96, "OptimParams must match src/backend/cuda/params.rs");

extern "C" __global__ void __launch_bounds__(DDR_BLOCK) optimizer_step(const OptimParams p) {
  // Bias corrections in double: 1 − β^t loses digits in f32 for β2 = 0.999 and small t.
  const u32 step = p.clock ? p.clock[0] + 1u : p.step;
  const float* lrs = p.clock ? p.lrs + (u64)p.clock[2] * (p.n / p.row) : p.lrs;
  const float bc1 = (float)(1.0 - pow((double)p.beta1, (double)step));
  const float bc2 = (float)(1.0 - pow((double)p.beta2, (double)step));
  for (u64 i = grid_start(); i < p.n; i += grid_step()) {
    const float lr = lrs[i / p.row];
    float w = p.params[i];
    float g = p.grads[i];
    if (p.kind == 0) {
      g += p.weight_decay * w;
      const float buf = step == 1 ? g : p.momentum * p.state1[i] + g;
      p.state1[i] = buf;
      w -= lr * buf;
    } else {
      if (p.kind == 1) g += p.weight_decay * w;
      else w *= 1.0f - lr * p.weight_decay;
      const float m = p.beta1 * p.state1[i] + (1.0f - p.beta1) * g;
      const float v = p.beta2 * p.state2[i] + (1.0f - p.beta2) * g * g;
      p.state1[i] = m;
      p.state2[i] = v;
      const float denom = sqrtf(v) / sqrtf(bc2) + p.eps;
      w -= (lr / bc1) * m / denom;
    }
    p.params[i] = w;
  }
}

#ifdef DDR_HOST_EMU
extern "C" void emu_optimizer_step(const unsigned* grid, const unsigned* block, const void* params) {
  ddr_emu::launch(optimizer_step, grid, block, params);
}
#endif
