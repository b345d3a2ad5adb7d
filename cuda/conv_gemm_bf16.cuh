// conv_gemm_bf16.cuh: conv_gemm's implicit-GEMM main loop (conv_gemm.cuh: the same Pass interface,
// gather slots, cp.async pipeline and epilogue) on bf16 tensor cores, m16n8k16 with fp32
// accumulation (mma_bf16.cuh). Used by the eval-mode test forward (conv_bf16.cu); weights stay
// fp32 in memory (the master copy training updates) and are rounded to bf16 as fragments load.
//
// Differences from the TF32 loop, and why:
// - BK = 16 k rows per stage (one m16n8k16 step), so a stage of fp32 tiles is twice as large; the
//   tile is 128 × 128 over 4 warps (64 × 64 each) to keep 2 stages under the 44 KiB budget.
// - Shared tiles are x-major with 16 k per x, swizzled (mma_bf16.cuh). Each stage is converted to
//   bf16 in place once (every 16-block by one warp: half the F2FP of converting per reading warp),
//   a barrier, then one 128-bit load per A fragment and per pair of B fragments.
// - Operands stay fp32 in shared memory and are converted in registers: cp.async cannot convert,
//   and HBM traffic is the same fp32 either way (activations are stored in fp32).
// - A (the im2col gather) loads like conv_gemm: warp w takes chunks w % 2 and w % 2 + 2 of each
//   stage's k, lane l the k rows 4·(w % 2) + l % 4 and that + 8 (two k-row decodes per thread and
//   stage) and x = l / 4 + 8·(w / 2 + (WARPS / 2)·j): 8 consecutive x by 4 k rows per warp
//   instruction, so the shared writes hit 32 banks and every destination is one of the thread's
//   two bases plus an immediate. Each x slot holds a 64-bit pointer (a_base + its offset), so an
//   element's source is ONE wide multiply-add of the k row's offset (IMAD.WIDE).
// - B (the weights, contiguous in k) loads chunk-wise: lane l takes chunk l % 4 of column
//   l / 4 + 8·(w + WARPS·j). When the pass says B is contiguous in k in aligned groups of four
//   (optional member `b_k_vec4()`, below) a chunk is ONE 16-byte cp.async; otherwise four 4-byte
//   ones (same layout, same values). A column past N (b_x's bits 0) reads column n0's weights
//   instead of carrying a mask: column n of B only reaches column n of C, which the epilogue
//   never stores for n ≥ N; the copies are then predicated on the k row alone.
// - The K loop steps STAGES tiles at a time, unrolled, so every shared address is a register
//   fixed outside the loop plus an immediate (as conv_gemm), and it issues the next tile without
//   testing for the end (see the loop).
// Register pressure sets what fits: 128 accumulator registers of the 64 × 64 warp tile, 8 A slot
// pointers (16), 4 B pointers (8); the shared addresses are hidden from the optimiser
// (opaque_smem) so they are not recomputed per tile. Kernel report: benches/README.md.
#pragma once
#include <type_traits>
#include <utility>

#include "conv_gemm.cuh"
#include "mma_bf16.cuh"

#define GEMM_BK16 16

// cp_async_16: 16 bytes global → shared, or 16 zero bytes when `on` is false (source then not
// read); src and dst 16-byte aligned. L1 is bypassed (.cg, the only form of a 16-byte copy that
// skips it; the weights are reused through L2 by every block anyway).
#ifndef DDR_HOST_EMU
__device__ __forceinline__ void cp_async_16(SmemAddr dst, const float* src, bool on) {
  asm volatile(
      "{\n .reg .pred off;\n setp.eq.u32 off, %2, 0;\n cp.async.cg.shared.global [%0], [%1], 16, off;\n}\n" ::"r"(dst),
      "l"(src), "r"((u32)on)
      : "memory");
}
#else
inline void cp_async_16(SmemAddr dst, const float* src, bool on) {
  for (int i = 0; i < 4; ++i) dst[i] = on ? src[i] : 0.0f;
}
#endif

// The optional pass member `bool b_k_vec4() const`: true when B's k rows are contiguous in
// aligned groups of four — k_row(4q + i).b_off = k_row(4q).b_off + i and k_row(4q + i).b_bits =
// k_row(4q).b_bits for i < 4, and b_base + b_x(n).off + k_row(4q).b_off 16-byte aligned for
// every n < N. A pass without the member loads B by 4-byte copies.
template <class P, class = void>
struct PassBVec4 {
  static constexpr bool kHas = false;
};
template <class P>
struct PassBVec4<P, std::void_t<decltype(std::declval<const P&>().b_k_vec4())>> {
  static constexpr bool kHas = true;
};

// The K loop of conv_gemm_bf16 into `acc` (zeroed here) over the shared stages As, Bs (stage s
// at As + s·BM·16, Bs + s·BN·16 floats); kVec: B chunks by 16-byte copies.
template <int BM, int BN, int WARPS_M, int WARPS_N, int STAGES, bool kVec, class Pass>
__device__ __forceinline__ void conv_gemm_bf16_loop(const Pass& pass, float* As, float* Bs, u32 m0, u32 n0,
                                                     u32 kt0, u32 kt1,
                                                     FragC (&acc)[BM / WARPS_M / 16][BN / WARPS_N / 8]) {
  constexpr int WARPS = WARPS_M * WARPS_N;
  constexpr int WM = BM / WARPS_M, WN = BN / WARPS_N;  // warp tile
  constexpr int FM = WM / 16, FN = WN / 8;           // m16 × n8 fragments per warp tile
  constexpr int XA = BM / (8 * (WARPS / 2));         // A x slots per thread (two k rows each)
  constexpr int XB = BN / (8 * WARPS);               // B chunks (4 k) per thread and stage
  static_assert(WARPS % 2 == 0 && BM % (8 * (WARPS / 2)) == 0 && BN % (8 * WARPS) == 0, "loaders cover the tile");
  static_assert(WM % 16 == 0 && WN % 8 == 0, "warp tiles are whole fragments");

  const u32 warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const u32 wm = (warp / WARPS_N) * WM, wn = (warp % WARPS_N) * WN;
  // The WARPS_N warps sharing rows wm convert CA of its FM 16-row blocks each, the WARPS_M warps
  // sharing columns wn CB of its FN / 2 16-column blocks each.
  constexpr int CA = FM / WARPS_N, CB = FN / 2 / WARPS_M;
  static_assert(CA * WARPS_N == FM && CB * WARPS_M * 2 == FN, "conversion shares are even");
  const u32 wmi = opaque_u32(warp / WARPS_N), wni = opaque_u32(warp % WARPS_N);

  // A gather slots (conv_gemm.cuh explains the scheme): x = m0 + xa + 8·(WARPS / 2)·j, two k rows
  // per thread and stage (chunks warp % 2 and warp % 2 + 2): half the slot registers of one k row
  // over twice the x, which the 64 × 64 warp tile's accumulators leave no room for. Each slot's
  // 64-bit pointer makes an element's address one IMAD.WIDE (32-bit offsets summed per element
  // cost four instructions: ptxas re-associated them and formed the sum with LEA + LEA.HI.X).
  const u32 xa = lane / 4 + 8 * (warp / 2);
  const float* ap[XA];
  u32 abits[XA];
  DDR_UNROLL for (int j = 0; j < XA; ++j) {
    const XSlot x = pass.a_x(m0 + xa + 8 * (WARPS / 2) * j);
    ap[j] = opaque(pass.a_base + x.off);
    abits[j] = opaque_u32(x.bits);
  }
  // B slots: column n0 + xb + 8·WARPS·j, chunk cb (k = 4·cb .. 4·cb + 3 of each tile); a column
  // past N reads column n0 (valid: the block exists) and feeds only accumulators never stored.
  const u32 xb = lane / 4 + 8 * warp, cb = lane % 4;
  const XSlot x_first = pass.b_x(n0);
  const float* bp[XB];
  DDR_UNROLL for (int j = 0; j < XB; ++j) {
    const XSlot x = pass.b_x(n0 + xb + 8 * WARPS * j);
    bp[j] = opaque(pass.b_base + (x.bits != 0 ? x.off : x_first.off));
  }

  // Destinations: the swizzle term (x / 2) % 4 = (lane / 8) % 4 is the same for every slot of a
  // thread, so slot j is the thread's stage-0 address plus a constant.
  const u32 ka = 4 * (warp % 2) + lane % 4;  // this thread's A k rows inside a tile: ka, ka + 8
  const SmemAddr a_dst0 = opaque_smem(smem_addr(As + sw16(xa, ka))),
                 a_dst1 = opaque_smem(smem_addr(As + sw16(xa, ka + 8)));
  const SmemAddr b_dst = opaque_smem(smem_addr(Bs + sw16(xb, 4 * cb)));
  const u32 ka_lane = opaque_u32(ka), kb_lane = opaque_u32(4 * cb);
  const auto issue = [&](u32 kt, u32 st) {
    DDR_UNROLL for (int r = 0; r < 2; ++r) {
      const KRow row = pass.k_row(kt * GEMM_BK16 + ka_lane + 8 * r);
      const SmemAddr a_dst = r == 0 ? a_dst0 : a_dst1;
      DDR_UNROLL for (int j = 0; j < XA; ++j)
        cp_async_4(a_dst + (st * BM * 16 + 16 * 8 * (WARPS / 2) * j) * kSmemFloat, ap[j] + row.a_off,
                   (row.a_bits & abits[j]) != 0);
    }
    const u32 kb = kt * GEMM_BK16 + kb_lane;
    if constexpr (kVec) {
      const KRow brow = pass.k_row(kb);
      DDR_UNROLL for (int j = 0; j < XB; ++j)
        cp_async_16(b_dst + (st * BN * 16 + 16 * 8 * WARPS * j) * kSmemFloat, bp[j] + brow.b_off,
                    brow.b_bits != 0);
    } else {
      // Each copy's source is the chunk's first plus the difference of b_off: a constant for a
      // pass whose b_off is k (FwdPass), so four copies share one address register.
      const KRow brow0 = pass.k_row(kb);
      DDR_UNROLL for (int j = 0; j < XB; ++j) {
        const float* bq = bp[j] + brow0.b_off;
        DDR_UNROLL for (int i = 0; i < 4; ++i) {
          const KRow brow = pass.k_row(kb + i);
          cp_async_4(b_dst + (st * BN * 16 + 16 * 8 * WARPS * j + i) * kSmemFloat, bq + (brow.b_off - brow0.b_off),
                     brow.b_bits != 0);
        }
      }
    }
  };

  DDR_UNROLL for (int i = 0; i < FM; ++i) DDR_UNROLL for (int j = 0; j < FN; ++j) fill_zero(acc[i][j]);
  // This lane's fragments of its warp tile in stage 0.
  const SmemAddr as0 = opaque_smem(smem_addr(As + 16 * wm + frag16_lane_offset()));
  const SmemAddr bs0 = opaque_smem(smem_addr(Bs + 16 * wn + frag16_lane_offset()));
  // This warp's conversion share in stage 0 (its first A and B 16-block).
  const SmemAddr ac0 = as0 + 16 * 16 * CA * wni * kSmemFloat;
  const SmemAddr bc0 = bs0 + 16 * 16 * CB * wmi * kSmemFloat;

  // Prologue and loop as conv_gemm: one commit group per step, so waiting for at most
  // STAGES − 2 pending groups means tile kt has landed; tile kt lives in stage (kt − kt0) % STAGES.
  DDR_UNROLL for (int s = 0; s < STAGES - 1; ++s) {
    if (kt0 + s < kt1) issue(kt0 + s, s);
    __pipeline_commit();
  }
  for (u32 kt0s = kt0; kt0s < kt1; kt0s += STAGES) {
    DDR_UNROLL for (u32 s = 0; s < STAGES; ++s) {
      const u32 kt = kt0s + s;
      if (kt >= kt1) break;
      __pipeline_wait_prior(STAGES - 2);
      __syncthreads();  // tile kt visible; every warp done with the stage the issue overwrites
      // Issued even past kt1 (no test in the loop): the rows of a tile past the pass's last k are
      // zero-filled copies that read nothing, and a tile past a split-K range reads valid
      // memory; either lands in a stage no step reads again.
      issue(kt + STAGES - 1, (s + STAGES - 1) % STAGES);
      __pipeline_commit();

      // Convert this warp's share of the stage in place, then read whole fragments.
      DDR_UNROLL for (int i = 0; i < CA; ++i)
        convert_a16_block(ac0 + (s * BM * 16 + 16 * 16 * i) * kSmemFloat);
      DDR_UNROLL for (int j = 0; j < CB; ++j)
        convert_b16_pair(bc0 + (s * BN * 16 + 16 * 16 * j) * kSmemFloat);
      __syncthreads();  // the stage is bf16 for every warp
      FragA16 a[FM];
      FragB16 b[FN];
      load_a16_tile(a, as0 + s * BM * 16 * kSmemFloat);
      load_b16_tile(b, bs0 + s * BN * 16 * kSmemFloat);
      DDR_UNROLL for (int i = 0; i < FM; ++i) DDR_UNROLL for (int j = 0; j < FN; ++j) mma16(acc[i][j], a[i], b[j]);
    }
  }
  __pipeline_wait_prior(0);
}

// As conv_gemm: runs the K tiles [kt0, kt1) (of GEMM_BK16 rows) of the BM × BN tile at (m0, n0)
// with WARPS_M × WARPS_N warps. All threads call it.
template <int BM, int BN, int WARPS_M, int WARPS_N, class Pass>
__device__ __forceinline__ void conv_gemm_bf16(const Pass& pass, u32 m0, u32 n0, u32 M, u32 N, u32 kt0, u32 kt1) {
  constexpr int WARPS = WARPS_M * WARPS_N;
  constexpr int WM = BM / WARPS_M, WN = BN / WARPS_N;  // warp tile
  constexpr int FM = WM / 16, FN = WN / 8;           // m16 × n8 fragments per warp tile
  constexpr int STAGE_BYTES = GEMM_BK16 * (BM + BN) * 4;
  constexpr int STAGES = GEMM_SMEM_BUDGET / STAGE_BYTES < 4 ? GEMM_SMEM_BUDGET / STAGE_BYTES : 4;
  static_assert(STAGES >= 2, "two stages fit the budget");
  __shared__ __align__(16) float As[STAGES * BM * GEMM_BK16];  // (stage, sw16(m, k))
  __shared__ __align__(16) float Bs[STAGES * BN * GEMM_BK16];  // (stage, sw16(n, k))
  __shared__ __align__(16) float Cs[WARPS][16 * 8];            // per-warp epilogue scratch, (16, 8)

  const u32 warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const u32 wm = (warp / WARPS_N) * WM, wn = (warp % WARPS_N) * WN;

  FragC acc[FM][FN];
  bool vec = false;
  if constexpr (PassBVec4<Pass>::kHas) vec = pass.b_k_vec4();
  if (vec) {
    conv_gemm_bf16_loop<BM, BN, WARPS_M, WARPS_N, STAGES, true>(pass, As, Bs, m0, n0, kt0, kt1, acc);
  } else {
    conv_gemm_bf16_loop<BM, BN, WARPS_M, WARPS_N, STAGES, false>(pass, As, Bs, m0, n0, kt0, kt1, acc);
  }

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
