#!/usr/bin/env bash
# Everything a fresh machine needs before interlock builds, runs or tests: the BPF
# toolchain (clang, libbpf-dev, bpftool), PostgreSQL 15 and its clients (psql, asyncpg,
# psycopg), OpenSSH, setpriv,
# then `npm ci` (which compiles the BPF program, the addon and the TypeScript).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v clang >/dev/null || need+=(clang)
[[ -f /usr/include/bpf/libbpf.h ]] || need+=(libbpf-dev)
command -v bpftool >/dev/null || [[ -x /usr/sbin/bpftool ]] || need+=(bpftool)
[[ -x /usr/lib/postgresql/15/bin/initdb ]] || need+=(postgresql-15)
command -v psql >/dev/null || need+=(postgresql-client-15)
command -v pgbench >/dev/null || need+=(postgresql-contrib)
command -v setpriv >/dev/null || need+=(util-linux)
[[ -x /usr/sbin/sshd ]] || need+=(openssh-server)
command -v ssh >/dev/null || need+=(openssh-client)
command -v script >/dev/null || need+=(bsdutils)
# client libraries the masking e2e tests run as agents (the system python, as agents see it)
/usr/bin/python3 -c 'import asyncpg' 2>/dev/null || need+=(python3-asyncpg)
/usr/bin/python3 -c 'import psycopg' 2>/dev/null || need+=(python3-psycopg)
# the deployment tests (test/deploy): unit verification, the Ansible role, the Vagrantfile
command -v systemd-analyze >/dev/null || need+=(systemd)
command -v ansible-playbook >/dev/null || need+=(ansible-core)
command -v ansible-lint >/dev/null || need+=(ansible-lint)
command -v vagrant >/dev/null || need+=(vagrant)
command -v openssl >/dev/null || need+=(openssl)
[[ -x /usr/sbin/update-ca-certificates ]] || need+=(ca-certificates)
if ((${#need[@]})); then
  echo "setup: installing ${need[*]}" >&2
  if [[ $(id -u) != 0 ]]; then echo "setup: run as root to install ${need[*]}" >&2; exit 1; fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

mkdir -p /run/sshd # sshd's privilege separation directory (PID 1 may not be systemd)

# npm ci again only when the lock file or the native sources changed since the last build
stamp=node_modules/.interlock-build
sum=$(cat package-lock.json binding.gyp bpf/* native/* | sha256sum | cut -c1-16)
if [[ ! -f $stamp || $(cat "$stamp") != "$sum" || ! -f build/Release/interlock.node ]]; then
  npm ci --no-audit --no-fund
  echo "$sum" >"$stamp"
else
  npm run --silent build
fi
