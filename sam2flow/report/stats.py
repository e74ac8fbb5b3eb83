"""The report's figures as plain arrays and records, computed from a run's tables (pure: no drawing, no files)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class TrackSpans:
    """When one track is present: ``(first frame, last frame)`` of each stretch of consecutive frames."""

    track_id: int
    class_name: str
    spans: tuple[tuple[int, int], ...]

    @property
    def frames(self) -> int:
        """Frames on which the track is present."""
        return sum(b - a + 1 for a, b in self.spans)


@dataclass(frozen=True)
class Dwell:
    """One track's stays in one zone: how often it entered, for how long in all, and its longest stay (seconds)."""

    track_id: int
    zone: str
    entries: int
    total_seconds: float
    longest_seconds: float


def spans(frames: np.ndarray, track_ids: np.ndarray, class_of: dict[int, str]) -> list[TrackSpans]:
    """Each track's stretches of presence, longest-present track first (ties by track id)."""
    out = []
    order = np.lexsort((frames, track_ids))
    f, t = frames[order], track_ids[order]
    for tid in np.unique(t):
        fr = f[t == tid]
        breaks = np.flatnonzero(np.diff(fr) != 1)
        starts, stops = np.r_[fr[0], fr[breaks + 1]], np.r_[fr[breaks], fr[-1]]
        pairs = tuple((int(a), int(b)) for a, b in zip(starts, stops))
        out.append(TrackSpans(int(tid), class_of.get(int(tid), ""), pairs))
    return sorted(out, key=lambda s: (-s.frames, s.track_id))


def objects_per_frame(frames: np.ndarray, num_frames: int) -> np.ndarray:
    """How many tracks are present on each frame."""
    return np.bincount(frames.astype(np.int64), minlength=num_frames)[:num_frames]


def occupancy(events: list[dict[str, Any]], zones: list[str], num_frames: int) -> dict[str, np.ndarray]:
    """Per zone, how many tracks are inside on each frame (from the enter/exit events)."""
    out = {z: np.zeros(num_frames + 1, np.int64) for z in zones}
    for e in events:
        step = 1 if e["event"] == "enter" else -1
        out[str(e["zone"])][int(e["frame"]) :] += step
    return {z: v[:num_frames] for z, v in out.items()}


def dwell(events: list[dict[str, Any]], end_time: float) -> list[Dwell]:
    """Per (track, zone): entries, total time inside and the longest stay; a stay still open at the end of the
    video lasts until its last frame."""
    inside: dict[tuple[int, str], float] = {}
    stays: dict[tuple[int, str], list[float]] = {}
    for e in events:
        key = (int(e["track_id"]), str(e["zone"]))
        t = float(e["time"])
        if e["event"] == "enter":
            inside[key] = t
            stays.setdefault(key, [])
        elif key in inside:
            stays[key].append(t - inside.pop(key))
    for key, t in inside.items():
        stays[key].append(end_time - t)
    return [
        Dwell(tid, zone, len(s), round(sum(s), 3), round(max(s, default=0.0), 3))
        for (tid, zone), s in sorted(stays.items())
    ]
