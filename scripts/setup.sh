#!/usr/bin/env bash
# Installs what building and testing baiagent needs on a Debian/Ubuntu
# machine: system packages (as root, via apt-get) and the pinned protoc
# plugins (via the Go module proxy). Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

PROTOC_GEN_GO_VERSION=v1.36.12
PROTOC_GEN_GO_GRPC_VERSION=v1.6.2
STATICCHECK_VERSION=v0.8.2

need_apt=()
command -v protoc >/dev/null || need_apt+=(protobuf-compiler)
command -v pkg-config >/dev/null || need_apt+=(pkg-config)
pkg-config --exists libzmq 2>/dev/null || need_apt+=(libzmq3-dev)
if ((${#need_apt[@]})); then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: please install: ${need_apt[*]} (apt-get needs root)" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

gobin=$(go env GOPATH)/bin
install_tool() { # module@version binary
  local bin=$gobin/$2
  if [ ! -x "$bin" ] || [[ "$("$bin" --version 2>&1)" != *"${1##*@v}"* ]]; then
    go install "$1"
  fi
}
install_tool google.golang.org/protobuf/cmd/protoc-gen-go@$PROTOC_GEN_GO_VERSION protoc-gen-go
install_tool google.golang.org/grpc/cmd/protoc-gen-go-grpc@$PROTOC_GEN_GO_GRPC_VERSION protoc-gen-go-grpc
# staticcheck --version prints "staticcheck 2026.2.2 (0.8.2)": the module version matches.
install_tool honnef.co/go/tools/cmd/staticcheck@$STATICCHECK_VERSION staticcheck
go mod download -x >/dev/null 2>&1 || true
echo "setup: done (protoc $(protoc --version | cut -d' ' -f2), tools in $gobin)"
