"""Review signals from the tracks' masks, frame by frame: jumps, swaps and take-overs between consecutive frames,
overlapping masks, gaps, fragments, short tracks and stretches of low object score.

`TrackWatch` sees the frames in order and keeps only the last mask of each track, so its memory does not grow with
the video.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from sam2flow.core.review import Item, ramp
from sam2flow.core.review.detections import Box

LOW_SCORE = 0.5
"""An object score below this is low."""
LOW_FRAMES = 10
"""A stretch of at least this many frames of low object score is listed."""
SHORT_FRAMES = 12
"""A track present on fewer frames than this is short."""
FRAGMENT_FRAMES = 30
"""A track starting at most this many frames after another ended, near it, may be the same object."""


@dataclass(frozen=True)
class TrackMask:
    """One track's mask on one frame, as the review reads it from masks.parquet."""

    track_id: int
    box: Box
    area: int
    score: float
    rle: str


@dataclass
class _Seen:
    """A track as last seen, and its life so far."""

    frame: int
    box: Box
    area: int
    rle: dict[str, Any]
    edge: bool
    touching: tuple[int, ...]
    first: int
    first_box: Box
    first_edge: bool
    first_touching: tuple[int, ...]
    count: int = 1
    low_start: int = -1
    low_sum: float = 0.0
    low_count: int = 0
    pending: Item | None = None
    """A jump seen on the last frame, listed once the next frame tells whether it was a one-frame glitch."""
    before: dict[str, Any] | None = None
    """The mask before that jump."""


def _centre(box: Box) -> tuple[float, float]:
    return (box[0] + box[2]) / 2, (box[1] + box[3]) / 2


def _distance(a: Box, b: Box) -> float:
    (ax, ay), (bx, by) = _centre(a), _centre(b)
    return math.hypot(ax - bx, ay - by)


def _touch(a: Box, b: Box, pad: float) -> bool:
    return a[0] - pad < b[2] and b[0] - pad < a[2] and a[1] - pad < b[3] and b[1] - pad < a[3]


@dataclass
class TrackWatch:
    """Follows every track through the frames of one video (given in order, every frame once)."""

    height: int
    width: int
    num_frames: int
    seen: dict[int, _Seen] = field(default_factory=dict)
    found: list[Item] = field(default_factory=list)

    @property
    def edge(self) -> float:
        """How close to the border (px) a box counts as at the border."""
        return max(4.0, 0.02 * min(self.height, self.width))

    def _at_edge(self, box: Box) -> bool:
        e = self.edge
        return box[0] <= e or box[1] <= e or box[2] >= self.width - e or box[3] >= self.height - e

    def frame(self, frame: int, masks: list[TrackMask]) -> None:
        """Take one frame's masks (sorted by track id)."""
        size = [self.height, self.width]
        rles = [{"size": size, "counts": m.rle.encode("ascii")} for m in masks]
        prev_ids = [t for t, s in self.seen.items() if s.frame == frame - 1]
        prev = [self.seen[t].rle for t in prev_ids]
        cross = np.asarray(mask_utils.iou(rles, prev, [0] * len(prev)), float).reshape(len(masks), len(prev))
        ids = [m.track_id for m in masks]
        self._motion(frame, masks, cross, prev_ids, ids)
        self._overlaps(frame, masks, rles)
        pad = self.edge
        for m, r in zip(masks, rles):
            touching = tuple(o.track_id for o in masks if o.track_id != m.track_id and _touch(m.box, o.box, pad))
            self._update(frame, m, r, self._at_edge(m.box), touching)

    def _motion(
        self, frame: int, masks: list[TrackMask], cross: np.ndarray, prev_ids: list[int], ids: list[int]
    ) -> None:
        """Jumps, take-overs and swaps between the previous frame and this one."""
        col = {t: j for j, t in enumerate(prev_ids)}
        took: dict[int, int] = {}
        for i, m in enumerate(masks):
            s = self.seen.get(m.track_id)
            if s is None or m.track_id not in col:
                continue
            glitch = self._settle(s, self._rle(m))
            own = cross[i, col[m.track_id]]
            other = self._took_over(i, m, cross, prev_ids, ids, own)
            if other is not None:
                took[m.track_id] = other
            elif not glitch:  # the way back from a glitch is listed with it
                self._jump(frame, m, s, own)
        for a, b in sorted(took.items()):
            if took.get(b) == a and a < b:
                self._add("swap", frame - 1, frame + 1, (a, b), 0.95,
                          f"Tracks {a} and {b} exchange places between frames {frame - 1} and {frame}: each one's "
                          f"mask now lies where the other's was (IoU {cross[ids.index(a), col[b]]:.2f} and "
                          f"{cross[ids.index(b), col[a]]:.2f}).")  # fmt: skip
            elif took.get(b) != a:
                i = ids.index(a)
                evidence = (
                    f"Track {a}'s mask on frame {frame} lies where track {b} was on frame {frame - 1} "
                    f"(IoU {cross[i, col[b]]:.2f}, against {cross[i, col[a]]:.2f} with its own last mask)."
                )
                self._add("takeover", frame - 1, frame + 1, tuple(sorted((a, b))), 0.85, evidence)

    def _took_over(
        self, i: int, m: TrackMask, cross: np.ndarray, prev_ids: list[int], ids: list[int], own: float
    ) -> int | None:
        """The track whose place track ``m`` took (its mask fits the other's last mask better than its own)."""
        best, other = 0.0, None
        for j, t in enumerate(prev_ids):
            if t == m.track_id:
                continue
            fit = cross[i, j]
            if t not in ids:  # the other track is gone: does this mask now cover where it was?
                fit = max(fit, float(np.asarray(mask_utils.iou([self.seen[t].rle], [self._rle(m)], [1]))[0, 0]))
            if fit > best:
                best, other = fit, t
        return other if best >= 0.3 and best >= own + 0.2 else None

    def _rle(self, m: TrackMask) -> dict[str, Any]:
        return {"size": [self.height, self.width], "counts": m.rle.encode("ascii")}

    def _jump(self, frame: int, m: TrackMask, s: _Seen, own: float) -> None:
        size = math.sqrt(max(s.area, m.area, 1))
        moved = _distance(s.box, m.box) / size
        grew = max(s.area, m.area) / max(min(s.area, m.area), 1)
        change = max(ramp(grew, 1.6, 3.0), 0.8 * ramp(0.6 - own, 0.0, 0.5))
        if s.touching:  # another track in front of or behind it: occlusion changes size and shape, not identity
            change *= 0.4
        score = max(ramp(moved, 0.5, 1.5), change)
        if s.edge or self._at_edge(m.box):  # the border cuts objects that enter or leave: their boxes jump
            score *= 0.35
        if score >= 0.1:
            s.pending = Item("jump", frame - 1, frame + 1, (m.track_id,), round(0.85 * score, 4),
                             f"Track {m.track_id} between frames {frame - 1} and {frame}: moved {moved:.2f} of its "
                             f"size, area ×{grew:.2f}, mask IoU {own:.2f} with its last mask.")  # fmt: skip
            s.before = s.rle

    def _settle(self, s: _Seen, rle: dict[str, Any] | None) -> bool:
        """List the pending jump: worth half when the mask is back on the next frame (``rle``), a one-frame glitch
        that leaves the track as it was (returns True); whole when it stays, or the track is not there to tell."""
        item, s.pending = s.pending, None
        if item is None:
            return False
        back = 0.0
        if rle is not None and s.before is not None:
            back = float(np.asarray(mask_utils.iou([rle], [s.before], [0]))[0, 0])
        if back >= 0.5:
            evidence = f"{item.evidence} Back on the next frame (IoU {back:.2f} with its mask before): a glitch."
            stop = min(item.frame_stop + 1, self.num_frames)
            item = Item(item.kind, item.frame_start, stop, item.track_ids, round(item.score / 2, 4), evidence)
        self.found.append(item)
        return back >= 0.5

    def _overlaps(self, frame: int, masks: list[TrackMask], rles: list[dict[str, Any]]) -> None:
        """Pairs of tracks whose masks cover the same pixels."""
        if len(masks) < 2:
            return
        iou = np.asarray(mask_utils.iou(rles, rles, [0] * len(rles)), float).reshape(len(rles), len(rles))
        inside = np.asarray(mask_utils.iou(rles, rles, [1] * len(rles)), float).reshape(len(rles), len(rles))
        for i in range(len(masks)):
            for j in range(i + 1, len(masks)):
                cover = max(inside[i, j], inside[j, i])  # the share of the smaller mask inside the other
                score = max(0.5 + 0.45 * ramp(iou[i, j], 0.4, 0.9) if iou[i, j] >= 0.4 else 0.0,
                            0.5 * ramp(cover, 0.7, 0.95))  # fmt: skip
                if score > 0:
                    a, b = masks[i].track_id, masks[j].track_id
                    self._add("overlap", frame, frame + 1, (a, b), score,
                              f"Tracks {a} and {b} overlap on frame {frame}: mask IoU {iou[i, j]:.2f}, "
                              f"{cover:.0%} of the smaller one inside the other.")  # fmt: skip

    def _update(self, frame: int, m: TrackMask, rle: dict[str, Any], edge: bool, touching: tuple[int, ...]) -> None:
        s = self.seen.get(m.track_id)
        if s is None:
            s = _Seen(frame, m.box, m.area, rle, edge, touching, frame, m.box, edge, touching, count=0)
            self.seen[m.track_id] = s
        elif s.frame < frame - 1:
            self._settle(s, None)
            self._gap(m.track_id, s, frame, m)
        s.frame, s.box, s.area, s.rle, s.edge, s.touching = frame, m.box, m.area, rle, edge, touching
        s.count += 1
        if m.score < LOW_SCORE:
            if s.low_count == 0:
                s.low_start = frame
            s.low_count, s.low_sum = s.low_count + 1, s.low_sum + m.score
        else:
            self._low(m.track_id, s)

    def _gap(self, track: int, s: _Seen, frame: int, m: TrackMask) -> None:
        missing = frame - s.frame - 1
        score = (0.25 + 0.6 * ramp(missing, 1, 12)) * (0.5 if s.touching else 1.0)
        behind = f", last seen touching track {s.touching[0]}" if s.touching else ""
        self._add("gap", s.frame + 1, frame, (track,), score,
                  f"Track {track} is missing on {missing} frame(s) ({s.frame + 1}–{frame - 1}){behind} and comes back "
                  f"{_distance(s.box, m.box):.0f} px from where it was.")  # fmt: skip
        self._low(track, s)

    def _low(self, track: int, s: _Seen) -> None:
        if s.low_count >= LOW_FRAMES:
            mean = s.low_sum / s.low_count
            score = (0.25 + 0.5 * ramp(s.low_count, LOW_FRAMES, 6 * LOW_FRAMES)) * (1.2 - mean)
            self._add("low-score", s.low_start, s.low_start + s.low_count, (track,), score,
                      f"Track {track}'s object score stays below {LOW_SCORE} for {s.low_count} frames "
                      f"(mean {mean:.2f}) from frame {s.low_start}.")  # fmt: skip
        s.low_count, s.low_sum = 0, 0.0

    def _add(self, kind: str, start: int, stop: int, tracks: tuple[int, ...], score: float, evidence: str) -> None:
        self.found.append(Item(kind, max(start, 0), min(stop, self.num_frames), tracks, round(score, 4), evidence))

    def boxes(self, frame: int) -> dict[int, Box]:
        """The box of every track present on ``frame`` (after `frame` took it)."""
        return {t: s.box for t, s in self.seen.items() if s.frame == frame}

    def items(self) -> list[Item]:
        """Everything found, once every frame has been seen: adds fragments, short tracks and tracks that start or
        end in the middle of the picture."""
        for t, s in self.seen.items():
            self._settle(s, None)
            self._low(t, s)
        self._lives()
        return self.found

    def _lives(self) -> None:
        starts = {t: s for t, s in self.seen.items() if s.first > 0 and not s.first_edge}
        ends = {t: s for t, s in self.seen.items() if s.frame < self.num_frames - 1 and not s.edge}
        paired: set[int] = set()
        by_end = sorted(ends, key=lambda t: ends[t].frame)
        last = [ends[t].frame for t in by_end]
        for b, sb in sorted(starts.items(), key=lambda kv: kv[1].first):
            near = by_end[bisect_left(last, sb.first - FRAGMENT_FRAMES) : bisect_left(last, sb.first)]
            a = self._predecessor(sb, {t: ends[t] for t in near}, paired)
            if a is None:
                continue
            sa = ends[a]
            paired |= {a, b}
            wait, far = sb.first - sa.frame, _distance(sa.box, sb.first_box)
            size = math.sqrt(max(sa.area, 1))
            score = 0.6 + 0.35 * (1 - ramp(wait, 1, FRAGMENT_FRAMES)) * (1 - ramp(far / size, 0.0, 1.5))
            self._add("fragment", sa.frame, sb.first + 1, (a, b), score,
                      f"Track {a} ends on frame {sa.frame} and track {b} starts {wait} frame(s) later, {far:.0f} px "
                      f"away: possibly one object.")  # fmt: skip
        for t, s in self.seen.items():
            if t in paired:
                continue
            if s.count < SHORT_FRAMES:
                inside = (t in starts) + (t in ends)
                score = 0.3 + 0.3 * ramp(SHORT_FRAMES - s.count, 0, SHORT_FRAMES - 1) + 0.15 * inside
                self._add("short", s.first, s.frame + 1, (t,), score,
                          f"Track {t} lasts only {s.count} frame(s) ({s.first}–{s.frame}).")  # fmt: skip
                continue
            if t in starts:
                self._add("appears", s.first, s.first + 1, (t,), 0.12 if s.first_touching else 0.3,
                          f"Track {t} starts on frame {s.first} inside the picture"
                          f"{' next to track ' + str(s.first_touching[0]) if s.first_touching else ''}.")  # fmt: skip
            if t in ends:
                self._add("vanishes", s.frame, s.frame + 1, (t,), 0.12 if s.touching else 0.3,
                          f"Track {t} ends on frame {s.frame} inside the picture"
                          f"{' next to track ' + str(s.touching[0]) if s.touching else ''}.")  # fmt: skip

    def _predecessor(self, sb: _Seen, ends: dict[int, _Seen], paired: set[int]) -> int | None:
        """Of ``ends`` (tracks that ended shortly before), the one that ended most recently before ``sb`` started, near
        where it starts."""
        best, choice = None, None
        for a, sa in ends.items():
            if a in paired or not 0 < sb.first - sa.frame <= FRAGMENT_FRAMES:
                continue
            size = math.sqrt(max(sa.area, sb.area, 1))
            far = _distance(sa.box, sb.first_box) / size
            if far > 1.5:
                continue
            key = (sb.first - sa.frame, far)
            if best is None or key < best:
                best, choice = key, a
        return choice
