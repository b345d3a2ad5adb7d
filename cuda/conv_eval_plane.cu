// conv_eval_plane.cu: the bf16 eval-mode (test-pass) ConvNet block for SMALL planes (ConvNet-3's
// blocks 2–3 at 32 px: 16×16 and 8×8 outputs, 128 input channels): conv 3×3 (stride 1, pad 1) →
// norm (instance; eval batch norm as the running-statistics affine; none) → ReLU → 2×2 average
// pool in ONE kernel, y kept in registers and never stored.
//
// Why a second eval kernel: conv_eval.cu's direct kernels keep y in shared memory, which leaves no
// room for 128 input channels beside it, so these layers ran conv_bf16.cu's stored-y forward
// (fp32 operands gathered by 4-byte cp.async and converted to bf16 every stage; y written and read
// back by the epilogue): 3.9 other instructions per HMMA.16816 there. Here the whole y tile lives
// in the accumulators, so a block can spend its shared memory on its input images instead.
//
// One block (256 threads, 8 warps) = one student × 128 output columns × 256 output rows: whole
// planes, ⌈256 / (oh·ow)⌉ images (one 16×16 image, four 8×8 images). Grid (⌈B / imgs⌉,
// ⌈cout / 128⌉, S). Warp (wm, wn) = (warp % 4, warp / 4) owns rows 64·wm .. + 63 and columns
// 64·wn .. + 63: 4 × 8 m16n8k16 accumulators (128 fp32 registers).
//
// Shared window (bytes, in this order; src/backend/cuda/ops/eval.rs `plane_smem_bytes`):
//   wbuf  2 × (128, PLANE_WROW): the bf16 weights of one channel block (16 input channels × 9
//         taps) per output column, n-major, (tap, channel) inside a row, rows padded 16 bytes so
//         the 8 rows of an ldmatrix phase hit distinct banks; double-buffered
//   red   (4, 128) floats: the per-warp column sums of the norm statistics
//   xs    (imgs, h + 2, w + 2, cin + 8) bf16: the block's images, zero-padded, pixel-major with
//         channels contiguous and the pixel stride padded by 16 bytes (8 consecutive pixels →
//         8 distinct 16-byte bank groups); converted from fp32 (or copied from bf16 x) ONCE
// K order of the GEMM: (channel block cb of 16, tap, channel): a k16 step is one tap of one
// channel block, so an A row's 16 k are 32 contiguous bytes of one padded pixel (ldmatrix rows).
//
// A (patches) by ldmatrix.x4 with per-lane row addresses into xs: the row → pixel map is free, so
// row (i, h8, g) of a warp tile (m fragment i, half h8 of it, g = row % 8) is corner
// (dy, dx) = (i % 2, h8 ^ (g / 4 % 2)) of pooling window 16·wm + 8·(i / 2) + g. The accumulator
// thread (g = lane / 4) then holds the four corners of two whole windows in registers (pooling
// needs no shuffles), and the dx swizzle keeps one ldmatrix phase's 8 pixels in distinct banks
// for 16- and 8-wide planes. B (weights) by ldmatrix.x4 from wbuf. The weights are rounded to
// bf16 while staged: during each of the 9 k16 steps of channel block cb every thread loads 8
// fp32 weights of block cb + 1 (8 channels of one tap of one column: constant offsets from one
// address, see `wstep`) and stores them after the step's MMAs as one 16-byte row piece into the
// other buffer; one barrier per channel block.
//
// Epilogue: bias, then per-(image, channel) mean and Σ(y − mean)² by two exact passes over the
// registers (warp shuffles over g, then `red` across the warps of an image), normalise, ReLU, pool,
// write the pooled output (fp32 (S, B, cout, oh/2, ow/2), or bf16 when act_bf16 & ACT_OUT_BF16)
// and the statistics conv_eval.cu writes (instance (S, B, c, 2); batch (S, c, 2) by the blocks of
// image 0).
//
// Limits (the launcher's `plane_kernel_for` checks them): stride 1, pad 1; cin % 16 == 0; oh, ow
// even; oh·ow ∈ {64, 128, 256} (a warp's 16 windows in one image); the window within the
// device's opt-in shared memory.
//
// The host emulator runs the same code: ldmatrix gathers the 32 lanes' row addresses through a
// per-warp slot array and returns the four 8×8 matrices to every lane, and each lane's mma
// computes exactly its own 4 accumulator elements (the PTX layout), so the epilogue is shared.
#include "conv_gemm.cuh"
#include "mma_bf16.cuh"
#include "norm_common.cuh"
#include "conv_params.cuh"

namespace ddr_plane {

// The launch arguments (conv_params.cuh), by their names in this namespace.
using ddr_conv::ConvNormParams;
using ddr_conv::ConvParams;

#define PLANE_THREADS 256
#define PLANE_WARPS 8
#define PLANE_BM 256
#define PLANE_BN 128
#define PLANE_FM 4
#define PLANE_FN 8
// Bytes of one weight row in wbuf: 9 taps × 16 channels of bf16, + 16 so that rows n .. n + 7
// (pitch 76 words ≡ 12 mod 32) occupy distinct bank groups.
#define PLANE_WROW (9 * 16 * 2 + 16)
#define PLANE_WBUF (PLANE_BN * PLANE_WROW)
#define PLANE_RED_BYTES (4 * PLANE_BN * 4)
// Bytes per padded pixel beyond cin bf16 channels.
#define PLANE_PIX_PAD 16

typedef unsigned short u16;

#ifndef DDR_HOST_EMU
#define DDR_NO_UNROLL _Pragma("unroll 1")
#else
#define DDR_NO_UNROLL
#endif

#ifndef DDR_HOST_EMU
__device__ __forceinline__ unsigned char* plane_smem() {
  extern __shared__ __align__(16) unsigned char plane_dyn[];
  return plane_dyn;
}
using PAddr = u32;  // a shared-window byte address
__device__ __forceinline__ PAddr paddr(const unsigned char* p) { return (u32)__cvta_generic_to_shared(p); }
__device__ __forceinline__ u16 bf16_bits(float v) { return (u16)(pack_bf16(v, 0.0f) & 0xffffu); }

// Four 8×8 bf16 matrices; lane l gives the address of row l % 8 of matrix l / 8 and receives
// row l / 4, columns 2·(l % 4), + 1 of each (PTX ISA, "ldmatrix").
struct Mat4 {
  u32 r[4];
};
__device__ __forceinline__ void ldsm_x4(Mat4& m, PAddr a) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(m.r[0]), "=r"(m.r[1]), "=r"(m.r[2]), "=r"(m.r[3])
               : "r"(a));
}
// m16n8k16 fragments (PTX ISA, "Matrix fragments for mma.m16n8k16", g = lane / 4, t = lane % 4):
// A: (g, 2t..), (g + 8, 2t..), (g, 2t + 8..), (g + 8, 2t + 8..) = ldmatrix matrices (rows 0–7,
// k 0–7), (rows 8–15, k 0–7), (rows 0–7, k 8–15), (rows 8–15, k 8–15); B (n-major rows):
// (k 2t.., n g), (k 2t + 8.., n g) = matrices (n 0–7, k 0–7), (n 0–7, k 8–15).
struct PA {
  u32 x[4];
};
struct PB {
  u32 x[2];
};
__device__ __forceinline__ void a_of(PA& a, const Mat4& m) {
  a.x[0] = m.r[0];
  a.x[1] = m.r[1];
  a.x[2] = m.r[2];
  a.x[3] = m.r[3];
}
// Matrices (n 0–7, k 0–7), (n 0–7, k 8–15), (n 8–15, k 0–7), (n 8–15, k 8–15) → b0 (n 0–7), b1 (n 8–15).
__device__ __forceinline__ void b_of(PB& b0, PB& b1, const Mat4& m) {
  b0.x[0] = m.r[0];
  b0.x[1] = m.r[1];
  b1.x[0] = m.r[2];
  b1.x[1] = m.r[3];
}
struct PC {
  float x[4];  // C[g][2t], C[g][2t + 1], C[g + 8][2t], C[g + 8][2t + 1]
};
__device__ __forceinline__ void pmma(PC& c, const PA& a, const PB& b) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(c.x[0]), "+f"(c.x[1]), "+f"(c.x[2]), "+f"(c.x[3])
      : "r"(a.x[0]), "r"(a.x[1]), "r"(a.x[2]), "r"(a.x[3]), "r"(b.x[0]), "r"(b.x[1]));
}
#else  // the host emulator
// A block's window; the launcher's emulated device is an H100 (227 KiB opt-in).
alignas(16) static thread_local unsigned char plane_emu[227 * 1024];
inline unsigned char* plane_smem() { return plane_emu; }
using PAddr = const unsigned char*;
inline PAddr paddr(const unsigned char* p) { return p; }
inline u16 bf16_bits(float v) { return (u16)(__float_as_uint(round_bf16(v)) >> 16); }
inline float bf16_val(u16 b) { return __uint_as_float((u32)b << 16); }

// The four 8×8 matrices whole, in every lane: v[q][r][c] = row r, column c of matrix q, read
// from the 16 bytes at lane 8q + r's address, as ldmatrix reads them.
struct Mat4 {
  float v[4][8][8];
};
inline void ldsm_x4(Mat4& m, PAddr a) {
  __shared__ PAddr slots[PLANE_WARPS][32];
  const u32 warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  slots[warp][lane] = a;
  __syncwarp();
  for (int q = 0; q < 4; ++q)
    for (int r = 0; r < 8; ++r) {
      u16 row[8];
      std::memcpy(row, slots[warp][8 * q + r], 16);
      for (int c = 0; c < 8; ++c) m.v[q][r][c] = bf16_val(row[c]);
    }
  __syncwarp();  // the slots are rewritten by the next call
}
struct PA {
  float a[16][16];  // A[m][k]
};
struct PB {
  float b[8][16];  // B[k][n] at b[n][k]
};
inline void a_of(PA& a, const Mat4& m) {
  for (int r = 0; r < 16; ++r)
    for (int k = 0; k < 16; ++k) a.a[r][k] = m.v[r / 8 + 2 * (k / 8)][r % 8][k % 8];
}
inline void b_of(PB& b0, PB& b1, const Mat4& m) {
  for (int n = 0; n < 8; ++n)
    for (int k = 0; k < 16; ++k) {
      b0.b[n][k] = m.v[k / 8][n][k % 8];
      b1.b[n][k] = m.v[2 + k / 8][n][k % 8];
    }
}
struct PC {
  float x[4];  // C[g][2t], C[g][2t + 1], C[g + 8][2t], C[g + 8][2t + 1], as on the GPU
};
// This lane's four elements; products of bf16 values are exact in fp32.
inline void pmma(PC& c, const PA& a, const PB& b) {
  const u32 lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  for (int e = 0; e < 4; ++e) {
    const u32 m = g + 8 * (e / 2), n = 2 * t + e % 2;
    float acc = c.x[e];
    for (int k = 0; k < 16; ++k) acc += a.a[m][k] * b.b[n][k];
    c.x[e] = acc;
  }
}
#endif

// Staging of a channel block's weights, one ninth per k16 step: during step st (0 .. 8) thread
// tid takes piece P = tid + 256·st of the block's 128 columns × 9 taps × 2 halves: column
// n = P / 18, tap = P % 18 % 9, channels 8·half .. + 7 (half = P % 18 / 9). In the fp32 weights
// (cout, cin, 3, 3) those are 8 floats 9 apart (constant offsets from one address); in wbuf they
// are 16 contiguous bytes (one 128-bit store of four packed pairs). A warp's 32 pieces cover about
// two columns' 144 contiguous floats.
struct WStep {
  u32 n, src, dst;  // column in the block; float offset in its weight row; byte offset in wbuf
};
__device__ __forceinline__ WStep wstep(u32 st) {
  const u32 P = threadIdx.x + PLANE_THREADS * st, n = P / 18, r = P - 18 * n, half = r / 9, tap = r - 9 * half;
  return {n, 8 * half * 9 + tap, n * PLANE_WROW + tap * 32 + half * 16};
}
__device__ __forceinline__ void wload(float (&v)[8], const float* wsrc, u32 K, u32 cout, u32 n0, u32 cb, const WStep& ws) {
  const bool in = n0 + ws.n < cout;
  const float* p = wsrc + (in ? (n0 + ws.n) * K + cb * 144 + ws.src : 0);
  DDR_UNROLL for (int i = 0; i < 8; ++i) v[i] = in ? p[9 * i] : 0.0f;
}
#ifndef DDR_HOST_EMU
__device__ __forceinline__ void wstore(unsigned char* buf, const float (&v)[8], const WStep& ws) {
  const uint4 packed = {pack_bf16(v[0], v[1]), pack_bf16(v[2], v[3]), pack_bf16(v[4], v[5]), pack_bf16(v[6], v[7])};
  *reinterpret_cast<uint4*>(buf + ws.dst) = packed;
}
#else
inline void wstore(unsigned char* buf, const float (&v)[8], const WStep& ws) {
  u16* d = reinterpret_cast<u16*>(buf + ws.dst);
  for (int i = 0; i < 8; ++i) d[i] = bf16_bits(v[i]);
}
#endif

__device__ __forceinline__ void conv_eval_plane(const ConvNormParams& q) {
  constexpr int FM = PLANE_FM, FN = PLANE_FN;
  const ConvParams& p = q.conv;
  const NormParams& np = q.norm;
  const u64 s = blockIdx.z;
  const u32 cin = p.cin, cout = p.cout, h = p.h, w = p.w, ohw = p.oh * p.ow, hw = h * w;
  const u32 imgs = PLANE_BM / ohw, b0 = blockIdx.x * imgs, n0 = blockIdx.y * PLANE_BN;
  const u32 pwid = w + 2, pimg = (h + 2) * pwid, xps = cin * 2 + PLANE_PIX_PAD, K = 9 * cin;
  const u32 warp = threadIdx.x / 32, lane = threadIdx.x % 32, wm = warp % 4, wn = warp / 4;
  unsigned char* sm = plane_smem();
  unsigned char* wbuf = sm;
  float* red = reinterpret_cast<float*>(sm + 2 * PLANE_WBUF);
  unsigned char* xs = sm + 2 * PLANE_WBUF + PLANE_RED_BYTES;
  const float* wsrc = p.params + s * p.param_row + p.w_off;

  // The block's images into xs as bf16, zero-padded; images past the batch are zeros. Pixel
  // fastest, so a warp's global loads are consecutive; two channels per thread, one 32-bit store.
  {
    const u32 half = cin / 2, total = imgs * half * pimg;
    const FastDiv d_pimg(pimg), d_half(half), d_pwid(pwid);
    const bool xbf16 = (np.act_bf16 & 2u) != 0;  // ACT_X_BF16
    const u64 xbase = (p.x_shared ? 0 : s * p.batch) * (u64)cin * hw;
    for (u32 i = threadIdx.x; i < total; i += PLANE_THREADS) {
      const u32 rest = d_pimg.div(i), pp = i - rest * pimg, j = d_half.div(rest), cp = rest - j * half;
      const u32 py = d_pwid.div(pp), px = pp - py * pwid, iy = py - 1, ix = px - 1;  // wraps in the ring
      u32 packed = 0;
      if (iy < h && ix < w && b0 + j < p.batch) {
        const u64 at = xbase + ((u64)(b0 + j) * cin + 2 * cp) * hw + iy * w + ix;  // channel 2cp
        if (xbf16) {
          const u16* xb = reinterpret_cast<const u16*>(p.x);
          packed = (u32)xb[at] | ((u32)xb[at + hw] << 16);
        } else {
          packed = (u32)bf16_bits(p.x[at]) | ((u32)bf16_bits(p.x[at + hw]) << 16);
        }
      }
      *reinterpret_cast<u32*>(xs + (j * pimg + pp) * xps + cp * 4) = packed;
    }
  }
  // Channel block 0's weights into wbuf 0.
  const u32 nblocks = cin / 16;
  DDR_UNROLL for (u32 st = 0; st < 9; ++st) {
    const WStep ws = wstep(st);
    float v[8];
    wload(v, wsrc, K, cout, n0, 0, ws);
    wstore(wbuf, v, ws);
  }

  // This lane's ldmatrix row addresses (tap (0, 0), channel 0 of its k half): A rows of m
  // fragment i (see the header for the row → pixel map), B rows of 16-column group jj.
  PAddr a_row[FM];
  {
    const u32 qm = lane / 8, g = lane % 8, h8 = qm % 2, khalf = qm / 2;
    const u32 phw = ohw / 4, pw = p.ow / 2;
    DDR_UNROLL for (int i = 0; i < FM; ++i) {
      const u32 win = 16 * wm + 8 * (i / 2) + g, j = win / phw, qq = win - j * phw, py = qq / pw, px = qq - py * pw;
      const u32 y = 2 * py + i % 2, x = 2 * px + (h8 ^ (g / 4 % 2));
      a_row[i] = paddr(xs) + (j * pimg + y * pwid + x) * xps + khalf * 16;
    }
  }
  const u32 b_lane = (64 * wn + (lane / 16) * 8 + lane % 8) * PLANE_WROW + (lane / 8 % 2) * 16;
  const u32 row_bytes = pwid * xps;  // one padded image row: tap (ky, kx) is ky·row_bytes + kx·xps

  PC acc[FM][FN];
  DDR_UNROLL for (int i = 0; i < FM; ++i) DDR_UNROLL for (int j = 0; j < FN; ++j) acc[i][j].x[0] = acc[i][j].x[1] =
      acc[i][j].x[2] = acc[i][j].x[3] = 0.0f;
  __syncthreads();

  // The main loop: channel blocks, 9 k16 steps (taps) each, the next block's weights staged on
  // the side.
  DDR_NO_UNROLL for (u32 cb = 0; cb < nblocks; ++cb) {
    const PAddr cur = paddr(wbuf) + (cb % 2) * PLANE_WBUF + b_lane;
    unsigned char* nxt = wbuf + ((cb + 1) % 2) * PLANE_WBUF;
    const bool more = cb + 1 < nblocks;
    DDR_UNROLL for (u32 st = 0; st < 9; ++st) {
      const WStep ws = wstep(st);
      float v[8];
      if (more) wload(v, wsrc, K, cout, n0, cb + 1, ws);
      PA a[FM];
      PB b[FN];
      DDR_UNROLL for (int i = 0; i < FM; ++i) {
        Mat4 m;
        ldsm_x4(m, a_row[i] + (st / 3) * row_bytes + (st % 3) * xps + cb * 32);
        a_of(a[i], m);
      }
      DDR_UNROLL for (int jj = 0; jj < FN / 2; ++jj) {
        Mat4 m;
        ldsm_x4(m, cur + jj * 16 * PLANE_WROW + st * 32);
        b_of(b[2 * jj], b[2 * jj + 1], m);
      }
      DDR_UNROLL for (int i = 0; i < FM; ++i) DDR_UNROLL for (int j = 0; j < FN; ++j) pmma(acc[i][j], a[i], b[j]);
      if (more) wstore(nxt, v, ws);
    }
    __syncthreads();  // nxt complete; cur free for block cb + 2
  }

  // Epilogue. Thread (g, t) holds, for m fragment i = 2P + dy and half h8, the corner of window
  // 16·wm + 8P + g; columns 64·wn + 8j + 2t + cc.
  const u32 g = lane / 4, t = lane % 4;
  const u32 wpi = ohw / 64;           // warps per image
  const u32 img = wm / wpi;           // this warp's image in the block
  const u32 b = b0 + img;
  const float inv_n = __fdividef(1.0f, (float)ohw);
  const u64 prow = s * np.param_row;
  float scale[FN][2], shift[FN][2];
  DDR_UNROLL for (int j = 0; j < FN; ++j) DDR_UNROLL for (int cc = 0; cc < 2; ++cc) {
    const u32 co = n0 + 64 * wn + 8 * j + 2 * t + cc;
    const float bias = co < cout ? p.params[s * p.param_row + p.b_off + co] : 0.0f;
    DDR_UNROLL for (int i = 0; i < FM; ++i) DDR_UNROLL for (int h8 = 0; h8 < 2; ++h8) acc[i][j].x[2 * h8 + cc] += bias;
  }
  if (np.kind == 0) {
    // Two passes: the mean, then Σ(y − mean)², each summed over the thread's 8 rows, the warp's
    // 8 row groups (shuffles over g), then the image's warps (red).
    float mean[FN][2] = {};
    DDR_UNROLL for (int pass = 0; pass < 2; ++pass) {
      DDR_UNROLL for (int j = 0; j < FN; ++j) DDR_UNROLL for (int cc = 0; cc < 2; ++cc) {
        float v = 0.0f;
        DDR_UNROLL for (int i = 0; i < FM; ++i) DDR_UNROLL for (int h8 = 0; h8 < 2; ++h8) {
          const float y = acc[i][j].x[2 * h8 + cc];
          v += pass == 0 ? y : (y - mean[j][cc]) * (y - mean[j][cc]);
        }
        v += __shfl_xor_sync(0xffffffffu, v, 4);
        v += __shfl_xor_sync(0xffffffffu, v, 8);
        v += __shfl_xor_sync(0xffffffffu, v, 16);
        if (g == 0) red[wm * PLANE_BN + 64 * wn + 8 * j + 2 * t + cc] = v;
      }
      __syncthreads();
      DDR_UNROLL for (int j = 0; j < FN; ++j) DDR_UNROLL for (int cc = 0; cc < 2; ++cc) {
        float tot = 0.0f;
        for (u32 o = img * wpi; o < img * wpi + wpi; ++o) tot += red[o * PLANE_BN + 64 * wn + 8 * j + 2 * t + cc];
        if (pass == 0) {
          mean[j][cc] = tot * inv_n;
        } else {
          scale[j][cc] = rsqrtf(tot * inv_n + np.eps);  // 1/std for now
        }
      }
      __syncthreads();  // red is rewritten by the next pass
    }
    DDR_UNROLL for (int j = 0; j < FN; ++j) DDR_UNROLL for (int cc = 0; cc < 2; ++cc) {
      const u32 co = n0 + 64 * wn + 8 * j + 2 * t + cc;
      const float rstd = scale[j][cc];
      if (g == 0 && wm % wpi == 0 && b < p.batch && co < cout) {
        np.stats[((s * np.batch + b) * np.c + co) * 2] = mean[j][cc];
        np.stats[((s * np.batch + b) * np.c + co) * 2 + 1] = rstd;
      }
      const float gamma = co < cout ? np.params[prow + np.w_off + co] : 1.0f;
      const float beta = co < cout ? np.params[prow + np.b_off + co] : 0.0f;
      scale[j][cc] = gamma * rstd;
      shift[j][cc] = beta - mean[j][cc] * gamma * rstd;
    }
  } else {
    DDR_UNROLL for (int j = 0; j < FN; ++j) DDR_UNROLL for (int cc = 0; cc < 2; ++cc) {
      const u32 co = n0 + 64 * wn + 8 * j + 2 * t + cc;
      scale[j][cc] = 1.0f;
      shift[j][cc] = 0.0f;
      if (np.kind == 1 && co < cout) {
        const float mean = np.running[s * np.running_row + np.rmean_off + co];
        const float rstd = rsqrtf(np.running[s * np.running_row + np.rvar_off + co] + np.eps);
        if (b0 == 0 && wm == 0 && g == 0) {
          np.stats[(s * np.c + co) * 2] = mean;
          np.stats[(s * np.c + co) * 2 + 1] = rstd;
        }
        const float gamma = np.params[prow + np.w_off + co], beta = np.params[prow + np.b_off + co];
        scale[j][cc] = gamma * rstd;
        shift[j][cc] = beta - mean * gamma * rstd;
      }
    }
  }
  // Normalise, ReLU, pool the thread's two windows; write them.
  const u32 phw = ohw / 4;
  const bool obf16 = (np.act_bf16 & 1u) != 0;  // ACT_OUT_BF16
  DDR_UNROLL for (int P = 0; P < 2; ++P) {
    const u32 qq = 16 * wm + 8 * P + g - img * phw;  // the window inside its image
    DDR_UNROLL for (int j = 0; j < FN; ++j) DDR_UNROLL for (int cc = 0; cc < 2; ++cc) {
      const u32 co = n0 + 64 * wn + 8 * j + 2 * t + cc;
      float sum = 0.0f;
      DDR_UNROLL for (int dy = 0; dy < 2; ++dy) DDR_UNROLL for (int h8 = 0; h8 < 2; ++h8) {
        const float z = acc[2 * P + dy][j].x[2 * h8 + cc] * scale[j][cc] + shift[j][cc];
        sum += z > 0.0f ? z : 0.0f;
      }
      if (b < p.batch && co < cout) {
        const u64 at = ((s * np.batch + b) * np.c + co) * phw + qq;
        if (obf16) {
          reinterpret_cast<u16*>(np.out)[at] = bf16_bits(0.25f * sum);
        } else {
          np.out[at] = 0.25f * sum;
        }
      }
    }
  }
}

}  // namespace ddr_plane

// One block per SM: up to ~190 KB of window, 128 accumulator registers per thread.
extern "C" __global__ void __launch_bounds__(PLANE_THREADS, 1) conv3x3_eval_plane_bf16(const ddr_plane::ConvNormParams q) {
  ddr_plane::conv_eval_plane(q);
}

#ifdef DDR_HOST_EMU
extern "C" void emu_conv3x3_eval_plane_bf16(const unsigned* grid, const unsigned* block, const void* params) {
  ddr_emu::launch(conv3x3_eval_plane_bf16, grid, block, params);
}
#endif
