"""COCO run-length encoding of boolean masks (pycocotools' compressed counts strings)."""

from __future__ import annotations

import numpy as np
from pycocotools import mask as mask_utils

from sam2flow.core.types import BoolArray


def _crop_counts(mask: BoolArray, y0: int, y1: int, x0: int, x1: int) -> tuple[list[int], int]:
    """Uncompressed column-major COCO counts of a mask that is empty outside rows ``y0:y1`` and columns ``x0:x1``,
    computed from that crop only, and the number of pixels set."""
    h, w = mask.shape
    ch = y1 - y0 + 2
    crop = np.zeros((x1 - x0, ch), np.int8)  # one line per column, with a zero above and below the crop
    crop[:, 1:-1] = mask[y0:y1, x0:x1].T
    change = np.flatnonzero(np.diff(crop.ravel())) + 1
    col, row = np.divmod(change, ch)
    at = (x0 + col) * h + (y0 - 1 + row)  # where each run starts, in the whole frame's column-major order
    at = at[at < h * w]  # 1s that run to the last pixel end with the mask
    twin = np.flatnonzero(at[1:] == at[:-1])  # 1s ending one column at the bottom edge go on at the next's top
    if twin.size:
        at = np.delete(at, np.concatenate((twin, twin + 1)))
    counts = np.diff(np.concatenate(([0], at, [h * w])))
    return counts.tolist(), int(np.count_nonzero(crop))


def _compress(counts: list[int], height: int, width: int) -> str:
    rle = mask_utils.frPyObjects({"size": [height, width], "counts": counts}, height, width)
    text: bytes = rle["counts"]
    return text.decode("ascii")


def describe(mask: BoolArray) -> tuple[str, tuple[float, float, float, float], int]:
    """A non-empty ``(H, W)`` mask's COCO RLE counts string, tight box (as `bbox`) and area, from one pass over the
    frame to find the box; the rest works inside it."""
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D, got shape {mask.shape}")
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        raise ValueError("describe needs a non-empty mask")
    cols = np.flatnonzero(mask[rows[0] : rows[-1] + 1].any(axis=0))
    y0, y1, x0, x1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    counts, area = _crop_counts(mask, y0, y1, x0, x1)
    return _compress(counts, *mask.shape), (float(x0), float(y0), float(x1), float(y1)), area


def encode(mask: BoolArray) -> str:
    """Encode one ``(H, W)`` boolean mask as a COCO compressed RLE counts string (pycocotools' exact output)."""
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D, got shape {mask.shape}")
    if not mask.any():
        return _compress([mask.size], *mask.shape)
    return describe(mask)[0]


def decode(counts: str, height: int, width: int) -> BoolArray:
    """Decode a COCO compressed RLE counts string into an ``(H, W)`` boolean mask."""
    rle = {"size": [height, width], "counts": counts.encode("ascii")}
    return np.asarray(mask_utils.decode(rle), dtype=bool)


def counts_of(text: str) -> list[int]:
    """The run lengths of a COCO compressed counts string (zeros first, column-major): pycocotools' ``rleFrString``
    (each count in 5-bit groups with a continuation bit, offset by 48; from the third on, a delta to the one two
    before)."""
    counts: list[int] = []
    value = shift = 0
    for ch in text:
        c = ord(ch) - 48
        value |= (c & 0x1F) << shift
        shift += 5
        if c & 0x20:
            continue
        if c & 0x10:
            value |= -1 << shift
        if len(counts) > 2:
            value += counts[-2]
        counts.append(value)
        value = shift = 0
    return counts


def decode_box(text: str, height: int, width: int, box: tuple[int, int, int, int]) -> BoolArray:
    """The part of a mask inside ``box`` ``(x0, y0, x1, y1)`` as a C-ordered ``(y1 - y0, x1 - x0)`` array, decoded
    from the counts string without building the whole frame (what drawing one object needs)."""
    x0, y0, x1, y1 = box
    if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
        raise ValueError(f"box {box} is not inside a {width}x{height} frame")
    ends = np.cumsum(np.asarray(counts_of(text), np.int64))
    starts, stops = ends[0::2], ends[1::2]  # runs of 1s: [ends[2j], ends[2j + 1])
    starts = starts[: len(stops)]
    lo, hi = x0 * height, x1 * height  # the box's columns, whole, in column-major order
    keep = (stops > lo) & (starts < hi)
    edges = np.zeros(hi - lo + 1, np.int8)
    edges[np.clip(starts[keep], lo, hi) - lo] += 1
    edges[np.clip(stops[keep], lo, hi) - lo] -= 1
    columns = np.cumsum(edges[:-1], dtype=np.int8).astype(bool).reshape(x1 - x0, height)
    return np.ascontiguousarray(columns[:, y0:y1].T)


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
