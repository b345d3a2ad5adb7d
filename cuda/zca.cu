// zca.cu: ZCA whitening applied on the device, out (N, D) = (x (N, D) − μ (D)) · W (D, D), with the
// transform fitted on the host (src/aug/zca.rs, whose `whiten` is the CPU reference). One tiled
// f32 GEMM that centres x while loading it: each block computes a 64 × 64 tile of out, stepping
// through D in slices of 16 staged in shared memory; each thread owns 8 rows × 4 columns.
#include "common.cuh"

#define ZCA_TILE 64   // rows and columns of out per block
#define ZCA_K 16      // slice of the inner dimension per shared-memory stage

struct ZcaParams {
  const float* x;          // (N, D)
  const float* mean;       // (D)
  const float* transform;  // (D, D), row-major
  float* out;              // (N, D)
  u64 rows;                // N
  u64 dim;                 // D
};
static_assert(sizeof(ZcaParams) == 48, "ZcaParams must match src/backend/cuda/params.rs");

// grid (⌈D / 64⌉, ⌈N / 64⌉); block DDR_BLOCK = 128 threads as 8 row groups × 16 column groups.
extern "C" __global__ void __launch_bounds__(DDR_BLOCK) zca_whiten(const ZcaParams p) {
  // Centred x, k-major: xs[k][r] = x[row0 + r, k0 + k] − μ; one pad column so the k-strided
  // stores of a warp fall in different banks.
  __shared__ float xs[ZCA_K][ZCA_TILE + 1];
  __shared__ float ws[ZCA_K][ZCA_TILE];  // ws[k][c] = W[k0 + k, col0 + c]
  const u64 row0 = (u64)blockIdx.y * ZCA_TILE, col0 = (u64)blockIdx.x * ZCA_TILE;
  const u32 tid = threadIdx.x, tr = tid / 16, tc = tid % 16;
  float acc[8][4] = {};
  for (u64 k0 = 0; k0 < p.dim; k0 += ZCA_K) {
    // 1024 values of each tile, 8 per thread; out-of-range entries are 0 and add nothing.
    for (u32 e = tid; e < ZCA_K * ZCA_TILE; e += DDR_BLOCK) {
      const u32 r = e / ZCA_K, k = e % ZCA_K;  // x: consecutive threads read consecutive k
      const u64 gr = row0 + r, gk = k0 + k;
      xs[k][r] = (gr < p.rows && gk < p.dim) ? p.x[gr * p.dim + gk] - p.mean[gk] : 0.0f;
      const u32 k2 = e / ZCA_TILE, c = e % ZCA_TILE;  // W: consecutive threads read a row
      const u64 gk2 = k0 + k2, gc = col0 + c;
      ws[k2][c] = (gk2 < p.dim && gc < p.dim) ? p.transform[gk2 * p.dim + gc] : 0.0f;
    }
    __syncthreads();
    for (u32 k = 0; k < ZCA_K; ++k) {
      float a[8], b[4];
      for (u32 i = 0; i < 8; ++i) a[i] = xs[k][tr + 8 * i];
      for (u32 j = 0; j < 4; ++j) b[j] = ws[k][tc + 16 * j];
      for (u32 i = 0; i < 8; ++i)
        for (u32 j = 0; j < 4; ++j) acc[i][j] += a[i] * b[j];
    }
    __syncthreads();  // the next stage overwrites the tiles
  }
  for (u32 i = 0; i < 8; ++i) {
    const u64 gr = row0 + tr + 8 * i;
    if (gr >= p.rows) continue;
    for (u32 j = 0; j < 4; ++j) {
      const u64 gc = col0 + tc + 16 * j;
      if (gc < p.dim) p.out[gr * p.dim + gc] = acc[i][j];
    }
  }
}

#ifdef DDR_HOST_EMU
extern "C" void emu_zca_whiten(const unsigned* grid, const unsigned* block, const void* params) {
  ddr_emu::launch(zca_whiten, grid, block, params);
}
#endif
