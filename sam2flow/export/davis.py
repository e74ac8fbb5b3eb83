"""DAVIS-style indexed PNGs: one per frame (frames without objects too), pixel value = object index."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from sam2flow.export.shapes import selected_tracks
from sam2flow.io.render import track_colour
from sam2flow.readers.run import Run

if TYPE_CHECKING:
    from sam2flow.export import Selection

MAPPING = "mapping.json"
MAX_INDEX = 254  # 0 is background and 255 is "void" in DAVIS


def object_indices(track_ids: list[int]) -> dict[int, int]:
    """Track id → pixel value: the track id itself when every id fits (1–254), else 1, 2, … in track-id order.

    Raises:
        ExportError: When more than 254 tracks are selected (an 8-bit PNG cannot tell them apart).
    """
    from sam2flow.export import ExportError

    ids = sorted(set(track_ids))
    if len(ids) > MAX_INDEX:
        raise ExportError(
            f"the davis format holds at most {MAX_INDEX} objects per export and the selection has {len(ids)} tracks: "
            "export fewer with --tracks or --frames"
        )
    if all(1 <= t <= MAX_INDEX for t in ids):
        return {t: t for t in ids}
    return {t: i + 1 for i, t in enumerate(ids)}


def _palette(indices: dict[int, int]) -> list[int]:
    colours = [(0, 0, 0)] * 256
    for tid, idx in indices.items():
        colours[idx] = track_colour(tid)  # the colours of the annotated video
    colours[255] = (255, 255, 255)
    return [c for rgb in colours for c in rgb]


def write(run: Run, folder: Path, sel: Selection) -> int:
    """``<frame:05d>.png`` for every frame of the selection, and ``mapping.json`` ({pixel value: track id}).

    Where masks overlap, the higher track id is drawn on top."""
    indices = object_indices(selected_tracks(run, sel.frames, sel.tracks))
    palette = _palette(indices)
    n = 0
    for fr in run.frames(sel.frames, sel.tracks):
        canvas = np.zeros((run.height, run.width), np.uint8)
        masks = fr.masks
        for i in np.argsort(fr.track_ids, kind="stable"):
            canvas[masks[i]] = indices[int(fr.track_ids[i])]
            n += 1
        img = Image.frombytes("P", (run.width, run.height), canvas.tobytes())
        img.putpalette(palette)
        img.save(folder / f"{fr.frame:05d}.png", optimize=False)
    mapping = {str(idx): tid for tid, idx in sorted(indices.items())}
    (folder / MAPPING).write_text(json.dumps({"pixel_value_to_track_id": mapping}, indent=2))
    return n
