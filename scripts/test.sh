#!/usr/bin/env bash
# Runs the whole test suite: the generated-code check, go vet, and every
# module's tests with the race detector. Tests start real plugin processes.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/proto.sh --check
pkgs=$(scripts/packages.sh)
unformatted=$(gofmt -l host proto plugins scripts/package)
if [ -n "$unformatted" ]; then
  echo "gofmt would change: $unformatted" >&2
  exit 1
fi
# go-nvml's cgo preamble calls NVML functions nvml.h marks deprecated, and
# gcc warns about each on a cold cache. Only the cuda module links go-nvml,
# so only its packages get the flag (with go's default -O2 -g kept); every
# other cgo package (libzmq) keeps its warnings.
cuda_cflags="${CGO_CFLAGS:--O2 -g} -Wno-deprecated-declarations"
cuda_pkgs=$(printf '%s\n' $pkgs | grep '^./plugins/cuda/' || true)
other_pkgs=$(printf '%s\n' $pkgs | grep -v '^./plugins/cuda/' || true)
go vet $other_pkgs
# The packager is a module outside go.work (see scripts/package/main.go).
GOWORK=off go -C scripts/package vet ./...
CGO_CFLAGS="$cuda_cflags" go vet $cuda_pkgs
# staticcheck (installed by setup.sh) over every module: a clean run is
# the bar, as for vet.
staticcheck=$(go env GOPATH)/bin/staticcheck
"$staticcheck" $other_pkgs
CGO_CFLAGS="$cuda_cflags" "$staticcheck" $cuda_pkgs
(cd scripts/package && GOWORK=off "$staticcheck" ./...)
go test -race -count=1 -timeout 20m "$@" $other_pkgs
CGO_CFLAGS="$cuda_cflags" go test -race -count=1 -timeout 20m "$@" $cuda_pkgs
