"""Peak memory vs video length: sam2flow against the official whole-video SAM2 predictor, and the real CLI.

Library cases (``--cases flow official``) run in their own process and report its peak resident set size
(``ru_maxrss``). They use the same random-weight SAM2.1 tiny rebuilt at 256 px (memory does not depend on weight
values), the same synthetic clip and one object prompted by a box on frame 0.

The ``cli`` case runs what a user types, ``sam2flow run CLIP --config configs/smoke.yaml --out OUT``, samples the
resident memory of the whole process tree (the CLI, Prefect's temporary server, ffmpeg) every 0.1 s, and reads the
main process's RSS after each subsequence from the run's manifest. It reports (a) the slope of that RSS per
subsequence over the second half of the run (goal: at most 0.5 MiB per subsequence) and (b) the peak of the whole
tree, long clip over short clip (goal: at most 1.10).

    .venv/bin/python -m benchmarks.memory [--lengths 300 3000] [--cases cli flow official] [--json out/memory.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from benchmarks.common import ROOT, bench_squares, peak_mib, run_child, squares_clip, tree_rss_mib
from sam2flow.manifest import read_manifest

LENGTH = int(os.environ.get("SAM2FLOW_BENCH_LENGTH", "200"))


def _clip(path: Path, frames: int) -> Path:
    return squares_clip(path, frames, objects=1)


def run_flow(video: str, out: str) -> dict[str, float]:
    """One process_video run (ephemeral Prefect) with the smoke models: the random detector prompts one object in
    every subsequence."""
    from sam2flow.config import load_config
    from sam2flow.flows.process_video import process_video

    cfg = load_config(
        ROOT / "configs" / "smoke.yaml",
        ["prompts=[]", "segmenter.max_objects=1", f"chunking.length={LENGTH}", "render.enabled=true"],
    )
    t0 = time.perf_counter()
    process_video(video=video, out=out, config=cfg)
    return {"seconds": time.perf_counter() - t0, "peak_rss_mib": peak_mib()}


def run_official(video: str, work: str) -> dict[str, float]:
    """The official way: JPEGs of the whole video, one init_state, a box on frame 0, propagate_in_video."""
    import torch
    from sam2.build_sam import build_sam2_video_predictor

    from sam2flow.models import weights
    from sam2flow.models.segmenter import image_size_overrides

    frames = Path(work) / "frames"
    frames.mkdir(parents=True)
    subprocess.run(
        ["ffmpeg", "-v", "error", "-i", video, "-q:v", "2", "-start_number", "0", str(frames / "%05d.jpg")], check=True
    )
    ckpt = weights.resolve("random:sam2.1_hiera_tiny", "sam2")
    predictor = build_sam2_video_predictor(
        ckpt.config, str(ckpt.path), device="cpu", hydra_overrides_extra=image_size_overrides(256)
    )
    t0 = time.perf_counter()
    with torch.inference_mode():
        state = predictor.init_state(str(frames))
        predictor.add_new_points_or_box(state, frame_idx=0, obj_id=1, box=list(bench_squares(1, 1)[0].box(0)))
        n = sum(1 for _ in predictor.propagate_in_video(state))
    return {"seconds": time.perf_counter() - t0, "peak_rss_mib": peak_mib(), "frames": n}


def _child(kind: str, video: str, work: str) -> dict[str, float]:
    return run_child("benchmarks.memory", f"run_{kind}", video, work)


def run_cli(video: str, work: str, interval: float = 0.1) -> dict[str, Any]:
    """`sam2flow run` with configs/smoke.yaml as a user types it; the process tree sampled every ``interval`` s."""
    out = Path(work) / "out"
    cmd = [sys.executable, "-m", "sam2flow.cli", "run", video, "--config", str(ROOT / "configs" / "smoke.yaml")]
    env = {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    t0 = time.perf_counter()
    proc = subprocess.Popen([*cmd, "--out", str(out)], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    handle = psutil.Process(proc.pid)
    peak_main = peak_tree = 0.0
    while proc.poll() is None:
        main, tree = tree_rss_mib(handle)
        peak_main, peak_tree = max(peak_main, main), max(peak_tree, tree)
        time.sleep(interval)
    if proc.returncode != 0:
        raise RuntimeError(f"sam2flow run exited {proc.returncode}")
    (run_dir,) = (p.parent for p in out.glob("*/manifest.json"))
    segment = read_manifest(str(run_dir)).stages.segment
    subs = segment.subsequences if segment else []
    rss = [s.rss_mib for s in subs if s.rss_mib is not None]
    half = rss[len(rss) // 2 :]
    slope = float(np.polyfit(np.arange(len(half)), half, 1)[0]) if len(half) >= 2 else 0.0
    return {
        "seconds": time.perf_counter() - t0,
        "subsequences": len(subs),
        "peak_main_mib": peak_main,
        "peak_tree_mib": peak_tree,
        "rss_per_subsequence_mib": rss,
        "slope_second_half_mib": slope,
    }


def _report_cli(results: dict[int, dict[str, Any]], short: int, long: int) -> dict[str, float]:
    for n, r in results.items():
        print(f"cli       {n:6d} frames: {r['subsequences']} subsequences, RSS slope over the second half "
              f"{r['slope_second_half_mib']:+.2f} MiB/subsequence, peak of the process tree {r['peak_tree_mib']:.0f} "
              f"MiB (main {r['peak_main_mib']:.0f}), {r['seconds']:.0f} s", flush=True)  # fmt: skip
    ratio = results[long]["peak_tree_mib"] / results[short]["peak_tree_mib"]
    print(f"cli: process-tree peak {long} vs {short} frames: {ratio:.3f} (goal <= 1.10); slope at {long} frames "
          f"{results[long]['slope_second_half_mib']:+.2f} MiB/subsequence (goal <= 0.5)")  # fmt: skip
    return {"tree_peak_ratio": ratio, "slope_long": results[long]["slope_second_half_mib"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", type=int, nargs=2, default=[300, 3000], help="short and long clip lengths")
    parser.add_argument("--cases", nargs="+", default=["cli", "flow", "official"], choices=["cli", "flow", "official"])
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    results: dict[str, dict[int, dict[str, Any]]] = {kind: {} for kind in args.cases}
    with tempfile.TemporaryDirectory(prefix="sam2flow-bench-") as tmp:
        for n in args.lengths:
            video = str(_clip(Path(tmp) / f"clip{n}.mp4", n))
            for kind in args.cases:
                work = tempfile.mkdtemp(dir=tmp)
                results[kind][n] = run_cli(video, work) if kind == "cli" else _child(kind, video, work)
                if kind != "cli":
                    print(f"{kind:9} {n:6d} frames: peak RSS {results[kind][n]['peak_rss_mib']:8.0f} MiB "
                          f"({results[kind][n]['seconds']:.0f} s)", flush=True)  # fmt: skip
    short, long = args.lengths
    summary: dict[str, Any] = {}
    if "cli" in results:
        summary["cli"] = _report_cli(results["cli"], short, long)
    library = [k for k in ("flow", "official") if k in results]
    if library:
        print(f"\npeak RSS ratio {long} vs {short} frames (target for sam2flow <= 1.15):")
    for kind in library:
        ratio = results[kind][long]["peak_rss_mib"] / results[kind][short]["peak_rss_mib"]
        summary[kind] = ratio
        print(f"  {kind:9} {ratio:.3f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"results": results, "ratio": summary, "lengths": args.lengths}, indent=2))


if __name__ == "__main__":
    main()
