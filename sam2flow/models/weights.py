"""Which weights a model loads: any checkpoint spec resolved to a verified local file (see `sam2flow.io.checkpoints`),
``random:<name>`` checkpoints generated from the real model configs, and every file checked before it is unpickled.

A PyTorch checkpoint is a pickle, and unpickling runs whatever code it names. SAM2's loader already reads weights
only (``torch.load(weights_only=True)``); Ultralytics' does not unless asked (its SAM 3 loader never does). So every
checkpoint is first scanned: its pickle may name only model classes of torch and Ultralytics (the SAM2 and SAM 3 ones
none at all), else it is refused unread. Then Ultralytics loads YOLO files in its safe mode (``weights_only=True``
against its allow-list).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from sam2flow.io.checkpoints import CheckpointError, Kind, ResolvedCheckpoint
from sam2flow.io.checkpoints import resolve as resolve_file
from sam2flow.models.random_weights import write_random_checkpoint

if TYPE_CHECKING:
    from ultralytics import YOLO

MODEL_MODULES = ("torch.nn.modules.", "ultralytics.nn.modules.", "ultralytics.nn.tasks.")
"""Where the classes a YOLO checkpoint may name live (its pickled model)."""


def unsafe_names(path: Path, kind: Kind) -> list[str]:
    """The globals a checkpoint's pickle would import that are not plain data or (for YOLO) model classes.

    Raises:
        CheckpointError: When the file is not a PyTorch checkpoint archive (corrupt, truncated, or another format).
    """
    import torch

    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    except (ValueError, RuntimeError, OSError, EOFError) as exc:
        raise CheckpointError(
            f"checkpoint {path} is not a readable PyTorch checkpoint ({type(exc).__name__}: {exc}); it may be "
            "truncated or corrupt: download or copy it again"
        ) from exc
    if kind != "yolo":  # SAM2 and SAM 3 files are plain state dicts: nothing to import at all
        return list(names)
    return [n for n in names if not n.startswith(MODEL_MODULES)]


def check_safe(ckpt: ResolvedCheckpoint, kind: Kind) -> None:
    """Refuse a checkpoint whose pickle names code other than model classes (loading it would run that code).

    Raises:
        CheckpointError: Naming the file, what it would import, and what to use instead.
    """
    bad = unsafe_names(ckpt.path, kind)
    if bad:
        shown = ", ".join(sorted(bad)[:5])
        raise CheckpointError(
            f"checkpoint {ckpt.spec} ({ckpt.path}) is refused: loading it would import {shown}, which is not part of "
            "a model, and could run code. Use a checkpoint from `sam2flow checkpoints fetch`, one sam2flow trained, "
            "or re-save the weights of a trusted model."
        )


def resolve(spec: str, kind: Kind, expected_sha256: str | None = None) -> ResolvedCheckpoint:
    """A manifest name, ``random:<name>``, a local path or an fsspec URI as a local, verified checkpoint file that
    is safe to load (see `check_safe`).

    Args:
        spec: The checkpoint spec.
        kind: ``"sam2"`` (the segmenter's: SAM2 or SAM 3), ``"sam3"`` (SAM 3 only) or ``"yolo"``.
        expected_sha256: For a file sam2flow wrote itself (a fine-tuned detector), the sha256 recorded then.

    Raises:
        CheckpointError: Unknown name, path not allowed, missing file, failed download, hash mismatch, or a file
            that is not a checkpoint or would run code.
    """
    ckpt = resolve_file(spec, kind, make_random=write_random_checkpoint, expected_sha256=expected_sha256)
    if kind == "sam2" and ckpt.config is None:
        raise CheckpointError(
            f"segmenter.checkpoint {spec}: a SAM2 checkpoint named by path has no known model config; add it to "
            "checkpoints/manifest.yaml (name, config, url, sha256) and name it there"
        )
    check_safe(ckpt, kind)
    return ckpt


def load_yolo(path: Path | str, task: str = "detect") -> YOLO:
    """An Ultralytics model from a YAML config, or from a checkpoint in Ultralytics' safe mode (weights only)."""
    import ultralytics.nn.tasks as yolo_tasks
    import ultralytics.utils as yolo_utils
    from ultralytics import YOLO

    # Ultralytics reads ULTRALYTICS_SAFE_LOAD once, at import; sam2flow always wants it on.
    yolo_utils.SAFE_LOAD = True
    yolo_tasks.SAFE_LOAD = True
    model: Any = YOLO(str(path), task=task)
    return model
