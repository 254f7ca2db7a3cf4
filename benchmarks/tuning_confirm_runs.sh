#!/bin/bash
# Issue 25's confirmation: the rows, tiers and order registered in
# docs/research/tuning-preregistration.md (part 2, section 2.4), run one suite after another.
#
#   cd CHECKOUT_AT_d4d4967 && bash /path/to/benchmarks/tuning_confirm_runs.sh [RUNS_DIR]
#   DRY=1 bash benchmarks/tuning_confirm_runs.sh     # print the commands, run nothing
#
# Every row of a (task, seed) group must come from one commit, the part-2 commit `d4d4967`,
# so this runs in a checkout (a git worktree) pinned there and refuses any other; this file
# was committed after it, so call it by its path in another checkout. Cells already in
# benchmarks/results/<suite> are skipped: copy the committed ones into the pinned checkout
# first, and a stopped run continues where it stopped. Finished cells land in the pinned
# checkout's benchmarks/results/<suite>; commit them on main as they come.
set -u
PINNED=d4d4967
RUNS=${1:-runs/bench}
PYTHON=${PYTHON:-python}
# this checkout's gpbt, not an installed (e.g. editable, elsewhere) one
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"

if [ -z "${DRY:-}" ]; then
  head=$(git rev-parse --short=7 HEAD 2>/dev/null)
  if [ "$head" != "$PINNED" ] || ! git diff --quiet HEAD -- src; then
    here=${head:-not a git checkout}
    echo "tuning_confirm_runs: run this in a checkout at $PINNED with src/ unchanged (here:" \
         "$here); e.g. git worktree add --detach ../confirm $PINNED" >&2
    exit 2
  fi
fi

run() { # suite, rows...
  local suite=$1
  shift
  local cmd=("$PYTHON" -m gpbt.cli bench "$suite" --methods "$@"
             --results "benchmarks/results/$suite" --out "$RUNS/$suite")
  if [ -n "${DRY:-}" ]; then
    echo "${cmd[*]}"
    return
  fi
  echo "== $(date -u +%FT%TZ) $suite $*"
  "${cmd[@]}" || exit $?
}

# tier 1 (deciding: C1-C4, S1): the long suites, cheapest first, then the held-out ones
for suite in confirm-impala confirm-ppo confirm-brax confirm-holdout-ppo confirm-holdout-impala; do
  run "$suite" default pbt mf-pbt
done
# tier 2 (S2; the paper's claim re-tested)
for suite in confirm-impala confirm-ppo confirm-brax; do
  run "$suite" random gpbt-pl pb2
done
# tier 3
for suite in confirm-impala confirm-ppo confirm-brax; do
  run "$suite" pbt-anchored
done
