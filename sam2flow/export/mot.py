"""MOTChallenge box tracks and MOTS mask tracks (text, frames numbered from 1)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sam2flow.export.shapes import categories
from sam2flow.readers.run import Run

if TYPE_CHECKING:
    from sam2flow.export import Selection

BOXES = "mot.txt"
MASKS = "mots.txt"


def write(run: Run, folder: Path, sel: Selection) -> int:
    """``mot.txt``: ``frame,id,x,y,w,h,conf,-1,-1,-1`` per mask row (frame = video frame + 1, id = track id, box in
    pixels with the top-left pixel at x = 1, y = 1, as in MOTChallenge ground truth).

    ``mots.txt``: ``frame id class height width rle`` (space-separated; class = category id as in the COCO export;
    rle = COCO compressed counts). ``classes.txt`` names the class of each category id."""
    names = categories(run)
    cat_id = {n: i + 1 for i, n in enumerate(names)}
    (folder / "classes.txt").write_text("".join(f"{i + 1} {n}\n" for i, n in enumerate(names)))
    n = 0
    with open(folder / BOXES, "w") as boxes, open(folder / MASKS, "w") as masks:
        for fr in run.frames(sel.frames, sel.tracks):
            for i in range(len(fr)):
                x0, y0, x1, y1 = (float(v) for v in fr.boxes[i])
                tid = int(fr.track_ids[i])
                boxes.write(f"{fr.frame + 1},{tid},{x0 + 1:.2f},{y0 + 1:.2f},{x1 - x0:.2f},{y1 - y0:.2f},"
                            f"{float(fr.scores[i]):.4f},-1,-1,-1\n")  # fmt: skip
                cls = cat_id[fr.class_names[i]]
                masks.write(f"{fr.frame + 1} {tid} {cls} {fr.height} {fr.width} {fr.rles[i]}\n")
                n += 1
    return n
