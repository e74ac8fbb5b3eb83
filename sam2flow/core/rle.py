"""COCO run-length encoding of boolean masks (pycocotools' compressed counts strings)."""

from __future__ import annotations

import numpy as np
from pycocotools import mask as mask_utils

from sam2flow.core.types import BoolArray


def encode(mask: BoolArray) -> str:
    """Encode one ``(H, W)`` boolean mask as a COCO compressed RLE counts string."""
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D, got shape {mask.shape}")
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    counts: bytes = rle["counts"]
    return counts.decode("ascii")


def decode(counts: str, height: int, width: int) -> BoolArray:
    """Decode a COCO compressed RLE counts string into an ``(H, W)`` boolean mask."""
    rle = {"size": [height, width], "counts": counts.encode("ascii")}
    return np.asarray(mask_utils.decode(rle), dtype=bool)


def bbox(mask: BoolArray) -> tuple[float, float, float, float]:
    """Tight box ``(x0, y0, x1, y1)`` of a non-empty mask, with ``x1``/``y1`` one past the last pixel."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        raise ValueError("bbox of an empty mask")
    return float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1)


def iou_rle(a: list[str], b: list[str], height: int, width: int) -> np.ndarray:
    """Pairwise mask IoU between two lists of RLE counts strings of the same frame size: ``(len(a), len(b))``."""
    if not a or not b:
        return np.zeros((len(a), len(b)), dtype=np.float64)
    ra = [{"size": [height, width], "counts": c.encode("ascii")} for c in a]
    rb = [{"size": [height, width], "counts": c.encode("ascii")} for c in b]
    return np.asarray(mask_utils.iou(ra, rb, [0] * len(rb)), dtype=np.float64).reshape(len(a), len(b))
