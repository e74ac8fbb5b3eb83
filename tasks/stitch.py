"""Stitching part files into tracks."""

from prefect import task
from prefect.cache_policies import NO_CACHE

from sam2flow.config import PipelineConfig
from sam2flow.job import VideoJob
from sam2flow.results import StitchResult
from sam2flow.stages import stitch as stage


@task(name="stitch", cache_policy=NO_CACHE)
def stitch_task(job: VideoJob, config: PipelineConfig) -> StitchResult:
    """Write masks.parquet and tracks.parquet (and events.parquet with zones) from the part files."""
    return stage.stitch(job, config)
