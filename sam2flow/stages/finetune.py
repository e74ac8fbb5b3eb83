"""Fine-tune the detector on the first frames of a video (the "long video" workflow).

The manually prompted objects are tracked by SAM2 through the first ``finetune.frames`` frames; the boxes of their
masks become a YOLO dataset (one class per prompt class name, split into train/validation by time blocks); YOLO is
trained on it; and the trained detector prompts every subsequence of the video. Everything lands under
``OUT/<video_id>/finetune/<digest>/`` (labels, weights, metrics) and is reused when the same inputs come again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from sam2flow.config import FinetuneConfig, PipelineConfig
from sam2flow.control import stopping
from sam2flow.control.runtime import WorkerSlot, pool_for, precision_token, segmenter_on
from sam2flow.core.dataset import time_block_split, yolo_label_line
from sam2flow.core.types import Subsequence
from sam2flow.errors import InputError
from sam2flow.io import checkpoints, storage
from sam2flow.io.checkpoints import CheckpointError
from sam2flow.io.parquet import read_table, rows_from_table
from sam2flow.io.video import extract_subsequence
from sam2flow.job import VideoJob
from sam2flow.models import weights
from sam2flow.models.detector import torch_threads_kept
from sam2flow.results import FinetuneRecord, LabelResult, SegmentStats, from_json, to_json

log = logging.getLogger(__name__)

WEIGHTS = "detector.pt"
METRICS = "metrics.json"  # written last: its presence marks a complete fine-tune
LABELS = "labels.parquet"
MIN_BOX_PIXELS = 16  # masks smaller than this are not used as training boxes


class FinetuneError(InputError, RuntimeError):
    """Fine-tuning cannot proceed (e.g. the prompts produced no masks to learn from)."""


def class_names(cfg: PipelineConfig) -> list[str]:
    """The trained detector's classes: the manual prompts' class names, in order of first appearance."""
    return list(dict.fromkeys(p.class_name for p in cfg.prompts if p.frame < cfg.finetune.frames))


def digest(video_id: str, cfg: PipelineConfig, sam2_sha256: str) -> str:
    """Content digest of everything the trained detector depends on (the video id holds the input's digest)."""
    relevant = {
        "video_id": video_id,
        "sam2": sam2_sha256,
        "jpeg_quality": cfg.video.jpeg_quality,
        "prompts": [p.model_dump(mode="json") for p in cfg.prompts if p.frame < cfg.finetune.frames],
        "segmenter": cfg.segmenter.model_dump(mode="json", exclude={"offload_video_to_cpu", "precision"}),
        "finetune": cfg.finetune.model_dump(mode="json", exclude={"enabled"}),
    }
    token = precision_token(cfg)  # SAM2 labels the training frames: in as `part_digest` has it
    if token:
        relevant["precision"] = token
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:16]


def load_record(folder: str) -> FinetuneRecord | None:
    """The record of a complete fine-tune in ``folder`` (None when it is missing, incomplete or unreadable)."""
    metrics, trained = storage.join(folder, METRICS), storage.join(folder, WEIGHTS)
    if not (storage.exists(metrics) and storage.exists(trained)):
        return None
    try:
        return from_json(FinetuneRecord, json.loads(storage.read_bytes(metrics)))
    except (ValueError, ValidationError) as exc:
        log.warning("finetune: %s is not a complete record (%s); training again", metrics, exc)
        return None


@dataclass(frozen=True)
class Dataset:
    """A YOLO dataset written to disk."""

    yaml: Path
    train: list[int]
    val: list[int]
    instances: dict[str, int]


def build_dataset(
    labels_uri: str, frames_dir: Path, sub: Subsequence, names: list[str], ft: FinetuneConfig, root: Path
) -> Dataset:
    """Write ``root/images/{train,val}``, ``root/labels/{train,val}`` and ``root/data.yaml`` from tracked masks.

    Each frame with at least one mask of a known class becomes an image whose boxes are the masks' boxes; frames
    where SAM2 found nothing are left out (the object may be there but lost, so they are not safe negatives).

    Raises:
        FinetuneError: When no frame has a usable mask.
    """
    index = {n: i for i, n in enumerate(names)}
    boxes: dict[int, list[str]] = {}
    instances = dict.fromkeys(names, 0)
    for r in rows_from_table(read_table(labels_uri)):
        if r.class_name not in index or r.area < MIN_BOX_PIXELS:
            continue
        local = sub.to_local(r.frame)
        if local % ft.frame_step:
            continue
        name = r.class_name
        line = yolo_label_line(index[name], r.bbox, r.width, r.height)
        boxes.setdefault(local, []).append(line)
        instances[name] += 1
    if not boxes:
        raise FinetuneError(
            f"the manual prompts produced no masks on the first {sub.length} frames: nothing to train on; check the "
            "prompts' coordinates (source pixels) and frames"
        )
    train, val = time_block_split(list(boxes), ft.block_frames, ft.val_fraction, ft.gap_frames)
    if not train:
        train = sorted(boxes)
    if set(train) & set(val):
        log.warning("finetune: only one time block of labels; validation reuses the training frames")
    shutil.rmtree(root, ignore_errors=True)
    for split, frames in (("train", train), ("val", val)):
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        for f in frames:
            name = f"{sub.to_global(f):06d}"
            shutil.copyfile(frames_dir / f"{f:05d}.jpg", root / "images" / split / f"{name}.jpg")
            (root / "labels" / split / f"{name}.txt").write_text("\n".join(boxes[f]) + "\n")
    data = {"path": str(root.resolve()), "train": "images/train", "val": "images/val", "names": dict(enumerate(names))}
    yaml_path = root / "data.yaml"
    yaml_path.write_text(json.dumps(data, indent=2))  # JSON is valid YAML
    return Dataset(yaml_path, train, val, instances)


def base_model(spec: str) -> tuple[str, bool]:
    """What to train from: (YOLO() argument, pretrained?).

    A ``.yaml`` spec trains from scratch. A manifest name that cannot be loaded (no cache, no network) falls back
    to its model YAML with a warning; a path or URI that cannot be read is an error (the user asked for that file).
    """
    if spec.endswith((".yaml", ".yml")):
        return spec, False
    try:
        ckpt = weights.resolve(spec, "yolo")
    except CheckpointError as exc:
        entry = checkpoints.load_manifest().get(spec)
        if entry is None or entry.kind != "yolo":
            raise
        log.warning("finetune: pretrained %s unavailable (%s); training from scratch from %s", spec, exc, entry.config)
        return entry.config, False
    return str(ckpt.path), not ckpt.random_weights


@dataclass(frozen=True)
class TrainResult:
    """The trained weights and what training measured."""

    weights: Path
    metrics: dict[str, float]
    epochs_run: int
    best_epoch: int
    base: str
    pretrained: bool
    seconds: float


def _device_arg(device: str) -> str:
    return device.split(":", 1)[1] if device.startswith("cuda:") else ("0" if device == "cuda" else device)


def train_detector(
    data_yaml: Path,
    ft: FinetuneConfig,
    device: str,
    run_dir: Path,
    progress: Callable[[int, int, dict[str, float]], None] | None = None,
) -> TrainResult:
    """Train Ultralytics YOLO on a dataset (single process, no dataloader workers, no plots: offline-safe).

    Args:
        data_yaml: From `build_dataset`.
        ft: Epochs, image size, batch, patience, seed and the base model.
        device: ``cpu``, ``cuda`` or ``cuda:N``.
        run_dir: Ultralytics' working folder for this training (replaced).
        progress: Called after each epoch with (epoch, epochs, validation metrics).
    """
    t0 = time.perf_counter()
    base, pretrained = base_model(ft.base_model)
    model = weights.load_yolo(base)
    model.add_callback("on_train_batch_end", lambda _trainer: stopping.check())
    if progress is not None:

        def on_epoch_end(trainer: Any) -> None:
            metrics = {k: float(v) for k, v in (trainer.metrics or {}).items()}
            progress(int(trainer.epoch) + 1, int(trainer.epochs), metrics)

        model.add_callback("on_fit_epoch_end", on_epoch_end)
    shutil.rmtree(run_dir, ignore_errors=True)
    with torch_threads_kept():
        model.train(
            data=str(data_yaml),
            epochs=ft.epochs,
            patience=ft.patience,
            imgsz=ft.image_size,
            batch=ft.batch,
            device=_device_arg(device),
            workers=0,
            seed=ft.seed,
            deterministic=True,
            plots=False,
            project=str(run_dir.parent),
            name=run_dir.name,
            exist_ok=True,
            verbose=False,
        )
    trainer = model.trainer
    assert trainer is not None
    best = Path(trainer.best)
    if not best.is_file():
        best = Path(trainer.last)
    metrics = {k: round(float(v), 5) for k, v in (trainer.metrics or {}).items()}
    return TrainResult(
        weights=best,
        metrics=metrics,
        epochs_run=int(trainer.epoch) + 1,
        best_epoch=int(getattr(trainer, "best_epoch", trainer.epoch)) + 1,
        base=base,
        pretrained=pretrained,
        seconds=time.perf_counter() - t0,
    )


def folder(job: VideoJob, cfg: PipelineConfig) -> str:
    """``OUT/<video_id>/finetune/<digest>``: labels, weights and metrics of this video's fine-tune."""
    return storage.join(job.out_dir, "finetune", digest(job.video_id, cfg, job.sam2.sha256))


def labelled_range(job: VideoJob, cfg: PipelineConfig) -> Subsequence:
    """The first frames whose tracked masks become training labels."""
    return Subsequence(index=0, start=0, stop=min(cfg.finetune.frames, job.num_frames))


def _frames_dir(job: VideoJob) -> Path:
    return Path(job.work_dir) / "finetune" / "frames"


def existing(job: VideoJob, cfg: PipelineConfig) -> FinetuneRecord | None:
    """The record of a complete fine-tune with the same inputs, if one exists."""
    return load_record(folder(job, cfg))


def label(job: VideoJob, cfg: PipelineConfig) -> LabelResult:
    """Extract the first frames and track the manual prompts through them with SAM2 (on a worker): labels.parquet.

    A complete labels file from an earlier attempt is reused (only the JPEGs are extracted again).
    """
    from sam2flow.stages.segment.driver import SegmentSettings, segment_subsequence

    t0 = time.perf_counter()
    sub = labelled_range(job, cfg)
    uri = storage.join(folder(job, cfg), LABELS)
    extract_subsequence(job.local_video, job.info, sub, _frames_dir(job), cfg.video.jpeg_quality)
    if storage.exists(uri):
        log.info("finetune: reusing labels %s", uri)
        return LabelResult(uri, sub.length, reused=True, seconds=time.perf_counter() - t0)
    step = max(1, sub.length // 5)
    settings = SegmentSettings.from_config(cfg)

    def progress(done: int, total: int) -> None:
        if done % step == 0 or done == total:
            log.info("finetune: tracking the prompts, frame %d/%d", done, total)

    def run(slot: WorkerSlot) -> SegmentStats:
        segmenter = segmenter_on(slot, job.sam2, cfg.segmenter)
        return segment_subsequence(segmenter, None, _frames_dir(job), sub, settings, uri, None, progress)

    with pool_for(cfg.runtime).acquire() as slot:
        stats = slot.run(run, slot)
    log.info("finetune: %d object(s) with masks on %d/%d frames", stats.objects, stats.frames_with_masks, sub.length)
    return LabelResult(uri, sub.length, False, time.perf_counter() - t0, stats.objects, stats.frames_with_masks)


def train(job: VideoJob, cfg: PipelineConfig, labelled: LabelResult) -> FinetuneRecord:
    """Build the dataset, train YOLO on a worker, save weights and metrics (metrics.json last). Returns the record."""
    ft = cfg.finetune
    sub = labelled_range(job, cfg)
    names = class_names(cfg)
    work = Path(job.work_dir) / "finetune"
    ds = build_dataset(labelled.labels, _frames_dir(job), sub, names, ft, work / "dataset")
    log.info(
        "finetune: %d training and %d validation image(s), %s; training %s for up to %d epoch(s) at %d px",
        len(ds.train), len(ds.val), ds.instances, ft.base_model, ft.epochs, ft.image_size,
    )  # fmt: skip

    def progress(epoch: int, epochs: int, metrics: dict[str, float]) -> None:
        log.info(
            "finetune: epoch %d/%d: val mAP50 %.3f, recall %.3f",
            epoch, epochs, metrics.get("metrics/mAP50(B)", 0.0), metrics.get("metrics/recall(B)", 0.0),
        )  # fmt: skip

    with pool_for(cfg.runtime).acquire() as slot:
        result = slot.run(train_detector, ds.yaml, ft, slot.device, work / "run", progress)
    out = folder(job, cfg)
    trained = storage.join(out, WEIGHTS)
    weights_sha256 = storage.sha256_file(result.weights)
    storage.upload(result.weights, trained)
    results_csv = result.weights.parent.parent / "results.csv"
    if results_csv.is_file():
        storage.upload(results_csv, storage.join(out, "results.csv"))
    record = FinetuneRecord(
        folder=out,
        weights=trained,
        weights_sha256=weights_sha256,
        labels=labelled.labels,
        classes=names,
        labelled_frames=sub.length,
        train_frames=[sub.to_global(f) for f in ds.train],
        val_frames=[sub.to_global(f) for f in ds.val],
        instances=ds.instances,
        split={"block_frames": ft.block_frames, "val_fraction": ft.val_fraction, "gap_frames": ft.gap_frames},
        base=result.base,
        pretrained=result.pretrained,
        epochs_run=result.epochs_run,
        best_epoch=result.best_epoch,
        metrics=result.metrics,
        device=slot.device,
        label_seconds=round(labelled.seconds, 3),
        train_seconds=round(result.seconds, 3),
    )
    storage.write_bytes(storage.join(out, METRICS), json.dumps(to_json(record), indent=2).encode())
    if not cfg.output.keep_frames:
        shutil.rmtree(work, ignore_errors=True)
    log.info("finetune: done in %.1fs, val metrics %s → %s", result.seconds, result.metrics, trained)
    return record


def finetuned_job(job: VideoJob, record: FinetuneRecord) -> VideoJob:
    """The job with its detector replaced by the fine-tuned weights, and a part-file digest that includes them."""
    yolo = weights.resolve(record.weights, "yolo", expected_sha256=record.weights_sha256)
    combined = hashlib.sha256(f"{job.config_digest}:{yolo.sha256}".encode()).hexdigest()[:16]
    return replace(job, yolo=yolo, config_digest=combined)
