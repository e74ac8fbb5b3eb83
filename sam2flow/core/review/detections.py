"""Review signals from the detector's keyframe boxes: objects no track covers (missed) and tracks the detector
stopped confirming (drift)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sam2flow.core.prompts import box_iou
from sam2flow.core.review import Item, ramp

SUPPORT_IOU = 0.3
"""A detection and a track's box at least this close (box IoU) are the same object."""

DRIFT_KEYFRAMES = 3
"""A track unconfirmed by the detector on this many keyframes in a row is listed."""

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class KeyframeBoxes:
    """What the detector returned on one keyframe (after the confidence filter): boxes and confidences."""

    frame: int
    boxes: tuple[Box, ...]
    confidences: tuple[float, ...]


def covered(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The share of each box of ``a`` covered by the box of ``b`` that covers most of it."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros(len(a))
    x0 = np.maximum(a[:, None, 0], b[None, :, 0])
    y0 = np.maximum(a[:, None, 1], b[None, :, 1])
    x1 = np.minimum(a[:, None, 2], b[None, :, 2])
    y1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = np.maximum((a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1]), 1e-9)
    share: np.ndarray = (inter / area[:, None]).max(axis=1)
    return share


@dataclass
class _Run:
    start: int
    last: int
    count: int = 1
    box: Box = (0.0, 0.0, 0.0, 0.0)
    confidence: float = 0.0


@dataclass
class DetectorWatch:
    """Follows the keyframes in order; `items` gives what it found."""

    unsupported: dict[int, _Run] = field(default_factory=dict)
    supported_once: set[int] = field(default_factory=set)
    misses: list[_Run] = field(default_factory=list)
    found: list[Item] = field(default_factory=list)

    def keyframe(self, kf: KeyframeBoxes, tracks: dict[int, Box]) -> None:
        """Compare one keyframe's detections with the boxes of the tracks present on it."""
        dets = np.array(kf.boxes, np.float64).reshape(-1, 4)
        ids = sorted(tracks)
        boxes = np.array([tracks[t] for t in ids], np.float64).reshape(-1, 4)
        iou = box_iou(dets, boxes) if len(dets) and len(ids) else np.zeros((len(dets), len(ids)))
        for j, t in enumerate(ids):
            support = len(dets) > 0 and (iou[:, j].max() >= SUPPORT_IOU or covered(boxes[j : j + 1], dets)[0] >= 0.7)
            self._support(t, kf.frame, bool(support))
        seen = covered(dets, boxes)
        best = iou.max(axis=1) if len(ids) else np.zeros(len(dets))
        open_before = list(self.misses)
        for d in range(len(dets)):
            if best[d] < SUPPORT_IOU and seen[d] < 0.5:
                self._miss(kf.frame, kf.boxes[d], kf.confidences[d])
        for run in open_before:
            if run.last != kf.frame:
                self._close_miss(run)

    def _support(self, track: int, frame: int, ok: bool) -> None:
        run = self.unsupported.get(track)
        if ok:
            self.supported_once.add(track)
            if run is not None:
                self._close_drift(track, self.unsupported.pop(track))
        elif run is None:
            self.unsupported[track] = _Run(frame, frame)
        else:
            run.last, run.count = frame, run.count + 1

    def _close_drift(self, track: int, run: _Run) -> None:
        if run.count < DRIFT_KEYFRAMES or track not in self.supported_once:
            return
        score = 0.3 + 0.55 * ramp(run.count, DRIFT_KEYFRAMES, 3 * DRIFT_KEYFRAMES)
        self.found.append(
            Item(
                "drift",
                run.start,
                run.last + 1,
                (track,),
                round(score, 4),
                f"Track {track} had no detection over it on {run.count} keyframes in a row "
                f"(frames {run.start}–{run.last}).",
            )
        )

    def _miss(self, frame: int, box: Box, confidence: float) -> None:
        for run in self.misses:
            if run.last != frame and box_iou(np.array([run.box]), np.array([box]))[0, 0] >= SUPPORT_IOU:
                run.last, run.count, run.box = frame, run.count + 1, box
                run.confidence = max(run.confidence, confidence)
                return
        self.misses.append(_Run(frame, frame, 1, box, confidence))

    def _close_miss(self, run: _Run) -> None:
        self.misses.remove(run)
        score = run.confidence * (0.55 + 0.4 * ramp(run.count, 1, 4))
        x0, y0, x1, y1 = (round(v) for v in run.box)
        self.found.append(
            Item(
                "missed",
                run.start,
                run.last + 1,
                (),
                round(score, 4),
                f"The detector found an object at ({x0}, {y0})–({x1}, {y1}) (confidence {run.confidence:.2f}) that no "
                f"track covers, on {run.count} keyframe(s) from frame {run.start}.",
            )
        )

    def items(self) -> list[Item]:
        """Everything found, once every keyframe has been seen."""
        for run in list(self.misses):
            self._close_miss(run)
        for track, run in list(self.unsupported.items()):
            self._close_drift(track, run)
        self.unsupported.clear()
        return self.found
