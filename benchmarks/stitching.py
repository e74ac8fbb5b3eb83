"""Stitching quality under noise: the replay test double feeds known masks, with noise, through sam2flow's real
prompting, part files and stitcher; TrackEval scores the tracks against the exact ground truth.

The scene (tests/replay.py STRESS) has an object crossing every boundary, one entering and leaving inside overlaps,
and two look-alikes crossing each other inside an overlap; 96 frames in subsequences of 32 overlapping by 16. Modes:
parallel, carry, and parallel with a reference library of the four squares (made from a finished run of the scene).

    .venv/bin/python -m benchmarks.stitching [--json out/stitching.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

NOISE = {
    "perfect": None,
    "jitter 2px": (2, 0, 0.0),
    "erode 2px": (0, 2, 0.0),
    "drop 10%": (0, 0, 0.1),
    "jitter+erode+drop": (2, 1, 0.1),
}


def main() -> None:
    import sys

    sys.path.insert(0, str(ROOT))
    from sam2flow.readers.evaluate import evaluate
    from sam2flow.readers.references import make_references
    from tests.replay import STRESS, STRESS_FRAMES, finished_run, run_scene, write_davis

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--seeds", type=int, default=3, help="noise seeds averaged per row")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        gt = write_davis(STRESS, STRESS_FRAMES, Path(tmp) / "gt")
        # A reference library of the four squares, made from a finished run of the scene (frame 34 shows them all).
        (Path(tmp) / "lib-run").mkdir()
        lib = make_references(str(finished_run(STRESS, Path(tmp) / "lib-run", STRESS_FRAMES)), [34],
                              {1: "a", 2: "b", 3: "c", 4: "d"}, Path(tmp) / "lib")  # fmt: skip
        modes = {
            "parallel": ("chunking.mode=parallel",),
            "carry": ("chunking.mode=carry",),
            "references": ("chunking.mode=parallel", f"references.path={lib}"),
        }
        for mode, overrides in modes.items():
            for blind in (frozenset(), frozenset({2})):
                for name, noise in NOISE.items():
                    seeds = range(args.seeds if noise else 1)
                    runs = [
                        evaluate(
                            str(
                                run_scene(
                                    STRESS, Path(tmp) / f"{mode}-{len(blind)}-{name}-{s}", STRESS_FRAMES, 32, 16,
                                    every=1, seed=s, overrides=overrides, blind=blind, noise=noise,
                                )
                            ),
                            gt,
                        )
                        for s in seeds
                    ]  # fmt: skip
                    mean = {k: sum(r[k] for r in runs) / len(runs) for k in ("HOTA", "IDF1", "IDSW", "J&F")}
                    row = {"mode": mode, "detector": "blind in subseq 2" if blind else "ok", "noise": name, **mean}
                    rows.append(row)
    print(f"{'mode':10} {'detector':18} {'noise':18} {'HOTA':>6} {'IDF1':>6} {'IDSW':>5} {'J&F':>6}")
    for r in rows:
        print(
            f"{r['mode']:10} {r['detector']:18} {r['noise']:18} {r['HOTA']:6.3f} {r['IDF1']:6.3f} "
            f"{r['IDSW']:5.1f} {r['J&F']:6.3f}"
        )
    thin = thin_objects(args.seeds)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"stress": rows, "thin": thin}, indent=2))


RULES = {
    "fixed 0.3": {"iou": 0.3, "min_iou": 0.3},
    "fixed 0.5": {"iou": 0.5, "min_iou": 0.5},
    "margin (default, threshold 0.3)": {"iou": 0.3},
    "margin, threshold 0.5": {"iou": 0.5},
}


def thin_objects(seeds: int) -> list[dict[str, object]]:
    """Bars 1-3 px wide, crossing and touching, masks shifted by up to 2 px per frame: fragments and mixed tracks
    per stitching rule (mean over ``seeds``)."""
    from tests.replay import run_scene, thin_scene, track_purity

    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for width in (1, 2, 3):
            scene = thin_scene(width)
            for name, rule in RULES.items():
                got = [
                    track_purity(scene, run_scene(scene, Path(tmp) / f"{width}-{name}-{s}", 96, 32, 16, every=32,
                                                  seed=s, noise=(2, 0, 0.0), **rule))  # type: ignore[arg-type]
                    for s in range(seeds)
                ]  # fmt: skip
                rows.append({"width": width, "rule": name, **{k: sum(g[i] for g in got) / len(got)
                             for i, k in enumerate(("fragments", "mixed", "tracks"))}})  # fmt: skip
    print(f"\nthin objects (4 bars), 2 px jitter, mean over {seeds} seed(s)")
    print(f"{'width':>5} {'rule':34} {'fragments':>9} {'mixed':>6} {'tracks':>6}")
    for r in rows:
        print(f"{r['width']:>5} {r['rule']:34} {r['fragments']:9.1f} {r['mixed']:6.1f} {r['tracks']:6.1f}")
    return rows


if __name__ == "__main__":
    main()
