// conv_params.cuh: the launch arguments of the conv3x3 forwards that take a ConvParams /
// ConvNormParams by value (conv_bf16.cu, conv_eval.cu, conv_eval_plane.cu), declared once.
// src/backend/cuda/params.rs mirrors the layout (`#[repr(C)]`): the static_asserts hold the two
// sides to the same sizes. Each kernel file brings the structs into its own namespace with
// `using`. conv.cu keeps its own copy (the training passes; its last field is `unused`).
#pragma once

#include "norm_common.cuh"

namespace ddr_conv {

struct ConvParams {
  const float* x;       // (S, B, cin, h, w), or (B, cin, h, w) shared by all students (x_shared)
  const float* params;  // (S, param_row)
  const float* dy;      // unused by the forwards
  float* out;           // y (S, B, cout, oh, ow); unused by the eval kernels (y is never stored)
  float* grads;         // unused by the forwards
  u64 param_row;
  u64 w_off;  // weight (cout, cin, 3, 3) at params[s * param_row + w_off]
  u64 b_off;  // bias (cout)
  u32 students, batch, cin, cout, h, w, oh, ow, pad;
  u32 k_splits;  // unused by the forwards
  u32 x_shared;  // 1: one x for all students
  u32 wide;      // 1 (with x_shared): one GEMM whose N spans S·cout, grid z = 1 (conv.cu: `unused`)
};
static_assert(sizeof(ConvParams) == 112, "ConvParams must match src/backend/cuda/params.rs");

struct ConvNormParams {
  ConvParams conv;
  NormParams norm;
  NormPartials part;
};
static_assert(sizeof(ConvNormParams) == 296, "ConvNormParams must match src/backend/cuda/params.rs");

}  // namespace ddr_conv
