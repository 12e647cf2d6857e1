#!/usr/bin/env bash
# Sets up, builds and starts the agent on the dev config: no manager, etcd or
# Redis needed. Stop it with ^C; kernels it started keep running.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
# From configs/, so that the working directory is the config file's and
# its relative paths resolve the same way for upstream's rule and ours.
cd configs
exec ../bin/baiagent server -f agent.dev.toml "$@"
