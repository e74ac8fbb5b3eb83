"""The record of one video's run (`VideoJob`): its input, plan, checkpoints and where every file of it lives."""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sam2flow.config import ManualPrompt
from sam2flow.core.types import Subsequence
from sam2flow.io import storage
from sam2flow.io.checkpoints import ResolvedCheckpoint
from sam2flow.io.video import VideoProbe

OUTPUT_FILES = (
    "masks.parquet",
    "tracks.parquet",
    "review.parquet",
    "timestamps.parquet",
    "annotated.mp4",
    "manifest.json",
)
EVENTS = "events.parquet"  # only with zones
REPORT_PAGE = "report/report.html"  # unless report.enabled is off
SUCCESS = "_SUCCESS"


@dataclass(frozen=True)
class VideoJob:
    """Everything the stages of one video need, small enough to pass between tasks."""

    video: str
    local_video: str
    video_id: str
    out_dir: str
    work_dir: str
    info: VideoProbe
    num_frames: int
    plan: tuple[Subsequence, ...]
    config_digest: str
    sam2: ResolvedCheckpoint
    yolo: ResolvedCheckpoint | None
    span_keys: tuple[str, ...] = ()
    """Per subsequence, a digest of the manual prompts it holds (and, in carry mode, of those before it): part files
    are named by it, so a prompt added on one frame re-segments only the subsequences that hold that frame."""
    extra_prompts: tuple[ManualPrompt, ...] = ()
    """Prompts from the run folder's corrections.yaml, segmented with the config's own."""
    started: float = field(default_factory=time.time)

    @property
    def random_weights(self) -> bool:
        """Whether any model of this run has random weights."""
        return self.sam2.random_weights or bool(self.yolo and self.yolo.random_weights)

    def part_uri(self, index: int) -> str:
        """Content-addressed part file of one subsequence (same config and input → same name)."""
        sub = self.plan[index]
        key = f"_{self.span_keys[index]}" if self.span_keys else ""
        return storage.join(
            self.out_dir, "parts", self.config_digest, f"{index:05d}_{sub.start}_{sub.stop}{key}.parquet"
        )

    def part_uris(self) -> list[str]:
        """Every subsequence's part file, in plan order."""
        return [self.part_uri(i) for i in range(len(self.plan))]

    def part_done(self, index: int) -> bool:
        """Whether a complete part file exists (incomplete ones only exist under temporary names)."""
        return storage.exists(self.part_uri(index))

    def frames_dir(self, index: int) -> Path:
        """Local folder of one subsequence's JPEGs."""
        return Path(self.work_dir) / f"{index:05d}"

    @property
    def render_dir(self) -> Path:
        """Local folder of the annotated video's pieces (and of the track links they are drawn with)."""
        return Path(self.work_dir) / "render"

    @property
    def times_uri(self) -> str:
        """timestamps.parquet: when each frame of the input is shown (written once per video id)."""
        return self.output("timestamps.parquet")

    def output(self, name: str) -> str:
        """URI of a final output file."""
        return storage.join(self.out_dir, name)


def span_keys(plan: Sequence[Subsequence], prompts: Sequence[ManualPrompt], carry: bool) -> tuple[str, ...]:
    """Each subsequence's prompt key: the manual prompts on its frames, in order (in carry mode chained with the key
    of the subsequence before, whose masks it continues)."""
    keys: list[str] = []
    for sub in plan:
        inside = [p.key_data() for p in prompts if sub.contains(p.frame)]
        chain = keys[-1] if carry and keys else ""
        keys.append(hashlib.sha256(json.dumps([chain, inside], sort_keys=True).encode()).hexdigest()[:10])
    return tuple(keys)


def make_video_id(video: str, digest: str) -> str:
    """Readable stem plus a short content digest, safe as a path component."""
    stem = Path(video.rstrip("/").rsplit("/", 1)[-1]).stem
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip("-.")[:48] or "video"
    return f"{slug}-{digest[:10]}"
