// conv_eval.cu: the eval-mode (test-pass) ConvNet block, conv → norm → ReLU → 2×2 pool, in ONE
// kernel that never stores the conv output y. A block owns whole output planes (all oh·ow rows of
// some images for BN columns); its conv tile goes to shared memory instead of global memory, the
// block computes each plane's statistics there (instance norm: two passes over shared memory,
// mean then Σ(y − mean)², never a raw sum of squares; eval-mode batch norm: the running
// statistics, an affine fold; no norm: nothing), normalises, applies ReLU, pools 2×2 and writes
// only the pooled output: a quarter of y's bytes, and no re-read of y.
//
// Why: conv.cu's fused forward writes y (layer 1 of a test pass: 10,000 × 128 × 32 × 32 floats,
// 5 GB per student per pass) and its epilogue reads it back; in a test pass nothing needs y.
//
// The main loop is a template parameter: conv_gemm (TF32, conv_gemm.cuh) or conv_gemm_bf16
// (conv_gemm_bf16.cuh), through the same Pass interface; the pass's `store` writes the shared
// tile. `wide` (with x_shared) makes the block's columns span S·cout (a test chunk's first layer as
// one GEMM over every student's weights, as conv_bf16.cu); otherwise grid z is the student.
//
// The y tile is dynamic shared memory (tile_m + EVAL_PITCH_PAD) × BN floats, more than the 48 KiB
// a kernel may declare statically; the launcher (src/backend/cuda/ops/eval.rs) sizes it, checks it
// against the device's opt-in limit and otherwise falls back to conv.cu's fused forward. Under
// the host emulator (no dynamic shared memory) it is a thread-local array, which every fiber of
// an emulated block shares as it shares __shared__ arrays.
//
// Kernels (params: ConvNormParams, the layout of conv.cu / conv_bf16.cu; norm.y and conv.out are
// not read or written; part.tile_m = part.m_sub · BM rows per block, part.partials unused):
//   conv3x3_eval_tf32          TF32 256 × 64 over 8 warps, ONE register tile per block (planes
//                              of ≤ 256 rows: 16×16, 8×8); part.m_sub must be 1
//   conv3x3_eval_narrow_tf32   TF32 256 × 32 over 8 warps (m_sub tiles: a 32×32 plane is 4)
//   conv3x3_eval_bf16          bf16 128 × 128 over 8 warps (64 × 32 each; m_sub tiles)
//   conv3x3_eval_narrow_bf16   bf16 128 × 32 over 4 warps (a 32×32 plane is 8 tiles)
// Why these (ptxas -v and tools/kernel-report.sh, nvcc 13.0): TF32 256 × 128, the training
// forward's tile, ran its main loop at 2.95 other instructions per HMMA here on sm_90 without
// spills once the m_sub loop was gone, but spilled 80 bytes on sm_80/86/89 (64 × 64 warp tiles:
// 128 accumulator registers beside the shared-tile epilogue); 256 × 64 does not spill anywhere.
// bf16 128 × 128 over 4 warps spilled 24 bytes, over 8 warps it does not. A 32×32 plane's 1,024 rows leave room for 32 columns of y
// beside the pipeline stages (133 KB), hence the narrow kernels, whose A gather serves only 32
// columns (9.75 other instructions per HMMA.1688): layer 1's K is 27, so it has few MMAs.
// Grid: (⌈B·oh·ow / tile_m⌉, ⌈N / BN⌉, S), or (…, ⌈S·cout / BN⌉, 1) when wide.
#include "conv_gemm_bf16.cuh"
#include "norm_common.cuh"

namespace ddr_eval {

struct ConvParams {
  const float* x;       // (S, B, cin, h, w), or (B, cin, h, w) shared by all students (x_shared)
  const float* params;  // (S, param_row)
  const float* dy;      // unused
  float* out;           // unused: y is never stored
  float* grads;         // unused
  u64 param_row;
  u64 w_off;  // weight (cout, cin, 3, 3) at params[s * param_row + w_off]
  u64 b_off;  // bias (cout)
  u32 students, batch, cin, cout, h, w, oh, ow, pad;
  u32 k_splits;  // unused
  u32 x_shared;  // 1: one x for all students
  u32 wide;      // 1 (with x_shared): one GEMM whose N spans S·cout, grid z = 1
};
static_assert(sizeof(ConvParams) == 112, "ConvParams must match src/backend/cuda/params.rs");

struct ConvNormParams {
  ConvParams conv;
  NormParams norm;
  NormPartials part;
};
static_assert(sizeof(ConvNormParams) == 296, "ConvNormParams must match src/backend/cuda/params.rs");

// Floats added to each column's row count in the shared tile: the epilogue's lanes 0–15 and
// 16–31 store neighbouring columns, which a pitch ≡ 16 (mod 32) puts in different banks.
#define EVAL_PITCH_PAD 16
// Tiles (src/backend/cuda/ops/eval.rs `EvalKernel` mirrors these).
#define EVAL_TF32_TILE 256, 64, 4, 2
#define EVAL_NARROW_TF32_TILE 256, 32, 8, 1
#define EVAL_TF32_THREADS 256
#define EVAL_BF16_TILE 128, 128, 2, 4
#define EVAL_NARROW_BF16_TILE 128, 32, 2, 1
#define EVAL_BF16_THREADS 256
#define EVAL_NARROW_BF16_THREADS 64

#ifndef DDR_HOST_EMU
#define DDR_NO_UNROLL _Pragma("unroll 1")
#else
#define DDR_NO_UNROLL
#endif

#ifdef DDR_HOST_EMU
// The launcher's budget for the emulated device is an H100's (ops/eval.rs); this holds it.
#define EVAL_Y_FLOATS_EMU (64 * 1024)
static thread_local float eval_y_emu[EVAL_Y_FLOATS_EMU];
inline float* eval_y_tile() { return eval_y_emu; }
#else
__device__ __forceinline__ float* eval_y_tile() {
  extern __shared__ __align__(16) float eval_y_dyn[];
  return eval_y_dyn;
}
#endif

// Bit ky·3 + kx set when input row iy0 + ky and column ix0 + kx lie inside h × w.
__device__ __forceinline__ u32 taps_inside(int iy0, int ix0, u32 h, u32 w) {
  u32 rows = 0, cols = 0;
  DDR_UNROLL for (int t = 0; t < 3; ++t) {
    if ((u32)(iy0 + t) < h) rows |= 7u << (3 * t);
    if ((u32)(ix0 + t) < w) cols |= 0x49u << t;
  }
  return rows & cols;
}

// The forward GEMM of one block, A = patches of x, B = the weights of `ns` students side by side
// (ns = S when wide, else 1), whose outputs land in the block's shared tile.
struct EvalPass {
  const float* a_base;  // x (B, cin, h, w): the shared copy or this slice's student
  const float* b_base;  // params + w_off of the slice's first student
  const float* bias;    // params + b_off of the slice's first student
  u32 M, N, K, h, w, ow, ohw, hw, pad, cout, cin_hw;
  u32 param_row;  // one student's row; the launcher checks S · param_row < 2³¹ when wide
  u32 mb0, n0, pitch;
  FastDiv d_ohw, d_ow, d_cout;
  __device__ XSlot a_x(u32 m) const {
    if (m >= M) return {0, 0};
    const u32 b = d_ohw.div(m), pix = m - b * ohw, oy = d_ow.div(pix), ox = pix - oy * ow;
    const int iy0 = (int)oy - (int)pad, ix0 = (int)ox - (int)pad;  // input of tap (0, 0)
    return {(int)(b * cin_hw) + iy0 * (int)w + ix0, taps_inside(iy0, ix0, h, w)};
  }
  __device__ XSlot b_x(u32 n) const {
    if (n >= N) return {0, 0};
    const u32 s = d_cout.div(n), co = n - s * cout;
    return {(int)(s * param_row + co * K), ~0u};
  }
  __device__ KRow k_row(u32 k) const {
    const u32 on = k < K ? ~0u : 0u;  // branch-free: the row is computed either way, then masked
    const u32 ci = k / 9, r = k - 9 * ci, ky = r / 3, kx = r - 3 * ky;
    return {(int)(ci * hw + ky * w + kx), (1u << r) & on, (int)k, on};
  }
  // conv_gemm_bf16.cuh's 16-byte weight loads, as conv_bf16.cu's FwdPass: a weight row (b_off =
  // k) starts 16-byte aligned for every column when K, the student stride (if N spans several)
  // and b_base allow it.
  __device__ bool b_k_vec4() const {
    return K % 4 == 0 && (N <= cout || param_row % 4 == 0) && reinterpret_cast<uintptr_t>(b_base) % 16 == 0;
  }
  __device__ void store(u32 m, u32 n, float v) const {
    const u32 s = d_cout.div(n), co = n - s * cout;
    // The block's tile, (BN, pitch): column n − n0, row m − mb0. Its address is a constant
    // (the dynamic shared window), not a register held through the main loop.
    eval_y_tile()[(n - n0) * pitch + (m - mb0)] = v + bias[(u64)s * param_row + co];
  }
};

// Which main loop a kernel runs.
enum class Loop { Bf16, Tf32 };

template <Loop L, int BM, int BN, int WARPS_M, int WARPS_N>
__device__ __forceinline__ void gemm_tile(const EvalPass& pass, u32 m0) {
  if constexpr (L == Loop::Bf16) {
    conv_gemm_bf16<BM, BN, WARPS_M, WARPS_N>(pass, m0, pass.n0, pass.M, pass.N, 0,
                                              (pass.K + GEMM_BK16 - 1) / GEMM_BK16);
  } else {
    conv_gemm<BM, BN, WARPS_M, WARPS_N, false>(pass, m0, pass.n0, pass.M, pass.N, 0,
                                               (pass.K + GEMM_BK - 1) / GEMM_BK);
  }
}

// The block tail over its shared tile: one warp per (column, image) plane. Column nl is output
// n0 + nl, student s0 + n / cout, channel n % cout; image j is b0 + j.
template <int WARPS>
__device__ __forceinline__ void eval_tail(const NormParams& p, const float* ys, u32 pitch, u32 b0, u32 imgs,
                                          u32 n0, u32 nn, u32 cout, u64 s0) {
  const u32 hw = p.h * p.w, phw = p.ph * p.pw;
  const u32 warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const FastDiv d_pw(p.pw), d_cout(cout);
  // No IEEE division or 1/sqrt here: their slow-path subroutine's stack frame reads as a spill
  // in this hot kernel (ptxas -v); __fdividef and rsqrtf are a couple of ulp.
  const float inv_n = __fdividef(1.0f, (float)hw);
  // Not unrolled: one plane per iteration is plenty of work, and unrolling it spilled.
  DDR_NO_UNROLL for (u32 pair = warp; pair < nn * imgs; pair += WARPS) {
    const u32 j = pair / nn, nl = pair - j * nn;
    const u32 ss = d_cout.div(n0 + nl), co = n0 + nl - ss * cout, b = b0 + j;
    const u64 s = s0 + ss;
    const float* yp = ys + nl * pitch + j * hw;  // the (s, b, co) plane, (h, w)
    float mean = 0.0f, rstd = 1.0f, gamma = 1.0f, beta = 0.0f;
    if (p.kind != 2) {
      gamma = p.params[s * p.param_row + p.w_off + co];
      beta = p.params[s * p.param_row + p.b_off + co];
    }
    if (p.kind == 0) {
      // Two passes over shared memory: the mean, then the squared deviations from it.
      float s1 = 0.0f;
      for (u32 e = lane; e < hw; e += 32) s1 += yp[e];
      mean = warp_sum(s1) * inv_n;
      float s2 = 0.0f;
      for (u32 e = lane; e < hw; e += 32) {
        const float d = yp[e] - mean;
        s2 += d * d;
      }
      rstd = rsqrtf(warp_sum(s2) * inv_n + p.eps);
      if (lane == 0) {
        p.stats[((s * p.batch + b) * p.c + co) * 2] = mean;
        p.stats[((s * p.batch + b) * p.c + co) * 2 + 1] = rstd;
      }
    } else if (p.kind == 1) {
      mean = p.running[s * p.running_row + p.rmean_off + co];
      rstd = rsqrtf(p.running[s * p.running_row + p.rvar_off + co] + p.eps);
      if (b == 0 && lane == 0) {
        p.stats[(s * p.c + co) * 2] = mean;
        p.stats[(s * p.c + co) * 2 + 1] = rstd;
      }
    }
    float* op = p.out + ((s * p.batch + b) * p.c + co) * phw;  // (ph, pw)
    for (u32 q = lane; q < phw; q += 32) {
      const u32 py = d_pw.div(q), px = q - py * p.pw;
      const float* v = yp + 2 * py * p.w + 2 * px;
      float acc = 0.0f;
      DDR_UNROLL for (u32 dy = 0; dy < 2; ++dy) DDR_UNROLL for (u32 dx = 0; dx < 2; ++dx) {
        const float z = p.kind == 2 ? v[dy * p.w + dx] : gamma * (v[dy * p.w + dx] - mean) * rstd + beta;
        acc += z > 0.0f ? z : 0.0f;
      }
      op[q] = 0.25f * acc;
    }
  }
}

// One block: part.m_sub conv register tiles (whole planes) into the shared tile, then the tail.
// ONE: exactly one register tile per block (no m_sub loop, which costs registers).
template <Loop L, bool ONE, int BM, int BN, int WARPS_M, int WARPS_N>
__device__ __forceinline__ void conv_eval(const ConvNormParams& q) {
  const ConvParams& p = q.conv;
  const bool wide = p.wide != 0;
  const u64 s0 = wide ? 0 : blockIdx.z;
  const u32 ns = wide ? p.students : 1;
  const u32 hw = p.h * p.w, ohw = p.oh * p.ow, tile_m = q.part.tile_m;
  const EvalPass pass{p.x + (p.x_shared ? 0 : s0 * p.batch * p.cin * hw),
                      p.params + s0 * p.param_row + p.w_off,
                      p.params + s0 * p.param_row + p.b_off,
                      p.batch * ohw, ns * p.cout, p.cin * 9, p.h, p.w, p.ow, ohw, hw, p.pad, p.cout, p.cin * hw,
                      (u32)p.param_row, blockIdx.x * tile_m, blockIdx.y * BN, tile_m + EVAL_PITCH_PAD,
                      FastDiv(ohw), FastDiv(p.ow), FastDiv(p.cout)};
  if (ONE) {
    gemm_tile<L, BM, BN, WARPS_M, WARPS_N>(pass, pass.mb0);
  } else {
    for (u32 i = 0; i < q.part.m_sub; ++i) {
      if (i > 0) __syncthreads();  // every warp done with the previous sub-tile's stages
      gemm_tile<L, BM, BN, WARPS_M, WARPS_N>(pass, pass.mb0 + i * BM);
    }
  }
  __syncthreads();  // the whole tile is in shared memory
  // Blocks start on image boundaries (tile_m is a multiple of oh·ow), so rows [mb0, m1) are
  // whole images.
  const u32 m1 = pass.mb0 + tile_m < pass.M ? pass.mb0 + tile_m : pass.M;
  const u32 nn = pass.N - pass.n0 < BN ? pass.N - pass.n0 : BN;
  eval_tail<WARPS_M * WARPS_N>(q.norm, eval_y_tile(), pass.pitch, pass.mb0 / ohw, (m1 - pass.mb0) / ohw, pass.n0, nn,
                               p.cout, s0);
}

}  // namespace ddr_eval

extern "C" __global__ void __launch_bounds__(EVAL_TF32_THREADS) conv3x3_eval_tf32(const ddr_eval::ConvNormParams q) {
  using namespace ddr_eval;
  conv_eval<Loop::Tf32, true, EVAL_TF32_TILE>(q);
}
// Min 1 block per SM stated: without it ptxas held this kernel to 128 registers and spilled 16
// bytes (ptxas -v, nvcc 13.0, sm_90); one 175 KB block per SM is all its shared memory allows.
extern "C" __global__ void __launch_bounds__(EVAL_TF32_THREADS, 1) conv3x3_eval_narrow_tf32(const ddr_eval::ConvNormParams q) {
  using namespace ddr_eval;
  conv_eval<Loop::Tf32, false, EVAL_NARROW_TF32_TILE>(q);
}
extern "C" __global__ void __launch_bounds__(EVAL_BF16_THREADS) conv3x3_eval_bf16(const ddr_eval::ConvNormParams q) {
  using namespace ddr_eval;
  conv_eval<Loop::Bf16, false, EVAL_BF16_TILE>(q);
}
extern "C" __global__ void __launch_bounds__(EVAL_NARROW_BF16_THREADS) conv3x3_eval_narrow_bf16(const ddr_eval::ConvNormParams q) {
  using namespace ddr_eval;
  conv_eval<Loop::Bf16, false, EVAL_NARROW_BF16_TILE>(q);
}

#ifdef DDR_HOST_EMU
extern "C" void emu_conv3x3_eval_tf32(const unsigned* grid, const unsigned* block, const void* params) {
  ddr_emu::launch(conv3x3_eval_tf32, grid, block, params);
}
extern "C" void emu_conv3x3_eval_narrow_tf32(const unsigned* grid, const unsigned* block, const void* params) {
  ddr_emu::launch(conv3x3_eval_narrow_tf32, grid, block, params);
}
extern "C" void emu_conv3x3_eval_bf16(const unsigned* grid, const unsigned* block, const void* params) {
  ddr_emu::launch(conv3x3_eval_bf16, grid, block, params);
}
extern "C" void emu_conv3x3_eval_narrow_bf16(const unsigned* grid, const unsigned* block, const void* params) {
  ddr_emu::launch(conv3x3_eval_narrow_bf16, grid, block, params);
}
#endif
