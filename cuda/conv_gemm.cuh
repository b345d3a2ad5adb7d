// conv_gemm.cuh: the implicit-GEMM main loop of the three conv passes (conv.cu): C = A·B with
// A (M, K) and B (K, N) gathered from NCHW tensors by per-thread offsets, on TF32 tensor cores
// (mma m16n8k8, mma_tf32.cuh), fed by a multistage cp.async pipeline (cuda_pipeline primitives).
//
// How an operand is addressed (the CUTLASS "precomputed gather" idea, without CUTLASS): element
// (k, x) of an operand (x = m for A, n for B) lives at base[koff(k) + xoff(x)] and exists when
// kbits(k) & xbits(x) != 0, else it is a zero (padding, tile edges). A pass (conv.cu) says what
// xoff/xbits are for each x and koff/kbits for each k. A thread owns fixed x positions for the
// whole kernel, so their offsets are computed once, before the K loop; per k row a warp computes
// one (koff, kbits) pair with 32-bit arithmetic and constant or precomputed divisors; each element
// is then one add, one address multiply-add, one mask test and a 4-byte cp.async (zero-filling
// when the element is absent; its address is then never read, so it is not clamped).
//
// Tiles: BM × BN per block of 128 threads (4 warps, 2 × 2, each a (BM/2) × (BN/2) warp tile),
// BK = 8 (one m16n8k8 step) per pipeline stage, STAGES stages in flight. Shared tiles are stored
// k-major, S[k][x] with a pitch of X + 8 floats: the pitch ≡ 8 (mod 32 banks) makes the fragment
// loads (lane g·4 + t reads row t, column g: bank 8t + g) and the cp.async writes (consecutive x)
// conflict-free.
//
// Precision: TF32 feeds fp32 straight from shared memory (the tensor core keeps the top 19 bits:
// truncation, ≤ 2⁻¹⁰ relative per operand); 3xTF32 splits each fragment element into a TF32 head
// and tail (v − head) in registers and accumulates tail·head + head·tail + head·head, close to
// fp32 accuracy for 3× the tensor-core work (conv.cu's ConvPrecision notes say when each is used).
#pragma once
#include "mma_tf32.cuh"

#ifndef DDR_HOST_EMU
#include <cuda_pipeline.h>
#define DDR_UNROLL _Pragma("unroll")
// Hides how p was computed from the optimiser, so `p + koff` stays one 64-bit multiply-add
// instead of being re-associated into a sign-extended 64-bit index sum (4 instructions per element
// in the kernel report before this).
template <class T>
__device__ __forceinline__ T* opaque(T* p) {
  asm("" : "+l"(p));
  return p;
}
#else
#define DDR_UNROLL
template <class T>
inline T* opaque(T* p) {
  return p;
}
#endif

#define GEMM_BK 8
// Shared memory the stages may use: under the 48 KiB a kernel gets without opting in.
#define GEMM_SMEM_BUDGET (44 * 1024)

// One k row's address part and presence bits for both operands (they share k).
struct KRow {
  int a_off;
  u32 a_bits;
  int b_off;
  u32 b_bits;
};

// One x position's address part and presence bits.
struct XSlot {
  int off;
  u32 bits;
};

// A pass supplies:
//   const float* a_base, *b_base;      this student's tensors
//   XSlot a_x(u32 m), b_x(u32 n);       bits 0 for m ≥ M, n ≥ N
//   KRow k_row(u32 k);                  bits 0 for k ≥ K
//   void store(u32 m, u32 n, float v);  called once per C element inside M × N
// and this runs the K tiles [kt0, kt1) of the BM × BN tile at (m0, n0) with WARPS_M × WARPS_N
// warps (the launch's block size). All threads call it.
template <int BM, int BN, int WARPS_M, int WARPS_N, bool kSplit, class Pass>
__device__ __forceinline__ void conv_gemm(const Pass& pass, u32 m0, u32 n0, u32 M, u32 N, u32 kt0, u32 kt1) {
  constexpr int WARPS = WARPS_M * WARPS_N;
  constexpr int LDA = BM + 8, LDB = BN + 8;          // shared pitches (floats), ≡ 8 mod 32
  constexpr int WM = BM / WARPS_M, WN = BN / WARPS_N;  // warp tile
  constexpr int FM = WM / 16, FN = WN / 8;           // m16 × n8 fragments per warp tile
  constexpr int XA = BM / 32, XB = BN / 32;          // x positions per thread
  constexpr int ROWS = GEMM_BK / WARPS;              // k rows each warp loads per stage
  constexpr int STAGE_BYTES = GEMM_BK * (LDA + LDB) * 4;
  constexpr int STAGES = GEMM_SMEM_BUDGET / STAGE_BYTES < 4 ? GEMM_SMEM_BUDGET / STAGE_BYTES : 4;
  static_assert(BM % 32 == 0 && BN % 32 == 0 && WM % 16 == 0 && WN % 8 == 0, "tile shapes");
  static_assert(ROWS * WARPS == GEMM_BK && STAGES >= 2, "warps share a stage's k rows evenly");
  __shared__ __align__(16) float As[STAGES][GEMM_BK][LDA];  // (stage, k, m)
  __shared__ __align__(16) float Bs[STAGES][GEMM_BK][LDB];  // (stage, k, n)
  __shared__ __align__(16) float Cs[WARPS][16 * 8];         // per-warp epilogue scratch, (16, 8)

  const u32 warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const u32 wm = (warp / WARPS_N) * WM, wn = (warp % WARPS_N) * WN;

  // Per-thread gather slots, fixed for the whole K loop: a pointer to the x position's element of
  // k row "0" (koff = 0; it may lie outside the tensor, only present elements are read) and its
  // presence bits. An element's address is then one multiply-add: pointer + koff.
  const float* ap[XA];
  const float* bp[XB];
  u32 abits[XA], bbits[XB];
  DDR_UNROLL for (int j = 0; j < XA; ++j) {
    const XSlot x = pass.a_x(m0 + lane + 32 * j);
    ap[j] = opaque(pass.a_base + x.off);
    abits[j] = x.bits;
  }
  DDR_UNROLL for (int j = 0; j < XB; ++j) {
    const XSlot x = pass.b_x(n0 + lane + 32 * j);
    bp[j] = opaque(pass.b_base + x.off);
    bbits[j] = x.bits;
  }

  // Stage `st` ← K tile `kt`: this warp's ROWS k rows of both operands, one 4-byte cp.async per
  // element, zero-filled (source ignored, address never read) where the element is absent.
  const auto issue = [&](u32 kt, u32 st) {
    float* adst = &As[st][warp * ROWS][lane];  // this thread's first slot of the stage
    float* bdst = &Bs[st][warp * ROWS][lane];
    DDR_UNROLL for (int r = 0; r < ROWS; ++r) {
      const KRow row = pass.k_row(kt * GEMM_BK + warp * ROWS + r);
      DDR_UNROLL for (int j = 0; j < XA; ++j) {
        const bool on = (row.a_bits & abits[j]) != 0;
        __pipeline_memcpy_async(adst + r * LDA + 32 * j, ap[j] + row.a_off, 4, on ? 0 : 4);
      }
      DDR_UNROLL for (int j = 0; j < XB; ++j) {
        const bool on = (row.b_bits & bbits[j]) != 0;
        __pipeline_memcpy_async(bdst + r * LDB + 32 * j, bp[j] + row.b_off, 4, on ? 0 : 4);
      }
    }
  };

  FragC acc[FM][FN];
  DDR_UNROLL for (int i = 0; i < FM; ++i) DDR_UNROLL for (int j = 0; j < FN; ++j) fill_zero(acc[i][j]);

  // Each thread's fragment offset inside a k-major tile, computed once (mma_tf32.cuh).
  const int a_lane = frag_lane_offset(LDA), b_lane = frag_lane_offset(LDB);

  // Prologue: STAGES − 1 tiles in flight. Every iteration commits one group (possibly empty), so
  // "wait until at most STAGES − 2 groups are pending" always means "tile kt has landed".
  DDR_UNROLL for (int s = 0; s < STAGES - 1; ++s) {
    if (kt0 + s < kt1) issue(kt0 + s, s);
    __pipeline_commit();
  }
  u32 st = 0, st_next = STAGES - 1;
  for (u32 kt = kt0; kt < kt1; ++kt) {
    __pipeline_wait_prior(STAGES - 2);
    // Tile kt is visible to every warp, and every warp is done reading stage st_next (read in
    // the previous iteration), which the issue below overwrites.
    __syncthreads();
    if (kt + STAGES - 1 < kt1) issue(kt + STAGES - 1, st_next);
    __pipeline_commit();

    FragA a[FM];
    FragB b[FN];
    const float* as = &As[st][0][wm] + a_lane;
    const float* bs = &Bs[st][0][wn] + b_lane;
    DDR_UNROLL for (int i = 0; i < FM; ++i) load_a(a[i], as + 16 * i, LDA);
    DDR_UNROLL for (int j = 0; j < FN; ++j) load_b(b[j], bs + 8 * j, LDB);
    if (kSplit) {
      // Heads stay in a/b, tails go to at/bt; the small cross terms first, so they are not lost
      // against the large head·head term.
      FragA at[FM];
      FragB bt[FN];
      DDR_UNROLL for (int i = 0; i < FM; ++i) DDR_UNROLL for (int t = 0; t < FragA::kElems; ++t) {
        const float v = a[i].x[t], h = to_tf32(v);
        a[i].x[t] = h;
        at[i].x[t] = to_tf32(v - h);
      }
      DDR_UNROLL for (int j = 0; j < FN; ++j) DDR_UNROLL for (int t = 0; t < FragB::kElems; ++t) {
        const float v = b[j].x[t], h = to_tf32(v);
        b[j].x[t] = h;
        bt[j].x[t] = to_tf32(v - h);
      }
      DDR_UNROLL for (int i = 0; i < FM; ++i) DDR_UNROLL for (int j = 0; j < FN; ++j) {
        mma(acc[i][j], at[i], b[j]);
        mma(acc[i][j], a[i], bt[j]);
      }
    }
    DDR_UNROLL for (int i = 0; i < FM; ++i) DDR_UNROLL for (int j = 0; j < FN; ++j) mma(acc[i][j], a[i], b[j]);
    st = st + 1 == STAGES ? 0 : st + 1;
    st_next = st_next + 1 == STAGES ? 0 : st_next + 1;
  }
  __pipeline_wait_prior(0);

  // Epilogue, one 16 × 8 fragment at a time through this warp's scratch: consecutive lanes take
  // consecutive m (neighbouring pixels, contiguous in NCHW outputs).
  float* cw = Cs[warp];
  DDR_UNROLL for (int i = 0; i < FM; ++i) DDR_UNROLL for (int j = 0; j < FN; ++j) {
    store_c(cw, acc[i][j], 8);
    __syncwarp();
    DDR_UNROLL for (u32 e = lane; e < 128; e += 32) {
      const u32 r = e % 16, c = e / 16;
      const u32 m = m0 + wm + 16 * i + r, n = n0 + wn + 8 * j + c;
      if (m < M && n < N) pass.store(m, n, cw[r * 8 + c]);
    }
    __syncwarp();
  }
}
