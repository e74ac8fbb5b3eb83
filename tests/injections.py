"""Errors injected into a run's part files before stitching, where the truth about them is known: the review list
must point to them. Used by the review tests and by ``benchmarks/review.py``.

Each function edits one part file in place (through the real part schema) and returns the `Injected` error: its
kind and frames. Object ids are the part file's local ids.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from sam2flow.core import rle
from sam2flow.core.types import LocalObjId, MaskRow
from sam2flow.io.parquet import part_table, rows_from_table


@dataclass(frozen=True)
class Injected:
    """One injected error: what and where (frames, stop excluded)."""

    kind: str
    frame_start: int
    frame_stop: int


def _read(uri: str) -> tuple[pa.Table, dict[bytes, bytes]]:
    table = pq.read_table(uri)
    return table, dict(pq.read_metadata(uri).metadata or {})


def _write(uri: str, rows: list[MaskRow], metadata: dict[bytes, bytes]) -> None:
    table = part_table(sorted(rows, key=lambda r: (r.frame, int(r.obj_id))))
    pq.write_table(table.replace_schema_metadata(metadata), uri)


def objects_on(uri: str, frames: range) -> list[int]:
    """Local objects present on every frame of ``frames`` in a part file."""
    rows = rows_from_table(pq.read_table(uri))
    sets = [{int(r.obj_id) for r in rows if r.frame == f} for f in frames]
    return sorted(set.intersection(*sets)) if sets else []


def mean_width(uri: str, obj: int, frames: range) -> float:
    """The mean width (px) of object ``obj``'s box over ``frames``."""
    rows = [r for r in rows_from_table(pq.read_table(uri)) if int(r.obj_id) == obj and r.frame in frames]
    return float(np.mean([r.bbox[2] - r.bbox[0] for r in rows])) if rows else 0.0


def swap(uri: str, a: int, b: int, start: int) -> Injected:
    """Objects ``a`` and ``b`` exchange ids from global frame ``start`` to the end of the part."""
    table, meta = _read(uri)
    rows = rows_from_table(table)
    out = []
    for r in rows:
        if r.frame >= start and int(r.obj_id) in (a, b):
            r = replace(r, obj_id=LocalObjId(b if int(r.obj_id) == a else a))
        out.append(r)
    _write(uri, out, meta)
    return Injected("swap", start - 1, start + 1)


def drop(uri: str, obj: int, frames: range) -> Injected:
    """Object ``obj`` is missing on ``frames``."""
    table, meta = _read(uri)
    rows = [r for r in rows_from_table(table) if not (int(r.obj_id) == obj and r.frame in frames)]
    _write(uri, rows, meta)
    return Injected("drop", frames.start, frames.stop)


def spurious(uri: str, frames: range, box: tuple[int, int, int, int], height: int, width: int) -> Injected:
    """A new object that is not there: a box-shaped mask on ``frames``."""
    table, meta = _read(uri)
    rows = rows_from_table(table)
    new = max((int(r.obj_id) for r in rows), default=-1) + 1
    mask = np.zeros((height, width), bool)
    x0, y0, x1, y1 = box
    mask[y0:y1, x0:x1] = True
    counts, bbox, area = rle.describe(mask)
    for f in frames:
        rows.append(MaskRow(f, LocalObjId(new), 0, "square", 0.9, bbox, area, height, width, counts))
    _write(uri, rows, meta)
    return Injected("spurious", frames.start, frames.stop)


def merge(uri: str, keep: int, gone: int, frames: range) -> Injected:
    """On ``frames`` object ``keep``'s mask covers both objects and ``gone`` has no mask."""
    table, meta = _read(uri)
    rows = rows_from_table(table)
    by = {(r.frame, int(r.obj_id)): r for r in rows}
    out = []
    for r in rows:
        if r.frame in frames and int(r.obj_id) == gone:
            continue
        other = by.get((r.frame, gone))
        if r.frame in frames and int(r.obj_id) == keep and other is not None:
            union = rle.decode(r.rle, r.height, r.width) | rle.decode(other.rle, r.height, r.width)
            counts, bbox, area = rle.describe(union)
            r = replace(r, rle=counts, bbox=bbox, area=area)
        out.append(r)
    _write(uri, out, meta)
    return Injected("merge", frames.start, frames.stop)


def shift(uri: str, obj: int, frames: range, dx: int) -> Injected:
    """Object ``obj``'s mask moved ``dx`` px sideways on ``frames`` (at a seam: the two sides disagree)."""
    table, meta = _read(uri)
    out = []
    for r in rows_from_table(table):
        if r.frame in frames and int(r.obj_id) == obj:
            moved = np.roll(rle.decode(r.rle, r.height, r.width), dx, axis=1)
            if moved.any():
                counts, bbox, area = rle.describe(moved)
                r = replace(r, rle=counts, bbox=bbox, area=area)
        out.append(r)
    _write(uri, out, meta)
    return Injected("seam", frames.start, frames.stop)
