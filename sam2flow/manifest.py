"""manifest.json and ``_SUCCESS``: what a run records about itself (`RunManifest`), written by `write_manifest`, read
back by `read_manifest`; nothing else reads or writes the file."""

from __future__ import annotations

import json
import logging
import platform
import subprocess
import time
from dataclasses import fields, replace
from importlib import metadata
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from sam2flow.config import PipelineConfig
from sam2flow.errors import InputError
from sam2flow.io import storage
from sam2flow.io.checkpoints import ResolvedCheckpoint
from sam2flow.job import EVENTS, OUTPUT_FILES, REPORT_PAGE, SUCCESS, VideoJob
from sam2flow.results import CheckpointRecord, RunCheckpoints, RunManifest, RunStages, from_json, to_json

MANIFEST = "manifest.json"

log = logging.getLogger(__name__)


class ManifestError(InputError):
    """A folder has no manifest.json, or one this version cannot read; the message says which and what to do."""


def versions() -> dict[str, str]:
    """Versions of Python, the main packages and ffmpeg."""
    out = {"python": platform.python_version()}
    for pkg in ("sam2flow", "sam2", "torch", "ultralytics", "timm", "prefect", "pyarrow", "pycocotools"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    try:
        first = subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True).stdout.splitlines()
        out["ffmpeg"] = first[0] if first else "unknown"
    except OSError:
        out["ffmpeg"] = "not found"
    return out


def _checkpoint_record(c: ResolvedCheckpoint | None) -> CheckpointRecord | None:
    if c is None:
        return None
    return CheckpointRecord(c.spec, str(c.path), c.sha256, c.verified, c.random_weights, c.family)


def resolved_checkpoint(rec: CheckpointRecord | None) -> ResolvedCheckpoint | None:
    """A recorded checkpoint as the stages take it (nothing is loaded or verified here)."""
    if rec is None:
        return None
    family = rec.family if rec.family in ("sam2", "sam3", "yolo") else None
    return ResolvedCheckpoint(
        rec.spec,
        Path(rec.path),
        None,
        rec.random_weights,
        rec.sha256,
        rec.verified,
        family,  # type: ignore[arg-type]
    )


def expected_outputs(job: VideoJob, cfg: PipelineConfig) -> dict[str, str]:
    """The output files a complete run of this config has, by name."""
    names = [*OUTPUT_FILES, EVENTS, REPORT_PAGE]
    return {
        n: job.output(n)
        for n in names
        if (n != "annotated.mp4" or cfg.render.enabled)
        and (n != EVENTS or cfg.zones.regions)
        and (n != REPORT_PAGE or cfg.report.enabled)
    }


def write_manifest(job: VideoJob, cfg: PipelineConfig, stages: RunStages) -> RunManifest:
    """Write manifest.json (input, probe, plan, config, checkpoints, versions, the stages' records) and return it."""
    manifest = RunManifest(
        video_id=job.video_id,
        input=job.video,
        local_input=job.local_video,
        probe=job.info,
        frames_processed=job.num_frames,
        subsequences=list(job.plan),
        config=cfg,
        config_digest=job.config_digest,
        span_keys=list(job.span_keys),
        correction_prompts=list(job.extra_prompts),
        checkpoints=RunCheckpoints(_checkpoint_record(job.sam2), _checkpoint_record(job.yolo)),
        random_weights=job.random_weights,
        finetune=stages.finetune,
        versions=versions(),
        stages=stages,
        wall_seconds=time.time() - job.started,
        outputs=expected_outputs(job, cfg),
    )
    storage.write_bytes(job.output(MANIFEST), json.dumps(to_json(manifest), indent=2).encode())
    return manifest


def mark_complete(job: VideoJob, outputs: dict[str, str]) -> None:
    """Write ``_SUCCESS`` once every output exists.

    Raises:
        RuntimeError: When an output is missing (the run is then not marked complete).
    """
    missing = [n for n, uri in outputs.items() if not storage.exists(uri)]
    if missing:
        raise RuntimeError(f"{job.video_id}: outputs missing, not marking complete: {missing}")
    storage.write_bytes(job.output(SUCCESS), b"")


def read_manifest(run_dir: str) -> RunManifest:
    """The manifest of a run's output folder, validated. A stage record this version cannot read (from an earlier
    version) is left out with a warning; the rest of the manifest must be readable.

    Raises:
        ManifestError: When the folder has no manifest, or the manifest is not one this version reads.
    """
    uri = storage.join(run_dir, MANIFEST)
    if not storage.exists(uri):
        raise ManifestError(f"{uri} does not exist: give the output folder of a finished run (OUT/<video_id>)")
    try:
        data = json.loads(storage.read_bytes(uri))
    except ValueError as exc:
        raise ManifestError(f"{uri} is not valid JSON ({exc}): run the video again to rewrite it") from exc
    if not isinstance(data, dict):
        raise ManifestError(f"{uri} is not a sam2flow manifest (it holds no mapping)")
    stages = _stages(data.pop("stages", None), uri)
    data.pop("finetune", None)  # the same record as stages.finetune
    try:
        manifest = from_json(RunManifest, data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ManifestError(f"{uri} is not a sam2flow manifest this version reads ({where}: {first['msg']})") from exc
    return replace(manifest, stages=stages, finetune=stages.finetune)


def _stages(data: Any, uri: str) -> RunStages:
    """The stage records, each one that does not validate left out (earlier versions recorded other fields)."""
    if not isinstance(data, dict):
        return RunStages()
    kept: dict[str, Any] = {}
    for f in fields(RunStages):
        if data.get(f.name) is None:
            continue
        try:
            kept[f.name] = getattr(from_json(RunStages, {f.name: data[f.name]}), f.name)
        except ValidationError:
            log.warning("%s: its %s record is from another version and is left out", uri, f.name)
    return RunStages(**kept)


def load_job(out_dir: str, work_dir: str) -> tuple[VideoJob, RunManifest]:
    """Rebuild a run's job and manifest from ``OUT/<video_id>/manifest.json`` (no model is loaded); its work folder
    is ``work_dir``.

    Raises:
        ManifestError: When the folder has no readable manifest, or it names no SAM2 checkpoint.
        FileNotFoundError: When a part file is missing.
    """
    m = read_manifest(out_dir)
    sam2 = resolved_checkpoint(m.checkpoints.sam2)
    if sam2 is None:
        raise ManifestError(f"{out_dir}/{MANIFEST} names no SAM2 checkpoint: it is not a sam2flow manifest")
    job = VideoJob(
        video=m.input,
        local_video=m.local_input or m.input,
        video_id=m.video_id,
        out_dir=out_dir.rstrip("/"),
        work_dir=work_dir,
        info=m.probe,
        num_frames=m.frames_processed,
        plan=tuple(m.subsequences),
        config_digest=m.config_digest,
        span_keys=tuple(m.span_keys),  # runs before per-subsequence keys have none
        extra_prompts=tuple(m.correction_prompts),
        sam2=sam2,
        yolo=resolved_checkpoint(m.checkpoints.yolo),
    )
    missing = [job.part_uri(i) for i in range(len(job.plan)) if not job.part_done(i)]
    if missing:
        raise FileNotFoundError(f"{len(missing)} part file(s) missing, e.g. {missing[0]}: run `sam2flow run` again")
    return job, m
