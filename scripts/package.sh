#!/usr/bin/env bash
# Builds the release artifacts into dist/ (OUT overrides): the .deb
# (baiagent_<version>_<arch>.deb) and the archive
# (baiagent-<version>-linux-<arch>.tar.gz) holding the same tree.
# VERSION sets the version (else the nearest v* tag, else the default);
# SKIP_BUILD=1 packages what bin/ (BIN) already holds.
# Needs dpkg and ldd (Debian/Ubuntu): Depends is read off the binaries;
# Recommends is fixed in configs/package/nfpm.yaml.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-dist}
export BIN=${BIN:-bin}
# Release binaries are stripped (STRIP=0 keeps the symbols).
[ "${SKIP_BUILD:-}" = 1 ] || STRIP=${STRIP:-1} scripts/build.sh
# The package's version is the one stamped into the agent.
version=$("$BIN/baiagent" version | awk 'NR==1 {print $2}')
arch=$(dpkg --print-architecture)
# The packager is its own module, outside go.work (see scripts/package/main.go).
GOWORK=off go -C scripts/package run . -root "$PWD" -bin "$BIN" -out "$out" -version "$version" -arch "$arch"
