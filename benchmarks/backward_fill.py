"""Backward fill (`segmenter.backward_fill`): what it recovers and what it costs.

Quality: the replay test double feeds known masks (optionally noisy) through sam2flow's real prompting, part files
and stitcher on the stress scene (tests/replay.py STRESS: 96 frames, subsequences of 32 overlapping by 16), with
the detector run only every ``detect_every`` frames, so that objects entering between keyframes are found late.
TrackEval scores recall (CLEAR), IDF1 and HOTA against the exact ground truth.

Cost: the command a user runs, `sam2flow run` with configs/smoke.yaml (SAM2 tiny with random weights at 256 px on
this machine's device), with and without backward fill, read from each run's manifest: SAM2 seconds in all, and
those spent filling backwards.

    .venv/bin/python -m benchmarks.backward_fill [--json out/backward_fill.json] [--frames 160]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.common import ROOT, bench_squares, squares_clip
from sam2flow.manifest import read_manifest

NOISE = {"perfect": None, "jitter+erode+drop": (2, 1, 0.1)}


def quality(seeds: int) -> list[dict[str, Any]]:
    """Recall, IDF1 and HOTA with and without backward fill on the replayed stress scene (mean over seeds)."""
    sys.path.insert(0, str(ROOT))
    from sam2flow.readers.evaluate import evaluate
    from tests.replay import STRESS, STRESS_FRAMES, run_scene, write_davis

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        gt = write_davis(STRESS, STRESS_FRAMES, Path(tmp) / "gt")
        for every in (8, 16):
            for name, noise in NOISE.items():
                for fill in (False, True):
                    runs = [
                        evaluate(
                            str(run_scene(
                                STRESS, Path(tmp) / f"{every}-{name}-{fill}-{s}", STRESS_FRAMES, 32, 16, every=every,
                                seed=s, noise=noise, overrides=(f"segmenter.backward_fill={str(fill).lower()}",),
                            )),
                            gt,
                        )
                        for s in range(seeds if noise else 1)
                    ]  # fmt: skip
                    mean = {k: sum(r[k] for r in runs) / len(runs) for k in ("Recall", "IDF1", "HOTA", "IDSW")}
                    rows.append({"detect_every": every, "noise": name, "backward_fill": fill, **mean})
    print("replayed stress scene (4 objects, 96 frames, subsequences 32/16, parallel)")
    print(f"{'detect_every':>12} {'noise':18} {'fill':>5} {'Recall':>7} {'IDF1':>6} {'HOTA':>6} {'IDSW':>5}")
    for r in rows:
        print(
            f"{r['detect_every']:>12} {r['noise']:18} {r['backward_fill']!s:>5} {r['Recall']:7.3f} "
            f"{r['IDF1']:6.3f} {r['HOTA']:6.3f} {r['IDSW']:5.1f}"
        )
    return rows


def late_prompts(frames: int, length: int, overlap: int) -> list[dict[str, Any]]:
    """Box prompts on the clip's two squares: the first on frame 0, the second half-way into each subsequence (a
    late object in each, as a detector running every ``length / 2`` frames would find it)."""
    squares = bench_squares(2, frames)
    prompts = [{"frame": 0, "box": list(map(float, squares[0].box(0))), "class_name": "first"}]
    for start in range(0, frames - overlap, length - overlap):
        f = min(start + length // 2, frames - 1)
        prompts.append({"frame": f, "box": list(map(float, squares[1].box(f))), "class_name": "late"})
    return prompts


def cost(frames: int) -> list[dict[str, Any]]:
    """SAM2 seconds of `sam2flow run` (smoke config, detector off, a late prompt in every subsequence) with and
    without backward fill, from the manifests."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        clip = squares_clip(Path(tmp) / "clip.mp4", frames, objects=2)
        prompts = json.dumps(late_prompts(frames, 64, 16))
        for fill in (False, True):
            out = Path(tmp) / f"out-{fill}"
            cmd = [
                sys.executable, "-m", "sam2flow.cli", "run", str(clip), "--out", str(out),
                "--config", str(ROOT / "configs" / "smoke.yaml"),
                "--set", f"segmenter.backward_fill={str(fill).lower()}", "--set", "render.enabled=false",
                "--set", "detector.enabled=false", "--set", f"prompts={prompts}",
            ]  # fmt: skip
            subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            manifest = read_manifest(str(next(out.glob("*/manifest.json")).parent))
            seg = manifest.stages.segment
            assert seg is not None
            rows.append(
                {
                    "backward_fill": fill,
                    "sam2_seconds": seg.sam2_seconds,
                    "backfill_seconds": seg.backfill_seconds,
                    "backfill_rows": sum(s.backfill_rows for s in seg.subsequences),
                    "rows": sum(s.rows or 0 for s in seg.subsequences),
                    "wall_seconds": manifest.wall_seconds,
                }
            )
    print(
        f"\n`sam2flow run` with configs/smoke.yaml on a {frames}-frame clip (render off, a late prompt per subsequence)"
    )
    print(f"{'fill':>5} {'SAM2 s':>7} {'of it fill':>10} {'rows':>6} {'filled':>6} {'wall s':>7}")
    for r in rows:
        print(
            f"{r['backward_fill']!s:>5} {r['sam2_seconds']:7.1f} {r['backfill_seconds']:10.1f} {r['rows']:6d} "
            f"{r['backfill_rows']:6d} {r['wall_seconds']:7.1f}"
        )
    off, on = rows
    forward = on["sam2_seconds"] - on["backfill_seconds"]
    print(
        f"backward fill: +{on['backfill_seconds'] / forward:.0%} SAM2 time within its run (forward {forward:.1f} s); "
        f"run against run: {on['sam2_seconds'] / off['sam2_seconds'] - 1:+.0%}"
    )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--seeds", type=int, default=3, help="noise seeds averaged per noisy row")
    parser.add_argument("--frames", type=int, default=160, help="frames of the clip the cost is measured on")
    args = parser.parse_args()
    result = {"quality": quality(args.seeds), "cost": cost(args.frames)}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
