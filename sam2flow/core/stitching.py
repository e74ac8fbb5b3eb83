"""Pure stitching: local objects of neighbouring subsequences matched into global tracks.

Objects of two neighbouring subsequences are compared by mask IoU averaged over the frames they share, matched
one-to-one (Hungarian assignment), kept when the pair is clearly one object (`MatchRule`: above a threshold, or above a
lower floor while beating every alternative of both objects by a margin), and linked subsequence by subsequence into
tracks. An object a manual prompt names with an ``obj_id`` keeps that number as its track id, and a reference
identity its own id; the other tracks are numbered after them by first appearance in the output, ties broken by the
object's own first box and mask, never by its local id, so renumbering local ids inside a subsequence changes nothing.
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
        next_track: The next id a track no prompt or identity names may take (ids that prompts name are skipped).
        names: The track ids prompts or identities gave objects so far (few: kept for the whole video).
        aliases: Tracks of subsequence ``index - 1`` that this subsequence's prompts named: such a track is the
            named object's from its start (a correction on a track found by the detector), see `final_ids`.
    """

    index: int
    track_of: dict[LocalObjId, TrackId]
    votes: dict[TrackId, ClassVotes]
    next_track: int
    names: frozenset[TrackId] = frozenset()
    aliases: dict[TrackId, TrackId] = field(default_factory=dict)

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
            "names": sorted(int(t) for t in self.names),
            "aliases": [[int(a), int(t)] for a, t in self.aliases.items()],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LinkState:
        """The state written by `to_json`."""
        votes: dict[TrackId, ClassVotes] = {}
        for t, c, n, k in data["votes"]:
            votes.setdefault(TrackId(int(t)), {})[(int(c), str(n))] = int(k)
        track_of = {LocalObjId(int(o)): TrackId(int(t)) for o, t in data["track_of"]}
        names = frozenset(TrackId(int(t)) for t in data.get("names", []))
        aliases = {TrackId(int(a)): TrackId(int(t)) for a, t in data.get("aliases", [])}
        return cls(int(data["index"]), track_of, votes, int(data["next_track"]), names, aliases)


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
    first_track: int = 1,
    skip: frozenset[int] = frozenset(),
) -> LinkState:
    """Give the objects of subsequence ``index`` their track ids, continuing ``prev`` (None for the first one).

    An object a manual prompt names with an ``obj_id`` gets that number as its track id, and a reference identity
    its own id, whatever the masks matched (the user said which object it is); no other object keeps those ids. An
    object matched to an object of the previous subsequence that has a track continues that track; when a prompt
    names such an object for the first time, the track it continues becomes an alias of the name (`final_ids`).
    Every other object seen in the output (``first_seen``: on the frames this subsequence owns) starts a new track;
    new tracks are numbered from ``first_track`` on, skipping ``skip``, in the order of their first appearance, ties
    broken by the object's first box and mask, never by its local id. Since each subsequence owns later frames than
    the ones before it, this numbers the unnamed tracks of the video by first appearance.

    Args:
        prev: The state after subsequence ``index - 1``.
        index: The subsequence being linked.
        matches: Its matches with the previous subsequence (left: previous, right: this one).
        first_seen: For each object present on the frames this subsequence owns, its first appearance there.
        votes: For each of those objects, its rows' class votes on those frames.
        named: Objects that manual prompts name with an ``obj_id``, and that id.
        fixed: Reference identities and their track ids (unnamed tracks are numbered after every identity's id).
        first_track: The first id an unnamed track may take (only read for the first subsequence).
        skip: Ids an unnamed track never takes: every ``obj_id`` the video's prompts use.
    """
    continued: dict[LocalObjId, TrackId] = {}
    if prev is not None:
        for m in matches:
            track = prev.track_of.get(m.left[1])
            if track is not None:
                continued[m.right[1]] = track
    names = prev.names if prev is not None else frozenset()
    given = {**(fixed or {}), **{o: TrackId(n) for o, n in (named or {}).items()}}
    aliases = {
        continued[o]: t
        for o, t in given.items()
        if o in continued and t not in names and continued[o] not in names and o not in (fixed or {})
    }
    reserved = set(given.values())
    track_of = {k: t for k, t in continued.items() if t not in reserved}  # no other object keeps those ids
    track_of.update(given)
    fresh = sorted((o for o in first_seen if o not in track_of), key=lambda o: first_seen[o])
    next_track = max(prev.next_track if prev is not None else first_track, max((fixed or {}).values(), default=0) + 1)
    for o in fresh:
        next_track = _unnamed(next_track, skip)
        track_of[o] = TrackId(next_track)
        next_track += 1
    merged: dict[TrackId, ClassVotes] = {
        t: dict(prev.votes.get(t, {})) if prev is not None else {} for t in set(track_of.values())
    }
    for old, t in aliases.items():  # the named track's class counts the rows it had as the aliased one
        for key, n in (prev.votes.get(old, {}) if prev is not None else {}).items():
            merged[t][key] = merged[t].get(key, 0) + n
    for o, object_votes in votes.items():
        tally = merged[track_of[o]]
        for key, n in object_votes.items():
            tally[key] = tally.get(key, 0) + n
    return LinkState(index, track_of, merged, next_track, names | reserved, aliases)


def _unnamed(candidate: int, skip: frozenset[int]) -> int:
    while candidate in skip:
        candidate += 1
    return candidate


def final_ids(states: Sequence[LinkState]) -> dict[TrackId, TrackId]:
    """The final id of every track the states of a video gave out: an aliased track takes its name, and the other
    unnamed tracks close up over the ids the aliased ones took (in the order they were given out), so the numbers
    are the ones they would have had if the prompt had been there from the start. Without aliases every id maps to
    itself."""
    aliases: dict[TrackId, TrackId] = {}
    for s in states:
        aliases.update(s.aliases)
    names = states[-1].names if states else frozenset()
    unnamed = sorted({t for s in states for t in s.track_of.values() if t not in names} | set(aliases))
    kept = [t for t in unnamed if t not in aliases]
    out = {t: t for t in names}
    out.update(aliases)
    out.update(zip(kept, unnamed[: len(kept)]))
    return out
