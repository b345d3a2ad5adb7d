// host_emu_pipeline.h: the asynchronous-copy primitives of CUDA's cuda_pipeline.h for the host
// emulator (host_emu.h includes this file at its end). On the GPU __pipeline_memcpy_async starts a
// global → shared copy (cp.async) that completes by a later __pipeline_wait_prior; here the copy
// happens at once, which is one of the orders the GPU may produce, so a kernel that waits and
// synchronises correctly computes the same values. Kernels must still call __syncthreads between
// the wait and reading data other threads copied: the emulator cannot catch a missing one.
#pragma once

#include <cstddef>
#include <cstring>

// Copies size_and_align − zfill bytes from src and zeroes the last zfill bytes of dst, as
// cp.async with a source size does (sizes 4, 8 or 16 on the GPU).
inline void __pipeline_memcpy_async(void* dst, const void* src, std::size_t size_and_align, std::size_t zfill = 0) {
  const std::size_t copied = zfill < size_and_align ? size_and_align - zfill : 0;
  if (copied) std::memcpy(dst, src, copied);
  std::memset(static_cast<char*>(dst) + copied, 0, size_and_align - copied);
}
inline void __pipeline_commit() {}
inline void __pipeline_wait_prior(std::size_t) {}
