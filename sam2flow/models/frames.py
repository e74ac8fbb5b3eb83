"""A subsequence's frames as SAM2's video predictor takes them, read from the pipeline's frame store
(`sam2flow.io.frames`): normalised with ImageNet's mean and std at ``S×S``, and the source frame size that masks
are scaled back to.

`install` makes SAM2's ``init_state`` load frames this way. SAM2's own loader decodes each JPEG with PIL, resizes it,
normalises it in float64 and keeps the whole subsequence as one float32 tensor (12 MiB a frame at 1024 px), on the
GPU unless offloaded. Here frames come already scaled from ffmpeg, are kept as uint8 RGB at ``S×S`` on the CPU
(3 MiB a frame), and each is normalised only when SAM2 reads it (`Frames`): with OpenCV, one float32 pass per channel,
on the CPU; after uploading the uint8 frame, on a GPU. The values are SAM2's own to within 5e-7 for the same pixels.
"""

from __future__ import annotations

import contextvars
import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from sam2flow.io.frames import FrameReader

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def square(rgb: np.ndarray, size: int) -> np.ndarray:
    """``rgb`` resized to ``size`` square (as SAM2 does, without keeping the aspect ratio); uint8."""
    if rgb.shape[:2] == (size, size):
        return np.ascontiguousarray(rgb)
    shrink = rgb.shape[0] >= size and rgb.shape[1] >= size
    out: np.ndarray = cv2.resize(rgb, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)
    return out


Norm = tuple[tuple[float, float, float], tuple[float, float, float]]
"""A model's pixel normalisation: per-channel mean and std of 0-1 values."""
IMAGENET: Norm = (MEAN, STD)
LOADER_NORM: contextvars.ContextVar[Norm] = contextvars.ContextVar("sam2flow_loader_norm", default=IMAGENET)
"""The normalisation `init_state` loads frames with: SAM2's, unless the model's predictor sets its own around the
call (SAM 3's, `sam2flow.models.sam3`)."""


def normalised(rgb: np.ndarray, device: torch.device, norm: Norm = IMAGENET) -> torch.Tensor:
    """A square uint8 RGB frame as the model's input ``(3, S, S)`` float32 on ``device``: on the CPU with OpenCV;
    elsewhere the uint8 frame is uploaded (a quarter of the bytes) and normalised there."""
    mean, std = norm
    if device.type == "cpu":
        out = np.empty((3, *rgb.shape[:2]), np.float32)
        for c, plane in enumerate(cv2.split(rgb)):
            cv2.addWeighted(plane, 1 / (255 * std[c]), plane, 0, -mean[c] / std[c], dst=out[c], dtype=cv2.CV_32F)
        return torch.from_numpy(out)
    return normalised_on(torch.from_numpy(rgb).to(device, non_blocking=True), norm)


@functools.lru_cache(maxsize=8)
def _scale_shift(device: torch.device, norm: Norm) -> tuple[torch.Tensor, torch.Tensor]:
    """Per channel, what multiplies a 0-255 value and what is then added, on ``device``."""
    mean, std = norm
    scale = torch.tensor([1 / (255 * s) for s in std], device=device).view(3, 1, 1)
    shift = torch.tensor([-m / s for m, s in zip(mean, std)], device=device).view(3, 1, 1)
    return scale, shift


def normalised_on(rgb: torch.Tensor, norm: Norm = IMAGENET) -> torch.Tensor:
    """A square uint8 ``(S, S, 3)`` RGB tensor as the model's input, computed on its own device."""
    scale, shift = _scale_shift(rgb.device, norm)
    return rgb.permute(2, 0, 1).float().mul_(scale).add_(shift)


class Frames:
    """What SAM2's inference state holds as ``images``: ``len`` frames, and frame ``i`` normalised on ``device``
    when SAM2 reads it (``frames[i]``, once per frame it tracks; only the latest frame's features are cached)."""

    def __init__(self, squares: Sequence[np.ndarray], device: torch.device, norm: Norm = IMAGENET) -> None:
        self.squares = tuple(squares)
        """Each frame as uint8 RGB ``(S, S, 3)``."""
        self.device = device
        self.norm = norm

    def __len__(self) -> int:
        return len(self.squares)

    def __getitem__(self, index: int) -> torch.Tensor:
        return normalised(self.squares[index], self.device, self.norm)

    @property
    def nbytes(self) -> int:
        return sum(s.nbytes for s in self.squares)

    def prepend(self, rgb: Sequence[np.ndarray]) -> Frames:
        """These frames with ``rgb`` (any size) put before them."""
        size = self.squares[0].shape[0] if self.squares else 0
        return Frames([*(square(x, size) for x in rgb), *self.squares], self.device, self.norm)


@dataclass(frozen=True)
class LoadedFrames:
    images: Frames
    height: int
    width: int
    """The source frame size."""


def load_frames(
    frames_dir: Path, image_size: int, device: torch.device | None = None, norm: Norm = IMAGENET
) -> LoadedFrames:
    """Every frame of ``frames_dir`` (a frame store or a folder of JPEGs), kept for the model (`Frames`), normalised
    with ``norm`` on ``device`` (the CPU by default) when read."""
    reader = FrameReader(frames_dir)
    squares = [square(reader.rgb(i), image_size) for i in range(reader.count)]
    reader.close()
    return LoadedFrames(Frames(squares, device or torch.device("cpu"), norm), reader.source_height, reader.source_width)


def _sam2_loader(
    video_path: str,
    image_size: int,
    offload_video_to_cpu: bool,
    img_mean: Any = MEAN,
    img_std: Any = STD,
    async_loading_frames: bool = False,
    compute_device: Any = None,
) -> tuple[Frames, int, int]:
    """`load_frames` in the shape of ``sam2.utils.misc.load_video_frames`` (what ``init_state`` calls). The video
    is held on the CPU as uint8 whatever ``offload_video_to_cpu`` says (less than SAM2's offloaded float32), and each
    frame is normalised on the model's device."""
    if tuple(img_mean) != MEAN or tuple(img_std) != STD:
        raise ValueError("sam2flow's frame loader normalises with SAM2's default mean and std only")
    frames = load_frames(Path(video_path), image_size, torch.device(compute_device or "cpu"), LOADER_NORM.get())
    return frames.images, frames.height, frames.width


def install() -> None:
    """Make SAM2's video predictor load frames with `load_frames` (idempotent)."""
    import sam2.sam2_video_predictor as svp

    svp.load_video_frames = _sam2_loader


def detector_image(frames_dir: Path, index: int, longest: int) -> tuple[np.ndarray, float, float]:
    """Frame ``index`` for a detector that works at ``longest`` pixels: RGB in the source's aspect ratio with its
    longest side ``longest`` (or the source's, if smaller), and the x and y factors from its pixels to source pixels.
    """
    reader = FrameReader(frames_dir)
    rgb = reader.rgb(index)
    sw, sh = reader.source_width, reader.source_height
    reader.close()
    scale = min(1.0, longest / max(sw, sh))
    w, h = max(1, round(sw * scale)), max(1, round(sh * scale))
    if (rgb.shape[1], rgb.shape[0]) != (w, h):
        rgb = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA if w <= rgb.shape[1] else cv2.INTER_CUBIC)
    return rgb, sw / w, sh / h
