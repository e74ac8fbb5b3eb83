"""Pure prompt building: detector boxes become SAM2 prompts for objects that are not tracked yet."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import numpy.typing as npt

from sam2flow.core.types import BoolArray, Detections, FloatArray, LocalObjId, ObjectPrompt


def box_iou(a: npt.ArrayLike, b: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Pairwise IoU of ``(N, 4)`` and ``(M, 4)`` boxes in ``x0, y0, x1, y1`` form: ``(N, M)``."""
    a64 = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b64 = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    ix0 = np.maximum(a64[:, None, 0], b64[None, :, 0])
    iy0 = np.maximum(a64[:, None, 1], b64[None, :, 1])
    ix1 = np.minimum(a64[:, None, 2], b64[None, :, 2])
    iy1 = np.minimum(a64[:, None, 3], b64[None, :, 3])
    inter = np.clip(ix1 - ix0, 0, None) * np.clip(iy1 - iy0, 0, None)
    area_a = (a64[:, 2] - a64[:, 0]) * (a64[:, 3] - a64[:, 1])
    area_b = (b64[:, 2] - b64[:, 0]) * (b64[:, 3] - b64[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / union, 0.0)


def filter_detections(
    dets: Detections, min_score: float, class_ids: Sequence[int] | None, min_box_area: float = 1.0
) -> Detections:
    """Keep detections at or above ``min_score``, of the given classes (all when None), with a non-degenerate box."""
    keep = dets.scores >= min_score
    if class_ids is not None:
        keep &= np.isin(dets.class_ids, np.asarray(list(class_ids), dtype=np.int64))
    widths = dets.boxes[:, 2] - dets.boxes[:, 0]
    heights = dets.boxes[:, 3] - dets.boxes[:, 1]
    keep &= (widths > 0) & (heights > 0) & (widths * heights >= min_box_area)
    return dets.select(keep)


def new_object_prompts(
    dets: Detections,
    tracked_boxes: FloatArray,
    frame: int,
    max_new: int,
    duplicate_iou: float,
    style: PromptStyle = "box",
) -> list[ObjectPrompt]:
    """Box prompts for detections that are not already tracked, best score first.

    A detection whose box overlaps a tracked object's box (or an earlier accepted detection's) with IoU at or above
    ``duplicate_iou`` is the same object and is skipped.

    Args:
        dets: Filtered detections of one keyframe.
        tracked_boxes: ``(K, 4)`` boxes of the objects currently tracked on that frame.
        frame: Local frame index of the keyframe.
        max_new: At most this many new objects are returned.
        duplicate_iou: Box IoU at which a detection counts as an already tracked object.
        style: How a box becomes a SAM2 prompt (see `box_points`).

    Returns:
        The prompts, with local id -1: the driver gives each its id when it adds it.
    """
    order = np.argsort(-dets.scores, kind="stable")
    taken = [np.asarray(tracked_boxes, dtype=np.float64).reshape(-1, 4)]
    prompts: list[ObjectPrompt] = []
    for i in order:
        if len(prompts) >= max_new:
            break
        box = dets.boxes[i].astype(np.float64)
        existing = np.concatenate(taken)
        if existing.size and box_iou(box[None], existing).max() >= duplicate_iou:
            continue
        taken.append(box[None])
        points = box_points(box, style)
        prompts.append(
            ObjectPrompt(
                local_id=LocalObjId(-1),
                frame=frame,
                class_id=int(dets.class_ids[i]),
                class_name=dets.class_names[i],
                points=points,
                labels=(1,) * len(points),
                box=(float(box[0]), float(box[1]), float(box[2]), float(box[3])) if style == "box" else None,
                source="detector",
            )
        )
    return prompts


PromptStyle = Literal["box", "center", "vertical"]


def box_points(box: npt.ArrayLike, style: PromptStyle) -> tuple[tuple[float, float], ...]:
    """Positive points that stand for a detector box: none for ``box`` (the box itself is the prompt), its centre for
    ``center``, or the centre plus points a quarter of the height above and below it for ``vertical`` (a common
    choice for people, whose box centre may fall between the legs)."""
    x0, y0, x1, y1 = (float(v) for v in np.asarray(box, dtype=np.float64).reshape(4))
    cx, cy, h = (x0 + x1) / 2, (y0 + y1) / 2, y1 - y0
    table: dict[str, tuple[tuple[float, float], ...]] = {
        "box": (),
        "center": ((cx, cy),),
        "vertical": ((cx, cy - h / 4), (cx, cy), (cx, cy + h / 4)),
    }
    return table[style]


def is_duplicate_mask(
    candidate: BoolArray, existing: list[BoolArray], duplicate_iou: float, inside: float = 0.8
) -> bool:
    """Whether a new object's first mask repeats an object already tracked on that frame.

    It does when it is empty (the segmenter sees nothing there), when its IoU with a tracked mask reaches
    ``duplicate_iou``, or when at least ``inside`` of it lies within one tracked mask (a part of a tracked object,
    or the visible part of a partly hidden one, whose detector box no longer matches the tracked box).
    """
    area = int(candidate.sum())
    if area == 0:
        return True
    for other in existing:
        inter = int(np.logical_and(candidate, other).sum())
        union = area + int(other.sum()) - inter
        if inter / union >= duplicate_iou or inter / area >= inside:
            return True
    return False
