// conv2d.cu: the general convolution of the layer-list students (ResNet, VGG, AlexNet, LeNet):
// k×k window, stride s, zero padding, optional bias, batched over students: forward, input
// gradient, weight gradient, bias gradient. Weights are PyTorch's (cout, cin, k, k) inside each
// student's parameter row. The big passes are implicit GEMMs on conv_gemm.cuh's main loop, one
// student per grid z, in both training precisions (<pass>_tf32x3, <pass>_tf32), as cuda/conv.cu.
//
// conv_gemm decides an element's presence by one test, (k-row bits & x-slot bits) != 0. conv.cu's
// 3×3 passes put the 9 taps in those bits; a k×k window has up to k² taps (121 at 11×11) and its
// presence is a conjunction (row inside AND column inside), so here each GEMM covers ONE kernel
// row ky: the row test then depends on x (or on k) alone and goes into its bits whole, and the
// column test is a bit per kx (k ≤ 32). One window row per GEMM:
//   forward   C(B·oh·ow, cout) += A(B·oh·ow, cin·k) [input row-ky patches] · B(cin·k, cout) [W[:, :, ky]ᵀ]
//             one launch per ky, the first writing y (+ bias), the others adding.
//   dx        per (ky, ρ) with ρ = kx mod s, the taps kx = ρ + j·s (j < nj): an input pixel whose
//             column residue is not ρ gets nothing from this GEMM, one whose residue is ρ reads
//             dy column q − j (q = (ix + pad − ρ) / s) — affine in j, so the gather stays one
//             multiply-add without scattering (the stride-s "phase" decomposition of dgrad):
//             C(B·h·w, cin) += A(B·h·w, cout·nj) [dy] · B(cout·nj, cin) [W[:, :, ky, ρ::s]].
//   dW        C(cout, cin·k) = A(cout, B·oh·ow) [dy] · B(B·oh·ow, cin·k) [input row-ky patches], one
//             ky per grid slice (distinct outputs: one launch), K split over grid z as in
//             conv.cu and the partial tiles added with atomics into slots cleared first.
// The forward and dx launches of one pass run in stream order, each reading back what the one
// before stored. (One launch looping over the window rows spilled ~2 KiB of registers per thread
// in ptxas; one conv_gemm call per launch keeps conv.cu's register budget.)
#include "conv_gemm.cuh"

struct Conv2dParams {
  const float* x;       // (S, B, cin, h, w)
  const float* params;  // (S, param_row)
  const float* dy;      // (S, B, cout, oh, ow), backward only
  float* out;           // forward: y (S, B, cout, oh, ow); backward_input: dx (S, B, cin, h, w)
  float* grads;         // (S, param_row), backward_weight / backward_bias only
  u64 param_row;
  u64 w_off;  // weight (cout, cin, k, k) at params[s * param_row + w_off]
  u64 b_off;  // bias (cout), read when has_bias
  u32 students, batch, cin, cout, h, w, oh, ow;
  u32 k, stride, pad;
  u32 k_splits;  // backward_weight: K chunks per student (grid z = students · k · k_splits)
  u32 has_bias;
  // forward: the window row of this launch (ky = 0 writes y, later rows add); backward_input:
  // the window row and column phase (ky = ρ = 0 writes dx, later ones add)
  u32 ky, rho;
  u32 unused;
};
static_assert(sizeof(Conv2dParams) == 128, "Conv2dParams must match src/backend/cuda/ops/conv2d.rs");

// Tiles per precision, those of conv.cu (src/backend/cuda/ops/conv2d.rs uses ops.rs's ConvTile
// constants, which mirror both files): TF32 256 × 128 over 8 warps (the weight gradient turned,
// 128 × 256), 3xTF32 128 × 64 over 4 warps (registers for the operand tails).
#define CONV2D_TF32_TILE 256, 128, 4, 2
#define CONV2D_TF32_DW_TILE 128, 256, 2, 4
#define CONV2D_TF32X3_TILE 128, 64, 2, 2
#define CONV2D_TF32_THREADS 256
#define CONV2D_TF32X3_THREADS 128

// Bits lo..hi of a u32 (empty when hi < lo); hi ≤ 31: 2 << 31 wraps to 0 and the difference is
// still the right mask modulo 2³².
__device__ __forceinline__ u32 bit_range(int lo, int hi) {
  return hi < lo ? 0u : (u32)((2u << hi) - (1u << lo));
}

// The kx (bit kx) for which column c0 + kx of a k-wide window lies inside [0, w).
__device__ __forceinline__ u32 cols_inside(int c0, u32 k, u32 w) {
  const int lo = c0 < 0 ? -c0 : 0, hi = (int)w - 1 - c0;
  return bit_range(lo, hi < (int)k - 1 ? hi : (int)k - 1);
}

// ---- forward, window row ky: A = input patches of row ky (gathered), B = W[:, :, ky]ᵀ --------
struct Fwd2Pass {
  const float* a_base;  // x of this student (B, cin, h, w)
  const float* b_base;  // &W[0, 0, ky, 0] of this student, W (cout, cin, k, k)
  const float* bias;    // (cout) or null
  float* y;             // (B, cout, oh, ow)
  u32 M, N, K, k, kk, h, w, ow, ohw, hw, stride, pad, ky, cout, cin_hw, cin_kk, first;
  FastDiv d_ohw, d_ow, d_k;
  __device__ XSlot a_x(u32 m) const {
    if (m >= M) return {0, 0};
    const u32 b = d_ohw.div(m), pix = m - b * ohw, oy = d_ow.div(pix), ox = pix - oy * ow;
    const int iy = (int)(oy * stride + ky) - (int)pad, ix0 = (int)(ox * stride) - (int)pad;
    const u32 bits = (u32)iy < h ? cols_inside(ix0, k, w) : 0u;
    return {(int)(b * cin_hw) + iy * (int)w + ix0, bits};
  }
  __device__ XSlot b_x(u32 n) const { return n < N ? XSlot{(int)(n * cin_kk), ~0u} : XSlot{0, 0}; }
  __device__ KRow k_row(u32 k_) const {
    const u32 on = k_ < K ? ~0u : 0u;  // branch-free: the row is computed either way, then masked
    const u32 ci = d_k.div(k_), kx = k_ - ci * k;
    return {(int)(ci * hw + kx), (1u << (kx & 31)) & on, (int)(ci * kk + kx), on};
  }
  __device__ void store(u32 m, u32 n, float v) const {
    const u32 b = d_ohw.div(m), pix = m - b * ohw;
    float* yp = y + ((u64)b * cout + n) * ohw + pix;
    *yp = (first ? (bias ? bias[n] : 0.0f) : *yp) + v;
  }
};

template <int BM, int BN, int WARPS_M, int WARPS_N, bool kSplit>
__device__ __forceinline__ void conv2d_forward(const Conv2dParams& p) {
  const u64 s = blockIdx.z;
  const u32 hw = p.h * p.w, ohw = p.oh * p.ow, K = p.cin * p.k, kk = p.k * p.k;
  const float* row = p.params + s * p.param_row;
  const Fwd2Pass pass{p.x + s * p.batch * p.cin * hw,
                      row + p.w_off + p.ky * p.k,
                      p.has_bias ? row + p.b_off : nullptr,
                      p.out + s * p.batch * p.cout * ohw,
                      p.batch * ohw, p.cout, K, p.k, kk, p.h, p.w, p.ow, ohw, hw, p.stride, p.pad, p.ky,
                      p.cout, p.cin * hw, p.cin * kk, p.ky == 0, FastDiv(ohw), FastDiv(p.ow), FastDiv(p.k)};
  conv_gemm<BM, BN, WARPS_M, WARPS_N, kSplit>(pass, blockIdx.x * BM, blockIdx.y * BN, pass.M, pass.N, 0,
                                              (K + GEMM_BK - 1) / GEMM_BK);
}

// Grid: (⌈B·oh·ow / BM⌉, ⌈cout / BN⌉, S).
extern "C" __global__ void __launch_bounds__(CONV2D_TF32X3_THREADS) conv2d_forward_tf32x3(const Conv2dParams p) {
  conv2d_forward<CONV2D_TF32X3_TILE, true>(p);
}
extern "C" __global__ void __launch_bounds__(CONV2D_TF32_THREADS) conv2d_forward_tf32(const Conv2dParams p) {
  conv2d_forward<CONV2D_TF32_TILE, false>(p);
}

// ---- input gradient, window row ky and column phase ρ: taps kx = ρ + j·s --------------------
// dx[b,ci,iy,ix] += Σ_{co,j} dy[b,co,oy,q−j] · W[co,ci,ky,ρ+j·s] where oy·s = iy + pad − ky and
// q·s = ix + pad − ρ (both exact, else the pixel gets nothing from this GEMM).
struct Dx2Pass {
  const float* a_base;  // dy of this student (B, cout, oh, ow)
  const float* b_base;  // &W[0, 0, ky, ρ] of this student
  float* dx;            // (B, cin, h, w)
  u32 M, N, K, nj, kk, w, oh, ow, ohw, hw, stride, pad, ky, rho, cin, cout, first;
  FastDiv d_hw, d_w, d_nj;
  __device__ XSlot a_x(u32 m) const {
    if (m >= M) return {0, 0};
    const u32 b = d_hw.div(m), pix = m - b * hw, iy = d_w.div(pix), ix = pix - iy * w;
    const int ty = (int)(iy + pad) - (int)ky, tx = (int)(ix + pad) - (int)rho;
    if (ty < 0 || tx < 0 || (u32)ty % stride != 0 || (u32)tx % stride != 0) return {0, 0};
    const u32 oy = (u32)ty / stride, q = (u32)tx / stride;
    if (oy >= oh) return {0, 0};
    // j valid when 0 ≤ q − j < ow and j < nj.
    const int lo = (int)q - (int)ow + 1 > 0 ? (int)q - (int)ow + 1 : 0;
    const int hi = q < nj - 1 ? (int)q : (int)nj - 1;
    return {(int)(b * cout * ohw + oy * ow + q), bit_range(lo, hi)};
  }
  __device__ XSlot b_x(u32 n) const { return n < N ? XSlot{(int)(n * kk), ~0u} : XSlot{0, 0}; }
  __device__ KRow k_row(u32 k_) const {
    const u32 on = k_ < K ? ~0u : 0u;
    const u32 co = d_nj.div(k_), j = k_ - co * nj;
    return {(int)(co * ohw) - (int)j, (1u << (j & 31)) & on, (int)(co * cin * kk + j * stride), on};
  }
  __device__ void store(u32 m, u32 n, float v) const {
    const u32 b = d_hw.div(m), pix = m - b * hw;
    float* p = dx + ((u64)b * cin + n) * hw + pix;
    *p = (first ? 0.0f : *p) + v;
  }
};

template <int BM, int BN, int WARPS_M, int WARPS_N, bool kSplit>
__device__ __forceinline__ void conv2d_backward_input(const Conv2dParams& p) {
  const u64 s = blockIdx.z;
  const u32 hw = p.h * p.w, ohw = p.oh * p.ow, kk = p.k * p.k;
  const u32 nj = (p.k - p.rho + p.stride - 1) / p.stride, K = p.cout * nj;
  const Dx2Pass pass{p.dy + s * p.batch * p.cout * ohw,
                     p.params + s * p.param_row + p.w_off + p.ky * p.k + p.rho,
                     p.out + s * p.batch * p.cin * hw,
                     p.batch * hw, p.cin, K, nj, kk, p.w, p.oh, p.ow, ohw, hw, p.stride, p.pad, p.ky, p.rho,
                     p.cin, p.cout, p.ky + p.rho == 0, FastDiv(hw), FastDiv(p.w), FastDiv(nj)};
  conv_gemm<BM, BN, WARPS_M, WARPS_N, kSplit>(pass, blockIdx.x * BM, blockIdx.y * BN, pass.M, pass.N, 0,
                                              (K + GEMM_BK - 1) / GEMM_BK);
}

// Grid: (⌈B·h·w / BM⌉, ⌈cin / BN⌉, S).
extern "C" __global__ void __launch_bounds__(CONV2D_TF32X3_THREADS) conv2d_backward_input_tf32x3(const Conv2dParams p) {
  conv2d_backward_input<CONV2D_TF32X3_TILE, true>(p);
}
extern "C" __global__ void __launch_bounds__(CONV2D_TF32_THREADS) conv2d_backward_input_tf32(const Conv2dParams p) {
  conv2d_backward_input<CONV2D_TF32_TILE, false>(p);
}

// ---- weight gradient, window row ky: dW[co, ci, ky, kx] = Σ_{b,oy,ox} dy[b,co,oy,ox] ·
// x[b, ci, oy·s − pad + ky, ox·s − pad + kx] -------------------------------------------------
struct Dw2Pass {
  const float* a_base;  // dy of this student (B, cout, oh, ow)
  const float* b_base;  // x of this student (B, cin, h, w), shifted by (ky − pad)·w − pad
  float* gw;            // &dW[0, 0, ky, 0] of this student, cleared before the launch
  u32 M, N, K, k, kk, h, w, ow, ohw, hw, stride, pad, ky, cin_hw, cout_ohw, cin_kk;
  FastDiv d_ohw, d_ow, d_k;
  __device__ XSlot a_x(u32 m) const { return m < M ? XSlot{(int)(m * ohw), ~0u} : XSlot{0, 0}; }
  __device__ XSlot b_x(u32 n) const {
    if (n >= N) return {0, 0};
    const u32 ci = d_k.div(n), kx = n - ci * k;
    return {(int)(ci * hw + kx), 1u << (kx & 31)};
  }
  __device__ KRow k_row(u32 k_) const {
    const u32 on = k_ < K ? ~0u : 0u;
    const u32 b = d_ohw.div(k_), pix = k_ - b * ohw, oy = d_ow.div(pix), ox = pix - oy * ow;
    const u32 iy = oy * stride + ky - pad;  // wraps above 2³¹ when outside (the test below)
    const u32 cols = iy < h ? cols_inside((int)(ox * stride) - (int)pad, k, w) : 0u;
    return {(int)(b * cout_ohw + pix), on, (int)(b * cin_hw + oy * stride * w + ox * stride), cols & on};
  }
  __device__ void store(u32 m, u32 n, float v) const {
    const u32 ci = d_k.div(n), kx = n - ci * k;
    atomicAdd(gw + (u64)m * cin_kk + ci * kk + kx, v);
  }
};

template <int BM, int BN, int WARPS_M, int WARPS_N, bool kSplit>
__device__ __forceinline__ void conv2d_backward_weight(const Conv2dParams& p) {
  const u32 z = blockIdx.z, split = z % p.k_splits, ky = (z / p.k_splits) % p.k;
  const u64 s = z / (p.k_splits * p.k);
  const u32 hw = p.h * p.w, ohw = p.oh * p.ow, K = p.batch * ohw, kk = p.k * p.k;
  const Dw2Pass pass{p.dy + s * p.batch * p.cout * ohw,
                     (p.x + s * p.batch * p.cin * hw) + (((int)ky - (int)p.pad) * (int)p.w - (int)p.pad),
                     p.grads + s * p.param_row + p.w_off + ky * p.k,
                     p.cout, p.cin * p.k, K, p.k, kk, p.h, p.w, p.ow, ohw, hw, p.stride, p.pad, ky,
                     p.cin * hw, p.cout * ohw, p.cin * kk,
                     FastDiv(ohw), FastDiv(p.ow), FastDiv(p.k)};
  const u32 tiles = (K + GEMM_BK - 1) / GEMM_BK, chunk = (tiles + p.k_splits - 1) / p.k_splits;
  const u32 kt0 = split * chunk, kt1 = kt0 + chunk < tiles ? kt0 + chunk : tiles;
  conv_gemm<BM, BN, WARPS_M, WARPS_N, kSplit>(pass, blockIdx.x * BM, blockIdx.y * BN, pass.M, pass.N, kt0,
                                              kt0 < kt1 ? kt1 : kt0);
}

// Grid: (⌈cout / BM⌉, ⌈cin·k / BN⌉, S · k · k_splits).
extern "C" __global__ void __launch_bounds__(CONV2D_TF32X3_THREADS) conv2d_backward_weight_tf32x3(const Conv2dParams p) {
  conv2d_backward_weight<CONV2D_TF32X3_TILE, true>(p);
}
extern "C" __global__ void __launch_bounds__(CONV2D_TF32_THREADS) conv2d_backward_weight_tf32(const Conv2dParams p) {
  conv2d_backward_weight<CONV2D_TF32_DW_TILE, false>(p);
}

// Zeroes each student's weight-gradient slot (cout·cin·k·k) before the split-K atomics.
extern "C" __global__ void __launch_bounds__(DDR_BLOCK) conv2d_backward_weight_clear(const Conv2dParams p) {
  const u64 slot = (u64)p.cout * p.cin * p.k * p.k, n = (u64)p.students * slot;
  for (u64 i = grid_start(); i < n; i += grid_step()) p.grads[(i / slot) * p.param_row + p.w_off + i % slot] = 0.0f;
}

// db[co] = Σ_{b,oy,ox} dy[s,b,co,oy,ox] in fp32; blocks loop over the S·cout (s, co) pairs.
extern "C" __global__ void __launch_bounds__(DDR_BLOCK) conv2d_backward_bias(const Conv2dParams p) {
  __shared__ float scratch[DDR_BLOCK / 32];
  const u64 ohw = (u64)p.oh * p.ow;
  const u64 pairs = (u64)p.students * p.cout;
  for (u64 g = blockIdx.x; g < pairs; g += gridDim.x) {
    const u64 s = g / p.cout, co = g % p.cout;
    float acc = 0.0f;
    for (u32 b = 0; b < p.batch; ++b) {
      const float* dys = p.dy + ((s * p.batch + b) * p.cout + co) * ohw;
      for (u64 i = threadIdx.x; i < ohw; i += blockDim.x) acc += dys[i];
    }
    acc = block_sum(acc, scratch);
    if (threadIdx.x == 0) p.grads[s * p.param_row + p.b_off + co] = acc;
  }
}

#ifdef DDR_HOST_EMU
extern "C" void emu_conv2d_forward_tf32x3(const unsigned* grid, const unsigned* block, const void* params) {
  ddr_emu::launch(conv2d_forward_tf32x3, grid, block, params);
}
extern "C" void emu_conv2d_forward_tf32(const unsigned* grid, const unsigned* block, const void* params) {
  ddr_emu::launch(conv2d_forward_tf32, grid, block, params);
}
extern "C" void emu_conv2d_backward_input_tf32x3(const unsigned* grid, const unsigned* block, const void* params) {
  ddr_emu::launch(conv2d_backward_input_tf32x3, grid, block, params);
}
extern "C" void emu_conv2d_backward_input_tf32(const unsigned* grid, const unsigned* block, const void* params) {
  ddr_emu::launch(conv2d_backward_input_tf32, grid, block, params);
}
extern "C" void emu_conv2d_backward_weight_tf32x3(const unsigned* grid, const unsigned* block, const void* params) {
  ddr_emu::launch(conv2d_backward_weight_tf32x3, grid, block, params);
}
extern "C" void emu_conv2d_backward_weight_tf32(const unsigned* grid, const unsigned* block, const void* params) {
  ddr_emu::launch(conv2d_backward_weight_tf32, grid, block, params);
}
extern "C" void emu_conv2d_backward_weight_clear(const unsigned* grid, const unsigned* block, const void* params) {
  ddr_emu::launch(conv2d_backward_weight_clear, grid, block, params);
}
extern "C" void emu_conv2d_backward_bias(const unsigned* grid, const unsigned* block, const void* params) {
  ddr_emu::launch(conv2d_backward_bias, grid, block, params);
}
#endif
