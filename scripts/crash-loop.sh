#!/usr/bin/env bash
# Long crash runs: SIGKILLs `rill produce` CYCLES times at random moments and checks after each
# kill that every acknowledged record is still stored exactly once at its acknowledged offset
# (tests/tests/crash.rs explains the checks). Builds the release binary first, so a cycle costs
# milliseconds rather than the debug build's tenths of a second.
#
# Usage: CYCLES=500 scripts/crash-loop.sh            (CYCLES=500 by default)
#        CRASH_SEED=1234 CYCLES=500 scripts/crash-loop.sh   replays a run's choices
# Ends with the test's summary line, `cycles=N acked=N lost=0 duplicated=0 corrupt=0`; exits
# non-zero if any record was lost, duplicated or corrupt (the data directory is kept and named).
set -euo pipefail
cd "$(dirname "$0")/.."

CYCLES=${CYCLES:-500}
TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
LOG=${LOG:-$TARGET_DIR/crash-loop.log}
mkdir -p "$(dirname "$LOG")"

cargo build --release -p rill --bin rill >&2
started=$(date +%s)
status=0
CRASH_CYCLES=$CYCLES cargo test --release -p rill-tests --test crash -- --nocapture 2>&1 \
  | tee "$LOG" >&2 || status=$?
elapsed=$(( $(date +%s) - started ))

seed=$(grep -Eo 'seed=[0-9]+' "$LOG" | head -1 || true)
echo "crash-loop: CYCLES=$CYCLES ${seed:-seed=?} took ${elapsed} s (status $status; log $LOG)" >&2
summary=$(grep -E '^cycles=[0-9]+ acked=[0-9]+ lost=[0-9]+ duplicated=[0-9]+ corrupt=[0-9]+$' "$LOG" | tail -1 || true)
if [ -z "$summary" ]; then
  echo "crash-loop: the crash test printed no summary line" >&2
  exit 1
fi
echo "$summary"
exit "$status"
