// conv_bf16.cu: the eval-mode (test-pass) conv forwards: bf16 tensor-core kernels
// (conv_gemm_bf16.cuh) and the shared-input first layer as ONE implicit GEMM over all students.
//
// A test pass feeds every student the same test chunk. Its first conv is then
//   C(B·oh·ow, S·cout) = A(B·oh·ow, cin·9) [patches of the one shared chunk] · B(cin·9, S·cout)
// with B the S students' weight matrices side by side (column n = s·cout + co reads student s's
// row of the parameter buffer): one GEMM whose A tiles are gathered once per block and reused
// for every student column the block covers, instead of S GEMMs each gathering the images.
// Later layers (own activations per student) stay one GEMM per student (grid z).
//
// Kernels (launcher: src/backend/cuda/ops/bf16.rs; arguments as cuda/conv.cu's, whose struct
// layouts src/backend/cuda/params.rs mirrors; this file's copy is conv_params.cuh's):
//   conv3x3_forward_bf16          ConvParams      plain forward (the shared-input conv op)
//   conv3x3_forward_norm_bf16     ConvNormParams  forward + norm epilogue (conv_norm.cuh)
//   conv3x3_forward_norm_wide_tf32 ConvNormParams TF32 forward + norm for a shared input, N = S·cout
// `wide` = 1 (only with x_shared) makes any of them one GEMM over N = S·cout with grid z = 1;
// otherwise grid z = S, one GEMM per student (reading the shared x when x_shared).
#include "conv_gemm_bf16.cuh"
#include "conv_norm.cuh"
#include "conv_params.cuh"

namespace ddr_bf16 {

// The launch arguments (conv_params.cuh), by their names in this namespace.
using ddr_conv::ConvNormParams;
using ddr_conv::ConvParams;

// Tiles (src/backend/cuda/ops/bf16.rs `TILE_BF16`, `TILE_TF32` mirror these): bf16 128 × 128 over
// 4 warps (conv_gemm_bf16.cuh says why); the wide TF32 kernel uses conv.cu's TF32 forward tile.
#define CONV_BF16_TILE 128, 128, 2, 2
#define CONV_BF16_THREADS 128
#define CONV_WIDE_TF32_TILE 256, 128, 4, 2
#define CONV_WIDE_TF32_THREADS 256

// Bit ky·3 + kx set when input row iy0 + ky and column ix0 + kx lie inside h × w.
__device__ __forceinline__ u32 taps_inside(int iy0, int ix0, u32 h, u32 w) {
  u32 rows = 0, cols = 0;
  DDR_UNROLL for (int t = 0; t < 3; ++t) {
    if ((u32)(iy0 + t) < h) rows |= 7u << (3 * t);
    if ((u32)(ix0 + t) < w) cols |= 0x49u << t;
  }
  return rows & cols;
}

// The forward GEMM of one grid-z slice: A = patches of x, B = the weights of `ns` students side
// by side (ns = S for a shared input, else 1: the slice's own student), N = ns·cout.
struct FwdPass {
  const float* a_base;  // x (B, cin, h, w): the shared copy or this slice's student
  const float* b_base;  // params + w_off of the slice's first student
  const float* bias;    // params + b_off of the slice's first student
  float* y;             // y of the slice's first student, (ns, B, cout, oh, ow)
  u32 M, N, K, h, w, ow, ohw, hw, pad, cout, cin_hw;
  u32 param_row;  // one student's row; the launcher checks S · param_row < 2³¹ when wide
  u32 y_row;      // B·cout·oh·ow: one student's y
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
  // Decoded twice per thread and k-tile inside the main loop, so the divisions are one
  // multiply-high each: ⌈2³²/9⌉ gives k / 9 exactly for k < 2³²/5 (its error is 5k/(9·2³²); K =
  // 9·cin is far below), ⌈2³²/3⌉ gives r / 3 for r < 9. The tap's offset ky·w + kx = r + ky·(w − 3)
  // (mod 2³², exact once cast back).
  __device__ KRow k_row(u32 k) const {
    const u32 on = k < K ? ~0u : 0u;  // branch-free: the row is computed either way, then masked
    const u32 ci = mulhi_u32(k, 0x1C71C71Du), r = k - 9 * ci, ky = mulhi_u32(r, 0x55555556u);
    return {(int)(ci * hw + r + ky * (w - 3)), (1u << r) & on, (int)k, on};
  }
  // conv_gemm_bf16.cuh's 16-byte weight loads: a weight row (b_off = k) starts 16-byte aligned
  // for every column when K, the student stride (if N spans several) and b_base allow it.
  __device__ bool b_k_vec4() const {
    return K % 4 == 0 && (N <= cout || param_row % 4 == 0) && reinterpret_cast<uintptr_t>(b_base) % 16 == 0;
  }
  __device__ void store(u32 m, u32 n, float v) const {
    const u32 b = d_ohw.div(m), pix = m - b * ohw, s = d_cout.div(n), co = n - s * cout;
    y[(u64)s * y_row + ((u64)b * cout + co) * ohw + pix] = v + bias[(u64)s * param_row + co];
  }
};

// The pass of grid slice blockIdx.z: all students at once when wide, else student z (reading the
// shared x or its own).
__device__ __forceinline__ FwdPass fwd_pass(const ConvParams& p) {
  const bool wide = p.wide != 0;
  const u64 s = wide ? 0 : blockIdx.z;
  const u32 ns = wide ? p.students : 1;
  const u32 hw = p.h * p.w, ohw = p.oh * p.ow, K = p.cin * 9;
  return FwdPass{p.x + (p.x_shared ? 0 : s * p.batch * p.cin * hw),
                 p.params + s * p.param_row + p.w_off,
                 p.params + s * p.param_row + p.b_off,
                 p.out + s * p.batch * p.cout * ohw,
                 p.batch * ohw, ns * p.cout, K, p.h, p.w, p.ow, ohw, hw, p.pad, p.cout, p.cin * hw,
                 (u32)p.param_row, p.batch * p.cout * ohw,
                 FastDiv(ohw), FastDiv(p.ow), FastDiv(p.cout)};
}

// Which main loop a kernel runs.
enum class Loop { Bf16, Tf32 };

template <Loop L, int BM, int BN, int WARPS_M, int WARPS_N>
__device__ __forceinline__ void forward_tile(const FwdPass& pass, u32 mt) {
  if constexpr (L == Loop::Bf16) {
    conv_gemm_bf16<BM, BN, WARPS_M, WARPS_N>(pass, mt * BM, blockIdx.y * BN, pass.M, pass.N, 0,
                                              (pass.K + GEMM_BK16 - 1) / GEMM_BK16);
  } else {
    conv_gemm<BM, BN, WARPS_M, WARPS_N, false>(pass, mt * BM, blockIdx.y * BN, pass.M, pass.N, 0,
                                               (pass.K + GEMM_BK - 1) / GEMM_BK);
  }
}

// Forward over part.m_sub consecutive M tiles (a block's rows), then the norm epilogue for each
// student whose columns this block's N tile covers (a wide tile may span several students).
template <Loop L, int BM, int BN, int WARPS_M, int WARPS_N>
__device__ __forceinline__ void forward_norm(const ConvNormParams& q) {
  // The pass is rebuilt from the parameters per sub-tile rather than held across the loop: its
  // registers are what spilled here.
  for (u32 i = 0; i < q.part.m_sub; ++i) {
    if (i > 0) __syncthreads();  // every warp done with the previous sub-tile's stages
    forward_tile<L, BM, BN, WARPS_M, WARPS_N>(fwd_pass(q.conv), blockIdx.x * opaque_u32(q.part.m_sub) + i);
  }
  __syncthreads();  // this block's y stores are visible to the whole block
  const u32 s0 = q.conv.wide ? 0 : blockIdx.z, cout = q.conv.cout;
  const u32 N = (q.conv.wide ? q.conv.students : 1) * cout;
  const u32 n1 = blockIdx.y * BN + BN < N ? blockIdx.y * BN + BN : N;
  for (u32 n = blockIdx.y * BN; n < n1;) {
    const u32 s = n / cout, co = n - s * cout, nn = cout - co < n1 - n ? cout - co : n1 - n;
    conv_norm_epilogue<WARPS_M * WARPS_N>(q.norm, q.part, s0 + s, blockIdx.x, co, nn);
    n += nn;
  }
}

}  // namespace ddr_bf16

// Grid: (⌈B·oh·ow / BM⌉, ⌈cout / BN⌉, S), or (…, ⌈S·cout / BN⌉, 1) when wide.
extern "C" __global__ void __launch_bounds__(CONV_BF16_THREADS) conv3x3_forward_bf16(const ddr_bf16::ConvParams p) {
  using namespace ddr_bf16;
  forward_tile<Loop::Bf16, CONV_BF16_TILE>(fwd_pass(p), blockIdx.x);
}

// Grid: (⌈B·oh·ow / tile_m⌉, ⌈N / BN⌉, S or 1 as above); part.tile_m = part.m_sub · BM.
extern "C" __global__ void __launch_bounds__(CONV_BF16_THREADS) conv3x3_forward_norm_bf16(const ddr_bf16::ConvNormParams q) {
  using namespace ddr_bf16;
  forward_norm<Loop::Bf16, CONV_BF16_TILE>(q);
}

// The TF32 test pass's first layer (the launcher sets x_shared and wide).
extern "C" __global__ void __launch_bounds__(CONV_WIDE_TF32_THREADS) conv3x3_forward_norm_wide_tf32(const ddr_bf16::ConvNormParams q) {
  using namespace ddr_bf16;
  forward_norm<Loop::Tf32, CONV_WIDE_TF32_TILE>(q);
}

#ifdef DDR_HOST_EMU
extern "C" void emu_conv3x3_forward_bf16(const unsigned* grid, const unsigned* block, const void* params) {
  ddr_emu::launch(conv3x3_forward_bf16, grid, block, params);
}
extern "C" void emu_conv3x3_forward_norm_bf16(const unsigned* grid, const unsigned* block, const void* params) {
  ddr_emu::launch(conv3x3_forward_norm_bf16, grid, block, params);
}
extern "C" void emu_conv3x3_forward_norm_wide_tf32(const unsigned* grid, const unsigned* block, const void* params) {
  ddr_emu::launch(conv3x3_forward_norm_wide_tf32, grid, block, params);
}
#endif
