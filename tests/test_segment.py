"""The segment stage (`sam2flow.stages.segment`): a subsequence on a free worker, whose models are built once, with
its part file written and its frames released. The models are test doubles built through the real worker cache."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from sam2flow.config import load_config
from sam2flow.stages import segment as stage
from sam2flow.stages.extract import close_decoder, extract
from sam2flow.stages.prepare import prepare
from tests.scene_doubles import FRAMES, HEIGHT, SCENE, WIDTH, SceneDetector, SceneSegmenter
from tests.smoke import SMOKE
from tests.synth import write_clip


@pytest.fixture()
def doubles(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """SAM2 and YOLO replaced by the scene's doubles in a worker pool of this test's own."""
    import torch

    from sam2flow.control import runtime
    from sam2flow.models import detector, segmenter

    monkeypatch.setattr(segmenter, "Sam2Segmenter", SceneSegmenter)
    monkeypatch.setattr(detector, "YoloDetector", SceneDetector)
    SceneSegmenter.built = 0
    threads = torch.get_num_threads()
    yield
    runtime._POOLS.clear()  # their slots hold the doubles: no other test may get them
    torch.set_num_threads(threads)


def _job(tmp_path: Path, *overrides: str):  # type: ignore[no-untyped-def]
    clip = write_clip(tmp_path / "clip.mp4", FRAMES, WIDTH, HEIGHT, squares=SCENE.squares)
    sets = ["chunking.length=24", "chunking.overlap=16", "detector.detect_every=8", "prompts=[]",
            "runtime.device=cpu", "runtime.torch_threads=1", f"output.work_dir={tmp_path / 'work'}",
            *overrides]  # fmt: skip
    cfg = load_config(SMOKE, sets)
    return prepare(str(clip), str(tmp_path / "out"), cfg), cfg


def test_each_subsequence_on_a_worker_that_keeps_its_models(doubles: None, tmp_path: Path) -> None:
    """Every subsequence is segmented on the one CPU worker, which builds its segmenter once; each part file holds
    the scene's objects; the frames are released; a second call reuses the part file."""
    job, cfg = _job(tmp_path)
    assert len(job.plan) == 3
    for sub in job.plan:
        extract(job, sub.index, cfg)
        result = stage.segment(job, sub.index, cfg)
        assert not result.reused and result.worker == "cpu#0" and result.objects == 2
        assert pq.read_metadata(job.part_uri(sub.index)).num_rows == result.rows > 0
        assert not job.frames_dir(sub.index).exists()
    assert SceneSegmenter.built == 1
    again = stage.segment(job, 0, cfg)
    assert again.reused and again.rows is None


@pytest.mark.parametrize("store", ["raw", "jpeg"])
def test_kept_frames_stay_as_jpegs(doubles: None, tmp_path: Path, store: str) -> None:
    """With output.keep_frames the frames stay after segmentation as a folder of JPEGs, from either store."""
    job, cfg = _job(tmp_path, "output.keep_frames=true", f"video.frame_store={store}")
    extract(job, 0, cfg)
    close_decoder(job)  # the other subsequences are not extracted here
    assert stage.segment(job, 0, cfg).objects == 2
    layout = json.loads((job.frames_dir(0) / "frames.json").read_text())
    assert layout["format"] == "jpeg" and len(list(job.frames_dir(0).glob("*.jpg"))) == job.plan[0].length
    assert not (job.frames_dir(0) / "frames.yuv").exists()
