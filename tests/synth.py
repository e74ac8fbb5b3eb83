"""Synthetic clips made inside tests: each frame carries its own index as a row of black/white blocks."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

BLOCK = 16
BITS = 10


@dataclass(frozen=True)
class Square:
    """A coloured square moving horizontally, visible on frames [first, last]."""

    colour: tuple[int, int, int]
    y: int
    x0: int
    speed: float
    size: int
    first: int = 0
    last: int = 10**9

    def box(self, frame: int) -> tuple[int, int, int, int]:
        x = int(self.x0 + self.speed * frame)
        return x, self.y, x + self.size, self.y + self.size


@dataclass(frozen=True)
class Bar(Square):
    """A thin bar ``size`` px wide and ``length`` px long (vertical, or horizontal), moving horizontally."""

    length: int = 40
    horizontal: bool = False

    def box(self, frame: int) -> tuple[int, int, int, int]:
        x = int(self.x0 + self.speed * frame)
        if self.horizontal:
            return x, self.y, x + self.length, self.y + self.size
        return x, self.y, x + self.size, self.y + self.length


def draw_frame(index: int, width: int, height: int, squares: tuple[Square, ...] = ()) -> np.ndarray:
    """An RGB frame: grey background, the index bits in the top-left, and the visible squares."""
    img = np.full((height, width, 3), 96, np.uint8)
    for bit in range(BITS):
        value = 255 if (index >> bit) & 1 else 0
        img[0:BLOCK, bit * BLOCK : (bit + 1) * BLOCK] = value
    for sq in squares:
        if sq.first <= index <= sq.last:
            x0, y0, x1, y1 = sq.box(index)
            img[max(y0, 0) : max(y1, 0), max(x0, 0) : max(x1, 0)] = sq.colour
    return img


def read_index(img: np.ndarray) -> int:
    """The frame index encoded by `draw_frame`."""
    index = 0
    for bit in range(BITS):
        block = img[2 : BLOCK - 2, bit * BLOCK + 2 : (bit + 1) * BLOCK - 2]
        if block.mean() > 128:
            index |= 1 << bit
    return index


def write_clip(
    path: Path, frames: int, width: int = 320, height: int = 240, fps: int = 24, squares: tuple[Square, ...] = ()
) -> Path:
    """Encode a synthetic H.264 clip with ffmpeg."""
    cmd = [
        "ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}",
        "-framerate", str(fps), "-i", "-", "-c:v", "libx264", "-g", "12", "-pix_fmt", "yuv420p",
        "-crf", "18", str(path),
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE)
    assert proc.stdin is not None
    for i in range(frames):
        proc.stdin.write(draw_frame(i, width, height, squares).tobytes())
    proc.stdin.close()
    assert proc.wait() == 0
    return path


def with_rotation(source: Path, path: Path, degrees: int) -> Path:
    """A copy of a clip (same stream, no re-encoding) whose container says to display it rotated by ``degrees``,
    like a phone recording held upright."""
    cmd = ["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(source), "-c", "copy"]
    subprocess.run([*cmd, "-metadata:s:v:0", f"rotate={degrees}", str(path)], check=True)
    return path


def write_vfr_clip(path: Path, times: list[float], width: int = 320, height: int = 240,
                   squares: tuple[Square, ...] = ()) -> Path:  # fmt: skip
    """A clip whose frame ``i`` (drawn by `draw_frame`) is shown at ``times[i]`` seconds: a variable frame rate, like
    a phone recording that slowed down in the dark."""
    from sam2flow.io.video import video_writer

    with video_writer(path, width, height) as writer:
        for i, t in enumerate(times):
            writer.write(draw_frame(i, width, height, squares), t)
    return path
