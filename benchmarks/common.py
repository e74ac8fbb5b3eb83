"""Helpers shared by the benchmarks: synthetic clips, peak memory, and running one case in its own process."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[1]


def peak_mib() -> float:
    """Peak resident set size of this process so far, in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def squares_clip(path: Path, frames: int, objects: int = 1, width: int = 320, height: int = 240) -> Path:
    """A synthetic clip with ``objects`` coloured squares (one per row band, moving slowly to the right)."""
    sys.path.insert(0, str(ROOT))
    from tests.synth import write_clip

    return write_clip(path, frames, width, height, squares=bench_squares(objects, frames, width, height))


def bench_squares(objects: int, frames: int, width: int = 320, height: int = 240) -> tuple[Any, ...]:
    """The squares of `squares_clip` (their boxes give the prompts)."""
    sys.path.insert(0, str(ROOT))
    from tests.synth import Square

    colours = [(230, 40, 40), (40, 200, 60), (60, 80, 230), (230, 200, 40), (200, 60, 200), (40, 200, 200)]
    band = (height - 20) // max(objects, 1)
    size = min(40, band - 4)
    speed = max(0.02, (width - size - 20) / max(frames, 1) * 0.8)
    return tuple(
        Square(colours[i % len(colours)], y=20 + i * band, x0=10 + 7 * i, speed=speed, size=size)
        for i in range(objects)
    )


def run_child(module: str, func: str, *args: Any, profile: Path | None = None, **kwargs: Any) -> dict[str, Any]:
    """Call ``module.func(*args, **kwargs)`` in a fresh Python process and return its JSON-able result.

    With ``profile``, the process runs under py-spy (every thread sampled) and the raw stacks go to that file.
    """
    env = {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "YOLO_OFFLINE": "1"}
    code = (
        f"import json, sys; from {module} import {func} as f; "
        f"print('RESULT', json.dumps(f(*json.loads(sys.argv[1]), **json.loads(sys.argv[2]))))"
    )
    cmd = [sys.executable, "-c", code, json.dumps(list(args)), json.dumps(kwargs)]
    if profile is not None:
        spy = Path(sys.executable).with_name("py-spy")
        record = ["record", "--format", "raw", "--rate", "50", "--nonblocking", "--threads", "--output", str(profile)]
        cmd = [str(spy), *record, "--", *cmd]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{module}.{func} failed:\n{proc.stderr[-3000:]}")
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
    return dict(json.loads(line[len("RESULT ") :]))


def tree_rss_mib(proc: psutil.Process) -> tuple[float, float]:
    """Resident memory of a process and of it with all its descendants, in MiB."""
    main = total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            rss = p.memory_info().rss / 2**20
        except psutil.Error:
            continue
        total += rss
        main = rss if p.pid == proc.pid else main
    return main, total


def sample_box_prompts(objects: int | None = None) -> str:
    """`sam2flow.io.sample`'s objects (the first ``objects``; all when None) as box prompts on frame 0, in the
    ``prompts=[…]`` form of ``--set``."""
    import numpy as np

    from sam2flow.io.sample import object_masks

    prompts = []
    for i, mask in enumerate(object_masks(0)[:objects], start=1):
        ys, xs = np.nonzero(mask)
        box = [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]
        prompts.append(f"{{frame: 0, obj_id: {i}, box: {box}, class_name: object{i}}}")
    return f"prompts=[{', '.join(prompts)}]"


def sam2flow_run(clip: Path, out: Path, sets: list[str]) -> tuple[Path, float]:
    """``sam2flow run`` on ``clip`` with configs/default.yaml and ``sets`` (``--set`` values), as a user types it;
    returns its run folder and wall seconds."""
    import time

    cmd = [str(Path(sys.executable).with_name("sam2flow")), "run", str(clip), "--out", str(out),
           "--config", str(ROOT / "configs" / "default.yaml")]  # fmt: skip
    for s in sets:
        cmd += ["--set", s]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"sam2flow run failed:\n{proc.stderr[-3000:]}")
    (run_dir,) = [p for p in out.iterdir() if p.is_dir()]
    return run_dir, wall
