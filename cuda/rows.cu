// rows.cu: gather_rows, the data-movement op that builds a batch from a dataset on the device:
// dst[m, :] = src[idx[m], :]. Used by the trainer for every batch of every student.
#include "common.cuh"

struct GatherParams {
  const float* src;  // (N, row_len)
  const u32* idx;    // (M)
  float* dst;        // (M, row_len)
  u64 rows;          // M
  u64 row_len;
  u64 src_rows;      // N: an index ≥ N yields a zero row instead of reading out of bounds
};
static_assert(sizeof(GatherParams) == 48, "GatherParams must match src/backend/cuda/params.rs");

extern "C" __global__ void gather_rows(const GatherParams p) {
  const u64 n = p.rows * p.row_len;
  for (u64 i = grid_start(); i < n; i += grid_step()) {
    const u64 m = i / p.row_len, k = i % p.row_len;
    const u64 r = p.idx[m];
    p.dst[i] = r < p.src_rows ? p.src[r * p.row_len + k] : 0.0f;
  }
}

#ifdef DDR_HOST_EMU
extern "C" void emu_gather_rows(const unsigned* grid, const unsigned* block, const void* params) {
  ddr_emu::launch(gather_rows, grid, block, params);
}
#endif
