#!/usr/bin/env bash
# Runs the whole test suite: the generated-code check, go vet, and every
# module's tests with the race detector. Tests start real plugin processes.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/proto.sh --check
pkgs=$(scripts/packages.sh)
unformatted=$(gofmt -l host proto plugins)
if [ -n "$unformatted" ]; then
  echo "gofmt would change: $unformatted" >&2
  exit 1
fi
go vet $pkgs
go test -race -count=1 -timeout 20m "$@" $pkgs
