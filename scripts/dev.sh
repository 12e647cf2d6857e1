#!/usr/bin/env bash
# Sets up, builds and starts the agent on the dev config: no manager, etcd or
# Redis needed. Stop it with ^C; kernels it started keep running.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
exec bin/baiagent server -f configs/agent.dev.toml "$@"
