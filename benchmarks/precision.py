"""SAM2 at its native 1024 px in each precision, side by side: the official predictor in float32 (what users run on a
CPU today) and under bfloat16 autocast (SAM2's own instructions, on CUDA), against sam2flow's segmenter with
``segmenter.precision: auto``; then ``sam2flow run`` end to end with ``configs/default.yaml``'s model settings in
``fp32`` and ``auto``.

Each case runs in its own process on the same frames (`sam2flow.io.sample`'s clip at 960×540) with the same
random-weight SAM2.1 tiny checkpoint and the same K boxes on frame 0, and propagates over the next frames; the masks
are kept, and each case's masks are compared with the official float32 ones per object and frame (mask IoU; both
empty counts as 1). Reported: seconds per propagated frame, frames per second ÷ official float32's, IoU mean and
minimum, and the top of a profile of sam2flow's case (torch's operator profiler, self CPU time).

    .venv/bin/python -m benchmarks.precision [--objects 1 4 16] [--frames 8] [--e2e-frames 24] [--device cpu]
        [--json out/precision.json]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import platform
import subprocess
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import run_child, sam2flow_run, sample_box_prompts

CHECKPOINT = "random:sam2.1_hiera_tiny"
DETECTOR = "random:yolo11n"
MODULE = "benchmarks.precision"


SIZE = 1024
"""Frames are scaled to SAM2's input size beforehand, so neither frame loader resizes (the two resize differently):
what differs between the cases is the arithmetic."""


def boxes(objects: int, width: int = SIZE, height: int = SIZE) -> list[list[float]]:
    """K boxes of a grid over the frame (random weights: where they are does not change the cost)."""
    cols = int(np.ceil(np.sqrt(objects)))
    rows = int(np.ceil(objects / cols))
    w, h = width / cols, height / rows
    return [
        [(i % cols) * w + 0.2 * w, (i // cols) * h + 0.2 * h, (i % cols) * w + 0.8 * w, (i // cols) * h + 0.8 * h]
        for i in range(objects)
    ]


def _quiet_sam2() -> None:
    import sam2.sam2_video_predictor as svp
    import sam2.utils.misc as sam2_misc

    for module in (svp, sam2_misc):
        module.tqdm = functools.partial(module.tqdm, disable=True)


MODULES = ("image_encoder", "memory_attention", "sam_mask_decoder", "memory_encoder")


def time_modules(predictor: Any) -> dict[str, float]:
    """Seconds spent in each of SAM2's main modules from now on (forward hooks; what is left is SAM2's own code
    between them and the caller's)."""
    spent = dict.fromkeys(MODULES, 0.0)
    for name in MODULES:
        module = getattr(predictor, name)

        def start(m: Any, _: Any) -> None:
            m._bench_t0 = time.perf_counter()

        def stop(m: Any, _: Any, __: Any, name: str = name) -> None:
            spent[name] += time.perf_counter() - m._bench_t0

        module.register_forward_pre_hook(start)
        module.register_forward_hook(stop)
    return spent


def run_official(frames_dir: str, masks_out: str, objects: int, precision: str, device: str) -> dict[str, Any]:
    """The official predictor (its own frame loader, float32 or under bf16 autocast): K boxes, then propagate."""
    import torch
    from sam2.build_sam import build_sam2_video_predictor

    from sam2flow.models import weights

    _quiet_sam2()
    ckpt = weights.resolve(CHECKPOINT, "sam2")
    predictor = build_sam2_video_predictor(ckpt.config, ckpt_path=str(ckpt.path), device=device)
    amp = torch.autocast(device, dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()
    masks = []
    with torch.inference_mode(), amp:
        state = predictor.init_state(frames_dir)
        spent = time_modules(predictor)
        t0 = time.perf_counter()
        for i, box in enumerate(boxes(objects), start=1):
            predictor.add_new_points_or_box(state, frame_idx=0, obj_id=i, box=box)
        for _, _, logits in predictor.propagate_in_video(state):
            masks.append((logits[:, 0] > 0.0).cpu().numpy())
        seconds = time.perf_counter() - t0
    np.save(masks_out, np.stack(masks))
    return {"seconds": seconds, "frames": len(masks), "modules_s": spent}


def run_sam2flow(
    frames_dir: str,
    masks_out: str,
    objects: int,
    precision: str,
    device: str,
    torch_profile: bool = False,
    compile_model: bool = False,
) -> dict[str, Any]:
    """sam2flow's segmenter (its frame loader, precision and speed-ups): the same boxes, then propagate. With
    ``torch_profile``, a second session tracks the first frames again under torch's profiler (outside the timed run)."""
    from sam2flow.models import weights
    from sam2flow.models.segmenter import Sam2Segmenter

    seg = Sam2Segmenter(weights.resolve(CHECKPOINT, "sam2"), device, compile_model=compile_model,
                        precision=precision)  # type: ignore[arg-type]  # fmt: skip
    spent = time_modules(seg.predictor)
    masks, seconds = _track(seg, Path(frames_dir), objects)
    np.save(masks_out, np.stack(masks))
    spent = dict(spent)  # the timed run's (the hooks stay on for the profiled one)
    top: list[tuple[str, float]] = []
    if torch_profile:
        with _profiled(top):
            _track(seg, Path(frames_dir), objects, frames=min(3, len(masks)))
    frames = len(masks)
    return {"seconds": seconds, "frames": frames, "precision": seg.precision, "modules_s": spent, "top": top}


def _track(seg: Any, frames_dir: Path, objects: int, frames: int | None = None) -> tuple[list[np.ndarray], float]:
    """The boxes on frame 0, then tracking; the seconds from the first box to the last mask (frames loaded before)."""
    from sam2flow.core.types import LocalObjId, ObjectPrompt

    masks = []
    with seg.session(frames_dir) as session:
        t0 = time.perf_counter()
        for i, box in enumerate(boxes(objects), start=1):
            session.add(ObjectPrompt(LocalObjId(i), 0, -1, "object", (), (), tuple(box)))
        for fm in session.propagate(0, (frames or session.num_frames) - 1):
            full = np.zeros((objects, session.height, session.width), bool)
            for obj, mask in zip(fm.obj_ids, fm.masks, strict=True):
                full[int(obj) - 1] = mask
            masks.append(full)
        seconds = time.perf_counter() - t0
    return masks, seconds


@contextlib.contextmanager
def _profiled(top: list[tuple[str, float]]) -> Any:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        yield
    events = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
    total = sum(e.self_cpu_time_total for e in events) or 1
    top.extend((e.key, round(100 * e.self_cpu_time_total / total, 1)) for e in events[:12])


def mask_ious(reference: np.ndarray, other: np.ndarray) -> np.ndarray:
    """IoU per frame and object (``(F, K, H, W)`` boolean stacks); 1 where both are empty."""
    inter = np.logical_and(reference, other).sum(axis=(2, 3))
    union = np.logical_or(reference, other).sum(axis=(2, 3))
    return np.where(union == 0, 1.0, inter / np.maximum(union, 1))


def run_cli(clip: Path, out: Path, frames: int, precision: str, device: str) -> dict[str, Any]:
    """``sam2flow run`` with configs/default.yaml's model settings (random weights), as a user types it. The random
    detector finds nothing, so the clip's objects are also given as box prompts on frame 0."""
    from sam2flow.manifest import read_manifest

    sets = [f"segmenter.checkpoint={CHECKPOINT}", f"detector.model={DETECTOR}", f"video.max_frames={frames}",
            f"segmenter.precision={precision}", f"runtime.device={device}", sample_box_prompts()]  # fmt: skip
    run_dir, wall = sam2flow_run(clip, out, sets)
    seg = read_manifest(str(run_dir)).stages.segment
    assert seg is not None
    subs = seg.subsequences
    return {
        "wall_s": wall,
        "fps": frames / wall,
        "sam2_s": seg.sam2_seconds,
        "objects": max((s.objects or 0) for s in subs),
        "precision": sorted({str(s.precision) for s in subs}),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--objects", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--frames", type=int, default=8, help="frames per SAM2 case (the prompt frame and the rest)")
    ap.add_argument("--e2e-frames", type=int, default=24, help="frames for `sam2flow run` (0: skip it)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", default="auto", help="sam2flow's segmenter.precision")
    ap.add_argument("--compile", action="store_true", help="also sam2flow with segmenter.compile (GPUs)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    from sam2flow.io.sample import write_sample
    from sam2flow.models.precision import cpu_features, describe

    result: dict[str, Any] = {
        "date": date.today().isoformat(),
        "machine": f"{platform.processor() or platform.machine()}, {describe('auto', args.device)}",
        "cpu_bf16": cpu_features().describe(),
        "frames": args.frames,
        "cases": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        clip = write_sample(Path(tmp) / "clip.mp4", frames=max(args.frames, args.e2e_frames))
        frames_dir = Path(tmp) / "frames"
        frames_dir.mkdir()
        subprocess.run(["ffmpeg", "-v", "error", "-i", str(clip), "-frames:v", str(args.frames), "-q:v", "2",
                        "-vf", f"scale={SIZE}:{SIZE}", "-start_number", "0", str(frames_dir / "%05d.jpg")],
                       check=True)  # fmt: skip
        for k in args.objects:
            result["cases"][k] = _objects_case(k, str(frames_dir), tmp, args)
        if args.e2e_frames:
            result["end_to_end"] = {}
            for p in ("fp32", args.precision):
                out = str(Path(tmp) / f"e2e-{p}")
                e2e = run_child(MODULE, "run_cli_child", str(clip), out, args.e2e_frames, p, args.device)
                result["end_to_end"][p] = e2e
                print(f"  sam2flow run, {p}: {e2e['wall_s']:.1f} s", flush=True)
    print_report(result)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))


def run_cli_child(clip: str, out: str, frames: int, precision: str, device: str) -> dict[str, Any]:
    Path(out).mkdir(parents=True)
    return run_cli(Path(clip), Path(out), frames, precision, device)


def _objects_case(k: int, frames_dir: str, tmp: str, args: argparse.Namespace) -> dict[str, Any]:
    first = k == min(args.objects)
    cases: list[tuple[str, str, str, dict[str, Any]]] = [
        ("official_fp32", "run_official", "fp32", {}),
        ("official_bf16", "run_official", "bf16", {}),
        ("sam2flow", "run_sam2flow", args.precision, {"torch_profile": first}),
    ]
    if first:  # sam2flow's own frame path and speed-ups in float32: IoU 1 says the inputs match
        cases.append(("sam2flow_fp32", "run_sam2flow", "fp32", {}))
    if args.compile:
        cases.append(("sam2flow_compiled", "run_sam2flow", args.precision, {"compile_model": True}))
    runs: dict[str, dict[str, Any]] = {}
    for name, fn, precision, extra in cases:
        masks = str(Path(tmp) / f"{name}-{k}.npy")
        runs[name] = run_child(MODULE, fn, frames_dir, masks, k, precision, args.device, **extra)
        runs[name]["s_per_frame"] = runs[name]["seconds"] / runs[name]["frames"]
        print(f"  K={k} {name}: {runs[name]['s_per_frame']:.2f} s/frame", flush=True)
    reference = np.load(str(Path(tmp) / f"official_fp32-{k}.npy"))
    for name, run in runs.items():
        ious = mask_ious(reference, np.load(str(Path(tmp) / f"{name}-{k}.npy")))
        run.update(iou_mean=float(ious.mean()), iou_min=float(ious.min()),
                   speedup=runs["official_fp32"]["s_per_frame"] / run["s_per_frame"])  # fmt: skip
    return runs


def print_report(r: dict[str, Any]) -> None:
    print(f"\n{r['machine']}; {r['frames']} frames per case, SAM2.1 tiny at 1024 px, random weights")
    print("| K | case | s/frame | × official fp32 | IoU vs official fp32, mean / min | "
          + " | ".join(f"{m} s" for m in MODULES) + " |")  # fmt: skip
    print("| ---: | --- | ---: | ---: | ---: |" + " ---: |" * len(MODULES))
    for k, runs in r["cases"].items():
        for name, c in runs.items():
            label = f"{name} ({c['precision']})" if "precision" in c else name
            modules = " | ".join(f"{c['modules_s'][m]:.1f}" for m in MODULES)
            print(f"| {k} | {label} | {c['s_per_frame']:.2f} | {c['speedup']:.2f} | "
                  f"{c['iou_mean']:.4f} / {c['iou_min']:.4f} | {modules} |")  # fmt: skip
    for k, runs in r["cases"].items():
        if runs["sam2flow"].get("top"):
            print(f"\nsam2flow K={k}, top of torch's profile (self CPU %):")
            for name, pct in runs["sam2flow"]["top"]:
                print(f"  {pct:5.1f}%  {name}")
    for p, e in r.get("end_to_end", {}).items():
        print(f"\nsam2flow run ({p}): {e['wall_s']:.1f} s, {e['fps']:.3f} fps, SAM2 {e['sam2_s']:.1f} s, "
              f"{e['objects']} object(s), precision {e['precision']}")  # fmt: skip


if __name__ == "__main__":
    main()
