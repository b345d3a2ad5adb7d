// linear.cu: the classifier layer y = x·Wᵀ + b, batched over students, with its input and
// weight/bias gradients. W is PyTorch's (fout, fin) inside each student's parameter row.
#include "common.cuh"

struct LinearParams {
  const float* x;       // (S, B, fin)
  const float* params;  // (S, param_row)
  const float* dout;    // (S, B, fout), backward only
  float* out;           // forward: y (S, B, fout); backward_input: dx (S, B, fin)
  float* grads;         // (S, param_row), backward_weight only
  u64 param_row;
  u64 w_off;  // weight (fout, fin)
  u64 b_off;  // bias (fout)
  u32 students, batch, fin, fout;
};
static_assert(sizeof(LinearParams) == 80, "LinearParams must match src/backend/cuda/params.rs");

extern "C" __global__ void __launch_bounds__(DDR_BLOCK) linear_forward(const LinearParams p) {
  const u64 n = (u64)p.students * p.batch * p.fout;
  for (u64 i = grid_start(); i < n; i += grid_step()) {
    const u32 o = i % p.fout;
    const u64 sb = i / p.fout, s = sb / p.batch;
    const float* wr = p.params + s * p.param_row + p.w_off + (u64)o * p.fin;
    const float* xr = p.x + sb * p.fin;
    float acc = p.params[s * p.param_row + p.b_off + o];
    for (u32 k = 0; k < p.fin; ++k) acc += xr[k] * wr[k];
    p.out[i] = acc;
  }
}

// dx[s,b,k] = Σ_o dout[s,b,o] · W[o,k]
extern "C" __global__ void __launch_bounds__(DDR_BLOCK) linear_backward_input(const LinearParams p) {
  const u64 n = (u64)p.students * p.batch * p.fin;
  for (u64 i = grid_start(); i < n; i += grid_step()) {
    const u32 k = i % p.fin;
    const u64 sb = i / p.fin, s = sb / p.batch;
    const float* w = p.params + s * p.param_row + p.w_off;
    const float* d = p.dout + sb * p.fout;
    float acc = 0.0f;
    for (u32 o = 0; o < p.fout; ++o) acc += d[o] * w[(u64)o * p.fin + k];
    p.out[i] = acc;
  }
}

// dW[o,k] = Σ_b dout[s,b,o] · x[s,b,k]; db[o] = Σ_b dout[s,b,o]. One thread per element, serial in b.
extern "C" __global__ void __launch_bounds__(DDR_BLOCK) linear_backward_weight(const LinearParams p) {
  const u64 per_o = (u64)p.fin + 1;  // one weight row, then the bias
  const u64 n = (u64)p.students * p.fout * per_o;
  for (u64 i = grid_start(); i < n; i += grid_step()) {
    const u64 k = i % per_o;
    const u32 o = (i / per_o) % p.fout;
    const u64 s = i / (per_o * p.fout);
    float acc = 0.0f;
    for (u32 b = 0; b < p.batch; ++b) {
      const u64 sb = s * p.batch + b;
      const float d = p.dout[sb * p.fout + o];
      acc += k == p.fin ? d : d * p.x[sb * p.fin + k];
    }
    if (k == p.fin)
      p.grads[s * p.param_row + p.b_off + o] = acc;
    else
      p.grads[s * p.param_row + p.w_off + (u64)o * p.fin + k] = acc;
  }
}

#ifdef DDR_HOST_EMU
extern "C" void emu_linear_forward(const unsigned* grid, const unsigned* block, const void* params) {
  ddr_emu::launch(linear_forward, grid, block, params);
}
extern "C" void emu_linear_backward_input(const unsigned* grid, const unsigned* block, const void* params) {
  ddr_emu::launch(linear_backward_input, grid, block, params);
}
extern "C" void emu_linear_backward_weight(const unsigned* grid, const unsigned* block, const void* params) {
  ddr_emu::launch(linear_backward_weight, grid, block, params);
}
#endif
