#!/usr/bin/env bash
# kubectl through interlock vs direct, alternated in one run on loopback, against the
# API-server test fixture (there is no kube-apiserver here): `kubectl get pods` end to
# end (process start, discovery from a warm cache, the list as a Table). Prints medians
# and the ratio to direct.
#
# Usage: bench/kube.sh [kubectl runs per round=20] [rounds=3]
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
[[ $(id -u) == 0 ]] || { echo "bench: run as root"; exit 1; }
N=${1:-20}; ROUNDS=${2:-3}
((N > 0 && N <= 200 && ROUNDS > 0 && ROUNDS <= 10)) || { echo "bench: runs 1..200, rounds 1..10"; exit 1; }
bash deploy/setup.sh >/dev/null

B=/tmp/interlock-bench-kube
CG2=$(awk '$3=="cgroup2"{print $2; exit}' /proc/mounts)
AGENT_CG=$CG2/interlock-bench-kube.slice/bench.service
# direct runs join a cgroup outside the agents' one the same way, so both pay the same process start
DIRECT_CG=$CG2/interlock-bench-kube-direct.slice
TOKEN=bench-token-$RANDOM$RANDOM

cleanup() {
  set +e
  [[ -n ${DAEMON:-} ]] && kill "$DAEMON" 2>/dev/null && wait "$DAEMON" 2>/dev/null
  [[ -n ${API:-} ]] && kill "$API" 2>/dev/null && wait "$API" 2>/dev/null
  node dist/cli/main.js detach --config "$B/interlock.yaml" >/dev/null 2>&1
  rmdir "$AGENT_CG" "$CG2/interlock-bench-kube.slice" "$DIRECT_CG" 2>/dev/null
}
trap cleanup EXIT
cleanup
rm -rf "$B"; mkdir -p "$B"; chmod 755 "$B"
printf '%s\n' "$TOKEN" >"$B/token"; chmod 600 "$B/token"

# the API-server fixture on 127.0.0.6:6443 (its CA lands in $B/api)
cat >"$B/api.mjs" <<'JS'
const { startKubeApiServer } = await import(process.argv[2]);
const api = await startKubeApiServer({ host: '127.0.0.6', port: 6443, dir: process.argv[3], token: process.argv[4] });
console.log('api ready', api.caFile);
process.on('SIGTERM', async () => { await api.stop(); process.exit(0); });
JS
# the fixture is TypeScript: compiled next to node_modules so it finds its packages
FIXTURE=node_modules/.cache/interlock-bench
npx --no-install tsc test/helpers/kube-apiserver.ts --outDir "$FIXTURE" --module nodenext --moduleResolution nodenext \
  --target es2022 --skipLibCheck --esModuleInterop --types node >/dev/null
node "$B/api.mjs" "$PWD/$FIXTURE/kube-apiserver.js" "$B/api" "$TOKEN" >"$B/api.log" 2>&1 &
API=$!
for _ in $(seq 1 100); do grep -q 'api ready' "$B/api.log" && break; sleep 0.1; done
grep -q 'api ready' "$B/api.log" || { echo "bench: the API-server fixture did not start:"; cat "$B/api.log"; exit 1; }

cat >"$B/interlock.yaml" <<YAML
agents: { cgroup: /interlock-bench-kube.slice }
proxy: { ports: { postgres: 15454, ssh: 15455, kubernetes: 15456 } }
bpf: { pinDir: /sys/fs/bpf/interlock-bench-kube }
control: { socket: $B/control.sock }
ssh: { hostKey: $B/node_host_key }
tls: { caCert: $B/node-ca.crt, caKey: $B/node-ca.key }
workloads: [ { name: bench, match: { cgroup: /interlock-bench-kube.slice/bench.service }, groups: [bench] } ]
targets:
  - { name: cluster, protocol: kubernetes, address: 127.0.0.6:6443, upstream: { token: { file: $B/token }, ca: { file: $B/api/kube-ca.crt } } }
policies:
  - name: bench
    subjects: { groups: [bench] }
    targets: [cluster]
    rules:
      - { action: deny, match: { verbs: [delete, deletecollection] } }
      - { action: allow, match: { verbs: [get, list, watch], resources: [pods], namespaces: [shop] } }
    masking:
      - { detectors: [email, aws_key], strategy: redact }
audit: { file: $B/audit.jsonl }
recording: { dir: $B/recordings, key: { file: $B/recording.key } }
YAML
node dist/cli/main.js run --config "$B/interlock.yaml" 2>"$B/daemon.log" &
DAEMON=$!
for _ in $(seq 1 100); do grep -q 'interlock ready' "$B/daemon.log" && break; sleep 0.1; done
grep -q 'interlock ready' "$B/daemon.log" || { cat "$B/daemon.log"; exit 1; }
node dist/cli/main.js kubeconfig --target cluster --config "$B/interlock.yaml" >"$B/kubeconfig-interlock"
cat >"$B/kubeconfig-direct" <<KC
apiVersion: v1
kind: Config
clusters: [ { name: c, cluster: { server: "https://127.0.0.6:6443", certificate-authority: "$B/api/kube-ca.crt" } } ]
users: [ { name: u, user: { token: "$TOKEN" } } ]
contexts: [ { name: c, context: { cluster: c, user: u } } ]
current-context: c
KC
mkdir -p "$AGENT_CG" "$DIRECT_CG"

get_pods() { # mode
  case $1 in
    direct) in_cgroup "$DIRECT_CG" \
      kubectl --kubeconfig "$B/kubeconfig-direct" --cache-dir "$B/cache-direct" get pods -n shop >/dev/null ;;
    interlock) in_cgroup "$AGENT_CG" \
      kubectl --kubeconfig "$B/kubeconfig-interlock" --cache-dir "$B/cache-interlock" get pods -n shop >/dev/null ;;
  esac
}
get_pods direct; get_pods interlock # warm the discovery caches

declare -A MS
echo "kubectl get pods ($N per round), $ROUNDS rounds alternated, API-server fixture on 127.0.0.6:6443, $(nproc) cores"
for round in $(seq 1 "$ROUNDS"); do
  for mode in direct interlock; do
    t0=$(now)
    for _ in $(seq 1 "$N"); do get_pods "$mode"; done
    ms=$(awk -v a="$t0" -v b="$(now)" -v n="$N" 'BEGIN { printf "%.1f", (b - a) * 1000 / n }')
    MS[$mode]+="$ms "
    printf '  round %d %-10s %8s ms per kubectl get pods\n' "$round" "$mode" "$ms"
  done
done
d=$(median <<<"${MS[direct]}"); i=$(median <<<"${MS[interlock]}")
printf '\n%-10s %12s %8s\n' mode ms ratio
awk -v d="$d" 'BEGIN { printf "%-10s %12.1f %8.2f\n", "direct", d, 1 }'
awk -v d="$d" -v i="$i" 'BEGIN { printf "%-10s %12.1f %8.2f\n", "interlock", i, i/d }'
echo "(ratio: lower is better, target <= 1.2)"
