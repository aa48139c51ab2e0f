#!/usr/bin/env bash
# Runs `make lint` (ruff check, ruff format --check, mypy, the import contracts), then the test
# suite against real servers started by the tests. Arguments go to pytest (`-m "not slow"`
# is the fast tier: `make test-fast`).
set -uo pipefail
cd "$(dirname "$0")/.."
export DO_NOT_TRACK=1 PYTHONUNBUFFERED=1
make --no-print-directory lint || exit 1
.venv/bin/python -m pytest -q -p no:cacheprovider --durations=15 "$@"
rc=$?
# pytest exit 5 means no test was collected: that is a failure for us, never a pass.
if [[ $rc -eq 5 ]]; then echo "no tests collected"; exit 1; fi
exit $rc
