// conv_gemm_bf16.cuh: conv_gemm's implicit-GEMM main loop (conv_gemm.cuh: the same Pass interface,
// gather slots, cp.async pipeline and epilogue) on bf16 tensor cores, m16n8k16 with fp32
// accumulation (mma_bf16.cuh). Used by the eval-mode test forward (conv_bf16.cu); weights stay
// fp32 in memory (the master copy training updates) and are rounded to bf16 as fragments load.
//
// Differences from the TF32 loop, and why:
// - BK = 16 k rows per stage (one m16n8k16 step), so a stage of fp32 tiles is twice as large; the
//   tile is 128 × 128 over 4 warps (64 × 64 each) to keep ≥ 2 stages under the 44 KiB budget.
// - Shared pitch X + 4 (≡ 4 mod 32): the bf16 fragments read rows 2t and 2t + 1, and this pitch
//   makes those loads conflict-free (mma_bf16.cuh); the cp.async writes stay conflict-free.
// - Operands stay fp32 in shared memory and are converted in registers: cp.async cannot convert,
//   and HBM traffic is the same fp32 either way (activations are stored in fp32).
#pragma once
#include "conv_gemm.cuh"
#include "mma_bf16.cuh"

#define GEMM_BK16 16

// As conv_gemm: runs the K tiles [kt0, kt1) (of GEMM_BK16 rows) of the BM × BN tile at (m0, n0)
// with WARPS_M × WARPS_N warps. All threads call it.
template <int BM, int BN, int WARPS_M, int WARPS_N, class Pass>
__device__ __forceinline__ void conv_gemm_bf16(const Pass& pass, u32 m0, u32 n0, u32 M, u32 N, u32 kt0, u32 kt1) {
  constexpr int WARPS = WARPS_M * WARPS_N;
  constexpr int LDA = BM + 4, LDB = BN + 4;          // shared pitches (floats), ≡ 4 mod 32
  constexpr int WM = BM / WARPS_M, WN = BN / WARPS_N;  // warp tile
  constexpr int FM = WM / 16, FN = WN / 8;           // m16 × n8 fragments per warp tile
  constexpr int XA = BM / 32, XB = BN / 32;          // x positions per thread
  constexpr int ROWS = GEMM_BK16 / WARPS;            // k rows each warp loads per stage
  constexpr int STAGE_BYTES = GEMM_BK16 * (LDA + LDB) * 4;
  constexpr int STAGES = GEMM_SMEM_BUDGET / STAGE_BYTES < 4 ? GEMM_SMEM_BUDGET / STAGE_BYTES : 4;
  static_assert(BM % 32 == 0 && BN % 32 == 0 && WM % 16 == 0 && WN % 8 == 0, "tile shapes");
  static_assert(ROWS * WARPS == GEMM_BK16 && STAGES >= 2, "warps share a stage's k rows evenly");
  __shared__ __align__(16) float As[STAGES][GEMM_BK16][LDA];  // (stage, k, m)
  __shared__ __align__(16) float Bs[STAGES][GEMM_BK16][LDB];  // (stage, k, n)
  __shared__ __align__(16) float Cs[WARPS][16 * 8];           // per-warp epilogue scratch, (16, 8)

  const u32 warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const u32 wm = (warp / WARPS_N) * WM, wn = (warp % WARPS_N) * WN;

  // Per-thread gather slots, fixed for the whole K loop (conv_gemm.cuh explains the scheme).
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

  // Stage `st` ← K tile `kt`: this warp's ROWS k rows of both operands, zero-filled where absent.
  const auto issue = [&](u32 kt, u32 st) {
    float* adst = &As[st][warp * ROWS][lane];
    float* bdst = &Bs[st][warp * ROWS][lane];
    DDR_UNROLL for (int r = 0; r < ROWS; ++r) {
      const KRow row = pass.k_row(kt * GEMM_BK16 + warp * ROWS + r);
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
  const int a_lane = frag16_lane_offset(LDA), b_lane = frag16_lane_offset(LDB);

  // Prologue and loop as conv_gemm: one commit group per iteration, so waiting for at most
  // STAGES − 2 pending groups means tile kt has landed.
  DDR_UNROLL for (int s = 0; s < STAGES - 1; ++s) {
    if (kt0 + s < kt1) issue(kt0 + s, s);
    __pipeline_commit();
  }
  u32 st = 0, st_next = STAGES - 1;
  for (u32 kt = kt0; kt < kt1; ++kt) {
    __pipeline_wait_prior(STAGES - 2);
    __syncthreads();  // tile kt visible; every warp done with stage st_next (read last iteration)
    if (kt + STAGES - 1 < kt1) issue(kt + STAGES - 1, st_next);
    __pipeline_commit();

    FragA16 a[FM];
    FragB16 b[FN];
    const float* as = &As[st][0][wm] + a_lane;
    const float* bs = &Bs[st][0][wn] + b_lane;
    DDR_UNROLL for (int i = 0; i < FM; ++i) load_a16(a[i], as + 16 * i, LDA);
    DDR_UNROLL for (int j = 0; j < FN; ++j) load_b16(b[j], bs + 8 * j, LDB);
    DDR_UNROLL for (int i = 0; i < FM; ++i) DDR_UNROLL for (int j = 0; j < FN; ++j) mma16(acc[i][j], a[i], b[j]);
    st = st + 1 == STAGES ? 0 : st + 1;
    st_next = st_next + 1 == STAGES ? 0 : st_next + 1;
  }
  __pipeline_wait_prior(0);

  // Epilogue as conv_gemm: one 16 × 8 fragment at a time through this warp's scratch.
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
