// conv.cu: 3×3 convolution (stride 1, zero padding, bias), batched over students: forward, input
// gradient, weight gradient, bias gradient. Weights are PyTorch's (cout, cin, 3, 3) inside each
// student's parameter row. The three big passes are implicit GEMMs (conv_gemm.cuh), one student
// per grid z; im2col happens in the gathers, never in memory:
//   forward   C(B·oh·ow, cout)  = A(B·oh·ow, cin·9) [input patches] · B(cin·9, cout) [Wᵀ]
//   dx        C(B·h·w, cin)     = A(B·h·w, cout·9) [dy patches]    · B(cout·9, cin) [W, flipped]
//   dW        C(cout, cin·9)    = A(cout, B·oh·ow) [dy]            · B(B·oh·ow, cin·9) [input patches]
// Each pass exists per precision, named <pass>_tf32x3 (3xTF32, near fp32) and <pass>_tf32 (plain
// TF32); the launcher (src/backend/cuda/ops.rs) picks one from ConvPrecision and uses the tile
// sizes below. The weight gradient splits K (B·oh·ow, up to 10⁵) over grid z and adds the partial
// tiles with atomics into a slot cleared by conv3x3_backward_weight_clear.
#include "conv_gemm.cuh"
#include "conv_grads.cuh"
#include "conv_norm.cuh"

struct ConvParams {
  const float* x;       // (S, B, cin, h, w), or (B, cin, h, w) shared by all students (x_shared)
  const float* params;  // (S, param_row)
  const float* dy;      // (S, B, cout, oh, ow), backward only
  float* out;           // forward: y (S, B, cout, oh, ow); backward_input: dx (S, B, cin, h, w)
  float* grads;         // (S, param_row), backward_weight / backward_bias only
  u64 param_row;
  u64 w_off;  // weight (cout, cin, 3, 3) at params[s * param_row + w_off]
  u64 b_off;  // bias (cout)
  u32 students, batch, cin, cout, h, w, oh, ow, pad;
  u32 k_splits;  // backward_weight: K chunks per student (grid z = students · k_splits)
  u32 x_shared;  // forward: 1 when every student reads the same x (a test pass's first layer)
  u32 unused;
};
static_assert(sizeof(ConvParams) == 112, "ConvParams must match src/backend/cuda/params.rs");

// Tiles per precision (src/backend/cuda/ops.rs `ConvTile` mirrors these). TF32: 256 × 128 per
// block of 8 warps (4 × 2), 64 × 64 per warp (128 accumulator registers): the most MMA work per
// gathered element that fits the registers, which is what keeps the main loop near the tensor
// cores' pace (tools/kernel-report.sh). 3xTF32 needs registers for the operand tails: 128 × 64
// per block of 4 warps (2 × 2), 64 × 32 per warp.
#define CONV_TF32_TILE 256, 128, 4, 2
// The weight gradient's M is cout (≤ 128 in ConvNet) and its N cin·9 (1152): the same tile, turned.
#define CONV_TF32_DW_TILE 128, 256, 2, 4
#define CONV_TF32X3_TILE 128, 64, 2, 2
#define CONV_TF32_THREADS 256
#define CONV_TF32X3_THREADS 128

// Bit ky·3 + kx set when input row iy0 + ky and column ix0 + kx lie inside h × w.
__device__ __forceinline__ u32 taps_inside(int iy0, int ix0, u32 h, u32 w) {
  u32 rows = 0, cols = 0;
  DDR_UNROLL for (int t = 0; t < 3; ++t) {
    if ((u32)(iy0 + t) < h) rows |= 7u << (3 * t);
    if ((u32)(ix0 + t) < w) cols |= 0x49u << t;  // bits t, 3 + t, 6 + t
  }
  return rows & cols;
}

// ---- forward: A = input patches (gathered), B = Wᵀ ----------------------------------------
struct FwdPass {
  const float* a_base;  // x of this student (B, cin, h, w)
  const float* b_base;  // W of this student (cout, cin·9)
  const float* bias;    // (cout)
  float* y;             // (B, cout, oh, ow)
  u32 M, N, K, h, w, ow, ohw, hw, pad, cout, cin_hw;
  FastDiv d_ohw, d_ow;
  __device__ XSlot a_x(u32 m) const {
    if (m >= M) return {0, 0};
    const u32 b = d_ohw.div(m), pix = m - b * ohw, oy = d_ow.div(pix), ox = pix - oy * ow;
    const int iy0 = (int)oy - (int)pad, ix0 = (int)ox - (int)pad;  // input of tap (0, 0)
    return {(int)(b * cin_hw) + iy0 * (int)w + ix0, taps_inside(iy0, ix0, h, w)};
  }
  __device__ XSlot b_x(u32 n) const { return n < N ? XSlot{(int)(n * K), ~0u} : XSlot{0, 0}; }
  __device__ KRow k_row(u32 k) const {
    const u32 on = k < K ? ~0u : 0u;  // branch-free: the row is computed either way, then masked
    const u32 ci = k / 9, r = k - 9 * ci, ky = r / 3, kx = r - 3 * ky;
    return {(int)(ci * hw + ky * w + kx), (1u << r) & on, (int)k, on};
  }
  __device__ void store(u32 m, u32 n, float v) const {
    const u32 b = d_ohw.div(m), pix = m - b * ohw;
    y[((u64)b * cout + n) * ohw + pix] = v + bias[n];
  }
};

// The forward of M tile `mt` (rows [mt·BM, (mt + 1)·BM)), N tile blockIdx.y, student blockIdx.z.
template <int BM, int BN, int WARPS_M, int WARPS_N, bool kSplit>
__device__ __forceinline__ void conv_forward(const ConvParams& p, u32 mt) {
  const u64 s = blockIdx.z;
  const u32 hw = p.h * p.w, ohw = p.oh * p.ow, K = p.cin * 9;
  // A shared input is one copy for all students: the S grid slices then read the same images,
  // which stay in L2 instead of S copies streaming from memory.
  const FwdPass pass{p.x + (p.x_shared ? 0 : s * p.batch * p.cin * hw),
                     p.params + s * p.param_row + p.w_off,
                     p.params + s * p.param_row + p.b_off,
                     p.out + s * p.batch * p.cout * ohw,
                     p.batch * ohw, p.cout, K, p.h, p.w, p.ow, ohw, hw, p.pad, p.cout, p.cin * hw,
                     FastDiv(ohw), FastDiv(p.ow)};
  conv_gemm<BM, BN, WARPS_M, WARPS_N, kSplit>(pass, mt * BM, blockIdx.y * BN, pass.M, pass.N, 0,
                                 (K + GEMM_BK - 1) / GEMM_BK);
}

// Grid: (⌈B·oh·ow / BM⌉, ⌈cout / BN⌉, S).
extern "C" __global__ void __launch_bounds__(CONV_TF32X3_THREADS) conv3x3_forward_tf32x3(const ConvParams p) {
  conv_forward<CONV_TF32X3_TILE, true>(p, blockIdx.x);
}
extern "C" __global__ void __launch_bounds__(CONV_TF32_THREADS) conv3x3_forward_tf32(const ConvParams p) {
  conv_forward<CONV_TF32_TILE, false>(p, blockIdx.x);
}

// ---- forward fused with the block tail's norm statistics (conv_norm.cuh) ----------------------
// The conv forward above over part.m_sub consecutive M tiles (a block's rows: part.tile_m =
// m_sub·BM, so that one block can hold a whole plane larger than its register tile, e.g. 32×32 =
// 4 × 256 rows), then the norm epilogue over those rows: y is written as by conv3x3_forward, the
// per-tile (count, mean, M2) partials go to `part`, and where the launcher set `part.fused` the
// statistics, the normalised, ReLU'd, pooled output (norm.out) and running statistics are written
// here too. norm.y is conv.out.
struct ConvNormParams {
  ConvParams conv;
  NormParams norm;
  NormPartials part;
};
static_assert(sizeof(ConvNormParams) == 296, "ConvNormParams must match src/backend/cuda/params.rs");

template <int BM, int BN, int WARPS_M, int WARPS_N, bool kSplit>
__device__ __forceinline__ void conv_forward_norm(const ConvNormParams& q) {
  for (u32 i = 0; i < q.part.m_sub; ++i) {
    // Every warp is done reading the previous sub-tile's pipeline stages before the next
    // prologue overwrites them.
    if (i > 0) __syncthreads();
    conv_forward<BM, BN, WARPS_M, WARPS_N, kSplit>(q.conv, blockIdx.x * q.part.m_sub + i);
  }
  __syncthreads();  // every thread's y stores of this block's rows are visible to the whole block
  conv_norm_epilogue<WARPS_M * WARPS_N>(q.norm, q.part, blockIdx.z, blockIdx.x, blockIdx.y * BN, BN);
}

// Grid: (⌈B·oh·ow / tile_m⌉, ⌈cout / BN⌉, S); part.tile_m = part.m_sub · BM.
extern "C" __global__ void __launch_bounds__(CONV_TF32X3_THREADS) conv3x3_forward_norm_tf32x3(const ConvNormParams q) {
  conv_forward_norm<CONV_TF32X3_TILE, true>(q);
}
extern "C" __global__ void __launch_bounds__(CONV_TF32_THREADS) conv3x3_forward_norm_tf32(const ConvNormParams q) {
  conv_forward_norm<CONV_TF32_TILE, false>(q);
}

// ---- input gradient: dx[b,ci,y,x] = Σ_{co,ky,kx} dy[b,co,y−ky+pad,x−kx+pad] · W[co,ci,ky,kx] ---
struct DxPass {
  const float* a_base;  // dy of this student (B, cout, oh, ow)
  const float* b_base;  // W of this student (cout, cin, 9)
  float* dx;            // (B, cin, h, w)
  u32 M, N, K, w, oh, ow, ohw, hw, pad, cin, cout;
  FastDiv d_hw, d_w;
  __device__ XSlot a_x(u32 m) const {
    if (m >= M) return {0, 0};
    const u32 b = d_hw.div(m), pix = m - b * hw, y = d_w.div(pix), x = pix - y * w;
    const int oy0 = (int)(y + pad), ox0 = (int)(x + pad);  // dy of tap (0, 0); tap (ky, kx) is −ky, −kx
    // taps_inside on the mirrored window: tap t valid when oy0 − t ∈ [0, oh), i.e. (oy0 − 2) + (2 − t).
    const u32 mirrored = taps_inside(oy0 - 2, ox0 - 2, oh, ow);
    u32 bits = 0;
    DDR_UNROLL for (int r = 0; r < 9; ++r) bits |= ((mirrored >> (8 - r)) & 1u) << r;
    return {(int)(b * cout * ohw) + oy0 * (int)ow + ox0, bits};
  }
  __device__ XSlot b_x(u32 n) const { return n < N ? XSlot{(int)(n * 9), ~0u} : XSlot{0, 0}; }
  __device__ KRow k_row(u32 k) const {
    const u32 on = k < K ? ~0u : 0u;
    const u32 co = k / 9, r = k - 9 * co, ky = r / 3, kx = r - 3 * ky;
    return {(int)(co * ohw) - (int)(ky * ow + kx), (1u << r) & on, (int)(co * cin * 9 + r), on};
  }
  __device__ void store(u32 m, u32 n, float v) const {
    const u32 b = d_hw.div(m), pix = m - b * hw;
    dx[((u64)b * cin + n) * hw + pix] = v;
  }
};

template <int BM, int BN, int WARPS_M, int WARPS_N, bool kSplit>
__device__ __forceinline__ void conv_backward_input(const ConvParams& p) {
  const u64 s = blockIdx.z;
  const u32 hw = p.h * p.w, ohw = p.oh * p.ow, K = p.cout * 9;
  const DxPass pass{p.dy + s * p.batch * p.cout * ohw,
                    p.params + s * p.param_row + p.w_off,
                    p.out + s * p.batch * p.cin * hw,
                    p.batch * hw, p.cin, K, p.w, p.oh, p.ow, ohw, hw, p.pad, p.cin, p.cout,
                    FastDiv(hw), FastDiv(p.w)};
  conv_gemm<BM, BN, WARPS_M, WARPS_N, kSplit>(pass, blockIdx.x * BM, blockIdx.y * BN, pass.M, pass.N, 0,
                                 (K + GEMM_BK - 1) / GEMM_BK);
}

// Grid: (⌈B·h·w / BM⌉, ⌈cin / BN⌉, S).
extern "C" __global__ void __launch_bounds__(CONV_TF32X3_THREADS) conv3x3_backward_input_tf32x3(const ConvParams p) {
  conv_backward_input<CONV_TF32X3_TILE, true>(p);
}
extern "C" __global__ void __launch_bounds__(CONV_TF32_THREADS) conv3x3_backward_input_tf32(const ConvParams p) {
  conv_backward_input<CONV_TF32_TILE, false>(p);
}

// ---- weight gradient: dW[co, ci·9 + r] = Σ_{b,oy,ox} dy[b,co,oy,ox] · x[b,ci,oy+ky−pad,ox+kx−pad] --
// K runs over the output pixels k = (b·oh + oy)·ow + ox. A thread's k rows step by GEMM_BK
// (conv_gemm.cuh), so the pass steps them as a cursor (DwRows) instead of dividing k per row,
// and finds the taps inside the image by shifts of the distances to its edges instead of a
// compare per tap row and column.
struct DwPass;
struct DwRows {
  const DwPass& p;
  int nx;   // pad − ox: −(input column of tap (0, 0))
  int ny3;  // 3·(pad − oy): −3·(input row of tap (0, 0))
  int a_off;  // dy offset b·cout·ohw + oy·ow + ox
  int b_off;  // x offset b·cin·hw + (oy − pad)·w + ox − pad
  __device__ __forceinline__ KRow row() const;
  __device__ __forceinline__ void next();
};

// v << n, 0 for n ≥ 32.
#ifndef DDR_HOST_EMU
__device__ __forceinline__ u32 shl_clamp(u32 v, u32 n) { return __funnelshift_lc(0u, v, n); }
#else
inline u32 shl_clamp(u32 v, u32 n) { return n >= 32 ? 0u : v << n; }
#endif
// max(v, 0) as a shift amount.
__device__ __forceinline__ u32 nonneg(int v) { return v > 0 ? (u32)v : 0u; }

struct DwPass {
  const float* a_base;  // dy of this student (B, cout, oh, ow)
  const float* b_base;  // x of this student (B, cin, h, w)
  float* gw;            // (cout, cin·9), cleared before the launch
  u32 M, N, w, ohw, hw, pad, cin_hw, cout_ohw;
  // A GEMM_BK step in mixed radix (B, oh, ow): GEMM_BK = (db·oh + dy)·ow + dx with dx < ow,
  // dy < oh; the offsets' steps (a_step, b_step) and their corrections when ox wraps (x_end:
  // nx ≤ pad − ow; b_wrap_x) and when oy wraps (y3_end: ny3 ≤ 3·(pad − oh); a_wrap_y, b_wrap_y).
  // Row k exists when a_off < a_end = B·cout·ohw.
  int dx, dy3, ow, oh3, h3, x_end, y3_end, a_step, b_step, b_wrap_x, a_wrap_y, b_wrap_y, a_end;
  // A row m ≥ M reads row 0 (kAByRow, conv_gemm.cuh): rows of C past cout are never stored.
  static constexpr bool kAByRow = true;
  __device__ XSlot a_x(u32 m) const { return {m < M ? (int)(m * ohw) : 0, ~0u}; }
  __device__ XSlot b_x(u32 n) const {
    if (n >= N) return {0, 0};
    const u32 ci = n / 9, r = n - 9 * ci, ky = r / 3, kx = r - 3 * ky;
    return {(int)(ci * hw + ky * w + kx), 1u << r};
  }
  // The cursor at row k (once per thread: the only divisions).
  __device__ DwRows k_rows(u32 k) const {
    const u32 ow_ = (u32)ow, b = k / ohw, pix = k - b * ohw, oy = pix / ow_, ox = pix - oy * ow_;
    const int ny = (int)pad - (int)oy, nx = (int)pad - (int)ox;
    return {*this, nx, 3 * ny, (int)(b * cout_ohw + pix), (int)(b * cin_hw) - ny * (int)w - nx};
  }
  __device__ void store(u32 m, u32 n, float v) const { atomicAdd(gw + (u64)m * N + n, v); }
};

__device__ __forceinline__ KRow DwRows::row() const {
  // Tap row t is inside when 0 ≤ iy + t < h, i.e. 3t ∈ [ny3, ny3 + 3h): the 9-bit tap mask's
  // bits [max(ny3, 0), max(ny3 + 3h, 0)) (bits past 8 are never tested); tap column t when
  // t ∈ [nx, nx + w), spread over the three tap rows (× 0b001001001).
  const u32 rows = shl_clamp(0x1FFu, nonneg(ny3)) & ~shl_clamp(0x1FFu, nonneg(ny3 + p.h3));
  const u32 cols = shl_clamp(7u, nonneg(nx)) & ~shl_clamp(7u, nonneg(nx + (int)p.w)) & 7u;
  const u32 on = a_off < p.a_end ? ~0u : 0u;
  return {a_off, on, b_off, rows & cols * 0x49u & on};
}
__device__ __forceinline__ void DwRows::next() {
  // ox += dx with a carry into oy; then oy += dy with a carry into b. The dy offset runs over
  // b·cout·ohw + pix, so only b's carry corrects it; x's over (oy − pad)·w + ox − pad too.
  a_off += p.a_step;
  b_off += p.b_step;
  nx -= p.dx;
  ny3 -= p.dy3;
  if (nx <= p.x_end) {
    nx += p.ow;
    ny3 -= 3;
    b_off += p.b_wrap_x;
  }
  if (ny3 <= p.y3_end) {
    ny3 += p.oh3;
    a_off += p.a_wrap_y;
    b_off += p.b_wrap_y;
  }
}

template <int BM, int BN, int WARPS_M, int WARPS_N, bool kSplit>
__device__ __forceinline__ void conv_backward_weight(const ConvParams& p) {
  const u64 s = blockIdx.z / p.k_splits;
  const u32 split = blockIdx.z % p.k_splits;
  const u32 hw = p.h * p.w, ohw = p.oh * p.ow, K = p.batch * ohw;
  const u32 db = GEMM_BK / ohw, dy = GEMM_BK % ohw / p.ow, dx = GEMM_BK % p.ow;
  const int cout_ohw = (int)(p.cout * ohw), cin_hw = (int)(p.cin * hw), w = (int)p.w;
  const int ow = (int)p.ow, oh = (int)p.oh, pad = (int)p.pad;
  const DwPass pass{p.dy + s * p.batch * p.cout * ohw,
                    p.x + s * p.batch * p.cin * hw,
                    p.grads + s * p.param_row + p.w_off,
                    p.cout, p.cin * 9, p.w, ohw, hw, p.pad, p.cin * hw, p.cout * ohw,
                    (int)dx, 3 * (int)dy, ow, 3 * oh, 3 * (int)p.h,
                    pad - ow,                                   // x_end
                    3 * (pad - oh),                             // y3_end
                    (int)db * cout_ohw + (int)(GEMM_BK % ohw),  // a_step
                    (int)db * cin_hw + (int)dy * w + (int)dx,   // b_step
                    w - ow,                                     // b_wrap_x
                    cout_ohw - (int)ohw,                        // a_wrap_y
                    cin_hw - oh * w,                            // b_wrap_y
                    (int)p.batch * cout_ohw};                   // a_end
  const u32 tiles = (K + GEMM_BK - 1) / GEMM_BK, chunk = (tiles + p.k_splits - 1) / p.k_splits;
  const u32 kt0 = split * chunk, kt1 = kt0 + chunk < tiles ? kt0 + chunk : tiles;
  conv_gemm<BM, BN, WARPS_M, WARPS_N, kSplit>(pass, blockIdx.x * BM, blockIdx.y * BN, pass.M, pass.N, kt0,
                                              kt0 < kt1 ? kt1 : kt0);
}

// Grid: (⌈cout / BM⌉, ⌈cin·9 / BN⌉, S · k_splits).
extern "C" __global__ void __launch_bounds__(CONV_TF32X3_THREADS) conv3x3_backward_weight_tf32x3(const ConvParams p) {
  conv_backward_weight<CONV_TF32X3_TILE, true>(p);
}
extern "C" __global__ void __launch_bounds__(CONV_TF32_THREADS) conv3x3_backward_weight_tf32(const ConvParams p) {
  conv_backward_weight<CONV_TF32_DW_TILE, false>(p);
}

// Zeroes each student's weight-gradient slot (cout·cin·9) before the split-K atomics.
extern "C" __global__ void __launch_bounds__(DDR_BLOCK) conv3x3_backward_weight_clear(const ConvParams p) {
  conv_clear_weight_grads(p.grads, p.param_row, p.w_off, (u64)p.cout * p.cin * 9, p.students);
}

// db[co] = Σ_{b,oy,ox} dy[s,b,co,oy,ox] in fp32; blocks loop over the S·cout (s, co) pairs.
extern "C" __global__ void __launch_bounds__(DDR_BLOCK) conv3x3_backward_bias(const ConvParams p) {
  conv_bias_grad(p.dy, p.grads, p.param_row, p.b_off, p.students, p.batch, p.cout, (u64)p.oh * p.ow);
}

#ifdef DDR_HOST_EMU
extern "C" void emu_conv3x3_forward_tf32x3(const unsigned* grid, const unsigned* block, const void* params) {
  ddr_emu::launch(conv3x3_forward_tf32x3, grid, block, params);
}
extern "C" void emu_conv3x3_forward_tf32(const unsigned* grid, const unsigned* block, const void* params) {
  ddr_emu::launch(conv3x3_forward_tf32, grid, block, params);
}
extern "C" void emu_conv3x3_forward_norm_tf32x3(const unsigned* grid, const unsigned* block, const void* params) {
  ddr_emu::launch(conv3x3_forward_norm_tf32x3, grid, block, params);
}
extern "C" void emu_conv3x3_forward_norm_tf32(const unsigned* grid, const unsigned* block, const void* params) {
  ddr_emu::launch(conv3x3_forward_norm_tf32, grid, block, params);
}
extern "C" void emu_conv3x3_backward_input_tf32x3(const unsigned* grid, const unsigned* block, const void* params) {
  ddr_emu::launch(conv3x3_backward_input_tf32x3, grid, block, params);
}
extern "C" void emu_conv3x3_backward_input_tf32(const unsigned* grid, const unsigned* block, const void* params) {
  ddr_emu::launch(conv3x3_backward_input_tf32, grid, block, params);
}
extern "C" void emu_conv3x3_backward_weight_tf32x3(const unsigned* grid, const unsigned* block, const void* params) {
  ddr_emu::launch(conv3x3_backward_weight_tf32x3, grid, block, params);
}
extern "C" void emu_conv3x3_backward_weight_tf32(const unsigned* grid, const unsigned* block, const void* params) {
  ddr_emu::launch(conv3x3_backward_weight_tf32, grid, block, params);
}
extern "C" void emu_conv3x3_backward_weight_clear(const unsigned* grid, const unsigned* block, const void* params) {
  ddr_emu::launch(conv3x3_backward_weight_clear, grid, block, params);
}
extern "C" void emu_conv3x3_backward_bias(const unsigned* grid, const unsigned* block, const void* params) {
  ddr_emu::launch(conv3x3_backward_bias, grid, block, params);
}
#endif
