"""``OUT/<video_id>/review.parquet``: the run's ranked list of moments most likely wrong, written right after the
tables it is computed from (masks.parquet, the part files' detector keyframes, the stitcher's seams).

Reading masks.parquet goes frame by frame, so the list costs the same memory for any length of video.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from sam2flow.core.review import Item, rank
from sam2flow.core.review.detections import DetectorWatch, KeyframeBoxes
from sam2flow.core.review.seams import Seam, seam_items
from sam2flow.core.review.tracks import TrackMask, TrackWatch
from sam2flow.core.stitching import MatchRule
from sam2flow.io.parquet import REVIEW_SCHEMA, ParquetSink, iter_frames, read_detections, table_from_columns
from sam2flow.results import ReviewResult
from sam2flow.stages.stitch.parts import PartSet

log = logging.getLogger(__name__)

FILE = "review.parquet"


@dataclass(frozen=True)
class ReviewInputs:
    """What one run's review list is computed from, and where it goes."""

    video_id: str
    parts: PartSet
    masks_uri: str
    review_uri: str
    times: np.ndarray
    seams: list[Seam]
    rule: MatchRule
    reviewed: frozenset[str] = frozenset()
    """Keys of the items the user marked reviewed (from corrections.yaml)."""


def keyframes(parts: PartSet) -> dict[int, KeyframeBoxes]:
    """The detector's keyframes of every part file, each taken from the subsequence that owns its frame."""
    out: dict[int, KeyframeBoxes] = {}
    for index, uri in enumerate(parts.uris):
        owned = parts.owned[index]
        for frame, boxes in read_detections(uri):
            if frame in owned:
                out[frame] = KeyframeBoxes(
                    frame, tuple((b[0], b[1], b[2], b[3]) for b in boxes), tuple(b[4] for b in boxes)
                )
    return out


def find_items(inputs: ReviewInputs) -> list[Item]:
    """Every signal of the run, ranked."""
    num_frames = inputs.parts.plan[-1].stop if inputs.parts.plan else 0
    watch = TrackWatch(inputs.parts.height, inputs.parts.width, num_frames)
    detector = DetectorWatch()
    keys = keyframes(inputs.parts)
    frames = iter_frames(inputs.masks_uri, ["frame", "track_id", "bbox", "area", "score", "rle"])
    pending = next(frames, None)
    for frame in range(num_frames):
        masks: list[TrackMask] = []
        if pending is not None and pending[0] == frame:
            t = pending[1]
            masks = [
                TrackMask(int(tid), (b[0], b[1], b[2], b[3]), int(a), float(s), r)
                for tid, b, a, s, r in zip(*(t[c].to_pylist() for c in ["track_id", "bbox", "area", "score", "rle"]))
            ]
            pending = next(frames, None)
        watch.frame(frame, masks)
        if frame in keys:
            detector.keyframe(keys[frame], watch.boxes(frame))
    seams = [item for seam in inputs.seams for item in seam_items(seam, inputs.rule)]
    return rank([*watch.items(), *detector.items(), *seams])


def review_table(video_id: str, items: list[Item], times: np.ndarray, reviewed: frozenset[str]) -> pa.Table:
    """The review list as review.parquet's table (pure)."""
    n = len(times)
    return table_from_columns(
        {
            "video_id": [video_id] * len(items),
            "rank": list(range(1, len(items) + 1)),
            "kind": [i.kind for i in items],
            "frame_start": [i.frame_start for i in items],
            "frame_stop": [i.frame_stop for i in items],
            "time_start": [float(times[min(i.frame_start, n - 1)]) if n else 0.0 for i in items],
            "track_ids": [list(i.track_ids) for i in items],
            "score": [i.score for i in items],
            "evidence": [i.evidence for i in items],
            "key": [i.key for i in items],
            "reviewed": [i.key in reviewed for i in items],
        },
        REVIEW_SCHEMA,
    )


def review_schema(video_id: str) -> pa.Schema:
    """review.parquet's schema, labelled with the video it lists."""
    return REVIEW_SCHEMA.with_metadata({**(REVIEW_SCHEMA.metadata or {}), b"video_id": video_id.encode()})


def write_review(inputs: ReviewInputs) -> ReviewResult:
    """Compute the run's review list and write review.parquet (atomically)."""
    t0 = time.perf_counter()
    items = find_items(inputs)
    with ParquetSink(inputs.review_uri, review_schema(inputs.video_id)) as sink:
        sink.write(review_table(inputs.video_id, items, inputs.times, inputs.reviewed))
    top = items[0].score if items else 0.0
    reviewed = sum(i.key in inputs.reviewed for i in items)
    log.info("%s: review list of %d item(s), top score %.2f", inputs.video_id, len(items), top)
    return ReviewResult(items=len(items), top_score=top, reviewed=reviewed, seconds=time.perf_counter() - t0)


def set_reviewed(run_dir: str, keys: list[str], reviewed: bool = True) -> int:
    """Mark items of a run's review list reviewed (or not): kept in corrections.yaml, so the marks survive
    re-stitching, and shown in review.parquet at once. Returns how many items are marked reviewed now.

    Raises:
        ReviewReadError: When the run has no readable review list, or a key names no item of it.
    """
    from sam2flow.readers.review import ReviewReadError, read_review_table, review_uri
    from sam2flow.stages.stitch import corrections

    table = read_review_table(run_dir)
    known = set(table["key"].to_pylist())
    unknown = [k for k in keys if k not in known]
    if unknown:
        raise ReviewReadError(f"{review_uri(run_dir)} has no item {unknown[0]!r}: give a key from its `key` column")
    fixes = corrections.load(run_dir) or corrections.Corrections()
    marks = [k for k in fixes.reviewed if k not in keys] + (list(keys) if reviewed else [])
    corrections.save(run_dir, fixes.model_copy(update={"reviewed": marks}))
    marked = set(marks)
    flags = pa.array([k in marked for k in table["key"].to_pylist()], pa.bool_())
    table = table.set_column(table.schema.get_field_index("reviewed"), "reviewed", flags)
    video = table["video_id"][0].as_py() if table.num_rows else ""
    with ParquetSink(review_uri(run_dir), review_schema(str(video))) as sink:
        sink.write(table)
    return sum(flags.to_pylist())
