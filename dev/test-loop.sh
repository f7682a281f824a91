#!/usr/bin/env bash
# `make test-loop`: the concurrency and restart tests, looped on their own
# (issue 10: they must pass LOOPS times in a row). A race that shows once in
# twenty runs is a bug, and one run of the whole suite does not find it.
#
#   dev/test-loop.sh                      # 20 rounds of every test below
#   LOOPS=5 dev/test-loop.sh              # fewer rounds
#   LOOP_TESTS="jupyterhub_service/tests/test_session_races.py" dev/test-loop.sh
#
# Each round is one pytest run of all the tests; the loop stops at the first
# failing round (its output stays in .dev/test-loop/round-N.log) and exits
# non-zero. Never a rerun: a round that fails is the answer.
set -uo pipefail
cd "$(dirname "$0")/.."

LOOPS=${LOOPS:-20}
DEFAULT_TESTS="jupyterhub_service/tests/test_session_races.py
jupyterhub_service/tests/test_admission.py
jupyterhub_service/tests/test_reconcile.py
tests/e2e/test_launch_flow.py::test_four_simultaneous_guests_with_two_slots_get_two_sessions_and_two_429s
tests/docker/test_docker_restart.py"
read -r -a TESTS <<< "$(echo ${LOOP_TESTS:-$DEFAULT_TESTS})"
LOGS=.dev/test-loop
mkdir -p "$LOGS"
rm -f "$LOGS"/round-*.log

start=$SECONDS
for round in $(seq 1 "$LOOPS"); do
    began=$SECONDS
    .venv/bin/pytest --ckan-ini=test.ini -q -p no:cacheprovider "${TESTS[@]}" \
        > "$LOGS/round-$round.log" 2>&1
    rc=$?
    summary=$(grep -E '^(=+ )?[0-9]+ (passed|failed)' "$LOGS/round-$round.log" | tail -1)
    echo "test-loop: round $round/$LOOPS: ${summary:-no summary} ($((SECONDS - began)) s)"
    if [ "$rc" -ne 0 ]; then
        echo "test-loop: round $round FAILED (exit $rc); see $LOGS/round-$round.log"
        exit 1
    fi
done
echo "test-loop: $LOOPS rounds in a row passed in $((SECONDS - start)) s"
