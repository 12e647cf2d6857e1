#!/usr/bin/env bash
# The cuda plugin's hardware check (issue 19), in two halves because the GPU
# machine has neither Go nor Docker:
#   scripts/gpu-check.sh build   here: builds the agent, the cuda plugin and
#                                the cuda test binaries into gpucheck/
#   scripts/gpu-check.sh run     on the GPU machine, with gpucheck/ carried:
#                                the real-NVML tests, `plugins verify` of the
#                                cuda plugin, cuda_mem against nvidia-smi;
#                                logs go to $OUT (or gpucheck/out)
# With the device tool: run `build`, then
#   run(command="scripts/gpu-check.sh run", carry=["gpucheck"], timeout_s=300)
set -euo pipefail
cd "$(dirname "$0")/.."
dir=gpucheck
case "${1:-}" in
build)
  rm -rf "$dir" && mkdir -p "$dir"
  # Stripped: the carried folder must stay under the device tool's 64 MiB.
  STRIP=1 BIN="$dir/bin" scripts/build.sh >/dev/null
  rm -f "$dir/bin/baiagent-kernel-runner" "$dir"/bin/plugins/baiagent-plugin-{cpu,rocm,tpu}
  flags="${CGO_CFLAGS:--O2 -g} -Wno-deprecated-declarations"
  # Test binaries run from their package directory (fixtures are relative),
  # so each goes beside a copy of what its tests read.
  (cd plugins/cuda && CGO_CFLAGS="$flags" go test -c -ldflags "-s -w" -o "../../$dir/cuda.test" .)
  (cd plugins/cuda/internal/nvmldriver && CGO_CFLAGS="$flags" go test -c -ldflags "-s -w" -o "../../../../$dir/nvmldriver.test" .)
  # gzip (on every machine): the four binaries are 87 MiB and the device tool carries 64 MiB.
  tar -C "$dir" -czf "$dir/bundle.tar.gz" bin cuda.test nvmldriver.test
  rm -rf "$dir/bin" "$dir/cuda.test" "$dir/nvmldriver.test"
  du -sh "$dir"
  ;;
run)
  out=${OUT:-$dir/out}
  mkdir -p "$out"
  [ -f "$dir/bundle.tar.gz" ] && tar -C "$dir" -xzf "$dir/bundle.tar.gz"
  rc=0
  { nvidia-smi || true; nvidia-smi --query-gpu=index,name,uuid,memory.used,memory.total,driver_version --format=csv || true; } >"$out/nvidia-smi.txt" 2>&1
  # Real NVML through go-nvml: devices, MIG, status, processes.
  (cd plugins/cuda/internal/nvmldriver && "$OLDPWD/$dir/nvmldriver.test" -test.v -test.run 'TestRealNVML' -test.count=1) >"$out/nvmldriver.txt" 2>&1 || rc=1
  # cuda_mem against nvidia-smi within 1 MiB, and the plugin's whole suite
  # (fakes and mocks) on this machine's libc and driver.
  (cd plugins/cuda && "$OLDPWD/$dir/cuda.test" -test.v -test.run 'TestRealGPUCudaMemMatchesNvidiaSmi' -test.count=1) >"$out/cuda-mem.txt" 2>&1 || rc=1
  (cd plugins/cuda && "$OLDPWD/$dir/cuda.test" -test.count=1) >"$out/cuda-suite.txt" 2>&1 || rc=1
  # The conformance kit against the real plugin on the real driver.
  # First as an operator's node would run it (default config), then with
  # Docker's device requests as the attach method: this machine has no
  # Docker, so "auto" finds no way to attach and PrepareContainer refuses.
  "$dir/bin/baiagent" plugins verify "$dir/bin/plugins/baiagent-plugin-cuda" >"$out/verify-default.txt" 2>&1 || rc=1
  printf 'attach-method = "device-request"\n' >"$dir/cuda.toml"
  "$dir/bin/baiagent" plugins verify --config "$dir/cuda.toml" "$dir/bin/plugins/baiagent-plugin-cuda" >"$out/verify-device-request.txt" 2>&1 || rc=1
  "$dir/bin/baiagent" version >"$out/version.txt" 2>&1 || true
  for f in "$out"/*.txt; do echo "== $f"; tail -n 40 "$f"; done
  echo "gpu-check: rc=$rc"
  exit $rc
  ;;
*)
  echo "usage: $0 build|run" >&2
  exit 2
  ;;
esac
