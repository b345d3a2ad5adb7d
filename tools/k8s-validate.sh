#!/usr/bin/env bash
# Validates the `ddr-fast eval --emit k8s` manifest against the Kubernetes API schema, strictly
# (unknown fields are errors), with kubernetes-validate from PyPI: it bundles the JSON schemas of
# every Kubernetes release, so no network beyond the package index is needed (kubeconform's
# release binaries come from GitHub, which CI cannot reach). A deliberately broken copy must
# fail, so a validator that accepts anything fails this script too.
#   tools/k8s-validate.sh [BINARY]     (default target/release/ddr-fast)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${1:-target/release/ddr-fast}"
VERSION=1.37.0   # kubernetes-validate's release and the Kubernetes API version checked against
VENV="${DDR_TOOLS_CACHE:-$HOME/.cache/ddr-fast-tools}/kubernetes-validate-$VERSION"
if [ ! -x "$VENV/bin/kubernetes-validate" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet "kubernetes-validate==$VERSION"
fi
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
for dev in cpu cuda; do
  "$BIN" eval --epochs 2 --device "$dev" --emit k8s --shards 4 > "$TMP/$dev.yaml"
  "$VENV/bin/kubernetes-validate" --strict -k "$VERSION" "$TMP/$dev.yaml"
done
sed 's/completionMode: Indexed/completionModes: Indexed/' "$TMP/cuda.yaml" > "$TMP/broken.yaml"
if "$VENV/bin/kubernetes-validate" --strict -k "$VERSION" --quiet "$TMP/broken.yaml" >/dev/null 2>&1; then
  echo "k8s-validate: a manifest with an unknown field passed: the validator checks nothing" >&2
  exit 1
fi
echo "k8s-validate: the emitted manifests (cpu, cuda) pass Kubernetes $VERSION's schema (strict)"
