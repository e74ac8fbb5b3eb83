"""Find: SAM 3's concept detector on one frame, for the phrases the prompt page gives, with the model kept loaded
between searches. The boxes it returns become objects on the page (box prompts named by their phrase)."""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np

from sam2flow.config import PipelineConfig
from sam2flow.control.runtime import available_devices


def text_model(base: PipelineConfig) -> str:
    """The SAM 3 checkpoint a text search uses: the base config's detector model when it is one, else ``sam3``."""
    from sam2flow.io.checkpoints import load_manifest

    entry = load_manifest().get(base.detector.model.removeprefix("random:"))
    return base.detector.model if entry is not None and entry.kind == "sam3" else "sam3"


class Finder:
    """Builds SAM 3's concept detector on first use (from `text_model`, checked as a run checks it) and keeps it.
    One search at a time."""

    def __init__(self, base: PipelineConfig, device: str | list[str] = "cpu") -> None:
        self.base, self.device = base, device
        self._detector: Any = None
        self._lock = threading.Lock()

    def find(self, image: np.ndarray, phrases: list[str]) -> dict[str, Any]:
        """The boxes (source pixels), scores and phrases found on the RGB ``image``, and the seconds it took."""
        with self._lock:
            detector = self._build(phrases)
            detector.use(phrases)
            t0 = time.perf_counter()
            found = detector(image)
        return {"boxes": [[round(float(v), 1) for v in b] for b in found.boxes], "scores": found.scores.tolist(),
                "classes": list(found.class_names), "seconds": round(time.perf_counter() - t0, 3)}  # fmt: skip

    def _build(self, phrases: list[str]) -> Any:
        if self._detector is None:
            from sam2flow.control.preflight import text_detector_checkpoint
            from sam2flow.models.text_detector import Sam3TextDetector

            det = self.base.detector
            cfg = self.base.model_copy(
                update={"detector": det.model_copy(update={"text": phrases, "model": text_model(self.base)})}
            )
            checkpoint = text_detector_checkpoint(cfg)
            device = available_devices(self.device)[0]
            self._detector = Sam3TextDetector(checkpoint, device, phrases, det.confidence, det.nms_iou, det.image_size)
        return self._detector
