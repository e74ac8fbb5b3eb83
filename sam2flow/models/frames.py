"""A subsequence's frames as SAM2's video predictor takes them, read from the pipeline's frame store
(`sam2flow.io.frames`): an ``(N, 3, S, S)`` float32 tensor normalised with ImageNet's mean and std, and the source
frame size that masks are scaled back to.

`install` makes SAM2's ``init_state`` load frames this way. SAM2's own loader decodes each JPEG with PIL, resizes it
and normalises it in float64; here frames come already scaled from ffmpeg and are converted with OpenCV in one
float32 pass per channel (the same values to within 5e-7 for the same pixels).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from sam2flow.io.frames import FrameReader

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class LoadedFrames:
    images: torch.Tensor
    """``(N, 3, S, S)`` float32, normalised."""
    height: int
    width: int
    """The source frame size."""


def fill_normalised(out: np.ndarray, rgb: np.ndarray, size: int) -> None:
    """Write one RGB frame, resized to ``size`` square, normalised, into ``out`` ``(3, S, S)`` float32."""
    if rgb.shape[:2] != (size, size):
        shrink = rgb.shape[0] >= size and rgb.shape[1] >= size
        rgb = cv2.resize(rgb, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)
    for c, plane in enumerate(cv2.split(rgb)):
        cv2.addWeighted(plane, 1 / (255 * STD[c]), plane, 0, -MEAN[c] / STD[c], dst=out[c], dtype=cv2.CV_32F)


def load_frames(frames_dir: Path, image_size: int) -> LoadedFrames:
    """Every frame of ``frames_dir`` (a frame store or a folder of JPEGs) as SAM2's normalised input, on the CPU."""
    reader = FrameReader(frames_dir)
    images = torch.empty((reader.count, 3, image_size, image_size), dtype=torch.float32)
    view = images.numpy()
    for i in range(reader.count):
        fill_normalised(view[i], reader.rgb(i), image_size)
    reader.close()
    return LoadedFrames(images, reader.source_height, reader.source_width)


def _sam2_loader(
    video_path: str,
    image_size: int,
    offload_video_to_cpu: bool,
    img_mean: Any = MEAN,
    img_std: Any = STD,
    async_loading_frames: bool = False,
    compute_device: Any = None,
) -> tuple[torch.Tensor, int, int]:
    """`load_frames` in the shape of ``sam2.utils.misc.load_video_frames`` (what ``init_state`` calls)."""
    if tuple(img_mean) != MEAN or tuple(img_std) != STD:
        raise ValueError("sam2flow's frame loader normalises with SAM2's default mean and std only")
    frames = load_frames(Path(video_path), image_size)
    images = frames.images
    if not offload_video_to_cpu and compute_device is not None:
        images = images.to(compute_device)
    return images, frames.height, frames.width


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
