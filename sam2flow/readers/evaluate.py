"""Evaluation of a run's tracks against ground truth, with TrackEval's HOTA, Identity (IDF1), CLEAR (ID switches,
MOTA) and J&F metrics. Evaluation is class-agnostic: every object is one class.

Ground truth formats:
- DAVIS: a folder of indexed PNGs (``00000.png …``, one per frame, the number in the name is the frame index);
  pixel value 0 is background, 255 is "void" (ignored), any other value is an object id. Masks are compared by
  mask IoU, and J&F is reported.
- MOT: a text file of ``frame,id,x,y,w,h[,…]`` lines (MOTChallenge: frames from 1, and the top-left pixel is
  x = 1, y = 1). Boxes are compared with each predicted mask's box by box IoU; J&F needs masks and is not reported.
"""

from __future__ import annotations

import csv
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from sam2flow.core.prompts import box_iou
from sam2flow.errors import InputError
from sam2flow.io import storage
from sam2flow.io.parquet import read_table


class EvaluationError(InputError, ValueError):
    """The prediction or ground truth cannot be read; the message names it."""


@dataclass(frozen=True)
class Objects:
    """One side (ground truth or prediction): per frame, object ids with their masks (RLE dicts) or boxes."""

    ids: dict[int, list[int]]
    masks: dict[int, list[dict[str, Any]]]
    boxes: dict[int, list[tuple[float, float, float, float]]]
    size: tuple[int, int] | None


def load_prediction(pred: str) -> Objects:
    """Masks of a run: ``OUT/<video_id>`` or its ``masks.parquet``."""
    uri = pred if pred.endswith(".parquet") else storage.join(pred, "masks.parquet")
    if not storage.exists(uri):
        raise EvaluationError(f"{uri} does not exist: give a run's output folder (OUT/<video_id>) or its masks.parquet")
    t = read_table(uri, columns=["frame", "track_id", "bbox", "height", "width", "rle"])
    ids: dict[int, list[int]] = defaultdict(list)
    masks: dict[int, list[dict[str, Any]]] = defaultdict(list)
    boxes: dict[int, list[tuple[float, float, float, float]]] = defaultdict(list)
    size = None
    for f, tid, box, h, w, r in zip(*(t[c].to_pylist() for c in t.column_names)):
        ids[f].append(tid)
        masks[f].append({"size": [h, w], "counts": r.encode("ascii")})
        boxes[f].append(tuple(box))
        size = (h, w)
    return Objects(dict(ids), dict(masks), dict(boxes), size)


def load_davis(folder: Path) -> Objects:
    """Indexed-PNG ground truth (one PNG per frame, the frame index in the file name)."""
    from PIL import Image

    files = sorted(folder.glob("*.png"))
    if not files:
        raise EvaluationError(f"{folder} holds no .png masks: DAVIS ground truth is one indexed PNG per frame")
    ids: dict[int, list[int]] = {}
    masks: dict[int, list[dict[str, Any]]] = {}
    size = None
    for path in files:
        m = re.search(r"(\d+)", path.stem)
        if m is None:
            raise EvaluationError(f"{path}: the file name must contain the frame index, e.g. 00012.png")
        frame = int(m.group(1))
        arr = np.asarray(Image.open(path))
        if arr.ndim != 2:
            raise EvaluationError(f"{path} is not an indexed (palette or grey) PNG")
        size = arr.shape
        values = [int(v) for v in np.unique(arr) if v not in (0, 255)]
        ids[frame] = values
        masks[frame] = [mask_utils.encode(np.asfortranarray((arr == v).astype(np.uint8))) for v in values]
    return Objects(ids, masks, {}, (int(size[0]), int(size[1])) if size else None)


def load_mot(path: Path) -> Objects:
    """MOT-style ``frame,id,x,y,w,h,…`` ground truth (frames and pixel coordinates from 1, as in MOTChallenge)."""
    ids: dict[int, list[int]] = defaultdict(list)
    boxes: dict[int, list[tuple[float, float, float, float]]] = defaultdict(list)
    with open(path, newline="") as f:
        for n, row in enumerate(csv.reader(f), start=1):
            if not row or row[0].startswith("#"):
                continue
            try:
                frame, oid, x, y, w, h = int(row[0]), int(row[1]), *map(float, row[2:6])
            except (ValueError, IndexError) as exc:
                raise EvaluationError(f"{path}:{n}: expected frame,id,x,y,w,h — got {row!r}") from exc
            ids[frame - 1].append(oid)
            boxes[frame - 1].append((x - 1, y - 1, x - 1 + w, y - 1 + h))
    if not ids:
        raise EvaluationError(f"{path} has no MOT rows (frame,id,x,y,w,h)")
    return Objects(dict(ids), {}, dict(boxes), None)


def load_ground_truth(gt: str | Path) -> tuple[Objects, str]:
    """DAVIS folder or MOT text file, by what the path is."""
    p = Path(gt)
    if p.is_dir():
        return load_davis(p), "davis"
    if p.is_file():
        return load_mot(p), "mot"
    raise EvaluationError(f"ground truth {p} does not exist (give a DAVIS PNG folder or a MOT .txt file)")


def _contiguous(frames: Iterable[list[int]]) -> dict[int, int]:
    return {v: i for i, v in enumerate(sorted({x for ids in frames for x in ids}))}


def build_sequence(gt: Objects, pred: Objects, num_frames: int, use_masks: bool) -> dict[str, Any]:
    """TrackEval's per-sequence data: contiguous ids per frame and the IoU of every (gt, pred) pair."""
    gmap, pmap = _contiguous(gt.ids.values()), _contiguous(pred.ids.values())
    data: dict[str, Any] = {
        "num_timesteps": num_frames,
        "num_gt_ids": len(gmap),
        "num_tracker_ids": len(pmap),
        "gt_ids": [],
        "tracker_ids": [],
        "similarity_scores": [],
        "gt_dets": [],
        "tracker_dets": [],
    }
    for t in range(num_frames):
        g, p = gt.ids.get(t, []), pred.ids.get(t, [])
        data["gt_ids"].append(np.array([gmap[x] for x in g], dtype=int))
        data["tracker_ids"].append(np.array([pmap[x] for x in p], dtype=int))
        if use_masks:
            gm, pm = gt.masks.get(t, []), pred.masks.get(t, [])
            sim = np.asarray(mask_utils.iou(gm, pm, [0] * len(pm)), float).reshape(len(g), len(p)) if g and p else None
            data["gt_dets"].append(gm)
            data["tracker_dets"].append(pm)
        else:
            sim = box_iou(np.array(gt.boxes.get(t, [])), np.array(pred.boxes.get(t, []))) if g and p else None
        data["similarity_scores"].append(sim if sim is not None else np.zeros((len(g), len(p))))
    data["num_gt_dets"] = sum(len(x) for x in data["gt_ids"])
    data["num_tracker_dets"] = sum(len(x) for x in data["tracker_ids"])
    return data


def _review_check(pred: str, truth: Objects, prediction: Objects, data: dict[str, Any]) -> dict[str, float]:
    """With the run's review.parquet: the errors the ground truth reveals and how many the list's top items find."""
    from sam2flow.readers.review import ReviewReadError, read_review
    from sam2flow.readers.truth_errors import review_recall, truth_errors

    run_dir = pred[: -len("/masks.parquet")] if pred.endswith("/masks.parquet") else pred
    try:
        items = read_review(run_dir)
    except ReviewReadError:
        return {}
    gt_names = sorted({x for ids in truth.ids.values() for x in ids})  # the order `_contiguous` numbers them
    track_names = sorted({x for ids in prediction.ids.values() for x in ids})
    return review_recall(truth_errors(data, gt_names, track_names), items)


def evaluate(pred: str, gt: str | Path, num_frames: int | None = None) -> dict[str, float]:
    """HOTA, DetA, AssA, IDF1, ID switches, MOTA, recall (and J&F for DAVIS masks) of a run against ground truth.

    Recall is CLEAR's: the share of ground-truth objects, over all frames, matched by a prediction at IoU 0.5.
    When the run has a review list, also how many errors the ground truth reveals (identity switches,
    fragmentations, misses) and the share of them inside the list's top N and 2N items (``review_recall@N``)."""
    import trackeval

    truth, fmt = load_ground_truth(gt)
    prediction = load_prediction(pred)
    last = max([*truth.ids, *prediction.ids, -1])
    frames = num_frames or last + 1
    use_masks = fmt == "davis"
    data = build_sequence(truth, prediction, frames, use_masks)
    quiet = {"PRINT_CONFIG": False}
    hota = trackeval.metrics.HOTA().eval_sequence(data)
    ident = trackeval.metrics.Identity(quiet).eval_sequence(data)
    clear = trackeval.metrics.CLEAR(quiet).eval_sequence(data)
    out = {
        "format": fmt,
        "frames": frames,
        "gt_tracks": data["num_gt_ids"],
        "pred_tracks": data["num_tracker_ids"],
        "HOTA": float(np.mean(hota["HOTA"])),
        "DetA": float(np.mean(hota["DetA"])),
        "AssA": float(np.mean(hota["AssA"])),
        "IDF1": float(ident["IDF1"]),
        "IDSW": int(clear["IDSW"]),
        "MOTA": float(clear["MOTA"]),
        "Recall": float(clear["CLR_Re"]),
    }
    out.update(_review_check(pred, truth, prediction, data))
    if use_masks and data["num_gt_ids"]:
        jf = trackeval.metrics.JAndF().eval_sequence(data)
        j, f = float(np.mean(jf["J-Mean"])), float(np.mean(jf["F-Mean"]))
        out.update({"J": j, "F": f, "J&F": (j + f) / 2})
    return out
