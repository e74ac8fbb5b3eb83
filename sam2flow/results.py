"""Typed results of the stages: what each task returns, and what manifest.json records under ``stages``.

They are small frozen records (never arrays or models), so they can cross task boundaries, and `to_json` turns any of
them into the manifest's plain form. `from_json` reads that form back, validated.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, TypeVar

from sam2flow.config import ManualPrompt, PipelineConfig
from sam2flow.core.types import Subsequence
from sam2flow.io.video import VideoProbe

T = TypeVar("T")


def to_json(record: Any) -> dict[str, Any]:
    """A record as a plain dict of JSON values (the config sections in it included)."""
    from pydantic import TypeAdapter

    out: dict[str, Any] = TypeAdapter(type(record)).dump_python(record, mode="json")
    return out


def from_json(kind: type[T], data: Any) -> T:
    """Rebuild a record of type ``kind`` from its `to_json` form, checking every field's type.

    Raises:
        pydantic.ValidationError: When ``data`` does not have the record's fields and types.
    """
    from pydantic import TypeAdapter

    return TypeAdapter(kind).validate_python(data)


@dataclass(frozen=True)
class ExtractResult:
    """One subsequence's JPEG extraction."""

    index: int
    skipped: bool
    """True when its part file was already complete (nothing to extract)."""
    seconds: float


@dataclass(frozen=True)
class SegmentStats:
    """What segmenting one subsequence produced."""

    index: int
    frames: int
    objects: int
    rows: int
    frames_with_masks: int
    seconds: float
    sam2_seconds: float = 0.0
    """Time spent inside the segmenter's calls (adding prompts, propagating): the rest is sam2flow's overhead."""
    backfill_rows: int = 0
    backfill_seconds: float = 0.0
    """Rows added, and segmenter time spent, by ``segmenter.backward_fill`` (part of ``rows``, ``sam2_seconds``)."""


@dataclass(frozen=True)
class SegmentResult:
    """One subsequence's segmentation task: reused from an earlier run, or segmented now (with its stats)."""

    index: int
    reused: bool
    seconds: float = 0.0
    frames: int | None = None
    objects: int | None = None
    rows: int | None = None
    frames_with_masks: int | None = None
    sam2_seconds: float = 0.0
    backfill_rows: int = 0
    backfill_seconds: float = 0.0
    device: str | None = None
    precision: str | None = None
    """What SAM2 computed in on that device (``bf16`` or ``fp32``, `sam2flow.models.precision`)."""
    rss_mib: float | None = None
    """Resident memory of the process after the subsequence (MiB)."""
    host: str | None = None
    pid: int | None = None
    """Where it ran (the Ray fan-out records it: tasks run on any node)."""
    worker: str | None = None
    """The worker slot that segmented it (``device#index``)."""
    started: float | None = None
    ended: float | None = None
    """When that worker took and gave back the subsequence (Unix seconds): how busy the workers were."""

    @classmethod
    def from_stats(
        cls,
        stats: SegmentStats,
        device: str,
        rss_mib: float,
        worker: str | None = None,
        held: tuple[float, float] | None = None,
        precision: str | None = None,
    ) -> SegmentResult:
        """The result of a subsequence segmented now (``held``: when its worker took it and gave it back)."""
        started, ended = held or (None, None)
        return cls(
            index=stats.index,
            reused=False,
            seconds=stats.seconds,
            frames=stats.frames,
            objects=stats.objects,
            rows=stats.rows,
            frames_with_masks=stats.frames_with_masks,
            sam2_seconds=stats.sam2_seconds,
            backfill_rows=stats.backfill_rows,
            backfill_seconds=stats.backfill_seconds,
            device=device,
            precision=precision,
            rss_mib=rss_mib,
            worker=worker,
            started=started,
            ended=ended,
        )


@dataclass(frozen=True)
class EventsResult:
    """What the zone events of a run came to."""

    events: int
    enters: int
    exits: int
    tracks_in_zones: int
    seconds: float


@dataclass(frozen=True)
class ReviewResult:
    """The run's review list: how many items, the highest score, how many the user marked reviewed."""

    items: int
    top_score: float
    reviewed: int = 0
    seconds: float = 0.0


@dataclass(frozen=True)
class StitchResult:
    """The stitched tables: how many tracks and rows, and how many matches joined subsequences."""

    tracks: int
    rows: int
    matches: int
    frames_with_masks: int
    seconds: float = 0.0
    events: EventsResult | None = None
    """With zones: the events written to events.parquet."""
    review: ReviewResult | None = None
    """The review list written to review.parquet."""


@dataclass(frozen=True)
class RenderPieceResult:
    """One piece of the annotated video, drawn while later subsequences were being segmented."""

    index: int
    frames: int
    seconds: float


@dataclass(frozen=True)
class RenderResult:
    """The annotated video."""

    enabled: bool
    frames: int = 0
    pieces: int = 0
    pieces_kept: int = 0
    """Pieces drawn during segmentation that showed exactly the final tracks (the others were drawn again)."""
    seconds: float = 0.0
    stale: bool = False
    """True after a re-stitch without re-rendering: the video shows the earlier track ids."""


@dataclass(frozen=True)
class LabelResult:
    """The first frames tracked with SAM2 for fine-tuning (labels.parquet)."""

    labels: str
    frames: int
    reused: bool
    seconds: float
    objects: int | None = None
    frames_with_masks: int | None = None


@dataclass(frozen=True)
class FinetuneRecord:
    """A trained detector and what training measured (written to metrics.json, and into the manifest)."""

    folder: str
    weights: str
    weights_sha256: str
    """Recorded when the weights were written, checked whenever they are read."""
    labels: str
    classes: list[str]
    labelled_frames: int
    train_frames: list[int]
    val_frames: list[int]
    instances: dict[str, int]
    split: dict[str, float | int]
    base: str
    pretrained: bool
    epochs_run: int
    best_epoch: int
    metrics: dict[str, float]
    device: str
    label_seconds: float
    train_seconds: float
    reused: bool = False


@dataclass(frozen=True)
class ExtractSummary:
    """All extraction tasks of a run."""

    task_seconds: float
    skipped: int


@dataclass(frozen=True)
class SegmentSummary:
    """All segmentation tasks of a run."""

    wall_seconds: float
    task_seconds: float
    sam2_seconds: float
    reused: int
    subsequences: list[SegmentResult]
    backfill_seconds: float = 0.0

    @classmethod
    def of(cls, results: list[SegmentResult], wall_seconds: float) -> SegmentSummary:
        """Totals over the subsequences (listed in plan order)."""
        ordered = sorted(results, key=lambda r: r.index)
        return cls(
            wall_seconds=round(wall_seconds, 3),
            task_seconds=round(sum(r.seconds for r in ordered), 3),
            sam2_seconds=round(sum(r.sam2_seconds for r in ordered), 3),
            backfill_seconds=round(sum(r.backfill_seconds for r in ordered), 3),
            reused=sum(r.reused for r in ordered),
            subsequences=ordered,
        )


@dataclass(frozen=True)
class PrepareSummary:
    """Probing, planning and checkpoint resolution."""

    wall_seconds: float


@dataclass(frozen=True)
class RunStages:
    """Every stage of one run, as manifest.json records it under ``stages`` (a stage a run did not record, e.g. in a
    manifest written by an earlier version, is None)."""

    prepare: PrepareSummary | None = None
    extract: ExtractSummary | None = None
    segment: SegmentSummary | None = None
    stitch: StitchResult | None = None
    render: RenderResult | None = None
    finetune: FinetuneRecord | None = None
    restitched: bool = False
    """True when the tables were rebuilt later by `sam2flow stitch`."""

    def seconds(self) -> dict[str, float]:
        """Each recorded stage's time in seconds (its wall time where it has one, else its tasks' time)."""
        out = {}
        for f in fields(self):
            record = getattr(self, f.name)
            key = next((k for k in ("wall_seconds", "seconds", "task_seconds") if hasattr(record, k)), None)
            if key is not None:
                out[f.name] = float(getattr(record, key))
        return out


@dataclass(frozen=True)
class CheckpointRecord:
    """A checkpoint a run used: how it was named, where it was, its sha256, and whether it was verified or random."""

    spec: str
    path: str
    sha256: str
    verified: bool
    random_weights: bool
    family: str | None = None
    """The model family (``sam2``, ``sam3``, ``yolo``) where the manifest names it; absent in earlier runs."""


@dataclass(frozen=True)
class RunCheckpoints:
    """The checkpoints of a run: the segmenter's under ``sam2`` (SAM2 or SAM 3, its ``family`` says), and the
    detector's when one ran."""

    sam2: CheckpointRecord | None = None
    yolo: CheckpointRecord | None = None


@dataclass(frozen=True)
class RunManifest:
    """What ``OUT/<video_id>/manifest.json`` holds: the run's input, probe, plan, config, checkpoints, versions and
    stages. Written only by `sam2flow.manifest.write_manifest` and read only by `sam2flow.manifest.read_manifest`."""

    video_id: str
    input: str
    """The input as given to the run: an absolute local path, or a URI."""
    probe: VideoProbe
    frames_processed: int
    config: PipelineConfig
    local_input: str | None = None
    """The local file the run read (the input, or its cached copy for a URI)."""
    subsequences: list[Subsequence] = field(default_factory=list)
    config_digest: str = ""
    """The part digest: the folder of the run's part files under ``parts/``."""
    span_keys: list[str] = field(default_factory=list)
    correction_prompts: list[ManualPrompt] = field(default_factory=list)
    checkpoints: RunCheckpoints = field(default_factory=RunCheckpoints)
    random_weights: bool = False
    finetune: FinetuneRecord | None = None
    versions: dict[str, str] = field(default_factory=dict)
    stages: RunStages = field(default_factory=RunStages)
    wall_seconds: float = 0.0
    outputs: dict[str, str] = field(default_factory=dict)
    """The output files a complete run has, by name (``_SUCCESS`` is written once they all exist)."""
