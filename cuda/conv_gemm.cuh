// conv_gemm.cuh: one 64×64 output tile of C = A·B on TF32 tensor cores (wmma m16n16k8), with A
// and B produced element by element by caller-supplied loaders (im2col gathers for the three conv
// passes) and C handed to a caller-supplied store (bias, NCHW scatter). Used by conv.cu only.
//
// Block: 128 threads = 4 warps in a 2×2 arrangement, each warp owning a 32×32 sub-tile (2×2
// fragments). K advances 16 at a time through shared memory (two m16n16k8 steps per stage).
// Inputs are rounded to TF32 (round to nearest, as cvt.rna) when they enter shared memory.
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
template <class LA, class LB, class SC>
__device__ __forceinline__ void gemm_tile_tf32(u64 m0, u64 n0, u64 M, u64 N, u64 K, const LA& la, const LB& lb,
                                               const SC& sc) {
  using namespace nvcuda;
  __shared__ __align__(32) float As[GEMM_BM * GEMM_LDA];  // (BM, BK) row-major
  __shared__ __align__(32) float Bs[GEMM_BK * GEMM_LDB];  // (BK, BN) row-major
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
      As[r * GEMM_LDA + c] = (m < M && k < K) ? wmma::__float_to_tf32(la(m, k)) : 0.0f;
    }
    for (u32 e = threadIdx.x; e < GEMM_BK * GEMM_BN; e += blockDim.x) {
      const u32 r = e % GEMM_BK, c = e / GEMM_BK;
      const u64 k = k0 + r, n = n0 + c;
      Bs[r * GEMM_LDB + c] = (k < K && n < N) ? wmma::__float_to_tf32(lb(k, n)) : 0.0f;
    }
    __syncthreads();
    for (int kk = 0; kk < GEMM_BK; kk += 8) {
      wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::row_major> a[2];
      wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::row_major> b[2];
      for (int i = 0; i < 2; ++i) wmma::load_matrix_sync(a[i], As + (wm + 16 * i) * GEMM_LDA + kk, GEMM_LDA);
      for (int j = 0; j < 2; ++j) wmma::load_matrix_sync(b[j], Bs + kk * GEMM_LDB + wn + 16 * j, GEMM_LDB);
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
