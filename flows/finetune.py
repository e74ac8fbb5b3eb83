"""The `finetune_detector` subflow: learn the manually prompted objects from the first frames of a video."""

from __future__ import annotations

from dataclasses import replace

from prefect import flow, get_run_logger

from sam2flow.config import PipelineConfig
from sam2flow.job import VideoJob
from sam2flow.results import FinetuneRecord
from sam2flow.stages import finetune
from sam2flow.tasks.finetune import finetune_label_task, finetune_train_task


@flow(name="finetune_detector", log_prints=True, validate_parameters=False)
def finetune_detector(job: VideoJob, config: PipelineConfig) -> FinetuneRecord:
    """Track the prompted objects through ``finetune.frames`` frames, train YOLO on their boxes, save the weights.

    A complete fine-tune with the same inputs (video, prompts, SAM2 model and finetune settings) is reused, not
    repeated. Each step is retried once unless it failed on bad input (a retry reuses labels already written).

    Returns:
        The fine-tune record (weights URI, classes, split, validation metrics), with ``reused`` set.
    """
    logger = get_run_logger()
    record = finetune.existing(job, config)
    if record is not None:
        logger.info("finetune: reusing %s (trained earlier with the same inputs)", record.weights)
        return replace(record, reused=True)
    labelled = finetune_label_task(job, config)
    return finetune_train_task(job, config, labelled)
