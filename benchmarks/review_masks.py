"""Masks made for the real sample videos without any model, for the review benchmark.

Each object is placed by hand with boxes on keyframes 20 frames apart (`OBJECTS`), the box is interpolated between
them, and OpenCV's GrabCut cuts the object out inside it on every frame. The masks are real shapes moving as the
objects do (two children jumping on a bed and hiding each other, a handler and her dog), with the noise such masks
have, but they keep each object's identity, as a good run does: the review list must rank the injected errors above
whatever else these masks do.

The masks become the run's part files (one per subsequence, the same object id in every subsequence), and the
objects' boxes on every 16th frame stand for the detector's keyframes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np

KEYFRAME_EVERY = 16
Box = tuple[int, int, int, int]
Keys = list[tuple[int, Box | None]]

# fmt: off
BOY = [(0, (150, 135, 295, 405)), (20, (185, 190, 290, 405)), (40, (200, 170, 300, 405)), (60, (252, 190, 305, 330)),
       (66, (252, 190, 305, 330)), (67, None), (114, (35, 160, 160, 430)), (120, (35, 160, 160, 430)),
       (140, (0, 205, 125, 475)), (160, (0, 0, 172, 440)), (180, (55, 0, 212, 485)), (199, (55, 0, 212, 485))]
GIRL = [(0, (310, 0, 515, 400)), (20, (170, 35, 465, 455)), (40, (205, 35, 490, 458)), (60, (175, 10, 450, 445)),
        (80, (180, 10, 345, 475)), (100, (50, 90, 330, 500)), (120, (95, 120, 345, 540)), (140, (195, 90, 390, 540)),
        (160, (265, 25, 520, 475)), (180, (305, 20, 500, 485)), (199, (305, 20, 500, 485))]
HANDLER = [(96, (305, 60, 400, 336)), (100, (305, 60, 400, 336)), (120, (330, 53, 430, 342)),
           (140, (212, 69, 330, 326)), (160, (285, 69, 342, 326)), (180, (268, 69, 320, 326)),
           (200, (198, 75, 312, 320)), (220, (125, 188, 225, 320)), (222, (125, 188, 225, 320))]
DOG = [(96, (345, 168, 405, 336)), (100, (345, 168, 405, 336)), (120, (400, 215, 470, 342)),
       (140, (320, 208, 492, 332)), (160, (345, 208, 495, 332)), (180, (342, 245, 536, 332)),
       (200, (375, 280, 540, 332)), (220, (455, 280, 620, 332)), (222, (455, 280, 620, 332))]
# fmt: on
OBJECTS: dict[str, list[Keys]] = {"bedroom.mp4": [BOY, GIRL], "dog_first300.mp4": [HANDLER, DOG]}
"""Each sample video's objects as hand-placed boxes (x0, y0, x1, y1) on keyframes (read off frames every 20; None:
absent until the next box). The boy hides behind the girl from frame 67 to 113; the dog clip's one shot with both
the handler and the dog runs from frame 96 to 222 (cuts at 96, 223 and 254)."""
CROP_SIDE = 240


def _cut(bgr: np.ndarray, box: Box, front: np.ndarray) -> np.ndarray:
    """GrabCut inside ``box`` = (x, y, w, h), on a crop around it scaled to at most `CROP_SIDE` px: the object's
    mask, never on ``front`` (the objects in front of it)."""
    h, w = bgr.shape[:2]
    x, y, bw, bh = box
    mx, my = max(8, bw // 5), max(8, bh // 5)
    x0, y0, x1, y1 = max(x - mx, 0), max(y - my, 0), min(x + bw + mx, w), min(y + bh + my, h)
    out = np.zeros((h, w), bool)
    if x1 - x0 < 8 or y1 - y0 < 8:
        return out
    scale = min(1.0, CROP_SIDE / max(x1 - x0, y1 - y0))
    size = (max(8, round((x1 - x0) * scale)), max(8, round((y1 - y0) * scale)))
    crop = cv2.resize(bgr[y0:y1, x0:x1], size)
    inside = np.zeros((h, w), bool)
    inside[y : y + bh, x : x + bw] = True
    inside = cv2.resize(inside[y0:y1, x0:x1].astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0
    mask = np.where(inside, cv2.GC_PR_FGD, cv2.GC_BGD).astype(np.uint8)
    hidden = cv2.resize(front[y0:y1, x0:x1].astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0
    mask[hidden] = cv2.GC_BGD
    if not (mask == cv2.GC_PR_FGD).any():
        return out
    models = (np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64))
    try:
        cv2.grabCut(crop, mask, None, *models, 3, cv2.GC_INIT_WITH_MASK)
    except cv2.error:
        return out
    fg = ((mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(fg)
    if n <= 1:
        return out
    biggest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    full = cv2.resize((labels == biggest).astype(np.uint8), (x1 - x0, y1 - y0), interpolation=cv2.INTER_NEAREST)
    out[y0:y1, x0:x1] = full > 0
    return out & ~front


def box_at(keys: Keys, frame: int) -> Box | None:
    """The object's box on ``frame``: linear between the keyframes around it, None outside them or when absent."""
    for (fa, a), (fb, b) in zip(keys, keys[1:]):
        if fa <= frame <= fb:
            if a is None or b is None:
                return a if frame == fa else (b if frame == fb else None)
            t = (frame - fa) / max(fb - fa, 1)
            x0, y0, x1, y1 = (round(u + t * (v - u)) for u, v in zip(a, b))
            return x0, y0, x1, y1
    return None


def keyframe_masks(video: str, objects: list[Keys]) -> list[dict[int, np.ndarray]]:
    """Per frame, {object id (from 1): GrabCut mask in its box}; where masks overlap, the later object is in front."""
    cap = cv2.VideoCapture(video)
    frames: list[dict[int, np.ndarray]] = []
    ok, bgr = cap.read()
    while ok:
        f = len(frames)
        current: dict[int, np.ndarray] = {}
        front = np.zeros(bgr.shape[:2], bool)
        for i in reversed(range(len(objects))):  # the last object is in front: cut it out first
            box = box_at(objects[i], f)
            if box is not None:
                x0, y0, x1, y1 = box
                current[i + 1] = _cut(bgr, (x0, y0, x1 - x0, y1 - y0), front)
                front |= current[i + 1]
        frames.append({o: m for o, m in current.items() if m.sum() > 50})
        ok, bgr = cap.read()
    cap.release()
    return frames


def write_parts(job: Any, frames: list[dict[int, np.ndarray]]) -> int:
    """The masks as the job's part files, with the blobs' boxes as detector keyframes; returns the mask rows."""
    import pyarrow.parquet as pq

    from sam2flow.core import rle
    from sam2flow.core.types import LocalObjId, MaskRow
    from sam2flow.io.parquet import DETECTIONS, detections_json, part_table

    described = [{o: rle.describe(m) for o, m in f.items()} for f in frames]
    total = 0
    for sub in job.plan:
        rows, keys = [], []
        for g in range(sub.start, sub.stop):
            for o, (counts, box, area) in sorted(described[g].items()):
                rows.append(
                    MaskRow(g, LocalObjId(o), 0, "object", 0.9, box, area, job.info.height, job.info.width, counts)
                )
            if (g - sub.start) % KEYFRAME_EVERY == 0:
                keys.append((g, [[*box, 0.8] for counts, box, area in described[g].values()]))
        table = part_table(rows).replace_schema_metadata(
            {b"sam2flow": b"part", DETECTIONS: detections_json(keys).encode()}
        )
        Path(job.part_uri(sub.index)).parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, job.part_uri(sub.index))
        total += len(rows)
    return total
