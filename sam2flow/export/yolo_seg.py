"""Ultralytics YOLO segmentation dataset: the frames as JPEGs, normalised polygon labels and a data.yaml."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
import yaml

from sam2flow.export.shapes import categories, polygon
from sam2flow.io.video import iter_frames
from sam2flow.readers.run import Run

if TYPE_CHECKING:
    from sam2flow.export import Selection

VAL_FRACTION = 0.1


def source_video(run: Run) -> str:
    """The run's input video as a local file (the frames of image formats come from it).

    Raises:
        ExportError: When neither the run's local copy nor its input can be read here.
    """
    from sam2flow.export import ExportError

    video = run.local_video()
    if video is not None:
        return video
    raise ExportError(
        f"this format needs the frames of {run.manifest.input}, which cannot be read here: "
        "put the video back at that path, or choose a format without images (coco, mot, davis, cvat)"
    )


def split_at(frames: range) -> int:
    """First frame of the validation split: the last 10% of the range (at least one frame) is held out in time, so
    validation frames are not near-copies of training frames."""
    n_val = max(1, round(len(frames) * VAL_FRACTION)) if len(frames) > 1 else 0
    return frames.stop - n_val


def _label_line(mask: np.ndarray, cls: int, width: int, height: int) -> str | None:
    poly = polygon(mask)
    if len(poly) < 3:
        return None
    xy = np.clip(poly / np.array([width, height], np.float64), 0.0, 1.0)
    return f"{cls} " + " ".join(f"{v:.6f}" for v in xy.reshape(-1))


def write(run: Run, folder: Path, sel: Selection) -> int:
    """``images/{train,val}/<frame:06d>.jpg``, ``labels/{train,val}/<frame:06d>.txt`` (one line per object:
    class index, then x y pairs normalised to [0, 1]; frames without objects get an empty label file) and
    ``data.yaml`` naming the classes. Train with ``yolo segment train data=<folder>/data.yaml``."""
    video = source_video(run)
    names = categories(run)
    index = {n: i for i, n in enumerate(names)}
    first_val = split_at(sel.frames)
    for split in ("train", "val"):
        (folder / "images" / split).mkdir(parents=True)
        (folder / "labels" / split).mkdir(parents=True)
    n = 0
    frames = iter_frames(video, run.info, max_frames=len(sel.frames), start=sel.frames.start)
    for image, fr in zip(frames, run.frames(sel.frames, sel.tracks)):
        split = "val" if fr.frame >= first_val else "train"
        cv2.imwrite(str(folder / "images" / split / f"{fr.frame:06d}.jpg"), image[:, :, ::-1])
        lines = [_label_line(m, index[c], run.width, run.height) for m, c in zip(fr.masks, fr.class_names)]
        kept = [line for line in lines if line is not None]
        (folder / "labels" / split / f"{fr.frame:06d}.txt").write_text("".join(f"{line}\n" for line in kept))
        n += len(kept)
    data = {"train": "images/train", "val": "images/val" if first_val < sel.frames.stop else "images/train",
            "names": dict(enumerate(names))}  # fmt: skip
    (folder / "data.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return n
