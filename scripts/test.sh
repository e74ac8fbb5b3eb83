#!/usr/bin/env bash
# The whole test suite: lint, format check, type check, the documentation site, then pytest (unit, integration and end-to-end tests).
# Extra arguments go to pytest, e.g. scripts/test.sh -m "not slow".
set -euo pipefail
cd "$(dirname "$0")/.."
export PREFECT_SERVER_ANALYTICS_ENABLED=false
.venv/bin/ruff check .
.venv/bin/ruff format --check .
# mypy checks the installed layout, where flows/ and tasks/ are sam2flow.flows and sam2flow.tasks: a tree of links
# mirrors it (the build backend's package-dir mapping, which mypy cannot follow itself).
tree=$(mktemp -d)
trap 'rm -rf "$tree"' EXIT
cp -rs "$PWD/sam2flow" "$tree/sam2flow"
cp -rs "$PWD/flows" "$tree/sam2flow/flows"
cp -rs "$PWD/tasks" "$tree/sam2flow/tasks"
(cd "$tree" && "$OLDPWD/.venv/bin/mypy" --config-file "$OLDPWD/pyproject.toml" --cache-dir "$OLDPWD/.mypy_cache" -p sam2flow)
# The documentation site: --strict turns a broken link, a missing anchor or a page left out of the nav into a failure.
NO_MKDOCS_2_WARNING=1 .venv/bin/mkdocs build --strict --site-dir "$tree/site"
.venv/bin/python -m pytest -ra --durations=10 "$@"
