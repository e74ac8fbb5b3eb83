"""Ultralytics YOLO adapter: one image in, `Detections` out."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from sam2flow.core.types import Detections
from sam2flow.errors import InputError
from sam2flow.io.checkpoints import ResolvedCheckpoint


class DetectorError(InputError, ValueError):
    """The detector configuration does not fit the model (e.g. an unknown class name)."""


@contextlib.contextmanager
def torch_threads_kept() -> Iterator[None]:
    """Keep torch's CPU thread count across a block of Ultralytics code.

    Ultralytics resets it (to cores - 1) whenever it selects a CPU device, e.g. on a model's first prediction or at
    the start of training. Left alone, SAM2 on the same worker would run on fewer threads from then on, and, since
    the thread count decides how CPU reductions are split, its masks would differ in the last bits from a run whose
    history differed (a resumed run, the next video of an archive).
    """
    import torch

    threads = torch.get_num_threads()
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class YoloDetector:
    """A YOLO detection model loaded once and used for every keyframe of a worker.

    It is warmed up when built (Ultralytics sets up its predictor on the first call), so every real call runs the
    same code with the worker's thread count, whatever the worker did before.
    """

    def __init__(
        self,
        checkpoint: ResolvedCheckpoint,
        device: str,
        confidence: float,
        nms_iou: float,
        image_size: int,
        classes: Sequence[int | str] | None,
        max_det: int = 300,
    ) -> None:
        from sam2flow.models.weights import load_yolo

        self.model = load_yolo(checkpoint.path)
        self.names: dict[int, str] = {int(k): str(v) for k, v in self.model.names.items()}
        self.device = device
        self.confidence = confidence
        self.nms_iou = nms_iou
        self.image_size = image_size
        self.max_det = max_det
        self.class_ids = None if classes is None else resolve_classes(classes, self.names)
        self(np.zeros((image_size, image_size, 3), np.uint8))

    def __call__(self, image: Path | np.ndarray) -> Detections:
        """Detect objects on one image (a file path or an RGB array)."""
        source = str(image) if isinstance(image, Path) else np.ascontiguousarray(image[..., ::-1])
        with torch_threads_kept():
            result = self.model.predict(
                source,
                conf=self.confidence,
                iou=self.nms_iou,
                imgsz=self.image_size,
                classes=self.class_ids,
                max_det=self.max_det,
                device=self.device,
                verbose=False,
            )[0]
        boxes = result.boxes
        if boxes is None or len(boxes) == 0:
            return Detections.empty()
        cls = boxes.cls.cpu().numpy().astype(np.int64)
        return Detections(
            boxes=boxes.xyxy.cpu().numpy().astype(np.float32),
            scores=boxes.conf.cpu().numpy().astype(np.float32),
            class_ids=cls,
            class_names=tuple(self.names.get(int(c), str(int(c))) for c in cls),
        )


def resolve_classes(classes: Sequence[int | str], names: dict[int, str]) -> list[int]:
    """Class ids for a list of ids and/or names; unknown ones raise `DetectorError` listing the valid names."""
    by_name = {v.lower(): k for k, v in names.items()}
    out: list[int] = []
    for c in classes:
        if isinstance(c, int) and c in names:
            out.append(c)
        elif isinstance(c, str) and c.lower() in by_name:
            out.append(by_name[c.lower()])
        elif isinstance(c, str) and c.isdigit() and int(c) in names:
            out.append(int(c))
        else:
            shown = ", ".join(list(names.values())[:20]) + (" …" if len(names) > 20 else "")
            raise DetectorError(f"detector.classes: {c!r} is not a class of this model; known classes: {shown}")
    return out


class ImageDetector(Protocol):
    """What finds objects on one image: YOLO (`YoloDetector`) or SAM 3's concept detector
    (`sam2flow.models.text_detector.Sam3TextDetector`)."""

    names: dict[int, str]
    image_size: int

    def __call__(self, image: Path | np.ndarray) -> Detections: ...


class StoredFrameDetector:
    """A detector on the pipeline's frame store (`sam2flow.io.frames`), called as `segment_subsequence` calls one:
    with ``frames_dir/<local frame>.jpg``. It detects on that frame at the detector's own input size (in the source's
    aspect ratio) and returns boxes in source pixels."""

    def __init__(self, detector: ImageDetector) -> None:
        self.detector = detector
        self.names = detector.names

    def __call__(self, keyframe: Path) -> Detections:
        from sam2flow.models.frames import detector_image

        image, fx, fy = detector_image(keyframe.parent, int(keyframe.stem), self.detector.image_size)
        return self.detector(image).scaled(fx, fy)
