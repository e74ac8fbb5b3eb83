"""`sam2flow stitch`: rebuild a finished run's tables (and, if asked, its video) from its part files, with no model."""

from __future__ import annotations

import logging
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

from sam2flow import manifest
from sam2flow.config import ConfigError, PipelineConfig, with_overrides
from sam2flow.io import lock, storage
from sam2flow.job import SUCCESS, VideoJob
from sam2flow.report import build_report
from sam2flow.results import RenderResult, RunManifest, StitchResult
from sam2flow.stages.render import render
from sam2flow.stages.stitch import corrections, stitch, write_missing_times

log = logging.getLogger(__name__)


def restitch(out_dir: str, overrides: list[str] | None = None, rerender: bool = False) -> StitchResult:
    """Rebuild masks.parquet and tracks.parquet (and, if asked, annotated.mp4) from a run's part files.

    Only stitching and render settings may change; no model runs. ``_SUCCESS`` is removed first and written again
    last, so an interrupted re-stitch never looks complete.

    Raises:
        ConfigError: When an override would change the segmentation (the part files would no longer match).
        FileNotFoundError: When the folder has no manifest or a part file is missing.
    """
    with lock.hold(out_dir.rstrip("/"), what="sam2flow stitch"):
        return _restitch(out_dir, overrides, rerender)


def _restitch(out_dir: str, overrides: list[str] | None, rerender: bool) -> StitchResult:
    work = Path(tempfile.mkdtemp(prefix="sam2flow-restitch-"))  # render pieces, when re-rendering
    try:
        job, recorded = manifest.load_job(out_dir, str(work))
        cfg = with_overrides(recorded.config, overrides)
        if cfg.digest() != recorded.config.digest():
            raise ConfigError(
                "re-stitching can only change stitching.*, render.* and zone event settings (zones.*, unless "
                "zones.filter_prompts is on); run `sam2flow run` for the others"
            )
        fixes = corrections.load(out_dir)
        if fixes is not None and tuple(fixes.prompts) != job.extra_prompts:
            log.warning(
                "%s holds prompts this run has not segmented: `sam2flow run` applies them (re-segmenting only the "
                "subsequences they touch); merge, split, delete and classes are applied now",
                corrections.FILE,
            )
        storage.remove(job.output(SUCCESS))
        write_missing_times(job)  # a run made before timestamps.parquet: its manifest lists it as an output
        stitched = stitch(job, cfg)
        stages = replace(
            recorded.stages, stitch=stitched, restitched=True, render=_render(job, cfg, recorded, rerender)
        )
        written = manifest.write_manifest(job, cfg, stages)
        if cfg.report.enabled:
            build_report(out_dir, complete=False)
        manifest.mark_complete(job, written.outputs)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return stitched


def _render(job: VideoJob, cfg: PipelineConfig, recorded: RunManifest, rerender: bool) -> RenderResult | None:
    """The render record after re-stitching: a new video (asked for, or the run's is missing), or the earlier one
    marked stale (its ids are the old ones)."""
    if rerender or (cfg.render.enabled and not storage.exists(job.output("annotated.mp4"))):
        return render(job, cfg)
    if not cfg.render.enabled:
        return recorded.stages.render
    return replace(recorded.stages.render or RenderResult(enabled=True), stale=True)
