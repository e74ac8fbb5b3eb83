#!/usr/bin/env bash
# The GPU benchmarks in one command, for a machine with one CUDA GPU and no network (the environment already set up
# there: .venv, ffmpeg). Runs benchmarks.suite and benchmarks.ceiling at SAM2's native 1024 px, and
# benchmarks.precision (official fp32, official bf16 autocast, sam2flow auto, sam2flow compiled) and benchmarks.trackers
# (SAM 3's tracker against SAM2 tiny through `sam2flow run`), each under its own time limit so the whole stays under
# 9 minutes, and writes one JSON with every result (a step that ran out of time or failed is recorded as such, with
# the tail of its log).
#
#     benchmarks/gpu.sh [OUT.json]        (default out/gpu.json)
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-out/gpu.json}
py=${PYTHON:-.venv/bin/python}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export YOLO_OFFLINE=1 PREFECT_SERVER_ANALYTICS_ENABLED=false HF_HUB_OFFLINE=1

step() {  # step NAME SECONDS ARGS...: run one benchmark under a time limit, its JSON to $tmp/NAME.json
    local name=$1 limit=$2
    shift 2
    echo "== $name (at most ${limit} s)"
    local t0=$SECONDS
    timeout "$limit" "$py" -m "$@" --json "$tmp/$name.json" >"$tmp/$name.log" 2>&1
    echo $? >"$tmp/$name.rc"
    echo $((SECONDS - t0)) >"$tmp/$name.seconds"
    tail -n 25 "$tmp/$name.log"
}

"$py" -c "import torch; assert torch.cuda.is_available(), 'no CUDA GPU visible'" || exit 2
step suite 190 benchmarks.suite --device cuda --image-size 1024 --objects 1 4 16 --frames 64 --length 48 \
    --overhead-frames 300 --overhead-length 150 --workers 1 2
step ceiling 80 benchmarks.ceiling --sizes 1080 --frames 240 --no-stages
step precision 170 benchmarks.precision --device cuda --objects 1 4 16 --frames 48 --e2e-frames 120 --compile
step trackers 90 benchmarks.trackers --device cuda --frames 48 --objects 4

mkdir -p "$(dirname "$out")"
"$py" - "$tmp" "$out" <<'PY'
import json, sys
from pathlib import Path

import torch

tmp, out = Path(sys.argv[1]), Path(sys.argv[2])
result = {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__, "steps": {}}
for name in ("suite", "ceiling", "precision", "trackers"):
    rc = int((tmp / f"{name}.rc").read_text())
    step = {"exit": rc, "seconds": int((tmp / f"{name}.seconds").read_text()), "timed_out": rc == 124}
    data = tmp / f"{name}.json"
    if data.is_file():
        step["result"] = json.loads(data.read_text())
    else:
        step["log_tail"] = (tmp / f"{name}.log").read_text()[-4000:]
    result["steps"][name] = step
out.write_text(json.dumps(result, indent=2))
print(f"wrote {out}: " + ", ".join(f"{k} exit {v['exit']} in {v['seconds']} s" for k, v in result["steps"].items()))
PY
