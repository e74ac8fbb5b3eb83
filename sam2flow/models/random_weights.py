"""Randomly initialised checkpoints built from the real model configs, saved as real checkpoint files.

They load through exactly the same code as the official weights (``sam2.build_sam`` and ``ultralytics.YOLO``), so
tests and benchmarks exercise the real path offline. Their masks and boxes are meaningless; speed and memory are not.
"""

from __future__ import annotations

import logging
import uuid
from pathlib import Path

log = logging.getLogger(__name__)

RANDOM_MARKER = "sam2flow_random_weights"
SEED = 0


def _coco_names() -> dict[int, str]:
    import yaml
    from ultralytics.cfg import DEFAULT_CFG_PATH

    coco = yaml.safe_load((DEFAULT_CFG_PATH.parent / "datasets" / "coco.yaml").read_text())
    return {int(k): str(v) for k, v in coco["names"].items()}


def _write_sam2(config: str, tmp: Path) -> None:
    import torch
    from sam2.build_sam import build_sam2

    model = build_sam2(config, ckpt_path=None, device="cpu", mode="eval", apply_postprocessing=False)
    torch.save({"model": model.state_dict(), RANDOM_MARKER: True}, tmp)


def _write_yolo(config: str, tmp: Path) -> None:
    from ultralytics import YOLO

    model = YOLO(config)
    model.model.names = _coco_names()
    model.model.args = {"imgsz": 640}
    model.ckpt = {RANDOM_MARKER: True}
    model.save(str(tmp))


def _write_sam3(config: str, tmp: Path) -> None:
    from sam2flow.models.sam3 import write_random

    write_random(tmp, RANDOM_MARKER)


_WRITERS = {"sam2": _write_sam2, "sam3": _write_sam3, "yolo": _write_yolo}


def write_random_checkpoint(name: str, kind: str, config: str, path: Path) -> Path:
    """Build ``config`` with seeded random weights and save it to ``path`` (atomically).

    Args:
        name: Manifest name, for logs.
        kind: ``"sam2"``, ``"sam3"`` or ``"yolo"``.
        config: SAM2 Hydra config name or Ultralytics model YAML.
        path: Destination file.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    import torch

    log.warning("writing a RANDOMLY INITIALISED %s checkpoint %s (%s) to %s", kind, name, config, path)
    torch.manual_seed(SEED)
    try:
        _WRITERS[kind](config, tmp)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
