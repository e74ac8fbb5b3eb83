"""Stitching from part files to masks.parquet and tracks.parquet, reading one subsequence at a time.

Subsequences are linked in order (`link_subsequence`): each one's objects get their track ids from the previous
subsequence's, so memory holds one subsequence at a time, whatever the length of the video. The same links give the
render pieces drawn during segmentation their track ids (`LinkStore`, which keeps them as small files).
"""

from __future__ import annotations

import fcntl
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path

import numpy as np
import pyarrow as pa

from sam2flow.core.planning import overlap_frames, owned_ranges
from sam2flow.core.review.seams import Seam, SeamPair
from sam2flow.core.stitching import (
    ClassVotes,
    FirstSeen,
    LinkState,
    MatchRule,
    PairMatch,
    Proposal,
    final_ids,
    joined,
    link_subsequence,
    majority,
    propose_boundary,
)
from sam2flow.core.types import LocalObjId, Subsequence, TrackId
from sam2flow.io.parquet import (
    IDENTITIES,
    MASKS_SCHEMA,
    TRACKS_SCHEMA,
    ParquetSink,
    read_carried_from,
    read_id_map,
    read_manual_ids,
    read_table,
    table_from_columns,
)
from sam2flow.results import StitchResult
from sam2flow.stages.stitch.corrections import Corrections, TrackEdits

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PartSet:
    """The part files of one run, one per subsequence of its plan, the frame size of their masks and the ids its
    prompts name (those are track ids; the other tracks are numbered after the config's)."""

    plan: tuple[Subsequence, ...]
    uris: tuple[str, ...]
    height: int
    width: int
    prompted: frozenset[int] = frozenset()
    """Every ``obj_id`` the run's prompts (its config's and its corrections') use: no unnamed track takes one."""
    first_track: int = 1
    """The first id a track no prompt names may take: after every ``obj_id`` of the config's prompts."""

    def __post_init__(self) -> None:
        if len(self.plan) != len(self.uris):
            raise ValueError("one part file per subsequence is needed")

    @cached_property
    def owned(self) -> list[range]:
        """The frames each subsequence contributes to the output."""
        return owned_ranges(list(self.plan))

    def read(self, index: int, frames: range, columns: list[str] | None = None) -> pa.Table:
        """Rows of one part file on the given global frames."""
        return read_table(
            self.uris[index], columns=columns, filters=[("frame", ">=", frames.start), ("frame", "<", frames.stop)]
        )


@dataclass(frozen=True)
class VideoTables:
    """Where the stitched tables of one video go, and what they are labelled with."""

    video_id: str
    times: np.ndarray
    """When each frame of the video is shown, in seconds (indexed by frame): the ``time`` column."""
    masks_uri: str
    tracks_uri: str
    metadata: dict[str, str]
    """Added to both files' Parquet key-value metadata (e.g. ``random_weights``)."""


def _frame_objects(table: pa.Table, exclude: set[int]) -> dict[int, dict[LocalObjId, str]]:
    out: dict[int, dict[LocalObjId, str]] = {}
    for f, o, r in zip(table["frame"].to_pylist(), table["obj_id"].to_pylist(), table["rle"].to_pylist()):
        if o not in exclude:
            out.setdefault(f, {})[LocalObjId(o)] = r
    return out


def boundary_matches(parts: PartSet, right: int, rule: MatchRule) -> tuple[list[PairMatch], list[Proposal]]:
    """The objects of subsequences ``right - 1`` and ``right`` that are one object: carry links, then mask IoU over
    the frames they share. Also returns every pair the assignment proposed (joined or not), for the review."""
    lsub, rsub = parts.plan[right - 1], parts.plan[right]
    shared = overlap_frames(lsub, rsub)
    cols = ["frame", "obj_id", "rle"]
    lt, rt = parts.read(right - 1, shared, cols), parts.read(right, shared, cols)
    # Carry mode: objects continued from the left part are the same objects, by construction.
    links = read_carried_from(parts.uris[right])
    found = [PairMatch((lsub.index, LocalObjId(b)), (rsub.index, LocalObjId(a)), 1.0) for a, b in links.items()]
    lobj = _frame_objects(lt, exclude=set(links.values()))
    robj = _frame_objects(rt, exclude=set(links))
    proposals = propose_boundary(lsub.index, rsub.index, lobj, robj, list(shared), parts.height, parts.width, rule)
    found += joined(proposals)
    log.debug("boundary %d|%d: %d match(es) over %d frames", lsub.index, rsub.index, len(found), len(shared))
    return found, proposals


def owned_summary(parts: PartSet, index: int) -> tuple[dict[LocalObjId, FirstSeen], dict[LocalObjId, ClassVotes]]:
    """Each object's first appearance and class votes over the frames subsequence ``index`` owns in the output."""
    first_seen: dict[LocalObjId, FirstSeen] = {}
    votes: dict[LocalObjId, ClassVotes] = {}
    t = parts.read(index, parts.owned[index], ["frame", "obj_id", "class_id", "class_name", "bbox", "rle"])
    for f, o, cid, cname, box, r in zip(*(t[c].to_pylist() for c in t.column_names)):
        obj = LocalObjId(o)
        key: FirstSeen = (f, *box, r)
        if obj not in first_seen or key < first_seen[obj]:
            first_seen[obj] = key
        tally = votes.setdefault(obj, {})
        tally[(cid, cname)] = tally.get((cid, cname), 0) + 1
    return first_seen, votes


def link_next(parts: PartSet, prev: LinkState | None, rule: MatchRule) -> tuple[LinkState, int, Seam | None]:
    """The link state of the subsequence after ``prev`` (the first one when None), its number of matches and what
    the review needs to know of its seam (None for the first one)."""
    index = 0 if prev is None else prev.index + 1
    matches, proposals = boundary_matches(parts, index, rule) if index > 0 else ([], [])
    first_seen, votes = owned_summary(parts, index)
    named = {LocalObjId(o): n for o, n in read_manual_ids(parts.uris[index]).items()}
    fixed = {LocalObjId(o): TrackId(t) for o, t in read_id_map(parts.uris[index], IDENTITIES).items()}
    if fixed and prev is not None:
        _report_disagreements(prev, matches, fixed, index)
    if set(named.values()) & set(fixed.values()):
        log.warning(
            "subsequence %d: a prompt's obj_id is also a reference identity's id (%s): one track",
            index, ", ".join(str(n) for n in sorted(set(named.values()) & set(fixed.values()))),
        )  # fmt: skip
    state = link_subsequence(prev, index, matches, first_seen, votes, named, fixed, parts.first_track, parts.prompted)
    seam = None if prev is None else _seam(parts, prev, state, proposals)
    return state, len(matches), seam


def _seam(parts: PartSet, prev: LinkState, state: LinkState, proposals: list[Proposal]) -> Seam:
    """The seam before ``state``'s subsequence in track ids."""
    shared = overlap_frames(parts.plan[state.index - 1], parts.plan[state.index])
    pairs = tuple(
        SeamPair(prev.track_of.get(p.left[1]), state.track_of.get(p.right[1]), p.iou, p.alternative, p.joined)
        for p in proposals
    )
    return Seam(state.index, shared.start, shared.stop, pairs)


def _report_disagreements(
    prev: LinkState, matches: list[PairMatch], fixed: dict[LocalObjId, TrackId], index: int
) -> None:
    """Log where the overlap's masks join a reference identity to another identity's track (the identities win)."""
    reserved = set(fixed.values())
    for m in matches:
        left = prev.track_of.get(m.left[1])
        right = fixed.get(m.right[1])
        if left in reserved and right is not None and left != right:
            log.warning(
                "boundary %d|%d: the overlap's masks join identity track %d to identity track %d (IoU %.2f); "
                "the references keep them apart",
                index - 1, index, left, right, m.iou,
            )  # fmt: skip


def link_all(parts: PartSet, rule: MatchRule) -> Iterator[tuple[LinkState, int, Seam | None]]:
    """The link state of every subsequence in order, with its number of matches to the previous one and its seam."""
    state: LinkState | None = None
    for _ in parts.plan:
        state, matches, seam = link_next(parts, state, rule)
        yield state, matches, seam


def part_rows(
    parts: PartSet,
    index: int,
    track_of: dict[LocalObjId, TrackId],
    classes: dict[TrackId, tuple[int, str]],
    edits: TrackEdits | None = None,
) -> pa.Table:
    """The output rows of the frames subsequence ``index`` owns, with the given track ids and classes, sorted by
    (frame, track_id): masks.parquet's columns minus video_id and time. ``edits`` (corrections) change the ids.
    """
    t = parts.read(index, parts.owned[index])
    tids = [int(track_of[LocalObjId(o)]) for o in t["obj_id"].to_pylist()]
    t = t.append_column("track_id", pa.array(tids, pa.int32()))
    if edits is not None:
        t = t.sort_by([("frame", "ascending"), ("track_id", "ascending")])
        keep, new = edits.apply(t["frame"].to_numpy(), t["track_id"].to_numpy(), t["score"].to_numpy())
        t = t.take(pa.array(keep)).set_column(
            t.schema.get_field_index("track_id"), "track_id", pa.array(new, pa.int32())
        )
    t = t.sort_by([("frame", "ascending"), ("track_id", "ascending")])
    cls = [classes[TrackId(x)] for x in t["track_id"].to_pylist()]
    t = t.set_column(t.schema.get_field_index("class_id"), "class_id", pa.array([c[0] for c in cls], pa.int32()))
    return t.set_column(t.schema.get_field_index("class_name"), "class_name", pa.array([c[1] for c in cls]))


class LinkStore:
    """Link states of a run's subsequences as small JSON files, so that a render piece drawn while segmentation goes
    on finds its track ids from the previous subsequence's state instead of re-reading every earlier part file.

    Any thread or process may ask; a lock file keeps the files consistent. Nothing is kept in memory.
    """

    def __init__(self, folder: Path, parts: PartSet, rule: MatchRule) -> None:
        self.folder = folder
        self.parts = parts
        self.rule = rule

    def _path(self, index: int) -> Path:
        return self.folder / f"{index:05d}.json"

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / ".lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def state(self, index: int) -> LinkState:
        """The link state of subsequence ``index`` (its part file and every earlier one must be complete)."""
        with self._locked():
            known = next((i for i in range(index, -1, -1) if self._path(i).is_file()), -1)
            state = LinkState.from_json(json.loads(self._path(known).read_text())) if known >= 0 else None
            for _ in range(known, index):
                state, _, _ = link_next(self.parts, state, self.rule)
                self._path(state.index).write_text(json.dumps(state.to_json()))
            assert state is not None
            return state


def stitch_parts(
    parts: PartSet,
    rule: MatchRule,
    target: VideoTables,
    corrections: Corrections | None = None,
    seams: list[Seam] | None = None,
) -> StitchResult:
    """Match objects across boundaries, assign track ids and write the final tables.

    Every frame is taken from exactly one subsequence (`owned_ranges`), so masks.parquet has one row per
    (frame, track). Each track's class is the class most of its rows carry (ties: smallest class id). The
    model-free ``corrections`` (merge, split, delete, classes) are applied to the stitched tracks. ``seams``, when
    given, receives every seam in the final track ids, for the review list.
    """
    states: list[LinkState] = []
    found: list[Seam] = []
    matches = 0
    for state, n, seam in link_all(parts, rule):
        if seam is not None:
            found.append(seam)
        states.append(state)
        matches += n
    track_ofs, final_votes, next_track = renumbered(states, found)
    edits = TrackEdits(corrections, next_track) if corrections is not None and corrections.edits_tracks else None
    classes = edits.classes(final_votes) if edits else {t: majority(v) for t, v in final_votes.items()}
    if seams is not None:
        seams.extend(found if edits is None else [edits.seam(s) for s in found])
    log.info("%d boundary match(es) over %d boundaries", matches, len(parts.plan) - 1)
    masks_schema, tracks_schema = (
        s.with_metadata({**(s.metadata or {}), **{k.encode(): v.encode() for k, v in target.metadata.items()}})
        for s in (MASKS_SCHEMA, TRACKS_SCHEMA)
    )
    stats: dict[TrackId, list[float]] = {}  # first, last, count, score sum
    frames_with_masks = 0
    with ParquetSink(target.masks_uri, masks_schema) as sink:
        for index, track_of in enumerate(track_ofs):
            t = part_rows(parts, index, track_of, classes, edits)
            if t.num_rows:
                frames_with_masks += _add_track_stats(t, stats)
                sink.write(_masks_table(t, target))
        rows = sink.rows
    with ParquetSink(target.tracks_uri, tracks_schema) as tsink:
        tsink.write(_tracks_table(stats, classes, target.video_id))
    return StitchResult(tracks=len(stats), rows=rows, matches=matches, frames_with_masks=frames_with_masks)


def renumbered(
    states: list[LinkState], seams: list[Seam]
) -> tuple[list[dict[LocalObjId, TrackId]], dict[TrackId, ClassVotes], int]:
    """Every subsequence's track ids in their final numbering (`final_ids`), each track's class votes and the first
    id no track has; ``seams`` are renumbered in place."""
    final = final_ids(states)
    votes: dict[TrackId, ClassVotes] = {}
    for state in states:
        votes.update(state.votes)  # a track's votes are complete in the last state that holds it
    aliased = {a for s in states for a in s.aliases}  # their votes are counted in their name's already
    final_votes = {final[t]: v for t, v in votes.items() if t not in aliased}
    track_ofs = [{o: final[t] for o, t in s.track_of.items()} for s in states]
    if any(final[t] != t for t in final):
        seams[:] = [_renumber_seam(seam, final) for seam in seams]
    return track_ofs, final_votes, max(max(final.values(), default=0) + 1, states[-1].next_track if states else 1)


def _renumber_seam(seam: Seam, final: dict[TrackId, TrackId]) -> Seam:
    def new(t: int | None) -> int | None:
        return None if t is None else int(final.get(TrackId(t), TrackId(t)))

    pairs = tuple(replace(p, left_track=new(p.left_track), right_track=new(p.right_track)) for p in seam.pairs)
    return replace(seam, pairs=pairs)


def _add_track_stats(t: pa.Table, stats: dict[TrackId, list[float]]) -> int:
    """Fold one subsequence's output rows into each track's first/last frame, row count and score sum; returns the
    number of frames with at least one mask."""
    frames = t["frame"].to_pylist()
    for f, tid, s in zip(frames, t["track_id"].to_pylist(), t["score"].to_pylist()):
        st = stats.setdefault(TrackId(tid), [f, f, 0, 0.0])
        st[0], st[1], st[2], st[3] = min(st[0], f), max(st[1], f), st[2] + 1, st[3] + s
    return len(set(frames))


def _masks_table(t: pa.Table, target: VideoTables) -> pa.Table:
    columns = {name: t[name] for name in MASKS_SCHEMA.names if name in t.column_names}
    columns["video_id"] = pa.array([target.video_id] * t.num_rows)
    columns["time"] = pa.array(target.times[t["frame"].to_numpy()], pa.float64())
    return table_from_columns(columns, MASKS_SCHEMA)


def _tracks_table(
    stats: dict[TrackId, list[float]], classes: dict[TrackId, tuple[int, str]], video_id: str
) -> pa.Table:
    order = sorted(stats)
    return table_from_columns(
        {
            "video_id": [video_id] * len(order),
            "track_id": order,
            "class_id": [classes[t][0] for t in order],
            "class_name": [classes[t][1] for t in order],
            "first_frame": [int(stats[t][0]) for t in order],
            "last_frame": [int(stats[t][1]) for t in order],
            "num_frames": [int(stats[t][2]) for t in order],
            "mean_score": [stats[t][3] / stats[t][2] for t in order],
        },
        TRACKS_SCHEMA,
    )
