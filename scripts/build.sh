#!/usr/bin/env bash
# Builds the agent into bin/baiagent, its embedded etcd into
# bin/baiagent-etcd, the kernel runner into bin/baiagent-kernel-runner and
# every plugin executable into bin/plugins/, where configs/agent.dev.toml
# looks for them. BIN=DIR builds into DIR instead (the packaging test does).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${BIN:-bin}
mkdir -p "$bin/plugins"
# Version and commit are stamped into `baiagent version` (and the heartbeat).
# VERSION overrides the version; else the nearest v* tag (git describe),
# else the default in host/internal/version.
pkg=github.com/baiagent/baiagent/host/internal/version
commit=$(git rev-parse HEAD 2>/dev/null || true)
if [ -n "$commit" ] && [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then
  commit=$commit-dirty
fi
version=${VERSION:-$(git describe --tags --match 'v[0-9]*' --dirty 2>/dev/null | sed 's/^v//' || true)}
stamp="-X $pkg.Commit=$commit${version:+ -X $pkg.Version=$version}"
# STRIP=1 (package.sh sets it) drops the symbol table and DWARF: a third
# smaller; panics still print file:line, but debuggers see no symbols.
strip=
if [ "${STRIP:-}" = 1 ]; then strip="-s -w"; stamp="$stamp $strip"; fi
# grpcnotrace leaves golang.org/x/net/trace out of every executable: its
# debug pages are served by nobody here, and its html/template keeps the
# linker from dropping unused methods (issue 20: 9 MiB of the agent).
# host/internal/testutil.BuildTags is the same list.
tags=grpcnotrace
# libzmq is linked statically (scripts/zmq-static/pkg-config says what is
# and is not), so a node needs only libc6 and libgssapi-krb5-2.
# BAIAGENT_ZMQ=shared links libzmq.so.5 as `go build` does by default.
# The CPPFLAGS marker keeps the two builds apart in Go's build cache, which
# does not hash what pkg-config prints.
if [ "${BAIAGENT_ZMQ:-static}" = static ]; then
  PKG_CONFIG=$PWD/scripts/zmq-static/pkg-config CGO_CPPFLAGS="${CGO_CPPFLAGS:-} -DBAIAGENT_LIBZMQ_STATIC" \
    go build -tags $tags -ldflags "$stamp -extldflags=-static-libgcc" -o "$bin/baiagent" ./host/cmd/baiagent
else
  go build -tags $tags -ldflags "$stamp" -o "$bin/baiagent" ./host/cmd/baiagent
fi
# The kernel runner is mounted into every container: static, no cgo.
CGO_ENABLED=0 go build -tags $tags -ldflags "$stamp" -o "$bin/baiagent-kernel-runner" ./host/cmd/baiagent-kernel-runner
# The embedded etcd (etcd.embedded = true) runs as the agent's child, so
# that etcd's server is not linked into the agent; pure Go, static.
CGO_ENABLED=0 go build -tags $tags -ldflags "$stamp" -o "$bin/baiagent-etcd" ./host/cmd/baiagent-etcd
for main in plugins/*/cmd/baiagent-plugin-*; do
  compgen -G "$main/*.go" >/dev/null || continue
  name=$(basename "$main")
  # Plugins are static where they can be (no libc surprises on odd hosts);
  # the cuda plugin needs cgo to load libnvidia-ml at run time.
  # go-nvml's deprecation warnings are silenced for it alone (see test.sh).
  cgo=0 cflags=${CGO_CFLAGS:-}
  if [ "$name" = baiagent-plugin-cuda ]; then
    cgo=1 cflags="${CGO_CFLAGS:--O2 -g} -Wno-deprecated-declarations"
  fi
  CGO_ENABLED=$cgo CGO_CFLAGS="$cflags" go build -tags $tags -ldflags "$strip" -o "$bin/plugins/$name" "./$main"
done
chmod 0755 "$bin/baiagent" "$bin/baiagent-etcd" "$bin/baiagent-kernel-runner" "$bin"/plugins/*
echo "built: $bin/baiagent $bin/baiagent-etcd $bin/baiagent-kernel-runner $(ls "$bin/plugins" | sed "s|^|$bin/plugins/|" | tr '\n' ' ')"
