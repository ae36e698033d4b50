#!/usr/bin/env bash
# Regenerates Sources/CortadoONNX/Generated/onnx.pb.swift from Sources/CortadoONNX/onnx.proto.
# The generated file is committed, so a normal build needs neither protoc nor SwiftPM's
# protobuf build plugin (whose first build takes ~10 minutes); run this only to change versions.
#
# Versions the committed file was made with:
#   onnx.proto       from the onnx 1.23.2 wheel (PyPI), proto2 (its IR_VERSION is 14; the exporter writes IR 8 = opset 17)
#   protoc           libprotoc 3.21.12 (Debian 12: apt-get install protobuf-compiler)
#   protoc-gen-swift apple/swift-protobuf 1.39.0 (must match Package.swift's SwiftProtobuf)
#
# Usage: bash cluster/gen-onnx-proto.sh [--proto-from-venv]
#   --proto-from-venv  first copy onnx.proto from /opt/cortado-venv's onnx package
set -euo pipefail
cd "$(dirname "$0")/.."
SWIFT_PROTOBUF_VERSION=1.39.0
DIR=Sources/CortadoONNX
WORK=${TMPDIR:-/tmp}/cortado-protoc-gen-swift-$SWIFT_PROTOBUF_VERSION

if [ "${1:-}" = "--proto-from-venv" ]; then
  cp "$(/opt/cortado-venv/bin/python -c 'import onnx, os; print(os.path.join(os.path.dirname(onnx.__file__), "onnx.proto"))')" "$DIR/onnx.proto"
fi
command -v protoc >/dev/null || { echo "gen-onnx-proto: protoc missing: apt-get install -y protobuf-compiler" >&2; exit 2; }

# protoc-gen-swift, built once from the same swift-protobuf release the package depends on.
if [ ! -x "$WORK/.build/release/protoc-gen-swift" ]; then
  rm -rf "$WORK"
  git clone -q --depth 1 --branch "$SWIFT_PROTOBUF_VERSION" https://github.com/apple/swift-protobuf "$WORK"
  (cd "$WORK" && swift build -c release --product protoc-gen-swift)
fi

protoc --plugin=protoc-gen-swift="$WORK/.build/release/protoc-gen-swift" \
       --proto_path="$DIR" --swift_out="$DIR/Generated" --swift_opt=Visibility=Public \
       "$DIR/onnx.proto"
echo "gen-onnx-proto: wrote $DIR/Generated/onnx.pb.swift ($(wc -l < "$DIR/Generated/onnx.pb.swift") lines) with $(protoc --version), protoc-gen-swift $SWIFT_PROTOBUF_VERSION"
