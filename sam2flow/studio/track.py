"""Track in the page: SAM2 propagates the prompt page's objects over a range of frames inside the studio, and the
masks stream back frame by frame (the SAM2 demo's loop: prompt, track, correct a bad frame, track again).

The frames are read exactly as a run reads them (`sam2flow.io.frames.extract_frames`, scaled to the model's input),
the model is the previewer's, and prompts are added as a run's driver adds them, so over a run's first subsequence
the page shows the masks a run with the same prompts writes (to floating-point rounding between processes).
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sam2flow.core import rle
from sam2flow.core.types import FrameMasks, LocalObjId, ObjectPrompt, Subsequence
from sam2flow.errors import InputError, describe
from sam2flow.io.frames import extract_frames, frame_limit
from sam2flow.io.video import VideoProbe
from sam2flow.studio.preview import Previewer

if TYPE_CHECKING:
    from sam2flow.models.segmenter import Sam2Session


@dataclass(frozen=True)
class TrackPrompt:
    """One click or box of one object, on a global frame, in source pixels."""

    obj_id: int
    frame: int
    points: tuple[tuple[float, float], ...] = ()
    labels: tuple[int, ...] = ()
    box: tuple[float, float, float, float] | None = None


def track_lines(previewer: Previewer, folder: Path, video: str, info: VideoProbe, span: range,
                prompts: list[TrackPrompt]) -> Iterator[str]:  # fmt: skip
    """NDJSON lines: ``{"start", "stop", "frames"}`` first, then one ``{"frame", "masks": [[obj_id, rle, x0, y0,
    x1, y1], …]}`` per tracked frame (forward from the first prompted frame to the end of ``span``, each prompt added
    when tracking reaches its frame, as a run does; then back to the start), and ``{"done": true, "seconds", "fps"}``
    last (the seconds of tracking: frame reading and model loading excluded)."""
    try:
        yield from _track(previewer, folder, video, info, span, prompts)
    except InputError as exc:  # the video could not be read: the user's to fix
        yield json.dumps({"error": str(exc)}) + "\n"
    except OSError as exc:  # no room for the frames
        yield json.dumps({"error": describe(exc)}) + "\n"


def _track(previewer: Previewer, folder: Path, video: str, info: VideoProbe, span: range,
           prompts: list[TrackPrompt]) -> Iterator[str]:  # fmt: skip
    sub = Subsequence(0, span.start, span.stop)
    inside = [p for p in prompts if span.start <= p.frame < span.stop and (p.points or p.box is not None)]
    yield json.dumps({"start": span.start, "stop": span.stop, "frames": len(span)}) + "\n"
    with previewer.model() as segmenter:
        shutil.rmtree(folder, ignore_errors=True)
        extract_frames(video, info, sub, folder, frame_limit(previewer.cfg))
        t0, n = time.perf_counter(), 0
        with segmenter.inference():
            session = segmenter.open_session(folder)
        try:  # each step in SAM2's precision on whichever thread the web server advances this generator from
            for fm in segmenter.stepped(_as_a_run_tracks(session, inside, span.start, len(span))):
                n += 1
                yield _frame_line(fm, span.start)
        finally:
            session.close()
            shutil.rmtree(folder, ignore_errors=True)
        seconds = time.perf_counter() - t0
    fps = round(n / seconds, 3) if seconds else None
    yield json.dumps({"done": True, "frames": n, "seconds": round(seconds, 3), "fps": fps}) + "\n"


def _as_a_run_tracks(session: Sam2Session, prompts: list[TrackPrompt], start: int, length: int) -> Iterator[FrameMasks]:
    """Every frame's masks, tracked the way a run's driver tracks (`sam2flow.stages.segment.driver`): forward, each
    prompt added when tracking reaches its frame (SAM2 would otherwise condition the frames before a prompt on it);
    then, when the span starts before the first prompt, back from it to the span's start."""
    by_frame: dict[int, list[TrackPrompt]] = {}
    for p in prompts:
        by_frame.setdefault(p.frame - start, []).append(p)
    done = -1
    for k in sorted(by_frame):
        yield from (fm for fm in session.propagate(done + 1, k) if fm.frame < k)
        held = None
        for p in by_frame[k]:
            held = session.add(ObjectPrompt(LocalObjId(p.obj_id), k, -1, "object", p.points, p.labels, p.box,
                                            source="manual"))  # fmt: skip
        if held is not None:
            yield held
        done = k
    yield from session.propagate(done + 1, length - 1)
    first = min(by_frame, default=0)
    if first > 0:
        yield from (fm for fm in session.propagate(0, first, reverse=True) if fm.frame < first)


def _frame_line(fm: FrameMasks, start: int) -> str:
    masks = []
    for o, m in zip(fm.obj_ids, fm.masks):
        counts, box, _ = rle.describe(m)
        masks.append([int(o), counts, *(int(v) for v in box)])
    return json.dumps({"frame": fm.frame + start, "masks": masks}) + "\n"
