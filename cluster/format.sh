#!/usr/bin/env bash
# Formats the Swift sources with swift-format (the toolchain's) by .swift-format (120 columns,
# 4-space indent; the style rules are off, the layout is what is checked). Generated code
# (Sources/CortadoONNX/Generated) is left as protoc-gen-swift wrote it.
#   bash cluster/format.sh           rewrite in place
#   bash cluster/format.sh --check   fail, naming file:line, where the layout differs (CI)
set -euo pipefail
cd "$(dirname "$0")/.."
mapfile -t files < <(find Sources Tests -name '*.swift' -not -path '*/Generated/*' | sort)
if [ "${1:-}" = "--check" ]; then
  swift format lint --strict --parallel "${files[@]}"
  echo "format: ${#files[@]} files follow .swift-format"
else
  swift format -i --parallel "${files[@]}"
fi
