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
