"""Stitching part files into tracks."""

from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from sam2flow import pipeline
from sam2flow.config import PipelineConfig


@task(name="stitch", cache_policy=NO_CACHE)
def stitch_task(job: pipeline.VideoJob, config: PipelineConfig) -> dict[str, Any]:
    """Write masks.parquet and tracks.parquet from the part files."""
    return pipeline.stitch(job, config)
