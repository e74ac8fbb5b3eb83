"""Throughput of sam2flow side by side with the scripts it replaces, on the same frames and objects.

Cases (each in its own process, same synthetic clip, same SAM2 checkpoint and input size, same box prompts):

- ``official``: the official SAM2 way: JPEGs of the whole video, one ``init_state``, a box per object on frame 0,
  ``propagate_in_video``.
- ``per_object``: the per-object loop of the popular YOLO→SAM2 tutorial: a fresh inference state per object, each
  propagated on its own.
- ``sequential``: the SAM2-LongVideo approach: the same subsequences as sam2flow, one after another in one process.
- ``sam2flow``: the real ``process_video`` flow end to end (extraction, segmentation, stitching, rendering, Prefect),
  the objects given as box prompts on each subsequence's first frame.

Figures: end-to-end fps; the overhead ratio (sam2flow wall time ÷ the official propagation time for the same frames
and objects, and ÷ the time sam2flow itself spent inside SAM2); multi-object scaling (K objects, per-object loop ÷
sam2flow); parallel scaling (1, 2, … workers). Random weights: speed does not depend on weight values.

    .venv/bin/python -m benchmarks.suite [--quick] [--device cpu|cuda] [--image-size 256] [--json out/bench.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from collections import Counter
from datetime import date
from pathlib import Path
from typing import Any

from benchmarks.common import bench_squares, peak_mib, run_child, squares_clip
from sam2flow.manifest import read_manifest

CHECKPOINT = "random:sam2.1_hiera_tiny"


def _boxes(objects: int, frames: int, frame: int) -> list[list[float]]:
    return [list(map(float, s.box(frame))) for s in bench_squares(objects, frames)]


def _extract_all(video: str, folder: Path) -> float:
    import subprocess

    t0 = time.perf_counter()
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["ffmpeg", "-v", "error", "-i", video, "-q:v", "2", "-start_number", "0", str(folder / "%05d.jpg")], check=True
    )
    return time.perf_counter() - t0


def _predictor(checkpoint: str, image_size: int | None, device: str, compile_model: bool = False) -> Any:
    from sam2flow.models import weights
    from sam2flow.models.segmenter import Sam2Segmenter

    return Sam2Segmenter(weights.resolve(checkpoint, "sam2"), device, image_size, False, compile_model).predictor


def _track(predictor: Any, folder: Path, boxes: list[list[float]], device: str) -> dict[str, float]:
    """One inference state over ``folder``: boxes on its first frame, then propagate. Returns timings."""
    import contextlib

    import torch

    amp = torch.autocast("cuda", dtype=torch.bfloat16) if device.startswith("cuda") else contextlib.nullcontext()
    with torch.inference_mode(), amp:
        t0 = time.perf_counter()
        state = predictor.init_state(str(folder))
        t1 = time.perf_counter()
        for i, box in enumerate(boxes, start=1):
            predictor.add_new_points_or_box(state, frame_idx=0, obj_id=i, box=box)
        frames = 0
        for _, _, logits in predictor.propagate_in_video(state):
            (logits > 0).cpu()  # what any user of the masks does
            frames += 1
        t2 = time.perf_counter()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        predictor.reset_state(state)
    return {"init": t1 - t0, "propagate": t2 - t1, "frames": frames}


def run_official(video: str, work: str, objects: int, frames: int, image_size: int | None, device: str) -> dict:
    predictor = _predictor(CHECKPOINT, image_size, device)
    extract = _extract_all(video, Path(work) / "frames")
    t = _track(predictor, Path(work) / "frames", _boxes(objects, frames, 0), device)
    total = extract + t["init"] + t["propagate"]
    return {"seconds": total, "extract": extract, **t, "peak_rss_mib": peak_mib()}


def run_per_object(video: str, work: str, objects: int, frames: int, image_size: int | None, device: str) -> dict:
    predictor = _predictor(CHECKPOINT, image_size, device)
    extract = _extract_all(video, Path(work) / "frames")
    runs = [_track(predictor, Path(work) / "frames", [box], device) for box in _boxes(objects, frames, 0)]
    total = extract + sum(r["init"] + r["propagate"] for r in runs)
    return {"seconds": total, "extract": extract, "propagate": sum(r["propagate"] for r in runs)}


def run_sequential(
    video: str, work: str, objects: int, frames: int, image_size: int | None, device: str, length: int, overlap: int
) -> dict:
    from sam2flow.core.planning import plan_subsequences

    predictor = _predictor(CHECKPOINT, image_size, device)
    extract = _extract_all(video, Path(work) / "frames")
    init = prop = 0.0
    for sub in plan_subsequences(frames, length, overlap):
        folder = Path(work) / f"sub{sub.index:03d}"
        folder.mkdir()
        for g in range(sub.start, sub.stop):
            (folder / f"{g - sub.start:05d}.jpg").symlink_to(Path(work) / "frames" / f"{g:05d}.jpg")
        t = _track(predictor, folder, _boxes(objects, frames, sub.start), device)
        init, prop = init + t["init"], prop + t["propagate"]
    return {"seconds": extract + init + prop, "extract": extract, "init": init, "propagate": prop}


def run_sam2flow(
    video: str,
    out: str,
    objects: int,
    frames: int,
    image_size: int | None,
    device: str,
    length: int,
    overlap: int,
    workers: int,
    threads: int | None,
    compile_model: bool = False,
) -> dict:
    from prefect import flow

    from sam2flow.config import PipelineConfig
    from sam2flow.core.planning import plan_subsequences
    from sam2flow.flows.process_video import process_video

    @flow
    def warm_up() -> None:  # starts Prefect's temporary server outside the timed region
        return None

    warm_up()
    prompts = [
        {"frame": sub.start, "obj_id": i, "box": box, "class_name": f"square{i}"}
        for sub in plan_subsequences(frames, length, overlap)
        for i, box in enumerate(_boxes(objects, frames, sub.start))
    ]
    cfg = PipelineConfig.model_validate(
        {
            "chunking": {"length": length, "overlap": overlap},
            "detector": {"enabled": False},
            "prompts": prompts,
            "segmenter": {"checkpoint": CHECKPOINT, "image_size": image_size, "compile": compile_model},
            "runtime": {"device": device, "workers_per_device": workers, "torch_threads": threads},
        }
    )
    t0 = time.perf_counter()
    run_dir = process_video(video=video, out=out, config=cfg)
    wall = time.perf_counter() - t0
    stages = read_manifest(run_dir).stages
    assert stages.segment is not None and stages.stitch is not None and stages.render is not None
    return {
        "seconds": wall,
        "sam2_seconds": stages.segment.sam2_seconds,
        "segment_wall": stages.segment.wall_seconds,
        "stitch": stages.stitch.seconds,
        "render": stages.render.seconds,
        "peak_rss_mib": peak_mib(),
    }


def _case(kind: str, video: str, tmp: str, profile: Path | None = None, **kw: Any) -> dict[str, Any]:
    work = tempfile.mkdtemp(dir=tmp)
    result = run_child("benchmarks.suite", f"run_{kind}", video, work, profile=profile, **kw)
    shown = {k: round(v, 2) if isinstance(v, float) else v for k, v in result.items()}
    print(f"  {kind:10} {json.dumps({k: kw[k] for k in ('objects', 'frames') if k in kw})} {shown}", flush=True)
    return result


def top_of_profile(raw: Path, n: int = 15) -> list[tuple[str, float]]:
    """The functions with the most self samples in a py-spy raw (collapsed) profile, as (function, share)."""
    own: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [f for f in stack.split(";") if not f.startswith(("thread ", "process "))]
        if not frames:
            continue
        idle_marks = ("wait (threading", "_wait_for_tstate_lock", "select (", "sleep", "_worker (concurrent/futures")
        idle = any(w in frames[-1] for w in idle_marks)
        if idle:
            continue
        own[frames[-1]] += int(count)
        total += int(count)
    return [(f, c / max(total, 1)) for f, c in own.most_common(n)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--image-size", type=int, default=256, help="SAM2 input size (1024 is the native size)")
    parser.add_argument("--objects", type=int, nargs="+", default=[1, 3, 6], help="K for multi-object scaling")
    parser.add_argument("--frames", type=int, default=64, help="clip length for the multi-object cases")
    parser.add_argument("--length", type=int, default=48, help="subsequence length for the multi-object cases")
    parser.add_argument("--overhead-frames", type=int, default=300, help="clip length for the overhead case")
    parser.add_argument("--overhead-length", type=int, default=150, help="subsequence length for the overhead case")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts for parallel scaling")
    parser.add_argument("--compile", action="store_true", help="torch.compile SAM2 in sam2flow (GPU)")
    parser.add_argument("--profile", action="store_true", help="profile the overhead case with py-spy")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (a smoke test of the suite itself)")
    parser.add_argument("--json", type=Path, default=Path("out/benchmark.json"), help="where the results go")
    args = parser.parse_args()
    if args.quick:
        args.objects, args.frames, args.length = [1, 2], 24, 20
        args.overhead_frames, args.overhead_length, args.workers = 40, 24, [1, 2]
    overlap = 16
    common = {"image_size": args.image_size, "device": args.device}
    cpu_threads = os.cpu_count() or 1
    results: dict[str, Any] = {
        "date": date.today().isoformat(),
        "machine": f"{platform.machine()}, {cpu_threads} CPU threads, device {args.device}",
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
    }
    with tempfile.TemporaryDirectory(prefix="sam2flow-bench-") as tmp:
        # 1. Overhead: one object over a longer clip, one worker.
        n, length = args.overhead_frames, args.overhead_length
        video = str(squares_clip(Path(tmp) / "overhead.mp4", n, 1))
        print(f"overhead: {n} frames, 1 object, subsequences of {length} (overlap {overlap})", flush=True)
        off = _case("official", video, tmp, objects=1, frames=n, **common)
        profile = Path(tmp) / "profile.txt" if args.profile else None
        s2f = _case(
            "sam2flow", video, tmp, profile=profile, objects=1, frames=n, length=length, overlap=overlap, workers=1,
            threads=None, compile_model=args.compile, **common,
        )  # fmt: skip
        results["overhead"] = {
            "frames": n,
            "official": off,
            "sam2flow": s2f,
            "fps_sam2flow": n / s2f["seconds"],
            "fps_official": n / off["seconds"],
            "ratio_vs_official_propagation": s2f["seconds"] / off["propagate"],
            "ratio_vs_own_sam2_time": s2f["seconds"] / s2f["sam2_seconds"],
        }
        if profile is not None and profile.is_file():
            results["profile_top"] = top_of_profile(profile)

        # 2. Multi-object scaling.
        results["objects"] = {}
        for k in args.objects:
            video = str(squares_clip(Path(tmp) / f"k{k}.mp4", args.frames, k))
            print(f"{k} object(s): {args.frames} frames, subsequences of {args.length}", flush=True)
            same = {"objects": k, "frames": args.frames, **common}
            chunks = {"length": args.length, "overlap": overlap}
            row = {
                "official": _case("official", video, tmp, **same),
                "per_object": _case("per_object", video, tmp, **same),
                "sequential": _case("sequential", video, tmp, **same, **chunks),
                "sam2flow": _case(
                    "sam2flow", video, tmp, **same, **chunks, workers=1, threads=None, compile_model=args.compile
                ),
            }
            row["loop_over_sam2flow"] = row["per_object"]["seconds"] / row["sam2flow"]["seconds"]
            results["objects"][k] = row

        # 3. Parallel scaling: the middle K, 1, 2, … workers on the one device (CPU threads split between them).
        k = args.objects[len(args.objects) // 2]
        video = str(squares_clip(Path(tmp) / f"k{k}.mp4", args.frames, k))
        results["workers"] = {}
        for w in args.workers:
            threads = max(1, cpu_threads // w) if args.device == "cpu" else None
            print(f"{w} worker(s), {k} object(s)", flush=True)
            r = _case(
                "sam2flow", video, tmp, objects=k, frames=args.frames, length=args.length, overlap=overlap,
                workers=w, threads=threads, compile_model=args.compile, **common,
            )  # fmt: skip
            results["workers"][w] = {**r, "fps": args.frames / r["seconds"]}

    print_report(results)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2))
    print(f"\nresults: {args.json}")


def print_report(r: dict[str, Any]) -> None:
    """The tables BENCHMARKS.md records."""
    o = r["overhead"]
    print(f"\n{r['date']} — {r['machine']}")
    print(f"\nEnd to end, {o['frames']} frames, 1 object:")
    print("| | wall s | fps | SAM2 propagation s |\n| --- | ---: | ---: | ---: |")
    print(f"| official whole-video | {o['official']['seconds']:.1f} | {o['fps_official']:.2f} | "
          f"{o['official']['propagate']:.1f} |")  # fmt: skip
    print(f"| sam2flow end to end | {o['sam2flow']['seconds']:.1f} | {o['fps_sam2flow']:.2f} | "
          f"{o['sam2flow']['sam2_seconds']:.1f} (own) |")  # fmt: skip
    print(f"\noverhead ratio: sam2flow wall / official propagation = {o['ratio_vs_official_propagation']:.3f}; "
          f"sam2flow wall / its own time in SAM2 = {o['ratio_vs_own_sam2_time']:.3f}")  # fmt: skip
    print("\nMulti-object scaling (seconds, lower is better):")
    print("| K | official | per-object loop | sequential subsequences | sam2flow | loop ÷ sam2flow |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for k, row in r["objects"].items():
        print(f"| {k} | {row['official']['seconds']:.1f} | {row['per_object']['seconds']:.1f} | "
              f"{row['sequential']['seconds']:.1f} | {row['sam2flow']['seconds']:.1f} | "
              f"{row['loop_over_sam2flow']:.2f} |")  # fmt: skip
    print("\nParallel scaling:")
    print("| workers | wall s | fps | speed-up |\n| ---: | ---: | ---: | ---: |")
    base = next(iter(r["workers"].values()))["seconds"]
    for w, row in r["workers"].items():
        print(f"| {w} | {row['seconds']:.1f} | {row['fps']:.2f} | {base / row['seconds']:.2f} |")
    if r.get("profile_top"):
        print("\nTop of the profile (self time, sam2flow overhead case, all threads, idle waits left out):")
        for func, share in r["profile_top"]:
            print(f"  {100 * share:5.1f}%  {func}")


if __name__ == "__main__":
    main()
