"""SAM2 video predictor adapter. SAM2's untyped ``inference_state`` never leaves this module."""

from __future__ import annotations

import contextlib
import functools
import logging
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import cv2
import numpy as np
import torch

from sam2flow.core.types import FrameMasks, LocalObjId, ObjectPrompt, ReferencePrompt
from sam2flow.io.checkpoints import ResolvedCheckpoint
from sam2flow.models import precision as precisions
from sam2flow.models.frames import install as install_frame_loader
from sam2flow.models.speedups import Bf16CpuAttention, cache_position_embedding, project_values_late

log = logging.getLogger(__name__)
T = TypeVar("T")


def image_size_overrides(image_size: int) -> list[str]:
    """Hydra overrides that rebuild a SAM2 model for another input size (features are image_size / 16)."""
    feat = image_size // 16
    return [
        f"++model.image_size={image_size}",
        f"++model.memory_attention.layer.self_attention.feat_sizes=[{feat},{feat}]",
        f"++model.memory_attention.layer.cross_attention.feat_sizes=[{feat},{feat}]",
    ]


def _build_sam2(
    checkpoint: ResolvedCheckpoint, device: str, image_size: int | None, compile_model: bool, max_cond: int | None
) -> Any:
    from sam2.build_sam import build_sam2_video_predictor

    overrides = image_size_overrides(image_size) if image_size else []
    if max_cond is not None:  # conditioning frames (references, prompted frames) attended per frame
        overrides.append(f"++model.max_cond_frames_in_attn={int(max_cond)}")
    assert checkpoint.config is not None
    return build_sam2_video_predictor(
        checkpoint.config,
        ckpt_path=str(checkpoint.path),
        device=device,
        hydra_overrides_extra=overrides,
        vos_optimized=compile_model,
    )


def _build_sam3(
    checkpoint: ResolvedCheckpoint, device: str, image_size: int | None, compile_model: bool, max_cond: int | None
) -> Any:
    from sam2flow.models import sam3

    if compile_model:
        raise ValueError("segmenter.compile builds SAM2's compiled predictor; it does not apply to a SAM 3 tracker")
    predictor = sam3.build_tracker(checkpoint.path, device, image_size)
    if max_cond is not None:
        predictor.max_cond_frames_in_attn = int(max_cond)
    return predictor


class Sam2Segmenter:
    """A video predictor built once per worker and reused for every subsequence it is given: SAM2's, or SAM 3's
    tracker (`sam2flow.models.sam3`) when the checkpoint is a SAM 3 one; both with SAM2's session methods."""

    def __init__(
        self,
        checkpoint: ResolvedCheckpoint,
        device: str,
        image_size: int | None = None,
        offload_video_to_cpu: bool = False,
        compile_model: bool = False,
        max_cond_frames: int | None = None,
        precision: precisions.PrecisionSetting = "auto",
    ) -> None:
        import sam2.sam2_video_predictor as svp
        import sam2.utils.misc as sam2_misc

        if checkpoint.config is None:
            raise ValueError(
                f"checkpoint {checkpoint.spec} has no known model config: name it in checkpoints/manifest.yaml"
            )
        # SAM2 draws a tqdm bar per propagation call; sam2flow reports its own progress.
        for module in (svp, sam2_misc):
            if not isinstance(module.tqdm, functools.partial):
                module.tqdm = functools.partial(module.tqdm, disable=True)
        install_frame_loader()  # frames come from sam2flow's frame store, already scaled (see models/frames.py)
        # sam2 1.1.0 from PyPI ships no compiled _C extension: hole filling is skipped, which is harmless.
        warnings.filterwarnings("ignore", message=r"cannot import name '_C'")
        self.device = torch.device(device)
        self.family = checkpoint.family or "sam2"
        """The tracker: ``sam2``, or ``sam3`` (SAM 3's tracker, `sam2flow.models.sam3`), by the checkpoint."""
        if self.family == "sam3":
            self.predictor = _build_sam3(checkpoint, device, image_size, compile_model, max_cond_frames)
        else:
            self.predictor = _build_sam2(checkpoint, device, image_size, compile_model, max_cond_frames)
        self.image_size = int(self.predictor.image_size)
        self.precision: precisions.Precision = precisions.resolve(precision, device)
        """What SAM2 computes in here (`sam2flow.models.precision`)."""
        self._blocked_attention = (
            self.precision == "bf16" and self.device.type == "cpu" and not precisions.cpu_features().amx_bf16
        )
        cache_position_embedding(self.predictor)
        if self._blocked_attention:
            project_values_late(self.predictor)
        log.info(
            "%s computes in %s", "SAM 3" if self.family == "sam3" else "SAM2", precisions.describe(precision, device)
        )
        self.offload_video_to_cpu = offload_video_to_cpu
        p = self.predictor
        # How far back tracking reads: object pointers of the last max_obj_ptrs_in_encoder frames and mask memories
        # of the last num_maskmem strided frames. Older per-frame outputs are never read again and are released.
        self.memory_window: int | None = max(
            int(p.max_obj_ptrs_in_encoder), int(p.num_maskmem) * int(p.memory_temporal_stride_for_eval)
        )

    def inference(self) -> contextlib.ExitStack:
        """Torch's inference mode in the segmenter's precision (bf16 autocast, and on a CPU without AMX the blocked
        bf16 attention of `sam2flow.models.speedups`), as every SAM2 call here runs."""
        stack = contextlib.ExitStack()
        stack.enter_context(torch.inference_mode())
        stack.enter_context(precisions.autocast(self.precision, str(self.device)))
        if self._blocked_attention:
            stack.enter_context(Bf16CpuAttention())
        return stack

    def stepped(self, items: Iterator[T]) -> Iterator[T]:
        """``items`` (a generator that calls SAM2, e.g. `Sam2Session.propagate`), each step run inside `inference`.
        For a generator that is advanced from more than one thread (a streamed web response): inference mode,
        autocast and the attention mode belong to the thread that enters them."""
        while True:
            with self.inference():
                try:
                    item = next(items)
                except StopIteration:
                    return
            yield item

    def open_session(self, frames_dir: Path) -> Sam2Session:
        """A session its caller keeps open (and closes with `Sam2Session.close`): the studio's preview keeps one
        frame's image features this way and only re-runs the prompt decoder on each click. Call it, and the
        session's methods, inside `inference`."""
        state = self.predictor.init_state(str(frames_dir), offload_video_to_cpu=self.offload_video_to_cpu)
        return Sam2Session(self, state)

    @contextlib.contextmanager
    def session(self, frames_dir: Path) -> Iterator[Sam2Session]:
        """Track objects through the frames of ``frames_dir`` (a frame store, `sam2flow.io.frames`, or a folder of
        JPEGs), all in one inference state."""
        with self.inference():
            state = self.predictor.init_state(str(frames_dir), offload_video_to_cpu=self.offload_video_to_cpu)
            try:
                yield Sam2Session(self, state)
            finally:
                state.clear()
                del state
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()


class Sam2Session:
    """One subsequence's inference state: add prompts, propagate, read masks. Frames are local indices: reference
    frames (`add_references`) come before them in SAM2's state and are never reported."""

    _offset = 0
    """How many reference frames come before the subsequence's own frames in SAM2's state."""

    def __init__(self, segmenter: Sam2Segmenter, state: dict[str, Any]) -> None:
        self._seg = segmenter
        self._pred = segmenter.predictor
        self._state = state
        self.num_frames: int = int(state["num_frames"])
        self.height: int = int(state["video_height"])
        self.width: int = int(state["video_width"])

    def add_references(self, frames: Sequence[ReferencePrompt]) -> None:
        """Put the reference frames before the subsequence's frames and add each identity's mask on them as a
        conditioning prompt. Call once, before any other prompt."""
        if self._offset or self._state["obj_ids"]:
            raise RuntimeError("reference frames go into a fresh session, before any prompt")
        state = self._state
        state["images"] = state["images"].prepend([f.rgb for f in frames])
        state["num_frames"] = int(state["num_frames"]) + len(frames)
        state["cached_features"] = {}  # keyed by frame index, which just moved
        self._offset = len(frames)
        for i, f in enumerate(frames):
            for obj, mask in f.masks.items():
                if mask.shape != (self.height, self.width):
                    small = cv2.resize(
                        mask.astype(np.uint8), (self.width, self.height), interpolation=cv2.INTER_NEAREST
                    )
                    mask = small > 0
                self._pred.add_new_mask(state, frame_idx=i, obj_id=int(obj), mask=mask)

    def add(self, prompt: ObjectPrompt) -> FrameMasks:
        """Add one object's prompt on its frame; returns every object's mask on that frame."""
        if prompt.mask is not None:
            frame, obj_ids, logits = self._pred.add_new_mask(
                self._state, frame_idx=prompt.frame + self._offset, obj_id=int(prompt.local_id), mask=prompt.mask
            )
            return self._frame_masks(frame, obj_ids, logits)
        points = np.asarray(prompt.points, dtype=np.float32).reshape(-1, 2) if prompt.points else None
        labels = np.asarray(prompt.labels, dtype=np.int32) if prompt.points else None
        box = np.asarray(prompt.box, dtype=np.float32) if prompt.box is not None else None
        frame, obj_ids, logits = self._pred.add_new_points_or_box(
            self._state,
            frame_idx=prompt.frame + self._offset,
            obj_id=int(prompt.local_id),
            points=points,
            labels=labels,
            box=box,
        )
        return self._frame_masks(frame, obj_ids, logits)

    def reset(self) -> None:
        """Forget every object and prompt; the frames' image features stay cached."""
        self._pred.reset_state(self._state)

    def close(self) -> None:
        """Release the inference state (`Sam2Segmenter.open_session`)."""
        self._state.clear()

    def remove(self, obj_id: LocalObjId) -> None:
        """Forget an object (used when its first mask turns out to repeat a tracked one)."""
        self._pred.remove_object(self._state, int(obj_id), strict=True, need_output=False)

    def propagate(self, start: int, stop: int, reverse: bool = False) -> Iterator[FrameMasks]:
        """Track every object over local frames ``[start, stop]`` (inclusive), one frame at a time: forward from
        ``start``, or with ``reverse`` backward from ``stop``."""
        if stop < start or not self._state["obj_ids"]:
            return
        first = (stop if reverse else start) + self._offset
        window = self._seg.memory_window
        for frame, obj_ids, logits in self._pred.propagate_in_video(
            self._state, start_frame_idx=first, max_frame_num_to_track=stop - start, reverse=reverse
        ):
            yield self._frame_masks(frame, obj_ids, logits)
            if window:
                self._release(frame, window, reverse)

    def _release(self, frame: int, window: int, reverse: bool) -> None:
        """Drop per-frame tracking outputs more than ``window`` frames behind ``frame`` in the direction of
        tracking (prompted frames are kept: they stay in memory)."""
        for per_obj in self._state["output_dict_per_obj"].values():
            old = per_obj["non_cond_frame_outputs"]
            for f in [f for f in old if (f > frame + window if reverse else f < frame - window)]:
                del old[f]

    def _object_score(self, obj_idx: int, frame: int) -> float:
        for store in (self._state["temp_output_dict_per_obj"], self._state["output_dict_per_obj"]):
            per_obj = store.get(obj_idx, {})
            for key in ("cond_frame_outputs", "non_cond_frame_outputs"):
                out = per_obj.get(key, {}).get(frame)
                if out is not None and out.get("object_score_logits") is not None:
                    return float(torch.sigmoid(out["object_score_logits"].float()).max())
        return 1.0

    def _frame_masks(self, frame: int, obj_ids: list[int], logits: torch.Tensor) -> FrameMasks:
        masks = (logits[:, 0] > 0.0).cpu().numpy()
        present = masks.reshape(len(obj_ids), -1).any(axis=1)
        keep = np.flatnonzero(present)
        scores = np.array([self._object_score(int(i), frame) for i in keep], dtype=np.float32)
        return FrameMasks(
            frame=int(frame) - self._offset,
            obj_ids=tuple(LocalObjId(int(obj_ids[i])) for i in keep),
            masks=masks[keep],
            scores=scores,
        )
