"""Peak memory vs video length: sam2flow's process_video against the official whole-video SAM2 predictor.

Each case runs in its own process and reports its peak resident set size (``ru_maxrss``). Both use the same
random-weight SAM2.1 tiny rebuilt at 256 px (memory does not depend on weight values), the same synthetic clip and
one object prompted by a box on frame 0.

    .venv/bin/python -m benchmarks.memory [--lengths 300 3000] [--json out/memory.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

from benchmarks.common import ROOT, bench_squares, peak_mib, run_child, squares_clip

LENGTH = int(os.environ.get("SAM2FLOW_BENCH_LENGTH", "200"))


def _clip(path: Path, frames: int) -> Path:
    return squares_clip(path, frames, objects=1)


def run_sam2flow(video: str, out: str) -> dict[str, float]:
    """One process_video run (ephemeral Prefect) with the smoke models: the random detector prompts one object in
    every subsequence."""
    from sam2flow.flows.process_video import process_video

    from sam2flow.config import load_config

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", type=int, nargs=2, default=[300, 3000], help="short and long clip lengths")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    results: dict[str, dict[int, dict[str, float]]] = {"sam2flow": {}, "official": {}}
    with tempfile.TemporaryDirectory(prefix="sam2flow-bench-") as tmp:
        for n in args.lengths:
            video = str(_clip(Path(tmp) / f"clip{n}.mp4", n))
            for kind in ("sam2flow", "official"):
                work = tempfile.mkdtemp(dir=tmp)
                results[kind][n] = _child(kind, video, work)
                print(f"{kind:9} {n:6d} frames: peak RSS {results[kind][n]['peak_rss_mib']:8.0f} MiB "
                      f"({results[kind][n]['seconds']:.0f} s)", flush=True)  # fmt: skip
    short, long = args.lengths
    print(f"\npeak RSS ratio {long} vs {short} frames (target for sam2flow <= 1.15):")
    summary = {}
    for kind in ("sam2flow", "official"):
        ratio = results[kind][long]["peak_rss_mib"] / results[kind][short]["peak_rss_mib"]
        summary[kind] = ratio
        print(f"  {kind:9} {ratio:.3f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"results": results, "ratio": summary, "lengths": args.lengths}, indent=2))


if __name__ == "__main__":
    main()
