"""The review list against errors injected where the truth is known.

A synthetic scene (squares entering, crossing and leaving in lanes) is segmented by the replay test double through
sam2flow's real prepare stage, driver and part files; then one error of each kind is injected into the part files
(an identity swap inside a subsequence, a dropped stretch, a spurious fragment, two objects merged, a seam where the
two sides disagree), each in its own subsequence, and the real stitch stage writes review.parquet. Per trial:
recall of the injected errors within the top 2 × (number injected) items, the precision of those items, and what
the list cost. `sam2flow evaluate` against the scene's exact ground truth also gives its review_recall@N.

    .venv/bin/python -m benchmarks.review [--trials 10] [--frames 480] [--json out/review.json]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
KINDS = ("swap", "drop", "spurious", "merge", "seam")
SETTINGS = ("detector.max_objects_per_keyframe=12", "segmenter.max_objects=16", "chunking.length=64",
            "detector.detect_every=16", "segmenter.backward_fill=true")  # fmt: skip


def lanes_scene(frames: int, seed: int) -> Any:
    """Squares in six lanes, each entering from a side at its own time and leaving at the other; two lanes carry
    squares in both directions, so some cross and hide each other."""
    from tests.replay import Scene
    from tests.synth import Square

    rng = random.Random(seed)
    width, height, squares = 640, 360, []
    for lane in range(6):
        for k in range(2 if lane in (1, 4) else 1):
            size = rng.randint(24, 40)
            speed = rng.uniform(1.6, 2.8) * (-1 if k else 1)
            first = rng.randint(0, frames // 4)
            start = -size if speed > 0 else width
            x0 = int(start - speed * first)
            last = min(frames - 1, first + int((width + size) / abs(speed)))
            colour = (40 + 30 * lane, 200 - 25 * lane, 60 + 80 * k)
            squares.append(Square(colour, y=20 + lane * 56, x0=x0, speed=speed, size=size, first=first, last=last))
    return Scene(tuple(squares), height=height, width=width)


def _present(job: Any, index: int, frames: range) -> list[int]:
    from tests.injections import objects_on

    return objects_on(job.part_uri(index), frames)


def inject(job: Any, rng: random.Random) -> list[Any]:
    """One error of each kind, each in its own subsequence (never the first or the last), inside the frames that
    subsequence contributes to the output."""
    from sam2flow.core.planning import overlap_frames, owned_ranges
    from tests import injections as inj

    owned = owned_ranges(list(job.plan))
    subs = list(range(1, len(job.plan) - 1))
    rng.shuffle(subs)
    done: list[Any] = []
    actions: dict[str, Callable[[int], Any]] = {}

    def span(index: int, length: int) -> range:
        o = owned[index]
        start = rng.randint(o.start + 2, max(o.start + 2, o.stop - length - 2))
        return range(start, min(start + length, o.stop - 1))

    def swap(index: int) -> Any:
        frames = span(index, 4)
        objs = _present(job, index, range(frames.start - 1, owned[index].stop))
        if len(objs) < 2:
            return None
        a, b = rng.sample(objs, 2)
        return inj.swap(job.part_uri(index), a, b, frames.start)

    def drop(index: int) -> Any:
        frames = span(index, rng.randint(6, 12))
        objs = _present(job, index, range(frames.start - 1, frames.stop + 1))
        return inj.drop(job.part_uri(index), rng.choice(objs), frames) if objs else None

    def spurious(index: int) -> Any:
        frames = span(index, rng.randint(5, 9))
        x, y, s = rng.randint(60, job.info.width - 100), rng.randint(40, job.info.height - 80), rng.randint(16, 30)
        return inj.spurious(job.part_uri(index), frames, (x, y, x + s, y + s), job.info.height, job.info.width)

    def merge(index: int) -> Any:
        frames = span(index, rng.randint(6, 12))
        objs = _present(job, index, range(frames.start - 1, frames.stop + 1))
        if len(objs) < 2:
            return None
        a, b = rng.sample(objs, 2)
        return inj.merge(job.part_uri(index), a, b, frames)

    def seam(index: int) -> Any:
        shared = overlap_frames(job.plan[index - 1], job.plan[index])
        objs = _present(job, index, shared)
        if not objs:
            return None
        obj = rng.choice(objs)
        dx = round(0.6 * inj.mean_width(job.part_uri(index), obj, shared))  # the two sides disagree by 60 % of it
        return inj.shift(job.part_uri(index), obj, shared, rng.choice((-1, 1)) * max(dx, 4))

    actions = {"swap": swap, "drop": drop, "spurious": spurious, "merge": merge, "seam": seam}
    for kind in KINDS:
        for index in list(subs):
            got = actions[kind](index)
            if got is not None:
                subs.remove(index)
                done.append(got)
                break
    return done


def measure(job: Any, cfg: Any, seed: int) -> dict[str, Any]:
    """Stitch the clean run, inject one error of each kind, stitch again; recall and precision of the top 2n."""
    from sam2flow.readers.review import read_review
    from sam2flow.readers.truth_errors import TOLERANCE
    from sam2flow.stages.stitch import stitch

    clean = stitch(job, cfg)
    clean_rows = read_review(job.out_dir)
    injected = inject(job, random.Random(seed))
    t0 = time.perf_counter()
    result = stitch(job, cfg)
    stitch_seconds = time.perf_counter() - t0
    rows = read_review(job.out_dir)
    head = rows[: 2 * len(injected)]

    def hit(e: Any, r: Any) -> bool:
        return r.frame_start - TOLERANCE < e.frame_stop and e.frame_start < r.frame_stop + TOLERANCE

    found = {e.kind: any(hit(e, r) for r in head) for e in injected}
    useful = sum(any(hit(e, r) for e in injected) for r in head)
    assert result.review is not None and clean.review is not None
    return {
        "seed": seed, "frames": job.num_frames, "injected": len(injected), "found": found,
        "recall": sum(found.values()) / len(injected), "precision": useful / max(len(head), 1),
        "items": len(rows), "clean_items": len(clean_rows), "clean_top_score": clean.review.top_score,
        "clean_items_over_0.5": sum(r.score > 0.5 for r in clean_rows),
        "review_seconds": result.review.seconds, "stitch_seconds": stitch_seconds,
    }  # fmt: skip


def trial(seed: int, frames: int, folder: Path) -> dict[str, Any]:
    """One synthetic scene, five injected errors; with `sam2flow evaluate`'s recall against the exact truth."""
    from sam2flow.readers.evaluate import evaluate
    from tests.replay import replayed_job, write_davis

    scene = lanes_scene(frames, seed)
    job, cfg = replayed_job(scene, folder, frames, *SETTINGS)
    row = measure(job, cfg, seed)
    metrics = evaluate(job.out_dir, write_davis(scene, frames, folder / "gt"), frames)
    return {**row, "evaluate": {k: v for k, v in metrics.items() if k.startswith(("review", "truth"))}}


def real_trial(video: Path, seed: int, folder: Path, masks: list[Any]) -> dict[str, Any]:
    """A real video with masks made for it (`benchmarks.review_masks`), five injected errors."""
    from benchmarks.review_masks import write_parts
    from sam2flow.config import load_config
    from sam2flow.stages.prepare import prepare

    sets = ["chunking.length=32", "chunking.overlap=16", "prompts=[]", "render.enabled=false",
            "report.enabled=false", f"output.work_dir={folder / 'work'}"]  # fmt: skip
    cfg = load_config(ROOT / "configs" / "smoke.yaml", sets)
    job = prepare(str(video), str(folder / "out"), cfg)
    write_parts(job, masks[: job.num_frames])
    return {**measure(job, cfg, seed), "video": video.name, "objects": len({o for f in masks for o in f})}


def main() -> None:
    sys.path.insert(0, str(ROOT))
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--frames", type=int, default=480)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--real", type=Path, nargs="*", default=sorted((ROOT.parent / "shared" / "data").glob("*.mp4")),
                        help="real videos to make masks for (default: ../shared/data/*.mp4)")  # fmt: skip
    args = parser.parse_args()
    rows = []
    for seed in range(args.trials):
        with tempfile.TemporaryDirectory() as tmp:
            rows.append(trial(seed, args.frames, Path(tmp)))
        _print(f"synthetic seed {seed}", rows[-1])
    real = []
    for video in args.real:
        from benchmarks.review_masks import OBJECTS, keyframe_masks

        t0 = time.perf_counter()
        masks = keyframe_masks(str(video), OBJECTS[video.name])
        print(f"{video.name}: masks of {len(OBJECTS[video.name])} objects made in {time.perf_counter() - t0:.0f}s")
        for seed in range(args.trials):
            with tempfile.TemporaryDirectory() as tmp:
                real.append(real_trial(video, seed, Path(tmp), masks))
            _print(f"{video.name} seed {seed}", real[-1])
    summary = {"synthetic": _summary(rows), **({"real": _summary(real)} if real else {})}
    for video in args.real:
        summary[video.name] = _summary([r for r in real if r["video"] == video.name])
    print(json.dumps(summary, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"summary": summary, "synthetic": rows, "real": real}, indent=2))


def _print(label: str, r: dict[str, Any]) -> None:
    missed = [k for k, v in r["found"].items() if not v]
    print(
        f"{label}: recall {r['recall']:.2f} (missed {missed or 'none'}), precision {r['precision']:.2f}, "
        f"{r['items']} items (clean run: {r['clean_items']}, {r['clean_items_over_0.5']} over 0.5, top "
        f"{r['clean_top_score']:.2f}), review {r['review_seconds']:.2f}s of stitch {r['stitch_seconds']:.2f}s"
        + (f"; evaluate {r['evaluate']}" if "evaluate" in r else ""),
        flush=True,
    )


def _summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    frames = sum(r["frames"] for r in rows)
    out = {
        "trials": len(rows),
        "recall": sum(r["recall"] for r in rows) / len(rows),
        "precision": sum(r["precision"] for r in rows) / len(rows),
        "injected": sum(r["injected"] for r in rows),
        "recall_by_kind": {
            k: f"{sum(r['found'][k] for r in rows if k in r['found'])}/{sum(k in r['found'] for r in rows)}"
            for k in KINDS
        },
        "clean_items_over_0.5": sum(r["clean_items_over_0.5"] for r in rows) / len(rows),
        "review_seconds_per_1000_frames": 1000 * sum(r["review_seconds"] for r in rows) / frames,
        "stitch_seconds_per_1000_frames": 1000 * sum(r["stitch_seconds"] for r in rows) / frames,
    }
    if rows and "evaluate" in rows[0]:
        for n in ("N", "2N"):
            out[f"evaluate_recall@{n}"] = sum(r["evaluate"].get(f"review_recall@{n}", 0) for r in rows) / len(rows)
    return out


if __name__ == "__main__":
    main()
