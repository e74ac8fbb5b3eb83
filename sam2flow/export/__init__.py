"""`sam2flow export`: a finished run's tracks in the formats other tools read.

Every format streams the run frame by frame (`sam2flow.readers.run.Run.frames`), so memory does not grow with the
video. An export is built in a temporary folder and appears under its final name only when complete, with
``export.json`` (what was exported, counts, seconds) written last.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from sam2flow.errors import InputError
from sam2flow.export.shapes import selected_tracks
from sam2flow.io import storage
from sam2flow.io.staging import StagedFolder, check_replaceable
from sam2flow.readers.run import Run, read_run

EXPORT_RECORD = "export.json"


class ExportError(InputError):
    """An export cannot be made as asked (bad range, unknown track, too many tracks for the format)."""


@dataclass(frozen=True)
class Selection:
    """What to export: a half-open frame range and, optionally, some tracks only."""

    frames: range
    tracks: tuple[int, ...] | None = None


@dataclass(frozen=True)
class ExportResult:
    """What `export_run` wrote."""

    format: str
    dest: str
    frames: int
    annotations: int
    tracks: int
    files: int
    bytes: int
    seconds: float


Writer = Callable[[Run, Path, Selection], int]
"""Writes one format into a local folder and returns the number of annotations (mask rows) written."""


def _writers() -> dict[str, Writer]:
    from sam2flow.export import coco, cvat, davis, mot, yolo_seg

    return {"coco": coco.write, "mot": mot.write, "davis": davis.write, "yolo-seg": yolo_seg.write, "cvat": cvat.write}


FORMATS = ("coco", "mot", "davis", "yolo-seg", "cvat")


def parse_frames(text: str | None, num_frames: int) -> range:
    """``a:b`` (either side may be left out) as a range of frames inside the video.

    Raises:
        ExportError: When the text is not ``a:b`` or the range holds no frame of the video.
    """
    if not text:
        return range(num_frames)
    start_s, sep, stop_s = text.partition(":")
    try:
        start = int(start_s) if start_s.strip() else 0
        stop = int(stop_s) if stop_s.strip() else num_frames
    except ValueError:
        sep = ""
    if not sep:
        raise ExportError(f"--frames {text!r}: give a range of frames as a:b, e.g. --frames 0:100 (b excluded)")
    span = range(max(start, 0), min(stop, num_frames))
    if not span:
        raise ExportError(f"--frames {text!r} holds no frame of the video (frames 0 to {num_frames - 1})")
    return span


def _selection(run: Run, frames: str | None, tracks: Sequence[int] | None) -> Selection:
    span = parse_frames(frames, run.num_frames)
    if tracks is None:
        return Selection(span)
    known = set(run.tracks(kind="arrow")["track_id"].to_pylist())
    unknown = sorted(set(tracks) - known)
    if unknown:
        raise ExportError(f"--tracks: the run has no track {unknown[0]} (its tracks: {sorted(known)[:20]})")
    return Selection(span, tuple(sorted(set(tracks))))


def export_run(
    run_dir: str,
    fmt: str,
    dest: str | None = None,
    frames: str | None = None,
    tracks: Sequence[int] | None = None,
) -> ExportResult:
    """Export a finished run to ``dest`` (default ``OUT/<video_id>/export/<format>/``, local or fsspec URI).

    Raises:
        ExportError: For an unknown format, an empty frame range or an unknown track.
        StorageError: When ``dest`` is a file, or a folder with other files that is not an earlier export.
        RunReadError: When ``run_dir`` is not a finished run.
    """
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}: choose one of {', '.join(FORMATS)}")
    run = read_run(run_dir)
    sel = _selection(run, frames, tracks)
    target = (dest.rstrip("/") or "/") if dest else storage.join(run.path, "export", fmt)
    check_replaceable(target, EXPORT_RECORD, "export")
    t0 = time.perf_counter()
    with StagedFolder(target, last=EXPORT_RECORD) as folder:
        annotations = _writers()[fmt](run, folder, sel)
        files = [p for p in folder.rglob("*") if p.is_file()]
        result = ExportResult(
            format=fmt,
            dest=target,
            frames=len(sel.frames),
            annotations=annotations,
            tracks=len(selected_tracks(run, sel.frames, sel.tracks)),
            files=len(files) + 1,
            bytes=sum(p.stat().st_size for p in files),
            seconds=round(time.perf_counter() - t0, 3),
        )
        record = {**asdict(result), "video_id": run.video_id, "first_frame": sel.frames.start,
                  "stop_frame": sel.frames.stop, "selected_tracks": sel.tracks}  # fmt: skip
        (folder / EXPORT_RECORD).write_text(json.dumps(record, indent=2))
    return result


def _count_tracks(run: Run, sel: Selection) -> int:
    t = run.tracks(kind="arrow").to_pydict()
    return sum(
        1
        for tid, first, last in zip(t["track_id"], t["first_frame"], t["last_frame"])
        if (sel.tracks is None or tid in sel.tracks) and first < sel.frames.stop and last >= sel.frames.start
    )
