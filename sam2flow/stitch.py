"""Stitching from part files to masks.parquet and tracks.parquet, reading one subsequence at a time."""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

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


def boundary_matches(
    left: Subsequence, left_uri: str, right: Subsequence, right_uri: str, height: int, width: int, iou_threshold: float
) -> list[PairMatch]:
    """The objects of two neighbouring part files that are one object: carry links, then mask IoU over the overlap."""
    shared = overlap_frames(left, right)
    cols = ["frame", "obj_id", "rle"]
    lt, rt = _read_range(left_uri, shared, cols), _read_range(right_uri, shared, cols)
    # Carry mode: objects continued from the left part are the same objects, by construction.
    links = read_carried_from(right_uri)
    found = [PairMatch((left.index, LocalObjId(b)), (right.index, LocalObjId(a)), 1.0) for a, b in links.items()]
    lobj = _frame_objects(lt, exclude=set(links.values()))
    robj = _frame_objects(rt, exclude=set(links))
    found += match_boundary(left.index, right.index, lobj, robj, list(shared), height, width, iou_threshold)
    log.debug("boundary %d|%d: %d match(es) over %d frames", left.index, right.index, len(found), len(shared))
    return found


Votes = dict[ObjectRef, Counter[tuple[int, str]]]
Tracks = tuple[dict[ObjectRef, TrackId], dict[TrackId, tuple[int, str]]]
"""Track id of each object, and each track's (class id, class name)."""


def owned_summary(sub: Subsequence, uri: str, frames: range) -> tuple[dict[ObjectRef, FirstSeen], Votes]:
    """Each object's first appearance and class votes over the frames a subsequence owns in the output."""
    first_seen: dict[ObjectRef, FirstSeen] = {}
    class_votes: Votes = defaultdict(Counter)
    t = _read_range(uri, frames, ["frame", "obj_id", "class_id", "class_name", "bbox", "rle"])
    for f, o, cid, cname, box, r in zip(*(t[c].to_pylist() for c in t.column_names)):
        ref: ObjectRef = (sub.index, LocalObjId(o))
        key: FirstSeen = (f, *box, r)
        if ref not in first_seen or key < first_seen[ref]:
            first_seen[ref] = key
        class_votes[ref][(cid, cname)] += 1
    return first_seen, class_votes


@dataclass
class Linker:
    """Track ids and classes from part files, computed for the whole plan or for its first subsequences.

    Matches and per-part summaries are kept, so asking again after more parts are complete only reads the new ones.
    Track ids depend only on earlier subsequences (tracks are numbered by first appearance), so the ids of the
    objects of subsequences ``0..upto`` are final once those parts are; a track's class (its majority) may still
    change when later parts add rows.
    """

    plan: Sequence[Subsequence]
    part_uris: Sequence[str]
    height: int
    width: int
    iou_threshold: float
    _matches: dict[int, list[PairMatch]] = field(default_factory=dict)
    _summaries: dict[int, tuple[dict[ObjectRef, FirstSeen], Votes]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.plan) != len(self.part_uris):
            raise ValueError("one part file per subsequence is needed")
        self.owned = owned_ranges(list(self.plan))

    def matches(self, upto: int) -> list[PairMatch]:
        """Matches across the boundaries between subsequences ``0..upto``."""
        out: list[PairMatch] = []
        for i in range(upto):
            if i not in self._matches:
                p, u = self.plan, self.part_uris
                self._matches[i] = boundary_matches(
                    p[i], u[i], p[i + 1], u[i + 1], self.height, self.width, self.iou_threshold
                )
            out += self._matches[i]
        return out

    def tracks(self, upto: int | None = None) -> Tracks:
        """Track id of every object of subsequences ``0..upto`` (all when None) and each track's class so far.

        Each track's class is the class most of its rows carry (ties: smallest class id).
        """
        last = len(self.plan) - 1 if upto is None else upto
        first_seen: dict[ObjectRef, FirstSeen] = {}
        class_votes: Votes = {}
        for i in range(last + 1):
            if i not in self._summaries:
                self._summaries[i] = owned_summary(self.plan[i], self.part_uris[i], self.owned[i])
            seen, part_votes = self._summaries[i]
            first_seen.update(seen)
            class_votes.update(part_votes)
        track_of = assign_track_ids(first_seen, self.matches(last))
        track_votes: dict[TrackId, Counter[tuple[int, str]]] = defaultdict(Counter)
        for ref, votes in class_votes.items():
            track_votes[track_of[ref]].update(votes)
        track_class = {t: min(v.items(), key=lambda kv: (-kv[1], kv[0]))[0] for t, v in track_votes.items()}
        return track_of, track_class


def part_rows(linker: Linker, index: int, tracks: Tracks) -> pa.Table:
    """The output rows of the frames subsequence ``index`` owns, with the given track ids and classes (from
    `Linker.tracks`), sorted by (frame, track_id): masks.parquet's columns minus video_id and time.
    """
    track_of, track_class = tracks
    sub = linker.plan[index]
    t = _read_range(linker.part_uris[index], linker.owned[index])
    tids = [int(track_of[(sub.index, LocalObjId(o))]) for o in t["obj_id"].to_pylist()]
    t = t.append_column("track_id", pa.array(tids, pa.int32()))
    t = t.sort_by([("frame", "ascending"), ("track_id", "ascending")])
    cls = [track_class[TrackId(x)] for x in t["track_id"].to_pylist()]
    t = t.set_column(t.schema.get_field_index("class_id"), "class_id", pa.array([c[0] for c in cls], pa.int32()))
    return t.set_column(t.schema.get_field_index("class_name"), "class_name", pa.array([c[1] for c in cls]))


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
    linker = Linker(plan, part_uris, height, width, iou_threshold)
    tracks = linker.tracks()
    matches = linker.matches(len(plan) - 1)
    log.info("%d boundary match(es) over %d boundaries", len(matches), len(plan) - 1)
    stats: dict[TrackId, list[float]] = {}  # first, last, count, score sum
    frames_with_masks = 0
    masks_schema, tracks_schema = (
        s.with_metadata({**(s.metadata or {}), **{k.encode(): v.encode() for k, v in (metadata or {}).items()}})
        for s in (MASKS_SCHEMA, TRACKS_SCHEMA)
    )
    with ParquetSink(masks_uri, masks_schema) as sink:
        for sub in plan:
            t = part_rows(linker, sub.index, tracks)
            if t.num_rows == 0:
                continue
            frame_list = t["frame"].to_pylist()
            tid_list = t["track_id"].to_pylist()
            frames_with_masks += len(set(frame_list))
            for f, tid, s in zip(frame_list, tid_list, t["score"].to_pylist()):
                st = stats.setdefault(TrackId(tid), [f, f, 0, 0.0])
                st[0], st[1], st[2], st[3] = min(st[0], f), max(st[1], f), st[2] + 1, st[3] + s
            sink.write(
                table_from_columns(
                    {
                        "video_id": [video_id] * t.num_rows,
                        "frame": frame_list,
                        "time": pc.divide(pc.cast(t["frame"], pa.float64()), fps).to_pylist(),
                        "track_id": tid_list,
                        "class_id": t["class_id"],
                        "class_name": t["class_name"],
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
                    "class_id": [tracks[1][t][0] for t in order],
                    "class_name": [tracks[1][t][1] for t in order],
                    "first_frame": [int(stats[t][0]) for t in order],
                    "last_frame": [int(stats[t][1]) for t in order],
                    "num_frames": [int(stats[t][2]) for t in order],
                    "mean_score": [stats[t][3] / stats[t][2] for t in order],
                },
                TRACKS_SCHEMA,
            )
        )
    return StitchResult(tracks=len(order), rows=rows, matches=len(matches), frames_with_masks=frames_with_masks)
