//! Build script: turns the CUDA kernels in cuda/*.cu into what the binary embeds.
//!
//! 1. With nvcc (found via `NVCC`, `CUDA_HOME`/`CUDA_PATH`, the cache filled by
//!    tools/install-cuda-toolchain.sh, then `PATH`): one fatbin per .cu file (SASS for sm_80, sm_86,
//!    sm_89, sm_90 plus sm_90 PTX for newer cards) in OUT_DIR. A compile error fails the build.
//!    `ptxas -v` output is checked for register spills: a warning for any kernel, an error for the
//!    kernels listed in HOT_KERNELS.
//! 2. Always (no nvcc needed): the same .cu files compiled by the host C++ compiler against
//!    cuda/host_emu.h into a static library, the emulated device CI tests the kernels with.
//! 3. OUT_DIR/kernels.rs: one `include_bytes!` constant per file and the lists of kernels and
//!    architectures, included by src/backend/cuda/embedded.rs.
//!
//! Steps 1 and 2 are cached per .cu file: a file is recompiled only when it, a header it includes,
//! the compiler or the flags changed (see `fingerprint`), so editing one kernel file costs one
//! nvcc run, not all of them.
//!
//! Without nvcc the crate still builds; the CUDA backend then reports how to get the kernels.
//! Set DDR_REQUIRE_NVCC=1 (CI does) to make a missing nvcc a build error instead.

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Real architectures compiled to SASS; PTX for the newest is embedded too so later GPUs JIT it.
const ARCHS: &[&str] = &["sm_80", "sm_86", "sm_89", "sm_90"];
const PTX_ARCH: &str = "compute_90";

/// Kernels that dominate training time: a register spill in one of these fails the build.
const HOT_KERNELS: &[&str] = &[
    "conv3x3_forward_tf32x3",
    "conv3x3_forward_tf32",
    "conv3x3_backward_input_tf32x3",
    "conv3x3_backward_input_tf32",
    "conv3x3_backward_weight_tf32x3",
    "conv3x3_backward_weight_tf32",
    // The test passes' forwards (cuda/conv_bf16.cu): bf16 m16n8k16 and the wide TF32 first layer.
    "conv3x3_forward_bf16",
    "conv3x3_forward_norm_bf16",
    "conv3x3_forward_norm_wide_tf32",
    "norm_relu_pool_forward",
    "norm_relu_pool_backward",
    "optimizer_step",
    // The eval-mode block that never stores y (cuda/conv_eval.cu): every test-pass conv.
    "conv3x3_eval_direct_tf32",
    "conv3x3_eval_direct_bf16",
    // The layer-list students' general conv (cuda/conv2d.cu).
    "conv2d_forward_tf32x3",
    "conv2d_forward_tf32",
    "conv2d_backward_input_tf32x3",
    "conv2d_backward_input_tf32",
    "conv2d_backward_weight_tf32x3",
    "conv2d_backward_weight_tf32",
    // The layer-list ops of the non-ConvNet students (cuda/layers.cu): every step, every layer.
    "norm_layer_forward",
    "norm_layer_backward",
    "norm_layer_backward_params",
    "relu_forward",
    "relu_backward",
    "pool_forward",
    "pool_backward",
    // custom_train_trans per image, every step of an image-folder set (cuda/aug_tv.cu).
    "aug_tv",
    // The bf16 eval block of small planes, y in registers (cuda/conv_eval_plane.cu).
    "conv3x3_eval_plane_bf16",
];

fn main() {
    let manifest =
        PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let cuda_dir = manifest.join("cuda");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=cuda");
    for var in [
        "NVCC",
        "CUDA_HOME",
        "CUDA_PATH",
        "DDR_CUDA_TOOLCHAIN",
        "DDR_REQUIRE_NVCC",
        "PATH",
    ] {
        println!("cargo:rerun-if-env-changed={var}");
    }

    let sources = cu_sources(&cuda_dir);
    for s in &sources {
        println!("cargo:rerun-if-changed={}", s.display());
    }
    for entry in fs::read_dir(&cuda_dir).expect("cuda/ exists").flatten() {
        println!("cargo:rerun-if-changed={}", entry.path().display());
    }

    build_emulator(&cuda_dir, &out, &sources);

    let nvcc = find_nvcc(&manifest);
    let mut fatbins = Vec::new();
    let mut nvcc_note = String::new();
    match &nvcc {
        Some(nvcc) => {
            nvcc_note = nvcc_version(nvcc);
            fatbins = compile_fatbins(nvcc, &nvcc_note, &cuda_dir, &out, &sources);
        }
        None => {
            if env::var("DDR_REQUIRE_NVCC").is_ok_and(|v| v == "1") {
                panic!(
                    "DDR_REQUIRE_NVCC=1 but no nvcc was found (NVCC, CUDA_HOME, CUDA_PATH, \
                     .cuda-toolchain, PATH); run tools/install-cuda-toolchain.sh"
                );
            }
            println!(
                "cargo:warning=nvcc not found: building without GPU kernels (the emulated device still \
                 works). Run tools/install-cuda-toolchain.sh, then rebuild."
            );
        }
    }
    write_manifest(&out, &sources, &fatbins, &nvcc_note);
}

/// Every cuda/*.cu, sorted so the generated file is stable.
fn cu_sources(cuda_dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(cuda_dir)
        .expect("cuda/ exists next to Cargo.toml")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "cu"))
        .collect();
    v.sort();
    v
}

fn stem(p: &Path) -> String {
    p.file_stem()
        .expect("a .cu file has a name")
        .to_string_lossy()
        .into_owned()
}

/// The `extern "C" __global__ void NAME(` kernels of a file, in source order.
fn kernels_in(src: &Path) -> Vec<String> {
    let text = fs::read_to_string(src).expect("readable .cu file");
    let mut names = Vec::new();
    for line in text.lines() {
        let line = line.trim_start();
        if !line.starts_with("extern \"C\" __global__") {
            continue;
        }
        let Some(open) = line.find('(') else { continue };
        // The name is the last word before the first '(' (after __launch_bounds__(...) if any).
        let head = &line[..open];
        let head = if head.ends_with("__launch_bounds__") {
            let close = line.find(')').expect("__launch_bounds__(...) closes");
            let rest = &line[close + 1..];
            let open2 = rest.find('(').expect("kernel parameter list");
            rest[..open2].to_string()
        } else {
            head.to_string()
        };
        if let Some(name) = head.split_whitespace().last() {
            names.push(name.to_string());
        }
    }
    names
}

fn build_emulator(cuda_dir: &Path, out: &Path, sources: &[PathBuf]) {
    // One translation unit per kernel file: the emulator header, then the unchanged .cu source.
    // Each becomes its own static library so that an unchanged file is not recompiled.
    let emu_dir = out.join("emu");
    fs::create_dir_all(&emu_dir).expect("create OUT_DIR/emu");
    let compiler = env::var("CXX").unwrap_or_default();
    for src in sources {
        let lib = format!("ddr_cuda_emu_{}", stem(src));
        let tu = emu_dir.join(format!("emu_{}.cpp", stem(src)));
        let text = format!("#include \"host_emu.h\"\n#include \"{}\"\n", src.display());
        let key = fingerprint(
            cuda_dir,
            &[src.clone(), cuda_dir.join("host_emu.h")],
            &format!("emu c++20 O2 {compiler} {text}"),
        );
        let archive = out.join(format!("lib{lib}.a"));
        let key_file = emu_dir.join(format!("{lib}.key"));
        if !(archive.is_file() && fs::read_to_string(&key_file).ok() == Some(key.clone())) {
            fs::write(&tu, &text).expect("write emulator translation unit");
            cc::Build::new()
                .cpp(true)
                .std("c++20")
                .opt_level(2)
                .define("DDR_HOST_EMU", None)
                .include(cuda_dir)
                .flag_if_supported("-pthread")
                .warnings(true)
                .extra_warnings(true)
                .cargo_metadata(false)
                .file(&tu)
                .compile(&lib);
            fs::write(&key_file, &key).expect("write emulator cache key");
        }
        println!("cargo:rustc-link-lib=static={lib}");
    }
    println!("cargo:rustc-link-search=native={}", out.display());
    let cpp_stdlib = if env::var("TARGET").is_ok_and(|t| t.contains("apple")) {
        "c++"
    } else {
        "stdc++"
    };
    println!("cargo:rustc-link-lib={cpp_stdlib}");
    println!("cargo:rustc-link-lib=pthread");
}

/// A key for "this file needs recompiling": a hash of `roots`, every header they include (the
/// quoted `#include "..."` lines, followed transitively inside cuda/) and `settings` (compiler,
/// flags). Stored next to the output; an unchanged key means the stored output is still right.
fn fingerprint(cuda_dir: &Path, roots: &[PathBuf], settings: &str) -> String {
    let mut hasher = std::hash::DefaultHasher::new();
    settings.hash(&mut hasher);
    let mut seen: Vec<PathBuf> = Vec::new();
    let mut todo: Vec<PathBuf> = roots.to_vec();
    while let Some(path) = todo.pop() {
        if seen.contains(&path) {
            continue;
        }
        let text = fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("could not read {}: {e}", path.display()));
        path.hash(&mut hasher);
        text.hash(&mut hasher);
        for line in text.lines() {
            let Some(rest) = line.trim_start().strip_prefix("#include \"") else {
                continue;
            };
            if let Some(name) = rest.split('"').next() {
                let header = cuda_dir.join(name);
                if header.is_file() {
                    todo.push(header);
                }
            }
        }
        seen.push(path);
    }
    format!("{:016x}\n", hasher.finish())
}

fn find_nvcc(manifest: &Path) -> Option<PathBuf> {
    let exe = |p: PathBuf| p.is_file().then_some(p);
    if let Ok(p) = env::var("NVCC") {
        return exe(PathBuf::from(p));
    }
    for var in ["CUDA_HOME", "CUDA_PATH"] {
        if let Ok(home) = env::var(var) {
            if let Some(p) = exe(PathBuf::from(home).join("bin/nvcc")) {
                return Some(p);
            }
        }
    }
    let cache = env::var("DDR_CUDA_TOOLCHAIN")
        .map(PathBuf::from)
        .unwrap_or_else(|_| manifest.join(".cuda-toolchain"));
    if let Some(p) = exe(cache.join("cu13/bin/nvcc")) {
        return Some(p);
    }
    env::var_os("PATH").and_then(|path| env::split_paths(&path).find_map(|d| exe(d.join("nvcc"))))
}

fn nvcc_version(nvcc: &Path) -> String {
    let out = Command::new(nvcc).arg("--version").output();
    match out {
        Ok(o) => String::from_utf8_lossy(&o.stdout)
            .lines()
            .find(|l| l.contains("release"))
            .unwrap_or("unknown release")
            .trim()
            .to_string(),
        Err(e) => panic!("{} --version failed: {e}", nvcc.display()),
    }
}

/// Compiles each .cu to OUT_DIR/<stem>.fatbin in parallel; returns the fatbin paths in order.
/// A file whose sources, headers, nvcc and flags are unchanged since the last build keeps its
/// fatbin and ptxas log (so a change to one kernel file recompiles only that file).
fn compile_fatbins(
    nvcc: &Path,
    nvcc_note: &str,
    cuda_dir: &Path,
    out: &Path,
    sources: &[PathBuf],
) -> Vec<PathBuf> {
    let results: Vec<(PathBuf, String)> = std::thread::scope(|scope| {
        let handles: Vec<_> = sources
            .iter()
            .map(|src| scope.spawn(move || compile_one_cached(nvcc, nvcc_note, cuda_dir, out, src)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("nvcc worker thread"))
            .collect()
    });
    let mut fatbins = Vec::new();
    for (fatbin, ptxas_log) in results {
        check_spills(&ptxas_log);
        fatbins.push(fatbin);
    }
    fatbins
}

fn compile_one_cached(
    nvcc: &Path,
    nvcc_note: &str,
    cuda_dir: &Path,
    out: &Path,
    src: &Path,
) -> (PathBuf, String) {
    let cmd = nvcc_command(nvcc, cuda_dir, out, src);
    let key = fingerprint(
        cuda_dir,
        &[src.to_path_buf()],
        &format!("{nvcc_note} {:?}", cmd.get_args().collect::<Vec<_>>()),
    );
    let fatbin = out.join(format!("{}.fatbin", stem(src)));
    let key_file = out.join(format!("{}.fatbin.key", stem(src)));
    let log_file = out.join(format!("{}.ptxas.log", stem(src)));
    if fatbin.is_file() && fs::read_to_string(&key_file).ok() == Some(key.clone()) {
        if let Ok(log) = fs::read_to_string(&log_file) {
            return (fatbin, log);
        }
    }
    let log = run_nvcc(cmd, src);
    fs::write(&log_file, &log).expect("write ptxas log");
    fs::write(&key_file, &key).expect("write nvcc cache key");
    (fatbin, log)
}

fn nvcc_command(nvcc: &Path, cuda_dir: &Path, out: &Path, src: &Path) -> Command {
    let fatbin = out.join(format!("{}.fatbin", stem(src)));
    let mut cmd = Command::new(nvcc);
    cmd.arg("-fatbin")
        .args(["-O3", "-std=c++17", "-Xptxas", "-v", "-I"])
        .arg(cuda_dir);
    for arch in ARCHS {
        let num = &arch[3..];
        cmd.arg(format!("-gencode=arch=compute_{num},code={arch}"));
    }
    let ptx_num = &PTX_ARCH[8..];
    cmd.arg(format!("-gencode=arch=compute_{ptx_num},code={PTX_ARCH}"));
    cmd.arg("-o").arg(&fatbin).arg(src);
    cmd
}

/// Runs nvcc; returns its stderr (the ptxas -v report). A failed compile fails the build.
fn run_nvcc(mut cmd: Command, src: &Path) -> String {
    let output = cmd
        .output()
        .unwrap_or_else(|e| panic!("could not run {:?}: {e}", cmd.get_program()));
    let log = String::from_utf8_lossy(&output.stderr).into_owned();
    if !output.status.success() {
        panic!(
            "nvcc failed on {}:\n{}\n{}\ncommand: {cmd:?}",
            src.display(),
            String::from_utf8_lossy(&output.stdout),
            log
        );
    }
    log
}

/// ptxas -v prints, per kernel and architecture, "Compiling entry function 'NAME' for 'sm_XX'"
/// followed by "N bytes stack frame, N bytes spill stores, N bytes spill loads".
fn check_spills(log: &str) {
    let mut current: Option<(String, String)> = None;
    let mut hot_spills = Vec::new();
    for line in log.lines() {
        if let Some(rest) = line.split("Compiling entry function '").nth(1) {
            let name = rest.split('\'').next().unwrap_or("").to_string();
            let arch = rest
                .split("for '")
                .nth(1)
                .and_then(|r| r.split('\'').next())
                .unwrap_or("")
                .to_string();
            current = Some((name, arch));
        } else if line.contains("spill stores") {
            let spills = line
                .split(',')
                .filter(|part| part.contains("spill"))
                .filter_map(|part| part.split_whitespace().next()?.parse::<u64>().ok())
                .sum::<u64>();
            if spills > 0 {
                let (name, arch) = current.clone().unwrap_or_default();
                println!(
                    "cargo:warning=ptxas: {name} ({arch}) spills registers: {}",
                    line.trim()
                );
                if HOT_KERNELS.contains(&name.as_str()) {
                    hot_spills.push(format!("{name} ({arch}): {}", line.trim()));
                }
            }
        }
    }
    if !hot_spills.is_empty() {
        panic!(
            "register spills in hot kernels (build.rs HOT_KERNELS):\n{}",
            hot_spills.join("\n")
        );
    }
}

fn write_manifest(out: &Path, sources: &[PathBuf], fatbins: &[PathBuf], nvcc_note: &str) {
    let with_nvcc = !fatbins.is_empty();
    let mut s = String::new();
    writeln!(
        s,
        "// Generated by build.rs: the kernel files embedded in this build."
    )
    .unwrap();
    writeln!(s, "pub const BUILT_WITH_NVCC: bool = {with_nvcc};").unwrap();
    writeln!(s, "pub const NVCC_VERSION: &str = {nvcc_note:?};").unwrap();
    let archs: Vec<String> = if with_nvcc {
        ARCHS
            .iter()
            .map(|a| a.to_string())
            .chain([PTX_ARCH.to_string()])
            .collect()
    } else {
        Vec::new()
    };
    writeln!(s, "pub const ARCHITECTURES: &[&str] = &{archs:?};").unwrap();
    // One constant per kernel file, then the table that names them.
    for (i, src) in sources.iter().enumerate() {
        let bytes = match fatbins.get(i) {
            Some(path) => format!("include_bytes!({:?})", path.display().to_string()),
            None => "&[]".to_string(),
        };
        writeln!(
            s,
            "pub const FATBIN_{}: &[u8] = {bytes};",
            stem(src).to_uppercase()
        )
        .unwrap();
    }
    writeln!(s, "pub const MODULES: &[EmbeddedModule] = &[").unwrap();
    for src in sources {
        let file = format!("{}.cu", stem(src));
        let kernels = kernels_in(src);
        let konst = format!("FATBIN_{}", stem(src).to_uppercase());
        writeln!(
            s,
            "    EmbeddedModule {{ file: {file:?}, fatbin: {konst}, kernels: &{kernels:?} }},"
        )
        .unwrap();
    }
    writeln!(s, "];").unwrap();
    let path = out.join("kernels.rs");
    if fs::read_to_string(&path).ok().as_deref() != Some(s.as_str()) {
        fs::write(&path, s).expect("write OUT_DIR/kernels.rs");
    }
}
