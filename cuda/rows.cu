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

// y[y_at + i] = a·x[x_at + i] + b·y[y_at + i] for i < n. A null x drops its term; b == 0 drops y's
// (so y may hold anything there). The trainer averages teachers' logits with it on the device.
struct ScaleAddParams {
  const float* x;  // (≥ x_at + n) or null
  float* y;        // (≥ y_at + n)
  u64 n;
  u64 x_at;
  u64 y_at;
  float a;
  float b;
};
static_assert(sizeof(ScaleAddParams) == 48, "ScaleAddParams must match src/backend/cuda/params.rs");

extern "C" __global__ void scale_add(const ScaleAddParams p) {
  for (u64 i = grid_start(); i < p.n; i += grid_step()) {
    float* y = p.y + p.y_at + i;
    if (p.x == nullptr) {
      *y = p.b * *y;
    } else if (p.b == 0.0f) {
      *y = p.a * p.x[p.x_at + i];
    } else {
      // nvcc may fuse this into one FMA (one rounding fewer than the CPU reference); with a = 1
      // and b = 1, the trainer's sums, both round once and agree bitwise.
      *y = p.a * p.x[p.x_at + i] + p.b * *y;
    }
  }
}

#ifdef DDR_HOST_EMU
extern "C" void emu_scale_add(const unsigned* grid, const unsigned* block, const void* params) {
  ddr_emu::launch(scale_add, grid, block, params);
}

extern "C" void emu_gather_rows(const unsigned* grid, const unsigned* block, const void* params) {
  ddr_emu::launch(gather_rows, grid, block, params);
}
#endif
