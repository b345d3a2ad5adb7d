// selftest.cu: exercises the CUDA primitives the emulator (host_emu.h) re-implements — warp
// shuffles of every flavour, atomics, wmma TF32 loads in both layouts — with inputs whose answers
// the Rust side knows. Run on a GPU it checks the hardware agrees with what the emulator assumes;
// run emulated it checks the emulator. Used by CudaBackend::selftest (src/backend/cuda/selftest.rs).
#include "common.cuh"

struct SelftestParams {
  u32* shfl;         // (64) __shfl_sync(v = 10·t, src lane (lane + 3) % 32)
  u32* shfl_down;    // (64) __shfl_down_sync(v = t, 5)
  u32* shfl_xor;     // (64) butterfly sum over the warp of t
  u32* counters;     // (2) atomicAdd(+1) by every thread, atomicMax(t)
  float* fsum;       // (1) atomicAdd(0.5f) by every thread
  const float* a;    // (16·8) A, column-major (ldm 16)
  const float* b;    // (8·16) B, column-major (ldm 8)
  float* d;          // (16·16) D = A·B + 1, row-major
};
static_assert(sizeof(SelftestParams) == 64, "SelftestParams must match src/backend/cuda/params.rs");

// One block of 64 threads (two warps).
extern "C" __global__ void selftest_primitives(const SelftestParams p) {
  using namespace nvcuda;
  const u32 t = threadIdx.x, lane = t % 32;
  p.shfl[t] = __shfl_sync(0xffffffffu, 10 * t, (int)((lane + 3) % 32));
  p.shfl_down[t] = __shfl_down_sync(0xffffffffu, t, 5);
  u32 v = t;
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  p.shfl_xor[t] = v;
  atomicAdd(&p.counters[0], 1u);
  atomicMax(&p.counters[1], t);
  atomicAdd(p.fsum, 0.5f);
  if (t < 32) {  // warp 0 only: a whole warp, as wmma requires
    wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::col_major> fa;
    wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::col_major> fb;
    wmma::fragment<wmma::accumulator, 16, 16, 8, float> acc;
    wmma::load_matrix_sync(fa, p.a, 16);
    wmma::load_matrix_sync(fb, p.b, 8);
    for (int i = 0; i < fa.num_elements; ++i) fa.x[i] = wmma::__float_to_tf32(fa.x[i]);
    for (int i = 0; i < fb.num_elements; ++i) fb.x[i] = wmma::__float_to_tf32(fb.x[i]);
    wmma::fill_fragment(acc, 1.0f);
    wmma::mma_sync(acc, fa, fb, acc);
    wmma::store_matrix_sync(p.d, acc, 16, wmma::mem_row_major);
  }
}

#ifdef DDR_HOST_EMU
extern "C" void emu_selftest_primitives(const unsigned* grid, const unsigned* block, const void* params) {
  ddr_emu::launch(selftest_primitives, grid, block, params);
}
#endif
