#!/usr/bin/env bash
# pgbench select-only: direct, through pgbouncer (session mode) and through interlock
# (real eBPF redirect, policy and masking on), alternated round by round in one run on
# loopback. Prints each mode's median TPS, its ratio to direct and the latency it adds.
#
# Usage: bench/pgbench.sh [seconds per run=10] [rounds=3] [clients=8]
# Env:   BENCH_MODES       which modes, in order (default "direct pgbouncer interlock"; "relay": a bare Node pipe)
#        BENCH_NODE_FLAGS  extra node flags for the daemon (e.g. --cpu-prof --cpu-prof-dir=/tmp/prof)
#        BENCH_ENFORCEMENT=off  drop the masking rules (policy still decides every statement)
#        BENCH_RECORDING=off    do not record sessions
#        BENCH_PGBENCH     extra pgbench flags (e.g. "-M prepared")
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
[[ $(id -u) == 0 ]] || { echo "bench: run as root"; exit 1; }
SECS=${1:-10}; ROUNDS=${2:-3}; CLIENTS=${3:-8}
((SECS > 0 && SECS <= 120 && ROUNDS > 0 && ROUNDS <= 10 && CLIENTS > 0 && CLIENTS <= 64)) || { echo "bench: seconds 1..120, rounds 1..10, clients 1..64"; exit 1; }
bash deploy/setup.sh >/dev/null
command -v pgbouncer >/dev/null || [[ -x /usr/sbin/pgbouncer ]] || {
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends pgbouncer >/dev/null; }
PGBOUNCER=$(command -v pgbouncer || echo /usr/sbin/pgbouncer)

B=/tmp/interlock-bench
PGBIN=/usr/lib/postgresql/15/bin
CG2=$(awk '$3=="cgroup2"{print $2; exit}' /proc/mounts)
AGENT_CG=$CG2/interlock-bench.slice/pgbench.service
PASS=bench-pw-$RANDOM$RANDOM

cleanup() {
  set +e
  [[ -n ${DAEMON:-} ]] && kill "$DAEMON" 2>/dev/null && wait "$DAEMON" 2>/dev/null
  [[ -n ${RELAY:-} ]] && kill "$RELAY" 2>/dev/null
  node dist/cli/main.js detach --config "$B/interlock.yaml" >/dev/null 2>&1
  [[ -f $B/pgbouncer.pid ]] && kill "$(cat "$B/pgbouncer.pid")" 2>/dev/null
  [[ -f $B/pg/data/postmaster.pid ]] && su postgres -s /bin/sh -c "$PGBIN/pg_ctl -D $B/pg/data -m fast -w stop" >/dev/null 2>&1
  rmdir "$AGENT_CG" "$CG2/interlock-bench.slice" 2>/dev/null
}
trap cleanup EXIT
cleanup
rm -rf "$B"; mkdir -p "$B/pg"; chmod 755 "$B"; chown postgres "$B/pg"

# PostgreSQL 15 on 127.0.0.3:5432 with pgbench's tables
su postgres -s /bin/sh -c "echo x > $B/pg/pw && $PGBIN/initdb -D $B/pg/data -A scram-sha-256 --pwfile=$B/pg/pw >/dev/null"
printf "listen_addresses = '127.0.0.3'\nport = 5432\nunix_socket_directories = '$B/pg'\nmax_connections = 100\nfsync = off\n" >>"$B/pg/data/postgresql.conf"
su postgres -s /bin/sh -c "$PGBIN/pg_ctl -D $B/pg/data -l $B/pg/log -w start >/dev/null"
PGPASSWORD=x psql -h "$B/pg" -U postgres -d postgres -qAtX -c "CREATE ROLE app LOGIN PASSWORD '$PASS'" -c "CREATE DATABASE orders OWNER app" >/dev/null
PGPASSWORD=$PASS pgbench -h 127.0.0.3 -U app -i -s 2 -q orders >/dev/null 2>&1

# pgbouncer, session mode, on 127.0.0.1:6432
cat >"$B/pgbouncer.ini" <<INI
[databases]
orders = host=127.0.0.3 port=5432 dbname=orders user=app password=$PASS
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = 6432
unix_socket_dir =
auth_type = trust
auth_file = $B/userlist.txt
pool_mode = session
max_client_conn = 200
default_pool_size = 64
logfile = $B/pgbouncer.log
pidfile = $B/pgbouncer.pid
INI
printf '"app" "%s"\n' "$PASS" >"$B/userlist.txt"
chown postgres "$B/pgbouncer.ini" "$B/userlist.txt"; touch "$B/pgbouncer.log"; chown postgres "$B/pgbouncer.log"; chown postgres "$B"
su postgres -s /bin/sh -c "$PGBOUNCER -d $B/pgbouncer.ini"

# interlock: a real policy (dangerous functions denied, reads of public.* allowed) and masking on
printf '%s' "$PASS" >"$B/secret"; chmod 600 "$B/secret"
cat >"$B/interlock.yaml" <<YAML
agents: { cgroup: /interlock-bench.slice }
proxy: { ports: { postgres: 15434, ssh: 15435, kubernetes: 15436 } }
bpf: { pinDir: /sys/fs/bpf/interlock-bench }
control: { socket: $B/control.sock }
workloads: [ { name: bench, match: { cgroup: /interlock-bench.slice/pgbench.service }, groups: [bench] } ]
targets:
  - { name: orders-db, protocol: postgres, address: 127.0.0.3:5432, upstream: { user: app, password: { file: $B/secret }, database: orders } }
policies:
  - name: bench
    subjects: { groups: [bench] }
    targets: [orders-db]
    rules:
      - { action: deny, match: { functions: [pg_read_file, lo_export, "dblink*", pg_terminate_backend] } }
      - { action: allow, match: { statements: [select], relations: ["public.*"], access: read } }
      - { action: allow, match: { statements: [set, transaction] } }
    masking:
      - { columns: ["customers.ssn"], strategy: redact }
      - { detectors: [email, credit_card], strategy: partial }
audit: { file: $B/audit.jsonl }
recording: { dir: $B/recordings, key: { file: $B/recording.key } }
ssh: { hostKey: $B/ssh_host_key }
tls: { caCert: $B/node-ca.crt, caKey: $B/node-ca.key }
YAML
if [[ ${BENCH_RECORDING:-on} == off ]]; then sed -i 's/^recording: {/recording: { enabled: false,/' "$B/interlock.yaml"; fi
if [[ ${BENCH_ENFORCEMENT:-on} == off ]]; then # the same relay with no masking rules: how much masking's framing costs
  sed -i '/^    masking:/,/strategy: partial }/d' "$B/interlock.yaml"
fi
node ${BENCH_NODE_FLAGS:-} dist/cli/main.js run --config "$B/interlock.yaml" 2>"$B/daemon.log" &
DAEMON=$!
for _ in $(seq 1 100); do grep -q 'interlock ready' "$B/daemon.log" && break; sleep 0.1; done
mkdir -p "$AGENT_CG"

run() { # mode → pgbench output
  # shellcheck disable=SC2086
  local args=(-n -S -c "$CLIENTS" -j 2 -T "$SECS" ${BENCH_PGBENCH:-} orders)
  case $1 in
    direct) PGPASSWORD=$PASS pgbench -h 127.0.0.3 -U app "${args[@]}" 2>&1 ;;
    pgbouncer) pgbench -h 127.0.0.1 -p 6432 -U app "${args[@]}" 2>&1 ;;
    relay) PGPASSWORD=$PASS pgbench -h 127.0.0.1 -p 6433 -U app "${args[@]}" 2>&1 ;;
    interlock) in_cgroup "$AGENT_CG" pgbench -h 127.0.0.3 -U agent "${args[@]}" 2>&1 ;;
  esac
}

# BENCH_MODES="direct pgbouncer relay interlock" adds a bare Node.js socket.pipe() relay (bench/relay.mjs)
read -r -a MODES <<<"${BENCH_MODES:-direct pgbouncer interlock}"
if [[ " ${MODES[*]} " == *" relay "* ]]; then
  node bench/relay.mjs 6433 127.0.0.3 5432 2>"$B/relay.log" &
  RELAY=$!
  for _ in $(seq 1 50); do grep -q 'relay ready' "$B/relay.log" && break; sleep 0.1; done
fi
declare -A TPS LAT
echo "pgbench -S -c $CLIENTS -j 2 ${BENCH_PGBENCH:-}, ${SECS}s per run, $ROUNDS rounds alternated, PostgreSQL 15 on 127.0.0.3, $(nproc) cores"
for round in $(seq 1 "$ROUNDS"); do
  for mode in "${MODES[@]}"; do
    out=$(run "$mode")
    t=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' <<<"$out" | head -1)
    l=$(sed -n 's/^latency average = \([0-9.]*\) ms/\1/p' <<<"$out" | head -1)
    [[ -n $t ]] || { echo "bench: $mode failed:"; tail -5 <<<"$out"; exit 1; }
    TPS[$mode]+="$t "; LAT[$mode]+="$l "
    printf '  round %d %-10s %10.0f tps %8s ms\n' "$round" "$mode" "$t" "$l"
  done
done
dt=$(median <<<"${TPS[direct]}"); dl=$(median <<<"${LAT[direct]}")
printf '\n%-10s %12s %10s %12s %14s\n' mode median_tps ratio latency_ms added_ms
for mode in "${MODES[@]}"; do
  t=$(median <<<"${TPS[$mode]}"); l=$(median <<<"${LAT[$mode]}")
  awk -v m="$mode" -v t="$t" -v d="$dt" -v l="$l" -v dl="$dl" 'BEGIN { printf "%-10s %12.0f %10.2f %12.3f %14.3f\n", m, t, t/d, l, l-dl }'
done
echo "audit lines written by interlock: $(grep -c '"event":"query"' "$B/audit.jsonl" || true)"
[[ -d $B/recordings ]] && echo "recorded by interlock: $(find "$B/recordings" -type f | wc -l) sessions, $(du -sb "$B/recordings" | cut -f1) bytes"
true
