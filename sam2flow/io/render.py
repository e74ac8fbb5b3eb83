"""The annotated video: the source frames with each track's mask, outline, box and id in its own stable colour."""

from __future__ import annotations

import colorsys
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import pyarrow.parquet as pq

from sam2flow.config import RenderConfig
from sam2flow.core import rle
from sam2flow.io import storage
from sam2flow.io.video import VideoProbe, iter_frames, video_writer

log = logging.getLogger(__name__)


def track_colour(track_id: int) -> tuple[int, int, int]:
    """A bright RGB colour that depends only on the track id (golden-ratio hue steps)."""
    hue = (track_id * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 1.0)
    return int(r * 255), int(g * 255), int(b * 255)


def _rows_by_frame(masks_uri: str) -> Iterator[tuple[int, list[dict[str, object]]]]:
    fs, path = storage.filesystem(masks_uri)
    with fs.open(path, "rb") as f:
        pf = pq.ParquetFile(f)
        current: int | None = None
        group: list[dict[str, object]] = []
        for batch in pf.iter_batches(columns=["frame", "track_id", "class_name", "bbox", "height", "width", "rle"]):
            for row in batch.to_pylist():
                frame = int(row["frame"])
                if current is not None and frame != current:
                    yield current, group
                    group = []
                current = frame
                group.append(row)
        if current is not None:
            yield current, group


def draw(frame: np.ndarray, rows: list[dict[str, object]], cfg: RenderConfig) -> np.ndarray:
    """Draw the given tracks onto a copy of an RGB frame."""
    out = frame.copy()
    for row in rows:
        tid = int(row["track_id"])  # type: ignore[call-overload]
        colour = track_colour(tid)
        mask = rle.decode(str(row["rle"]), int(row["height"]), int(row["width"]))  # type: ignore[call-overload]
        if mask.shape != out.shape[:2]:
            continue
        if cfg.alpha > 0:
            out[mask] = (out[mask] * (1 - cfg.alpha) + np.array(colour) * cfg.alpha).astype(np.uint8)
        contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(out, contours, -1, colour, 2)
        x0, y0, x1, y1 = (round(v) for v in row["bbox"])  # type: ignore[attr-defined]
        if cfg.draw_boxes:
            cv2.rectangle(out, (x0, y0), (x1 - 1, y1 - 1), colour, 1)
        if cfg.draw_ids:
            label = f"{tid} {row['class_name']}"
            (tw, th), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, 0.5, 1)
            ty = max(y0, th + 4)
            cv2.rectangle(out, (x0, ty - th - 4), (x0 + tw + 4, ty), colour, -1)
            cv2.putText(out, label, (x0 + 2, ty - 3), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    return out


ZONE_COLOUR = (255, 255, 255)


def draw_zones(frame: np.ndarray, zones: list[tuple[str, list[tuple[float, float]]]]) -> np.ndarray:
    """A copy of an RGB frame with each zone outlined and named."""
    out = frame.copy()
    for name, polygon in zones:
        pts = np.round(np.asarray(polygon, np.float64)).astype(np.int32).reshape(-1, 1, 2)
        cv2.polylines(out, [pts], isClosed=True, color=ZONE_COLOUR, thickness=2, lineType=cv2.LINE_AA)
        x, y = (int(v) for v in pts[:, 0].min(axis=0))
        cv2.putText(out, name, (x + 4, max(y - 6, 14)), cv2.FONT_HERSHEY_SIMPLEX, 0.6, ZONE_COLOUR, 2, cv2.LINE_AA)
    return out


def render_video(
    video: str,
    info: VideoProbe,
    num_frames: int,
    masks_uri: str,
    out_path: Path,
    cfg: RenderConfig,
    progress: Callable[[int, int], None] | None = None,
    banner: str | None = None,
    zones: list[tuple[str, list[tuple[float, float]]]] | None = None,
) -> int:
    """Stream the source video and masks.parquet (sorted by frame) into an H.264 file at the source fps.

    ``banner`` is written in the bottom-left corner of every frame (used to mark random-weight runs); ``zones``
    (name, polygon) are outlined over the masks.

    Returns:
        The number of frames written (``num_frames`` unless the source decodes fewer).
    """
    rows = _rows_by_frame(masks_uri)
    pending = next(rows, None)
    written = 0
    with video_writer(out_path, info.width, info.height, info.fps, crf=cfg.crf) as proc:
        assert proc.stdin is not None
        for i, frame in enumerate(iter_frames(video, info, max_frames=num_frames)):
            drawn: list[dict[str, object]] = []
            while pending is not None and pending[0] <= i:
                if pending[0] == i:
                    drawn = pending[1]
                pending = next(rows, None)
            out = draw(frame, drawn, cfg) if drawn else frame
            if zones:
                out = draw_zones(out, zones)
            if banner:
                out = out.copy() if out is frame else out
                cv2.putText(out, banner, (8, info.height - 10), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 64, 64), 2)
            proc.stdin.write(out.tobytes())
            written += 1
            if progress is not None and (written % 50 == 0 or written == num_frames):
                progress(written, num_frames)
    return written
