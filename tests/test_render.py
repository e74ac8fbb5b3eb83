"""Rendering: stable colours per track id, drawn where the mask is."""

from __future__ import annotations

import numpy as np

from sam2flow.config import RenderConfig
from sam2flow.core import rle
from sam2flow.io.render import draw, track_colour


def test_track_colours_are_stable_and_distinct() -> None:
    """A track's colour depends only on its id, and neighbouring ids look different."""
    assert track_colour(3) == track_colour(3)
    colours = [track_colour(i) for i in range(1, 21)]
    assert len(set(colours)) == 20
    for a, b in zip(colours, colours[1:]):
        assert sum(abs(x - y) for x, y in zip(a, b)) > 60


def test_draw_blends_the_mask_in_the_track_colour() -> None:
    """Pixels inside a mask are blended toward the track colour; pixels far outside are untouched."""
    frame = np.zeros((60, 80, 3), np.uint8)
    mask = np.zeros((60, 80), bool)
    mask[20:40, 30:50] = True
    row = {
        "track_id": 5,
        "class_name": "x",
        "bbox": list(rle.bbox(mask)),
        "height": 60,
        "width": 80,
        "rle": rle.encode(mask),
    }
    cfg = RenderConfig(alpha=0.5, draw_boxes=False, draw_ids=False)
    out = draw(frame, [row], cfg)
    expected = (np.array(track_colour(5)) * 0.5).astype(np.uint8)
    assert np.array_equal(out[30, 40], expected)
    assert out[5, 5].tolist() == [0, 0, 0]
    assert frame.max() == 0, "the input frame is not modified"
