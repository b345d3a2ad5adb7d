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
// Two kernels, one per test precision (params: ConvNormParams, the layout of conv.cu /
// conv_bf16.cu; norm.y and conv.out are not read or written; part.partials unused):
//   conv3x3_eval_direct_tf32   TF32 tensor cores (m16n8k8; operands truncated by the MMA)
//   conv3x3_eval_direct_bf16   bf16 tensor cores (m16n8k16; operands rounded to nearest even);
//                              stores the pooled output as bf16 when norm.act_bf16 has
//                              ACT_OUT_BF16 (half its bytes; the next block of a bf16 test pass
//                              rounds it to bf16 anyway). The TF32 kernel always stores fp32
//                              (its launcher refuses the flag).
// A block owns ONE image × 32 output columns: grid (B, ⌈N / 32⌉, S), or (B, ⌈S·cout / 32⌉, 1)
// when wide. `wide` (with x_shared) makes the block's columns span S·cout (a test chunk's first
// layer as one GEMM over every student's weights, as conv_bf16.cu); otherwise grid z is the
// student. How the conv is computed: "The direct kernels" below.
//
// Everything lives in dynamic shared memory (the y tile alone is (32, oh·ow + EVAL_PITCH_PAD)
// floats, 133 KB for a 32×32 plane, more than the 48 KiB a kernel may declare statically); the
// launcher (src/backend/cuda/ops/eval.rs) sizes the window, checks it against the device's opt-in
// limit and otherwise falls back to conv.cu's / conv_bf16.cu's fused forward. Under the host
// emulator (no dynamic shared memory) it is a thread-local array, which every fiber of an emulated
// block shares as it shares __shared__ arrays.
#include "conv_gemm.cuh"
#include "mma_bf16.cuh"
#include "norm_common.cuh"
#include "conv_params.cuh"

namespace ddr_eval {

// The launch arguments (conv_params.cuh), by their names in this namespace.
using ddr_conv::ConvNormParams;
using ddr_conv::ConvParams;

// Floats added to each column's row count in the shared tile: the epilogue's lanes 0–15 and
// 16–31 store neighbouring columns, which a pitch ≡ 16 (mod 32) puts in different banks.
#define EVAL_PITCH_PAD 16

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

// NormParams::act_bf16 bit (src/backend/cuda/params.rs ACT_OUT_BF16): `out` holds bf16, two
// bytes per value in its usual element order (value 2j in the low half of f32 slot j).
#define EVAL_ACT_OUT_BF16 1u

// v rounded to bf16, nearest even (the rounding of the bf16 main loop's operands, so a next
// block that rounds its fp32 input anyway sees the same bits), as its 16 bits.
#ifndef DDR_HOST_EMU
__device__ __forceinline__ unsigned short bf16_bits(float v) { return (unsigned short)(pack_bf16(v, 0.0f) & 0xffffu); }
#else
inline unsigned short bf16_bits(float v) {
  return v != v ? (unsigned short)0x7fc0u : (unsigned short)(__float_as_uint(round_bf16(v)) >> 16);
}
#endif

// The block tail over its shared tile: one warp per (column, image) plane. Column nl is output
// n0 + nl, student s0 + n / cout, channel n % cout; image j is b0 + j. OUT16: the kernel may
// store `out` as bf16 (p.act_bf16 & EVAL_ACT_OUT_BF16; the bf16 kernel only, so the TF32
// kernel's code is unchanged).
template <int WARPS, bool OUT16>
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
    const u64 plane = (s * p.batch + b) * p.c + co;
    float* op = p.out + plane * phw;                                              // (ph, pw) fp32
    unsigned short* op16 = reinterpret_cast<unsigned short*>(p.out) + plane * phw;  // (ph, pw) bf16
    const bool out16 = OUT16 && (p.act_bf16 & EVAL_ACT_OUT_BF16) != 0;
    for (u32 q = lane; q < phw; q += 32) {
      const u32 py = d_pw.div(q), px = q - py * p.pw;
      const float* v = yp + 2 * py * p.w + 2 * px;
      float acc = 0.0f;
      DDR_UNROLL for (u32 dy = 0; dy < 2; ++dy) DDR_UNROLL for (u32 dx = 0; dx < 2; ++dx) {
        const float z = p.kind == 2 ? v[dy * p.w + dx] : gamma * (v[dy * p.w + dx] - mean) * rstd + beta;
        acc += z > 0.0f ? z : 0.0f;
      }
      // A warp stores 32 consecutive values: 64 contiguous bytes in bf16, 128 in fp32.
      if (out16) {
        op16[q] = bf16_bits(0.25f * acc);
      } else {
        op[q] = 0.25f * acc;
      }
    }
  }
}

// ---- The direct kernels ----
// The block's image (cin, h, w) goes to shared memory once, zero-padded to (cin, h + 2·pad,
// w + 2·pad), so that patch element (m, k) = xs[row_off(m) + k_off(k)] with no presence test: the
// A fragments are read straight from it (one shared load per element at a row register plus a
// k offset; bf16 also packs pairs), with no im2col tile, no cp.async gather and no k-row decode in
// the main loop. The weights (32 columns × K, padded with zeros to whole K steps) go to shared
// memory once, in mma_tf32.cuh's pair rows (TF32) or as mma_bf16.cuh's bf16 fragments (converted
// in place once per block), so the B fragments are 128-bit loads. Each warp then runs warp tiles
// of 16·EVAL_DIRECT_FM rows × 32 columns (tiles warp, warp + WARPS, ... of the plane) over the
// whole K and writes them, plus the bias, to the y tile; the eval tail follows.
// Why not conv_gemm (conv_gemm.cuh) with a wider N tile, as the training forward: a 32×32 plane is
// 1,024 rows, so a y tile of 64 columns is 266 KB, more than the 227 KB a block may have on any
// GPU; and at 32 columns conv_gemm's im2col gather serves too few MMAs (kernel report, sm_90:
// 9.75 other instructions per HMMA.1688 TF32, 28.4 per HMMA.16816 bf16). Here the gather is gone
// instead; the fill is once per block, outside the main loop.
// Shared window (floats, in this order; src/backend/cuda/ops/eval.rs `direct_smem_floats`), with
// kp = K rounded up to the K step (TF32 8, bf16 16):
//   ys    (32, oh·ow + EVAL_PITCH_PAD)        the y tile, column-major
//   xs    (cin, h + 2·pad, w + 2·pad), padded to a multiple of 4 floats
//   bs    TF32: (kp / 8, 4, EVAL_DIRECT_LDB) pair rows; bf16: (kp / 16, sw16(n, k)) per K step
//   koff  (kp) ints, k_off · kSmemFloat: TF32 as (kp / 8, t, half) for k = 8j + t + 4·half,
//         bf16 in k order
//   bias  (32)
#define EVAL_DIRECT_BN 32
#define EVAL_DIRECT_FM 2
#define EVAL_DIRECT_WARPS 8
#define EVAL_DIRECT_THREADS (32 * EVAL_DIRECT_WARPS)
#define EVAL_DIRECT_LDB (2 * EVAL_DIRECT_BN + 8)

#ifndef DDR_HOST_EMU
__device__ __forceinline__ float lds32(SmemAddr p) {
  float v;
  asm volatile("ld.shared.f32 %0, [%1];\n" : "=f"(v) : "r"(p));
  return v;
}
__device__ __forceinline__ int2 lds64i(SmemAddr p) {
  int2 v;
  asm volatile("ld.shared.v2.s32 {%0, %1}, [%2];\n" : "=r"(v.x), "=r"(v.y) : "r"(p));
  return v;
}
__device__ __forceinline__ int4 lds128i(SmemAddr p) {
  int4 v;
  asm volatile("ld.shared.v4.s32 {%0, %1, %2, %3}, [%4];\n" : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "r"(p));
  return v;
}
// This lane's patch rows of a warp tile starting at plane row r0: rows r0 + 16i + g and that + 8
// (g = lane / 4), as addresses of their tap (0, 0) in xs; rows past the plane read row 0.
template <int FM>
struct ARows {
  SmemAddr r[FM][2];
};
template <int FM>
__device__ __forceinline__ void a_rows(ARows<FM>& a, SmemAddr xs, u32 r0, u32 ohw, u32 ow, const FastDiv& d_ow,
                                       u32 pw) {
  const u32 g = (threadIdx.x % 32) / 4;
  DDR_UNROLL for (int i = 0; i < FM; ++i) DDR_UNROLL for (int h = 0; h < 2; ++h) {
    const u32 row = r0 + 16 * i + 8 * h + g, oy = d_ow.div(row), ox = row - oy * ow;
    a.r[i][h] = xs + (row < ohw ? oy * pw + ox : 0) * kSmemFloat;
  }
}
// a[i] = A[r0 + 16i .. + 15][8j .. 8j + 7] with koff the K step's (t, half) table.
template <int FM>
__device__ __forceinline__ void load_a_direct(FragA (&a)[FM], const ARows<FM>& rows, SmemAddr koff) {
  const int2 ko = lds64i(koff + (threadIdx.x % 4) * 8);
  DDR_UNROLL for (int i = 0; i < FM; ++i) {
    a[i].x[0] = lds32(rows.r[i][0] + ko.x);
    a[i].x[1] = lds32(rows.r[i][1] + ko.x);
    a[i].x[2] = lds32(rows.r[i][0] + ko.y);
    a[i].x[3] = lds32(rows.r[i][1] + ko.y);
  }
}
// bf16: a[i] = A[r0 + 16i .. + 15][16j .. 16j + 15] rounded to bf16, koff the K step's 16
// offsets in k order; lane (g, t) takes the true k 4t .. 4t + 3 (mma_bf16.cuh's slot order).
template <int FM>
__device__ __forceinline__ void load_a16_direct(FragA16 (&a)[FM], const ARows<FM>& rows, SmemAddr koff) {
  const int4 ko = lds128i(koff + (threadIdx.x % 4) * 16);
  DDR_UNROLL for (int i = 0; i < FM; ++i) {
    const SmemAddr r0 = rows.r[i][0], r1 = rows.r[i][1];
    a[i].x[0] = pack_bf16(lds32(r0 + ko.x), lds32(r0 + ko.y));
    a[i].x[1] = pack_bf16(lds32(r1 + ko.x), lds32(r1 + ko.y));
    a[i].x[2] = pack_bf16(lds32(r0 + ko.z), lds32(r0 + ko.w));
    a[i].x[3] = pack_bf16(lds32(r1 + ko.z), lds32(r1 + ko.w));
  }
}
// C fragment (16 rows from row0, 8 columns from col0) + bias into the column-major y tile.
__device__ __forceinline__ void store_c_cols(float* ys, u32 pitch, const FragC& c, u32 row0, u32 col0, u32 ohw,
                                             const float* bias) {
  const u32 g = (threadIdx.x % 32) / 4, t = threadIdx.x % 4;
  DDR_UNROLL for (int h = 0; h < 2; ++h) {
    const u32 row = row0 + g + 8 * h;
    if (row < ohw) {
      ys[(col0 + 2 * t) * pitch + row] = c.x[2 * h] + bias[col0 + 2 * t];
      ys[(col0 + 2 * t + 1) * pitch + row] = c.x[2 * h + 1] + bias[col0 + 2 * t + 1];
    }
  }
}
#else  // the emulator: every lane holds the whole fragment (mma_tf32.cuh)
template <int FM>
struct ARows {
  float* r[FM][16];
};
template <int FM>
inline void a_rows(ARows<FM>& a, float* xs, u32 r0, u32 ohw, u32 ow, const FastDiv&, u32 pw) {
  for (int i = 0; i < FM; ++i)
    for (u32 m = 0; m < 16; ++m) {
      const u32 row = r0 + 16 * i + m, oy = row / ow, ox = row - oy * ow;
      a.r[i][m] = xs + (row < ohw ? oy * pw + ox : 0);
    }
}
template <int FM>
inline void load_a_direct(FragA (&a)[FM], const ARows<FM>& rows, const float* koff) {
  const int* ko = reinterpret_cast<const int*>(koff);
  for (int i = 0; i < FM; ++i)
    for (int m = 0; m < 16; ++m)
      for (int k = 0; k < 8; ++k) a[i].x[m * 8 + k] = rows.r[i][m][ko[(k % 4) * 2 + k / 4]];
}
template <int FM>
inline void load_a16_direct(FragA16 (&a)[FM], const ARows<FM>& rows, const float* koff) {
  const int* ko = reinterpret_cast<const int*>(koff);
  for (int i = 0; i < FM; ++i)
    for (int m = 0; m < 16; ++m)
      for (int k = 0; k < 16; ++k) a[i].x[m * 16 + k] = round_bf16(rows.r[i][m][ko[k]]);
}
inline void store_c_cols(float* ys, u32 pitch, const FragC& c, u32 row0, u32 col0, u32 ohw, const float* bias) {
  if (ddr_emu::lane_id() != 0) return;
  for (u32 m = 0; m < 16; ++m)
    for (u32 n = 0; n < 8; ++n)
      if (row0 + m < ohw) ys[(col0 + n) * pitch + row0 + m] = c.x[m * 8 + n] + bias[col0 + n];
}
#endif

// BF16: the bf16 main loop (m16n8k16 steps of 16 k; operands rounded to nearest even, as the
// CPU's GemmPrecision::Bf16 does and conv_gemm_bf16 did), else TF32 (m16n8k8 steps of 8 k,
// truncation in the MMA, as conv_gemm).
template <bool BF16>
__device__ __forceinline__ void conv_eval_direct(const ConvNormParams& q) {
  constexpr int BN = EVAL_DIRECT_BN, FM = EVAL_DIRECT_FM, FN = BN / 8, WARPS = EVAL_DIRECT_WARPS;
  constexpr int LDB = EVAL_DIRECT_LDB, KSTEP = BF16 ? 16 : 8;
  const ConvParams& p = q.conv;
  const bool wide = p.wide != 0;
  const u64 s0 = wide ? 0 : blockIdx.z;
  const u32 N = (wide ? p.students : 1) * p.cout, K = p.cin * 9, kp = (K + KSTEP - 1) / KSTEP * KSTEP;
  const u32 hw = p.h * p.w, ohw = p.oh * p.ow, ph = p.h + 2 * p.pad, pw = p.w + 2 * p.pad, php = ph * pw;
  const u32 b = blockIdx.x, n0 = blockIdx.y * BN, pitch = ohw + EVAL_PITCH_PAD;
  const u32 nn = N - n0 < BN ? N - n0 : BN;
  float* ys = eval_y_tile();
  float* xs = ys + BN * pitch;
  float* bs = xs + (p.cin * php + 3) / 4 * 4;
  int* koff = reinterpret_cast<int*>(bs + kp * (BF16 ? BN : BN + 4));
  float* bias = reinterpret_cast<float*>(koff + kp);

  // Fill the window: the padded image, the weights, the k offsets, the bias.
  const float* x = p.x + (p.x_shared ? 0 : s0 * p.batch * p.cin * hw) + (u64)b * p.cin * hw;  // (cin, h, w)
  for (u32 i = threadIdx.x; i < p.cin * php; i += blockDim.x) {
    const u32 ci = i / php, r = i - ci * php, py = r / pw, px = r - py * pw;
    const u32 iy = py - p.pad, ix = px - p.pad;  // wraps past h / w when in the padding
    xs[i] = iy < p.h && ix < p.w ? x[ci * hw + iy * p.w + ix] : 0.0f;
  }
  const FastDiv d_cout(p.cout);
  for (u32 i = threadIdx.x; i < kp * BN; i += blockDim.x) {
    const u32 k = i / BN, nl = i - k * BN, n = n0 + nl, s = d_cout.div(n), co = n - s * p.cout;
    const float v = k < K && nl < nn ? p.params[(s0 + s) * p.param_row + p.w_off + co * K + k] : 0.0f;
    if (BF16) {
      bs[(k / 16) * BN * 16 + sw16(nl, k % 16)] = v;  // (k step, sw16(n, k)), converted below
    } else {
      bs[(k / 8) * 4 * LDB + (k % 4) * LDB + b_pos(nl, (k % 8) / 4)] = v;  // (k step, pair rows)
    }
  }
  for (u32 k = threadIdx.x; k < kp; k += blockDim.x) {
    // k ≥ K reads tap (0, 0) of channel 0 (finite), against a zero weight.
    const u32 ci = k / 9, r = k - 9 * ci, ky = r / 3, kx = r - 3 * ky;
    const u32 off = k < K ? ci * php + ky * pw + kx : 0;
    // TF32: (k step, t, half) pairs k = 8j + t + 4·half; bf16: k order.
    const u32 slot = BF16 ? k : (k / 8) * 8 + (k % 4) * 2 + (k % 8) / 4;
    koff[slot] = (int)(off * kSmemFloat);
  }
  for (u32 nl = threadIdx.x; nl < BN; nl += blockDim.x) {
    const u32 n = n0 + nl, s = d_cout.div(n), co = n - s * p.cout;
    bias[nl] = nl < nn ? p.params[(s0 + s) * p.param_row + p.b_off + co] : 0.0f;
  }
  __syncthreads();
  const u32 warp = threadIdx.x / 32, ksteps = kp / KSTEP;
  if (BF16) {
    // The weights to bf16 fragments in place, one (k step, 16-column block) per warp at a time.
    for (u32 blk = warp; blk < ksteps * (BN / 16); blk += WARPS)
      convert_b16_pair(smem_addr(bs + blk * 16 * 16) + frag16_lane_offset() * kSmemFloat);
    __syncthreads();
  }

  // The conv: warp tiles of 16·FM rows × BN columns, each over the whole K.
  const SmemAddr xs_a = smem_addr(xs), koff_a = smem_addr(reinterpret_cast<float*>(koff));
  const SmemAddr bs_a = smem_addr(bs) + (BF16 ? frag16_lane_offset() : frag_lane_offset(LDB)) * kSmemFloat;
  const FastDiv d_ow(p.ow);
  DDR_NO_UNROLL for (u32 r0 = 16 * FM * warp; r0 < ohw; r0 += 16 * FM * WARPS) {
    ARows<FM> rows;
    a_rows(rows, xs_a, r0, ohw, p.ow, d_ow, pw);
    FragC acc[FM][FN];
    DDR_UNROLL for (int i = 0; i < FM; ++i) DDR_UNROLL for (int j = 0; j < FN; ++j) fill_zero(acc[i][j]);
    if constexpr (BF16) {
      for (u32 ks = 0; ks < ksteps; ++ks) {
        FragA16 a[FM];
        FragB16 bf[FN];
        load_a16_direct(a, rows, koff_a + ks * 16 * kSmemFloat);
        load_b16_tile(bf, bs_a + ks * BN * 16 * kSmemFloat);
        DDR_UNROLL for (int i = 0; i < FM; ++i) DDR_UNROLL for (int j = 0; j < FN; ++j) mma16(acc[i][j], a[i], bf[j]);
      }
    } else {
      for (u32 ks = 0; ks < ksteps; ++ks) {
        FragA a[FM];
        FragB bf[FN];
        load_a_direct(a, rows, koff_a + ks * 8 * kSmemFloat);
        load_b_tile(bf, bs_a + ks * 4 * LDB * kSmemFloat, LDB);
        DDR_UNROLL for (int i = 0; i < FM; ++i) DDR_UNROLL for (int j = 0; j < FN; ++j) mma(acc[i][j], a[i], bf[j]);
      }
    }
    DDR_UNROLL for (int i = 0; i < FM; ++i) DDR_UNROLL for (int j = 0; j < FN; ++j)
      store_c_cols(ys, pitch, acc[i][j], r0 + 16 * i, 8 * j, ohw, bias);
  }
  __syncthreads();  // the whole y tile is in shared memory
  eval_tail<WARPS, BF16>(q.norm, ys, pitch, b, 1, n0, nn, p.cout, s0);
}

}  // namespace ddr_eval

// No static shared memory, and one block's window is up to 227 KB: one block per SM.
extern "C" __global__ void __launch_bounds__(EVAL_DIRECT_THREADS, 1) conv3x3_eval_direct_tf32(const ddr_eval::ConvNormParams q) {
  ddr_eval::conv_eval_direct<false>(q);
}
extern "C" __global__ void __launch_bounds__(EVAL_DIRECT_THREADS, 1) conv3x3_eval_direct_bf16(const ddr_eval::ConvNormParams q) {
  ddr_eval::conv_eval_direct<true>(q);
}

#ifdef DDR_HOST_EMU
extern "C" void emu_conv3x3_eval_direct_tf32(const unsigned* grid, const unsigned* block, const void* params) {
  ddr_emu::launch(conv3x3_eval_direct_tf32, grid, block, params);
}
extern "C" void emu_conv3x3_eval_direct_bf16(const unsigned* grid, const unsigned* block, const void* params) {
  ddr_emu::launch(conv3x3_eval_direct_bf16, grid, block, params);
}
#endif
