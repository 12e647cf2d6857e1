#!/usr/bin/env bash
# Regenerates the Go code of the plugin API (proto/gen) from proto/bai/...
# With --check, regenerates into a temp dir and fails if the committed code
# differs. Uses protoc (Debian's protobuf-compiler) with the pinned local
# plugins, so CI needs no buf; buf.gen.yaml drives the same plugins for
# `task proto:buf` (buf stamps a different version comment, nothing else).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:$(go env GOPATH)/bin"
out=proto/gen
if [ "${1:-}" = "--check" ]; then
  out=$(mktemp -d)
  trap 'rm -rf "$out"' EXIT
fi
protos=$(cd proto && find bai -name '*.proto' | sort)
(cd proto && protoc -I . \
  --go_out="$( [ "${1:-}" = "--check" ] && echo "$out" || echo gen)" --go_opt=paths=source_relative \
  --go-grpc_out="$( [ "${1:-}" = "--check" ] && echo "$out" || echo gen)" --go-grpc_opt=paths=source_relative \
  $protos)
if [ "${1:-}" = "--check" ]; then
  if ! diff -r "$out" proto/gen >/dev/null; then
    diff -r "$out" proto/gen | head -40 >&2
    echo "proto/gen is out of date: run scripts/proto.sh (task proto) and commit" >&2
    exit 1
  fi
  echo "proto/gen is current"
fi
