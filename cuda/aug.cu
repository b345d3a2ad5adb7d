// aug.cu: the augmentations of DESIGN.md §5 on a cohort batch x (S, B, C, H, W): DSA (scale,
// rotate, flip, color, crop, cutout; modes S and M), Mixup and CutMix. The CPU reference is
// src/aug (plan::apply_student gives the op order); the draws are sampled there on the host and
// uploaded, so both devices augment with bitwise the same parameters.
//
// One launch per op bit, in apply_student's order; each launch touches only the students whose
// `ops` has its bit. The ops that read other pixels or images (scale, rotate, crop, mixup, cutmix:
// "moves") write out of place into the other of two buffers, x and scratch; where a student's batch
// lives before an op is the parity of the moves it ran before it, computed from its own `ops`, so
// no student is ever copied through an op it does not run. aug_copy_back ends with every batch in x.
//
// Arithmetic is f32 in the CPU reference's order. nvcc would contract a·b + c into one FMA (one
// rounding instead of two), so the products and sums that the reference rounds separately go
// through mul_rn / add_rn; that keeps the GPU bitwise equal to the CPU except for the contrast
// mean, an f64 sum in another order.
#include "common.cuh"

#ifdef DDR_HOST_EMU
// The host compiler must not contract either (g++ contracts across statements in C++ modes).
#pragma GCC optimize("fp-contract=off")
static inline float mul_rn(float a, float b) { return a * b; }
static inline float add_rn(float a, float b) { return a + b; }
static inline float sub_rn(float a, float b) { return a - b; }
#else
__device__ __forceinline__ float mul_rn(float a, float b) { return __fmul_rn(a, b); }
__device__ __forceinline__ float add_rn(float a, float b) { return __fadd_rn(a, b); }
__device__ __forceinline__ float sub_rn(float a, float b) { return __fsub_rn(a, b); }
#endif

// src/aug/draws.rs OP_* bits, in the order the ops run.
#define OP_SCALE (1u << 0)
#define OP_ROTATE (1u << 1)
#define OP_FLIP (1u << 2)
#define OP_COLOR (1u << 3)
#define OP_CROP (1u << 4)
#define OP_CUTOUT (1u << 5)
#define OP_MIXUP (1u << 6)
#define OP_CUTMIX (1u << 7)
// After every op: where aug_copy_back finds a batch.
#define OP_END (1u << 8)
// The ops that write out of place (they read pixels or images other than the one they write).
#define OP_MOVES (OP_SCALE | OP_ROTATE | OP_CROP | OP_MIXUP | OP_CUTMIX)

// src/aug/draws.rs ImageDraws: 13 four-byte fields.
struct ImageDraws {
  float scale_x, scale_y, rot_cos, rot_sin;
  u32 flip;
  float brightness, saturation, contrast;
  int crop_x, crop_y, cutout_x, cutout_y;
  u32 partner;
};
static_assert(sizeof(ImageDraws) == 52, "ImageDraws must match src/aug/draws.rs");

// src/aug/draws.rs StudentDraws: 7 four-byte fields.
struct StudentDraws {
  u32 ops;
  float mix_self, mix_other;
  int box_r0, box_r1, box_c0, box_c1;
};
static_assert(sizeof(StudentDraws) == 28, "StudentDraws must match src/aug/draws.rs");

struct AugParams {
  float* x;                       // (S, B, C, H, W): the batch, augmented in place
  float* scratch;                 // (S, B, C, H, W): the other buffer of the moves
  const StudentDraws* students;   // (S)
  const ImageDraws* images;       // (S, B)
  u32 students_n, batch, c, h, w;
  u32 op;                         // aug_warp: OP_SCALE or OP_ROTATE
  float brightness, saturation, contrast;  // DSA strengths, rounded to f32 as the reference does
  int cutout_h, cutout_w;         // cutout sides along rows and columns: int(len·ratio + 0.5)
  u32 unused;
};
static_assert(sizeof(AugParams) == 80, "AugParams must match src/backend/cuda/params.rs");

// The buffer holding a student's batch before `op`: x after an even number of moves, else scratch.
__device__ __forceinline__ float* batch_before(const AugParams& p, u32 ops, u32 op) {
  u32 moves = ops & OP_MOVES & (op - 1u), n = 0;
  for (; moves != 0u; moves &= moves - 1u) ++n;
  return (n & 1u) ? p.scratch : p.x;
}
// clamp(v, lo, hi) on 64-bit integers (the emulator has no CUDA min/max overloads).
__device__ __forceinline__ long long clamp_ll(long long v, long long lo, long long hi) {
  return v < lo ? lo : (v > hi ? hi : v);
}

__device__ __forceinline__ float* other_buffer(const AugParams& p, const float* b) {
  return b == p.x ? p.scratch : p.x;
}

// ---- scale and rotate: affine grid + bilinear sampling (src/aug/geometric.rs) -------------------

// torch.linspace(-1, 1, n)[k] in f32: the first half from the start, the second from the end.
__device__ __forceinline__ float linspace_neg_one(u32 k, u32 n) {
  if (n <= 1u) return -1.0f;
  const float step = 2.0f / (float)(n - 1u);
  return k < n / 2u ? add_rn(-1.0f, mul_rn(step, (float)k)) : sub_rn(1.0f, mul_rn(step, (float)(n - 1u - k)));
}

// Tap (y, x) of one plane (H, W) with zero padding.
__device__ __forceinline__ float tap(const float* plane, long long y, long long x, u32 h, u32 w) {
  return (y >= 0 && y < (long long)h && x >= 0 && x < (long long)w) ? plane[y * w + x] : 0.0f;
}

// Each thread warps one output pixel (s, b, i, j) over all channels; grid-stride over S·B·H·W.
extern "C" __global__ void __launch_bounds__(DDR_BLOCK) aug_warp(const AugParams p) {
  const u64 plane = (u64)p.h * p.w, image = plane * p.c;
  const u64 n = (u64)p.students_n * p.batch * plane;
  for (u64 t = grid_start(); t < n; t += grid_step()) {
    const u64 img = t / plane, pix = t % plane;
    const u32 s = (u32)(img / p.batch);
    const u32 ops = p.students[s].ops;
    if (!(ops & p.op)) continue;
    const ImageDraws d = p.images[img];
    // θ row-major 2×3: scale [[sx, 0, 0], [0, sy, 0]], rotate [[cos, −sin, 0], [sin, cos, 0]].
    float th[6];
    if (p.op == OP_SCALE) {
      th[0] = d.scale_x, th[1] = 0.0f, th[2] = 0.0f, th[3] = 0.0f, th[4] = d.scale_y, th[5] = 0.0f;
    } else {
      th[0] = d.rot_cos, th[1] = -d.rot_sin, th[2] = 0.0f, th[3] = d.rot_sin, th[4] = d.rot_cos, th[5] = 0.0f;
    }
    const u32 i = (u32)(pix / p.w), j = (u32)(pix % p.w);
    const float gxs = linspace_neg_one(j, p.w), gys = linspace_neg_one(i, p.h);
    const float gx = add_rn(add_rn(mul_rn(gxs, th[0]), mul_rn(gys, th[1])), th[2]);
    const float gy = add_rn(add_rn(mul_rn(gxs, th[3]), mul_rn(gys, th[4])), th[5]);
    // align_corners=True: −1 and 1 are the centres of the corner pixels.
    const float ix = mul_rn(add_rn(gx, 1.0f), (float)(p.w - 1u) / 2.0f);
    const float iy = mul_rn(add_rn(gy, 1.0f), (float)(p.h - 1u) / 2.0f);
    const float fx0 = floorf(ix), fy0 = floorf(iy);
    const float we = sub_rn(ix, fx0), ww = sub_rn(1.0f, we);  // east / west column weights
    const float ws = sub_rn(iy, fy0), wn = sub_rn(1.0f, ws);  // south / north row weights
    const float w00 = mul_rn(wn, ww), w01 = mul_rn(wn, we), w10 = mul_rn(ws, ww), w11 = mul_rn(ws, we);
    const long long x0 = (long long)fx0, y0 = (long long)fy0;
    const float* src = batch_before(p, ops, p.op) + img * image;
    float* dst = other_buffer(p, batch_before(p, ops, p.op)) + img * image;
    for (u32 ch = 0; ch < p.c; ++ch) {
      const float* pl = src + ch * plane;
      const float v = add_rn(add_rn(add_rn(mul_rn(tap(pl, y0, x0, p.h, p.w), w00), mul_rn(tap(pl, y0, x0 + 1, p.h, p.w), w01)),
                                    mul_rn(tap(pl, y0 + 1, x0, p.h, p.w), w10)),
                             mul_rn(tap(pl, y0 + 1, x0 + 1, p.h, p.w), w11));
      dst[ch * plane + pix] = v;
    }
  }
}

// ---- flip: mirror the width axis in place (src/aug/shift.rs) -------------------------------------

// One thread per pair (j, W−1−j) of a row; grid-stride over S·B·C·H·⌊W/2⌋.
extern "C" __global__ void __launch_bounds__(DDR_BLOCK) aug_flip(const AugParams p) {
  const u32 half = p.w / 2u;
  const u64 rows_per_image = (u64)p.c * p.h;
  const u64 n = (u64)p.students_n * p.batch * rows_per_image * half;
  for (u64 t = grid_start(); t < n; t += grid_step()) {
    const u64 row = t / half, img = row / rows_per_image;
    const u32 j = (u32)(t % half);
    const u32 ops = p.students[img / p.batch].ops;
    if (!(ops & OP_FLIP) || p.images[img].flip == 0u) continue;
    float* r = batch_before(p, ops, OP_FLIP) + row * p.w;
    const float a = r[j];
    r[j] = r[p.w - 1u - j];
    r[p.w - 1u - j] = a;
  }
}

// ---- color: brightness, saturation, contrast in place (src/aug/color.rs) -------------------------

// Sum over the block in f64; every thread gets the total. The partials meet in shared memory and
// thread 0 adds them in thread order: two barriers and no shuffles, so the sum is deterministic and
// cheap under the emulator (where every barrier and shuffle is a round of OS-thread waits), while
// on the GPU the 128 additions are nothing next to the image's loads. partial: DDR_BLOCK values.
__device__ __forceinline__ double block_sum_f64(double v, double* partial, double* total) {
  partial[threadIdx.x] = v;
  __syncthreads();
  if (threadIdx.x == 0) {
    double t = 0.0;
    for (u32 k = 0; k < blockDim.x; ++k) t += partial[k];
    *total = t;
  }
  __syncthreads();
  // No third barrier: thread 0 rewrites `total` only after the next call's first barrier, which
  // every thread reaches after reading it here; `partial` was fully read before the second one.
  return *total;
}

// Brightness then saturation of channel `ch` of one pixel `pix` of an image (C, H, W), given the
// pixel's brightened channel mean. Recomputed in both passes below rather than stored.
__device__ __forceinline__ float bright_saturated(const float* img, u64 plane, u32 ch, u64 pix, float shift,
                                                  float mean, float factor) {
  const float v = add_rn(img[ch * plane + pix], shift);
  return add_rn(mul_rn(sub_rn(v, mean), factor), mean);
}

// The brightened channel mean of pixel `pix`: Σ_c (x_c + shift) in channel order, / C.
__device__ __forceinline__ float channel_mean(const float* img, u64 plane, u32 c, u64 pix, float shift) {
  float sum = 0.0f;
  for (u32 ch = 0; ch < c; ++ch) sum = add_rn(sum, add_rn(img[ch * plane + pix], shift));
  return sum / (float)c;
}

// One block per image (grid-stride over S·B images): pass 1 sums the brightened, saturated image in
// f64 for the contrast mean; pass 2 recomputes each value and writes the contrast result.
extern "C" __global__ void __launch_bounds__(DDR_BLOCK) aug_color(const AugParams p) {
  __shared__ double partial[DDR_BLOCK];
  __shared__ double total;
  const u64 plane = (u64)p.h * p.w, image = plane * p.c;
  const u64 images = (u64)p.students_n * p.batch;
  for (u64 img = blockIdx.x; img < images; img += gridDim.x) {
    const u32 ops = p.students[img / p.batch].ops;
    if (!(ops & OP_COLOR)) continue;  // the same for every thread of the block
    const ImageDraws d = p.images[img];
    const float shift = mul_rn(sub_rn(d.brightness, 0.5f), p.brightness);
    const float sat = mul_rn(d.saturation, p.saturation);
    const float con = add_rn(d.contrast, p.contrast);
    float* x = batch_before(p, ops, OP_COLOR) + img * image;
    double part = 0.0;
    for (u64 pix = threadIdx.x; pix < plane; pix += blockDim.x) {
      const float m = channel_mean(x, plane, p.c, pix, shift);
      for (u32 ch = 0; ch < p.c; ++ch) part += (double)bright_saturated(x, plane, ch, pix, shift, m, sat);
    }
    const float mean = (float)(block_sum_f64(part, partial, &total) / (double)image);
    for (u64 pix = threadIdx.x; pix < plane; pix += blockDim.x) {
      const float m = channel_mean(x, plane, p.c, pix, shift);
      // Channel ch reads only x[ch], and the pixel's mean m is already taken: write as we go.
      for (u32 ch = 0; ch < p.c; ++ch) {
        const float b = bright_saturated(x, plane, ch, pix, shift, m, sat);
        x[ch * plane + pix] = add_rn(mul_rn(sub_rn(b, mean), con), mean);
      }
    }
  }
}

// ---- crop: translate with zero fill (src/aug/shift.rs crop_image) -------------------------------

extern "C" __global__ void __launch_bounds__(DDR_BLOCK) aug_crop(const AugParams p) {
  const u64 plane = (u64)p.h * p.w, image = plane * p.c;
  const u64 n = (u64)p.students_n * p.batch * plane;
  for (u64 t = grid_start(); t < n; t += grid_step()) {
    const u64 img = t / plane, pix = t % plane;
    const u32 ops = p.students[img / p.batch].ops;
    if (!(ops & OP_CROP)) continue;
    const ImageDraws d = p.images[img];
    const long long i = (long long)(pix / p.w), j = (long long)(pix % p.w);
    // Index into the image padded by one zero pixel, clamped to the padding.
    const long long pi = clamp_ll(i + d.crop_x + 1, 0, (long long)p.h + 1);
    const long long pj = clamp_ll(j + d.crop_y + 1, 0, (long long)p.w + 1);
    const bool inside = pi >= 1 && pi <= (long long)p.h && pj >= 1 && pj <= (long long)p.w;
    const float* src = batch_before(p, ops, OP_CROP) + img * image;
    float* dst = other_buffer(p, batch_before(p, ops, OP_CROP)) + img * image;
    for (u32 ch = 0; ch < p.c; ++ch)
      dst[ch * plane + pix] = inside ? src[ch * plane + (pi - 1) * p.w + (pj - 1)] : 0.0f;
  }
}

// ---- cutout: zero a square on all channels in place (src/aug/shift.rs cutout_range) -------------

// The cells [lo, hi) of a cutout of side k at `offset` along a side of `len`: clamp(offset − ⌊k/2⌋
// + [0, k), 0, len − 1), one contiguous range.
__device__ __forceinline__ bool in_cutout(long long at, int offset, int k, u32 len) {
  if (k <= 0) return false;
  const long long last = (long long)len - 1;
  const long long lo = clamp_ll((long long)offset - k / 2, 0, last);
  const long long hi = clamp_ll((long long)offset - k / 2 + k - 1, 0, last);
  return at >= lo && at <= hi;
}

extern "C" __global__ void __launch_bounds__(DDR_BLOCK) aug_cutout(const AugParams p) {
  const u64 plane = (u64)p.h * p.w, image = plane * p.c;
  const u64 n = (u64)p.students_n * p.batch * plane;
  for (u64 t = grid_start(); t < n; t += grid_step()) {
    const u64 img = t / plane, pix = t % plane;
    const u32 ops = p.students[img / p.batch].ops;
    if (!(ops & OP_CUTOUT)) continue;
    const ImageDraws d = p.images[img];
    const long long i = (long long)(pix / p.w), j = (long long)(pix % p.w);
    if (!in_cutout(i, d.cutout_x, p.cutout_h, p.h) || !in_cutout(j, d.cutout_y, p.cutout_w, p.w)) continue;
    float* x = batch_before(p, ops, OP_CUTOUT) + img * image;
    for (u32 ch = 0; ch < p.c; ++ch) x[ch * plane + pix] = 0.0f;
  }
}

// ---- Mixup and CutMix (src/aug/mix.rs): every image with its partner x[perm[b]] -----------------

extern "C" __global__ void __launch_bounds__(DDR_BLOCK) aug_mixup(const AugParams p) {
  const u64 image = (u64)p.c * p.h * p.w;
  const u64 n = (u64)p.students_n * p.batch * image;
  for (u64 t = grid_start(); t < n; t += grid_step()) {
    const u64 img = t / image, e = t % image;
    const u32 s = (u32)(img / p.batch);
    const StudentDraws st = p.students[s];
    if (!(st.ops & OP_MIXUP)) continue;
    const float* src = batch_before(p, st.ops, OP_MIXUP);
    const u64 other = (u64)s * p.batch + p.images[img].partner;
    // f32(λ)·x + f32(1 − λ)·x[perm], each product rounded before the sum as PyTorch does.
    other_buffer(p, src)[t] = add_rn(mul_rn(st.mix_self, src[t]), mul_rn(st.mix_other, src[other * image + e]));
  }
}

extern "C" __global__ void __launch_bounds__(DDR_BLOCK) aug_cutmix(const AugParams p) {
  const u64 plane = (u64)p.h * p.w, image = plane * p.c;
  const u64 n = (u64)p.students_n * p.batch * image;
  for (u64 t = grid_start(); t < n; t += grid_step()) {
    const u64 img = t / image, e = t % image;
    const u32 s = (u32)(img / p.batch);
    const StudentDraws st = p.students[s];
    if (!(st.ops & OP_CUTMIX)) continue;
    const float* src = batch_before(p, st.ops, OP_CUTMIX);
    const int i = (int)((e % plane) / p.w), j = (int)(e % p.w);
    const bool in_box = i >= st.box_r0 && i < st.box_r1 && j >= st.box_c0 && j < st.box_c1;
    const u64 from = in_box ? ((u64)s * p.batch + p.images[img].partner) * image + e : t;
    other_buffer(p, src)[t] = src[from];
  }
}

// ---- the end: batches left in scratch by an odd number of moves go back to x --------------------

extern "C" __global__ void __launch_bounds__(DDR_BLOCK) aug_copy_back(const AugParams p) {
  const u64 per_student = (u64)p.batch * p.c * p.h * p.w;
  const u64 n = (u64)p.students_n * per_student;
  for (u64 t = grid_start(); t < n; t += grid_step()) {
    const u32 ops = p.students[t / per_student].ops;
    if (batch_before(p, ops, OP_END) == p.scratch) p.x[t] = p.scratch[t];
  }
}

#ifdef DDR_HOST_EMU
extern "C" void emu_aug_warp(const unsigned* grid, const unsigned* block, const void* params) {
  ddr_emu::launch(aug_warp, grid, block, params);
}
extern "C" void emu_aug_flip(const unsigned* grid, const unsigned* block, const void* params) {
  ddr_emu::launch(aug_flip, grid, block, params);
}
extern "C" void emu_aug_color(const unsigned* grid, const unsigned* block, const void* params) {
  ddr_emu::launch(aug_color, grid, block, params);
}
extern "C" void emu_aug_crop(const unsigned* grid, const unsigned* block, const void* params) {
  ddr_emu::launch(aug_crop, grid, block, params);
}
extern "C" void emu_aug_cutout(const unsigned* grid, const unsigned* block, const void* params) {
  ddr_emu::launch(aug_cutout, grid, block, params);
}
extern "C" void emu_aug_mixup(const unsigned* grid, const unsigned* block, const void* params) {
  ddr_emu::launch(aug_mixup, grid, block, params);
}
extern "C" void emu_aug_cutmix(const unsigned* grid, const unsigned* block, const void* params) {
  ddr_emu::launch(aug_cutmix, grid, block, params);
}
extern "C" void emu_aug_copy_back(const unsigned* grid, const unsigned* block, const void* params) {
  ddr_emu::launch(aug_copy_back, grid, block, params);
}
#endif
