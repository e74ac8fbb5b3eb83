"""The pipeline configuration: one validated Pydantic model, loaded from YAML plus ``section.key=value`` overrides."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from sam2flow.errors import InputError

if TYPE_CHECKING:
    from sam2flow.core.stitching import MatchRule


class ConfigError(InputError, ValueError):
    """A configuration file or override is invalid; the message names the key and what to do."""


_CKPT_HELP = "A name from checkpoints/manifest.yaml, 'random:<name>' for random weights, or a path/URI to a .pt file."


@dataclass(frozen=True)
class Masks:
    """Marks a setting that changes the masks: it goes into the digest that names part files (`PipelineConfig.digest`),
    so changing it re-segments, and changing an unmarked setting does not.

    Attributes:
        when: Only while this other setting is on (a dotted path to a bool, e.g. ``finetune.enabled``, or
            ``path=value``), or any of several.
        unless: Not while this other setting is on.
        once_set: Only when not at its default: a setting added after part files were written leaves their digest as
            it was while it is unset, so they stay valid.
    """

    when: str | tuple[str, ...] | None = None
    unless: str | None = None
    once_set: bool = False


MASKS = Masks()
"""The plain mark: the setting always changes the masks."""


class _Section(BaseModel):
    """A config section. Its fields marked `Masks` go into the digest; a section may also say, as a whole:"""

    model_config = ConfigDict(extra="forbid", frozen=True)

    DIGEST_WHEN: ClassVar[str | None] = None
    """The section counts only while this setting is on (a dotted path to a bool)."""
    DIGEST_OFF: ClassVar[dict[str, Any] | None] = None
    """What stands for the section while `DIGEST_WHEN` is off (nothing when None)."""
    DIGEST_AS: ClassVar[str | None] = None
    """The one field whose value stands for the section (the section is left out while that field does not count)."""


class VideoConfig(_Section):
    """Which frames of the input are processed and how they are extracted."""

    max_frames: Annotated[int | None, Field(ge=1)] = Field(
        None, description="Process only the first N frames (all frames when empty). Outputs then cover N frames."
    )
    jpeg_quality: Annotated[int, Masks(when=("finetune.enabled", "video.frame_store=jpeg"))] = Field(
        2,
        ge=1,
        le=31,
        description="ffmpeg -q:v of the JPEGs sam2flow writes (1 best, 31 worst): the frame store's with "
        "frame_store: jpeg, those a fine-tuned detector trains on, and frames kept with output.keep_frames.",
    )
    frame_store: Annotated[Literal["raw", "jpeg"], Masks(once_set=True)] = Field(
        "raw",
        description="How each subsequence's frames are stored between extraction and segmentation, at the models' "
        "size: raw YUV (one file; the fastest) or a folder of 00000.jpg … (what SAM2's own predictor reads; "
        "JPEG compression changes the pixels, so masks differ slightly).",
    )
    max_pixels: int = Field(
        4096 * 2304,
        ge=64 * 64,
        description="Refuse videos whose frames have more pixels than this (memory grows with the frame size); "
        "the default admits 4K.",
    )


class ChunkingConfig(_Section):
    """How the video is split into overlapping subsequences."""

    mode: Annotated[Literal["parallel", "carry"], MASKS] = Field(
        "parallel",
        description="parallel: subsequences run independently and are stitched by mask IoU over the overlap. "
        "carry: one after another, each starting from the previous one's masks on the overlap, so objects given "
        "only by manual prompts are tracked through the whole video.",
    )
    length: Annotated[int, MASKS] = Field(
        200, ge=17, description="Frames per subsequence. Memory grows with this, never with video length."
    )
    overlap: Annotated[int, MASKS] = Field(
        16,
        ge=16,
        description="Frames shared by neighbouring subsequences, used to stitch tracks (SAM2 reads 16 past frames).",
    )

    @model_validator(mode="after")
    def _overlap_below_length(self) -> ChunkingConfig:
        if self.overlap >= self.length:
            raise ValueError(f"chunking.overlap ({self.overlap}) must be smaller than chunking.length ({self.length})")
        return self


class DetectorConfig(_Section):
    """The Ultralytics YOLO detector that prompts SAM2."""

    DIGEST_WHEN = "detector.enabled"
    DIGEST_OFF = {"enabled": False}

    enabled: Annotated[bool, MASKS] = Field(
        True, description="Run the detector at keyframes. Off: only manual prompts are used."
    )
    model: Annotated[str, Masks(unless="finetune.enabled")] = Field(
        "yolo11n",
        description=_CKPT_HELP,
    )
    classes: Annotated[list[int | str] | None, MASKS] = Field(
        None, description="Class ids or names to keep (e.g. [person, car]); all classes when empty."
    )
    text: Annotated[list[str] | None, Masks(once_set=True)] = Field(
        None,
        description="Find objects named by these phrases (e.g. [person, white mouse]) with SAM 3's concept detector "
        "instead of YOLO's classes: detector.model must then name a SAM 3 checkpoint (sam3). Each phrase is a class, "
        "numbered in this order.",
    )
    confidence: Annotated[float, MASKS] = Field(0.25, gt=0.0, le=1.0, description="Minimum detection confidence.")
    nms_iou: Annotated[float, MASKS] = Field(
        0.7, gt=0.0, le=1.0, description="IoU threshold of the detector's non-maximum suppression."
    )
    image_size: Annotated[int, MASKS] = Field(640, ge=32, description="Detector input size in pixels.")
    detect_every: Annotated[int | None, Field(ge=1), MASKS] = Field(
        None, description="Run the detector every N frames inside a subsequence (only on its first frame when empty)."
    )
    prompt_style: Annotated[Literal["box", "center", "vertical"], MASKS] = Field(
        "box",
        description="How a detection prompts SAM2: its box, its centre point, or the centre plus two points along "
        "the vertical axis (a common choice for people).",
    )
    max_objects_per_keyframe: Annotated[int, MASKS] = Field(
        10, ge=1, description="At most this many new objects are added per keyframe."
    )
    duplicate_iou: Annotated[float, MASKS] = Field(
        0.5, gt=0.0, le=1.0, description="A detection whose box overlaps a tracked object this much is not added again."
    )

    @field_validator("text")
    @classmethod
    def _phrases(cls, v: list[str] | None) -> list[str] | None:
        if v is None:
            return None
        phrases = [p.strip() for p in v]
        if not phrases or any(not p or len(p) > 200 for p in phrases):
            raise ValueError(
                "detector.text: give one or more phrases of 1 to 200 characters, e.g. [person, white mouse]"
            )
        if len({p.lower() for p in phrases}) != len(phrases):
            raise ValueError(f"detector.text: a phrase is given twice in {phrases}")
        return phrases

    @model_validator(mode="after")
    def _text_or_classes(self) -> DetectorConfig:
        if self.text and self.classes:
            raise ValueError("detector.classes and detector.text cannot both be set: text phrases are the classes")
        return self


class FinetuneConfig(_Section):
    """Fine-tune the detector on the first frames: track the prompted objects, learn them, detect them later."""

    DIGEST_WHEN = "finetune.enabled"

    enabled: Annotated[bool, MASKS] = Field(
        False,
        description="Track the manual prompts through the first `frames` frames, train YOLO on those masks' boxes, "
        "and use the trained detector (instead of detector.model) to prompt every subsequence.",
    )
    frames: Annotated[int, MASKS] = Field(
        250, ge=16, le=2000, description="Frames tracked for training labels (one SAM2 state: memory grows with it)."
    )
    frame_step: Annotated[int, MASKS] = Field(1, ge=1, description="Use every N-th labelled frame as a training image.")
    base_model: Annotated[str, MASKS] = Field(
        "yolo11n",
        description="Pretrained YOLO to start from (manifest name, path or URI). When a manifest name cannot be "
        "loaded (e.g. offline), training starts from its model YAML; a '.yaml' name always trains from scratch.",
    )
    epochs: Annotated[int, MASKS] = Field(50, ge=1, le=1000, description="Training epochs (at most).")
    patience: Annotated[int, MASKS] = Field(
        10, ge=1, description="Stop when validation fitness has not improved for this many epochs."
    )
    image_size: Annotated[int, MASKS] = Field(
        640, ge=32, description="Training and detection input size in pixels (multiple of 32)."
    )
    batch: Annotated[int, MASKS] = Field(16, ge=1, description="Training batch size.")
    val_fraction: Annotated[float, MASKS] = Field(
        0.2, gt=0.0, lt=1.0, description="Share of time blocks used for validation (blocks, never single frames)."
    )
    block_frames: Annotated[int, MASKS] = Field(
        25, ge=1, description="Consecutive frames per time block of the train/validation split."
    )
    gap_frames: Annotated[int, MASKS] = Field(
        5, ge=0, description="Training frames this close to a validation frame are left out (near duplicates)."
    )
    seed: Annotated[int, MASKS] = Field(0, description="Training seed.")

    @field_validator("image_size")
    @classmethod
    def _multiple_of_32(cls, v: int) -> int:
        if v % 32:
            raise ValueError(f"finetune.image_size must be a multiple of 32, got {v}")
        return v


class ManualPrompt(_Section):
    """An object given by hand: points with labels (1 positive, 0 negative) and/or a box, on one global frame."""

    frame: int = Field(0, ge=0, description="Global frame index of the prompt.")
    obj_id: Annotated[int | None, Field(ge=0)] = Field(
        None,
        description="Prompts with the same obj_id are one object (e.g. corrections on later frames); "
        "each prompt without one is a new object.",
    )
    points: list[tuple[float, float]] = Field(default_factory=list, description="Points [x, y] in source pixels.")
    labels: list[Literal[0, 1]] = Field(
        default_factory=list, description="One label per point: 1 positive, 0 negative."
    )
    box: tuple[float, float, float, float] | None = Field(None, description="Box [x0, y0, x1, y1] in source pixels.")
    class_name: str = Field("object", description="Class name written to the outputs for this object.")
    track_box: tuple[float, float, float, float] | None = Field(
        None,
        description="Corrections of a finished run: the box [x0, y0, x1, y1] of the track obj_id names on the last "
        "frame up to this one where it had a mask (the studio fills it in). The prompt then refines the object "
        "found there, so the track keeps its number, instead of starting a new object.",
    )

    def key_data(self) -> dict[str, Any]:
        """The prompt as JSON for digests and part-file keys (``track_box`` only when set, so keys made before it
        existed stay the same)."""
        data = self.model_dump(mode="json")
        if data.get("track_box") is None:
            data.pop("track_box", None)
        return data

    @model_validator(mode="after")
    def _complete(self) -> ManualPrompt:
        if len(self.points) != len(self.labels):
            raise ValueError("prompts: each point needs exactly one label (1 positive, 0 negative)")
        if not self.points and self.box is None:
            raise ValueError("prompts: a manual prompt needs points or a box")
        if self.box is not None and not (self.box[0] < self.box[2] and self.box[1] < self.box[3]):
            raise ValueError(f"prompts: box {list(self.box)} must be [x0, y0, x1, y1] with x0 < x1 and y0 < y1")
        return self


class Zone(_Section):
    """A named polygon in source pixels."""

    name: str = Field(min_length=1, description="Zone name, written to events.parquet and drawn on the video.")
    polygon: list[tuple[float, float]] = Field(
        min_length=3, description="Vertices [[x, y], ...] in source pixels, in order around the zone."
    )


class ZonesConfig(_Section):
    """Named zones: restrict detector prompts to them and record when tracks enter and leave them."""

    DIGEST_WHEN = "zones.filter_prompts"  # otherwise zones only decide events, rebuilt from the masks
    DIGEST_AS = "regions"

    regions: Annotated[list[Zone], MASKS] = Field(
        default_factory=list, description="The zones (none: no zone logic, no events)."
    )
    filter_prompts: bool = Field(
        False,
        description="Only detections whose box touches a zone on the keyframe prompt SAM2 (manual prompts always "
        "do); objects keep being tracked when they leave the zone.",
    )
    anchor: Literal["bottom_center", "center", "centroid"] = Field(
        "bottom_center",
        description="The point of a track that must be inside a zone: box bottom-centre (feet, for people), "
        "box centre, or mask centroid.",
    )
    hysteresis: int = Field(
        3,
        ge=1,
        description="A track must stay on the new side of a zone border for this many consecutive observed frames "
        "before an enter/exit event is recorded (dated to the first of them).",
    )
    draw: bool = Field(True, description="Draw the zones on annotated.mp4.")

    @model_validator(mode="after")
    def _valid(self) -> ZonesConfig:
        names = [z.name for z in self.regions]
        if len(set(names)) != len(names):
            raise ValueError(f"zones.regions: zone names must be unique, got {names}")
        if self.filter_prompts and not self.regions:
            raise ValueError("zones.filter_prompts needs at least one zone in zones.regions")
        return self


class SegmenterConfig(_Section):
    """The video tracker: SAM2 (the default), or SAM 3's tracker when the checkpoint names a SAM 3 model."""

    checkpoint: Annotated[str, MASKS] = Field(
        "sam2.1_hiera_tiny",
        description=_CKPT_HELP,
    )
    image_size: Annotated[int | None, Field(ge=64), MASKS] = Field(
        None,
        description="Rebuild the model for this input size (a multiple of 16 for SAM2, of 14 for SAM 3); the "
        "checkpoint's native size when empty (SAM2 1024, SAM 3 1008).",
    )
    max_objects: Annotated[int, MASKS] = Field(
        20, ge=1, description="At most this many objects per subsequence (cost grows with objects)."
    )
    offload_video_to_cpu: bool = Field(
        False,
        description="No longer has an effect, kept so that older configs load: frames are always held in CPU memory, "
        "as uint8, and each is normalised on the model's device when SAM2 reads it.",
    )
    max_cond_frames: Annotated[int | None, Masks(once_set=True)] = Field(
        None,
        ge=2,
        description="Conditioning frames (reference frames and prompted frames) SAM2 attends to when tracking each "
        "frame, at most: the temporally closest. Empty: all of them (SAM2's default). Reference frames count "
        "against it.",
    )
    backward_fill: Annotated[bool, Masks(once_set=True)] = Field(
        False,
        description="Also track each object first found after a subsequence's first frame backwards to that "
        "start, so it has masks on the frames before it was detected (costs a second, reverse pass over those "
        "frames).",
    )
    precision: Literal["auto", "bf16", "fp32"] = Field(
        "auto",
        description="What SAM2 computes in: 'auto' (bf16 on a CUDA GPU and on a CPU that multiplies bf16 natively, "
        "avx512_bf16 or amx_bf16; fp32 elsewhere), 'bf16' or 'fp32'. Not in the config digest: the precision it "
        "resolves to goes into the part files' digest (sam2flow.models.precision).",
    )
    compile: Annotated[bool, MASKS] = Field(
        False,
        description="torch.compile the SAM2 model (the official 'vos_optimized' build). For GPUs: each worker pays "
        "the compile time once, on its first subsequence.",
    )

    @field_validator("image_size")
    @classmethod
    def _multiple_of_16(cls, v: int | None) -> int | None:
        if v is not None and v % 16 and v % 14:
            raise ValueError(f"segmenter.image_size must be a multiple of 16 (SAM2) or of 14 (SAM 3), got {v}")
        return v


class StitchingConfig(_Section):
    """How local objects of neighbouring subsequences are joined into tracks."""

    iou_threshold: float = Field(
        0.3, ge=0.0, le=1.0, description="Mask IoU, averaged over the overlap, at which two objects are one track."
    )
    min_iou: float = Field(
        0.05,
        ge=0.0,
        le=1.0,
        description="Below this overlap IoU two objects are never one track. Between it and iou_threshold they are "
        "when the pair beats every other candidate of both objects by `margin` (thin objects with noisy masks); set "
        "it to iou_threshold for a fixed threshold.",
    )
    margin: float = Field(
        2.0, ge=1.0, description="How many times the best alternative IoU a pair below iou_threshold must reach."
    )

    def rule(self) -> MatchRule:
        """The stitcher's decision rule for these settings."""
        from sam2flow.core.stitching import MatchRule

        return MatchRule(self.iou_threshold, self.min_iou, self.margin)


class RenderConfig(_Section):
    """The annotated video."""

    enabled: bool = Field(True, description="Write annotated.mp4.")
    alpha: float = Field(0.45, ge=0.0, le=1.0, description="Opacity of the mask fill.")
    draw_boxes: bool = Field(True, description="Draw each track's box.")
    draw_ids: bool = Field(True, description="Write each track's id and class.")
    crf: int = Field(20, ge=0, le=51, description="x264 constant rate factor (lower is better quality).")
    preset: Literal["ultrafast", "superfast", "veryfast", "faster", "fast", "medium"] = Field(
        "veryfast",
        description="x264 speed preset: faster presets spend less CPU per frame and write larger files at the same "
        "crf (ultrafast: about 40% less CPU than veryfast at 1080p, files about twice the size).",
    )


class ReportConfig(_Section):
    """The per-video report (OUT/<video_id>/report/): charts, a contact sheet and report.html."""

    enabled: bool = Field(True, description="Write the report when a video is done.")
    contact_sheet_frames: int = Field(12, ge=1, le=64, description="Evenly spaced annotated frames on the sheet.")
    review_items: int = Field(
        8, ge=0, le=100, description="Items of the review list shown first, each with a strip of frames around it."
    )
    max_tracks: int = Field(
        60, ge=1, le=1000, description="The timeline and the track table show at most this many (longest) tracks."
    )


class OutputConfig(_Section):
    """Where intermediate files live and what is kept."""

    work_dir: str | None = Field(
        None, description="Local folder for extracted JPEGs; a temporary folder under the system temp dir when empty."
    )
    keep_frames: bool = Field(
        False,
        description="Keep each subsequence's frames after it is segmented, as a folder of JPEGs (00000.jpg …, at "
        "the models' input size, with frames.json giving the source size) in output.work_dir.",
    )


class RuntimeConfig(_Section):
    """Devices and parallelism."""

    device: str | list[str] = Field(
        "auto",
        description="'auto' (every CUDA GPU, else the CPU), 'cpu', 'cuda', 'cuda:N', or a list of them "
        "(e.g. [cuda:0, cuda:1] or 'cuda:0,cuda:1'): each entry gets workers_per_device workers, so a device named "
        "twice gets twice the workers.",
    )
    workers_per_device: int = Field(1, ge=1, le=16, description="Segment workers (model copies) per device.")
    extract_workers: int = Field(1, ge=1, le=16, description="Parallel JPEG extraction jobs (CPU).")
    torch_threads: Annotated[int | None, Field(ge=1)] = Field(
        None, description="CPU threads per worker; all cores divided by the CPU workers when empty."
    )
    executor: Literal["local", "ray"] = Field(
        "local",
        description="Where subsequences are segmented: 'local' (this machine's workers) or 'ray' (one Ray task per "
        "subsequence through prefect-ray; each task extracts its own frames, so OUT must be storage every node "
        "reaches, e.g. s3://).",
    )
    ray_address: str | None = Field(
        None,
        description="Ray cluster for executor 'ray': 'auto', 'HOST:PORT' or 'ray://HOST:10001'; a new local "
        "Ray instance when empty.",
    )
    ray_gpus_per_task: Annotated[float | None, Field(ge=0)] = Field(
        None, description="GPUs per Ray segment task: 1 when the cluster has GPUs, else 0, when empty."
    )

    @field_validator("device", mode="before")
    @classmethod
    def _device(cls, v: Any) -> str | list[str]:
        entries = [e.strip() for e in v.split(",")] if isinstance(v, str) else v
        if not isinstance(entries, list) or not entries or not all(isinstance(e, str) for e in entries):
            raise ValueError(f"runtime.device must be a device name or a list of them, got {v!r}")
        for e in entries:
            if not (e in ("cpu", "cuda") or (e.startswith("cuda:") and e[5:].isdigit()) or e == "auto"):
                raise ValueError(f"runtime.device entries must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {e!r}")
        if len(entries) > 1 and "auto" in entries:
            raise ValueError("runtime.device: 'auto' already means every GPU; it cannot be part of a list")
        return entries[0] if len(entries) == 1 else entries


class ReferencesConfig(_Section):
    """Reference identities: named objects every subsequence starts out knowing."""

    DIGEST_AS = "path"  # its content is added where it is read (the part digest)

    path: Annotated[str | None, Masks(once_set=True)] = Field(
        None,
        description="A reference library folder (made by `sam2flow references make`): its frames condition SAM2 in "
        "every subsequence, and each identity keeps its name and track id. Needs chunking.mode: parallel.",
    )


class PipelineConfig(_Section):
    """Everything that decides what a run produces. Unknown keys are errors."""

    video: VideoConfig = Field(default_factory=VideoConfig)
    chunking: ChunkingConfig = Field(default_factory=ChunkingConfig)
    detector: DetectorConfig = Field(default_factory=DetectorConfig)
    prompts: Annotated[list[ManualPrompt], MASKS] = Field(default_factory=list, description="Objects given by hand.")
    finetune: FinetuneConfig = Field(default_factory=FinetuneConfig)
    zones: ZonesConfig = Field(default_factory=ZonesConfig)
    segmenter: SegmenterConfig = Field(default_factory=SegmenterConfig)
    references: ReferencesConfig = Field(default_factory=ReferencesConfig)
    stitching: StitchingConfig = Field(default_factory=StitchingConfig)
    render: RenderConfig = Field(default_factory=RenderConfig)
    report: ReportConfig = Field(default_factory=ReportConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)
    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig)

    @model_validator(mode="after")
    def _has_prompt_source(self) -> PipelineConfig:
        if not self.detector.enabled and not self.prompts and self.references.path is None:
            raise ValueError("nothing to track: enable the detector, give manual prompts or reference identities")
        if self.references.path is not None and self.chunking.mode != "parallel":
            raise ValueError("references.path needs chunking.mode: parallel (each subsequence starts from the "
                             "references instead of the previous one's masks)")  # fmt: skip
        ft = self.finetune
        if ft.enabled:
            if not self.detector.enabled:
                raise ValueError("finetune.enabled needs detector.enabled: the trained detector prompts the video")
            if not any(p.frame < ft.frames for p in self.prompts):
                raise ValueError(
                    f"finetune.enabled needs manual prompts (prompts: ...) on a frame before finetune.frames "
                    f"({ft.frames}): they say which objects to learn"
                )
        return self

    def digest(self, prompts: bool = True) -> str:
        """Short content digest of exactly the settings that decide segmentation results (it names part files).

        Derived from the `Masks` marks next to each field and the sections' ``DIGEST_*`` rules: an unmarked setting
        (how many frames are processed, where frames are kept, stitching, rendering, the runtime) never re-segments.
        The checkpoints' and the reference library's contents are added where they are resolved (the part digest).
        With ``prompts=False`` the manual prompts are left out: part files are keyed by the prompts inside each
        subsequence (`sam2flow.job.span_keys`).
        """
        relevant = digest_data(self)
        if not prompts:
            relevant["prompts"] = None
        return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:16]


def _setting(cfg: PipelineConfig, condition: str | tuple[str, ...]) -> bool:
    """Whether a `Masks` condition holds: ``path`` (a bool setting is on), ``path=value``, or any of several."""
    if isinstance(condition, tuple):
        return any(_setting(cfg, c) for c in condition)
    dotted, sep, expected = condition.partition("=")
    value: Any = cfg
    for part in dotted.split("."):
        value = getattr(value, part)
    return str(value) == expected if sep else bool(value)


def _counts(cfg: PipelineConfig, model: BaseModel, name: str) -> bool:
    """Whether field ``name`` of ``model`` goes into the digest now (see `Masks`)."""
    info = type(model).model_fields[name]
    mark = next((m for m in info.metadata if isinstance(m, Masks)), None)
    if mark is None:
        return False
    if mark.when is not None and not _setting(cfg, mark.when):
        return False
    if mark.unless is not None and _setting(cfg, mark.unless):
        return False
    return not (mark.once_set and getattr(model, name) == info.get_default(call_default_factory=True))


def digest_data(cfg: PipelineConfig) -> dict[str, Any]:
    """The settings that decide the masks, as the JSON the digest is taken of (sections without marks left out)."""
    out: dict[str, Any] = {}
    for name in type(cfg).model_fields:
        value = getattr(cfg, name)
        if not isinstance(value, _Section):
            if name == "prompts":
                out[name] = [p.key_data() for p in cfg.prompts]
            elif _counts(cfg, cfg, name):
                out[name] = cfg.model_dump(mode="json", include={name})[name]
            continue
        section = type(value)
        if not any(isinstance(m, Masks) for f in section.model_fields.values() for m in f.metadata):
            continue
        if section.DIGEST_WHEN is not None and not _setting(cfg, section.DIGEST_WHEN):
            if section.DIGEST_OFF is not None:
                out[name] = dict(section.DIGEST_OFF)
            continue
        fields = {f for f in section.model_fields if _counts(cfg, value, f)}
        dumped = value.model_dump(mode="json", include=fields)
        if section.DIGEST_AS is None:
            out[name] = dumped
        elif section.DIGEST_AS in fields:
            out[name] = dumped[section.DIGEST_AS]
    return out


def format_validation_error(err: ValidationError, source: str) -> str:
    lines = [f"invalid configuration ({source}):"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "<root>"
        msg = (
            "unknown key (check the spelling; see configs/default.yaml)" if e["type"] == "extra_forbidden" else e["msg"]
        )
        lines.append(f"  {key}: {msg}")
    return "\n".join(lines)


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = data
    for p in parts[:-1]:
        child = node.setdefault(p, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {dotted!r}: {p!r} is not a section")
        node = child
    node[parts[-1]] = value


def parse_override(text: str) -> tuple[str, Any]:
    """Parse ``section.key=value`` (the value is YAML, so ``[1, 2]``, ``null`` and ``true`` work)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r} must look like section.key=value, e.g. chunking.length=64")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {text!r}: value is not valid YAML ({exc})") from exc
    return key.strip(), value


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> PipelineConfig:
    """Load a YAML config file (defaults when None) and apply ``section.key=value`` overrides.

    Raises:
        ConfigError: When the file is missing or not YAML, or a key is unknown or a value invalid.
    """
    data: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        p = Path(path)
        source = str(p)
        if not p.is_file():
            raise ConfigError(f"config file {p} does not exist; see configs/ for examples")
        try:
            loaded = yaml.safe_load(p.read_text())
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {p} is not valid YAML: {exc}") from exc
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"config file {p} must hold a mapping of sections, got {type(loaded).__name__}")
        data = loaded or {}
    return _apply(data, overrides, source)


def with_overrides(cfg: PipelineConfig, overrides: list[str] | None) -> PipelineConfig:
    """A copy of ``cfg`` with ``section.key=value`` overrides applied and validated."""
    return _apply(cfg.model_dump(mode="json"), overrides, "config")


def _apply(data: dict[str, Any], overrides: list[str] | None, source: str) -> PipelineConfig:
    for text in overrides or []:
        key, value = parse_override(text)
        _set_dotted(data, key, value)
        source += f" + {text}"
    try:
        return PipelineConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, source)) from err
