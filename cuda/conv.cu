// conv.cu: 3×3 convolution (stride 1, zero padding, bias), batched over students: forward, input
// gradient, weight gradient, bias gradient. Weights are PyTorch's (cout, cin, 3, 3) inside each
// student's parameter row. The three big passes are implicit GEMMs on TF32 tensor cores
// (conv_gemm.cuh), one student per grid z; im2col happens in the loaders, never in memory:
//   forward   C(B·oh·ow, cout)  = A(B·oh·ow, cin·9) [input patches] · B(cin·9, cout) [Wᵀ]
//   dx        C(B·h·w, cin)     = A(B·h·w, cout·9) [dy patches]    · B(cout·9, cin) [W, flipped]
//   dW        C(cout, cin·9)    = A(cout, B·oh·ow) [dy]            · B(B·oh·ow, cin·9) [input patches]
// Each pass runs in 3xTF32 (near fp32, the default) or plain TF32 (params.split_tf32).
#include "conv_gemm.cuh"

struct ConvParams {
  const float* x;       // (S, B, cin, h, w)
  const float* params;  // (S, param_row)
  const float* dy;      // (S, B, cout, oh, ow), backward only
  float* out;           // forward: y (S, B, cout, oh, ow); backward_input: dx (S, B, cin, h, w)
  float* grads;         // (S, param_row), backward_weight / backward_bias only
  u64 param_row;
  u64 w_off;  // weight (cout, cin, 3, 3) at params[s * param_row + w_off]
  u64 b_off;  // bias (cout)
  u32 students, batch, cin, cout, h, w, oh, ow, pad;
  u32 split_tf32;  // 1: 3xTF32 (near fp32), 0: plain TF32 (see conv_gemm.cuh)
};
static_assert(sizeof(ConvParams) == 104, "ConvParams must match src/backend/cuda/params.rs");

// Grid: (⌈B·oh·ow / 64⌉, ⌈cout / 64⌉, S).
extern "C" __global__ void __launch_bounds__(DDR_BLOCK) conv3x3_forward(const ConvParams p) {
  const u64 s = blockIdx.z;
  const u64 hw = (u64)p.h * p.w, ohw = (u64)p.oh * p.ow, K = (u64)p.cin * 9;
  const float* xs = p.x + s * p.batch * p.cin * hw;
  const float* wt = p.params + s * p.param_row + p.w_off;
  const float* bias = p.params + s * p.param_row + p.b_off;
  float* ys = p.out + s * p.batch * p.cout * ohw;
  const auto la = [&](u64 m, u64 k) -> float {
    const u64 b = m / ohw, pix = m % ohw;
    const int iy = (int)(pix / p.ow) + (int)((k % 9) / 3) - (int)p.pad;
    const int ix = (int)(pix % p.ow) + (int)(k % 3) - (int)p.pad;
    if (iy < 0 || iy >= (int)p.h || ix < 0 || ix >= (int)p.w) return 0.0f;
    return xs[(b * p.cin + k / 9) * hw + (u64)iy * p.w + ix];
  };
  const auto lb = [&](u64 k, u64 n) -> float { return wt[n * K + k]; };
  const auto sc = [&](u64 m, u64 n, float v) { ys[(m / ohw * p.cout + n) * ohw + m % ohw] = v + bias[n]; };
  gemm_tile_tf32(p.split_tf32 != 0, (u64)blockIdx.x * GEMM_BM, (u64)blockIdx.y * GEMM_BN, p.batch * ohw, p.cout, K, la, lb, sc);
}

// dx[s,b,ci,y,x] = Σ_{co,ky,kx} dy[s,b,co,y−ky+pad,x−kx+pad] · W[co,ci,ky,kx].
// Grid: (⌈B·h·w / 64⌉, ⌈cin / 64⌉, S).
extern "C" __global__ void __launch_bounds__(DDR_BLOCK) conv3x3_backward_input(const ConvParams p) {
  const u64 s = blockIdx.z;
  const u64 hw = (u64)p.h * p.w, ohw = (u64)p.oh * p.ow;
  const float* dys = p.dy + s * p.batch * p.cout * ohw;
  const float* wt = p.params + s * p.param_row + p.w_off;
  float* dxs = p.out + s * p.batch * p.cin * hw;
  const auto la = [&](u64 m, u64 k) -> float {
    const u64 b = m / hw, pix = m % hw;
    const int oy = (int)(pix / p.w) - (int)((k % 9) / 3) + (int)p.pad;
    const int ox = (int)(pix % p.w) - (int)(k % 3) + (int)p.pad;
    if (oy < 0 || oy >= (int)p.oh || ox < 0 || ox >= (int)p.ow) return 0.0f;
    return dys[(b * p.cout + k / 9) * ohw + (u64)oy * p.ow + ox];
  };
  const auto lb = [&](u64 k, u64 n) -> float { return wt[((k / 9) * p.cin + n) * 9 + k % 9]; };
  const auto sc = [&](u64 m, u64 n, float v) { dxs[(m / hw * p.cin + n) * hw + m % hw] = v; };
  gemm_tile_tf32(p.split_tf32 != 0, (u64)blockIdx.x * GEMM_BM, (u64)blockIdx.y * GEMM_BN, p.batch * hw, p.cin, (u64)p.cout * 9, la,
                 lb, sc);
}

// dW[co, ci·9 + r] = Σ_{b,oy,ox} dy[s,b,co,oy,ox] · x[s,b,ci,oy+ky−pad,ox+kx−pad].
// Grid: (⌈cout / 64⌉, ⌈cin·9 / 64⌉, S). One block reduces the whole B·oh·ow (no split-K yet).
extern "C" __global__ void __launch_bounds__(DDR_BLOCK) conv3x3_backward_weight(const ConvParams p) {
  const u64 s = blockIdx.z;
  const u64 hw = (u64)p.h * p.w, ohw = (u64)p.oh * p.ow;
  const float* xs = p.x + s * p.batch * p.cin * hw;
  const float* dys = p.dy + s * p.batch * p.cout * ohw;
  float* gw = p.grads + s * p.param_row + p.w_off;
  // 32-bit index math inside one student (B·oh·ow and cin·9 < 2^31, checked by the launcher):
  // 64-bit divisions cost the registers the 3xTF32 fragments need.
  const u32 ohw32 = p.oh * p.ow;
  const auto la = [&](u64 m, u64 k) -> float {
    const u32 kk = (u32)k;
    return dys[((u64)(kk / ohw32) * p.cout + m) * ohw + kk % ohw32];
  };
  const auto lb = [&](u64 k, u64 n) -> float {
    const u32 kk = (u32)k, nn = (u32)n;
    const u32 b = kk / ohw32, pix = kk % ohw32;
    const int iy = (int)(pix / p.ow) + (int)((nn % 9) / 3) - (int)p.pad;
    const int ix = (int)(pix % p.ow) + (int)(nn % 3) - (int)p.pad;
    if (iy < 0 || iy >= (int)p.h || ix < 0 || ix >= (int)p.w) return 0.0f;
    return xs[((u64)b * p.cin + nn / 9) * hw + (u64)iy * p.w + ix];
  };
  const u64 K9 = (u64)p.cin * 9;
  const auto sc = [&](u64 m, u64 n, float v) { gw[m * K9 + n] = v; };
  gemm_tile_tf32(p.split_tf32 != 0, (u64)blockIdx.x * GEMM_BM, (u64)blockIdx.y * GEMM_BN, p.cout, K9, p.batch * ohw, la, lb, sc);
}

// db[co] = Σ_{b,oy,ox} dy[s,b,co,oy,ox] in fp32; blocks loop over the S·cout (s, co) pairs.
extern "C" __global__ void __launch_bounds__(DDR_BLOCK) conv3x3_backward_bias(const ConvParams p) {
  __shared__ float scratch[DDR_BLOCK / 32];
  const u64 ohw = (u64)p.oh * p.ow;
  const u64 pairs = (u64)p.students * p.cout;
  for (u64 g = blockIdx.x; g < pairs; g += gridDim.x) {
    const u64 s = g / p.cout, co = g % p.cout;
    float acc = 0.0f;
    for (u32 b = 0; b < p.batch; ++b) {
      const float* dys = p.dy + ((s * p.batch + b) * p.cout + co) * ohw;
      for (u64 k = threadIdx.x; k < ohw; k += blockDim.x) acc += dys[k];
    }
    acc = block_sum(acc, scratch);
    if (threadIdx.x == 0) p.grads[s * p.param_row + p.b_off + co] = acc;
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
extern "C" void emu_conv3x3_backward_bias(const unsigned* grid, const unsigned* block, const void* params) {
  ddr_emu::launch(conv3x3_backward_bias, grid, block, params);
}
#endif
