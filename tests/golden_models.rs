//! Parity with PyTorch for every DD-Ranking student network (issue #9 item 4) on the CPU backend:
//! every golden_models file (tests/fixtures/golden_models/, plus `$DDR_GOLDEN_MODELS_DIR`), one
//! line per file. The checker, generic over the backend, is tests/common/golden_models.rs; the
//! CUDA run of the same files is tests/cuda_golden_models.rs.

mod common;

use common::golden_models::{check_golden_models_files, golden_models_files};
use ddr_fast::backend::cpu::CpuBackend;

#[test]
fn golden_models() {
    let files = golden_models_files().unwrap_or_else(|e| panic!("{e}"));
    if let Err(e) =
        check_golden_models_files(&CpuBackend::new(), "golden_models", &files, |_, _| {})
    {
        panic!("{e}");
    }
}
