"""manifest.json and ``_SUCCESS``: what a run records about itself, and a finished run read back."""

from __future__ import annotations

import json
import platform
import subprocess
import tempfile
import time
from dataclasses import asdict
from importlib import metadata
from pathlib import Path
from typing import Any

from sam2flow.config import ManualPrompt, PipelineConfig
from sam2flow.core.types import Subsequence
from sam2flow.io import storage
from sam2flow.io.checkpoints import ResolvedCheckpoint
from sam2flow.io.video import VideoProbe
from sam2flow.job import EVENTS, OUTPUT_FILES, REPORT_PAGE, SUCCESS, VideoJob

MANIFEST = "manifest.json"


def versions() -> dict[str, str]:
    """Versions of Python, the main packages and ffmpeg."""
    out = {"python": platform.python_version()}
    for pkg in ("sam2flow", "sam2", "torch", "ultralytics", "prefect", "pyarrow", "pycocotools"):
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


def _checkpoint_record(c: ResolvedCheckpoint | None) -> dict[str, Any] | None:
    if c is None:
        return None
    return {
        "spec": c.spec,
        "path": str(c.path),
        "sha256": c.sha256,
        "verified": c.verified,
        "random_weights": c.random_weights,
    }


def _checkpoint_from_record(rec: dict[str, Any] | None) -> ResolvedCheckpoint | None:
    if rec is None:
        return None
    return ResolvedCheckpoint(
        rec["spec"], Path(rec["path"]), None, bool(rec["random_weights"]), rec["sha256"], bool(rec["verified"])
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


def write_manifest(job: VideoJob, cfg: PipelineConfig, stages: dict[str, Any]) -> dict[str, Any]:
    """Write manifest.json (input, probe, plan, config, checkpoints, versions, the stages' records) and return it."""
    manifest: dict[str, Any] = {
        "video_id": job.video_id,
        "input": job.video,
        "local_input": job.local_video,
        "probe": job.info.to_dict(),
        "frames_processed": job.num_frames,
        "subsequences": [asdict(s) for s in job.plan],
        "config": cfg.model_dump(mode="json"),
        "config_digest": job.config_digest,
        "span_keys": list(job.span_keys),
        "correction_prompts": [p.model_dump(mode="json") for p in job.extra_prompts],
        "checkpoints": {"sam2": _checkpoint_record(job.sam2), "yolo": _checkpoint_record(job.yolo)},
        "random_weights": job.random_weights,
        "finetune": stages.get("finetune"),
        "versions": versions(),
        "stages": stages,
        "wall_seconds": time.time() - job.started,
        "outputs": expected_outputs(job, cfg),
    }
    storage.write_bytes(job.output(MANIFEST), json.dumps(manifest, indent=2, default=str).encode())
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


def read_manifest(run_dir: str) -> dict[str, Any]:
    """The manifest.json of a run's output folder.

    Raises:
        FileNotFoundError: When the folder has no manifest.
    """
    uri = storage.join(run_dir, MANIFEST)
    if not storage.exists(uri):
        raise FileNotFoundError(f"{uri} does not exist: give the output folder of a finished run (OUT/<video_id>)")
    manifest: dict[str, Any] = json.loads(storage.read_bytes(uri))
    return manifest


def load_job(out_dir: str) -> tuple[VideoJob, PipelineConfig, dict[str, Any]]:
    """Rebuild a run's job, config and manifest from ``OUT/<video_id>/manifest.json`` (no model is loaded).

    Raises:
        FileNotFoundError: When the folder has no manifest or a part file is missing.
    """
    m = read_manifest(out_dir)
    cfg = PipelineConfig.model_validate(m["config"])
    sam2 = _checkpoint_from_record(m["checkpoints"]["sam2"])
    if sam2 is None:
        raise FileNotFoundError(f"{out_dir}/{MANIFEST} names no SAM2 checkpoint: it is not a sam2flow manifest")
    job = VideoJob(
        video=m["input"],
        local_video=m.get("local_input", m["input"]),
        video_id=m["video_id"],
        out_dir=out_dir.rstrip("/"),
        work_dir=tempfile.mkdtemp(prefix="sam2flow-restitch-"),
        info=VideoProbe(**m["probe"]),
        num_frames=int(m["frames_processed"]),
        plan=tuple(Subsequence(**s) for s in m["subsequences"]),
        config_digest=m["config_digest"],
        span_keys=tuple(m.get("span_keys") or ()),  # runs before per-subsequence keys have none
        extra_prompts=tuple(ManualPrompt.model_validate(p) for p in m.get("correction_prompts") or ()),
        sam2=sam2,
        yolo=_checkpoint_from_record(m["checkpoints"]["yolo"]),
    )
    missing = [job.part_uri(i) for i in range(len(job.plan)) if not job.part_done(i)]
    if missing:
        raise FileNotFoundError(f"{len(missing)} part file(s) missing, e.g. {missing[0]}: run `sam2flow run` again")
    return job, cfg, m
