#!/usr/bin/env bash
# The demo on embedded defaults: a local PostgreSQL on 127.0.0.3:5432, interlock
# attached to /agents.slice, three sample agents run as `nobody` inside it, then the
# audit trail showing who ran what. Everything is torn down at the end.
set -euo pipefail
cd "$(dirname "$0")/../.."
[[ $(id -u) == 0 ]] || { echo "demo: run as root (it attaches eBPF programs and creates cgroups)"; exit 1; }
bash deploy/setup.sh

DEMO=/tmp/interlock-demo
PGBIN=/usr/lib/postgresql/15/bin
CG2=$(awk '$3=="cgroup2"{print $2; exit}' /proc/mounts)
PG_PASS=demo-vaulted-pw-$RANDOM$RANDOM
interlock() { node dist/cli/main.js "$@"; }

cleanup() {
  set +e
  [[ -n ${DAEMON:-} ]] && kill "$DAEMON" 2>/dev/null && wait "$DAEMON" 2>/dev/null
  interlock detach --config "$DEMO/interlock.yaml" >/dev/null 2>&1 || true
  [[ -f $DEMO/pg/data/postmaster.pid ]] && su postgres -s /bin/sh -c "$PGBIN/pg_ctl -D $DEMO/pg/data -m fast -w stop" >/dev/null 2>&1
  find "$CG2/agents.slice" -mindepth 1 -depth -type d -exec rmdir {} + 2>/dev/null || true
  rmdir "$CG2/agents.slice" 2>/dev/null || true
}
trap cleanup EXIT
cleanup
rm -rf "$DEMO"; mkdir -p "$DEMO/pg" "$DEMO/secrets"; chmod 755 "$DEMO"; chmod 700 "$DEMO/secrets"; chown postgres "$DEMO/pg"

echo "== starting PostgreSQL 15 on 127.0.0.3:5432 (SCRAM) =="
su postgres -s /bin/sh -c "echo superpw > $DEMO/pg/pw && $PGBIN/initdb -D $DEMO/pg/data -A scram-sha-256 --pwfile=$DEMO/pg/pw >/dev/null"
cat >>"$DEMO/pg/data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.3'
port = 5432
unix_socket_directories = '$DEMO/pg'
CONF
su postgres -s /bin/sh -c "$PGBIN/pg_ctl -D $DEMO/pg/data -l $DEMO/pg/log -w start >/dev/null"
PGPASSWORD=superpw psql -h "$DEMO/pg" -U postgres -d postgres -qAtX -v ON_ERROR_STOP=1 >/dev/null <<SQL
CREATE ROLE app LOGIN PASSWORD '$PG_PASS';
CREATE DATABASE orders OWNER app;
SQL
PGPASSWORD=$PG_PASS psql -h 127.0.0.3 -U app -d orders -qAtX -v ON_ERROR_STOP=1 >/dev/null <<'SQL'
CREATE TABLE customers (id int primary key, name text, email text, note text);
INSERT INTO customers VALUES (1,'Ada Lovelace','ada@example.com','vip'),(2,'Alan Turing','alan@example.org','card 4111 1111 1111 1111 on file'),(3,'Grace Hopper','grace@example.net','call grace@example.net');
CREATE VIEW orders_summary AS SELECT name, length(name) * 100 AS total FROM customers;
SQL
printf '%s' "$PG_PASS" >"$DEMO/secrets/orders-db"; chmod 600 "$DEMO/secrets/orders-db"

cat >"$DEMO/interlock.yaml" <<YAML
agents:
  cgroup: /agents.slice
workloads:
  - name: report-bot
    match: { cgroup: /agents.slice/report-bot.service }
    groups: [analysts]
  - name: sync-job
    match: { cgroup: /agents.slice/sync-job.service }
    groups: [analysts]
  - name: rogue
    match: { cgroup: /agents.slice/rogue.service }
targets:
  - name: orders-db
    protocol: postgres
    address: 127.0.0.3:5432
    upstream:
      user: app
      password: { file: $DEMO/secrets/orders-db }
      database: orders
policies:
  - name: analysts-read
    subjects: { groups: [analysts] }
    targets: [orders-db]
    rules:
      - { action: deny, match: { functions: [pg_read_file, pg_read_binary_file, lo_export, lo_import, "dblink*", pg_terminate_backend] }, message: "dangerous function" }
      - { action: deny, match: { statements: [drop, truncate, alter] }, message: "no schema changes" }
      - { action: allow, match: { statements: [select], relations: ["public.*"], access: read } }
      - { action: approve, match: { statements: [insert, update, delete, merge] }, approvers: [dba] }
      - { action: allow, match: { statements: [set, transaction] } }
    masking:
      - { columns: ["customers.email"], strategy: partial }
      - { detectors: [credit_card, email], strategy: redact }
audit:
  file: $DEMO/audit.jsonl
recording:
  dir: $DEMO/recordings
  key: { file: $DEMO/etc/recording.key }
ssh: { hostKey: $DEMO/etc/ssh_host_ed25519_key }
tls: { caCert: $DEMO/etc/node-ca.crt, caKey: $DEMO/etc/node-ca.key }
YAML

echo "== interlock run --config $DEMO/interlock.yaml =="
interlock run --config "$DEMO/interlock.yaml" 2>"$DEMO/daemon.log" &
DAEMON=$!
for _ in $(seq 1 100); do grep -q 'interlock ready' "$DEMO/daemon.log" 2>/dev/null && break; sleep 0.1; done
grep -q 'interlock ready' "$DEMO/daemon.log" || { cat "$DEMO/daemon.log"; exit 1; }

as_agent() { # unit, command...: run inside /agents.slice/<unit> as nobody, like a systemd agent unit
  local cg="$CG2/agents.slice/$1"; shift
  mkdir -p "$cg"
  sh -c 'echo $$ > "$0/cgroup.procs" && shift && exec "$@"' "$cg" _ \
    setpriv --reuid=nobody --regid=nogroup --clear-groups env -i HOME=/tmp PATH=/usr/bin:/bin "$@"
}

echo; echo "== agents at work (none of them holds a password) =="
as_agent report-bot.service sh deploy/demo/agents/report-bot.sh
as_agent sync-job.service node "$PWD/deploy/demo/agents/sync-job.mjs"
as_agent rogue.service sh deploy/demo/agents/rogue.sh
echo; echo "== the same from outside the agents' cgroup: not intercepted, so no credential =="
psql -h 127.0.0.3 -U app -d orders -w -c 'select 1' 2>&1 | sed 's/^/root shell: /' || true

echo; echo "== interlock status =="
interlock status --config "$DEMO/interlock.yaml" || true

sleep 0.3
echo; echo "== audit trail ($DEMO/audit.jsonl) =="
node -e '
  for (const line of require("fs").readFileSync(process.argv[1], "utf8").split("\n").filter(Boolean)) {
    const e = JSON.parse(line);
    const who = e.workload ? `${e.workload} pid=${e.pid} uid=${e.uid} comm=${e.comm}` : "";
    const what = e.query ?? e.reason ?? (e.counts ? `${e.tag}: masked ${JSON.stringify(e.counts)}` : "") ?? "";
    const verdict = e.decision ? `[${e.decision}${e.rule ? " " + e.rule : ""}] ` : "";
    console.log(`${e.time.slice(11, 23)} ${e.event.padEnd(16)} ${who.padEnd(46)} ${verdict}${what || (e.targets ? "targets " + e.targets : "")}`);
  }' "$DEMO/audit.jsonl"
echo; echo "== recorded sessions (interlock sessions list) =="
interlock sessions list --config "$DEMO/interlock.yaml"
FIRST=$(interlock sessions list --workload report-bot --config "$DEMO/interlock.yaml" | awk 'NR==2 {print $1}')
if [[ -n $FIRST ]]; then
  echo; echo "== interlock replay $FIRST: what report-bot did and saw =="
  interlock replay "$FIRST" --config "$DEMO/interlock.yaml" | head -60
fi
echo; echo "== interlock verify --all: every recording's hash chain and HMACs =="
interlock verify --all --config "$DEMO/interlock.yaml"
echo; echo "== interlock review --since 1d: access review and a suggested least-privilege policy =="
interlock review --since 1d --config "$DEMO/interlock.yaml" | head -80
echo; echo "demo done: the daemon, the redirect and PostgreSQL are torn down on exit"
