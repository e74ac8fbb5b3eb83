"""CVAT for video 1.1 XML: one ``<track>`` of polygons per track, importable as annotations of the same video.

The XML needs each track's shapes together while masks come frame by frame, so each track's shapes are spooled to
a file of its own (in batches) and the files are joined at the end: memory stays bounded on long videos.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from xml.sax.saxutils import escape, quoteattr

import numpy as np

from sam2flow.export.shapes import categories, polygon
from sam2flow.readers.run import Run

if TYPE_CHECKING:
    from sam2flow.export import Selection

FILE = "annotations.xml"
FLUSH_EVERY = 500  # frames between spool writes


def _points(poly: np.ndarray) -> str:
    return ";".join(f"{x:.2f},{y:.2f}" for x, y in poly)


def _shape(frame: int, points: str, outside: bool) -> str:
    return (f'    <polygon frame="{frame}" keyframe="1" outside="{int(outside)}" occluded="0" '
            f'points="{points}" z_order="0"></polygon>\n')  # fmt: skip


@dataclass
class _Spool:
    """Each track's shapes, buffered and appended to the track's own file every few hundred frames."""

    folder: Path
    label: dict[int, str] = field(default_factory=dict)
    last_frame: dict[int, int] = field(default_factory=dict)
    last_points: dict[int, str] = field(default_factory=dict)
    buffer: dict[int, list[str]] = field(default_factory=lambda: defaultdict(list))

    def add(self, track: int, label: str, frame: int, points: str) -> None:
        prev = self.last_frame.get(track)
        if prev is not None and prev < frame - 1:  # absent in between: the track goes outside after its last shape
            self.buffer[track].append(_shape(prev + 1, self.last_points[track], outside=True))
        self.label.setdefault(track, label)
        self.buffer[track].append(_shape(frame, points, outside=False))
        self.last_frame[track], self.last_points[track] = frame, points

    def flush(self) -> None:
        for track, lines in self.buffer.items():
            with open(self.folder / f"{track}.xml", "a") as f:
                f.writelines(lines)
        self.buffer.clear()

    def close(self, stop: int) -> None:
        for track, last in self.last_frame.items():
            if last + 1 < stop:
                self.buffer[track].append(_shape(last + 1, self.last_points[track], outside=True))
        self.flush()


def _meta(run: Run, names: list[str]) -> str:
    labels = "".join(
        f"        <label><name>{escape(n)}</name><type>polygon</type><attributes></attributes></label>\n" for n in names
    )
    source = escape(Path(run.manifest.input).name)
    return (
        "  <meta>\n    <task>\n"
        f"      <name>{escape(run.video_id)}</name>\n      <size>{run.num_frames}</size>\n"
        "      <mode>interpolation</mode>\n      <overlap>0</overlap>\n"
        f"      <start_frame>0</start_frame>\n      <stop_frame>{run.num_frames - 1}</stop_frame>\n"
        f"      <labels>\n{labels}      </labels>\n"
        f"      <original_size><width>{run.width}</width><height>{run.height}</height></original_size>\n"
        f"      <source>{source}</source>\n    </task>\n  </meta>\n"
    )


def write(run: Run, folder: Path, sel: Selection) -> int:
    """``annotations.xml``: frame numbers are the video's (from 0); a track is ``outside="1"`` on the first frame
    after each stretch where it is present (unless the selection ends there). Multi-part masks become one polygon."""
    spool_dir = folder / ".tracks"
    spool_dir.mkdir()
    spool = _Spool(spool_dir)
    n = 0
    for k, fr in enumerate(run.frames(sel.frames, sel.tracks)):
        for i, mask in enumerate(fr.masks if len(fr) else ()):
            poly = polygon(mask)
            if len(poly) >= 3:
                spool.add(int(fr.track_ids[i]), fr.class_names[i], fr.frame, _points(poly))
                n += 1
        if k % FLUSH_EVERY == FLUSH_EVERY - 1:
            spool.flush()
    spool.close(sel.frames.stop)
    with open(folder / FILE, "w") as out:
        out.write('<?xml version="1.0" encoding="utf-8"?>\n<annotations>\n  <version>1.1</version>\n')
        out.write(_meta(run, categories(run)))
        for track in sorted(spool.label):
            out.write(f'  <track id="{track}" label={quoteattr(spool.label[track])} source="auto">\n')
            with open(spool_dir / f"{track}.xml") as f:
                while chunk := f.read(1 << 20):
                    out.write(chunk)
            out.write("  </track>\n")
        out.write("</annotations>\n")
    for p in spool_dir.iterdir():
        p.unlink()
    spool_dir.rmdir()
    return n
