"""Checks made before any work starts: every input a run names is usable, or one error says which and what to do.

The command line runs them before it starts a flow (so bad input costs seconds, not a Prefect server start and
half a run), and `sam2flow.stages.prepare` runs the ones about the video and the folders again for runs started from a
deployment. Each failure is a `sam2flow.errors.InputError` naming the input.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sam2flow.config import ConfigError, PipelineConfig
from sam2flow.io import access, storage
from sam2flow.io.checkpoints import CheckpointError, ResolvedCheckpoint
from sam2flow.io.frames import frame_limit, stored_bytes
from sam2flow.io.storage import StorageError
from sam2flow.io.video import VideoError, VideoProbe, probe
from sam2flow.readers.references import ReferenceSet

MIB = 1 << 20


def human(n: float) -> str:
    """A byte count for people: 1.5 GiB, 300 MiB."""
    return f"{n / (1 << 30):.1f} GiB" if n >= 1 << 30 else f"{n / MIB:.0f} MiB"


def check_video(video: str) -> VideoProbe | None:
    """The input exists, is a readable file of a video (probed when local; a remote one is probed once fetched).

    Raises:
        StorageError: Unknown scheme or missing driver.
        VideoError: Missing, a folder, unreadable, or not a video.
    """
    fs, path = storage.filesystem(video)
    if not fs.exists(path):
        raise VideoError(f"input video {video} does not exist; check the path")
    if fs.isdir(path):
        raise VideoError(f"input video {video} is a folder; give a video file, or use `sam2flow archive` for folders")
    if storage.is_remote(video):
        return None
    if not os.access(path, os.R_OK):
        raise VideoError(f"input video {video} is not readable by this user; check its permissions")
    return probe(video)


def check_frame_size(video: str, info: VideoProbe, cfg: PipelineConfig) -> None:
    """The frames are no larger than ``video.max_pixels`` (memory grows with the frame size).

    Raises:
        VideoError: Naming the size, the limit and the way out.
    """
    pixels = info.width * info.height
    if pixels > cfg.video.max_pixels:
        raise VideoError(
            f"input video {video} has {info.width}x{info.height} frames ({pixels / 1e6:.1f} megapixels), more than "
            f"video.max_pixels ({cfg.video.max_pixels / 1e6:.1f} MP): memory grows with the frame size. Downscale the "
            "video (e.g. ffmpeg -vf scale=-2:2160) or raise video.max_pixels if this machine has the memory"
        )


def _existing_ancestor(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_folder(uri: str, need: int, what: str) -> None:
    """A folder (or where one can be created) that this user can write to, with ``need`` bytes free (local only).

    Raises:
        StorageError: Naming the folder and what is wrong: a file in its place, read-only, or too little space.
    """
    fs, path = storage.filesystem(uri)
    if fs.exists(path) and not fs.isdir(path):
        raise StorageError(f"{what} {uri} is a file, not a folder; give a folder")
    if storage.is_remote(uri):
        return
    base = _existing_ancestor(Path(path).expanduser().absolute())
    probe_file = base / f".sam2flow-write-test-{uuid.uuid4().hex[:8]}"
    try:
        probe_file.write_bytes(b"")
        probe_file.unlink()
    except OSError as exc:
        raise StorageError(
            f"{what} {uri} cannot be written ({exc.strerror} in {base}); choose a writable folder"
        ) from exc
    free = shutil.disk_usage(base).free
    if free < need:
        raise StorageError(
            f"{what} {uri} has {human(free)} free, and this run needs about {human(need)} there; free some space "
            "or choose another folder"
        )


def work_dir_root(cfg: PipelineConfig) -> Path:
    """Where runs extract their frames (``output.work_dir``, or the system's temporary folder)."""
    return Path(cfg.output.work_dir or tempfile.gettempdir()) / "sam2flow-frames"


def space_needed(info: VideoProbe | None, video: str, cfg: PipelineConfig, workers: int) -> tuple[int, int]:
    """About how many bytes a run needs in its work folder (the stored frames of the subsequences in flight, see
    `sam2flow.io.frames`, and the render pieces) and in its output folder (the annotated video, about the size of
    the input, plus the tables)."""
    fs, path = storage.filesystem(video)
    size = int(fs.size(path) or 0)
    work = 64 * MIB + size  # the render pieces add up to about the annotated video
    if info is not None:
        in_flight = workers + cfg.runtime.extract_workers + 1
        frames = min(cfg.chunking.length, cfg.video.max_frames or info.num_frames, info.num_frames)
        work += in_flight * frames * stored_bytes(info.width, info.height, frame_limit(cfg))
    return work, size + 64 * MIB


def _read(ckpt: ResolvedCheckpoint) -> dict[str, Any]:
    """A checkpoint's top-level dict, read as weights only and memory-mapped (nothing is built)."""
    import torch

    try:
        data = torch.load(ckpt.path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:  # torch raises several types for damaged archives
        raise CheckpointError(f"checkpoint {ckpt.spec} ({ckpt.path}) cannot be read ({exc}); get it again") from exc
    if not isinstance(data, dict):
        raise CheckpointError(f"checkpoint {ckpt.spec} ({ckpt.path}) holds no model weights; give a model checkpoint")
    return data


def _sam3_keys(data: dict[str, Any]) -> list[str]:
    """The weight names of a SAM 3 file: Meta's are flat, sam2flow's random one nests them under ``model``."""
    inner = data.get("model")
    return [str(k) for k in (inner if isinstance(inner, dict) else data)]


def check_sam2_loadable(ckpt: ResolvedCheckpoint) -> None:
    """The segmenter's file holds model weights: a SAM2 ``model`` dict, or SAM 3's tracker weights."""
    data = _read(ckpt)
    if ckpt.family == "sam3":
        if not any(k.startswith("tracker.") for k in _sam3_keys(data)):
            raise CheckpointError(
                f"checkpoint {ckpt.spec} ({ckpt.path}) holds no SAM 3 tracker weights; give a SAM 3 checkpoint"
            )
        return
    if not isinstance(data.get("model"), dict):
        raise CheckpointError(
            f"checkpoint {ckpt.spec} ({ckpt.path}) holds no SAM2 'model' weights; give a SAM2 checkpoint"
        )


def text_detector_checkpoint(cfg: PipelineConfig) -> ResolvedCheckpoint:
    """``detector.model`` as the SAM 3 checkpoint whose concept detector finds ``detector.text``'s phrases.

    Raises:
        CheckpointError: It is not a SAM 3 checkpoint, or holds no detector weights.
    """
    from sam2flow.io.checkpoints import load_manifest
    from sam2flow.models import weights

    name = cfg.detector.model.removeprefix("random:")
    entry = load_manifest().get(name)
    if entry is None or entry.kind != "sam3":
        raise CheckpointError(
            f"detector.text finds objects with SAM 3's concept detector, but detector.model is {cfg.detector.model!r}: "
            "set detector.model to sam3 (random:sam3 for random weights)"
        )
    ckpt = weights.resolve(cfg.detector.model, "sam3")
    if not any(k.startswith("detector.backbone.language_backbone.") for k in _sam3_keys(_read(ckpt))):
        raise CheckpointError(f"detector.model {ckpt.spec} ({ckpt.path}) holds no SAM 3 text detector weights")
    return ckpt


def check_segmenter_settings(cfg: PipelineConfig, ckpt: ResolvedCheckpoint) -> None:
    """The segmenter settings fit the tracker the checkpoint is: SAM2 takes input sizes in multiples of 16, SAM 3
    in multiples of 14, and only SAM2 has a compiled build.

    Raises:
        ConfigError: Naming the setting and what to give.
    """
    seg = cfg.segmenter
    stride, name = (14, "SAM 3") if ckpt.family == "sam3" else (16, "SAM2")
    if seg.image_size is not None and seg.image_size % stride:
        raise ConfigError(
            f"segmenter.image_size {seg.image_size}: {ckpt.spec} is a {name} tracker, whose input size is a "
            f"multiple of {stride}; give e.g. {max(stride, round(seg.image_size / stride) * stride)}, or leave it empty"
        )
    if seg.compile and ckpt.family == "sam3":
        raise ConfigError(f"segmenter.compile applies to SAM2 trackers only; {ckpt.spec} is SAM 3: set it false")


def yolo_class_names(ckpt: ResolvedCheckpoint) -> dict[int, str]:
    """The classes of a YOLO checkpoint (loading it, in Ultralytics' safe mode)."""
    from sam2flow.models import weights

    try:
        model = weights.load_yolo(ckpt.path)
    except Exception as exc:  # Ultralytics raises many types for files that are not its checkpoints
        raise CheckpointError(
            f"detector.model {ckpt.spec} ({ckpt.path}) is not a YOLO detection checkpoint Ultralytics can load "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); give a YOLO .pt"
        ) from exc
    return {int(k): str(v) for k, v in model.names.items()}


@dataclass(frozen=True)
class Models:
    """The checkpoints a run will load, checked."""

    sam2: ResolvedCheckpoint
    yolo: ResolvedCheckpoint | None


def check_models(cfg: PipelineConfig) -> Models:
    """Every checkpoint the config needs is present (downloaded or generated now), verified, safe and loadable, and
    the detector knows the configured classes.

    Raises:
        CheckpointError, DetectorError: Naming the checkpoint or class.
    """
    from sam2flow.models import weights

    sam2 = weights.resolve(cfg.segmenter.checkpoint, "sam2")
    check_sam2_loadable(sam2)
    check_segmenter_settings(cfg, sam2)
    yolo = None
    if cfg.detector.enabled and cfg.detector.text:
        if cfg.finetune.enabled:
            raise ConfigError("detector.text and finetune.enabled: fine-tuning trains a YOLO detector; use one of them")
        return Models(sam2, text_detector_checkpoint(cfg))
    if cfg.detector.enabled and not cfg.finetune.enabled:
        from sam2flow.models.detector import resolve_classes

        yolo = weights.resolve(cfg.detector.model, "yolo")
        names = yolo_class_names(yolo)
        if cfg.detector.classes:
            resolve_classes(cfg.detector.classes, names)
    if cfg.finetune.enabled:
        from sam2flow.stages.finetune import base_model

        base_model(cfg.finetune.base_model)  # a missing file fails now; an unreachable pretrained name falls back
    return Models(sam2, yolo)


def check_run(video: str, out: str, cfg: PipelineConfig) -> VideoProbe | None:
    """Everything about one run but its checkpoints: the video, its frame size, the device, and room to work.

    Returns:
        The video's probe (None for a remote video, probed once fetched).
    """
    from sam2flow.control.runtime import available_devices

    access.check(video, access.INPUT_ROOTS_ENV, "input video")
    access.check(out, access.OUTPUT_ROOTS_ENV, "output folder")
    info = check_video(video)
    if info is not None:
        check_frame_size(video, info, cfg)
    devices = available_devices(cfg.runtime.device)
    work, output = space_needed(info, video, cfg, len(devices) * cfg.runtime.workers_per_device)
    check_folder(out, output, "output folder")
    check_folder(str(work_dir_root(cfg)), work, "work folder (output.work_dir) for extracted frames")
    return info


def check_references(cfg: PipelineConfig) -> ReferenceSet | None:
    """The reference library of ``references.path`` (None when unset), read and verified: inside the input roots,
    every file present and matching its sha256."""
    from sam2flow.readers.references import load_references

    if cfg.references.path is None:
        return None
    access.check(cfg.references.path, access.INPUT_ROOTS_ENV, "reference library (references.path)")
    refs = load_references(cfg.references.path)
    cap = cfg.segmenter.max_cond_frames
    if cap is not None and len(refs.frames) >= cap:
        raise ConfigError(
            f"references.path holds {len(refs.frames)} frames; segmenter.max_cond_frames ({cap}) must be larger, "
            "so that each subsequence's own prompted frames still count: raise it or use fewer reference frames"
        )
    if len(refs.identities) > cfg.segmenter.max_objects:
        raise ConfigError(
            f"references.path holds {len(refs.identities)} identities, more than segmenter.max_objects "
            f"({cfg.segmenter.max_objects}): raise segmenter.max_objects"
        )
    return refs


def check_archive(out: str, cfg: PipelineConfig) -> Models:
    """What an archive run shares across its videos: the device, its folders and the checkpoints (each video is
    checked when its turn comes, and a bad one fails alone)."""
    from sam2flow.control.runtime import available_devices

    access.check(out, access.OUTPUT_ROOTS_ENV, "output folder")
    available_devices(cfg.runtime.device)
    check_folder(out, 64 * MIB, "output folder")
    check_folder(str(work_dir_root(cfg)), 64 * MIB, "work folder (output.work_dir) for extracted frames")
    return check_models(cfg)
