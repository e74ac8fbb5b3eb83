"""Central typed records shared by every stage.

Local object ids (`LocalObjId`) are only meaningful inside one subsequence; global track ids (`TrackId`) are
assigned by the stitcher. They are distinct types so that one is never passed where the other is expected.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NewType

import numpy as np
import numpy.typing as npt

LocalObjId = NewType("LocalObjId", int)
TrackId = NewType("TrackId", int)

BoolArray = npt.NDArray[np.bool_]
FloatArray = npt.NDArray[np.float32]


@dataclass(frozen=True, order=True)
class Subsequence:
    """A half-open range of global frames ``[start, stop)`` processed as one unit.

    Attributes:
        index: Position of the subsequence in the plan, from 0.
        start: First global frame (inclusive).
        stop: One past the last global frame (exclusive).
    """

    index: int
    start: int
    stop: int

    def __post_init__(self) -> None:
        if self.index < 0 or self.start < 0 or self.stop <= self.start:
            raise ValueError(f"invalid subsequence {self.index}: [{self.start}, {self.stop})")

    @property
    def length(self) -> int:
        """Number of frames in the subsequence."""
        return self.stop - self.start

    def to_local(self, frame: int) -> int:
        """Map a global frame index to this subsequence's local JPEG index (``00000.jpg`` is local 0)."""
        if not self.start <= frame < self.stop:
            raise ValueError(f"frame {frame} is outside subsequence {self.index} [{self.start}, {self.stop})")
        return frame - self.start

    def to_global(self, local: int) -> int:
        """Map a local JPEG index back to the global frame index."""
        if not 0 <= local < self.length:
            raise ValueError(f"local frame {local} is outside subsequence {self.index} of length {self.length}")
        return self.start + local

    def contains(self, frame: int) -> bool:
        """Whether the global frame belongs to this subsequence."""
        return self.start <= frame < self.stop


@dataclass(frozen=True)
class Detections:
    """Boxes found on one frame, as a struct of arrays.

    Attributes:
        boxes: ``(N, 4)`` float32 ``x0, y0, x1, y1`` in source pixels.
        scores: ``(N,)`` float32 confidences.
        class_ids: ``(N,)`` int64 class ids.
        class_names: ``N`` class names, aligned with ``class_ids``.
    """

    boxes: FloatArray
    scores: FloatArray
    class_ids: npt.NDArray[np.int64]
    class_names: tuple[str, ...]

    def __post_init__(self) -> None:
        n = len(self.scores)
        if self.boxes.shape != (n, 4):
            raise ValueError(f"boxes must have shape ({n}, 4), got {self.boxes.shape}")
        if self.class_ids.shape != (n,) or len(self.class_names) != n:
            raise ValueError("class_ids and class_names must have one entry per box")

    def __len__(self) -> int:
        return len(self.scores)

    @classmethod
    def empty(cls) -> Detections:
        """No detections."""
        return cls(
            boxes=np.zeros((0, 4), np.float32),
            scores=np.zeros((0,), np.float32),
            class_ids=np.zeros((0,), np.int64),
            class_names=(),
        )

    def scaled(self, fx: float, fy: float) -> Detections:
        """The same detections with box x coordinates times ``fx`` and y coordinates times ``fy``."""
        factors = np.array([fx, fy, fx, fy], np.float32)
        return Detections(self.boxes * factors, self.scores, self.class_ids, self.class_names)

    def select(self, keep: npt.NDArray[np.bool_] | npt.NDArray[np.intp]) -> Detections:
        """The subset chosen by a boolean mask or an index array (order follows ``keep``)."""
        idx = np.flatnonzero(keep) if keep.dtype == np.bool_ else np.asarray(keep, dtype=np.intp)
        return Detections(
            boxes=self.boxes[idx],
            scores=self.scores[idx],
            class_ids=self.class_ids[idx],
            class_names=tuple(self.class_names[i] for i in idx),
        )


@dataclass(frozen=True)
class ReferencePrompt:
    """A reference frame a session starts with (a conditioning frame before the subsequence's own frames): its
    image and the mask of each reference identity on it, by the identity's local id. It never gives rows."""

    rgb: np.ndarray = field(repr=False)
    """``(H, W, 3)`` uint8; any size (SAM2 resizes it; masks are scaled to the subsequence's frame size)."""
    masks: dict[LocalObjId, BoolArray] = field(repr=False)
    source_frame: int = 0
    """The frame of the run it was taken from (for test doubles that replay a known scene)."""


@dataclass(frozen=True)
class ObjectPrompt:
    """One object's prompt on one frame of a subsequence, in source pixels.

    Either what SAM2's ``add_new_points_or_box`` takes (positive/negative points and/or a box), or, for an object
    carried over from the previous subsequence, what ``add_new_mask`` takes (its mask on that frame).
    """

    local_id: LocalObjId
    frame: int
    class_id: int
    class_name: str
    points: tuple[tuple[float, float], ...] = ()
    labels: tuple[int, ...] = ()
    box: tuple[float, float, float, float] | None = None
    mask: BoolArray | None = field(default=None, compare=False, repr=False)
    source: str = "detector"

    def __post_init__(self) -> None:
        if len(self.points) != len(self.labels):
            raise ValueError("each prompt point needs exactly one label")
        has_click = bool(self.points) or self.box is not None
        if has_click == (self.mask is not None):
            raise ValueError(f"prompt for object {self.local_id} needs points and/or a box, or else a mask")
        if any(label not in (0, 1) for label in self.labels):
            raise ValueError("point labels must be 1 (positive) or 0 (negative)")


@dataclass(frozen=True)
class FrameMasks:
    """All objects' masks on one frame, as a struct of arrays.

    Attributes:
        frame: Global frame index.
        obj_ids: Local object ids, one per mask.
        masks: ``(N, H, W)`` boolean masks at source resolution.
        scores: ``(N,)`` float32 object presence scores in ``[0, 1]``.
    """

    frame: int
    obj_ids: tuple[LocalObjId, ...]
    masks: BoolArray
    scores: FloatArray = field(default_factory=lambda: np.zeros((0,), np.float32))

    def __post_init__(self) -> None:
        n = len(self.obj_ids)
        if self.masks.ndim != 3 or self.masks.shape[0] != n:
            raise ValueError(f"masks must have shape ({n}, H, W), got {self.masks.shape}")
        if self.masks.dtype != np.bool_:
            raise ValueError(f"masks must be boolean, got {self.masks.dtype}")
        if self.scores.shape != (n,):
            raise ValueError(f"scores must have shape ({n},), got {self.scores.shape}")
        if len(set(self.obj_ids)) != n:
            raise ValueError(f"duplicate object ids on frame {self.frame}: {self.obj_ids}")


@dataclass(frozen=True)
class MaskRow:
    """One object on one frame of one subsequence, as stored in a part file."""

    frame: int
    obj_id: LocalObjId
    class_id: int
    class_name: str
    score: float
    bbox: tuple[float, float, float, float]
    area: int
    height: int
    width: int
    rle: str


@dataclass(frozen=True)
class TrackMaskRow:
    """One track on one frame, as stored in masks.parquet (its ``video_id`` and ``time`` columns aside)."""

    frame: int
    track_id: TrackId
    class_id: int
    class_name: str
    score: float
    bbox: tuple[float, float, float, float]
    area: int
    height: int
    width: int
    rle: str
