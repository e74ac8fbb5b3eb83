"""Read a finished run from Python: ``from sam2flow import read_run``.

    run = read_run("out/bedroom-0123456789")
    tracks = run.tracks("polars")                      # or "arrow" (default) / "pandas"
    for f in run.frames(range(0, 100), tracks=[1, 2]):  # every frame in the range, with or without objects
        f.track_ids, f.boxes, f.scores, f.masks          # masks are decoded on first use

Frames are streamed from masks.parquet a batch at a time, so reading a long video does not hold all its masks.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from sam2flow.core import rle
from sam2flow.errors import InputError
from sam2flow.io import storage
from sam2flow.io.parquet import read_table, read_times
from sam2flow.job import EVENTS, SUCCESS
from sam2flow.manifest import ManifestError, read_manifest

TableKind = Literal["arrow", "polars", "pandas"]
MASK_COLUMNS = ["frame", "track_id", "class_id", "class_name", "score", "bbox", "height", "width", "rle"]


class RunReadError(InputError):
    """The folder is not a finished sam2flow run (or a file of it is missing); the message says which."""


@dataclass(frozen=True)
class Frame:
    """The tracks on one frame, as a struct of arrays (empty arrays on a frame without objects).

    Attributes:
        frame: Frame index in the video, from 0.
        time: When the frame is shown, in seconds from the first frame (the stream's timestamps).
        track_ids: ``(N,)`` int32 global track ids.
        class_ids: ``(N,)`` int32 class ids; ``class_names`` gives their names.
        boxes: ``(N, 4)`` float32 ``x0, y0, x1, y1`` in source pixels (``x1``/``y1`` one past the last pixel).
        scores: ``(N,)`` float32 SAM2 object scores in ``[0, 1]``.
        rles: COCO compressed RLE counts of each mask; ``masks`` decodes them.
    """

    frame: int
    time: float
    height: int
    width: int
    track_ids: np.ndarray
    class_ids: np.ndarray
    class_names: tuple[str, ...]
    boxes: np.ndarray
    scores: np.ndarray
    rles: tuple[str, ...] = field(repr=False)

    def __len__(self) -> int:
        return len(self.track_ids)

    @functools.cached_property
    def masks(self) -> np.ndarray:
        """``(N, H, W)`` boolean masks, decoded on first use."""
        if not self.rles:
            return np.zeros((0, self.height, self.width), dtype=bool)
        return np.stack([rle.decode(r, self.height, self.width) for r in self.rles])

    def to_supervision(self) -> Any:
        """This frame as ``supervision.Detections`` with ``tracker_id`` (needs ``pip install 'sam2flow[supervision]'``).

        Raises:
            ImportError: When supervision is not installed (the message says how to get it).
        """
        try:
            import supervision as sv
        except ImportError as exc:
            raise ImportError("to_supervision needs supervision: pip install 'sam2flow[supervision]'") from exc
        return sv.Detections(
            xyxy=self.boxes.astype(np.float32).reshape(-1, 4),
            mask=self.masks,
            confidence=self.scores.astype(np.float32),
            class_id=self.class_ids.astype(int),
            tracker_id=self.track_ids.astype(int),
            data={"class_name": np.array(self.class_names, dtype=str)},
        )


def _as(table: pa.Table, kind: TableKind) -> Any:
    if kind == "arrow":
        return table
    if kind == "pandas":
        return table.to_pandas()
    if kind == "polars":
        import polars as pl

        return pl.from_arrow(table)
    raise ValueError(f"unknown table kind {kind!r}: use 'arrow', 'polars' or 'pandas'")


class Run:
    """A finished run's output folder (``OUT/<video_id>``, local or fsspec URI): its manifest, tables and frames."""

    def __init__(self, path: str, complete: bool = True) -> None:
        self.path = path.rstrip("/")
        try:
            self.manifest = read_manifest(self.path)
        except ManifestError as exc:
            raise RunReadError(str(exc)) from exc
        if complete and not storage.exists(self.file(SUCCESS)):
            raise RunReadError(
                f"{self.path} has no {SUCCESS}: the run is unfinished or failed; run `sam2flow run` again to finish it"
            )
        self.info = self.manifest.probe
        self.video_id = self.manifest.video_id
        self.num_frames = self.manifest.frames_processed
        self.height, self.width, self.fps = self.info.height, self.info.width, self.info.fps_float

    def local_video(self) -> str | None:
        """The run's input video as a readable local file (its local copy or the input itself), or None."""
        for candidate in (self.manifest.local_input, self.manifest.input):
            if candidate and not storage.is_remote(candidate) and Path(candidate).is_file():
                return str(candidate)
        return None

    def file(self, name: str) -> str:
        """URI of a file of the run."""
        return storage.join(self.path, name)

    def _table(self, name: str, kind: TableKind, columns: list[str] | None = None) -> Any:
        uri = self.file(name)
        if not storage.exists(uri):
            raise RunReadError(f"{uri} does not exist")
        return _as(read_table(uri, columns=columns), kind)

    def masks(self, kind: TableKind = "arrow", columns: list[str] | None = None) -> Any:
        """masks.parquet: one row per (frame, track), with RLE masks (read whole: prefer `frames` on long videos)."""
        return self._table("masks.parquet", kind, columns)

    def tracks(self, kind: TableKind = "arrow") -> Any:
        """tracks.parquet: one row per track."""
        return self._table("tracks.parquet", kind)

    def events(self, kind: TableKind = "arrow") -> Any:
        """events.parquet (zone enter/exit events); an empty table when the run had no zones."""
        if not storage.exists(self.file(EVENTS)):
            from sam2flow.io.parquet import EVENTS_SCHEMA

            return _as(EVENTS_SCHEMA.empty_table(), kind)
        return self._table(EVENTS, kind)

    @functools.cached_property
    def times(self) -> np.ndarray:
        """When each frame is shown (seconds, float64), from timestamps.parquet (``frame / fps`` for older runs)."""
        uri = self.file("timestamps.parquet")
        if storage.exists(uri):
            return read_times(uri)[: self.num_frames]
        return np.arange(self.num_frames, dtype=np.float64) / self.fps

    def frames(self, frames: range | None = None, tracks: Sequence[int] | None = None) -> Iterator[Frame]:
        """Every frame of ``frames`` (default: all) in order, with the given tracks (default: all) on it."""
        span = _clip_range(frames, self.num_frames)
        batches = self._batches(span, tracks)
        pending = _rows_by_frame(batches)
        current = next(pending, None)
        for f in span:
            while current is not None and current[0] < f:
                current = next(pending, None)
            rows = current[1] if current is not None and current[0] == f else None
            yield self._frame(f, rows)

    def _batches(self, span: range, tracks: Sequence[int] | None) -> Iterator[pa.RecordBatch]:
        fs, path = storage.filesystem(self.file("masks.parquet"))
        expr = (pc.field("frame") >= span.start) & (pc.field("frame") < span.stop)
        if tracks is not None:
            expr = expr & pc.field("track_id").isin([int(t) for t in tracks])
        dataset = ds.dataset(path, filesystem=fs, format="parquet")
        return iter(dataset.to_batches(columns=MASK_COLUMNS, filter=expr, batch_size=4096))

    def _frame(self, f: int, rows: dict[str, list[Any]] | None) -> Frame:
        t = float(self.times[f]) if f < len(self.times) else f / self.fps
        if rows is None:
            return Frame(f, t, self.height, self.width, *_empty())
        return Frame(
            frame=f,
            time=t,
            height=self.height,
            width=self.width,
            track_ids=np.asarray(rows["track_id"], np.int32),
            class_ids=np.asarray(rows["class_id"], np.int32),
            class_names=tuple(rows["class_name"]),
            boxes=np.asarray(rows["bbox"], np.float32).reshape(-1, 4),
            scores=np.asarray(rows["score"], np.float32),
            rles=tuple(rows["rle"]),
        )


def _empty() -> tuple[np.ndarray, np.ndarray, tuple[str, ...], np.ndarray, np.ndarray, tuple[str, ...]]:
    return (np.zeros(0, np.int32), np.zeros(0, np.int32), (), np.zeros((0, 4), np.float32), np.zeros(0, np.float32), ())


def _clip_range(frames: range | None, num_frames: int) -> range:
    if frames is None:
        return range(num_frames)
    return range(max(frames.start, 0), min(frames.stop, num_frames))


def _rows_by_frame(batches: Iterator[pa.RecordBatch]) -> Iterator[tuple[int, dict[str, list[Any]]]]:
    """Group rows sorted by frame into one column dict per frame, across batch boundaries."""
    current: int | None = None
    group: dict[str, list[Any]] = {c: [] for c in MASK_COLUMNS}
    for batch in batches:
        cols = batch.to_pydict()
        for i, f in enumerate(cols["frame"]):
            if current is not None and f != current:
                yield current, group
                group = {c: [] for c in MASK_COLUMNS}
            current = f
            for c in MASK_COLUMNS:
                group[c].append(cols[c][i])
    if current is not None:
        yield current, group


def read_run(path: str) -> Run:
    """Open a finished run's output folder (``OUT/<video_id>``, a local path or an fsspec URI).

    Raises:
        RunReadError: When the folder has no manifest or no ``_SUCCESS`` (the message says what to do).
    """
    return Run(path)
