// conv_gemm.cuh: one 64×64 output tile of C = A·B on TF32 tensor cores (wmma m16n16k8), with A
// and B produced element by element by caller-supplied loaders (im2col gathers for the three conv
// passes) and C handed to a caller-supplied store (bias, NCHW scatter). Used by conv.cu only.
//
// Block: 128 threads = 4 warps in a 2×2 arrangement, each warp owning a 32×32 sub-tile (2×2
// fragments). K advances 16 at a time through shared memory (two m16n16k8 steps per stage).
// Inputs are rounded to TF32 (round to nearest, as cvt.rna) when they enter shared memory; the
// kSplit variant also keeps the rounding remainders (3xTF32, near-fp32 accuracy).
#pragma once
#include "common.cuh"

#define GEMM_BM 64
#define GEMM_BN 64
#define GEMM_BK 16
// Row pitches padded by 8 floats (32 bytes): wmma needs 32-byte aligned tile starts and a
// multiple-of-4 leading dimension; the padding also spreads rows over shared-memory banks.
#define GEMM_LDA (GEMM_BK + 8)
#define GEMM_LDB (GEMM_BN + 8)
#define GEMM_LDC (GEMM_BN + 8)

// la(m, k) → A[m][k]; lb(k, n) → B[k][n]; sc(m, n, v) stores C[m][n] = v. Elements outside
// M × K, K × N or M × N are never requested. All threads of the block must call this.
//
// split = true is "3xTF32": each operand is split into a TF32 head and a TF32 tail (v − head),
// and C accumulates tail·head + head·tail + head·head, which restores close to fp32 accuracy for
// 3× the tensor-core work. Plain TF32 (split = false, what PyTorch's cuDNN does by default) moves
// conv outputs by ~1e-3 relative; that flips ReLU masks near zero, and the first-layer weight
// gradients of the golden files then differ from PyTorch's fp32 values by up to ~10% of their
// largest element. `split` is uniform over the grid (a launch parameter), so the branch is free.
template <class LA, class LB, class SC>
__device__ __forceinline__ void gemm_tile_tf32(bool split, u64 m0, u64 n0, u64 M, u64 N, u64 K, const LA& la,
                                               const LB& lb, const SC& sc) {
  using namespace nvcuda;
  const bool kSplit = split;
  __shared__ __align__(32) float As[GEMM_BM * GEMM_LDA];  // (BM, BK) row-major, TF32 heads
  __shared__ __align__(32) float Bs[GEMM_BK * GEMM_LDB];  // (BK, BN) row-major, TF32 heads
  __shared__ __align__(32) float At[GEMM_BM * GEMM_LDA];  // tails, split only
  __shared__ __align__(32) float Bt[GEMM_BK * GEMM_LDB];
  __shared__ __align__(32) float Cs[GEMM_BM * GEMM_LDC];  // (BM, BN) row-major
  const u32 warp = threadIdx.x / 32;
  const u32 wm = (warp / 2) * 32, wn = (warp % 2) * 32;  // this warp's sub-tile origin

  wmma::fragment<wmma::accumulator, 16, 16, 8, float> acc[2][2];
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 2; ++j) wmma::fill_fragment(acc[i][j], 0.0f);

  for (u64 k0 = 0; k0 < K; k0 += GEMM_BK) {
    // Consecutive threads walk m in A (neighbouring output pixels: contiguous in memory) and k in B.
    for (u32 e = threadIdx.x; e < GEMM_BM * GEMM_BK; e += blockDim.x) {
      const u32 r = e % GEMM_BM, c = e / GEMM_BM;
      const u64 m = m0 + r, k = k0 + c;
      const float v = (m < M && k < K) ? la(m, k) : 0.0f;
      const float head = wmma::__float_to_tf32(v);
      As[r * GEMM_LDA + c] = head;
      if (kSplit) At[r * GEMM_LDA + c] = wmma::__float_to_tf32(v - head);
    }
    for (u32 e = threadIdx.x; e < GEMM_BK * GEMM_BN; e += blockDim.x) {
      const u32 r = e % GEMM_BK, c = e / GEMM_BK;
      const u64 k = k0 + r, n = n0 + c;
      const float v = (k < K && n < N) ? lb(k, n) : 0.0f;
      const float head = wmma::__float_to_tf32(v);
      Bs[r * GEMM_LDB + c] = head;
      if (kSplit) Bt[r * GEMM_LDB + c] = wmma::__float_to_tf32(v - head);
    }
    __syncthreads();
    for (int kk = 0; kk < GEMM_BK; kk += 8) {
      wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::row_major> a[2];
      wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::row_major> b[2];
      for (int i = 0; i < 2; ++i) wmma::load_matrix_sync(a[i], As + (wm + 16 * i) * GEMM_LDA + kk, GEMM_LDA);
      for (int j = 0; j < 2; ++j) wmma::load_matrix_sync(b[j], Bs + kk * GEMM_LDB + wn + 16 * j, GEMM_LDB);
      if (kSplit) {
        // The small cross terms first, so they are not lost against the large head·head term.
        // One tail fragment live at a time keeps the kernel within its registers (no spills).
        for (int i = 0; i < 2; ++i) {
          wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::row_major> at;
          wmma::load_matrix_sync(at, At + (wm + 16 * i) * GEMM_LDA + kk, GEMM_LDA);
          for (int j = 0; j < 2; ++j) wmma::mma_sync(acc[i][j], at, b[j], acc[i][j]);
        }
        for (int j = 0; j < 2; ++j) {
          wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::row_major> bt;
          wmma::load_matrix_sync(bt, Bt + kk * GEMM_LDB + wn + 16 * j, GEMM_LDB);
          for (int i = 0; i < 2; ++i) wmma::mma_sync(acc[i][j], a[i], bt, acc[i][j]);
        }
      }
      for (int i = 0; i < 2; ++i)
        for (int j = 0; j < 2; ++j) wmma::mma_sync(acc[i][j], a[i], b[j], acc[i][j]);
    }
    __syncthreads();  // the next stage overwrites As and Bs
  }
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 2; ++j)
      wmma::store_matrix_sync(Cs + (wm + 16 * i) * GEMM_LDC + wn + 16 * j, acc[i][j], GEMM_LDC,
                              wmma::mem_row_major);
  __syncthreads();
  for (u32 e = threadIdx.x; e < GEMM_BM * GEMM_BN; e += blockDim.x) {
    const u32 r = e % GEMM_BM, c = e / GEMM_BM;
    const u64 m = m0 + r, n = n0 + c;
    if (m < M && n < N) sc(m, n, Cs[r * GEMM_LDC + c]);
  }
}
