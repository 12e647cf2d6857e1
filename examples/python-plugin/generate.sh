#!/bin/sh
# Generates the Python stubs into gen/ next to this script, from the plugin
# API and the go-plugin and grpc.health.v1 protos in proto/third_party/.
# Needs Debian's python3-grpc-tools (or pip's grpcio-tools); PYTHON picks the
# interpreter (default python3).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
proto=${1:-$here/../../proto}
out=${2:-$here/gen}
mkdir -p "$out"
# The third-party protos are generated as top-level modules (health_pb2,
# grpc_controller_pb2, ...): a gen/grpc/ package would shadow grpcio's.
"${PYTHON:-python3}" -m grpc_tools.protoc -I"$proto/third_party/grpc/health/v1" -I"$proto/third_party/go-plugin" -I"$proto" \
  --python_out="$out" --grpc_python_out="$out" \
  "$proto/bai/plugin/v1/plugin.proto" \
  "$proto/third_party/grpc/health/v1/health.proto" \
  "$proto/third_party/go-plugin/grpc_controller.proto" \
  "$proto/third_party/go-plugin/grpc_stdio.proto" \
  "$proto/third_party/go-plugin/grpc_broker.proto"
