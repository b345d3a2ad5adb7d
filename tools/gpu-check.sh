#!/usr/bin/env bash
# The one command to run on a GPU machine: checks the CUDA backend end to end and writes a short
# summary (GPU, driver, pass/fail per suite, images/s, students/hour) to $OUT/summary.md when OUT
# is set, else to stdout. Budget: under 8 minutes on an H100 (each step has its own timeout).
#
#   tools/gpu-check.sh                 build here with cargo (needs nvcc: see below), then check
#   tools/gpu-check.sh --pack DIR      build on this machine (no GPU needed) and copy the four
#                                      executables into DIR (~8 MB stripped), for a GPU machine
#                                      without cargo or nvcc
#   DDR_PREBUILT=DIR tools/gpu-check.sh   check with executables from --pack, no build
#
# Steps: GPU and driver (nvidia-smi) → build → `ddr-fast info --json` (sm_90 embedded, GPU seen)
# → cuda_parity on the GPU (DDR_REQUIRE_GPU=1: no silent emulation) → the golden files through
# the CUDA backend (DDR_GOLDEN_DIR or ../shared/golden) → compute-sanitizer memcheck
# over cuda_parity → racecheck over the shared-memory kernels' tests → throughput benchmark.
# compute-sanitizer comes from PATH, $DDR_SANITIZER, $CUDA_HOME/bin or /usr/local/cuda/bin;
# without it those two suites are reported as skipped, not passed.
set -uo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"
start=$(date +%s)
log_dir="${OUT:-$(mktemp -d)}"
mkdir -p "$log_dir"

# ---- build ---------------------------------------------------------------------------------
# Prints the path of one cargo-built executable from `cargo ... --message-format=json`.
exe_from_json() {
  grep -o '"executable":"[^"]*"' | sed 's/"executable":"//; s/"$//' | grep -v '^$' | tail -1
}

build_all() {
  if [[ -z "${NVCC:-}${CUDA_HOME:-}${CUDA_PATH:-}" ]] && ! command -v nvcc >/dev/null 2>&1 \
    && [[ ! -x "$repo/.cuda-toolchain/cu13/bin/nvcc" ]]; then
    tools/install-cuda-toolchain.sh >&2 || return 1
  fi
  export DDR_REQUIRE_NVCC=1
  # Build with visible diagnostics first, then ask cargo (a no-op rebuild) where each executable is.
  cargo build --release --bin ddr-fast >&2 || return 1
  cargo test --release --test cuda_parity --no-run >&2 || return 1
  cargo test --release --test cuda_golden --no-run >&2 || return 1
  cargo bench --bench cuda_throughput --no-run >&2 || return 1
  cli_bin=$(cargo build --release --bin ddr-fast --message-format=json 2>/dev/null | exe_from_json)
  parity_bin=$(cargo test --release --test cuda_parity --no-run --message-format=json 2>/dev/null | exe_from_json)
  golden_bin=$(cargo test --release --test cuda_golden --no-run --message-format=json 2>/dev/null | exe_from_json)
  bench_bin=$(cargo bench --bench cuda_throughput --no-run --message-format=json 2>/dev/null | exe_from_json)
  [[ -x "$parity_bin" && -x "$golden_bin" && -x "$bench_bin" && -x "$cli_bin" ]]
}

if [[ "${1:-}" == "--pack" ]]; then
  dest="${2:?usage: tools/gpu-check.sh --pack DIR}"
  build_all || { echo "gpu-check: build failed" >&2; exit 1; }
  mkdir -p "$dest"
  cp "$cli_bin" "$dest/ddr-fast"
  cp "$parity_bin" "$dest/cuda_parity"
  cp "$bench_bin" "$dest/cuda_throughput"
  cp "$golden_bin" "$dest/cuda_golden"
  # Debug info is most of their size; a stripped bundle travels more easily (a few MB each).
  if command -v strip >/dev/null 2>&1; then
    strip --strip-debug "$dest/ddr-fast" "$dest/cuda_parity" "$dest/cuda_throughput" "$dest/cuda_golden"
  fi
  echo "gpu-check: packed ddr-fast, cuda_parity, cuda_golden, cuda_throughput into $dest" >&2
  exit 0
fi

declare -A result   # suite → PASS / FAIL / SKIP (reason)
order=()
record() { order+=("$1"); result["$1"]="$2"; }

# Runs one suite with a timeout, its output in $log_dir/<name>.log; records PASS or FAIL.
run_suite() {
  local name="$1" limit="$2"
  shift 2
  if timeout "$limit" "$@" >"$log_dir/$name.log" 2>&1; then
    record "$name" "PASS"
  else
    local rc=$?
    if [[ $rc -eq 124 ]]; then record "$name" "FAIL (timed out after ${limit}s)"
    else record "$name" "FAIL (exit $rc, see $name.log)"; fi
  fi
}

# ---- the machine -----------------------------------------------------------------------------
gpu="unknown"; driver="unknown"
if command -v nvidia-smi >/dev/null 2>&1; then
  gpu=$(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null | head -1)
  driver=$(nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null | head -1)
fi

# ---- build (or take the packed executables) --------------------------------------------------
if [[ -n "${DDR_PREBUILT:-}" ]]; then
  cli_bin="$DDR_PREBUILT/ddr-fast"; parity_bin="$DDR_PREBUILT/cuda_parity"
  golden_bin="$DDR_PREBUILT/cuda_golden"; bench_bin="$DDR_PREBUILT/cuda_throughput"
  if [[ -x "$cli_bin" && -x "$parity_bin" && -x "$golden_bin" && -x "$bench_bin" ]]; then
    record build "SKIP (prebuilt in $DDR_PREBUILT)"
  else
    record build "FAIL (DDR_PREBUILT=$DDR_PREBUILT lacks ddr-fast, cuda_parity, cuda_golden, cuda_throughput)"
  fi
elif build_all >"$log_dir/build.log" 2>&1; then
  record build "PASS"
else
  record build "FAIL (see build.log)"
fi

if [[ "${result[build]}" == FAIL* ]]; then
  for s in info cuda_parity cuda_golden memcheck racecheck benchmark; do record "$s" "SKIP (no build)"; done
else
  # ---- info: the kernels are embedded for sm_90 and the GPU is visible ------------------------
  if timeout 60 "$cli_bin" info --json >"$log_dir/info.json" 2>"$log_dir/info.log" \
    && grep -q '"sm_90"' "$log_dir/info.json" && ! grep -q '"gpus": \[\]' "$log_dir/info.json"; then
    record info "PASS"
  else
    record info "FAIL (sm_90 not embedded or no GPU seen; see info.json)"
  fi

  # ---- parity on the GPU ----------------------------------------------------------------------
  export DDR_REQUIRE_GPU=1
  run_suite cuda_parity 120 "$parity_bin" --test-threads=4
  grep -h "cuda_parity: running" "$log_dir/cuda_parity.log" | head -1 >"$log_dir/parity_device.txt" || true

  # ---- the PyTorch golden files through the CUDA backend (3xTF32) ------------------------------
  golden_dir="${DDR_GOLDEN_DIR:-}"
  for d in "$repo/../shared/golden" "$repo/shared/golden" "$repo/../../shared/golden"; do
    [[ -z "$golden_dir" && -d "$d" ]] && golden_dir="$d"
  done
  if [[ -n "$golden_dir" ]]; then
    DDR_GOLDEN_DIR="$golden_dir" run_suite cuda_golden 90 "$golden_bin"
  else
    record cuda_golden "SKIP (no golden folder; set DDR_GOLDEN_DIR)"
  fi

  # ---- compute-sanitizer ------------------------------------------------------------------------
  san="${DDR_SANITIZER:-}"
  for c in "$(command -v compute-sanitizer 2>/dev/null)" "${CUDA_HOME:-/nonexistent}/bin/compute-sanitizer" \
    /usr/local/cuda/bin/compute-sanitizer; do
    [[ -z "$san" && -n "$c" && -x "$c" ]] && san="$c"
  done
  if [[ -n "$san" ]]; then
    # One test thread: the sanitizer serialises launches anyway, and its report stays readable.
    run_suite memcheck 150 "$san" --tool memcheck --error-exitcode 86 --leak-check no \
      "$parity_bin" --test-threads=1
    # racecheck only matters for shared memory: the conv GEMM tiles and the block reductions.
    run_suite racecheck 150 "$san" --tool racecheck --racecheck-report hazard --error-exitcode 86 \
      "$parity_bin" --test-threads=1 conv norm losses count_correct
  else
    record memcheck "SKIP (compute-sanitizer not found; set DDR_SANITIZER)"
    record racecheck "SKIP (compute-sanitizer not found; set DDR_SANITIZER)"
  fi

  # ---- throughput -----------------------------------------------------------------------------
  DDR_BENCH_DEVICE=cuda DDR_BENCH_STUDENTS="${DDR_BENCH_STUDENTS:-16}" DDR_BENCH_BATCH=256 \
    DDR_BENCH_STEPS=20 DDR_BENCH_WARMUP=3 run_suite benchmark 120 "$bench_bin"
fi

# ---- summary ---------------------------------------------------------------------------------
bench_line=$(grep -h '^RESULT' "$log_dir/benchmark.log" 2>/dev/null | tail -1)
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$bench_line"; }
elapsed=$(( $(date +%s) - start ))
summary=$(
  echo "# ddr-fast GPU check"
  echo
  echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo "- GPU: $gpu; driver: $driver"
  echo "- parity device: $(cat "$log_dir/parity_device.txt" 2>/dev/null || echo unknown)"
  echo "- wall time: ${elapsed}s"
  echo
  echo "| suite | result |"
  echo "|---|---|"
  for s in "${order[@]}"; do echo "| $s | ${result[$s]} |"; done
  echo
  if [[ -n "$bench_line" ]]; then
    echo "Throughput (ConvNet-3, 32 px, B=256, S=$(field students), TF32 convs): $(field images_per_s) images/s," \
      "$(field ms_per_step) ms/step, ≈ $(field students_per_hour) CIFAR-10 IPC-10 students/hour"
  else
    echo "Throughput: not measured (benchmark ${result[benchmark]:-not run})"
  fi
  echo
  echo "Logs: $log_dir"
)
if [[ -n "${OUT:-}" ]]; then
  echo "$summary" >"$OUT/summary.md"
fi
echo "$summary"

for s in "${order[@]}"; do
  [[ "${result[$s]}" == FAIL* ]] && exit 1
done
exit 0
