"""Probe, plan and resolve checkpoints."""

from prefect import task
from prefect.cache_policies import NO_CACHE

from sam2flow.config import PipelineConfig
from sam2flow.job import VideoJob
from sam2flow.stages import prepare as stage


@task(name="prepare", cache_policy=NO_CACHE)
def prepare_task(video: str, out: str, config: PipelineConfig) -> VideoJob:
    """Probe the input, plan subsequences, resolve checkpoints (fails fast on bad input)."""
    return stage.prepare(video, out, config)
