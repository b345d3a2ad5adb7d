//! The CPU backend: rayon over students and images, the numerical reference for every other device.

/// Runs every op on the CPU with rayon's global pool.
#[derive(Clone, Debug, Default)]
pub struct CpuBackend;
