"""The finalize stage: manifest.json, the report, and ``_SUCCESS`` last, once every output exists."""

from __future__ import annotations

from pathlib import Path

from sam2flow import manifest
from sam2flow.config import PipelineConfig
from sam2flow.control import stopping
from sam2flow.io.scratch import remove_folder
from sam2flow.job import VideoJob
from sam2flow.report import build_report
from sam2flow.results import RunStages


def finalize(job: VideoJob, cfg: PipelineConfig, stages: RunStages) -> str:
    """Write manifest.json and the report, check the outputs exist, then write ``_SUCCESS`` last. Returns the output
    folder."""
    stopping.check()
    written = manifest.write_manifest(job, cfg, stages)
    if cfg.report.enabled:
        build_report(job.out_dir, complete=False)
    manifest.mark_complete(job, written.outputs)
    if not cfg.output.keep_frames:
        remove_folder(Path(job.work_dir))
    return job.out_dir
