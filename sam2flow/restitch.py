"""`sam2flow stitch`: rebuild a finished run's tables (and, if asked, its video) from its part files, with no model."""

from __future__ import annotations

import logging
import shutil

from sam2flow import corrections, manifest, pipeline
from sam2flow.config import ConfigError, with_overrides
from sam2flow.io import lock, storage
from sam2flow.job import SUCCESS
from sam2flow.report import build_report
from sam2flow.results import RenderResult, StitchResult, from_json, to_json

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
    job, old_cfg, recorded = manifest.load_job(out_dir)
    cfg = with_overrides(old_cfg, overrides)
    if cfg.digest() != old_cfg.digest():
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
    pipeline.write_missing_times(job)  # a run made before timestamps.parquet: its manifest lists it as an output
    stages = dict(recorded.get("stages", {}))
    try:
        stitched = pipeline.stitch(job, cfg)
        stages["stitch"] = to_json(stitched)
        if rerender:
            stages["render"] = to_json(pipeline.render(job, cfg))
        elif cfg.render.enabled:
            earlier = from_json(RenderResult, stages.get("render") or {"enabled": True})
            stages["render"] = {**to_json(earlier), "stale": True}
        stages["restitched"] = True
        written = manifest.write_manifest(job, cfg, stages)
        if cfg.report.enabled:
            build_report(out_dir, complete=False)
        manifest.mark_complete(job, written["outputs"])
    finally:
        shutil.rmtree(job.work_dir, ignore_errors=True)
    return stitched
