"""The CPU cost per frame of everything sam2flow does around the model, against the cost of only decoding the video.

The real ``process_video`` flow runs on a synthetic clip (`sam2flow.io.sample`: three textured objects moving over a
textured floor) at each size, with a **benchmark-only instant segmenter and detector** standing in for SAM2 and YOLO
(`InstantSegmenter`, `InstantDetector`; reachable only from this file). They return the clip's exact object masks
and boxes at once, but read the frames the way the real models do: the segmenter through sam2flow's SAM2 frame
loader, the detector by reading and resizing each keyframe. So every CPU cycle counted is one sam2flow spends outside
the model: extraction, frame loading, prompting, RLE, part files, stitching, rendering, manifest, Prefect. The CPU
the stand-ins spend making their masks and boxes (the model's share) is measured on their own threads and taken out
(``stand_in_ms_per_frame``), and the flow's heavy imports happen before the clock starts.

Per size and with rendering on and off, it reports:

- ``cpu_ms_per_frame``: CPU time of the flow's process and its ffmpeg children (``getrusage``: self + waited
  children), per frame, for a normal run with all cores; its wall fps and peak RSS beside it;
- ``stages``: CPU ms per frame of each stage, from a second run where the stages take turns (a lock), so each
  stage's CPU is its own; ``other`` is what no stage accounts for (Prefect's engine, logging);
- ``decode_ms_per_frame``: the floor, ``ffmpeg -i CLIP -f null -`` CPU per frame on the same clip;
- the headline ratio, non-model CPU ÷ decode-only CPU.

    .venv/bin/python -m benchmarks.ceiling [--sizes 540 1080 2160] [--frames 300] [--chunk-length 64]
        [--frame-stores raw jpeg] [--json out/ceiling.json]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from benchmarks.common import ROOT, peak_mib, run_child

SIZES = {540: (960, 540), 1080: (1920, 1080), 2160: (3840, 2160)}
STAGES = ("prepare", "extract", "segment", "render_piece", "stitch", "render", "finalize")
STAGE_MODULES = {"render_piece": "render"}
"""The stage module of each stage function whose module has another name."""


def _cpu() -> float:
    """CPU seconds of this process and of its children that have exited."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


STAND_IN_CPU = [0.0]
"""CPU seconds the instant doubles spent making their masks and boxes (the model's share, not sam2flow's)."""


@contextmanager
def _model_share() -> Iterator[None]:
    c0 = time.thread_time()
    try:
        yield
    finally:
        STAND_IN_CPU[0] += time.thread_time() - c0


class InstantSession:
    """A subsequence for the instant segmenter: the frames are loaded as for SAM2; the masks are the clip's own."""

    def __init__(self, frames_dir: Path, start: int, image_size: int, video: tuple[int, int, int]) -> None:
        from sam2flow.models.frames import load_frames

        frames = load_frames(frames_dir, image_size)
        self.images = frames.images  # held for the session, as SAM2 holds them; each frame normalised when read
        self.num_frames, self.height, self.width = len(frames.images), frames.height, frames.width
        self.start, self.video = start, video
        self.objects: dict[int, int] = {}  # local id -> mover index

    def _frame(self, local: int) -> Any:
        from sam2flow.core.types import FrameMasks, LocalObjId
        from sam2flow.io.sample import object_masks

        _, width, height = self.video
        self.images[local]  # SAM2 reads (and so normalises) each frame it tracks
        with _model_share():
            masks = object_masks(self.start + local, width, height)
            ids = sorted(self.objects)
            stack = np.stack([masks[self.objects[i]] for i in ids]) if ids else np.zeros((0, height, width), bool)
        return FrameMasks(local, tuple(LocalObjId(i) for i in ids), stack, np.ones(len(ids), np.float32))

    def add(self, prompt: Any) -> Any:
        from sam2flow.core.prompts import box_iou
        from sam2flow.io.sample import object_masks

        _, width, height = self.video
        with _model_share():
            boxes = [_bbox(m) for m in object_masks(self.start + prompt.frame, width, height)]
            target = prompt.box if prompt.box is not None else (*prompt.points[0], *prompt.points[0])
            best = int(np.argmax([box_iou(b, target) + _inside(b, target) for b in boxes]))
        self.objects[int(prompt.local_id)] = best
        return self._frame(prompt.frame)

    def remove(self, obj_id: Any) -> None:
        self.objects.pop(int(obj_id), None)

    def propagate(self, start: int, stop: int) -> Iterator[Any]:
        if self.objects:
            for local in range(start, stop + 1):
                yield self._frame(local)


def _bbox(mask: np.ndarray) -> tuple[float, float, float, float]:
    ys, xs = np.nonzero(mask)
    return (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)) if len(xs) else (0, 0, 0, 0)


def _inside(box: tuple[float, ...], target: tuple[float, ...]) -> float:
    cx, cy = (target[0] + target[2]) / 2, (target[1] + target[3]) / 2
    return float(box[0] <= cx <= box[2] and box[1] <= cy <= box[3])


class InstantSegmenter:
    """Benchmark-only stand-in for `Sam2Segmenter`: instant, exact masks; real frame loading."""

    def __init__(self, plan: list[Any], image_size: int, video: tuple[int, int, int]) -> None:
        self.plan, self.image_size, self.video = plan, image_size, video

    @contextmanager
    def session(self, frames_dir: Path) -> Iterator[InstantSession]:
        yield InstantSession(frames_dir, self.plan[int(frames_dir.name)].start, self.image_size, self.video)


class InstantDetector:
    """Benchmark-only stand-in for the detector (`StoredFrameDetector` around YOLO): reads the keyframe at the
    detector's input size as the real one does, and returns the clip's exact boxes."""

    names: ClassVar[dict[int, str]] = {0: "object"}

    def __init__(self, plan: list[Any], image_size: int, video: tuple[int, int, int]) -> None:
        self.plan, self.image_size, self.video = plan, image_size, video

    def __call__(self, keyframe: Path) -> Any:
        from sam2flow.core.types import Detections
        from sam2flow.io.sample import object_masks
        from sam2flow.models.frames import detector_image

        detector_image(keyframe.parent, int(keyframe.stem), self.image_size)
        frame = self.plan[int(keyframe.parent.name)].start + int(keyframe.stem)
        _, width, height = self.video
        with _model_share():
            boxes = np.array([_bbox(m) for m in object_masks(frame, width, height)], np.float32)
        n = len(boxes)
        return Detections(boxes, np.full(n, 0.9, np.float32), np.zeros(n, np.int64), ("object",) * n)


def _install_doubles(frames: int, width: int, height: int, cfg: Any) -> None:
    """Make this process's pipeline use the instant segmenter and detector (benchmark only)."""
    from sam2flow.core.planning import plan_subsequences
    from sam2flow.stages import segment as stage

    plan = plan_subsequences(frames, cfg.chunking.length, cfg.chunking.overlap)
    video = (frames, width, height)
    segmenter = InstantSegmenter(plan, cfg.segmenter.image_size or 1024, video)
    detector = InstantDetector(plan, cfg.detector.image_size, video)
    stage.segmenter_on = lambda *a, **k: segmenter  # type: ignore[assignment]
    stage.detector_on = lambda *a, **k: None  # type: ignore[assignment]
    stage.StoredFrameDetector = lambda _model: detector  # type: ignore[assignment,misc]


def _serialize_stages(cpu: dict[str, float]) -> None:
    """Make the pipeline's stages take turns and add up each one's CPU time."""
    import importlib

    lock = threading.RLock()

    def timed(name: str, fn: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with lock:
                c0 = _cpu()
                try:
                    return fn(*args, **kwargs)
                finally:
                    cpu[name] = cpu.get(name, 0.0) + _cpu() - c0

        return wrapper

    for name in STAGES:  # the tasks call each stage through its module
        module = importlib.import_module(f"sam2flow.stages.{STAGE_MODULES.get(name, name)}")
        setattr(module, name, timed(name, getattr(module, name)))


def run_flow(
    video: str,
    out: str,
    size: int,
    frames: int,
    render: bool,
    stages: bool,
    image_size: int,
    length: int = 64,
    frame_store: str = "raw",
) -> dict:
    """One process_video run with the instant doubles (in its own process, see `run_child`)."""
    from sam2flow.config import load_config
    from sam2flow.flows.process_video import process_video

    width, height = SIZES[size]
    cfg = load_config(
        ROOT / "configs" / "smoke.yaml",
        [
            "prompts=[]",
            f"render.enabled={str(render).lower()}",
            "report.enabled=false",
            f"segmenter.image_size={image_size}",
            "detector.image_size=640",
            "detector.max_objects_per_keyframe=3",
            f"chunking.length={length}",
            f"video.frame_store={frame_store}",
        ],
    )
    _install_doubles(frames, width, height, cfg)
    _preload()
    per_stage: dict[str, float] = {}
    if stages:
        _serialize_stages(per_stage)
    c0, t0 = _cpu(), time.perf_counter()
    process_video(video=video, out=out, config=cfg)
    cpu, wall = _cpu() - c0 - STAND_IN_CPU[0], time.perf_counter() - t0
    result: dict[str, Any] = {
        "cpu_ms_per_frame": 1000 * cpu / frames,
        "stand_in_ms_per_frame": 1000 * STAND_IN_CPU[0] / frames,
        "wall_fps": frames / wall,
        "peak_rss_mib": peak_mib(),
    }
    if stages:
        per_stage["segment"] -= STAND_IN_CPU[0]
        result["stages"] = {k: 1000 * v / frames for k, v in per_stage.items()}
        result["stages"]["other"] = result["cpu_ms_per_frame"] - sum(result["stages"].values())
    return result


def _preload() -> None:
    """Import what the flow imports on first use (a one-off cost of the process, not a per-frame one)."""
    import cv2  # noqa: F401
    import pyarrow.parquet  # noqa: F401
    import sam2.sam2_video_predictor  # noqa: F401
    import torch  # noqa: F401
    import ultralytics  # noqa: F401


def decode_floor(video: str, frames: int) -> dict[str, float]:
    """CPU ms per frame of only decoding the clip with ffmpeg."""
    c0 = _cpu()
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", video, "-f", "null", "-"], check=True)
    return {"ms_per_frame": 1000 * (_cpu() - c0) / frames}


def _clip(work: Path, size: int, frames: int) -> Path:
    from sam2flow.io.sample import write_sample

    path = work / f"clip_{size}_{frames}.mp4"
    if not path.is_file():
        width, height = SIZES[size]
        write_sample(path, frames, width, height)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[540, 1080, 2160], choices=sorted(SIZES))
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--image-size", type=int, default=1024, help="the segmenter's input size (SAM2: 1024)")
    ap.add_argument(
        "--chunk-length", type=int, default=64, help="frames per subsequence (smoke config: 64; default.yaml: 200)"
    )
    ap.add_argument("--no-stages", action="store_true", help="skip the per-stage runs")
    ap.add_argument(
        "--frame-stores", nargs="+", default=["raw"], choices=["raw", "jpeg"],
        help="video.frame_store values to measure, side by side in this run",
    )  # fmt: skip
    ap.add_argument("--work", type=Path, default=None, help="keep clips here between runs")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="sam2flow-ceiling-"))
    work.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "frames": args.frames,
        "image_size": args.image_size,
        "chunk_length": args.chunk_length,
        "stores": {store: {"sizes": {}} for store in args.frame_stores},
    }
    for size in args.sizes:
        clip = str(_clip(work, size, args.frames))
        decode = run_child("benchmarks.ceiling", "decode_floor", clip, args.frames)["ms_per_frame"]
        for store in args.frame_stores:
            row = _measure(args, work, clip, size, store, decode)
            report["stores"][store]["sizes"][str(size)] = row
            _print_size(size, store, row)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))


def _measure(args: Any, work: Path, clip: str, size: int, store: str, decode: float) -> dict[str, Any]:
    """Render on and off (each also with its stages taking turns, unless ``--no-stages``) for one frame store."""
    row: dict[str, Any] = {"decode_ms_per_frame": decode}
    for render in (True, False):
        key = "on" if render else "off"
        for stages in (False, True) if not args.no_stages else (False,):
            out = tempfile.mkdtemp(dir=work, prefix="out-")
            r = run_child("benchmarks.ceiling", "run_flow", clip, out, size, args.frames, render, stages,
                          args.image_size, args.chunk_length, store)  # fmt: skip
            if stages:
                row[f"stages_render_{key}"] = r["stages"]
            else:
                row[f"cpu_ms_per_frame_render_{key}"] = r["cpu_ms_per_frame"]
                row[f"wall_fps_render_{key}"] = r["wall_fps"]
                row[f"peak_rss_mib_render_{key}"] = r["peak_rss_mib"]
    for key in ("on", "off"):
        row[f"ratio_render_{key}"] = row[f"cpu_ms_per_frame_render_{key}"] / row["decode_ms_per_frame"]
    return row


def _print_size(size: int, store: str, row: dict[str, Any]) -> None:
    print(f"\n{size}p, frame store {store}: decode-only {row['decode_ms_per_frame']:.1f} CPU ms/frame")
    for key in ("on", "off"):
        print(
            f"  render {key:3}: {row[f'cpu_ms_per_frame_render_{key}']:6.1f} CPU ms/frame "
            f"({row[f'ratio_render_{key}']:.1f}x decode), {row[f'wall_fps_render_{key}']:.1f} fps wall, "
            f"peak RSS {row[f'peak_rss_mib_render_{key}']:.0f} MiB"
        )
        stages = row.get(f"stages_render_{key}")
        if stages:
            print("    " + ", ".join(f"{k} {v:.1f}" for k, v in stages.items()))


if __name__ == "__main__":
    main()
