"""Pure zone geometry and the enter/exit state machine with hysteresis."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

Point = tuple[float, float]
Polygon = Sequence[Point]
Box = Sequence[float]
Anchor = Literal["bottom_center", "center", "centroid"]


def point_in_polygon(x: float, y: float, polygon: Polygon) -> bool:
    """Whether a point lies inside a simple polygon (even-odd rule; points on an edge count as inside)."""
    n = len(polygon)
    inside = False
    for i in range(n):
        (x0, y0), (x1, y1) = polygon[i], polygon[(i + 1) % n]
        if _on_segment(x, y, x0, y0, x1, y1):
            return True
        if (y0 > y) != (y1 > y):
            cross_x = x0 + (y - y0) * (x1 - x0) / (y1 - y0)
            if x < cross_x:
                inside = not inside
    return inside


def _on_segment(px: float, py: float, x0: float, y0: float, x1: float, y1: float) -> bool:
    cross = (x1 - x0) * (py - y0) - (y1 - y0) * (px - x0)
    if abs(cross) > 1e-9 * max(1.0, abs(x1 - x0) + abs(y1 - y0)):
        return False
    return min(x0, x1) <= px <= max(x0, x1) and min(y0, y1) <= py <= max(y0, y1)


def _segments_cross(a: Point, b: Point, c: Point, d: Point) -> bool:
    def orient(p: Point, q: Point, r: Point) -> float:
        return (q[0] - p[0]) * (r[1] - p[1]) - (q[1] - p[1]) * (r[0] - p[0])

    d1, d2, d3, d4 = orient(c, d, a), orient(c, d, b), orient(a, b, c), orient(a, b, d)
    if ((d1 > 0) != (d2 > 0)) and ((d3 > 0) != (d4 > 0)) and d1 and d2 and d3 and d4:
        return True
    return (
        _on_segment(a[0], a[1], c[0], c[1], d[0], d[1])
        or _on_segment(b[0], b[1], c[0], c[1], d[0], d[1])
        or _on_segment(c[0], c[1], a[0], a[1], b[0], b[1])
        or _on_segment(d[0], d[1], a[0], a[1], b[0], b[1])
    )


def box_touches_polygon(box: Box, polygon: Polygon) -> bool:
    """Whether an ``x0, y0, x1, y1`` box and a polygon share any point (overlap, containment or touching edges)."""
    x0, y0, x1, y1 = (float(v) for v in box)
    corners: list[Point] = [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
    if any(point_in_polygon(cx, cy, polygon) for cx, cy in corners):
        return True
    if any(x0 <= px <= x1 and y0 <= py <= y1 for px, py in polygon):
        return True
    edges = list(zip(corners, corners[1:] + corners[:1]))
    n = len(polygon)
    return any(_segments_cross(a, b, polygon[i], polygon[(i + 1) % n]) for a, b in edges for i in range(n))


def box_anchor(box: Box, anchor: Literal["bottom_center", "center"]) -> Point:
    """The point of a box that decides whether its object is inside a zone."""
    x0, y0, x1, y1 = (float(v) for v in box)
    return ((x0 + x1) / 2.0, y1 if anchor == "bottom_center" else (y0 + y1) / 2.0)


EventKind = Literal["enter", "exit"]
Cause = Literal["crossed", "appeared", "disappeared"]


@dataclass(frozen=True)
class ZoneEvent:
    """A confirmed change of one track's side of one zone's border."""

    frame: int
    kind: EventKind
    cause: Cause
    point: Point


@dataclass
class ZoneTracker:
    """Turns one track's per-frame inside/outside observations for one zone into enter/exit events.

    A new side counts only once the track has been observed on it for ``hysteresis`` consecutive observations, so
    jitter along the border does not produce an event storm; the event is dated to the first frame of that run.
    A track first seen inside enters with cause ``appeared``; one seen outside first enters with ``crossed``.
    Frames on which the track is absent are not evidence either way.
    """

    hysteresis: int
    confirmed: bool | None = None
    run_inside: bool | None = None
    run_start: int = -1
    run_point: Point = (0.0, 0.0)
    run_length: int = 0
    first: int | None = None
    last: tuple[int, Point] | None = None
    events: list[ZoneEvent] = field(default_factory=list)

    def observe(self, frame: int, inside: bool, point: Point) -> None:
        """Feed one observation; frames must increase."""
        if self.last is not None and frame <= self.last[0]:
            raise ValueError(f"observations must have increasing frames ({frame} after {self.last[0]})")
        self.last = (frame, point)
        if self.first is None:
            self.first = frame
        if inside == self.run_inside:
            self.run_length += 1
        else:
            self.run_inside, self.run_start, self.run_point, self.run_length = inside, frame, point, 1
        if self.run_length >= self.hysteresis and inside != self.confirmed:
            if inside:
                cause: Cause = "appeared" if self.run_start == self.first else "crossed"
                self.events.append(ZoneEvent(self.run_start, "enter", cause, self.run_point))
            elif self.confirmed:
                self.events.append(ZoneEvent(self.run_start, "exit", "crossed", self.run_point))
            self.confirmed = inside

    def finish(self, last_video_frame: int) -> list[ZoneEvent]:
        """Close the track: one still inside that vanished before the video's end exits (``disappeared``)."""
        if self.confirmed and self.last is not None and self.last[0] < last_video_frame:
            self.events.append(ZoneEvent(self.last[0], "exit", "disappeared", self.last[1]))
            self.confirmed = False
        return self.events
