// aug_tv.cu: DD-Ranking's `custom_train_trans` on the gathered batch x (S·B, C, H, W), in place, per
// image, before the batch augmentation (aug.cu). The CPU reference is src/aug/tv.rs
// (`TvPipeline::apply_entry`) with the resize of src/aug/tv_resize.rs; the draws are sampled there
// on the host into an epoch table of per-image entries (`TvPipeline::entry`: a switch word, then 4
// words per stage), so both devices transform with bitwise the same boxes and flips.
//
// One block per channel plane (grid-stride over the S·B·C planes; every stage acts on each plane
// alone): the plane is staged in shared memory, every stage goes from one shared buffer to the
// other, and the result is written back. The launcher admits only pipelines whose every stage
// keeps H × W (then a RandomResizedCrop box, at most the image, is only ever upscaled: support 1,
// at most 3 taps) on planes of at most TV_PLANE values.
//
// Arithmetic is f32 in the reference's order, with its f64 steps where PyTorch's kernel has them;
// products and sums go through mul_rn / add_rn so nvcc does not contract them into FMAs.
#include "common.cuh"

#ifdef DDR_HOST_EMU
#define TV_UNROLL
#pragma GCC optimize("fp-contract=off")
static inline float mul_rn(float a, float b) { return a * b; }
static inline float add_rn(float a, float b) { return a + b; }
static inline float sub_rn(float a, float b) { return a - b; }
#else
#define TV_UNROLL _Pragma("unroll")
__device__ __forceinline__ float mul_rn(float a, float b) { return __fmul_rn(a, b); }
__device__ __forceinline__ float add_rn(float a, float b) { return __fadd_rn(a, b); }
__device__ __forceinline__ float sub_rn(float a, float b) { return __fsub_rn(a, b); }
#endif

#define TV_MAX_STAGES 16  // src/aug/tv.rs MAX_STAGES
#define TV_DRAW_WORDS 4   // src/aug/tv.rs DRAW_WORDS
#define TV_MAX_C 4        // channels a Normalize stage carries
#define TV_PLANE 4096     // values of one channel plane in shared memory (64 × 64)
// Taps of an upscaling bilinear filter (support 1): trunc(c + 1.5) − trunc(c − 0.5) is 2, or 3
// when the f32 rounding of center ± 1 crosses an integer; never more.
#define TV_MAX_TAPS 3

// Stage kinds (src/backend/cuda/aug_tv.rs KIND_*).
#define TV_RRC 1
#define TV_FLIP 2
#define TV_CROP 3
#define TV_NORM 4

struct TvParams {
  const u32* clock;  // (4)
  const u32* table;  // (steps, stride): per image 1 + stages·4 words
  float* x;          // (S·B, C, H, W), transformed in place
  u64 stride;        // words per step
  u64 images;        // S·B
  u32 c;
  u32 size;          // H = W
  u32 stages;
  u32 pad;
  u32 kind[TV_MAX_STAGES];
  u32 padding[TV_MAX_STAGES];           // RandomCrop's zero padding
  float mean[TV_MAX_STAGES][TV_MAX_C];  // Normalize
  float std[TV_MAX_STAGES][TV_MAX_C];
};
static_assert(sizeof(TvParams) == 696, "TvParams must match src/backend/cuda/params.rs");

// Output position i of an `in` → `out` upscale (in ≤ out) along an axis whose samples lie `stride`
// apart from src: src/aug/tv_resize.rs aa_taps (scale ≤ 1: support 1, invscale 1) then dot, in
// the reference's f32/f64 steps and order. The taps live in registers (constant indices after
// unrolling), and no sample beyond the n taps is read.
__device__ __forceinline__ float up_sample(const float* src, u32 stride, u32 in, u32 out, u32 i) {
  const float scale = (float)in / (float)out;
  const float center = (float)((double)scale * ((double)i + 0.5));
  long long lo = (long long)((double)(center - 1.0f) + 0.5);
  long long hi = (long long)((double)(center + 1.0f) + 0.5);
  lo = lo < 0 ? 0 : lo;
  hi = hi > (long long)in ? (long long)in : hi;
  const u32 n = hi > lo ? (u32)(hi - lo) : 0;  // ≥ 1 for an upscale
  float w[TV_MAX_TAPS];
  float total = 0.0f;
TV_UNROLL
  for (u32 k = 0; k < TV_MAX_TAPS; ++k) {
    const float t = fabsf((float)((double)((float)(lo + k) - center) + 0.5));
    w[k] = t < 1.0f ? sub_rn(1.0f, t) : 0.0f;
    if (k < n) total = add_rn(total, w[k]);
  }
  if (total != 0.0f) {
TV_UNROLL
    for (u32 k = 0; k < TV_MAX_TAPS; ++k) w[k] = w[k] / total;
  }
  src += lo * stride;
  float acc = mul_rn(src[0], w[0]);
TV_UNROLL
  for (u32 k = 1; k < TV_MAX_TAPS; ++k)
    if (k < n) acc = add_rn(acc, mul_rn(src[k * stride], w[k]));
  return acc;
}

extern "C" __global__ void __launch_bounds__(DDR_BLOCK) aug_tv(const TvParams p) {
  __shared__ float buf[2][TV_PLANE];  // one channel plane before and after each stage
  const u32 s = p.size, plane = s * s;
  const u32 words = 1 + p.stages * TV_DRAW_WORDS;
  const u64 step = (u64)(p.clock[0] - p.clock[1]);  // the step in the epoch (table row)
  const u32* row = p.table + step * p.stride;
  // Every stage maps a channel plane to the same channel plane (Normalize by its own mean and
  // std), so a block takes one (image, channel) plane at a time.
  for (u64 unit = blockIdx.x; unit < p.images * p.c; unit += gridDim.x) {
    const u64 img = unit / p.c;
    const u32 ch = (u32)(unit % p.c);
    const u32* e = row + img * words;
    if (e[0] == 0) continue;  // switched off; the same for every thread of the block
    float* x = p.x + unit * plane;  // (s, s) of x (S·B, C, s, s)
    for (u32 i = threadIdx.x; i < plane; i += blockDim.x) buf[0][i] = x[i];
    __syncthreads();
    u32 cur = 0;
    for (u32 st = 0; st < p.stages; ++st) {
      const u32* d = e + 1 + st * TV_DRAW_WORDS;
      float* a = buf[cur];
      float* b = buf[cur ^ 1];
      const u32 kind = p.kind[st];
      if (kind == TV_RRC) {
        // Crop box (top, left, bh, bw) resized to s × s: width pass a → b into (bh, s), then
        // height pass b → a into (s, s); a pass whose size does not change is a plain copy.
        const u32 top = d[0], left = d[1], bh = d[2], bw = d[3];
        for (u32 i = threadIdx.x; i < bh * s; i += blockDim.x) {
          const u32 y = i / s, o = i % s;
          const float* src = a + (top + y) * s + left;  // row y of the box
          b[i] = bw == s ? src[o] : up_sample(src, 1, bw, s, o);
        }
        __syncthreads();
        for (u32 i = threadIdx.x; i < plane; i += blockDim.x) {
          const u32 y = i / s, o = i % s;
          const float* src = b + o;  // column o of (bh, s)
          a[i] = bh == s ? src[y * s] : up_sample(src, s, bh, s, y);
        }
        __syncthreads();
        continue;  // the result is back in buf[cur]
      }
      for (u32 i = threadIdx.x; i < plane; i += blockDim.x) {
        const u32 y = i / s, o = i % s;
        if (kind == TV_FLIP) {
          b[i] = d[0] ? a[y * s + (s - 1 - o)] : a[i];
        } else if (kind == TV_CROP) {
          // out[y, o] = in[y + top − padding, o + left − padding], 0 outside the image.
          const long long sy = (long long)y + d[0] - p.padding[st];
          const long long sx = (long long)o + d[1] - p.padding[st];
          const bool in = sy >= 0 && sy < (long long)s && sx >= 0 && sx < (long long)s;
          b[i] = in ? a[(u32)sy * s + (u32)sx] : 0.0f;
        } else {  // TV_NORM: torchvision's sub_ then div_, in f32
          b[i] = sub_rn(a[i], p.mean[st][ch]) / p.std[st][ch];
        }
      }
      __syncthreads();
      cur ^= 1;
    }
    for (u32 i = threadIdx.x; i < plane; i += blockDim.x) x[i] = buf[cur][i];
    __syncthreads();  // buf is reused by the block's next plane
  }
}

#ifdef DDR_HOST_EMU
extern "C" void emu_aug_tv(const unsigned* grid, const unsigned* block, const void* params) {
  ddr_emu::launch(aug_tv, grid, block, params);
}
#endif
