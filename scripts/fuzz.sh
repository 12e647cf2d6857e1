#!/usr/bin/env bash
# Runs every go test -fuzz target in the workspace for FUZZTIME each
# (default 10s). The seed corpora already run as plain tests in test.sh;
# this explores beyond them. Findings are written under the package's
# testdata/fuzz and fail the run.
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime=${FUZZTIME:-10s}
cache=$(mktemp -d)
trap 'rm -rf "$cache"' EXIT
grep -rl --include='*_test.go' '^func Fuzz' host proto plugins | sort | while read -r file; do
  dir=$(dirname "$file")
  for target in $(grep -o '^func Fuzz[A-Za-z0-9_]*' "$file" | cut -d' ' -f2); do
    echo "fuzz: $dir $target ($fuzztime)"
    if ! (cd "$dir" && go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" -parallel 2 \
      -test.fuzzcachedir "$cache" . >"$cache/log" 2>&1); then
      tail -30 "$cache/log" >&2
      echo "fuzz: $dir $target found a failing input (saved under $dir/testdata/fuzz)" >&2
      exit 1
    fi
  done
done
echo "fuzz: all targets ran for $fuzztime without a finding"
