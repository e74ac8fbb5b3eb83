"""The extract stage (`sam2flow.stages.extract`): frames stored per subsequence from one decoder that the stage opens
on the first subsequence and closes after the last."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sam2flow.config import load_config
from sam2flow.io.frames import FrameReader
from sam2flow.stages import extract as stage
from sam2flow.stages.prepare import prepare
from tests.smoke import SMOKE, SQUARES
from tests.synth import read_index, write_clip


@pytest.fixture()
def job_and_config(tmp_path: Path):  # type: ignore[no-untyped-def]
    clip = write_clip(tmp_path / "clip.mp4", frames=40, squares=SQUARES)
    cfg = load_config(SMOKE, ["chunking.length=24", "chunking.overlap=16", f"output.work_dir={tmp_path / 'work'}"])
    return prepare(str(clip), str(tmp_path / "out"), cfg), cfg


def test_the_stage_owns_its_decoder(job_and_config) -> None:  # type: ignore[no-untyped-def]
    """Subsequences are cut in order from one decoder, open between the first and the last, closed after the last;
    each stored frame is the right one."""
    job, cfg = job_and_config
    assert len(job.plan) == 3
    for sub in job.plan:
        result = stage.extract(job, sub.index, cfg)
        assert not result.skipped and (job.work_dir in stage._DECODERS) == (sub.index < 2)
        reader = FrameReader(job.frames_dir(sub.index))
        assert [read_index(_resized(reader.rgb(i))) for i in (0, sub.length - 1)] == [sub.start, sub.stop - 1]
    assert job.work_dir not in stage._DECODERS


def test_a_finished_last_subsequence_still_closes_the_decoder(job_and_config) -> None:  # type: ignore[no-untyped-def]
    """With the last subsequence's part file already complete it is skipped, and the decoder is closed all the same;
    a run that stops closes it too."""
    job, cfg = job_and_config
    stage.extract(job, 0, cfg)
    assert job.work_dir in stage._DECODERS
    Path(job.part_uri(2)).parent.mkdir(parents=True, exist_ok=True)
    Path(job.part_uri(2)).write_bytes(b"done")
    stage.extract(job, 1, cfg)
    assert stage.extract(job, 2, cfg).skipped and job.work_dir not in stage._DECODERS
    stage.extract(job, 0, cfg)
    stage.close_decoder(job)
    assert job.work_dir not in stage._DECODERS


def _resized(rgb: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.resize(rgb, (320, 240))
