#!/usr/bin/env bash
# SSH through interlock vs direct, alternated in one run on loopback: the round trip of
# `ssh target true` (connection, key exchange, login, one exec) and bulk throughput
# (`cat` of a file on the server to /dev/null). Prints medians and ratios to direct.
#
# Usage: bench/ssh.sh [round trips per round=20] [rounds=3] [MiB for throughput=100]
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
[[ $(id -u) == 0 ]] || { echo "bench: run as root"; exit 1; }
N=${1:-20}; ROUNDS=${2:-3}; MIB=${3:-100}
((N > 0 && N <= 200 && ROUNDS > 0 && ROUNDS <= 10 && MIB > 0 && MIB <= 2048)) || { echo "bench: round trips 1..200, rounds 1..10, MiB 1..2048"; exit 1; }
bash deploy/setup.sh >/dev/null

B=/tmp/interlock-bench-ssh
CG2=$(awk '$3=="cgroup2"{print $2; exit}' /proc/mounts)
AGENT_CG=$CG2/interlock-bench-ssh.slice/bench.service
USER_NAME=ildeploy

cleanup() {
  set +e
  [[ -n ${DAEMON:-} ]] && kill "$DAEMON" 2>/dev/null && wait "$DAEMON" 2>/dev/null
  node dist/cli/main.js detach --config "$B/interlock.yaml" >/dev/null 2>&1
  [[ -f $B/sshd.pid ]] && kill "$(cat "$B/sshd.pid")" 2>/dev/null
  rmdir "$AGENT_CG" "$CG2/interlock-bench-ssh.slice" 2>/dev/null
}
trap cleanup EXIT
cleanup
rm -rf "$B"; mkdir -p "$B"; chmod 755 "$B"; mkdir -p /run/sshd

# sshd on 127.0.0.4:22; the login user's only key is the one interlock holds
id "$USER_NAME" >/dev/null 2>&1 || useradd --create-home --shell /bin/sh "$USER_NAME"
usermod -p '*' "$USER_NAME"
ssh-keygen -q -t ed25519 -N '' -f "$B/host_key"
ssh-keygen -q -t ed25519 -N '' -f "$B/vaulted_key"
cp "$B/vaulted_key.pub" "$B/authorized_keys"
cat >"$B/sshd_config" <<CONF
ListenAddress 127.0.0.4:22
HostKey $B/host_key
PidFile $B/sshd.pid
AuthorizedKeysFile $B/authorized_keys
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
AllowUsers $USER_NAME
MaxStartups 100
CONF
/usr/sbin/sshd -f "$B/sshd_config" -E "$B/sshd.log"
echo "127.0.0.4 $(cut -d' ' -f1,2 "$B/host_key.pub")" >"$B/upstream_known_hosts"
head -c $((MIB * 1024 * 1024)) /dev/urandom >"$B/blob"; chmod 644 "$B/blob"

cat >"$B/interlock.yaml" <<YAML
agents: { cgroup: /interlock-bench-ssh.slice }
proxy: { ports: { postgres: 15444, ssh: 15445, kubernetes: 15446 } }
bpf: { pinDir: /sys/fs/bpf/interlock-bench-ssh }
control: { socket: $B/control.sock }
ssh: { hostKey: $B/node_host_key }
tls: { caCert: $B/node-ca.crt, caKey: $B/node-ca.key }
workloads: [ { name: bench, match: { cgroup: /interlock-bench-ssh.slice/bench.service }, groups: [bench] } ]
targets:
  - name: build-host
    protocol: ssh
    address: 127.0.0.4:22
    upstream: { user: $USER_NAME, privateKey: { file: $B/vaulted_key }, knownHosts: { file: $B/upstream_known_hosts } }
policies:
  - name: bench
    subjects: { groups: [bench] }
    targets: [build-host]
    rules:
      - { action: deny, match: { commands: ["rm *"] } }
      - { action: allow, match: { commands: ["true", "cat $B/*"] } }
audit: { file: $B/audit.jsonl }
recording: { enabled: ${BENCH_RECORDING_ENABLED:-true}, dir: ${BENCH_RECORDING_DIR:-$B/recordings}, key: { file: $B/recording.key }${BENCH_RECORDING_EXTRA:+, $BENCH_RECORDING_EXTRA} }
YAML
node ${BENCH_NODE_FLAGS:-} dist/cli/main.js run --config "$B/interlock.yaml" 2>"$B/daemon.log" &
DAEMON=$!
for _ in $(seq 1 100); do grep -q 'interlock ready' "$B/daemon.log" && break; sleep 0.1; done
grep -q 'interlock ready' "$B/daemon.log" || { cat "$B/daemon.log"; exit 1; }
node dist/cli/main.js ssh-known-hosts --config "$B/interlock.yaml" >"$B/agent_known_hosts" 2>/dev/null
mkdir -p "$AGENT_CG"

SSH_OPTS=(-F /dev/null -o BatchMode=yes -o StrictHostKeyChecking=yes -o GlobalKnownHostsFile=/dev/null)
ssh_as() { # mode, remote command...
  local mode=$1; shift
  case $mode in
    direct) ssh "${SSH_OPTS[@]}" -o UserKnownHostsFile="$B/upstream_known_hosts" -i "$B/vaulted_key" "$USER_NAME@127.0.0.4" "$@" ;;
    interlock) in_cgroup "$AGENT_CG" \
      ssh "${SSH_OPTS[@]}" -o UserKnownHostsFile="$B/agent_known_hosts" -o IdentityFile=/dev/null "$USER_NAME@127.0.0.4" "$@" ;;
  esac
}

declare -A RTT MBS
echo "ssh round trips ($N per round) and a ${MIB} MiB cat, $ROUNDS rounds alternated, OpenSSH on 127.0.0.4, $(nproc) cores"
for round in $(seq 1 "$ROUNDS"); do
  for mode in direct interlock; do
    t0=$(now)
    for _ in $(seq 1 "$N"); do ssh_as "$mode" true; done
    t1=$(now)
    ssh_as "$mode" cat "$B/blob" >"$B/out.$mode"
    t2=$(now)
    cmp -s "$B/blob" "$B/out.$mode" || { echo "bench: $mode transferred different bytes"; exit 1; }
    rtt=$(awk -v a="$t0" -v b="$t1" -v n="$N" 'BEGIN { printf "%.2f", (b - a) * 1000 / n }')
    mbs=$(awk -v a="$t1" -v b="$t2" -v m="$MIB" 'BEGIN { printf "%.1f", m / (b - a) }')
    RTT[$mode]+="$rtt "; MBS[$mode]+="$mbs "
    printf '  round %d %-10s %8s ms per ssh true %8s MiB/s cat\n' "$round" "$mode" "$rtt" "$mbs"
  done
done
dr=$(median <<<"${RTT[direct]}"); dm=$(median <<<"${MBS[direct]}")
ir=$(median <<<"${RTT[interlock]}"); im=$(median <<<"${MBS[interlock]}")
printf '\n%-10s %14s %10s %14s %10s\n' mode ms_per_true ratio MiB_per_s ratio
awk -v m=direct -v r="$dr" -v d="$dr" -v t="$dm" -v dt="$dm" 'BEGIN { printf "%-10s %14.2f %10.2f %14.1f %10.2f\n", m, r, r/d, t, t/dt }'
awk -v m=interlock -v r="$ir" -v d="$dr" -v t="$im" -v dt="$dm" 'BEGIN { printf "%-10s %14.2f %10.2f %14.1f %10.2f\n", m, r, r/d, t, t/dt }'
echo "(latency ratio: lower is better, target <= 1.3; throughput ratio: higher is better, target >= 0.7)"
