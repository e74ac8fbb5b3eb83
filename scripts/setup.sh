#!/usr/bin/env bash
# Set up everything sam2flow needs on a fresh Debian/Ubuntu machine with Python 3.11:
# the ffmpeg/ffprobe binaries, PostgreSQL (for the service test), Chromium (for the report's browser test), a virtualenv in .venv, and the pinned dependencies (constraints.txt).
# Safe to run again: finished steps are skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

apt_packages=()
command -v ffmpeg >/dev/null && command -v ffprobe >/dev/null || apt_packages+=(ffmpeg)
# PostgreSQL backs the Prefect server in the service test (tests/test_server.py starts its own throwaway cluster).
{ command -v initdb >/dev/null || compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; } || apt_packages+=(postgresql)
# Chromium renders the HTML report in tests/test_report.py (driven by Playwright, pointed at this browser).
command -v chromium >/dev/null || command -v chromium-browser >/dev/null || apt_packages+=(chromium)
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
"$PYTHON" -c 'import sys; assert sys.version_info[:2] in ((3, 11), (3, 12)), sys.version' \
  || { echo "sam2flow needs Python 3.11 (or 3.12); set PYTHON=/path/to/python3.11" >&2; exit 1; }
"$PYTHON" -c 'import venv, ensurepip' 2>/dev/null || apt_packages+=(python3-venv)
if [ ${#apt_packages[@]} -gt 0 ]; then
  say "installing system packages: ${apt_packages[*]}"
  as_root apt-get update -q
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -q --no-install-recommends "${apt_packages[@]}"
fi

if [ ! -x .venv/bin/python ]; then
  say "creating .venv with $PYTHON"
  "$PYTHON" -m venv .venv
fi

stamp=.venv/.setup-stamp
want=$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  # torch and its CUDA libraries make .venv about 7.5 GB: say so up front rather than fail half-way with ENOSPC.
  free_gb=$(( $(df -Pk . | awk 'NR==2 {print $4}') / 1024 / 1024 ))
  if [ "$free_gb" -lt 10 ]; then
    echo "setup needs about 10 GB free for .venv; $PWD has $free_gb GB free. Free some space and run it again." >&2
    exit 1
  fi
  say "installing pinned dependencies (torch is large: this takes a few minutes the first time)"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -c constraints.txt -e '.[dev]'
  echo "$want" > "$stamp"
else
  say "dependencies already installed"
fi
say "ready: $(.venv/bin/sam2flow --help >/dev/null && echo 'sam2flow OK'), $(ffmpeg -version | head -n1)"
