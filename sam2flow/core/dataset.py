"""Pure helpers for turning tracked masks into a detector training set: time-block splits and YOLO label lines."""

from __future__ import annotations

from collections.abc import Sequence


def time_block_split(
    frames: Sequence[int], block: int, val_fraction: float, gap: int = 0
) -> tuple[list[int], list[int]]:
    """Split frame indices into train and validation by blocks of consecutive frames, never frame by frame.

    Neighbouring video frames are near duplicates, so a random split would leak validation images into training.
    Frames are grouped into blocks of ``block`` consecutive indices; every k-th block (k = round(1 / val_fraction))
    is a validation block, so validation covers the whole time range. Training frames closer than ``gap`` frames
    to a validation frame are dropped.

    Args:
        frames: Frame indices that have labels (any order).
        block: Frames per block (at least 1).
        val_fraction: Share of blocks used for validation, in (0, 1).
        gap: Training frames within this many frames of a validation frame are left out.

    Returns:
        (train frames, validation frames), each sorted. With a single block, that block is used for both; a
        caller should warn (the validation metrics are then optimistic).
    """
    if block < 1 or not 0.0 < val_fraction < 1.0 or gap < 0:
        raise ValueError("time_block_split: need block >= 1, 0 < val_fraction < 1 and gap >= 0")
    ordered = sorted(set(frames))
    if not ordered:
        return [], []
    blocks = sorted({f // block for f in ordered})
    if len(blocks) == 1:
        return ordered, ordered
    k = max(2, round(1.0 / val_fraction))
    val_blocks = {b for n, b in enumerate(blocks) if n % k == k - 1}
    if not val_blocks:
        val_blocks = {blocks[-1]}
    val = [f for f in ordered if f // block in val_blocks]
    val_set = set(val)
    train = [
        f
        for f in ordered
        if f not in val_set and not any((f + d) in val_set or (f - d) in val_set for d in range(1, gap + 1))
    ]
    return train, val


def yolo_label_line(class_index: int, box: Sequence[float], width: int, height: int) -> str:
    """One YOLO label line: ``class cx cy w h`` normalised to the image size, the box clipped to the image."""
    x0, y0, x1, y1 = (float(v) for v in box)
    x0, x1 = min(max(x0, 0.0), width), min(max(x1, 0.0), width)
    y0, y1 = min(max(y0, 0.0), height), min(max(y1, 0.0), height)
    cx, cy = (x0 + x1) / 2.0 / width, (y0 + y1) / 2.0 / height
    return f"{class_index} {cx:.6f} {cy:.6f} {(x1 - x0) / width:.6f} {(y1 - y0) / height:.6f}"
