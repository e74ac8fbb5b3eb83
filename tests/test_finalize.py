"""The finalize stage (`sam2flow.stages.finalize`): the manifest, the report, then _SUCCESS once every output
exists; the work folder goes."""

from __future__ import annotations

from pathlib import Path

import pytest

from sam2flow.manifest import read_manifest
from sam2flow.results import ExtractSummary, PrepareSummary, RenderResult, RunStages, SegmentSummary
from sam2flow.stages.finalize import finalize
from sam2flow.stages.render import render
from sam2flow.stages.stitch import stitch
from tests.replay import Scene, replayed_job
from tests.synth import Square

SCENE = Scene((Square((255, 0, 0), y=10, x0=0, speed=1.5, size=20),))


def _stages(job, cfg) -> RunStages:  # type: ignore[no-untyped-def]
    return RunStages(PrepareSummary(0.1), ExtractSummary(0.2, 0), SegmentSummary(1.0, 1.0, 0.5, 0, []),
                     stitch(job, cfg), render(job, cfg))  # fmt: skip


def test_finalize_writes_the_manifest_and_success_last(tmp_path: Path) -> None:
    """The manifest records the run (read back equal), the report is built, _SUCCESS exists, the work folder and
    its empty parent are gone."""
    job, cfg = replayed_job(SCENE, tmp_path, 48, "detector.detect_every=8")
    Path(job.work_dir).mkdir(parents=True)
    stages = _stages(job, cfg)
    assert finalize(job, cfg, stages) == job.out_dir
    manifest = read_manifest(job.out_dir)
    assert manifest.stages == stages and manifest.config == cfg and manifest.input == job.video
    assert manifest.subsequences == list(job.plan) and manifest.config_digest == job.config_digest
    assert set(manifest.outputs) == {"masks.parquet", "tracks.parquet", "review.parquet", "timestamps.parquet",
                                     "annotated.mp4", "manifest.json", "report/report.html"}  # fmt: skip
    assert Path(job.output("_SUCCESS")).is_file() and Path(job.output("report/report.html")).is_file()
    assert not Path(job.work_dir).exists() and not Path(job.work_dir).parent.exists()


def test_a_missing_output_is_never_marked_complete(tmp_path: Path) -> None:
    """With an output gone (the annotated video here), finalize fails and writes no _SUCCESS."""
    job, cfg = replayed_job(SCENE, tmp_path, 48, "detector.detect_every=8")
    stages = _stages(job, cfg)
    Path(job.output("annotated.mp4")).unlink()
    with pytest.raises(RuntimeError, match=r"annotated\.mp4"):
        finalize(job, cfg, stages)
    assert not Path(job.output("_SUCCESS")).exists()
    off = cfg.model_copy(update={"render": cfg.render.model_copy(update={"enabled": False})})
    assert finalize(job, off, RunStages(render=RenderResult(enabled=False))) == job.out_dir
