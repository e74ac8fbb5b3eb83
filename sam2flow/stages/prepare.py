"""The prepare stage: probe the input, plan its subsequences, resolve the checkpoints, and name the part files."""

from __future__ import annotations

import hashlib
import logging

from sam2flow.config import PipelineConfig
from sam2flow.control import preflight
from sam2flow.control.runtime import precision_token
from sam2flow.core.planning import plan_subsequences
from sam2flow.io import storage
from sam2flow.io.checkpoints import ResolvedCheckpoint
from sam2flow.io.parquet import write_times
from sam2flow.io.scratch import own_folder
from sam2flow.io.video import frame_times, probe
from sam2flow.job import VideoJob, make_video_id, span_keys
from sam2flow.stages.stitch import corrections

log = logging.getLogger(__name__)

FRAMES_VERSION = "yuv420-model-size"
"""How frames reach the models (part of the part-file digest: a change there makes earlier part files stale)."""


def part_digest(
    cfg: PipelineConfig,
    sam2: ResolvedCheckpoint,
    yolo: ResolvedCheckpoint | None,
    references: str | None = None,
    precision: str | None = None,
) -> str:
    """The folder of a run's part files: the segmentation settings but the manual prompts, the content of the
    models that run and of the reference library, and the precision SAM2 runs in where it is not what earlier
    versions ran (`sam2flow.models.precision.digest_token`). Each file's name adds the prompts inside its
    subsequence (`span_keys`)."""
    models = f"{sam2.sha256}:{yolo.sha256 if yolo else '-'}"
    # each absent when unset or as before: earlier digests stay as they were
    extra = "".join(f":{x}" for x in (references, precision and f"precision={precision}") if x)
    return hashlib.sha256(f"{cfg.digest(prompts=False)}:{models}:{FRAMES_VERSION}{extra}".encode()).hexdigest()[:16]


def prepare(video: str, out: str, cfg: PipelineConfig) -> VideoJob:
    """Probe the input, plan subsequences and resolve checkpoints.

    Fails fast (before any heavy work) on a missing or unreadable input or a missing checkpoint. A finished earlier
    run in the same folder keeps its outputs and its ``_SUCCESS`` until this run is about to replace them (`stitch`),
    so a run that fails before then leaves it as it was.
    """
    video = storage.absolute(video)  # recorded in the manifest: it must mean the same from any folder
    info = preflight.check_run(video, out, cfg)
    local = storage.localize(video, storage.cache_root() / "inputs")
    if info is None:  # a remote video: probed once fetched
        info = probe(str(local))
        preflight.check_frame_size(video, info, cfg)
    num_frames = min(info.num_frames, cfg.video.max_frames or info.num_frames)
    plan = tuple(plan_subsequences(num_frames, cfg.chunking.length, cfg.chunking.overlap))
    models = preflight.check_models(cfg)  # no detector model with fine-tuning: the trained one comes later
    sam2, yolo = models.sam2, models.yolo
    video_id = make_video_id(video, storage.content_digest(str(local)))
    out_dir = storage.join(out, video_id)
    refs = preflight.check_references(cfg)
    digest = part_digest(cfg, sam2, yolo, refs.digest if refs else None, precision_token(cfg))
    storage.makedirs(out_dir)
    times_uri = storage.join(out_dir, "timestamps.parquet")
    if not storage.exists(times_uri):  # the same for every run of this video id: written once
        write_times(times_uri, frame_times(str(local), info))
    work = own_folder(preflight.work_dir_root(cfg) / video_id)
    fixes = corrections.load(out_dir)
    extra = tuple(fixes.prompts) if fixes else ()
    if fixes is not None:
        log.info("%s: applying %s (%d prompt(s))", video_id, corrections.FILE, len(extra))
    keys = span_keys(plan, [*cfg.prompts, *extra], carry=cfg.chunking.mode == "carry")
    job = VideoJob(video, str(local), video_id, out_dir, str(work), info, num_frames, plan, digest, sam2, yolo,
                   span_keys=keys, extra_prompts=extra)  # fmt: skip
    if job.random_weights:
        log.warning("RANDOM WEIGHTS: %s uses randomly initialised models; masks are meaningless", video_id)
    log.info(
        "%s: %d frames %dx%d @ %s fps → %d subsequence(s) of %d (overlap %d)",
        video_id, num_frames, info.width, info.height, info.fps, len(plan), cfg.chunking.length, cfg.chunking.overlap,
    )  # fmt: skip
    return job
