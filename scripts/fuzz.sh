#!/usr/bin/env bash
# Runs every go test -fuzz target in the workspace for FUZZTIME each
# (default 3000x: a count, not a duration, so a loaded 2-core CI machine
# does the same work as a fast one). The seed corpora already run as plain tests in test.sh;
# this explores beyond them. Findings are written under the package's
# testdata/fuzz and fail the run.
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime=${FUZZTIME:-3000x}
cache=$(mktemp -d)
trap 'rm -rf "$cache"' EXIT
grep -rl --include='*_test.go' '^func Fuzz' host proto plugins | sort | while read -r file; do
  dir=$(dirname "$file")
  for target in $(grep -o '^func Fuzz[A-Za-z0-9_]*' "$file" | cut -d' ' -f2); do
    echo "fuzz: $dir $target ($fuzztime)"
    if ! (cd "$dir" && go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" -parallel 2 \
      -test.fuzzcachedir "$cache" . >"$cache/log" 2>&1); then
      # Go's fuzzer sometimes ends a time-limited run with "context deadline
      # exceeded" and no input; that is the engine's timing, not a finding.
      if grep -q "context deadline exceeded" "$cache/log" && [ -z "$(git status --porcelain -- "$dir/testdata/fuzz" 2>/dev/null)" ]; then
        echo "fuzz: $target: the fuzzer stopped on its own deadline without a finding; not a failure"
        continue
      fi
      tail -30 "$cache/log" >&2
      echo "fuzz: $dir $target found a failing input (saved under $dir/testdata/fuzz)" >&2
      exit 1
    fi
  done
done
echo "fuzz: all targets ran for $fuzztime without a finding"
