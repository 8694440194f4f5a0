#!/usr/bin/env bash
# Concurrent PostgreSQL sessions held on one node (policy, masking and recording on):
# JS heap per idle session and the time to open them, from the real daemon.
#   bench/sessions.sh [processes] [sessions-per-process]     (default 4 × 250)
# Runs test/e2e/load.test.ts, which asserts every session was served, masked, audited
# and recorded, and prints the measurement; PostgreSQL's max_connections follows.
set -euo pipefail
cd "$(dirname "$0")/.."
export INTERLOCK_LOAD_PROCESSES=${1:-4} INTERLOCK_LOAD_PER_PROCESS=${2:-250} INTERLOCK_REQUIRE_BPF=1
npx vitest run test/e2e/load.test.ts 2>&1 | sed 's/\x1b\[[0-9;]*m//g' | grep -E '^load: |Tests '
