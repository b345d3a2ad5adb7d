#!/usr/bin/env bash
# The one command to run on a GPU machine: checks the CUDA backend end to end and writes a short
# summary (GPU, driver, pass/fail per step, GPU-vs-CPU scores, students/hour) to $OUT/summary.md
# when OUT is set, else to a temporary folder; the summary is also printed. No network needed.
#
#   tools/gpu-check.sh                    build here with cargo (needs nvcc), then check
#   tools/gpu-check.sh --pack DIR         build on this machine (no GPU needed) and copy the three
#                                         executables into DIR, for a GPU machine without cargo/nvcc
#   DDR_PREBUILT=DIR tools/gpu-check.sh   check with the executables from --pack, no build
#
# Steps, each with its own timeout (they sum to 8 minutes; the build is extra, a few minutes):
#   info         `ddr-fast info --json`: sm_90 embedded, the GPU seen                        20 s
#   cuda_parity  every op, CUDA vs CPU, on the GPU (DDR_REQUIRE_GPU=1: no silent emulation)   90 s
#   cuda_golden  the PyTorch golden files through the CUDA backend                           60 s
#   memcheck     compute-sanitizer memcheck over a small `ddr-fast eval --device cuda`        60 s
#   racecheck    compute-sanitizer racecheck (shared memory) over the same eval              60 s
#   lrs_gpu      ../shared/configs/lrs_hard_cifar10_ipc10.yaml on real CIFAR-10, shortened   100 s
#   lrs_cpu      run 0 of the same plan at two of its learning rates with --device cpu         60 s
#                (full-data accuracy taken from lrs_gpu), accuracies compared (rule below)
#   bench        `ddr-fast bench --device cuda --json`: images/s → students/hour             30 s
#   graphs       run 0 of the plan at one rate twice, CUDA graphs on and off                   40 s
#                (DDR_CUDA_GRAPHS=0): students/hour of each (DDR_CHECK_GRAPHS=0 skips it; with it
#                the steps sum to 8 min 40 s)
#   cohorts      benches/REPORT.md's GPU rows: tools/bench_cohorts.py --device cuda runs        600 s
#                `ddr-fast bench --device cuda --json` and tools/pytorch_baseline.py (loop, vmap,
#                vmap+compile, vmap+compile+graphs = CUDA graphs) at each S, one process each,
#                appending to benches/results/{ddr_fast_bench,pytorch_baseline}.jsonl (copies in
#                $OUT/results/); then `python3 tools/bench_report.py` regenerates the report.
#                Knobs: DDR_COHORT_SIZES (1,8,64,256), DDR_COHORT_TEST_IMAGES (10000),
#                DDR_COHORT_SIDES (all), DDR_COHORT_TIMEOUT (600 s for the step),
#                DDR_COHORT_RESULTS (benches/results), DDR_TORCH_PYTHON (python3: the interpreter
#                with torch; without torch only the ddr-fast side runs), DDR_CHECK_COHORTS=0 skips.
#
# Inputs: CIFAR-10 binaries from DDR_CIFAR10_DIR (default ../shared/data/cifar10), the config
# from DDR_CONFIG (default ../shared/configs/lrs_hard_cifar10_ipc10.yaml), golden files from
# DDR_GOLDEN_DIR (default ../shared/golden). The "distilled set" is the first IPC images of each
# class of data_batch_1 (a fixed stand-in: the check compares devices, not methods).
# compute-sanitizer comes from PATH, $DDR_SANITIZER, $CUDA_HOME/bin or /usr/local/cuda/bin;
# without it the two sanitizer steps are reported as skipped, not passed.
set -uo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo" || exit 1
start=$(date +%s)
log_dir="${OUT:-$(mktemp -d)}"
mkdir -p "$log_dir"
log_dir="$(cd "$log_dir" && pwd)"

# ---- the shortened LRS-hard plan -------------------------------------------------------------
# The config's recipe (ConvNet-3, DSA, SGD, step schedule, batch 256, 5 learning rates) with fewer
# epochs, runs and full-data epochs so both devices finish inside their timeouts.
EPOCHS="${DDR_CHECK_EPOCHS:-50}"        # config: 1000
TEST_INTERVAL=10                          # the hard-label default
GPU_RUNS="${DDR_CHECK_RUNS:-2}"           # config: num_eval 5
FULL_EPOCHS="${DDR_CHECK_FULL_EPOCHS:-5}" # config: 1000 (the full-data training of HLR)
CPU_LRS="${DDR_CHECK_CPU_LRS:-0.01,0.05}"  # the CPU trains run 0 at these rates only (4 trainings)
# GPU vs CPU rule: every training the CPU runs (run 0's synthetic and random-subset trainings at
# CPU_LRS: the same subset, seeds and augmentation draws as on the GPU) is matched with the GPU's
# training of the same key, and their accuracies agree within ACC_TOL. The two devices round and
# sum differently (the GPU's defaults: TF32 training GEMMs and bf16 test-pass GEMMs, vs fp32 CPU
# GEMMs), which SGD amplifies over 50 epochs the way a different seed would (the precision study,
# benches/README.md: neither mode moves the accuracy distribution); one IPC-10 ConvNet training's
# seed-to-seed std is about 1 point on CIFAR-10, so 3 points (3 std) is "within noise". The full-data accuracy is excluded: the CPU run
# takes it from the GPU run rather than training 50,000 images on the CPU. Planned CPU cost
# (`eval --dry-run`): 2.6e13 FLOP, ~20 s on 16 cores at the per-core speed benches/README.md measured.
ACC_TOL=0.03

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
  cargo test --release --test cuda_parity --test cuda_golden --no-run >&2 || return 1
  cli_bin=$(cargo build --release --bin ddr-fast --message-format=json 2>/dev/null | exe_from_json)
  parity_bin=$(cargo test --release --test cuda_parity --no-run --message-format=json 2>/dev/null | exe_from_json)
  golden_bin=$(cargo test --release --test cuda_golden --no-run --message-format=json 2>/dev/null | exe_from_json)
  [[ -x "$parity_bin" && -x "$golden_bin" && -x "$cli_bin" ]]
}

if [[ "${1:-}" == "--pack" ]]; then
  dest="${2:?usage: tools/gpu-check.sh --pack DIR}"
  build_all || { echo "gpu-check: build failed" >&2; exit 1; }
  mkdir -p "$dest"
  cp "$cli_bin" "$dest/ddr-fast"
  cp "$parity_bin" "$dest/cuda_parity"
  cp "$golden_bin" "$dest/cuda_golden"
  # Debug info is most of their size; a stripped bundle travels more easily (a few MB each).
  if command -v strip >/dev/null 2>&1; then
    strip --strip-debug "$dest/ddr-fast" "$dest/cuda_parity" "$dest/cuda_golden"
  fi
  echo "gpu-check: packed ddr-fast, cuda_parity, cuda_golden into $dest" >&2
  exit 0
fi

declare -A result # step → PASS / FAIL (why) / SKIP (why)
order=()
record() {
  order+=("$1")
  result["$1"]="$2"
}

# Runs one step with a timeout, its output in $log_dir/<name>.log; records PASS or FAIL.
run_step() {
  local name="$1" limit="$2"
  shift 2
  local rc=0
  timeout "$limit" "$@" >"$log_dir/$name.log" 2>&1 || rc=$?
  if [[ $rc -eq 0 ]]; then
    record "$name" "PASS"
  elif [[ $rc -eq 124 ]]; then
    record "$name" "FAIL (timed out after ${limit}s)"
  else
    record "$name" "FAIL (exit $rc, see $name.log)"
  fi
}

first_dir() {
  for d in "$@"; do
    if [[ -n "$d" && -e "$d" ]]; then
      echo "$d"
      return 0
    fi
  done
  return 1
}

# ---- the machine -----------------------------------------------------------------------------
gpu="unknown"
driver="unknown"
if command -v nvidia-smi >/dev/null 2>&1; then
  gpu=$(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null | head -1)
  driver=$(nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null | head -1)
fi

# ---- build (or take the packed executables) --------------------------------------------------
if [[ -n "${DDR_PREBUILT:-}" ]]; then
  cli_bin="$DDR_PREBUILT/ddr-fast"
  parity_bin="$DDR_PREBUILT/cuda_parity"
  golden_bin="$DDR_PREBUILT/cuda_golden"
  if [[ -x "$cli_bin" && -x "$parity_bin" && -x "$golden_bin" ]]; then
    record build "SKIP (prebuilt in $DDR_PREBUILT)"
  else
    record build "FAIL (DDR_PREBUILT=$DDR_PREBUILT lacks ddr-fast, cuda_parity or cuda_golden)"
  fi
elif build_all >"$log_dir/build.log" 2>&1; then
  record build "PASS"
else
  record build "FAIL (see build.log)"
fi
build_s=$(($(date +%s) - start))

cifar="$(first_dir "${DDR_CIFAR10_DIR:-}" "$repo/../shared/data/cifar10" "$repo/shared/data/cifar10")"
config="$(first_dir "${DDR_CONFIG:-}" "$repo/../shared/configs/lrs_hard_cifar10_ipc10.yaml" \
  "$repo/shared/configs/lrs_hard_cifar10_ipc10.yaml")"
golden_dir="$(first_dir "${DDR_GOLDEN_DIR:-}" "$repo/../shared/golden" "$repo/shared/golden")"

# Writes the stand-in distilled set: the first $2 images of each class of CIFAR-10's data_batch_1
# as a pixel-space safetensors file ($3). Python's standard library only.
make_syn() {
  python3 - "$1" "$2" "$3" <<'PY'
import json, struct, sys
from array import array
cifar, ipc, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
raw = open(f"{cifar}/data_batch_1.bin", "rb").read()
rec = 1 + 3 * 32 * 32
picked = {c: [] for c in range(10)}
for i in range(len(raw) // rec):
    c = raw[i * rec]
    if len(picked[c]) < ipc:
        picked[c].append(raw[i * rec + 1:(i + 1) * rec])
    if all(len(v) == ipc for v in picked.values()):
        break
images, labels = array("f"), array("q")
for c in range(10):
    for img in picked[c]:
        images.extend(b / 255.0 for b in img)
        labels.append(c)
n = 10 * ipc
header = {
    "__metadata__": {"pixel_space": "true"},
    "images": {"dtype": "F32", "shape": [n, 3, 32, 32], "data_offsets": [0, 4 * len(images)]},
    "labels": {"dtype": "I64", "shape": [n], "data_offsets": [4 * len(images), 4 * len(images) + 8 * n]},
}
h = json.dumps(header).encode()
h += b" " * (-len(h) % 8)
with open(out, "wb") as f:
    f.write(struct.pack("<Q", len(h)) + h + images.tobytes() + labels.tobytes())
PY
}

# The cohort step: both sides of benches/REPORT.md on the GPU, appended to the results files.
run_cohorts() {
  local torch_py="${DDR_TORCH_PYTHON:-python3}" sides="${DDR_COHORT_SIDES:-}"
  local results="${DDR_COHORT_RESULTS:-$repo/benches/results}"
  if [[ -z "$sides" ]] && ! "$torch_py" -c 'import torch' >/dev/null 2>&1; then
    sides="ddr-fast" # no torch here: the PyTorch columns stay "not yet measured"
  fi
  local args=(--device cuda --sizes "${DDR_COHORT_SIZES:-1,8,64,256}"
    --test-images "${DDR_COHORT_TEST_IMAGES:-10000}" --ddr-bin "$cli_bin" --python "$torch_py"
    --results "$results" --timeout "${DDR_COHORT_TIMEOUT:-600}")
  [[ -n "$sides" ]] && args+=(--sides "$sides")
  [[ -n "${DDR_COHORT_WIDTH:-}" ]] && args+=(--width "$DDR_COHORT_WIDTH") # tiny PyTorch runs (tests)
  run_step cohorts "${DDR_COHORT_TIMEOUT:-600}" python3 "$repo/tools/bench_cohorts.py" "${args[@]}"
  mkdir -p "$log_dir/results"
  cp "$results"/ddr_fast_bench.jsonl "$results"/pytorch_baseline.jsonl "$log_dir/results/" 2>/dev/null
  if [[ "${result[cohorts]}" == PASS ]]; then
    [[ "$sides" == ddr-fast ]] && result[cohorts]="PASS (ddr-fast only: no torch in $torch_py)"
    if [[ -z "${DDR_COHORT_RESULTS:-}" ]]; then
      python3 "$repo/tools/bench_report.py" --out "$log_dir/REPORT.md" >>"$log_dir/cohorts.log" 2>&1
    fi
  fi
}

if [[ "${result[build]}" == FAIL* ]]; then
  for s in info cuda_parity cuda_golden memcheck racecheck lrs_gpu lrs_cpu bench graphs cohorts; do record "$s" "SKIP (no build)"; done
else
  # ---- info: the kernels are embedded for sm_90 and the GPU is visible ------------------------
  if timeout 20 "$cli_bin" info --json >"$log_dir/info.json" 2>"$log_dir/info.log" &&
    grep -q '"sm_90"' "$log_dir/info.json" && ! grep -q '"gpus": \[\]' "$log_dir/info.json"; then
    record info "PASS"
  else
    record info "FAIL (sm_90 not embedded or no GPU seen; see info.json)"
  fi

  # ---- parity and the golden files on the GPU --------------------------------------------------
  export DDR_REQUIRE_GPU=1
  run_step cuda_parity 90 "$parity_bin" --test-threads=4
  if [[ -n "$golden_dir" ]]; then
    DDR_GOLDEN_DIR="$golden_dir" run_step cuda_golden 60 "$golden_bin"
  else
    record cuda_golden "SKIP (no golden folder; set DDR_GOLDEN_DIR)"
  fi

  if [[ -z "$cifar" || ! -f "$cifar/data_batch_1.bin" ]]; then
    for s in memcheck racecheck lrs_gpu lrs_cpu; do record "$s" "SKIP (no CIFAR-10; set DDR_CIFAR10_DIR)"; done
  else
    make_syn "$cifar" 10 "$log_dir/syn_ipc10.safetensors"
    make_syn "$cifar" 1 "$log_dir/syn_ipc1.safetensors"

    # ---- compute-sanitizer over a small eval (every kernel of a training and a test pass) -------
    san="${DDR_SANITIZER:-}"
    for c in "$(command -v compute-sanitizer 2>/dev/null)" "${CUDA_HOME:-/nonexistent}/bin/compute-sanitizer" \
      /usr/local/cuda/bin/compute-sanitizer; do
      [[ -z "$san" && -n "$c" && -x "$c" ]] && san="$c"
    done
    small_eval=("$cli_bin" eval --device cuda --metric lrs-hard --dataset CIFAR10 --data-dir "$cifar"
      --syn "$log_dir/syn_ipc1.safetensors" --ipc 1 --width 32 --epochs 2 --test-interval 1 --num-eval 1
      --lr-grid 0.01 --eval-full-data false --full-acc 0.5 --no-cache --quiet)
    if [[ -n "$san" ]]; then
      run_step memcheck 60 "$san" --tool memcheck --error-exitcode 86 --leak-check no \
        "${small_eval[@]}" --out "$log_dir/memcheck_out"
      run_step racecheck 60 "$san" --tool racecheck --racecheck-report hazard --error-exitcode 86 \
        "${small_eval[@]}" --out "$log_dir/racecheck_out"
    else
      record memcheck "SKIP (compute-sanitizer not found; set DDR_SANITIZER)"
      record racecheck "SKIP (compute-sanitizer not found; set DDR_SANITIZER)"
    fi

    # ---- the shared LRS-hard config, shortened, on the GPU then (run 0) on the CPU --------------
    if [[ -z "$config" ]]; then
      record lrs_gpu "SKIP (no config; set DDR_CONFIG)"
      record lrs_cpu "SKIP (no config; set DDR_CONFIG)"
    else
      lrs=("$cli_bin" eval --config "$config" --data-dir "$cifar" --syn "$log_dir/syn_ipc10.safetensors"
        --epochs "$EPOCHS" --test-interval "$TEST_INTERVAL" --no-cache --quiet)
      run_step lrs_gpu 100 "${lrs[@]}" --device cuda --num-eval "$GPU_RUNS" --full-epochs "$FULL_EPOCHS" \
        --out "$log_dir/lrs_gpu"
      full_acc=""
      if [[ -f "$log_dir/lrs_gpu/result.json" ]]; then
        full_acc=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["runs"][0]["acc"]["full_hard"])' \
          "$log_dir/lrs_gpu/result.json" 2>/dev/null)
      fi
      if [[ -z "$full_acc" ]]; then
        record lrs_cpu "SKIP (no GPU result to compare with)"
      else
        run_step lrs_cpu 60 "${lrs[@]}" --device cpu --num-eval 1 --lr-grid "$CPU_LRS" --eval-full-data false \
          --full-acc "$full_acc" --out "$log_dir/lrs_cpu"
        if [[ "${result[lrs_cpu]}" == PASS ]]; then
          # Compare run 0 accuracy by accuracy; the verdict replaces lrs_cpu's PASS.
          if python3 - "$log_dir/lrs_gpu/result.json" "$log_dir/lrs_cpu/result.json" "$ACC_TOL" \
            >"$log_dir/compare.txt" 2>&1 <<'PY'; then
import json, sys
gpu, cpu = (json.load(open(p)) for p in sys.argv[1:3])
tol = float(sys.argv[3])
# A training's key is its full description (data, labels, lr, seed, epochs, ...), the same on both
# devices, so the CPU's trainings are matched one by one with the GPU's.
on_gpu = {t["key"]: t for t in gpu["timings"]["trainings"]}
pairs = [(t, on_gpu[t["key"]]) for t in cpu["timings"]["trainings"] if t["key"] in on_gpu]
if not pairs:
    sys.exit("no training in common between the GPU and CPU runs: nothing to compare")
worst = 0.0
for c, g in pairs:
    d = abs(c["acc"] - g["acc"])
    worst = max(worst, d)
    print(f"{c['what']:<48} GPU {100 * g['acc']:6.2f}  CPU {100 * c['acc']:6.2f}  |diff| {100 * d:5.2f} points")
g0, c0 = gpu["runs"][0], cpu["runs"][0]
for s in ("hlr", "ior", "lrs"):
    if s in g0 and s in c0:
        print(f"{s} (run 0; the CPU tunes over fewer rates): GPU {100 * g0[s]:.2f}  CPU {100 * c0[s]:.2f}")
print(f"rule: every shared training's accuracy within {100 * tol:.0f} points; worst {100 * worst:.2f} over {len(pairs)}")
sys.exit(1 if worst > tol else 0)
PY
            result[lrs_cpu]="PASS (run 0 agrees, see compare.txt)"
          else
            result[lrs_cpu]="FAIL (GPU and CPU accuracies differ beyond ${ACC_TOL}, see compare.txt)"
          fi
        fi
      fi
    fi
  fi

  # ---- CUDA graphs on vs off: the same small plan, each step replayed vs launched one by one ----
  if [[ "${DDR_CHECK_GRAPHS:-1}" == 0 ]]; then
    record graphs "SKIP (DDR_CHECK_GRAPHS=0)"
  elif [[ -z "$config" || -z "${full_acc:-}" ]]; then
    record graphs "SKIP (no LRS-hard GPU run to take the plan from)"
  else
    graphs_eval=("$cli_bin" eval --config "$config" --data-dir "$cifar" --syn "$log_dir/syn_ipc10.safetensors"
      --epochs "$EPOCHS" --test-interval "$TEST_INTERVAL" --no-cache --quiet --device cuda --num-eval 1
      --lr-grid 0.01 --eval-full-data false --full-acc "$full_acc")
    run_step graphs 40 bash -c '"$@" --out "$0/graphs_on" && DDR_CUDA_GRAPHS=0 "$@" --out "$0/graphs_off"' \
      "$log_dir" "${graphs_eval[@]}"
  fi

  # ---- throughput ----------------------------------------------------------------------------
  run_step bench 30 "$cli_bin" bench --device cuda --json --students "${DDR_BENCH_STUDENTS:-16}" --batch 256 \
    --repeats 20 --warmup 3

  # ---- cohort benchmarks vs PyTorch: benches/REPORT.md's GPU rows ----------------------------
  if [[ "${DDR_CHECK_COHORTS:-1}" == 0 ]]; then
    record cohorts "SKIP (DDR_CHECK_COHORTS=0)"
  else
    run_cohorts
  fi
fi

# ---- summary ---------------------------------------------------------------------------------
# Students/hour of the config's full recipe (1000 epochs of 100 images at batch 256, a test over
# 10,000 images every 10 epochs), from the bench's training and test throughput (all students of
# a cohort together).
per_hour=""
if [[ "${result[bench]:-}" == PASS ]]; then
  per_hour=$(python3 - "$log_dir/bench.log" <<'PY' 2>/dev/null
import json, sys
text = open(sys.argv[1]).read()
j = json.loads(text[text.index("{"):text.rindex("}") + 1])
train, test = j["train_step_img_per_s"], j["test_img_per_s"]
seconds = 1000 * 100 / train + 100 * 10000 / test
print(f"{3600 / seconds:.0f} (training {train:.0f} img/s, test {test:.0f} img/s, {j['students']} students per cohort)")
PY
  )
fi
measured=""
if [[ -f "$log_dir/lrs_gpu/result.json" ]]; then
  measured=$(python3 -c '
import json, sys
t = json.load(open(sys.argv[1]))["timings"]
print(f"{t[\"ran\"]} trainings in {t[\"train_s\"]:.1f} s of training ({3600 * t[\"ran\"] / max(t[\"train_s\"], 1e-9):.0f}/hour at this shortened recipe)")' \
    "$log_dir/lrs_gpu/result.json" 2>/dev/null)
fi
graphs_line=""
if [[ -f "$log_dir/graphs_on/result.json" && -f "$log_dir/graphs_off/result.json" ]]; then
  graphs_line=$(python3 - "$log_dir/graphs_on/result.json" "$log_dir/graphs_off/result.json" <<'PY' 2>/dev/null
import json, sys
def per_hour(p):
    t = json.load(open(p))["timings"]
    return 3600 * t["ran"] / max(t["train_s"], 1e-9)
on, off = per_hour(sys.argv[1]), per_hour(sys.argv[2])
print(f"graphs on {on:.0f}/hour, off (DDR_CUDA_GRAPHS=0) {off:.0f}/hour: x{on / max(off, 1e-9):.2f}")
PY
  )
fi
elapsed=$(($(date +%s) - start))
summary=$(
  echo "# ddr-fast GPU check"
  echo
  echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo "- GPU: $gpu; driver: $driver"
  echo "- wall time: ${elapsed}s (build ${build_s}s)"
  echo "- parity ran: $(grep -h -m1 'cuda_parity: running' "$log_dir/cuda_parity.log" 2>/dev/null || echo unknown)"
  echo "- plan: $config, $EPOCHS epochs, test every $TEST_INTERVAL, $GPU_RUNS GPU runs, full data $FULL_EPOCHS epochs"
  echo
  echo "| step | result |"
  echo "|---|---|"
  for s in "${order[@]}"; do echo "| $s | ${result[$s]} |"; done
  echo
  [[ -f "$log_dir/compare.txt" ]] && { echo "GPU vs CPU, run 0:"; sed 's/^/    /' "$log_dir/compare.txt"; echo; }
  echo "Students/hour (CIFAR-10 IPC-10, ConvNet-3, the config's 1000 epochs): ${per_hour:-not measured (bench ${result[bench]:-not run})}"
  [[ -n "$measured" ]] && echo "Shortened LRS-hard run on the GPU: $measured"
  echo "CUDA graphs (run 0 at lr 0.01, shortened recipe): ${graphs_line:-not measured (graphs ${result[graphs]:-not run})}"
  [[ -d "$log_dir/results" ]] && echo "Cohort benchmarks vs PyTorch (cohorts: ${result[cohorts]:-not run}): JSON lines in $log_dir/results/$([[ -f "$log_dir/REPORT.md" ]] && echo ", regenerated report $log_dir/REPORT.md")"
  echo
  echo "Logs: $log_dir"
)
echo "$summary" >"$log_dir/summary.md"
echo "$summary"

for s in "${order[@]}"; do
  [[ "${result[$s]}" == FAIL* ]] && exit 1
done
exit 0
