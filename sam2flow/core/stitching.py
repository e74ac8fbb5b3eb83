"""Pure stitching: local objects of neighbouring subsequences matched into global tracks.

Objects of two neighbouring subsequences are compared by mask IoU averaged over the frames they share, matched
one-to-one (Hungarian assignment) above a threshold, and joined across all boundaries with union-find. Track ids
are numbered by first appearance in the output; ties are broken by the object's own first box and mask, never by
its local id, so renumbering local ids inside a subsequence changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

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


def match_boundary(
    left_index: int,
    right_index: int,
    left: FrameObjects,
    right: FrameObjects,
    frames: Sequence[int],
    height: int,
    width: int,
    threshold: float,
) -> list[PairMatch]:
    """One-to-one matches across one boundary with mean overlap IoU at or above ``threshold``."""
    left_ids, right_ids, iou = mean_overlap_iou(left, right, frames, height, width)
    if iou.size == 0:
        return []
    rows, cols = linear_sum_assignment(iou, maximize=True)
    return [
        PairMatch((left_index, left_ids[r]), (right_index, right_ids[c]), float(iou[r, c]))
        for r, c in zip(rows, cols)
        if iou[r, c] >= threshold and iou[r, c] > 0
    ]


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[ObjectRef, ObjectRef] = {}

    def find(self, x: ObjectRef) -> ObjectRef:
        self.parent.setdefault(x, x)
        root = x
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[x] != root:
            self.parent[x], x = root, self.parent[x]
        return root

    def union(self, a: ObjectRef, b: ObjectRef) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def assign_track_ids(
    first_seen: Mapping[ObjectRef, FirstSeen], matches: Iterable[PairMatch]
) -> dict[ObjectRef, TrackId]:
    """Join matched objects into tracks and number the tracks from 1 by first appearance.

    Args:
        first_seen: For every object that appears in the output, the key of its first appearance there.
        matches: Matched pairs across all boundaries.

    Returns:
        The track id of every object in ``first_seen``.
    """
    uf = _UnionFind()
    for ref in first_seen:
        uf.find(ref)
    for m in matches:
        uf.union(m.left, m.right)
    earliest: dict[ObjectRef, FirstSeen] = {}
    for ref, key in first_seen.items():
        root = uf.find(ref)
        if root not in earliest or key < earliest[root]:
            earliest[root] = key
    order = sorted(earliest, key=lambda root: earliest[root])
    number = {root: TrackId(i + 1) for i, root in enumerate(order)}
    return {ref: number[uf.find(ref)] for ref in first_seen}
