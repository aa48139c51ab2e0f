#!/usr/bin/env bash
# Runs lint, type checks and the whole test suite against real servers started by the tests.
set -uo pipefail
cd "$(dirname "$0")/.."
export DO_NOT_TRACK=1 PYTHONUNBUFFERED=1
.venv/bin/ruff check . || exit 1
.venv/bin/mypy || exit 1
.venv/bin/python -m pytest -q -p no:cacheprovider --durations=15 "$@"
rc=$?
# pytest exit 5 means no test was collected: that is a failure for us, never a pass.
if [[ $rc -eq 5 ]]; then echo "no tests collected"; exit 1; fi
exit $rc
