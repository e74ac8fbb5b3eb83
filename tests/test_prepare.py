"""The prepare stage (`sam2flow.stages.prepare`): probe, plan, checkpoints, the part digest, the recorded input."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from sam2flow.config import load_config
from sam2flow.io.checkpoints import ResolvedCheckpoint
from sam2flow.io.parquet import read_times
from sam2flow.stages.prepare import part_digest, prepare
from tests.smoke import SMOKE, SQUARES
from tests.synth import write_clip

ROOT = Path(__file__).resolve().parents[1]
SAM2 = ResolvedCheckpoint("random:sam2.1_hiera_tiny", Path("/x/s.pt"), None, True, "a" * 64, True)
YOLO = ResolvedCheckpoint("random:yolo11n", Path("/x/y.pt"), None, True, "b" * 64, True)


@pytest.mark.parametrize(
    ("config", "with_yolo", "references", "digest"),
    [
        ("smoke.yaml", True, None, "e0282ef05fabdf0c"),
        ("smoke.yaml", False, "c" * 16, "c1d2be9f931a9ff6"),
        ("people_in_zone.yaml", True, None, "0a99e54b8940e230"),
        ("people_in_zone.yaml", False, "c" * 16, "4489f2bf51e86619"),
    ],
)
def test_part_digest_names_the_same_folder_as_before(config: str, with_yolo: bool, references: str | None,
                                                     digest: str) -> None:  # fmt: skip
    """The part folder of a config and its models is the one earlier versions named (commit e7b5e2b gave these), so
    runs made by them resume and re-stitch."""
    cfg = load_config(ROOT / "configs" / config)
    assert part_digest(cfg, SAM2, YOLO if with_yolo else None, references) == digest


def test_prepare_plans_and_records_the_input_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A relative input is recorded absolute; the plan covers the frames asked for; the timestamps are written once;
    the work folder is the run's own and not made yet."""
    write_clip(tmp_path / "clip.mp4", frames=40, squares=SQUARES)
    monkeypatch.chdir(tmp_path)
    sets = ["chunking.length=24", "chunking.overlap=16", "video.max_frames=36", f"output.work_dir={tmp_path / 'w'}"]
    cfg = load_config(SMOKE, sets)
    job = prepare("clip.mp4", "out", cfg)
    assert job.video == job.local_video == str(tmp_path / "clip.mp4")
    assert [(s.start, s.stop) for s in job.plan] == [(0, 24), (8, 32), (16, 36)] and job.num_frames == 36
    assert np.allclose(read_times(job.times_uri), np.arange(40) / 24)
    assert Path(job.work_dir).name.split("-")[-2] == str(os.getpid()) and not Path(job.work_dir).exists()
    assert job.out_dir == str(Path("out") / job.video_id) and job.random_weights
    assert Path(job.part_uri(0)).parent.name == job.config_digest
