#!/usr/bin/env bash
# Assembles a CUDA 13.0 nvcc without root, from NVIDIA's PyPI wheels, so build.rs can compile the
# kernels in cuda/ on any Linux x86_64 machine (CI included, no GPU needed). The wheels unzip into one
# `nvidia/cu13/` tree (bin, nvvm, include, lib); gcc on PATH is the host compiler.
#
# Usage: tools/install-cuda-toolchain.sh [CACHE_DIR]      (or DDR_CUDA_TOOLCHAIN=CACHE_DIR)
# Default cache: <repo>/.cuda-toolchain (git-ignored). Idempotent: a fast no-op when already built.
# The last line printed is the absolute path of nvcc; build.rs also looks in the default cache.
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
cache="${1:-${DDR_CUDA_TOOLCHAIN:-$repo/.cuda-toolchain}}"
mkdir -p "$cache"
cache="$(cd "$cache" && pwd)"
root="$cache/cu13"
nvcc="$root/bin/nvcc"
stamp="$root/.complete-13.0.88"

# Pinned versions: the nvcc, nvvm (cicc/libdevice), crt headers and runtime headers must agree.
wheels=(
  "nvidia-cuda-nvcc==13.0.88"
  "nvidia-nvvm==13.0.88"
  "nvidia-cuda-crt==13.0.88"
  "nvidia-cuda-runtime==13.0.88"
  "nvidia-cuda-cccl==13.0.85"
)

if [[ -f "$stamp" && -x "$nvcc" ]]; then
  echo "$nvcc"
  exit 0
fi

pip_cmd=()
if command -v pip3 >/dev/null 2>&1; then pip_cmd=(pip3)
elif command -v pip >/dev/null 2>&1; then pip_cmd=(pip)
elif command -v python3 >/dev/null 2>&1; then pip_cmd=(python3 -m pip)
else
  echo "install-cuda-toolchain: need pip (pip3, pip or python3 -m pip) to fetch the nvidia wheels" >&2
  exit 1
fi
if ! command -v unzip >/dev/null 2>&1 && ! command -v python3 >/dev/null 2>&1; then
  echo "install-cuda-toolchain: need unzip or python3 to unpack the wheels" >&2
  exit 1
fi

dl="$cache/wheels"
mkdir -p "$dl"
echo "install-cuda-toolchain: downloading ${wheels[*]} into $dl" >&2
"${pip_cmd[@]}" download --quiet --no-deps --only-binary=:all: \
  --platform manylinux2014_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_28_x86_64 \
  --python-version 3.12 --dest "$dl" "${wheels[@]}" >&2

# Unpack all wheels into one staging dir; each wheel holds nvidia/cu13/<bin|include|nvvm|lib>.
stage="$cache/stage.$$"
rm -rf "$stage"
mkdir -p "$stage"
for w in "$dl"/*.whl; do
  if command -v unzip >/dev/null 2>&1; then
    unzip -q -o "$w" -d "$stage"
  else
    python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])' "$w" "$stage"
  fi
done
src="$stage/nvidia/cu13"
if [[ ! -f "$src/bin/nvcc" ]]; then
  echo "install-cuda-toolchain: the wheels did not contain nvidia/cu13/bin/nvcc (layout changed?)" >&2
  exit 1
fi
rm -rf "$root"
mv "$src" "$root"
rm -rf "$stage"
# zip does not keep the executable bit reliably; nvcc runs ptxas, fatbinary, cicc, ... itself.
chmod +x "$root"/bin/* "$root"/nvvm/bin/* 2>/dev/null || true
# nvcc looks for the CUDA runtime library dir (lib64) next to bin when linking; we only emit fatbins,
# but an empty lib64 keeps its default nvcc.profile happy.
[[ -e "$root/lib64" ]] || ln -s lib "$root/lib64" 2>/dev/null || mkdir -p "$root/lib64"

# Smoke test: one tiny kernel to a fatbin, so a broken toolchain fails here and not inside build.rs.
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
cat >"$tmp/t.cu" <<'CU'
extern "C" __global__ void smoke_add(float* x, float a, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) x[i] += a;
}
CU
if ! "$nvcc" -fatbin -arch=sm_80 -o "$tmp/t.fatbin" "$tmp/t.cu" >&2; then
  echo "install-cuda-toolchain: nvcc at $nvcc failed to compile a smoke-test kernel" >&2
  exit 1
fi
touch "$stamp"
rm -rf "$dl"  # the wheels are unpacked; keeping them would double the cache's size
echo "install-cuda-toolchain: ready ($(du -sh "$root" | cut -f1))" >&2
echo "$nvcc"
