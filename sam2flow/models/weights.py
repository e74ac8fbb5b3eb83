"""Which weights a model loads: any checkpoint spec resolved to a verified local file (see `sam2flow.io.checkpoints`),
with ``random:<name>`` checkpoints generated from the real model configs here, in the models layer."""

from __future__ import annotations

from sam2flow.io.checkpoints import Kind, ResolvedCheckpoint
from sam2flow.io.checkpoints import resolve as resolve_file
from sam2flow.models.random_weights import write_random_checkpoint


def resolve(spec: str, kind: Kind) -> ResolvedCheckpoint:
    """A manifest name, ``random:<name>``, a local path or an fsspec URI as a local, verified checkpoint file.

    Raises:
        CheckpointError: Unknown name, missing file, failed download or hash mismatch.
    """
    return resolve_file(spec, kind, make_random=write_random_checkpoint)
