#!/usr/bin/env bash
# Builds the agent into bin/baiagent and every plugin executable into
# bin/plugins/, where configs/agent.dev.toml looks for them.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p bin/plugins
go build -o bin/baiagent ./host/cmd/baiagent
# The kernel runner is mounted into every container: static, no cgo.
CGO_ENABLED=0 go build -o bin/baiagent-kernel-runner ./host/cmd/baiagent-kernel-runner
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
  CGO_ENABLED=$cgo CGO_CFLAGS="$cflags" go build -o "bin/plugins/$name" "./$main"
done
chmod 0755 bin/baiagent bin/baiagent-kernel-runner bin/plugins/*
echo "built: bin/baiagent bin/baiagent-kernel-runner $(ls bin/plugins | sed 's|^|bin/plugins/|' | tr '\n' ' ')"
