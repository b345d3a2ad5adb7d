#!/usr/bin/env bash
# Renders a ddr-fast HTML report to a PNG with headless Chromium, for the README's picture.
# Usage: tools/report-screenshot.sh REPORT.html OUT.png [WIDTH,HEIGHT]   (default 1200,1900)
# Needs the Debian package `chromium` (apt-get update && apt-get install chromium). The report
# is self-contained, so the browser loads nothing but the file; the PNG is the top of the page
# (scores, decomposition, curves) at the given window size.
set -euo pipefail
html=${1:?usage: tools/report-screenshot.sh REPORT.html OUT.png [WIDTH,HEIGHT]}
png=${2:?usage: tools/report-screenshot.sh REPORT.html OUT.png [WIDTH,HEIGHT]}
size=${3:-1200,1900}
browser=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
if [ -z "$browser" ]; then
  echo "error: no Chromium on PATH (Debian/Ubuntu: apt-get install chromium)" >&2
  exit 1
fi
[ -f "$html" ] || { echo "error: $html: no such file" >&2; exit 1; }
src=$(realpath "$html")
dst=$(realpath -m "$png")
mkdir -p "$(dirname "$dst")"
# --no-sandbox: containers and CI run as root, where Chromium's sandbox refuses to start.
# A private profile folder keeps a user's browser profile out of it.
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
"$browser" --headless --no-sandbox --disable-gpu --hide-scrollbars --user-data-dir="$profile" \
  --window-size="$size" --screenshot="$dst" "file://$src" 2>/dev/null
[ -s "$dst" ] || { echo "error: Chromium wrote no screenshot to $dst" >&2; exit 1; }
echo "wrote $dst ($(stat -c %s "$dst") bytes)"
