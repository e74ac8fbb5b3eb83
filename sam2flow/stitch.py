"""Stitching from part files to masks.parquet and tracks.parquet, reading one subsequence at a time."""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from sam2flow.core.planning import overlap_frames, owned_ranges
from sam2flow.core.stitching import FirstSeen, ObjectRef, PairMatch, assign_track_ids, match_boundary
from sam2flow.core.types import LocalObjId, Subsequence, TrackId
from sam2flow.io.parquet import (
    MASKS_SCHEMA,
    TRACKS_SCHEMA,
    ParquetSink,
    read_carried_from,
    read_table,
    table_from_columns,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StitchResult:
    """Summary of a stitch."""

    tracks: int
    rows: int
    matches: int
    frames_with_masks: int


def _frame_objects(table: pa.Table, exclude: set[int] | None = None) -> dict[int, dict[LocalObjId, str]]:
    out: dict[int, dict[LocalObjId, str]] = defaultdict(dict)
    for f, o, r in zip(table["frame"].to_pylist(), table["obj_id"].to_pylist(), table["rle"].to_pylist()):
        if not exclude or o not in exclude:
            out[f][LocalObjId(o)] = r
    return out


def _read_range(uri: str, frames: range, columns: list[str] | None = None) -> pa.Table:
    return read_table(uri, columns=columns, filters=[("frame", ">=", frames.start), ("frame", "<", frames.stop)])


def stitch_parts(
    plan: Sequence[Subsequence],
    part_uris: Sequence[str],
    video_id: str,
    fps: float,
    height: int,
    width: int,
    iou_threshold: float,
    masks_uri: str,
    tracks_uri: str,
    metadata: dict[str, str] | None = None,
) -> StitchResult:
    """Match objects across boundaries, assign track ids and write the final tables.

    Every frame is taken from exactly one subsequence (`owned_ranges`), so masks.parquet has one row per
    (frame, track). Each track's class is the class most of its rows carry (ties: smallest class id).
    ``metadata`` is added to both files' Parquet key-value metadata (e.g. ``random_weights``).
    """
    if len(plan) != len(part_uris):
        raise ValueError("one part file per subsequence is needed")
    matches: list[PairMatch] = []
    for (left, lu), (right, ru) in zip(zip(plan, part_uris), zip(plan[1:], part_uris[1:])):
        shared = overlap_frames(left, right)
        cols = ["frame", "obj_id", "rle"]
        lt, rt = _read_range(lu, shared, cols), _read_range(ru, shared, cols)
        # Carry mode: objects continued from the left part are the same objects, by construction.
        links = read_carried_from(ru)
        found = [PairMatch((left.index, LocalObjId(b)), (right.index, LocalObjId(a)), 1.0) for a, b in links.items()]
        lobj = _frame_objects(lt, exclude=set(links.values()))
        robj = _frame_objects(rt, exclude=set(links))
        found += match_boundary(left.index, right.index, lobj, robj, list(shared), height, width, iou_threshold)
        log.info("boundary %d|%d: %d match(es) over %d frames", left.index, right.index, len(found), len(shared))
        matches += found

    owned = owned_ranges(list(plan))
    first_seen: dict[ObjectRef, FirstSeen] = {}
    class_votes: dict[ObjectRef, Counter[tuple[int, str]]] = defaultdict(Counter)
    for sub, uri, frames in zip(plan, part_uris, owned):
        t = _read_range(uri, frames, ["frame", "obj_id", "class_id", "class_name", "bbox", "rle"])
        for f, o, cid, cname, box, r in zip(*(t[c].to_pylist() for c in t.column_names)):
            ref: ObjectRef = (sub.index, LocalObjId(o))
            key: FirstSeen = (f, *box, r)
            if ref not in first_seen or key < first_seen[ref]:
                first_seen[ref] = key
            class_votes[ref][(cid, cname)] += 1
    track_of = assign_track_ids(first_seen, matches)
    track_votes: dict[TrackId, Counter[tuple[int, str]]] = defaultdict(Counter)
    for ref, votes in class_votes.items():
        track_votes[track_of[ref]].update(votes)
    track_class = {t: min(v.items(), key=lambda kv: (-kv[1], kv[0]))[0] for t, v in track_votes.items()}

    stats: dict[TrackId, list[float]] = {}  # first, last, count, score sum
    frames_with_masks = 0
    masks_schema, tracks_schema = (
        s.with_metadata({**(s.metadata or {}), **{k.encode(): v.encode() for k, v in (metadata or {}).items()}})
        for s in (MASKS_SCHEMA, TRACKS_SCHEMA)
    )
    with ParquetSink(masks_uri, masks_schema) as sink:
        for sub, uri, frames in zip(plan, part_uris, owned):
            t = _read_range(uri, frames)
            if t.num_rows == 0:
                continue
            tids = [int(track_of[(sub.index, LocalObjId(o))]) for o in t["obj_id"].to_pylist()]
            t = t.append_column("track_id", pa.array(tids, pa.int32()))
            t = t.sort_by([("frame", "ascending"), ("track_id", "ascending")])
            frame_list = t["frame"].to_pylist()
            tid_list = t["track_id"].to_pylist()
            frames_with_masks += len(set(frame_list))
            for f, tid, s in zip(frame_list, tid_list, t["score"].to_pylist()):
                st = stats.setdefault(TrackId(tid), [f, f, 0, 0.0])
                st[0], st[1], st[2], st[3] = min(st[0], f), max(st[1], f), st[2] + 1, st[3] + s
            cls = [track_class[TrackId(x)] for x in tid_list]
            sink.write(
                table_from_columns(
                    {
                        "video_id": [video_id] * t.num_rows,
                        "frame": frame_list,
                        "time": pc.divide(pc.cast(t["frame"], pa.float64()), fps).to_pylist(),
                        "track_id": tid_list,
                        "class_id": [c[0] for c in cls],
                        "class_name": [c[1] for c in cls],
                        "score": t["score"],
                        "bbox": t["bbox"],
                        "area": t["area"],
                        "height": t["height"],
                        "width": t["width"],
                        "rle": t["rle"],
                    },
                    MASKS_SCHEMA,
                )
            )
        rows = sink.rows
    order = sorted(stats)
    with ParquetSink(tracks_uri, tracks_schema) as tsink:
        tsink.write(
            table_from_columns(
                {
                    "video_id": [video_id] * len(order),
                    "track_id": order,
                    "class_id": [track_class[t][0] for t in order],
                    "class_name": [track_class[t][1] for t in order],
                    "first_frame": [int(stats[t][0]) for t in order],
                    "last_frame": [int(stats[t][1]) for t in order],
                    "num_frames": [int(stats[t][2]) for t in order],
                    "mean_score": [stats[t][3] / stats[t][2] for t in order],
                },
                TRACKS_SCHEMA,
            )
        )
    return StitchResult(tracks=len(order), rows=rows, matches=len(matches), frames_with_masks=frames_with_masks)
