"""Preview: SAM2 segments one frame from the prompts on it, with the model kept loaded between clicks."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from sam2flow.config import PipelineConfig
from sam2flow.control.runtime import available_devices
from sam2flow.core.types import LocalObjId, ObjectPrompt


@dataclass(frozen=True)
class PreviewObject:
    """One object's prompts on the previewed frame, in source pixels."""

    points: tuple[tuple[float, float], ...] = ()
    labels: tuple[int, ...] = ()
    box: tuple[float, float, float, float] | None = None


class Previewer:
    """Builds the configured SAM2 model on first use and keeps it, with the image features of the last frame
    previewed: a click on the same frame re-runs only SAM2's prompt encoder and mask decoder. One preview at a time.
    """

    def __init__(self, cfg: PipelineConfig, folder: Path, device: str | list[str] = "cpu") -> None:
        """``folder`` (created here) holds the previewed frame as SAM2 reads it; the caller removes it."""
        self.cfg, self.device = cfg, device
        self._model: Any = None
        self._lock = threading.Lock()
        self._key: tuple[str, int] | None = None
        self._session: Any = None
        self._folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    def _segmenter(self) -> Any:
        if self._model is None:
            from sam2flow.models import weights
            from sam2flow.models.segmenter import Sam2Segmenter

            checkpoint = weights.resolve(self.cfg.segmenter.checkpoint, "sam2")
            device = available_devices(self.device)[0]  # the first device listed (auto: the first GPU, else the CPU)
            seg = self.cfg.segmenter  # the run's settings, so that Track shows the masks a run writes
            self._model = Sam2Segmenter(checkpoint, device, seg.image_size, precision=seg.precision)
        return self._model

    @contextmanager
    def model(self) -> Iterator[Any]:
        """The segmenter (built on first use), held for one caller at a time (a track, a preview)."""
        with self._lock:
            yield self._segmenter()

    def masks(self, key: tuple[str, int], image: np.ndarray, objects: list[PreviewObject]) -> tuple[np.ndarray, float]:
        """``(N, H, W)`` masks of the objects on frame ``key`` = (video, frame) whose RGB image is given, and the
        seconds SAM2 took (model loading excluded)."""
        prompts = [
            ObjectPrompt(LocalObjId(i), 0, -1, "object", o.points, o.labels, o.box)
            for i, o in enumerate(objects)
            if o.points or o.box is not None
        ]
        h, w = image.shape[:2]
        if not prompts:
            return np.zeros((0, h, w), bool), 0.0
        with self._lock:
            segmenter = self._segmenter()
            t0 = time.perf_counter()
            with segmenter.inference():
                session = self._session_for(segmenter, key, image)
                session.reset()
                fm = None
                for p in prompts:
                    fm = session.add(p)
            assert fm is not None
            order = [list(fm.obj_ids).index(p.local_id) for p in prompts if p.local_id in fm.obj_ids]
            return fm.masks[order], time.perf_counter() - t0

    def close(self) -> None:
        """Release the preview session (the model stays with this object)."""
        with self._lock:
            if self._session is not None:
                self._session.close()
            self._session, self._key = None, None

    def _session_for(self, segmenter: Any, key: tuple[str, int], image: np.ndarray) -> Any:
        if key != self._key or self._session is None:
            if self._session is not None:
                self._session.close()
            cv2.imwrite(str(self._folder / "00000.jpg"), image[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
            self._session, self._key = segmenter.open_session(self._folder), key
        return self._session
