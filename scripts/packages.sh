#!/usr/bin/env bash
# Prints a package pattern for every module of the workspace (go.work),
# e.g. ./host/... ./proto/... — `go test ./...` does not span modules.
set -euo pipefail
cd "$(dirname "$0")/.."
go list -m -f '{{.Dir}}' | while read -r dir; do
  rel=${dir#"$PWD"/}
  # A module with no Go packages yet would make `go test` fail.
  # -print -quit, not "| grep -q": with pipefail, grep leaving early makes
  # find die of SIGPIPE and the module would be skipped.
  if [ -n "$(find "$rel" -name '*.go' -not -path '*/testdata/*' -print -quit)" ]; then
    echo "./$rel/..."
  fi
done
