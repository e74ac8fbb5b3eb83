"""The fine-tune subflow's tasks: track the prompted objects through the first frames, then train YOLO on them."""

from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from sam2flow import finetune, pipeline
from sam2flow.config import PipelineConfig


@task(name="finetune-label", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=5)
def finetune_label_task(job: pipeline.VideoJob, config: PipelineConfig) -> dict[str, Any]:
    """Extract the first frames and track the manual prompts through them (labels.parquet)."""
    return finetune.label(job, config)


@task(name="finetune-train", cache_policy=NO_CACHE)
def finetune_train_task(job: pipeline.VideoJob, config: PipelineConfig, labelled: dict[str, Any]) -> dict[str, Any]:
    """Build the time-block-split dataset and train the detector; returns the fine-tune record."""
    return finetune.train(job, config, labelled)
