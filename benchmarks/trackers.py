"""SAM 3's tracker against SAM2 tiny on a CPU, as a user runs them: ``sam2flow run`` with ``configs/default.yaml``'s
settings, each tracker at its native input size (SAM2 1024 px, SAM 3 1008 px) and ``segmenter.precision: auto``, on
the same frames of `sam2flow.io.sample`'s clip (960×540) with the same boxes on frame 0 and the detector off.

Reported per tracker: the tracker's seconds (manifest ``sam2_seconds``: image encoder, memory attention, decoders,
memory encoder, for every frame) per frame, the run's wall time, and SAM 3's ratio to SAM2. Random weights (the
real builders, `random:<name>`): speed does not depend on weight values; mask quality cannot be measured here.

    .venv/bin/python -m benchmarks.trackers [--frames 8] [--objects 1] [--device cpu] [--json out/trackers.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
from datetime import date
from pathlib import Path
from typing import Any

from benchmarks.common import sam2flow_run, sample_box_prompts

TRACKERS = {"SAM2.1 tiny": "random:sam2.1_hiera_tiny", "SAM 3": "random:sam3"}


def run_tracker(clip: Path, out: Path, checkpoint: str, frames: int, objects: int, device: str) -> dict[str, Any]:
    """One ``sam2flow run`` of ``frames`` frames with ``checkpoint`` and ``objects`` boxes on frame 0."""
    from sam2flow.manifest import read_manifest

    sets = [f"segmenter.checkpoint={checkpoint}", "detector.enabled=false", f"video.max_frames={frames}",
            f"runtime.device={device}", "render.enabled=false", sample_box_prompts(objects)]  # fmt: skip
    run_dir, wall = sam2flow_run(clip, out, sets)
    seg = read_manifest(str(run_dir)).stages.segment
    assert seg is not None
    return {
        "wall_s": wall,
        "tracker_s": seg.sam2_seconds,
        "s_per_frame": seg.sam2_seconds / frames,
        "precision": sorted({str(s.precision) for s in seg.subsequences}),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--objects", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    from sam2flow.io.sample import write_sample

    result: dict[str, Any] = {
        "date": date.today().isoformat(),
        "machine": platform.processor() or platform.machine(),
        "frames": args.frames,
        "objects": args.objects,
        "trackers": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        clip = write_sample(Path(tmp) / "clip.mp4", frames=args.frames)
        for name, ckpt in TRACKERS.items():
            out = Path(tmp) / name.replace(" ", "_")
            out.mkdir()
            r = run_tracker(clip, out, ckpt, args.frames, args.objects, args.device)
            result["trackers"][name] = r
            detail = f"tracker {r['tracker_s']:.1f} s, run {r['wall_s']:.1f} s, {'/'.join(r['precision'])}"
            print(f"{name:12} {r['s_per_frame']:6.2f} s/frame ({detail})", flush=True)
    sam2, sam3 = (result["trackers"][n]["s_per_frame"] for n in TRACKERS)
    result["sam3_over_sam2"] = sam3 / sam2
    print(f"SAM 3 / SAM2 tiny, tracker seconds per frame: {sam3 / sam2:.1f}x")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
