"""The stitch stage (`sam2flow.stages.stitch`) on part files the replay doubles wrote: tables, zone events, the
earlier _SUCCESS going first, and the timestamps a run made before them lacks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from sam2flow.io import storage
from sam2flow.io.parquet import read_times
from sam2flow.job import EVENTS, SUCCESS
from sam2flow.stages.stitch import stitch, write_missing_times
from tests.replay import Scene, replayed_job, track_purity
from tests.synth import Square

FRAMES = 64
SCENE = Scene(
    (
        Square((255, 0, 0), y=10, x0=0, speed=1.5, size=20),  # crosses every boundary
        Square((0, 0, 255), y=70, x0=150, speed=-1.0, size=24, first=20, last=50),  # comes and goes
    )
)
ZONE = "zones.regions=[{name: left, polygon: [[0, 0], [100, 0], [100, 120], [0, 120]]}]"


def test_stitch_writes_one_track_per_object_and_the_zone_events(tmp_path: Path) -> None:
    """Every square keeps one track id across the subsequences; the earlier _SUCCESS goes first; zone events are
    written with zones and removed without."""
    job, cfg = replayed_job(SCENE, tmp_path, FRAMES, ZONE, "detector.detect_every=8")
    storage.write_bytes(job.output(SUCCESS), b"")
    result = stitch(job, cfg)
    assert not Path(job.output(SUCCESS)).exists()
    fragments, mixed, tracks = track_purity(SCENE, Path(job.output("masks.parquet")))
    assert (fragments, mixed) == (0, 0) and result.tracks == tracks == len(SCENE.squares)
    assert pq.read_metadata(job.output("masks.parquet")).num_rows == result.rows > 0
    assert result.events is not None and result.events.events == pq.read_metadata(job.output(EVENTS)).num_rows > 0
    without = stitch(job, cfg.model_copy(update={"zones": cfg.zones.model_copy(update={"regions": []})}))
    assert without.events is None and not Path(job.output(EVENTS)).exists()


def test_a_run_without_timestamps_gets_them(tmp_path: Path) -> None:
    """A run made before timestamps.parquet existed gets the video's own times, or frame / fps when the video is not
    readable here; a run that has them keeps them."""
    job, _ = replayed_job(SCENE, tmp_path, FRAMES)
    expected = read_times(job.times_uri)
    assert write_missing_times(job) is None
    Path(job.times_uri).unlink()
    assert write_missing_times(job) == "the video's timestamps" and np.array_equal(read_times(job.times_uri), expected)
    Path(job.times_uri).unlink()
    Path(job.local_video).rename(tmp_path / "moved.mp4")
    assert write_missing_times(job).startswith("frame / fps")  # type: ignore[union-attr]
    assert np.allclose(read_times(job.times_uri), np.arange(job.info.num_frames) / job.info.fps_float)


ALL_BOXES = "detector.max_objects_per_keyframe=8"
STRESS_BOXES = (
    "prompts=[{frame: 0, obj_id: 2, box: %s, class_name: first}, {frame: 0, obj_id: 1, box: %s, class_name: third}]"
)


def _square_of_tracks(scene: Scene, masks: str) -> dict[int, int]:
    """Each track's square: the one whose box its first row matches best."""
    from sam2flow.core.prompts import box_iou

    out: dict[int, int] = {}
    for r in pq.read_table(masks, columns=["frame", "track_id", "bbox"]).to_pylist():
        if r["track_id"] not in out:
            present = scene.present(r["frame"])
            ious = box_iou([r["bbox"]], [scene.box(i, r["frame"]) for i in present])[0]
            out[r["track_id"]] = present[int(np.argmax(ious))]
    return out


def test_prompted_objects_keep_their_obj_id_and_detector_tracks_come_after(tmp_path: Path) -> None:
    """Prompted as 2 (the square seen first) and 1, the objects are tracks 2 and 1; the detector's are 3 and 4."""
    from tests.replay import STRESS, STRESS_FRAMES

    prompts = STRESS_BOXES % (list(STRESS.box(0, 0)), list(STRESS.box(2, 0)))
    job, cfg = replayed_job(STRESS, tmp_path, STRESS_FRAMES, prompts, ALL_BOXES)
    stitch(job, cfg)
    squares = _square_of_tracks(STRESS, job.output("masks.parquet"))
    assert squares[2] == 0 and squares[1] == 2 and sorted(squares) == [1, 2, 3, 4]
    first = {r["track_id"]: r["first_frame"] for r in pq.read_table(job.output("tracks.parquet")).to_pylist()}
    assert first == {1: 0, 2: 0, 3: 0, 4: 32}  # the detector finds square 1 on keyframe 32


def test_a_correction_of_a_detector_track_keeps_every_track_number(tmp_path: Path) -> None:
    """A correction prompt naming a track the detector found (with the track's box, as the studio writes it)
    refines that track's object: after re-segmenting, every track has its number and its rows before the prompt."""
    from dataclasses import replace

    from sam2flow.config import ManualPrompt
    from sam2flow.stages.segment.driver import SegmentSettings, segment_subsequence
    from tests.replay import STRESS, STRESS_FRAMES, ReplayDetector, ReplaySegmenter

    job, cfg = replayed_job(STRESS, tmp_path, STRESS_FRAMES, ALL_BOXES)
    stitch(job, cfg)
    before = pq.read_table(job.output("masks.parquet")).to_pylist()
    squares = _square_of_tracks(STRESS, job.output("masks.parquet"))
    target = next(t for t, sq in squares.items() if sq == 3)  # a look-alike, found by the detector
    assert target != min(squares)
    last = max((r for r in before if r["track_id"] == target and r["frame"] <= 50), key=lambda r: r["frame"])
    fix = ManualPrompt(frame=50, obj_id=target, box=STRESS.box(3, 50), class_name="square", track_box=last["bbox"])
    fixed = replace(job, extra_prompts=(fix,))
    for sub in job.plan:  # every subsequence again, the correction in those holding frame 50
        segment_subsequence(ReplaySegmenter(STRESS, sub), ReplayDetector(STRESS, sub), job.frames_dir(sub.index), sub,
                            SegmentSettings.from_config(cfg, (fix,)), job.part_uri(sub.index))  # fmt: skip
    stitch(fixed, cfg)
    after = pq.read_table(job.output("masks.parquet")).to_pylist()
    assert _square_of_tracks(STRESS, job.output("masks.parquet")) == squares
    key = [(r["frame"], r["track_id"], r["rle"]) for r in before]
    assert [(r["frame"], r["track_id"], r["rle"]) for r in after] == key
