"""Manifest and the _SUCCESS marker."""

from prefect import task
from prefect.cache_policies import NO_CACHE

from sam2flow.config import PipelineConfig
from sam2flow.job import VideoJob
from sam2flow.results import RunStages
from sam2flow.stages import finalize as stage


@task(name="finalize", cache_policy=NO_CACHE)
def finalize_task(job: VideoJob, config: PipelineConfig, stages: RunStages) -> str:
    """Write manifest.json and then _SUCCESS; returns the output folder."""
    return stage.finalize(job, config, stages)
