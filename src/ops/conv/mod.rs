//! 3×3 convolution with bias, stride 1, batched over students and images.
//! `cpu_fast`: the GEMM-based CPU path (im2col or Winograd + gemm) the CPU backend dispatches to.

pub mod cpu_fast;
mod winograd_fast;

#[cfg(test)]
mod tests_fast;
