#!/usr/bin/env bash
# Runs the benchmarks recorded in BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
go test -run '^$' -bench . -benchmem -count "${COUNT:-1}" $(scripts/packages.sh)
