#!/usr/bin/env bash
# Starts the agent on the dev config, waits until it is idle, and prints the
# resident memory of the agent and of each plugin process, and the start-up
# time the agent logged (plugins launched, described and configured).
# Usage: scripts/measure-idle.sh [seconds-to-idle]
set -euo pipefail
cd "$(dirname "$0")/.."
idle=${1:-10}
scripts/build.sh >/dev/null
log=$(mktemp)
bin/baiagent server -f configs/agent.dev.toml --log-level info >"$log" 2>&1 &
agent=$!
trap 'kill $agent 2>/dev/null; wait $agent 2>/dev/null; rm -f "$log"' EXIT
for _ in $(seq 100); do
  grep -q "agent started" "$log" && break
  sleep 0.1
done
grep -q "agent started" "$log" || { cat "$log"; echo "agent did not start" >&2; exit 1; }
sleep "$idle"
rss() { awk '/^VmRSS/ {printf "%.1f MiB", $2/1024}' "/proc/$1/status"; }
startup=$(sed 's/\x1b\[[0-9;]*m//g' "$log" | grep -o 'startup=[^ ]*' | head -1 | cut -d= -f2)
echo "startup (plugins launched, described, configured; maps built; RPC bound): ${startup} ms"
echo "agent (pid $agent): $(rss $agent)"
for child in $(pgrep -P $agent); do
  echo "$(basename "$(readlink /proc/$child/exe)") (pid $child): $(rss $child)"
done
