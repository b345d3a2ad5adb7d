// conv_gemm.cuh: the implicit-GEMM main loop of the three conv passes (conv.cu): C = A·B with
// A (M, K) and B (K, N) gathered from NCHW tensors by per-thread offsets, on TF32 tensor cores
// (mma m16n8k8, mma_tf32.cuh), fed by a multistage cp.async pipeline (cuda_pipeline primitives).
//
// How an operand is addressed (the CUTLASS "precomputed gather" idea, without CUTLASS): element
// (k, x) of an operand (x = m for A, n for B) lives at base[koff(k) + xoff(x)] and exists when
// kbits(k) & xbits(x) != 0, else it is a zero (padding, tile edges). A pass (conv.cu) says what
// xoff/xbits are for each x and koff/kbits for each k. A thread owns fixed x positions for the
// whole kernel, so their offsets are computed once, before the K loop; per stage a thread computes
// its k row's (koff, kbits) pair with 32-bit arithmetic and constant or precomputed divisors, or
// steps it from the previous stage's (a pass's k_rows cursor, below); each element is then one
// address multiply-add, one mask test and a 4-byte cp.async (zero-filling when the element is
// absent; its address is then never read, so it is not clamped).
//
// Tiles: BM × BN per block of WARPS_M × WARPS_N warps, each a (BM/WARPS_M) × (BN/WARPS_N) warp
// tile, BK = 8 (one m16n8k8 step) per pipeline stage, STAGES stages in flight. Shared tiles are
// mma_tf32.cuh's pair rows (k and k + 4 interleaved, pitch 2·X + 8 floats), in which every
// fragment is one conflict-free 128-bit shared load. Loaders: warp w fills pair row w % 4, lanes
// 0–15 its k row and lanes 16–31 k + 4, 16 consecutive x each per 16-block (blocks w / 4,
// w / 4 + WARPS / 4, ...): coalesced 64-byte runs, conflict-free shared writes, one k row (one
// decode) per thread and stage.
//
// Precision: TF32 feeds fp32 straight from shared memory (the tensor core keeps the top 19 bits:
// truncation, ≤ 2⁻¹⁰ relative per operand); 3xTF32 splits each fragment element into a TF32 head
// and tail (v − head) in registers and accumulates tail·head + head·tail + head·head, close to
// fp32 accuracy for 3× the tensor-core work (conv.cu's ConvPrecision notes say when each is used).
#pragma once
#include <type_traits>
#include <utility>

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

// cp_async_4 copies 4 bytes global → shared, or stores a zero when `on` is false (its source is
// then not read): PTX's ignore-src predicate form is one LDGSTS, where __pipeline_memcpy_async
// with a zero-fill size compiled to two predicated LDGSTS, each with its own shared-address
// computation. The destination is a SmemAddr (mma_tf32.cuh) computed once, outside the K loop.
#ifndef DDR_HOST_EMU
__device__ __forceinline__ void cp_async_4(SmemAddr dst, const float* src, bool on) {
  asm volatile(
      "{\n .reg .pred off;\n setp.eq.u32 off, %2, 0;\n cp.async.ca.shared.global [%0], [%1], 4, off;\n}\n" ::"r"(dst),
      "l"(src), "r"((u32)on)
      : "memory");
}
// Hides how v was computed, so the compiler keeps it in a register instead of recomputing it
// from threadIdx inside the K loop (which it otherwise does under register pressure: ~20
// instructions per K step in the kernel report).
__device__ __forceinline__ u32 opaque_u32(u32 v) {
  asm("" : "+r"(v));
  return v;
}
#else
inline void cp_async_4(SmemAddr dst, const float* src, bool on) { *dst = on ? *src : 0.0f; }
inline u32 opaque_u32(u32 v) { return v; }
#endif

// A shared address kept in a register: under register pressure nvcc otherwise recomputes the
// loaders' and fragments' shared addresses from threadIdx in every k tile (~14 instructions per
// tile in the kernel report).
#ifndef DDR_HOST_EMU
__device__ __forceinline__ SmemAddr opaque_smem(SmemAddr p) { return opaque_u32(p); }
#else
inline SmemAddr opaque_smem(SmemAddr p) { return p; }
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
//
// A thread's k rows are k, k + GEMM_BK, k + 2·GEMM_BK, ... (one per tile, tiles in order), so a
// pass whose row decode is costly may instead supply `Cursor k_rows(u32 k)`: a cursor at row k
// with `KRow row()` (what k_row(k) would give) and `void next()` (k += GEMM_BK), which can step
// its decode incrementally (DwPass, conv.cu). Without it the rows are decoded by k_row.
//
// A pass whose A elements are present exactly when their k row is (a_x's bits all ones for every
// m, a_x(m ≥ M) addressing valid memory: rows of C past M are never stored, so what they read
// does not matter) may say so with `static constexpr bool kAByRow = true`: the A copies of a
// row then share one predicate instead of testing a mask each.
template <class Pass, class = void>
struct AByRow {
  static constexpr bool value = false;
};
template <class Pass>
struct AByRow<Pass, std::void_t<decltype(Pass::kAByRow)>> {
  static constexpr bool value = Pass::kAByRow;
};
template <class Pass, class = void>
struct HasKRows : std::false_type {};
template <class Pass>
struct HasKRows<Pass, std::void_t<decltype(std::declval<const Pass&>().k_rows(0u))>> : std::true_type {};
struct NoKRows {};
template <class Pass>
__device__ __forceinline__ auto k_rows_of(const Pass& pass, u32 k) {
  if constexpr (HasKRows<Pass>::value) {
    return pass.k_rows(k);
  } else {
    return NoKRows{};
  }
}
template <int BM, int BN, int WARPS_M, int WARPS_N, bool kSplit, class Pass>
__device__ __forceinline__ void conv_gemm(const Pass& pass, u32 m0, u32 n0, u32 M, u32 N, u32 kt0, u32 kt1) {
  constexpr int WARPS = WARPS_M * WARPS_N;
  constexpr int LDA = 2 * BM + 8, LDB = 2 * BN + 8;  // pair-row pitches (floats), ≡ 8 mod 32
  constexpr int WM = BM / WARPS_M, WN = BN / WARPS_N;  // warp tile
  constexpr int FM = WM / 16, FN = WN / 8;           // m16 × n8 fragments per warp tile
  constexpr int PR = GEMM_BK / 2;                    // pair rows per stage
  constexpr int SPREAD = WARPS / PR;                 // warps sharing a pair row
  constexpr int XA = BM / 16 / SPREAD, XB = BN / 16 / SPREAD;  // x positions per thread
  constexpr int STAGE_BYTES = PR * (LDA + LDB) * 4;
  constexpr int STAGES = GEMM_SMEM_BUDGET / STAGE_BYTES < 4 ? GEMM_SMEM_BUDGET / STAGE_BYTES : 4;
  static_assert(WARPS % PR == 0 && BM % (16 * SPREAD) == 0 && BN % (16 * SPREAD) == 0, "loaders cover the tile");
  static_assert(WM % 16 == 0 && WN % 16 == 0 && STAGES >= 2, "warp tiles are whole 16-blocks");
  __shared__ __align__(16) float As[STAGES][PR][LDA];  // (stage, k % 4, a_pos(m, k / 4))
  __shared__ __align__(16) float Bs[STAGES][PR][LDB];  // (stage, k % 4, b_pos(n, k / 4))
  __shared__ __align__(16) float Cs[WARPS][16 * 8];         // per-warp epilogue scratch, (16, 8)

  const u32 warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const u32 wm = (warp / WARPS_N) * WM, wn = (warp % WARPS_N) * WN;
  // This thread's loader place: k row kr + 4·kk of each stage, x = 16·(xb + SPREAD·j) + xl.
  const u32 kr = warp % PR, xb = warp / PR, kk = lane / 16, xl = lane % 16;

  // Per-thread gather slots, fixed for the whole K loop: a pointer to the x position's element of
  // k row "0" (koff = 0; it may lie outside the tensor, only present elements are read) and its
  // presence bits. An element's address is then one multiply-add: pointer + koff.
  const float* ap[XA];
  const float* bp[XB];
  u32 abits[XA], bbits[XB];
  DDR_UNROLL for (int j = 0; j < XA; ++j) {
    const XSlot x = pass.a_x(m0 + 16 * (xb + SPREAD * j) + xl);
    ap[j] = opaque(pass.a_base + x.off);
    abits[j] = opaque_u32(x.bits);
  }
  DDR_UNROLL for (int j = 0; j < XB; ++j) {
    const XSlot x = pass.b_x(n0 + 16 * (xb + SPREAD * j) + xl);
    bp[j] = opaque(pass.b_base + x.off);
    bbits[j] = opaque_u32(x.bits);
  }

  // Stage `st` ← K tile `kt`: this thread's k row of both operands, one 4-byte cp.async per
  // element, zero-filled (source ignored, address never read) where the element is absent.
  // Element j sits 32·SPREAD floats (one 16-block of x per warp sharing the row) after element 0.
  const SmemAddr a_dst = opaque_smem(smem_addr(&As[0][kr][a_pos(16 * xb + xl, kk)]));
  const SmemAddr b_dst = opaque_smem(smem_addr(&Bs[0][kr][b_pos(16 * xb + xl, kk)]));
  const u32 k_lane = opaque_u32(kr + 4 * kk);  // this thread's k row inside a K tile
  // The pass's cursor, if it has one, at this thread's k row of the next tile to issue (tiles
  // are issued in order from kt0). (A cursor for the passes without one, calling k_row, made
  // ptxas spill in conv3x3_forward_tf32.)
  auto rows = k_rows_of(pass, kt0 * GEMM_BK + k_lane);
  const auto issue = [&](u32 kt, u32 st) {
    KRow row;
    if constexpr (HasKRows<Pass>::value) {
      row = rows.row();
      rows.next();
    } else {
      row = pass.k_row(kt * GEMM_BK + k_lane);
    }
    DDR_UNROLL for (int j = 0; j < XA; ++j)
      cp_async_4(a_dst + (st * PR * LDA + 32 * SPREAD * j) * kSmemFloat, ap[j] + row.a_off,
                 AByRow<Pass>::value ? row.a_bits != 0 : (row.a_bits & abits[j]) != 0);
    DDR_UNROLL for (int j = 0; j < XB; ++j)
      cp_async_4(b_dst + (st * PR * LDB + 32 * SPREAD * j) * kSmemFloat, bp[j] + row.b_off,
                 (row.b_bits & bbits[j]) != 0);
  };

  FragC acc[FM][FN];
  DDR_UNROLL for (int i = 0; i < FM; ++i) DDR_UNROLL for (int j = 0; j < FN; ++j) fill_zero(acc[i][j]);

  // This lane's fragments of its warp tile in stage 0 (mma_tf32.cuh; x0 = wm sits at 2·wm).
  const SmemAddr as0 = opaque_smem(smem_addr(&As[0][0][2 * wm] + frag_lane_offset(LDA)));
  const SmemAddr bs0 = opaque_smem(smem_addr(&Bs[0][0][2 * wn] + frag_lane_offset(LDB)));

  // Prologue: STAGES − 1 tiles in flight. Every step commits one group, so "wait until at most
  // STAGES − 2 groups are pending" always means "tile kt has landed". Tiles are issued even past
  // kt1 (no test, here or in the loop, as conv_gemm_bf16): the rows of a tile past the pass's
  // last k are zero-filled copies that read nothing, and a tile past a split-K range reads valid
  // memory; either lands in a stage no step reads.
  DDR_UNROLL for (int s = 0; s < STAGES - 1; ++s) {
    issue(kt0 + s, s);
    __pipeline_commit();
  }
  // Tile kt lives in stage (kt − kt0) % STAGES: the K loop steps STAGES tiles at a time with the
  // steps unrolled, so every stage index (and shared address) is a constant.
  for (u32 kt0s = kt0; kt0s < kt1; kt0s += STAGES) {
    DDR_UNROLL for (u32 s = 0; s < STAGES; ++s) {
      const u32 kt = kt0s + s;
      if (kt >= kt1) break;
      __pipeline_wait_prior(STAGES - 2);
      // Tile kt is visible to every warp, and every warp is done reading the stage the issue
      // below overwrites (read in the previous step).
      __syncthreads();
      issue(kt + STAGES - 1, (s + STAGES - 1) % STAGES);
      __pipeline_commit();

      FragA a[FM];
      FragB b[FN];
      load_a_tile(a, as0 + s * PR * LDA * kSmemFloat, LDA);
      load_b_tile(b, bs0 + s * PR * LDB * kSmemFloat, LDB);
      if (kSplit) {
        // Heads stay in a/b, tails go to at/bt; the small cross terms first, so they are not
        // lost against the large head·head term.
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
    }
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
