"""The `process_sweep` flow: one video with ground truth, every setting of a grid, the metrics of each."""

from __future__ import annotations

import time
from typing import Annotated

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact
from pydantic import Field

from sam2flow.config import PipelineConfig
from sam2flow.flows.process_video import process_video
from sam2flow.io import storage
from sam2flow.readers.evaluate import evaluate, load_ground_truth
from sam2flow.sources.archive import artifact_slug
from sam2flow.sources.sweep import (
    METRICS,
    GridAxis,
    Metric,
    Setting,
    SweepRow,
    best,
    expand,
    ranked,
    table_rows,
    write_sweep,
)
from sam2flow.stages.stitch.restitch import restitch


def _score(out_dir: str, ground_truth: str) -> dict[str, float | None]:
    metrics = evaluate(out_dir, ground_truth)
    return {m: (float(metrics[m]) if m in metrics else None) for m in METRICS}


def _run_setting(
    video: str, out: str, ground_truth: str, setting: Setting, run_dir: str | None
) -> tuple[SweepRow, str]:
    """Segment (``run_dir`` None: a new segmentation; finished part files are reused) or re-stitch ``run_dir``;
    returns the setting's row and its run folder."""
    t0 = time.perf_counter()
    if run_dir is None:
        run_dir = str(process_video(video=video, out=out, config=setting.config, wait=True))
        how = "segmented"
    else:
        restitch(run_dir, setting.overrides)
        how = "restitched"
    row = SweepRow(setting.number, setting.values, how, time.perf_counter() - t0, _score(run_dir, ground_truth))
    return row, run_dir


@flow(name="process_sweep", log_prints=True, validate_parameters=True)
def process_sweep(
    video: str,
    ground_truth: str,
    out: str,
    grid: Annotated[
        list[GridAxis],
        Field(description="Config keys (e.g. stitching.iou_threshold) and the values to try; every combination runs."),
    ],
    config: PipelineConfig = PipelineConfig(),
    metric: Annotated[Metric, Field(description="The metric that picks the best setting.")] = "HOTA",
) -> list[SweepRow]:
    """Run ``video`` under every setting of ``grid`` and score each against ``ground_truth``.

    Settings that change the segmentation run `process_video` (part files already segmented with the same
    settings, by an earlier setting or an earlier sweep, are reused); settings that change only stitching, render
    or zone event settings re-stitch the same part files, with no model. Results: a Prefect table artifact and
    ``out/sweeps/<video_id>.parquet`` (one row per setting, best first). At the end ``out/<video_id>`` holds the
    best setting's results.

    Args:
        video: Local path or fsspec URI of the input video.
        ground_truth: DAVIS folder of indexed PNGs or MOT text file (see `sam2flow evaluate`).
        out: Output folder or URI.
        grid: Each key's values; at most 64 combinations.
        config: The configuration every setting starts from.
        metric: Picks the best setting (highest; lowest for IDSW).

    Returns:
        One record per setting, best first: its number, its values, how it ran, its seconds and its metrics.
    """
    logger = get_run_logger()
    load_ground_truth(ground_truth)  # a bad ground truth fails now, not after the first setting
    settings = expand(config, grid)
    logger.info("%d setting(s) over %s; best by %s", len(settings), ", ".join(a.key for a in grid), metric)
    rows: list[SweepRow] = []
    run_dir: str | None = None
    last_digest: str | None = None
    for n, setting in enumerate(settings, 1):
        digest = setting.config.digest()
        row, run_dir = _run_setting(video, out, ground_truth, setting, run_dir if digest == last_digest else None)
        last_digest = digest
        rows.append(row)
        shown = ", ".join(f"{m} {row.metrics[m]:.3f}" for m in ("HOTA", "IDF1", "Recall") if row.metrics[m] is not None)
        logger.info("%d/%d (%s, %.1fs) %s: %s", n, len(settings), row.how, row.seconds, setting.label, shown)
    top = best(rows, metric)
    chosen = next(s for s in settings if s.number == top.setting)
    if top.setting != rows[-1].setting:  # leave the best setting's results in the run folder
        same = chosen.config.digest() == last_digest
        _run_setting(video, out, ground_truth, chosen, run_dir if same else None)
    video_id = str(run_dir).rstrip("/").rsplit("/", 1)[-1]
    table = table_rows(rows, metric)
    write_sweep(storage.join(out, "sweeps", f"{video_id}.parquet"), rows, metric, {"video": video})
    create_table_artifact(
        table=table, key=f"sweep-{artifact_slug(video)}", description=f"process_sweep {video}, best by {metric}"
    )
    logger.info("best by %s: setting %d (%s) → %s", metric, top.setting, chosen.label, run_dir)
    return ranked(rows, metric)
