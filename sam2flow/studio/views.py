"""What the studio's API answers about videos and finished runs: frames as JPEG, preview masks as an overlay, a run's
tracks and their spans, the track under a click. Plain functions of a video or a `Run`, no web framework state."""

from __future__ import annotations

import base64
from typing import Any

import cv2
import numpy as np
from fastapi.responses import Response

from sam2flow.core import rle
from sam2flow.errors import InputError
from sam2flow.io.render import draw, masks_rows, track_colour
from sam2flow.io.video import VideoProbe, iter_frames
from sam2flow.readers.run import Run
from sam2flow.report.stats import spans
from sam2flow.stages.stitch import corrections


def jpeg(image: np.ndarray) -> Response:
    ok, data = cv2.imencode(".jpg", image[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])
    if not ok:
        raise InputError("the frame could not be encoded")
    return Response(data.tobytes(), media_type="image/jpeg", headers={"Cache-Control": "no-store"})


def frame_image(video: str, info: VideoProbe, frame: int) -> np.ndarray:
    if not 0 <= frame < info.num_frames:
        raise InputError(f"frame {frame} is outside the video (0 to {info.num_frames - 1})")
    for image in iter_frames(video, info, max_frames=1, start=frame):
        return image
    raise InputError(f"frame {frame} of {video} could not be decoded")


def box_of(mask: np.ndarray) -> list[int]:
    """A mask's tight box [x0, y0, x1, y1] (all zeros for an empty one)."""
    return [int(v) for v in rle.bbox(mask)] if mask.any() else [0, 0, 0, 0]


def overlay(masks: np.ndarray, ids: list[int]) -> str:
    """The masks as one RGBA PNG (data URL), each in the colour of its object's id (the track id it will have) at
    half opacity."""
    h, w = masks.shape[1:] if masks.ndim == 3 else (1, 1)
    out = np.zeros((h, w, 4), np.uint8)
    for i, m in zip(ids, masks):
        out[m] = (*track_colour(i), 140)
    ok, data = cv2.imencode(".png", out[:, :, [2, 1, 0, 3]])
    return "data:image/png;base64," + base64.b64encode(data.tobytes()).decode("ascii") if ok else ""


MASK_FRAMES = 600
"""The most frames one `run_masks` answer covers."""


def run_masks(run: Run, start: int, stop: int) -> dict[str, Any]:
    """The run's masks on frames ``start``..``stop - 1`` (at most `MASK_FRAMES`), for the page to draw: one
    ``[frame, track id, RLE counts, x0, y0, x1, y1]`` list per row."""
    if stop <= start:
        raise InputError(f"stop ({stop}) must be after start ({start})")
    stop = min(stop, start + MASK_FRAMES, run.num_frames)
    rows = masks_rows(run.file("masks.parquet"), range(start, stop))
    return {"start": start, "stop": stop, "height": run.height, "width": run.width,
            "rows": [[r.frame, r.track_id, r.rle, *map(int, r.bbox)] for r in rows]}  # fmt: skip


def frame_times(run: Run) -> list[float] | None:
    """When each frame is shown, for the page to find the frame the video element is on; None when that is
    ``frame / fps`` to the millisecond (a constant frame rate: the page computes it)."""
    times = run.times
    if np.abs(times - np.arange(len(times)) / run.fps).max(initial=0.0) < 1e-3:
        return None
    return [round(float(t), 6) for t in times]


def run_info(run: Run) -> dict[str, Any]:
    m = run.masks(columns=["frame", "track_id"])
    tracks = run.tracks().to_pylist()
    class_of = {t["track_id"]: t["class_name"] for t in tracks}
    by_track = (
        {s.track_id: s for s in spans(m["frame"].to_numpy(), m["track_id"].to_numpy(), class_of)} if m.num_rows else {}
    )
    return {
        "path": run.path,
        "video_id": run.video_id,
        "frames": run.num_frames,
        "width": run.width,
        "height": run.height,
        "fps": run.fps,
        "times": frame_times(run),
        "video": run.local_video() is not None,
        "render_stale": bool(run.manifest.stages.render and run.manifest.stages.render.stale),
        "tracks": [
            {
                **t,
                "colour": "rgb{}".format(track_colour(t["track_id"])),
                "spans": by_track[t["track_id"]].spans if t["track_id"] in by_track else [],
            }
            for t in tracks
        ],
        "corrections": (corrections.load(run.path) or corrections.Corrections()).model_dump(mode="json"),
    }


def run_frame(run: Run, frame: int) -> np.ndarray:
    video = run.local_video()
    if video is None:
        raise InputError(f"the source video of {run.path} ({run.manifest.input}) cannot be read here")
    rows = masks_rows(run.file("masks.parquet"), range(frame, frame + 1))
    image = frame_image(video, run.info, frame)
    cfg = run.manifest.config.render
    return draw(image, rows, cfg) if rows else image


def hit(run: Run, frame: int, x: float, y: float) -> int | None:
    """The track whose mask holds pixel (x, y) on the frame (the highest id where masks overlap)."""
    hit = None
    for r in masks_rows(run.file("masks.parquet"), range(frame, frame + 1)):
        x0, y0, x1, y1 = r.bbox
        if x0 <= x < x1 and y0 <= y < y1 and rle.decode(r.rle, r.height, r.width)[int(y), int(x)]:
            hit = int(r.track_id)
    return hit
