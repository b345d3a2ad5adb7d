// conv.cu: 3×3 convolution (stride 1, zero padding, bias), batched over students: forward, input
// gradient, weight/bias gradient. Weights are PyTorch's (cout, cin, 3, 3) inside each student's
// parameter row. These are the plain one-thread-per-output versions (v1): the reference the
// tensor-core implicit-GEMM versions are checked against.
#include "common.cuh"

struct ConvParams {
  const float* x;       // (S, B, cin, h, w)
  const float* params;  // (S, param_row)
  const float* dy;      // (S, B, cout, oh, ow), backward only
  float* out;           // forward: y (S, B, cout, oh, ow); backward_input: dx (S, B, cin, h, w)
  float* grads;         // (S, param_row), backward_weight only
  u64 param_row;
  u64 w_off;  // weight (cout, cin, 3, 3) at params[s * param_row + w_off]
  u64 b_off;  // bias (cout)
  u32 students, batch, cin, cout, h, w, oh, ow, pad, unused;
};
static_assert(sizeof(ConvParams) == 104, "ConvParams must match src/backend/cuda/params.rs");

extern "C" __global__ void __launch_bounds__(DDR_BLOCK) conv3x3_forward(const ConvParams p) {
  const u64 n = (u64)p.students * p.batch * p.cout * p.oh * p.ow;
  for (u64 i = grid_start(); i < n; i += grid_step()) {
    const u32 ox = i % p.ow, oy = (i / p.ow) % p.oh, co = (i / ((u64)p.ow * p.oh)) % p.cout;
    const u64 sb = i / ((u64)p.ow * p.oh * p.cout);  // s * batch + b
    const u64 s = sb / p.batch;
    const float* wt = p.params + s * p.param_row + p.w_off + (u64)co * p.cin * 9;
    const float* xs = p.x + sb * p.cin * p.h * p.w;
    float acc = p.params[s * p.param_row + p.b_off + co];
    for (u32 ci = 0; ci < p.cin; ++ci)
      for (u32 ky = 0; ky < 3; ++ky) {
        const int iy = (int)oy + (int)ky - (int)p.pad;
        if (iy < 0 || iy >= (int)p.h) continue;
        for (u32 kx = 0; kx < 3; ++kx) {
          const int ix = (int)ox + (int)kx - (int)p.pad;
          if (ix < 0 || ix >= (int)p.w) continue;
          acc += wt[ci * 9 + ky * 3 + kx] * xs[((u64)ci * p.h + iy) * p.w + ix];
        }
      }
    p.out[i] = acc;
  }
}

// dx[s,b,ci,y,x] = Σ_{co,ky,kx} dy[s,b,co,y−ky+pad,x−kx+pad] · W[co,ci,ky,kx]
extern "C" __global__ void __launch_bounds__(DDR_BLOCK) conv3x3_backward_input(const ConvParams p) {
  const u64 n = (u64)p.students * p.batch * p.cin * p.h * p.w;
  for (u64 i = grid_start(); i < n; i += grid_step()) {
    const u32 x = i % p.w, y = (i / p.w) % p.h, ci = (i / ((u64)p.w * p.h)) % p.cin;
    const u64 sb = i / ((u64)p.w * p.h * p.cin);
    const u64 s = sb / p.batch;
    const float* wt = p.params + s * p.param_row + p.w_off;
    const float* dys = p.dy + sb * p.cout * p.oh * p.ow;
    float acc = 0.0f;
    for (u32 co = 0; co < p.cout; ++co)
      for (u32 ky = 0; ky < 3; ++ky) {
        const int oy = (int)y - (int)ky + (int)p.pad;
        if (oy < 0 || oy >= (int)p.oh) continue;
        for (u32 kx = 0; kx < 3; ++kx) {
          const int ox = (int)x - (int)kx + (int)p.pad;
          if (ox < 0 || ox >= (int)p.ow) continue;
          acc += wt[((u64)co * p.cin + ci) * 9 + ky * 3 + kx] * dys[((u64)co * p.oh + oy) * p.ow + ox];
        }
      }
    p.out[i] = acc;
  }
}

// One thread per weight element (and per bias): a serial sum over (B, oh, ow). Deterministic.
extern "C" __global__ void __launch_bounds__(DDR_BLOCK) conv3x3_backward_weight(const ConvParams p) {
  const u64 per_co = (u64)p.cin * 9 + 1;  // the weights of one output channel, then its bias
  const u64 n = (u64)p.students * p.cout * per_co;
  for (u64 i = grid_start(); i < n; i += grid_step()) {
    const u64 r = i % per_co;
    const u32 co = (i / per_co) % p.cout;
    const u64 s = i / (per_co * p.cout);
    float acc = 0.0f;
    if (r == per_co - 1) {
      for (u32 b = 0; b < p.batch; ++b) {
        const float* dys = p.dy + (((s * p.batch + b) * p.cout + co) * p.oh) * p.ow;
        for (u32 k = 0; k < p.oh * p.ow; ++k) acc += dys[k];
      }
      p.grads[s * p.param_row + p.b_off + co] = acc;
    } else {
      const u32 ci = (u32)(r / 9), ky = (u32)(r % 9) / 3, kx = (u32)(r % 3);
      for (u32 b = 0; b < p.batch; ++b) {
        const float* dys = p.dy + (((s * p.batch + b) * p.cout + co) * p.oh) * p.ow;
        const float* xs = p.x + (((s * p.batch + b) * p.cin + ci) * p.h) * p.w;
        for (u32 oy = 0; oy < p.oh; ++oy) {
          const int iy = (int)oy + (int)ky - (int)p.pad;
          if (iy < 0 || iy >= (int)p.h) continue;
          for (u32 ox = 0; ox < p.ow; ++ox) {
            const int ix = (int)ox + (int)kx - (int)p.pad;
            if (ix < 0 || ix >= (int)p.w) continue;
            acc += dys[oy * p.ow + ox] * xs[(u64)iy * p.w + ix];
          }
        }
      }
      p.grads[s * p.param_row + p.w_off + (u64)co * p.cin * 9 + r] = acc;
    }
  }
}

#ifdef DDR_HOST_EMU
extern "C" void emu_conv3x3_forward(const unsigned* grid, const unsigned* block, const void* params) {
  ddr_emu::launch(conv3x3_forward, grid, block, params);
}
extern "C" void emu_conv3x3_backward_input(const unsigned* grid, const unsigned* block, const void* params) {
  ddr_emu::launch(conv3x3_backward_input, grid, block, params);
}
extern "C" void emu_conv3x3_backward_weight(const unsigned* grid, const unsigned* block, const void* params) {
  ddr_emu::launch(conv3x3_backward_weight, grid, block, params);
}
#endif
