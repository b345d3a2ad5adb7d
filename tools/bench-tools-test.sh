#!/usr/bin/env bash
# Checks the benchmark report's tools on the CPU in a few minutes, at tiny sizes, into a temporary
# folder (benches/results is never touched): tools/bench_cohorts.py's argument handling, commands,
# records, RSS fit and skip records, the RSS watch; tools/pytorch_baseline.py at width 4; tools/bench_report.py on
# those records; and, with --gpu-check, tools/gpu-check.sh's cohorts step on a machine without a
# GPU (every CUDA run must come back as a recorded failure, not a hang or a missing line).
#
#   DDR_TORCH_PYTHON=/tmp/fid/venv/bin/python tools/bench-tools-test.sh [--gpu-check]
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"
py="${DDR_TORCH_PYTHON:-python3}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
fail() {
  echo "bench-tools-test: FAIL: $*" >&2
  exit 1
}

# ---- argument handling: unknown sides and sizes are one clear error, exit 2 -------------------
for bad in "--sides foo" "--sizes 1,x" "--sizes 0" "--device cuda --sides vmap+compile+bf16" \
  "--probe-test-batch 50 --sides loop"; do
  # shellcheck disable=SC2086
  if python3 tools/bench_cohorts.py $bad --dry-run >"$tmp/out" 2>&1; then fail "accepted: $bad"; fi
  grep -q "error:" "$tmp/out" || fail "no error message for: $bad"
done
if "$py" tools/pytorch_baseline.py --impls vmap+compile+graphs --device cpu >"$tmp/out" 2>&1; then
  fail "pytorch_baseline accepted CUDA graphs on the CPU"
fi
grep -q "need --device cuda" "$tmp/out" || fail "pytorch_baseline: no reason given for +graphs on the CPU"

# ---- commands: the test chunk shrinks with S on both sides ------------------------------------
python3 tools/bench_cohorts.py --dry-run --sizes 64 --python "$py" >"$tmp/cmds"
grep -q -- "--students 64 .*--test-batch 200" "$tmp/cmds" || fail "ddr-fast at S = 64 should forward 200 test images per student"
[[ $(grep -c "pytorch_baseline.py" "$tmp/cmds") == 4 ]] || fail "expected the 4 PyTorch CPU configurations"
python3 tools/bench_cohorts.py --dry-run --device cuda --sizes 1 --python "$py" | grep -q "vmap+compile+graphs" ||
  fail "the CUDA side should include CUDA graphs"

# ---- tiny runs: records, peak RSS, and a size skipped for memory ------------------------------
res="$tmp/results"
python3 tools/bench_cohorts.py --sizes 1,2 --sides loop,vmap --width 4 --test-images 10 --warmup 1 \
  --repeats 1 --test-repeats 1 --python "$py" --results "$res" 2>"$tmp/log" || fail "tiny runs: $(cat "$tmp/log")"
# A limit below what S = 1 and 2 measured: S = 3 must be skipped with a fitted need, not run.
python3 tools/bench_cohorts.py --sizes 3 --sides loop --width 4 --test-images 10 --python "$py" \
  --results "$res" --max-gib 0.01 2>>"$tmp/log" || fail "skip run: $(cat "$tmp/log")"
# The RSS watch: a run above --max-gib is killed (all its processes) and recorded as such, a
# limit like a skipped size rather than a failure (exit status 0).
python3 tools/bench_cohorts.py --sizes 1 --sides vmap --width 4 --test-images 10 --python "$py" \
  --results "$tmp/killed" --max-gib 0.1 2>>"$tmp/log" || fail "a run killed for memory is not a failure"
grep '"error": "killed' "$tmp/killed/pytorch_baseline.jsonl" | grep -q '"needs_gib"' ||
  fail "the killed run is not recorded as killed with a needs_gib"
pgrep -f -- "--results $tmp/killed" >/dev/null && fail "processes of the killed run are left"
pgrep -f -- "pytorch_baseline.py --device cpu --impls vmap --sizes 1 --test-images 10 --threads 2 --width 4" >/dev/null &&
  fail "the killed run's PyTorch process is left"
python3 - "$res/pytorch_baseline.jsonl" <<'PY' || fail "records: see above"
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
got = {(r["impl"], r["students"]): r for r in recs}
for key in [("loop", 1), ("vmap", 1), ("loop", 2), ("vmap", 2)]:
    r = got.get(key)
    assert r and "error" not in r, f"{key}: {r}"
    assert r["width"] == 4 and r["max_rss_kib"] > 0 and r["train_img_per_s"] > 0 and r["test_img_per_s"] > 0, r
    assert r["n_train_steps"] == 1 and r["n_test_passes"] == 1, r
s3 = got[("loop", 3)]
assert s3.get("skipped") == "memory" and s3["needs_gib"] > 0.01 and "S = 1" in s3["needs_basis"], s3
print("bench-tools-test: records ok:", len(recs))
PY

# ---- the report: width-4 records are test runs and must not reach it --------------------------
python3 tools/bench_report.py --torch "$res/pytorch_baseline.jsonl" --ddr --criterion "$tmp/none" \
  --out "$tmp/REPORT.md" >/dev/null
grep -q "| 1 | not measured here | not measured here |" "$tmp/REPORT.md" || fail "the report used width-4 records"
grep -q "| 1 | not yet measured |" "$tmp/REPORT.md" || fail "GPU rows should say not yet measured"

# ---- gpu-check's cohorts step without a GPU ---------------------------------------------------
if [[ "${1:-}" == --gpu-check ]]; then
  [[ -x target/release/ddr-fast ]] || fail "--gpu-check needs target/release/ddr-fast (cargo build --release)"
  mkdir -p "$tmp/pre"
  ln -s "$repo/target/release/ddr-fast" "$tmp/pre/ddr-fast"
  printf '#!/bin/sh\necho "stand-in: no GPU here" >&2; exit 1\n' >"$tmp/pre/cuda_parity"
  cp "$tmp/pre/cuda_parity" "$tmp/pre/cuda_golden"
  chmod +x "$tmp/pre/cuda_parity" "$tmp/pre/cuda_golden"
  OUT="$tmp/gpu" DDR_PREBUILT="$tmp/pre" DDR_CHECK_GRAPHS=0 DDR_COHORT_SIZES=1 DDR_COHORT_TEST_IMAGES=10 \
    DDR_COHORT_WIDTH=4 DDR_COHORT_RESULTS="$tmp/gpu_results" DDR_TORCH_PYTHON="$py" DDR_COHORT_TIMEOUT=300 \
    tools/gpu-check.sh >/dev/null 2>&1 || true
  grep -q "| cohorts | FAIL" "$tmp/gpu/summary.md" || fail "gpu-check: the cohorts step should fail without a GPU"
  python3 - "$tmp/gpu/results" <<'PY' || fail "gpu-check cohort records"
import json, os, sys
recs = [json.loads(l) for f in ("ddr_fast_bench.jsonl", "pytorch_baseline.jsonl")
        for l in open(os.path.join(sys.argv[1], f))]
sides = sorted(r["impl"] for r in recs)
assert sides == sorted(["ddr-fast", "loop", "vmap", "vmap+compile", "vmap+compile+graphs"]), sides
assert all("error" in r for r in recs), recs
print("bench-tools-test: gpu-check cohorts step ok:", ", ".join(sides), "each recorded as failed")
PY
fi
echo "bench-tools-test: ok"
