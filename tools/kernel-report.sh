#!/usr/bin/env bash
# Static kernel report without a GPU: installs cuobjdump and nvdisasm from NVIDIA's PyPI wheels
# (as tools/install-cuda-toolchain.sh does nvcc), then reads the SASS of the fatbins build.rs wrote
# and prints, per kernel and architecture, registers, spills, shared memory and each main loop's
# other instructions per tensor-core instruction and its 128-bit LDGSTS count (which tells a
# kernel's 16-byte and 4-byte load loops apart; tools/kernel_report.py says how loops are found).
# Exit status 1 on a spill, a loop hiding inside a main loop, or a ratio above
# tools/kernel-report-thresholds.txt.
#
# Usage: tools/kernel-report.sh [FATBIN_DIR] [--tsv OUT]
#   FATBIN_DIR defaults to the newest target/*/build/ddr-fast-*/out holding conv.fatbin (build the
#   crate with nvcc first: `cargo build --release` with NVCC set, as .ci/run does).
# Cache: $DDR_CUDA_TOOLCHAIN or <repo>/.cuda-toolchain (git-ignored), beside the nvcc tree.
#
# Version: the cu13 wheels of these two tools start at 13.2.51 (there is no 13.0.x wheel, the
# version of our nvcc); a newer disassembler reads older cubins, so 13.2.51, the closest, is pinned.
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
version="13.2.51"
cache="${DDR_CUDA_TOOLCHAIN:-$repo/.cuda-toolchain}"
mkdir -p "$cache"
cache="$(cd "$cache" && pwd)"
bindir="$cache/binutils-$version/nvidia/cu13/bin"

if [[ ! -x "$bindir/cuobjdump" || ! -x "$bindir/nvdisasm" ]]; then
  if command -v pip3 >/dev/null 2>&1; then pip_cmd=(pip3); else pip_cmd=(python3 -m pip); fi
  dl="$cache/binutils-wheels"
  mkdir -p "$dl"
  echo "kernel-report: downloading cuobjdump and nvdisasm $version into $dl" >&2
  "${pip_cmd[@]}" download --quiet --no-deps --only-binary=:all: \
    --platform manylinux2014_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_28_x86_64 \
    --python-version 3.12 --dest "$dl" \
    "nvidia-cuda-cuobjdump==$version" "nvidia-cuda-nvdisasm==$version" >&2
  for w in "$dl"/*.whl; do
    python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])' \
      "$w" "$cache/binutils-$version"
  done
  chmod +x "$bindir"/* && rm -rf "$dl"
fi

dir=""
args=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --tsv) args+=(--tsv "$2"); shift 2 ;;
    *) dir="$1"; shift ;;
  esac
done
if [[ -z "$dir" ]]; then
  newest="$(ls -t "$repo"/target/*/build/ddr-fast-*/out/conv.fatbin 2>/dev/null | head -1 || true)"
  if [[ -z "$newest" ]]; then
    echo "kernel-report: no conv.fatbin under target/*/build/ddr-fast-*/out; build with nvcc first" >&2
    exit 2
  fi
  dir="$(dirname "$newest")"
fi
shopt -s nullglob
fatbins=("$dir"/*.fatbin)
if [[ ${#fatbins[@]} -eq 0 ]]; then
  echo "kernel-report: no .fatbin files in $dir" >&2
  exit 2
fi
echo "kernel-report: $dir (cuobjdump/nvdisasm $version)"
exec python3 "$repo/tools/kernel_report.py" "$bindir" "$repo/tools/kernel-report-thresholds.txt" \
  "${fatbins[@]}" "${args[@]}"
