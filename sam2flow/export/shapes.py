"""Masks as what other formats want: polygons, categories with contiguous ids."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from sam2flow.core.rle import bbox as rle_box
from sam2flow.readers.run import Run


def polygon(mask: np.ndarray) -> np.ndarray:
    """One polygon ``(K, 2)`` (pixel x, y) outlining a boolean mask; empty ``(0, 2)`` when the mask is empty.

    A mask in several parts becomes one polygon: the parts' outlines, largest first, joined in sequence (the
    formats that want one polygon per object then still cover every part). A mask too thin to have an outline of
    three points (a one-pixel line) becomes its bounding rectangle.
    """
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    parts = sorted((c.reshape(-1, 2) for c in contours if len(c) >= 3), key=lambda c: -cv2.contourArea(c))
    if parts:
        return np.concatenate(parts).astype(np.float64)
    if not mask.any():
        return np.zeros((0, 2), np.float64)
    x0, y0, x1, y1 = rle_box(mask)
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float64)


def categories(run: Run) -> list[str]:
    """The run's class names in a fixed order (by class id, then name): their position is the contiguous class
    index (YOLO) and position + 1 the category id (COCO, MOTS, CVAT labels)."""
    t = run.tracks(kind="arrow").to_pydict()
    pairs = sorted(set(zip(t["class_id"], t["class_name"])))
    names: list[str] = []
    for _, name in pairs:
        if name not in names:
            names.append(name)
    return names


def selected_tracks(run: Run, frames: range, tracks: Sequence[int] | None) -> list[int]:
    """The ids of the tracks (all, or those named) present somewhere in ``frames``."""
    t = run.tracks(kind="arrow").to_pydict()
    return [
        tid
        for tid, first, last in zip(t["track_id"], t["first_frame"], t["last_frame"])
        if (tracks is None or tid in tracks) and first < frames.stop and last >= frames.start
    ]
