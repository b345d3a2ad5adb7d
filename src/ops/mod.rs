//! One folder per op family: shapes, the CPU reference, the CUDA launcher, and their tests.

pub mod conv;
pub mod scratch;
