#!/usr/bin/env bash
# What a workload rule costs a `get`, against a uid rule: the C load client
# (bench/c/getload.c: 16 connections, 3 s, every reply checked) runs as uid
# 65534 in a cgroup of its own, named like a systemd unit, against a release
# fluxd whose project `app` lets it read by its uid in one run and by its
# unit in the next, in turns. Needs root (to place the client in a cgroup
# and drop its uid), a writable cgroup hierarchy, setpriv and a C compiler.
#
#   cargo build --release -p fluxd -p fluxctl && sudo bash bench/scripts/rule-cost.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
rounds=${1:-6}
fluxd=target/release/fluxd
fluxctl=target/release/fluxctl
skip() { echo "SKIPPED: rule-cost: $*" >&2; exit 0; }
[[ $(id -u) -eq 0 ]] || skip "needs root"
[[ -x $fluxd && -x $fluxctl ]] || skip "build first: cargo build --release -p fluxd -p fluxctl"
command -v setpriv >/dev/null || skip "needs setpriv (util-linux)"
work=$(mktemp -d /tmp/frcXXXX)
chmod 711 "$work"
trap 'rm -rf "$work"' EXIT
"${CC:-cc}" -O2 -std=c11 -D_GNU_SOURCE -pthread bench/c/getload.c -o "$work/getload" || skip "no C compiler"
procs=()
for root in /sys/fs/cgroup/systemd /sys/fs/cgroup/unified /sys/fs/cgroup; do
  [[ -f $root/cgroup.procs ]] || continue
  dir=$root/flux-rule-cost.slice/bench-load.service
  mkdir -p "$dir" 2>/dev/null && procs+=("$dir/cgroup.procs")
done
((${#procs[@]})) || skip "no writable cgroup hierarchy"
value=$(printf 'v%.0s' $(seq 40))
one() { # $1: the readers line of project app
  local d pid out
  d=$(mktemp -d "$work/rXXX"); chmod 711 "$d"
  printf '[projects.app]\nsocket_group = 65534\n%s\n[limits]\nrequests_per_second = 0\n' "$1" >"$d/fluxd.toml"
  "$fluxd" --state-dir "$d/state" --runtime-dir "$d/run" --config "$d/fluxd.toml" 2>"$d/log" &
  pid=$!
  for _ in $(seq 200); do [[ -S $d/run/control.sock ]] && break; sleep 0.05; done
  FLUX_RUNTIME_DIR=$d/run "$fluxctl" projects create app >/dev/null
  printf '%s' "$value" | FLUX_RUNTIME_DIR=$d/run "$fluxctl" secrets set K -p app >/dev/null
  out=$(sh -c "for f in ${procs[*]}; do echo \$\$ > \$f; done; exec setpriv --reuid=65534 --regid=65534 --clear-groups $work/getload $d/run/projects/app.sock K $value 16 3 50")
  kill "$pid" 2>/dev/null || { echo "fluxd stopped: $(tail -3 "$d/log")" >&2; }; wait "$pid" 2>/dev/null || true
  awk '/^wall_ns/{w=$2} /^requests/{r=$2} /^p99_ns/{p=$2} END {printf "%.0f req/s, p99 %.0f µs\n", r/(w/1e9), p/1000}' <<<"$out"
}
for round in $(seq "$rounds"); do
  echo "round $round: uid rule  $(one 'readers = { users = [65534] }')"
  echo "round $round: unit rule $(one 'readers = { units = ["bench-load.service"] }')"
done
for p in "${procs[@]}"; do rmdir "$(dirname "$p")" "$(dirname "$(dirname "$p")")" 2>/dev/null || true; done
