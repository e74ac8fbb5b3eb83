"""Zones: geometry, the enter/exit state machine, events.parquet from stitched masks, prompt filtering, drawing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from sam2flow.config import ConfigError, load_config
from sam2flow.core.zones import ZoneTracker, box_touches_polygon, point_in_polygon
from tests.replay import Scene, run_scene
from tests.synth import Square

SQUARE = [(10.0, 10.0), (50.0, 10.0), (50.0, 50.0), (10.0, 50.0)]
L_SHAPE = [(0.0, 0.0), (40.0, 0.0), (40.0, 10.0), (10.0, 10.0), (10.0, 40.0), (0.0, 40.0)]


def test_point_in_polygon() -> None:
    """Points inside, outside, on an edge, and in concave polygons."""
    assert point_in_polygon(30, 30, SQUARE)
    assert not point_in_polygon(60, 30, SQUARE)
    assert point_in_polygon(10, 30, SQUARE), "a point on an edge is inside"
    assert point_in_polygon(5, 30, L_SHAPE) and not point_in_polygon(30, 30, L_SHAPE), "concave polygons work"


@pytest.mark.parametrize(
    ("box", "touches"),
    [
        ((20, 20, 30, 30), True),  # inside the zone
        ((0, 0, 100, 100), True),  # the zone inside the box
        ((40, 40, 70, 70), True),  # corner overlap
        ((20, 0, 30, 100), True),  # crossing with no vertex of either inside the other
        ((50, 20, 60, 30), True),  # touching an edge
        ((51, 20, 60, 30), False),
        ((20, 20, 30, 30), False),  # for the L shape: in its notch
    ],
)
def test_box_touches_polygon(box: tuple[int, int, int, int], touches: bool) -> None:
    """A box touches a zone when any part of it overlaps the polygon."""
    poly = L_SHAPE if box == (20, 20, 30, 30) and not touches else SQUARE
    assert box_touches_polygon(box, poly) is touches


def _events(inside: list[bool | None], hysteresis: int, last: int | None = None) -> list[tuple[int, str, str]]:
    t = ZoneTracker(hysteresis)
    for f, v in enumerate(inside):
        if v is not None:  # None: the track is absent on that frame
            t.observe(f, v, (0.0, 0.0))
    return [(e.frame, e.kind, e.cause) for e in t.finish(len(inside) - 1 if last is None else last)]


def test_hysteresis_stops_event_storms_on_a_jittery_border() -> None:
    """Hysteresis turns a jittery border crossing into one enter and one exit; absent frames are no evidence."""
    jitter = [False] * 5 + [True, False, True, False, True, False] + [True] * 6 + [False] * 4
    assert len(_events(jitter, 1)) == 8  # every flicker is an event without hysteresis
    assert _events(jitter, 3) == [(11, "enter", "crossed"), (17, "exit", "crossed")]
    # absent frames are no evidence: the run continues across the gap
    assert _events([False, False, True, None, None, True, True], 3) == [(2, "enter", "crossed")]


def test_appeared_disappeared_and_video_end() -> None:
    """Tracks that appear or disappear inside a zone give appeared/disappeared events; the video's end is no exit."""
    assert _events([True] * 5, 3) == [(0, "enter", "appeared")]  # still inside at the video's end: no exit
    assert _events([True] * 5, 3, last=20) == [(0, "enter", "appeared"), (4, "exit", "disappeared")]
    assert _events([True, True], 3) == []  # too short to confirm anything
    assert _events([False] * 4, 2) == []


# Two squares walk right across a zone x in [100, 140]; the second one is in the zone only briefly.
ZONE_SCENE = Scene(
    (
        Square((255, 0, 0), y=20, x0=40, speed=2.0, size=20),
        Square((0, 255, 0), y=70, x0=150, speed=1.0, size=16, first=0, last=30),
    ),
    height=120,
    width=220,
)
ZONE = "zones.regions=[{name: door, polygon: [[100, 0], [140, 0], [140, 120], [100, 120]]}]"


def test_events_parquet_from_stitched_masks(tmp_path: Path) -> None:
    """The red square's bottom-centre (x0 + 10 + 2t) is inside [100, 140] from t = 25 to t = 45, so it enters at
    frame 25 and exits at 46; the green one starts outside and never enters; track ids follow the stitched masks."""
    from sam2flow.stages.stitch.events import write_events

    masks = run_scene(ZONE_SCENE, tmp_path, frames=64, length=32, overlap=16, every=16)
    cfg = load_config(None, [ZONE, "zones.hysteresis=2"])
    result = write_events(
        str(masks), str(tmp_path / "events.parquet"), cfg.zones, "synthetic", np.arange(64) / 24.0, 64
    )
    events = pq.read_table(tmp_path / "events.parquet").to_pylist()
    rows = pq.read_table(masks).to_pylist()
    red = {r["track_id"] for r in rows if r["frame"] == 0 and r["bbox"][1] == 20.0}
    assert len(red) == 1
    got = [(e["frame"], e["track_id"], e["event"], e["cause"], e["zone"]) for e in events]
    (tid,) = red
    assert got == [(25, tid, "enter", "crossed", "door"), (46, tid, "exit", "crossed", "door")]
    assert events[0]["x"] == pytest.approx(100.0) and events[0]["y"] == pytest.approx(40.0)
    assert events[0]["time"] == pytest.approx(25 / 24)
    assert (result.enters, result.exits, result.tracks_in_zones) == (1, 1, 1)
    # The centroid anchor agrees here (the square's centre crosses at the same frames).
    cfg_c = load_config(None, [ZONE, "zones.hysteresis=2", "zones.anchor=centroid"])
    write_events(str(masks), str(tmp_path / "events_c.parquet"), cfg_c.zones, "synthetic", np.arange(64) / 24.0, 64)
    centroid = pq.read_table(tmp_path / "events_c.parquet").to_pylist()
    assert [(e["frame"], e["event"]) for e in centroid] == [(25, "enter"), (46, "exit")]


def test_zone_filter_restricts_detector_prompts(tmp_path: Path) -> None:
    """With filter_prompts, only the square whose box touches the zone on a keyframe becomes a track."""
    zone = "zones.regions=[{name: left, polygon: [[0, 0], [70, 0], [70, 50], [0, 50]]}]"
    masks = run_scene(
        ZONE_SCENE, tmp_path / "f", frames=32, length=32, overlap=16, every=32,
        overrides=(zone, "zones.filter_prompts=true"),
    )  # fmt: skip
    rows = pq.read_table(masks).to_pylist()
    assert {r["bbox"][1] for r in rows} == {20.0}, "only the red square (in the zone at frame 0) is tracked"
    assert max(r["frame"] for r in rows) == 31, "it is tracked after it leaves the zone"
    unfiltered = pq.read_table(run_scene(ZONE_SCENE, tmp_path / "u", 32, 32, 16, 32, overrides=(zone,))).to_pylist()
    assert {r["bbox"][1] for r in unfiltered} == {20.0, 70.0}


def test_zone_config_is_validated() -> None:
    """Zone settings are validated: filter_prompts needs a zone, names are unique, polygons have three corners."""
    with pytest.raises(ConfigError, match="filter_prompts needs at least one zone"):
        load_config(None, ["zones.filter_prompts=true"])
    with pytest.raises(ConfigError, match="unique"):
        poly = "[[0, 0], [9, 0], [9, 9]]"
        load_config(None, [f"zones.regions=[{{name: a, polygon: {poly}}}, {{name: a, polygon: {poly}}}]"])
    with pytest.raises(ConfigError, match=r"zones\.regions\.0\.polygon"):
        load_config(None, ["zones.regions=[{name: a, polygon: [[0, 0], [1, 1]]}]"])


def test_zones_are_drawn() -> None:
    """Zones are drawn on a copy of the frame, in the zone colour."""
    from sam2flow.io.render import ZONE_COLOUR, draw_zones

    frame = np.zeros((60, 80, 3), np.uint8)
    out = draw_zones(frame, [("door", SQUARE)])
    assert tuple(out[30, 10]) == ZONE_COLOUR and tuple(out[30, 30]) == (0, 0, 0)
    assert frame.max() == 0
