#!/usr/bin/env bash
# The whole test suite: lint, format check, type check, then pytest (unit, integration and end-to-end tests).
# Extra arguments go to pytest, e.g. scripts/test.sh -m "not slow".
set -euo pipefail
cd "$(dirname "$0")/.."
export PREFECT_SERVER_ANALYTICS_ENABLED=false
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy sam2flow flows tasks
.venv/bin/python -m pytest -ra --durations=10 "$@"
