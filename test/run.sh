#!/usr/bin/env bash
# The whole test suite: set-up, then vitest (unit, integration, end-to-end through
# the real eBPF redirect). Ends with a plain "N passed, N failed" line.
set -uo pipefail
cd "$(dirname "$0")/.."
bash deploy/setup.sh || exit 1

report=$(mktemp /tmp/interlock-vitest-XXXXXX.json)
npx vitest run --reporter=default --reporter=json --outputFile="$report" "$@"
status=$?
node -e '
  const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
  const skipped = r.numPendingTests + r.numTodoTests;
  // a file that failed outside its tests (a failed beforeAll, the e2e gate under INTERLOCK_REQUIRE_BPF) counts as a failure
  const broken = r.testResults.filter((f) => f.status === "failed" && !f.assertionResults.some((t) => t.status === "failed")).length;
  console.log(`${r.numPassedTests} passed, ${r.numFailedTests + broken} failed` + (skipped ? `, ${skipped} skipped` : ""));
' "$report" || { echo "0 passed, 1 failed"; status=1; }
rm -f "$report"
exit $status
