"""SAM 3's concept detector: objects named by text phrases (``detector.text: [person, white mouse]``), found on one
image, as `Detections` that prompt the tracker exactly as YOLO's do.

The model is Ultralytics' SAM 3 image model (``build_sam3_image_model``: vision backbone, text encoder, fusion
encoder, DETR-style decoder with a presence token), run by its own ``SAM3SemanticPredictor`` (confidence, NMS, boxes
in source pixels). Its weights come from the same SAM 3 checkpoint as the tracker's (``detector.*`` keys), scanned
and checked like every checkpoint.

The text goes through CLIP's byte-pair tokenizer with its real vocabulary (``bpe_simple_vocab_16e6``), from PyPI's
``clip-anytorch``. Ultralytics' builder instantiates ``clip.simple_tokenizer.SimpleTokenizer`` and expects the
tokenizer of its own CLIP fork (installed from a git URL, which cannot be had offline), whose tokenizer is called
with the phrases and a context length; `ClipTokenizer` gives OpenAI's tokenizer that call: start token, BPE tokens
of the cleaned, lower-cased phrase, end token, cut to the context length with the end token last, zero padding
(what Meta's SAM 3 tokenizer does too).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sam2flow.core.types import Detections
from sam2flow.io.checkpoints import ResolvedCheckpoint
from sam2flow.models.detector import DetectorError, torch_threads_kept
from sam2flow.models.sam3 import KeyRecorder

warnings.filterwarnings("ignore", message=r"pkg_resources is deprecated")  # clip-anytorch imports it


class ClipTokenizer:
    """OpenAI CLIP's tokenizer (``clip.simple_tokenizer``, its bundled vocabulary), called as SAM 3's text encoder
    calls its tokenizer: ``tokenizer(phrases, context_length)`` → ``(N, context_length)`` token ids."""

    def __init__(self) -> None:
        from clip.simple_tokenizer import SimpleTokenizer

        self.bpe = SimpleTokenizer()
        self.start = self.bpe.encoder["<|startoftext|>"]
        self.end = self.bpe.encoder["<|endoftext|>"]

    def __call__(self, texts: str | Sequence[str], context_length: int = 77) -> torch.Tensor:
        phrases = [texts] if isinstance(texts, str) else list(texts)
        out = torch.zeros(len(phrases), context_length, dtype=torch.long)
        for i, phrase in enumerate(phrases):
            tokens = [self.start, *self.bpe.encode(phrase), self.end]
            if len(tokens) > context_length:
                tokens = [*tokens[: context_length - 1], self.end]
            out[i, : len(tokens)] = torch.tensor(tokens)
        return out


def missing_detector_weights(model: torch.nn.Module, path: Path) -> list[str]:
    """The image model's parameters and buffers that ``path`` does not provide (Ultralytics' loader ignores them)."""
    from ultralytics.models.sam.build_sam3 import _load_checkpoint

    recorder = KeyRecorder()
    _load_checkpoint(recorder, str(path))
    return sorted(k for k in model.state_dict() if k not in recorder.keys)


class Sam3TextDetector:
    """SAM 3's concept detector for a fixed list of phrases, built once per worker; class ``i`` is phrase ``i``."""

    def __init__(
        self,
        checkpoint: ResolvedCheckpoint,
        device: str,
        phrases: Sequence[str],
        confidence: float,
        nms_iou: float,
        image_size: int,
    ) -> None:
        from ultralytics.models.sam import SAM3SemanticPredictor

        self.phrases: list[str] = []
        self.names: dict[int, str] = {}
        self.use(phrases)
        self.image_size = image_size
        overrides = {"model": str(checkpoint.path), "imgsz": image_size, "conf": confidence, "iou": nms_iou,
                     "device": device, "verbose": False, "save": False}  # fmt: skip
        self.predictor: Any = SAM3SemanticPredictor(overrides=overrides)
        with torch_threads_kept():
            self.predictor.setup_model(model=None, verbose=False)  # Ultralytics' builder and loader
        missing = missing_detector_weights(self.predictor.model, checkpoint.path)
        if missing:
            raise DetectorError(
                f"detector.model {checkpoint.spec}: {checkpoint.path} lacks {len(missing)} of SAM 3's detector weights "
                f"(e.g. {', '.join(missing[:3])}); give a SAM 3 checkpoint (sam3)"
            )
        self.predictor.model.backbone.language_backbone.tokenizer = ClipTokenizer()
        self(np.zeros((image_size, image_size, 3), np.uint8))  # set up the predictor and the phrases' embeddings

    def use(self, phrases: Sequence[str]) -> None:
        """Look for these phrases from now on (the studio's Find changes them; the model stays loaded)."""
        self.phrases = [str(p) for p in phrases]
        self.names = dict(enumerate(self.phrases))

    def __call__(self, image: Path | np.ndarray) -> Detections:
        """Find the phrases' objects on one image (a file path or an RGB array); boxes in its pixels."""
        source = str(image) if isinstance(image, Path) else np.ascontiguousarray(image[..., ::-1])
        with torch_threads_kept():
            result = self.predictor(source=source, text=self.phrases)[0]
        boxes = result.boxes
        if boxes is None or len(boxes) == 0:
            return Detections.empty()
        cls = boxes.cls.cpu().numpy().astype(np.int64)
        height, width = result.orig_shape
        xyxy = boxes.xyxy.cpu().numpy().astype(np.float32)  # SAM 3's boxes are not clipped to the image; YOLO's are
        xyxy[:, 0::2] = xyxy[:, 0::2].clip(0, width)
        xyxy[:, 1::2] = xyxy[:, 1::2].clip(0, height)
        return Detections(
            boxes=xyxy,
            scores=boxes.conf.cpu().numpy().astype(np.float32),
            class_ids=cls,
            class_names=tuple(self.names.get(int(c), str(int(c))) for c in cls),
        )
