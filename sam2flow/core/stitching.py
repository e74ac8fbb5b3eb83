"""Pure stitching: local objects of neighbouring subsequences matched into global tracks.

Objects of two neighbouring subsequences are compared by mask IoU averaged over the frames they share, matched
one-to-one (Hungarian assignment), kept when the pair is clearly one object (`MatchRule`: above a threshold, or above a
lower floor while beating every alternative of both objects by a margin), and linked subsequence by subsequence into
tracks. Track ids
are numbered by first appearance in the output; ties are broken by the object's own first box and mask, never by
its local id, so renumbering local ids inside a subsequence changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from sam2flow.core.rle import iou_rle
from sam2flow.core.types import LocalObjId, TrackId

ObjectRef = tuple[int, LocalObjId]
"""A local object named by (subsequence index, local object id)."""

FirstSeen = tuple[int, float, float, float, float, str]
"""Sort key of an object's first appearance: (frame, x0, y0, x1, y1, rle)."""

FrameObjects = Mapping[int, Mapping[LocalObjId, str]]
"""Per global frame, each present object's RLE counts string."""


@dataclass(frozen=True)
class PairMatch:
    """A matched pair of objects across one boundary, with their mean overlap IoU."""

    left: ObjectRef
    right: ObjectRef
    iou: float


@dataclass(frozen=True)
class MatchRule:
    """When an assigned pair of objects across a boundary is one object.

    Thin objects (a few pixels wide) with a little mask noise can share as little as 0.3 mean IoU with themselves
    across an overlap while every wrong pair stays near 0: a fixed threshold either barely holds or fragments their
    tracks. So a pair below ``threshold`` is still joined when it reaches ``floor`` and its IoU is at least
    ``margin`` times the best IoU either of its objects has with any other object.

    Attributes:
        threshold: Mean overlap IoU at which an assigned pair is joined outright.
        floor: Below this a pair is never joined (set it to ``threshold`` or above for a fixed threshold).
        margin: How many times the best alternative a pair between ``floor`` and ``threshold`` must reach.
    """

    threshold: float = 0.3
    floor: float = 0.05
    margin: float = 2.0

    def joins(self, iou: float, alternative: float) -> bool:
        """Whether a pair with mean overlap ``iou`` is one object, given the best IoU of either object elsewhere."""
        if iou <= 0:
            return False
        return iou >= self.threshold or (iou >= self.floor and iou >= self.margin * alternative)


def mean_overlap_iou(
    left: FrameObjects, right: FrameObjects, frames: Sequence[int], height: int, width: int
) -> tuple[list[LocalObjId], list[LocalObjId], np.ndarray]:
    """Mean IoU of every (left object, right object) pair over the shared frames.

    For each pair the mean runs over the frames where at least one of the two is present; a frame where only one
    is present counts as IoU 0. Pairs that are never present together score 0.

    Returns:
        The sorted left ids, the sorted right ids and the ``(len(left_ids), len(right_ids))`` IoU matrix.
    """
    left_ids = sorted({o for f in frames for o in left.get(f, {})})
    right_ids = sorted({o for f in frames for o in right.get(f, {})})
    li = {o: i for i, o in enumerate(left_ids)}
    ri = {o: i for i, o in enumerate(right_ids)}
    total = np.zeros((len(left_ids), len(right_ids)))
    count = np.zeros_like(total)
    for f in frames:
        lf, rf = left.get(f, {}), right.get(f, {})
        lrow = np.zeros(len(left_ids), dtype=bool)
        rrow = np.zeros(len(right_ids), dtype=bool)
        lrow[[li[o] for o in lf]] = True
        rrow[[ri[o] for o in rf]] = True
        count += lrow[:, None] | rrow[None, :]
        if lf and rf:
            lo, ro = list(lf), list(rf)
            ious = iou_rle([lf[o] for o in lo], [rf[o] for o in ro], height, width)
            total[np.ix_([li[o] for o in lo], [ri[o] for o in ro])] += ious
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 0, total / np.maximum(count, 1), 0.0)
    return left_ids, right_ids, mean


@dataclass(frozen=True)
class Proposal:
    """A pair the Hungarian assignment proposed across one boundary, whether the rule joins it or not."""

    left: ObjectRef
    right: ObjectRef
    iou: float
    alternative: float
    """The best IoU either object has with another object of the other side."""
    joined: bool


def propose_boundary(
    left_index: int,
    right_index: int,
    left: FrameObjects,
    right: FrameObjects,
    frames: Sequence[int],
    height: int,
    width: int,
    rule: MatchRule,
) -> list[Proposal]:
    """Every pair of the one-to-one assignment on mean overlap IoU across one boundary, each marked joined or not
    by ``rule`` (`joined` keeps the matches; the review list looks at all of them)."""
    left_ids, right_ids, iou = mean_overlap_iou(left, right, frames, height, width)
    if iou.size == 0:
        return []
    out = []
    for r, c in zip(*linear_sum_assignment(iou, maximize=True)):
        value, alternative = float(iou[r, c]), _best_alternative(iou, r, c)
        joined = rule.joins(value, alternative)
        out.append(Proposal((left_index, left_ids[r]), (right_index, right_ids[c]), value, alternative, joined))
    return out


def joined(proposals: Iterable[Proposal]) -> list[PairMatch]:
    """The matches of a boundary: the proposed pairs the rule joins."""
    return [PairMatch(p.left, p.right, p.iou) for p in proposals if p.joined]


def _best_alternative(iou: np.ndarray, r: int, c: int) -> float:
    """The highest IoU of left object ``r`` with another right object, or of right object ``c`` with another left."""
    row = np.delete(iou[r], c)
    col = np.delete(iou[:, c], r)
    return float(max(row.max(initial=0.0), col.max(initial=0.0)))


ClassVotes = dict[tuple[int, str], int]
"""How many output rows carry each (class id, class name)."""


@dataclass(frozen=True)
class LinkState:
    """Track ids after subsequences ``0..index``, as far as later subsequences need them.

    Matches are one-to-one at every boundary, so a track is a chain of objects of consecutive subsequences: a track
    with no object in subsequence ``index`` never continues. The state therefore keeps only the track ids of that
    subsequence's objects and the class votes of their tracks, and its size does not grow with the video.

    Attributes:
        index: The last subsequence linked.
        track_of: Track id of each object of subsequence ``index`` that has one (an object seen only on frames
            another subsequence owns has none, unless it continues a track).
        votes: Class votes of each track in ``track_of``, over every subsequence so far.
        next_track: The first unused track id.
        named: The track of each object named by a manual prompt's ``obj_id`` so far (few: kept for the whole
            video, so a named object keeps its track in every subsequence it is prompted in).
    """

    index: int
    track_of: dict[LocalObjId, TrackId]
    votes: dict[TrackId, ClassVotes]
    next_track: int
    named: dict[int, TrackId] = field(default_factory=dict)

    def classes(self) -> dict[TrackId, tuple[int, str]]:
        """Each track's class so far: the one most of its rows carry (ties: smallest class id)."""
        return {t: majority(v) for t, v in self.votes.items()}

    def to_json(self) -> dict[str, object]:
        """A JSON-safe form (see `from_json`)."""
        return {
            "index": self.index,
            "track_of": [[int(o), int(t)] for o, t in self.track_of.items()],
            "votes": [[int(t), c, n, k] for t, v in self.votes.items() for (c, n), k in v.items()],
            "next_track": self.next_track,
            "named": [[k, int(t)] for k, t in self.named.items()],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LinkState:
        """The state written by `to_json`."""
        votes: dict[TrackId, ClassVotes] = {}
        for t, c, n, k in data["votes"]:
            votes.setdefault(TrackId(int(t)), {})[(int(c), str(n))] = int(k)
        track_of = {LocalObjId(int(o)): TrackId(int(t)) for o, t in data["track_of"]}
        named = {int(k): TrackId(int(t)) for k, t in data.get("named", [])}
        return cls(int(data["index"]), track_of, votes, int(data["next_track"]), named)


def majority(votes: Mapping[tuple[int, str], int]) -> tuple[int, str]:
    """The (class id, class name) with most votes; ties go to the smallest class id."""
    return min(votes.items(), key=lambda kv: (-kv[1], kv[0]))[0]


def link_subsequence(
    prev: LinkState | None,
    index: int,
    matches: Iterable[PairMatch],
    first_seen: Mapping[LocalObjId, FirstSeen],
    votes: Mapping[LocalObjId, Mapping[tuple[int, str], int]],
    named: Mapping[LocalObjId, int] | None = None,
    fixed: Mapping[LocalObjId, TrackId] | None = None,
) -> LinkState:
    """Give the objects of subsequence ``index`` their track ids, continuing ``prev`` (None for the first one).

    An object matched to an object of the previous subsequence that has a track continues that track. Every other
    object seen in the output (``first_seen``: on the frames this subsequence owns) starts a new track; new tracks
    are numbered in the order of their first appearance, ties broken by the object's first box and mask, never by
    its local id. Since each subsequence owns later frames than the ones before it, this numbers all tracks of the
    video by first appearance.

    Args:
        prev: The state after subsequence ``index - 1``.
        index: The subsequence being linked.
        matches: Its matches with the previous subsequence (left: previous, right: this one).
        first_seen: For each object present on the frames this subsequence owns, its first appearance there.
        votes: For each of those objects, its rows' class votes on those frames.
        named: Objects that manual prompts name with an ``obj_id``: one named earlier keeps that track, whatever
            the masks matched (a correction says which object it is).
        fixed: Reference identities and their track ids: each keeps its id, whatever the masks matched, and new
            tracks are numbered after every identity's id.
    """
    track_of: dict[LocalObjId, TrackId] = {}
    if prev is not None:
        for m in matches:
            track = prev.track_of.get(m.left[1])
            if track is not None:
                track_of[m.right[1]] = track
    known = dict(prev.named) if prev is not None else {}
    for o, name in (named or {}).items():
        track = known.get(name)
        if track is not None:
            track_of = {k: t for k, t in track_of.items() if t != track}  # no other object keeps that track
            track_of[o] = track
    if fixed:
        reserved = set(fixed.values())
        track_of = {k: t for k, t in track_of.items() if t not in reserved}
        track_of.update(fixed)
    fresh = sorted((o for o in first_seen if o not in track_of), key=lambda o: first_seen[o])
    next_track = max(prev.next_track if prev is not None else 1, max((fixed or {}).values(), default=0) + 1)
    for o in fresh:
        track_of[o] = TrackId(next_track)
        next_track += 1
    for o, name in (named or {}).items():
        if o in track_of:
            known.setdefault(name, track_of[o])
    merged: dict[TrackId, ClassVotes] = {
        t: dict(prev.votes.get(t, {})) if prev is not None else {} for t in set(track_of.values())
    }
    for o, object_votes in votes.items():
        tally = merged[track_of[o]]
        for key, n in object_votes.items():
            tally[key] = tally.get(key, 0) + n
    return LinkState(index, track_of, merged, next_track, known)
