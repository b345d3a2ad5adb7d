#!/usr/bin/env bash
# Builds the Python package (python/: PyO3 extension + the ddr_fast package) with maturin, installs
# it into a fresh virtual environment and runs its pytest suite. The README's test command and
# .ci/run call this after `cargo test --release`.
#
# Usage: tools/python-test.sh [PYTEST ARGS...]      (PYTHON=python3.x to choose the interpreter)
# The venv is target/py-venv, recreated each run. The wheel is built in the workspace's target dir
# with the caller's environment, so the library compiled by `cargo test --release` is reused where
# cargo can (its normal-build variant still compiles once: dev-dependencies change shared features).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"

venv="$repo/target/py-venv"
"${PYTHON:-python3}" -m venv --clear "$venv"
# Not activated: PATH stays as it was, and build.rs reruns (recompiling the kernels) when PATH changes.
py="$venv/bin/python"
"$py" -m pip install --quiet "maturin>=1.5,<2" "pytest>=7" "numpy>=1.22"

rm -rf target/wheels
"$venv/bin/maturin" build --release --manifest-path python/Cargo.toml --interpreter "$py" --out target/wheels
"$py" -m pip install --quiet --no-deps target/wheels/ddr_fast-*.whl
"$py" -c "import ddr_fast; print('ddr_fast', ddr_fast.__version__, 'installed in', '$venv')"

# Run inside python/tests: python/ on sys.path would shadow the installed package with its source
# folder, which has no compiled _core.
cd python/tests
rc=0
"$py" -m pytest -q "$@" || rc=$?
if [[ $rc -eq 5 ]]; then
  echo "error: pytest collected no tests" >&2
  exit 1
fi
exit $rc
