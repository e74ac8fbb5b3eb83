"""Rendering: stable colours per track id, drawn where the mask is."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sam2flow.config import RenderConfig
from sam2flow.core import rle
from sam2flow.core.types import TrackId, TrackMaskRow
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
    row = TrackMaskRow(0, TrackId(5), 0, "x", 0.9, rle.bbox(mask), int(mask.sum()), 60, 80, rle.encode(mask))
    cfg = RenderConfig(alpha=0.5, draw_boxes=False, draw_ids=False)
    out = draw(frame, [row], cfg)
    expected = (np.array(track_colour(5)) * 0.5).astype(np.uint8)
    assert np.array_equal(out[30, 40], expected)
    assert out[5, 5].tolist() == [0, 0, 0]
    assert frame.max() == 0, "the input frame is not modified"


def _whole_frame_draw(frame: np.ndarray, rows: list[TrackMaskRow], cfg: RenderConfig) -> np.ndarray:
    """Reference: blend and outline each mask over the whole frame (what `draw` did before it worked in boxes)."""
    import cv2

    out = frame.copy()
    for row in rows:
        colour = track_colour(int(row.track_id))
        mask = rle.decode(row.rle, row.height, row.width)
        out[mask] = (out[mask] * (1 - cfg.alpha) + np.array(colour) * cfg.alpha).astype(np.uint8)
        contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(out, contours, -1, colour, 2)
    return out


def test_draw_in_boxes_equals_the_whole_frame() -> None:
    """Masks of every shape, touching every edge of the frame, overlapping: drawing inside each mask's box gives
    exactly the pixels of drawing over the whole frame."""
    rng = np.random.default_rng(7)
    cfg = RenderConfig(alpha=0.45, draw_boxes=False, draw_ids=False)
    for trial in range(40):
        h, w = int(rng.integers(8, 90)), int(rng.integers(8, 90))
        frame = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        rows = []
        for k in range(int(rng.integers(1, 4))):
            mask = np.zeros((h, w), bool)
            y0, x0 = int(rng.integers(0, h)), int(rng.integers(0, w))
            mask[y0 : y0 + int(rng.integers(1, h)), x0 : x0 + int(rng.integers(1, w))] = True
            mask &= rng.random((h, w)) < (0.7 if trial % 2 else 1.0)  # holes and ragged edges half of the time
            if trial % 5 == 0:
                mask[:, 0] = mask[0, :] = True  # along two edges of the frame
            if not mask.any():
                continue
            counts, box, area = rle.describe(mask)
            rows.append(TrackMaskRow(0, TrackId(k + 1), 0, "x", 0.9, box, area, h, w, counts))
        assert np.array_equal(draw(frame, rows, cfg), _whole_frame_draw(frame, rows, cfg)), trial


def test_pieces_join_frame_exactly(tmp_path: Path) -> None:
    """Pieces rendered from seeked ranges and joined without re-encoding give every source frame once, in order."""
    from sam2flow.io.render import Overlay, render_range
    from sam2flow.io.video import concat_videos, iter_frames, probe
    from tests.synth import read_index, write_clip

    clip = write_clip(tmp_path / "clip.mp4", 70, fps=30)
    info = probe(str(clip))
    pieces = []
    for n, frames in enumerate([range(0, 23), range(23, 50), range(50, 70)]):
        out = tmp_path / f"{n}.ts"
        assert render_range(str(clip), info, frames, [], out, Overlay(RenderConfig())) == len(frames)
        pieces.append(out)
    joined = tmp_path / "joined.mp4"
    concat_videos(pieces, joined)
    out_info = probe(str(joined))
    assert out_info.num_frames == 70 and out_info.fps == info.fps == "30"
    assert [read_index(f) for f in iter_frames(str(joined), out_info)] == list(range(70))


def test_the_render_stage_keeps_pieces_that_show_the_final_tracks(tmp_path: Path) -> None:
    """Pieces drawn while segmentation goes on are kept when they show exactly the final tracks, and drawn again
    when a setting changes what they show; the joined video has every frame."""
    from sam2flow.io.video import probe
    from sam2flow.stages.render import render, render_piece
    from sam2flow.stages.stitch import stitch
    from tests.replay import Scene, replayed_job
    from tests.synth import Square

    scene = Scene((Square((255, 0, 0), y=10, x0=0, speed=1.5, size=20),))
    job, cfg = replayed_job(scene, tmp_path, 48, "detector.detect_every=8")
    for index in range(len(job.plan)):
        assert render_piece(job, index, cfg).frames > 0
    stitch(job, cfg)
    kept = render(job, cfg)
    assert (kept.pieces, kept.pieces_kept, kept.frames) == (len(job.plan), len(job.plan), 48)
    assert probe(job.output("annotated.mp4")).num_frames == 48 and not job.render_dir.exists()
    for index in range(len(job.plan)):
        render_piece(job, index, cfg)
    redrawn = render(job, cfg.model_copy(update={"render": cfg.render.model_copy(update={"alpha": 0.1})}))
    assert redrawn.pieces_kept == 0 and probe(job.output("annotated.mp4")).num_frames == 48
