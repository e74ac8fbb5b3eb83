"""Manifest and the _SUCCESS marker."""

from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from sam2flow import pipeline
from sam2flow.config import PipelineConfig


@task(name="finalize", cache_policy=NO_CACHE)
def finalize_task(job: pipeline.VideoJob, config: PipelineConfig, stages: dict[str, Any]) -> str:
    """Write manifest.json and then _SUCCESS; returns the output folder."""
    return pipeline.finalize(job, config, stages)
