"""Test doubles for stitching logic: a segmenter that replays known masks and a detector that returns known boxes.

They are used only inside tests, to check sam2flow's own logic (prompting, part files, stitching) against exact
ground truth. The real SAM2 and YOLO path is tested separately, end to end.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from sam2flow.core.prompts import box_iou
from sam2flow.core.types import Detections, FrameMasks, LocalObjId, ObjectPrompt, ReferencePrompt, Subsequence
from tests.synth import Bar, Square


class Scene:
    """Ground truth: squares on a canvas, each present on its own frame range."""

    def __init__(self, squares: tuple[Square, ...], height: int = 120, width: int = 200) -> None:
        self.squares = squares
        self.height = height
        self.width = width

    def present(self, frame: int) -> list[int]:
        return [i for i, s in enumerate(self.squares) if s.first <= frame <= s.last]

    def box(self, i: int, frame: int) -> tuple[float, float, float, float]:
        x0, y0, x1, y1 = self.squares[i].box(frame)
        return float(max(x0, 0)), float(max(y0, 0)), float(min(x1, self.width)), float(min(y1, self.height))

    def full_mask(self, i: int, frame: int) -> np.ndarray:
        m = np.zeros((self.height, self.width), bool)
        x0, y0, x1, y1 = (int(v) for v in self.box(i, frame))
        m[y0:y1, x0:x1] = True
        return m

    def mask(self, i: int, frame: int) -> np.ndarray:
        """The visible part of square i: squares later in the list are drawn on top."""
        m = self.full_mask(i, frame)
        for j in self.present(frame):
            if j > i:
                m &= ~self.full_mask(j, frame)
        return m


class ReplaySession:
    """Follows each prompted object with its exact ground-truth mask."""

    def __init__(self, scene: Scene, sub: Subsequence) -> None:
        self.scene, self.sub = scene, sub
        self.num_frames, self.height, self.width = sub.length, scene.height, scene.width
        self.gt_of: dict[LocalObjId, int] = {}

    def _masks(self, local: int) -> FrameMasks:
        g = self.sub.to_global(local)
        objs = [(o, gt) for o, gt in self.gt_of.items() if gt in self.scene.present(g) and self.scene.mask(gt, g).any()]
        masks = (
            np.stack([self.scene.mask(gt, g) for _, gt in objs])
            if objs
            else np.zeros((0, self.height, self.width), bool)
        )
        return FrameMasks(local, tuple(o for o, _ in objs), masks, np.full(len(objs), 0.9, np.float32))

    def add(self, prompt: ObjectPrompt) -> FrameMasks:
        g = self.sub.to_global(prompt.frame)
        present = self.scene.present(g)
        if prompt.mask is not None:
            ious = np.array(
                [
                    (prompt.mask & self.scene.mask(i, g)).sum() / (prompt.mask | self.scene.mask(i, g)).sum()
                    for i in present
                ]
            )
        elif prompt.box is not None:
            ious = box_iou(np.array([prompt.box]), np.array([self.scene.box(i, g) for i in present]))[0]
        else:  # point prompts: the square holding the first positive point
            x, y = prompt.points[0]
            ious = np.array([float(self.scene.mask(i, g)[int(y), int(x)]) for i in present])
        self.gt_of[prompt.local_id] = present[int(np.argmax(ious))]
        return self._masks(prompt.frame)

    def remove(self, obj_id: LocalObjId) -> None:
        del self.gt_of[obj_id]

    def reset(self) -> None:
        self.gt_of.clear()

    def add_references(self, frames: Sequence[ReferencePrompt]) -> None:
        """Each identity follows the square its reference mask shows on the reference's own frame of the scene."""
        for f in frames:
            present = self.scene.present(f.source_frame)
            for obj, mask in f.masks.items():
                truth = [self.scene.mask(i, f.source_frame) for i in present]
                ious = [(mask & t).sum() / max((mask | t).sum(), 1) for t in truth]
                self.gt_of[obj] = present[int(np.argmax(ious))]

    def propagate(self, start: int, stop: int, reverse: bool = False) -> Iterator[FrameMasks]:
        if not self.gt_of:
            return
        for f in range(stop, start - 1, -1) if reverse else range(start, stop + 1):
            yield self._masks(f)


class ReplaySegmenter:
    """Opens a `ReplaySession` for one subsequence."""

    def __init__(self, scene: Scene, sub: Subsequence) -> None:
        self.scene, self.sub = scene, sub

    @contextmanager
    def session(self, frames_dir: Path) -> Iterator[ReplaySession]:
        yield ReplaySession(self.scene, self.sub)


class ReplayDetector:
    """Returns the ground-truth boxes of the keyframe, in an order shuffled by ``seed`` (all with equal scores)."""

    names: ClassVar[dict[int, str]] = {0: "square"}

    def __init__(self, scene: Scene, sub: Subsequence, seed: int = 0, blind: bool = False) -> None:
        self.scene, self.sub, self.rng, self.blind = scene, sub, random.Random(seed * 1000 + sub.index), blind

    def __call__(self, image: Path) -> Detections:
        g = self.sub.to_global(int(image.stem))
        present = [] if self.blind else self.scene.present(g)
        self.rng.shuffle(present)
        if not present:
            return Detections.empty()
        return Detections(
            boxes=np.array([self.scene.box(i, g) for i in present], np.float32),
            scores=np.full(len(present), 0.9, np.float32),
            class_ids=np.zeros(len(present), np.int64),
            class_names=tuple("square" for _ in present),
        )


def write_davis(scene: Scene, frames: int, folder: Path) -> Path:
    """Ground truth as DAVIS-style indexed PNGs (object i has value i + 1; later squares are drawn on top)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for f in range(frames):
        img = np.zeros((scene.height, scene.width), np.uint8)
        for i in scene.present(f):
            img[scene.full_mask(i, f)] = i + 1
        Image.fromarray(img, mode="L").save(folder / f"{f:05d}.png")
    return folder


def write_mot(scene: Scene, frames: int, path: Path) -> Path:
    """Ground truth as MOT text (frame from 1, id, x, y, w, h; x and y 1-based, as in MOTChallenge)."""
    with open(path, "w") as f:
        for t in range(frames):
            for i in scene.present(t):
                x0, y0, x1, y1 = scene.box(i, t)
                f.write(f"{t + 1},{i + 1},{x0 + 1},{y0 + 1},{x1 - x0},{y1 - y0},1,-1,-1,-1\n")
    return path


def run_scene(
    scene: Scene,
    tmp: Path,
    frames: int,
    length: int,
    overlap: int,
    every: int,
    seed: int = 0,
    iou: float = 0.5,
    overrides: tuple[str, ...] = (),
    blind: frozenset[int] = frozenset(),
    noise: tuple[int, int, float] | None = None,
    times: np.ndarray | None = None,
    min_iou: float | None = None,
) -> Path:
    """Segment every subsequence with the replay doubles through the real driver, then stitch; returns masks.parquet.

    ``blind`` names subsequences whose detector finds nothing at all; ``noise`` = (jitter px, erode px, drop
    probability) replays noisy masks instead of perfect ones.
    """
    from sam2flow.config import load_config
    from sam2flow.core.planning import plan_subsequences
    from sam2flow.core.stitching import MatchRule
    from sam2flow.stages.segment.driver import SegmentSettings, segment_subsequence
    from sam2flow.stages.stitch.parts import PartSet, VideoTables, stitch_parts

    tmp.mkdir(parents=True, exist_ok=True)
    cfg = load_config(
        None,
        [f"chunking.length={length}", f"chunking.overlap={overlap}", f"detector.detect_every={every}", *overrides],
    )
    plan = plan_subsequences(frames, length, overlap)
    parts = []
    for sub in plan:
        uri = str(tmp / f"part-{sub.index}.parquet")
        segmenter = (
            ReplaySegmenter(scene, sub) if noise is None else NoisyReplaySegmenter(scene, sub, *noise, seed=seed)
        )
        segment_subsequence(
            segmenter,
            ReplayDetector(scene, sub, seed, blind=sub.index in blind),
            tmp / f"{sub.index:05d}",
            sub,
            SegmentSettings.from_config(cfg),
            uri,
            carry_from=parts[-1] if parts and cfg.chunking.mode == "carry" else None,
        )
        parts.append(uri)
    masks = tmp / "masks.parquet"
    times = np.arange(frames, dtype=np.float64) / 24.0 if times is None else times
    target = VideoTables("synthetic", times, str(masks), str(tmp / "tracks.parquet"), metadata={})
    floor = cfg.stitching.min_iou if min_iou is None else min_iou
    rule = MatchRule(iou, floor, cfg.stitching.margin)
    stitch_parts(PartSet(tuple(plan), tuple(parts), scene.height, scene.width), rule, target)
    return masks


STRESS_FRAMES = 96
STRESS = Scene(
    (
        Square((255, 0, 0), y=5, x0=0, speed=1.8, size=22),  # crosses every boundary
        Square((0, 255, 0), y=35, x0=20, speed=1.0, size=18, first=20, last=70),  # enters and leaves inside overlaps
        Square((9, 9, 9), y=70, x0=10, speed=2.25, size=20),  # two look-alikes crossing at frame 40, inside the
        Square((9, 9, 9), y=70, x0=190, speed=-2.25, size=20),  # 32-48 overlap (the second is drawn on top)
    ),
    height=120,
    width=220,
)
"""A scene that stresses stitching (with 32-frame subsequences overlapping by 16)."""


def thin_scene(width: int) -> Scene:
    """Bars ``width`` px wide (96 frames): one crossing every boundary, one crossing it inside the 48-64 overlap, and
    a vertical bar whose lower end touches a horizontal one, moving together."""
    return Scene(
        (
            Bar((255, 0, 0), y=10, x0=20, speed=1.5, size=width, length=50),
            Bar((0, 255, 0), y=10, x0=200, speed=-1.5, size=width, length=50),
            Bar((0, 0, 255), y=100, x0=10, speed=1.0, size=width, length=40, horizontal=True),
            Bar((9, 9, 9), y=70, x0=30, speed=1.0, size=width, length=30),
        ),
        height=120,
        width=220,
    )


def track_purity(scene: Scene, masks: Path) -> tuple[int, int, int]:
    """(fragments, mixed tracks, tracks) of a stitched run: fragments = tracks beyond one per object, mixed = tracks
    holding more than one object. Each row goes to the object whose box centre is nearest its own; rows where two
    objects are within 3 px of each other (while they cross) are left out."""
    import pyarrow.parquet as pq

    tracks_of: dict[int, set[int]] = {}
    objects_of: dict[int, set[int]] = {}
    for row in pq.read_table(masks, columns=["frame", "track_id", "bbox"]).to_pylist():
        x0, y0, x1, y1 = row["bbox"]
        dist = sorted(
            (float(np.hypot((x0 + x1 - b[0] - b[2]) / 2, (y0 + y1 - b[1] - b[3]) / 2)), i)
            for i in scene.present(row["frame"])
            for b in [scene.box(i, row["frame"])]
        )
        if len(dist) > 1 and dist[1][0] - dist[0][0] < 3:
            continue
        tracks_of.setdefault(dist[0][1], set()).add(row["track_id"])
        objects_of.setdefault(row["track_id"], set()).add(dist[0][1])
    fragments = sum(len(t) - 1 for t in tracks_of.values())
    return fragments, sum(len(o) > 1 for o in objects_of.values()), len(objects_of)


class NoisyReplaySession(ReplaySession):
    """Replayed masks with seeded noise: shifted by up to ``jitter`` px, eroded by ``erode`` px, dropped with
    probability ``drop`` on each frame."""

    def __init__(self, scene: Scene, sub: Subsequence, jitter: int, erode: int, drop: float, seed: int) -> None:
        super().__init__(scene, sub)
        self.jitter, self.erode, self.drop, self.seed = jitter, erode, drop, seed

    def _masks(self, local: int) -> FrameMasks:
        from scipy.ndimage import binary_erosion

        fm = super()._masks(local)
        keep, masks = [], []
        for o, m in zip(fm.obj_ids, fm.masks):
            rng = np.random.default_rng([self.seed, self.sub.index, local, int(o)])
            if rng.random() < self.drop:
                continue
            if self.jitter:
                dy, dx = rng.integers(-self.jitter, self.jitter + 1, size=2)
                m = np.roll(np.roll(m, int(dy), axis=0), int(dx), axis=1)
            if self.erode:
                m = binary_erosion(m, iterations=self.erode)
            if m.any():
                keep.append(o)
                masks.append(m)
        stack = np.stack(masks) if masks else np.zeros((0, self.height, self.width), bool)
        return FrameMasks(fm.frame, tuple(keep), stack, np.full(len(keep), 0.9, np.float32))


class NoisyReplaySegmenter(ReplaySegmenter):
    """Opens a `NoisyReplaySession`."""

    def __init__(
        self, scene: Scene, sub: Subsequence, jitter: int = 0, erode: int = 0, drop: float = 0.0, seed: int = 0
    ):
        super().__init__(scene, sub)
        self.noise = (jitter, erode, drop, seed)

    @contextmanager
    def session(self, frames_dir: Path) -> Iterator[ReplaySession]:
        yield NoisyReplaySession(self.scene, self.sub, *self.noise)


def finished_run(scene: Scene, folder: Path, frames: int, zones: str | None = None) -> Path:
    """A finished run's output folder made without models: the scene's clip, its masks segmented by the replay
    doubles through the real driver and stitcher, timestamps, events (with ``zones``), a manifest and ``_SUCCESS``.

    Frames are shown at irregular times (a variable frame rate), so time columns can be checked against them."""
    import json

    from sam2flow.config import load_config
    from sam2flow.io.parquet import write_times
    from sam2flow.io.video import probe
    from sam2flow.results import PrepareSummary, RunManifest, RunStages, StitchResult, to_json
    from sam2flow.stages.stitch.events import write_events
    from tests.synth import write_clip

    run = folder / "run"
    clip = write_clip(folder / "clip.mp4", frames, scene.width, scene.height, squares=scene.squares)
    times = np.cumsum(np.where(np.arange(frames) % 2, 0.05, 0.03)) - 0.03
    masks = run_scene(
        scene, run, frames=frames, length=32, overlap=16, every=16, times=times, overrides=("segmenter.max_objects=8",)
    )
    for part in run.glob("part-*.parquet"):
        part.unlink()
    write_times(str(run / "timestamps.parquet"), times)
    cfg = load_config(None, [zones] if zones else [])
    if zones:
        write_events(str(masks), str(run / "events.parquet"), cfg.zones, "synthetic", times, frames)
    manifest = RunManifest(
        video_id="synthetic",
        input=str(clip),
        local_input=str(clip),
        probe=probe(str(clip)),
        frames_processed=frames,
        config=cfg,
        stages=RunStages(prepare=PrepareSummary(0.5), stitch=StitchResult(len(scene.squares), 0, 0, 0, seconds=0.25)),
        wall_seconds=2.0,
    )
    (run / "manifest.json").write_text(json.dumps(to_json(manifest)))
    (run / "_SUCCESS").write_text("")
    return run


def replayed_job(scene: Scene, folder: Path, frames: int, *overrides: str) -> tuple[Any, Any]:
    """A job prepared by the real prepare stage on the scene's clip (the smoke config's random checkpoints, never
    loaded here), with every part file written by the replay doubles through the real driver: the stages after
    segmentation can run on it without a model. Returns ``(VideoJob, PipelineConfig)``."""
    from sam2flow.config import load_config
    from sam2flow.stages.prepare import prepare
    from sam2flow.stages.segment.driver import SegmentSettings, segment_subsequence
    from tests.synth import write_clip

    clip = write_clip(folder / "clip.mp4", frames, scene.width, scene.height, squares=scene.squares)
    sets = ["chunking.length=32", "chunking.overlap=16", "detector.detect_every=16", "prompts=[]",
            "segmenter.max_objects=8", "runtime.device=cpu", f"output.work_dir={folder / 'work'}",
            *overrides]  # fmt: skip
    cfg = load_config(Path(__file__).resolve().parents[1] / "configs" / "smoke.yaml", sets)
    job = prepare(str(clip), str(folder / "out"), cfg)
    for sub in job.plan:
        segment_subsequence(ReplaySegmenter(scene, sub), ReplayDetector(scene, sub), job.frames_dir(sub.index), sub,
                            SegmentSettings.from_config(cfg), job.part_uri(sub.index))  # fmt: skip
    return job, cfg
