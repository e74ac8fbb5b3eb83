"""The SAM 3 tracker, as a video predictor with the same session interface as SAM2's.

The model is Ultralytics' port of SAM 3 (``ultralytics.models.sam``): built by its own builder
(``build_interactive_sam3``), its weights read by its own loader from a SAM 3 or SAM 3.1 checkpoint in Meta's
published key layout. SAM 3's tracker has SAM2's architecture (prompt encoder, mask decoder, memory attention,
memory encoder) on a ViT backbone at 1008 px with a stride of 14, and Ultralytics' ``SAM3Model`` keeps SAM2's model
interface (``forward_image``, ``track_step``, ``_encode_new_memory`` …).

Ultralytics' own video predictor adds objects only before tracking starts and tracks them as one batch. sam2flow's
pipeline adds objects at any keyframe, removes and re-prompts them, tracks backward, and starts subsequences with
reference frames, which is what SAM2's official video predictor (the ``sam2`` package) does with per-object
memories. `tracker_class` therefore gives the SAM 3 model the session methods of that predictor: the network and its
weights are SAM 3's, unchanged; the bookkeeping around them is the one sam2flow already runs for SAM2. A test checks
that for prompts on the first frame the masks equal those of Ultralytics' ``SAM3VideoPredictor``.

SAM 3.1's object multiplex (several objects through one tracker pass) is not in Ultralytics' port: its loader maps
a SAM 3.1 checkpoint's single-object interactive head onto SAM 3's names, so SAM 3.1 weights run here with one
memory per object, like SAM 3.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import torch

from sam2flow.models.frames import LOADER_NORM

IMAGE_SIZE = 1008
"""SAM 3's native input size (72×72 features at a stride of 14)."""
STRIDE = 14
MEAN = (0.5, 0.5, 0.5)
STD = (0.5, 0.5, 0.5)
"""SAM 3 normalises pixels to [-1, 1] (SAM2 uses ImageNet's mean and std)."""
SESSION_STATE = {
    "fill_hole_area": 0,
    "non_overlap_masks": False,
    "clear_non_cond_mem_around_input": False,
    "add_all_frames_to_correct_as_cond": False,
}
"""The settings SAM2's video predictor keeps beside its model, as sam2flow runs SAM2 (its defaults)."""


@functools.cache
def tracker_class() -> type:
    """Ultralytics' ``SAM3Model`` with the session methods of ``sam2``'s ``SAM2VideoPredictor`` (see the module doc).
    The model's own methods stay Ultralytics'; only the predictor's bookkeeping comes from ``sam2``."""
    from sam2.sam2_video_predictor import SAM2VideoPredictor
    from ultralytics.models.sam.modules.sam import SAM3Model

    session = {k: v for k, v in vars(SAM2VideoPredictor).items() if not k.startswith("__") and k != "from_pretrained"}
    init_state = session["init_state"]

    def init_state_sam3(self: Any, video_path: str, **kwargs: Any) -> dict[str, Any]:
        token = LOADER_NORM.set((MEAN, STD))  # sam2flow's frame loader (models/frames.py) normalises as SAM 3 does
        try:
            state: dict[str, Any] = init_state(self, video_path, **kwargs)
        finally:
            LOADER_NORM.reset(token)
        return state

    session["init_state"] = init_state_sam3
    session["__doc__"] = "SAM 3's tracker model with SAM2's video-predictor session methods (`sam2flow.models.sam3`)."
    return type("Sam3VideoTracker", (SAM3Model,), session)


class KeyRecorder:
    """Stands in for the model in Ultralytics' checkpoint loader to learn which parameters a file provides."""

    def __init__(self) -> None:
        self.keys: set[str] = set()

    def load_state_dict(self, state: dict[str, Any], strict: bool = True) -> None:
        self.keys = set(state)


def missing_weights(model: torch.nn.Module, path: Path) -> list[str]:
    """The model's parameters and buffers that ``path`` does not provide, read through Ultralytics' own key mapping
    (its loader ignores missing keys, so a wrong file would otherwise leave a randomly initialised tracker)."""
    from ultralytics.models.sam.build_sam3 import _load_checkpoint

    recorder = KeyRecorder()
    _load_checkpoint(recorder, str(path), interactive=True)
    return sorted(k for k in model.state_dict() if k not in recorder.keys)


def build_tracker(path: Path, device: str, image_size: int | None = None) -> Any:
    """SAM 3's tracker from a checkpoint file that `sam2flow.models.weights.check_safe` has passed, on ``device``,
    for ``image_size`` (a multiple of 14; SAM 3's 1008 when None), with SAM2's video-predictor session methods.

    Raises:
        ValueError: When the file lacks tracker weights (not a SAM 3 / SAM 3.1 checkpoint).
    """
    from ultralytics.models.sam.build_sam3 import build_interactive_sam3

    model = build_interactive_sam3(str(path))
    missing = missing_weights(model, path)
    if missing:
        raise ValueError(
            f"{path} is not a SAM 3 or SAM 3.1 checkpoint: it lacks {len(missing)} of the tracker's weights "
            f"(e.g. {', '.join(missing[:3])})"
        )
    model.__class__ = tracker_class()
    for name, value in SESSION_STATE.items():
        setattr(model, name, value)
    size = int(image_size or IMAGE_SIZE)
    if size != IMAGE_SIZE:
        model.set_imgsz([size, size])
    model.set_binarize(True)  # as Ultralytics runs SAM 3 on videos: masks from clicks enter memory binarised
    return model.to(device).eval()


def official_layout(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A tracker's state dict under the names of Meta's SAM 3 checkpoints (what Ultralytics' loader maps back):
    the vision backbone under the detector's, the rest under the tracker's."""
    out: dict[str, torch.Tensor] = {}
    renames = (
        ("image_encoder.vision_backbone.", "detector.backbone.vision_backbone."),
        ("memory_attention.", "tracker.transformer.encoder."),
        ("memory_encoder.", "tracker.maskmem_backbone."),
    )
    for key, value in state.items():
        for old, new in renames:
            if key.startswith(old):
                out[new + key[len(old) :]] = value
                break
        else:
            out["tracker." + key] = value
    return out


def write_random(tmp: Path, marker: str) -> None:
    """A randomly initialised SAM 3 (the concept detector and the tracker, sharing one vision backbone as in Meta's
    files), built by Ultralytics' builders and saved in Meta's key layout."""
    from ultralytics.models.sam.build_sam3 import build_interactive_sam3, build_sam3_image_model

    empty = tmp.with_name(tmp.name + ".empty")
    torch.save({"model": {}}, empty)
    try:  # nothing to load: the builders' random initialisation
        detector = build_sam3_image_model(str(empty))
        tracker = build_interactive_sam3(str(empty))
    finally:
        empty.unlink(missing_ok=True)
    with torch.no_grad():  # parameters the builder leaves uninitialised (the text encoder's position embedding)
        for param in detector.parameters():
            if not torch.isfinite(param).all():
                torch.nn.init.normal_(param, std=0.01)  # as CLIP initialises its position embedding
    state = {f"detector.{k}": v for k, v in detector.state_dict().items()}
    state.update(official_layout(tracker.state_dict()))  # the shared vision backbone: the tracker's draw
    torch.save({"model": state, marker: True}, tmp)
