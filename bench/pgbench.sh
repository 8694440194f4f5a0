#!/usr/bin/env bash
# pgbench direct vs through interlock (real eBPF redirect), in one run, on loopback.
# Usage: bench/pgbench.sh [seconds per run, default 10] [clients, default 4]
# Prints tps and latency for each mode and the proxied/direct ratios.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ $(id -u) == 0 ]] || { echo "bench: run as root"; exit 1; }
SECS=${1:-10}; CLIENTS=${2:-4}
((SECS > 0 && SECS <= 120)) || { echo "bench: seconds must be 1..120"; exit 1; }
bash deploy/setup.sh >/dev/null

B=/tmp/interlock-bench
PGBIN=/usr/lib/postgresql/15/bin
CG2=$(awk '$3=="cgroup2"{print $2; exit}' /proc/mounts)
AGENT_CG=$CG2/interlock-bench.slice/pgbench.service
PASS=bench-pw-$RANDOM$RANDOM

cleanup() {
  set +e
  [[ -n ${DAEMON:-} ]] && kill "$DAEMON" 2>/dev/null && wait "$DAEMON" 2>/dev/null
  node dist/cli/main.js detach --config "$B/interlock.yaml" >/dev/null 2>&1
  [[ -f $B/pg/data/postmaster.pid ]] && su postgres -s /bin/sh -c "$PGBIN/pg_ctl -D $B/pg/data -m fast -w stop" >/dev/null 2>&1
  rmdir "$AGENT_CG" "$CG2/interlock-bench.slice" 2>/dev/null
}
trap cleanup EXIT
cleanup
rm -rf "$B"; mkdir -p "$B/pg"; chmod 755 "$B"; chown postgres "$B/pg"
su postgres -s /bin/sh -c "echo x > $B/pg/pw && $PGBIN/initdb -D $B/pg/data -A scram-sha-256 --pwfile=$B/pg/pw >/dev/null"
printf "listen_addresses = '127.0.0.3'\nport = 5432\nunix_socket_directories = '$B/pg'\nmax_connections = 100\nfsync = off\n" >>"$B/pg/data/postgresql.conf"
su postgres -s /bin/sh -c "$PGBIN/pg_ctl -D $B/pg/data -l $B/pg/log -w start >/dev/null"
PGPASSWORD=x psql -h "$B/pg" -U postgres -d postgres -qAtX -c "CREATE ROLE app LOGIN PASSWORD '$PASS'" -c "CREATE DATABASE orders OWNER app" >/dev/null
PGPASSWORD=$PASS pgbench -h 127.0.0.3 -U app -i -s 2 -q orders >/dev/null 2>&1
printf '%s' "$PASS" >"$B/secret"; chmod 600 "$B/secret"
cat >"$B/interlock.yaml" <<YAML
agents: { cgroup: /interlock-bench.slice }
proxy: { ports: { postgres: 15434 } }
bpf: { pinDir: /sys/fs/bpf/interlock-bench }
control: { socket: $B/control.sock }
workloads: [ { name: bench, match: { cgroup: /interlock-bench.slice/pgbench.service }, groups: [bench] } ]
targets:
  - { name: orders-db, protocol: postgres, address: 127.0.0.3:5432, upstream: { user: app, password: { file: $B/secret }, database: orders } }
policies: [ { name: bench, subjects: { groups: [bench] }, targets: [orders-db] } ]
audit: { file: $B/audit.jsonl }
YAML
node ${BENCH_NODE_FLAGS:-} dist/cli/main.js run --config "$B/interlock.yaml" 2>"$B/daemon.log" &
DAEMON=$!
for _ in $(seq 1 100); do grep -q 'interlock ready' "$B/daemon.log" && break; sleep 0.1; done
mkdir -p "$AGENT_CG"

direct() { PGPASSWORD=$PASS pgbench -h 127.0.0.3 -U app "$@" orders 2>&1; }
proxied() { sh -c 'echo $$ > "$0/cgroup.procs" && shift && exec "$@"' "$AGENT_CG" _ pgbench -h 127.0.0.3 -U agent "$@" orders 2>&1; }
tps() { sed -n 's/^tps = \([0-9.]*\).*/\1/p' | head -1; }
lat() { sed -n 's/^latency average = \([0-9.]*\) ms/\1/p' | head -1; }

echo "pgbench: ${SECS}s per run, $CLIENTS clients, scale 2, PostgreSQL 15 on 127.0.0.3, $(nproc) cores"
printf '%-34s %12s %12s %12s %12s %8s\n' workload direct_tps proxied_tps direct_ms proxied_ms ratio
for mode in "select-only|-S" "tpc-b|" "select-only, new connection each|-S -C"; do
  name=${mode%%|*}; flags=${mode#*|}
  # shellcheck disable=SC2086
  d=$(direct -n $flags -c "$CLIENTS" -j 2 -T "$SECS"); p=$(proxied -n $flags -c "$CLIENTS" -j 2 -T "$SECS")
  dt=$(tps <<<"$d"); pt=$(tps <<<"$p")
  [[ -n $dt && -n $pt ]] || { echo "bench: a run failed:"; echo "$d" | tail -3; echo "$p" | tail -3; exit 1; }
  printf '%-34s %12.0f %12.0f %12s %12s %8.2f\n' "$name" "$dt" "$pt" "$(lat <<<"$d")" "$(lat <<<"$p")" "$(awk -v a="$pt" -v b="$dt" 'BEGIN{print a/b}')"
done
queries=$(grep -c '"event":"query"' "$B/audit.jsonl" || true)
echo "audit lines for proxied queries: $queries"
