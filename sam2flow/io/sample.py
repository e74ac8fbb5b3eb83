"""A short synthetic clip with moving textured objects (`sam2flow sample`): something every stage can run on in a
fresh clone, with no download. Deterministic: the same arguments give the same frames."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from sam2flow.io.video import video_writer


@dataclass(frozen=True)
class _Mover:
    """One object: a textured shape following a smooth loop across the frame."""

    shape: str
    size: float
    colour: tuple[int, int, int]
    centre: tuple[float, float]
    radius: tuple[float, float]
    speed: float
    phase: float

    def position(self, t: float, width: int, height: int) -> tuple[int, int]:
        cx, cy = self.centre[0] * width, self.centre[1] * height
        a = self.phase + self.speed * t
        return int(cx + self.radius[0] * width * math.cos(a)), int(cy + self.radius[1] * height * math.sin(2 * a) / 2)


_MOVERS = (
    _Mover("disc", 0.11, (220, 60, 50), (0.35, 0.5), (0.22, 0.5), 0.9, 0.0),
    _Mover("box", 0.13, (40, 170, 230), (0.6, 0.45), (0.25, 0.6), -0.7, 1.7),
    _Mover("ellipse", 0.09, (240, 200, 40), (0.5, 0.7), (0.3, 0.3), 1.3, 3.1),
)


def _background(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """A floor-like textured background: a smooth gradient with fine noise and a tile grid."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = 90 + 40 * np.sin(x / width * 3.0) + 30 * np.cos(y / height * 2.0)
    img = np.stack([base * 0.9, base * 0.8, base * 0.7], axis=-1)
    img += rng.normal(0, 6, img.shape).astype(np.float32)
    img[(x.astype(int) % 80 < 2) | (y.astype(int) % 80 < 2)] *= 0.7
    out: np.ndarray = np.clip(img, 0, 255).astype(np.uint8)
    return out


def _texture(colour: tuple[int, int, int], size: int, rng: np.random.Generator) -> np.ndarray:
    """A square patch in an object's colour with stripes and speckle, so it is textured rather than flat."""
    y, x = np.mgrid[0:size, 0:size]
    stripes = ((x + y) // max(2, size // 8)) % 2
    patch = np.array(colour, np.float32)[None, None, :] * (0.75 + 0.25 * stripes[..., None])
    patch += rng.normal(0, 10, patch.shape)
    out: np.ndarray = np.clip(patch, 0, 255).astype(np.uint8)
    return out


def _half(mover: _Mover, height: int) -> int:
    """Half the side of a mover's texture patch (its shape's radius) in a clip ``height`` pixels high."""
    return max(8, int(mover.size * height) * 2) // 2


def _mask(mover: _Mover, half: int, t: float, width: int, height: int) -> np.ndarray:
    cx, cy = mover.position(t, width, height)
    mask = np.zeros((height, width), np.uint8)
    if mover.shape == "disc":
        cv2.circle(mask, (cx, cy), half, 1, -1)
    elif mover.shape == "box":
        cv2.rectangle(mask, (cx - half, cy - half * 2 // 3), (cx + half, cy + half * 2 // 3), 1, -1)
    else:
        cv2.ellipse(mask, (cx, cy), (half, half // 2), math.degrees(t), 0, 360, 1, -1)
    return mask


def _draw(frame: np.ndarray, mover: _Mover, patch: np.ndarray, t: float) -> None:
    h, w = frame.shape[:2]
    cx, cy = mover.position(t, w, h)
    half = patch.shape[0] // 2
    ys, xs = np.nonzero(_mask(mover, half, t, w, h))
    frame[ys, xs] = patch[(ys - cy + half) % patch.shape[0], (xs - cx + half) % patch.shape[1]]


def object_masks(frame: int, width: int = 960, height: int = 540, fps: int = 24) -> list[np.ndarray]:
    """Where each object of `write_sample`'s clip is on ``frame`` (boolean masks, before later objects cover it)."""
    t = frame / fps
    return [_mask(m, _half(m, height), t, width, height).astype(bool) for m in _MOVERS]


def write_sample(path: Path, frames: int = 96, width: int = 960, height: int = 540, fps: int = 24) -> Path:
    """Write an H.264 clip of ``frames`` frames with three textured objects moving over a textured floor.

    Returns:
        ``path``.
    """
    if frames < 1 or width < 64 or height < 64:
        raise ValueError("a sample needs at least 1 frame and 64x64 pixels")
    rng = np.random.default_rng(0)
    floor = _background(width, height, rng)
    patches = [_texture(m.colour, 2 * _half(m, height), rng) for m in _MOVERS]
    path.parent.mkdir(parents=True, exist_ok=True)
    with video_writer(path, width, height) as writer:
        for i in range(frames):
            frame = floor.copy()
            for mover, patch in zip(_MOVERS, patches):
                _draw(frame, mover, patch, i / fps)
            writer.write(frame, i / fps)
    return path
