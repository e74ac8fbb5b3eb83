"""Where ground truth says a run is wrong, and how much of it the run's review list points to.

The errors come from CLEAR MOT's per-frame matching as TrackEval does it (IoU at least 0.5, one-to-one, a match
kept from the frame before preferred): an **identity switch** where a ground-truth object is matched to another
track than before, a **fragmentation** where it goes unmatched for a stretch and is matched again, a **miss** where it
is unmatched at the start or end of its life (or always). `review_recall` then counts the errors that fall inside the
review list's top N items (frames within `TOLERANCE`, and a shared track when both name tracks).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

MATCH_IOU = 0.5
TOLERANCE = 3
"""Frames an error may lie outside an item and still count as found by it."""


@dataclass(frozen=True)
class TruthError:
    """One error the ground truth reveals."""

    kind: str
    """``switch``, ``fragmentation`` or ``miss``."""
    frame_start: int
    frame_stop: int
    gt_id: int
    track_ids: tuple[int, ...]
    """The run's tracks involved (the tracks switched between; the track before a fragmentation)."""


def _matches(data: dict[str, Any]) -> list[dict[int, int]]:
    """Per frame, {ground-truth index: tracker index} by CLEAR's rule."""
    prev: dict[int, int] = {}
    out = []
    for g, p, sim in zip(data["gt_ids"], data["tracker_ids"], data["similarity_scores"]):
        frame: dict[int, int] = {}
        if len(g) and len(p):
            score = np.where(sim >= MATCH_IOU - np.finfo(float).eps, sim, 0.0)
            keep = np.array([[prev.get(int(a)) == int(b) for b in p] for a in g])
            score = score + 1000 * (keep & (score > 0))
            rows, cols = linear_sum_assignment(score, maximize=True)
            frame = {int(g[r]): int(p[c]) for r, c in zip(rows, cols) if score[r, c] > 0}
        prev.update(frame)
        out.append(frame)
    return out


def truth_errors(data: dict[str, Any], gt_names: list[int], track_names: list[int]) -> list[TruthError]:
    """The errors of one sequence (TrackEval's per-sequence ``data``), with real ids (``names[contiguous id]``)."""
    matches = _matches(data)
    present: dict[int, list[int]] = {}
    for t, g in enumerate(data["gt_ids"]):
        for a in g:
            present.setdefault(int(a), []).append(t)
    errors: list[TruthError] = []
    for a, frames in present.items():
        gt = gt_names[a]
        last: int | None = None
        run: list[int] = []
        for t in frames:
            b = matches[t].get(a)
            if b is None:
                run.append(t)
                continue
            if run:
                kind = "fragmentation" if last is not None else "miss"
                tracks = (track_names[last],) if last is not None else ()
                errors.append(TruthError(kind, run[0], run[-1] + 1, gt, tracks))
                run = []
            if last is not None and b != last:
                errors.append(TruthError("switch", t, t + 1, gt, tuple(sorted({track_names[last], track_names[b]}))))
            last = b
        if run:
            tracks = (track_names[last],) if last is not None else ()
            errors.append(TruthError("miss", run[0], run[-1] + 1, gt, tracks))
    return sorted(errors, key=lambda e: (e.frame_start, e.gt_id, e.kind))


def found_by(error: TruthError, item: Any) -> bool:
    """Whether a review item (anything with frame_start, frame_stop, track_ids) points to the error."""
    near = item.frame_start - TOLERANCE < error.frame_stop and error.frame_start < item.frame_stop + TOLERANCE
    shared = not error.track_ids or not item.track_ids or bool(set(error.track_ids) & set(item.track_ids))
    return near and shared


def review_recall(errors: list[TruthError], items: list[Any]) -> dict[str, float]:
    """Recall of the errors within the top N items, for N = errors and 2 × errors (items in rank order)."""
    n = len(errors)
    out: dict[str, float] = {"review_items": len(items), "truth_errors": n}
    for kind in ("switch", "fragmentation", "miss"):
        out[f"truth_errors_{kind}"] = sum(e.kind == kind for e in errors)
    for label, top in (("N", n), ("2N", 2 * n)):
        head = items[:top]
        hit = sum(any(found_by(e, i) for i in head) for e in errors)
        out[f"review_recall@{label}"] = hit / n if n else 1.0
    return out
