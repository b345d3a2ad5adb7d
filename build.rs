//! Build script. The CUDA kernels in cuda/ are compiled here once the CUDA backend lands.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
}
