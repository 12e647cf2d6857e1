#!/usr/bin/env bash
# Scale benchmark (issue 20): an agent with Redis and an external etcd (or,
# with EMBEDDED=1, its embedded one, the agent's child baiagent-etcd) and N
# idle busybox kernels. For each creation concurrency it creates N kernels,
# measures the agent's and each child's (plugins, embedded etcd) CPU
# (utime+stime from /proc over WINDOW seconds) and RSS, and the Redis
# commands per second the agent issues, then destroys them and checks
# that nothing leaked: containers, listening ports, scratch dirs,
# allocations, goroutines (pprof, [debug] enabled) and open fds.
# Prints one table. Exits 1 when something leaked.
#
# Usage: scripts/bench-scale.sh N
#   CONCURRENCY="1 4 20"  one create/destroy cycle per value
#   WINDOW=60             seconds of the idle measurement
#   SETTLE=20             seconds between the last create and the window
#   EMBEDDED=1            embedded etcd instead of an external etcd-server
#   NOBUILD=1             use bin/ as it is
#   PROFILE=FILE          also write a CPU profile of each window to FILE.<concurrency>.pb.gz
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
n=${1:?usage: scripts/bench-scale.sh N}
concurrency=${CONCURRENCY:-1 4 20}
window=${WINDOW:-60}
settle=${SETTLE:-20}
image=baiagent-test/busybox:latest
hz=$(getconf CLK_TCK)

for tool in redis-server redis-cli curl docker; do
  command -v $tool >/dev/null || { echo "bench-scale: $tool is needed" >&2; exit 1; }
done
[[ ${EMBEDDED:-0} == 1 ]] || command -v etcd >/dev/null || { echo "bench-scale: etcd (etcd-server) is needed" >&2; exit 1; }
[[ ${NOBUILD:-0} == 1 ]] || scripts/build.sh >/dev/null
if ! docker image inspect $image >/dev/null 2>&1; then
  # The test helper builds it (FROM scratch, the host's static busybox).
  (cd host && go test -count=1 -run '^TestBuildBusybox$' ./internal/kernel/kerneltest/ >/dev/null)
fi

work=$(mktemp -d /tmp/bench-scale.XXXXXX)
agent_id=i-bench-scale-$$
pids=()
cleanup() {
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do kill "${pids[i]}" 2>/dev/null || true; wait "${pids[i]}" 2>/dev/null || true; done
  docker ps -aq --filter label=ai.backend.agent-id=$agent_id | xargs -r docker rm -f >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_for() { # what command...
  local what=$1; shift
  for _ in $(seq 300); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "bench-scale: $what did not come up" >&2; cat "$work"/*.log >&2; exit 1
}

# A private range for the kernels' host ports (4 per kernel, with room for
# the reuse cooldown across cycles), so that counting listeners in it sees
# only this agent's: below the tests' 20000-29999 and the kernel's
# ephemeral ports (where free_port's come from).
port_min=$((10000 + (RANDOM % 5) * 2000)) port_max=$((port_min + 1999))
redis_port=$(free_port) etcd_port=$(free_port) peer_port=$(free_port) rpc_port=$(free_port) http_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no --dir "$work" >"$work/redis.log" 2>&1 &
pids+=($!)
wait_for redis redis-cli -p "$redis_port" ping
etcd_table="addr = \"127.0.0.1:$etcd_port\""
if [[ ${EMBEDDED:-0} == 1 ]]; then
  etcd_table+=$'\nembedded = true\ndata-dir = "'"$work"'/etcd"'
else
  etcd --name bench --data-dir "$work/etcd" \
    --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
    --initial-cluster "bench=http://127.0.0.1:$peer_port" >"$work/etcd.log" 2>&1 &
  pids+=($!)
  wait_for etcd curl -sf "http://127.0.0.1:$etcd_port/health"
fi
cat >"$work/agent.toml" <<EOF
[etcd]
namespace = "local"
$etcd_table

[agent]
backend = "docker"
rpc-listen-addr = "127.0.0.1:$rpc_port"
internal-addr = "127.0.0.1:$http_port"
id = "$agent_id"
var-base-path = "$work/var"
ipc-base-path = "$work/ipc"
plugin-runtime-dir = "$work/run"
skip-manager-detection = true
plugin-dirs = ["$repo/bin/plugins"]
allow-compute-plugins = ["cpu"]
kernel-runner-path = "$repo/bin/baiagent-kernel-runner"

[container]
bind-host = "127.0.0.1"
scratch-root = "$work/scratches"
port-range = [$port_min, $port_max]

[resource]
reserved-cpu = 0
reserved-mem = "1G"

[redis]
addr = "127.0.0.1:$redis_port"

[debug]
enabled = true

[logging]
level = "warning"

[plugins.cpu]
cpu-overcommit-factor = 10
EOF
mkdir -p "$work/scratches"
bin/baiagent server -f "$work/agent.toml" >"$work/agent.log" 2>&1 &
agent=$!
pids+=($agent)
wait_for agent curl -sf "http://127.0.0.1:$http_port/readyz"
wait_for "admin socket" curl -sf --unix-socket "$work/ipc/baiagent-admin.sock" http://agent/v1/resources

cli=(bin/baiagent kernel --addr "tcp://127.0.0.1:$rpc_port")
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# RSS as VmRSS, and its anonymous and file-backed parts (the binary's
# pages: a kernel that maps the executable with large folios counts all
# of it).
rss_mib() { awk '/^(VmRSS|RssAnon|RssFile)/ {v[$1] = $2 / 1024} END {printf "%.1f (%.1f+%.1f)", v["VmRSS:"], v["RssAnon:"], v["RssFile:"]}' "/proc/$1/status"; }
goroutines() { curl -sf "http://127.0.0.1:$http_port/debug/pprof/goroutine?debug=1" | awk 'NR == 1 {print $4}'; }
fds() { ls "/proc/$agent/fd" | wc -l; }
containers() { docker ps -aq --filter label=ai.backend.agent-id=$agent_id | wc -l; }
# Listening TCP ports in the kernels' range (docker-proxy binds them).
ports() { ss -Hltn | awk -v lo=$port_min -v hi=$port_max '{n = split($4, a, ":"); q = a[n] + 0} q >= lo && q <= hi' | wc -l; }
scratches() { find "$work/scratches" -mindepth 1 -maxdepth 1 | wc -l; }
# Allocated amounts of every slot, from the admin socket.
allocated() { curl -sf --unix-socket "$work/ipc/baiagent-admin.sock" http://agent/v1/resources | jq -c '[.usage[] | {(.Slot): .Allocated}] | add'; }
redis_cmds() { redis-cli -p "$redis_port" info stats | awk -F: '/^total_commands_processed/ {print $2 + 0}'; }
kernel_ids() { "${cli[@]}" list | awk 'NR > 1 {print $1}'; }
now() { date +%s.%N; }

# The state a destroy must come back to. Goroutines and fds are judged
# against the state after the first cycle: the first creates fill the
# agent's connection pools (Docker, Redis), which then stay.
base_alloc=$(allocated) base_goroutines=$(goroutines) base_fds=$(fds)
printf '%s\n' "N=$n kernels (busybox, cpu 0.5 mem 64m), agent $(bin/baiagent version | head -1), etcd $([[ ${EMBEDDED:-0} == 1 ]] && echo embedded || echo external), load $(cut -d' ' -f1-3 /proc/loadavg)"
printf '| %-11s | %-9s | %-9s | %-22s | %-26s | %-13s | %-12s | %-30s |\n' concurrency "create s" "destroy s" "agent CPU (ticks/%)" "agent RSS MiB (anon+file)" "children CPU % (RSS MiB)" "Redis cmd/s" "leaks (c,p,s,alloc,g,fd)"
leaked=0 cycle=0
for c in $concurrency; do
  cycle=$((cycle + 1))
  t0=$(now)
  seq "$n" | xargs -P "$c" -I{} "${cli[@]}" run --keep --image $image --cpu 0.5 --mem 64m true >"$work/create.out" 2>&1 ||
    { cat "$work/create.out" >&2; echo "bench-scale: a create failed" >&2; exit 1; }
  create_s=$(echo "$(now) - $t0" | bc)
  got=$(kernel_ids | wc -l)
  [[ $got == "$n" ]] || { echo "bench-scale: $got kernels running, want $n" >&2; exit 1; }

  sleep "$settle"
  a0=$(ticks $agent) r0=$(redis_cmds)
  declare -A p0=()
  for p in $(pgrep -P $agent); do p0[$p]=$(ticks $p); done
  sleep "$window"
  a1=$(ticks $agent) r1=$(redis_cmds)
  plugin_pct=""
  for p in "${!p0[@]}"; do
    name=$(basename "$(readlink /proc/$p/exe)"); name=${name#baiagent-plugin-}; name=${name#baiagent-}
    plugin_pct+="$name $(echo "scale=2; ($(ticks $p) - ${p0[$p]}) * 100 / ($window * $hz)" | bc) ($(awk '/^VmRSS/ {printf "%.1f", $2 / 1024}' /proc/$p/status)) "
  done
  agent_ticks=$((a1 - a0))
  agent_pct=$(echo "scale=2; $agent_ticks * 100 / ($window * $hz)" | bc)
  rss=$(rss_mib $agent)
  # INFO itself counts as a command.
  cmds=$(echo "scale=2; ($r1 - $r0 - 1) / $window" | bc)
  [[ -z ${PROFILE:-} ]] || curl -sf -o "$PROFILE.$c.pb.gz" "http://127.0.0.1:$http_port/debug/pprof/profile?seconds=$window"

  t0=$(now)
  kernel_ids | xargs -r -P "$c" -I{} "${cli[@]}" destroy {} >"$work/destroy.out" 2>&1 ||
    { cat "$work/destroy.out" >&2; echo "bench-scale: a destroy failed" >&2; exit 1; }
  destroy_s=$(echo "$(now) - $t0" | bc)
  # Give the agent a moment for what runs after a destroy answers
  # (docker-proxy exits, goroutines end), then judge.
  # Fewer goroutines or fds than the baseline (an idle connection closed)
  # is no leak.
  clean() { [[ $leak =~ ^0,0,0,0,(-[0-9]+|0),(-[0-9]+|0)$ ]]; }
  for _ in $(seq 30); do
    leak="$(containers),$(ports),$(scratches),$([[ $(allocated) == "$base_alloc" ]] && echo 0 || echo 1),$(($(goroutines) - base_goroutines)),$(($(fds) - base_fds))"
    [[ $leak == 0,0,0,0,* ]] && { ((cycle == 1)) || clean; } && break
    sleep 1
  done
  if ((cycle == 1)); then
    [[ $leak == 0,0,0,0,* ]] || leaked=1
    leak+=" (warm-up)"
    base_goroutines=$(goroutines) base_fds=$(fds)
  else
    clean || leaked=1
  fi
  printf '| %-11s | %-9.1f | %-9.1f | %-22s | %-26s | %-13s | %-12s | %-30s |\n' "$c" "$create_s" "$destroy_s" "$agent_ticks / $agent_pct %" "$rss" "$plugin_pct" "$cmds" "$leak"
done
if ((leaked)); then
  echo "bench-scale: leaks after destroy (containers, ports, scratch dirs, allocation changed, goroutines, fds): see the last column" >&2
  echo "allocated now: $(allocated), before: $base_alloc" >&2
  echo "listening in $port_min-$port_max:" >&2; ss -Hltnp | awk -v lo=$port_min -v hi=$port_max '{n = split($4, a, ":"); q = a[n] + 0} q >= lo && q <= hi' >&2
  curl -sf "http://127.0.0.1:$http_port/debug/pprof/goroutine?debug=1" | head -60 >&2
  exit 1
fi
