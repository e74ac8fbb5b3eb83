"""COCO instance segmentation JSON with RLE masks and track ids (COCO-video / TAO fields), written as a stream."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from pycocotools import mask as mask_utils

from sam2flow.export.shapes import categories
from sam2flow.readers.run import Run

if TYPE_CHECKING:
    from sam2flow.export import Selection

FILE = "annotations.json"


def write(run: Run, folder: Path, sel: Selection) -> int:
    """``annotations.json``: one image per frame (``id`` = frame + 1, ``frame_id`` = frame), one annotation per mask
    row with ``track_id``, ``video_id``, ``score`` and its mask as compressed RLE; category id = class index + 1."""
    names = categories(run)
    cat_id = {n: i + 1 for i, n in enumerate(names)}
    head = {
        "info": {"description": f"sam2flow run {run.video_id}", "version": "1.0"},
        "licenses": [],
        "videos": [{"id": 1, "name": run.video_id, "width": run.width, "height": run.height, "fps": run.fps}],
        "categories": [{"id": cat_id[n], "name": n, "supercategory": "object"} for n in names],
    }
    n = 0
    with open(folder / FILE, "w") as f:
        f.write(json.dumps(head)[:-1] + ', "images": [')
        for k, frame in enumerate(sel.frames):
            image = {"id": frame + 1, "file_name": f"{frame:06d}.jpg", "width": run.width, "height": run.height,
                     "video_id": 1, "frame_id": frame, "time": float(run.times[frame])}  # fmt: skip
            f.write(("," if k else "") + json.dumps(image))
        f.write('], "annotations": [')
        for fr in run.frames(sel.frames, sel.tracks):
            for i in range(len(fr)):
                x0, y0, x1, y1 = (float(v) for v in fr.boxes[i])
                rle = {"size": [fr.height, fr.width], "counts": fr.rles[i]}
                ann = {
                    "id": n + 1,
                    "image_id": fr.frame + 1,
                    "video_id": 1,
                    "category_id": cat_id[fr.class_names[i]],
                    "track_id": int(fr.track_ids[i]),
                    "instance_id": int(fr.track_ids[i]),
                    "segmentation": rle,
                    "area": int(mask_utils.area({**rle, "counts": fr.rles[i].encode("ascii")})),
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "iscrowd": 0,
                    "score": float(fr.scores[i]),
                }
                f.write(("," if n else "") + json.dumps(ann))
                n += 1
        f.write("]}")
    return n
