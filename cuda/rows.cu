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

// ---- the step without the host (src/ops/step: the reference and the clock) -----------------
// clock (4) u32: [steps done over the run, the step the epoch began at, the epoch, unused]. The
// step within the epoch is clock[0] − clock[1]; kernels read it here so that one recorded step
// (a CUDA graph) replays correctly at every step.

// idx[s·b + i] = base[s] + perms[s·N + j·full_batch + i], labels[...] = row_labels[idx[...]].
struct BatchRowsParams {
  const u32* clock;       // (4)
  const u32* perms;       // (S, N) the epoch's permutation of each student's images
  const u32* base;        // (S) each student's first row in the cohort's data
  const u32* row_labels;  // (R)
  u32* idx;               // (S·b)
  u32* labels;            // (S·b)
  u64 students;           // S
  u64 n;                  // N
  u64 batch;              // b
  u64 full_batch;
  u64 rows;  // R: a position past the epoch gives row R, which gather_rows reads as zeros
};
static_assert(sizeof(BatchRowsParams) == 88, "BatchRowsParams must match src/backend/cuda/params.rs");

extern "C" __global__ void batch_rows(const BatchRowsParams p) {
  const u64 lo = (u64)(p.clock[0] - p.clock[1]) * p.full_batch;
  for (u64 t = grid_start(); t < p.students * p.batch; t += grid_step()) {
    const u64 s = t / p.batch, pos = lo + t % p.batch;
    const u64 r = pos < p.n ? (u64)p.base[s] + p.perms[s * p.n + pos] : p.rows;
    p.idx[t] = (u32)(r < p.rows ? r : p.rows);
    p.labels[t] = r < p.rows ? p.row_labels[r] : 0u;
  }
}

// dst[i] = table[j·stride + at + i] for i < n (zero past the table's end).
struct StepWordsParams {
  const u32* clock;  // (4)
  const u32* table;  // (steps, stride)
  u32* dst;          // (n)
  u64 stride;
  u64 at;
  u64 n;
  u64 table_len;
};
static_assert(sizeof(StepWordsParams) == 56, "StepWordsParams must match src/backend/cuda/params.rs");

extern "C" __global__ void step_words(const StepWordsParams p) {
  const u64 first = (u64)(p.clock[0] - p.clock[1]) * p.stride + p.at;
  for (u64 i = grid_start(); i < p.n; i += grid_step()) {
    p.dst[i] = first + i < p.table_len ? p.table[first + i] : 0u;
  }
}

// One block: each running student's loss goes into sums[epoch, s], a NaN/inf loss stops it
// (stopped[s] = the 1-based global step); then thread 0 advances the clock. Every thread reads
// clock[0] before the barrier, so the advance cannot race with a read.
struct LossWatchParams {
  u32* clock;          // (4)
  const float* loss;   // (S)
  double* sums;        // (E, S)
  u32* stopped;        // (S)
  u64 students;        // S
  u64 epochs;          // E: an epoch past the table is not summed
};
static_assert(sizeof(LossWatchParams) == 48, "LossWatchParams must match src/backend/cuda/params.rs");

extern "C" __global__ void __launch_bounds__(DDR_BLOCK) loss_watch(const LossWatchParams p) {
  const u32 step = p.clock[0];
  const u64 e = p.clock[2];
  for (u64 s = threadIdx.x; s < p.students; s += blockDim.x) {
    if (p.stopped[s] != 0u) continue;
    const float l = p.loss[s];
    if (l - l == 0.0f) {  // finite: inf − inf and NaN − NaN are NaN
      if (e < p.epochs) p.sums[e * p.students + s] += (double)l;
    } else {
      p.stopped[s] = step + 1u;
    }
  }
  __syncthreads();
  if (threadIdx.x == 0) p.clock[0] = step + 1u;
}

#ifdef DDR_HOST_EMU
extern "C" void emu_batch_rows(const unsigned* grid, const unsigned* block, const void* params) {
  ddr_emu::launch(batch_rows, grid, block, params);
}

extern "C" void emu_step_words(const unsigned* grid, const unsigned* block, const void* params) {
  ddr_emu::launch(step_words, grid, block, params);
}

extern "C" void emu_loss_watch(const unsigned* grid, const unsigned* block, const void* params) {
  ddr_emu::launch(loss_watch, grid, block, params);
}

extern "C" void emu_scale_add(const unsigned* grid, const unsigned* block, const void* params) {
  ddr_emu::launch(scale_add, grid, block, params);
}

extern "C" void emu_gather_rows(const unsigned* grid, const unsigned* block, const void* params) {
  ddr_emu::launch(gather_rows, grid, block, params);
}
#endif
