"""The studio's request bodies, one Pydantic model each: a body that does not fit is answered 422 naming the field,
before any route code runs. Paths are checked against the roots by the routes (`Roots.check`)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from sam2flow.config import ManualPrompt, Zone
from sam2flow.stages.stitch.corrections import Corrections

Coordinate = Annotated[float, Field(allow_inf_nan=False)]
Path = Annotated[str, Field(min_length=1, max_length=4096)]
FrameNumber = Annotated[int, Field(ge=0)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PreviewObject(_Body):
    """One object's prompts on the previewed frame, in source pixels (none: the object is left out), and its
    ``obj_id`` (its colour; default: its place in the list, from 1)."""

    obj_id: Annotated[int, Field(ge=0)] | None = None
    points: list[tuple[Coordinate, Coordinate]] = Field(default_factory=list, max_length=1000)
    labels: list[Literal[0, 1]] = Field(default_factory=list, max_length=1000)
    box: tuple[Coordinate, Coordinate, Coordinate, Coordinate] | None = None

    @model_validator(mode="after")
    def _one_label_per_point(self) -> PreviewObject:
        if len(self.points) != len(self.labels):
            raise ValueError(f"{len(self.points)} point(s) but {len(self.labels)} label(s): one label per point")
        if self.box is not None and not (self.box[0] < self.box[2] and self.box[1] < self.box[3]):
            raise ValueError(f"box {list(self.box)} must be [x0, y0, x1, y1] with x0 < x1 and y0 < y1")
        return self


class TrackClick(PreviewObject):
    """One object's prompts on one frame, for Track."""

    frame: FrameNumber


MAX_TRACK_FRAMES = 3000
"""The most frames one Track request covers."""


class TrackRequest(_Body):
    """Track the objects' prompts over frames ``start``..``stop - 1`` of a video with SAM2, in the studio."""

    path: Path
    start: FrameNumber = 0
    stop: Annotated[int, Field(ge=1)]
    prompts: list[TrackClick] = Field(min_length=1, max_length=2000)

    @model_validator(mode="after")
    def _span(self) -> TrackRequest:
        if not 0 < self.stop - self.start <= MAX_TRACK_FRAMES:
            raise ValueError(f"stop - start must be 1 to {MAX_TRACK_FRAMES} frames, got {self.stop - self.start}")
        if not any(p.points or p.box for p in self.prompts):
            raise ValueError("give at least one point or box to track")
        return self


class PreviewRequest(_Body):
    """SAM2's masks on one frame of a video from the objects' prompts."""

    path: Path
    frame: FrameNumber = 0
    objects: list[PreviewObject] = Field(default_factory=list, max_length=200)


Phrase = Annotated[str, Field(min_length=1, max_length=200)]


class FindRequest(_Body):
    """Find what these phrases name on one frame, with SAM 3's concept detector."""

    path: Path
    frame: FrameNumber = 0
    text: list[Phrase] = Field(min_length=1, max_length=16)


class SaveRequest(_Body):
    """Write the base config with these prompts and zones to ``dest``."""

    video: Path
    dest: Path
    prompts: list[ManualPrompt] = Field(default_factory=list)
    zones: list[Zone] = Field(default_factory=list)
    text: list[Phrase] | None = Field(None, max_length=16)
    """Phrases the saved config's detector finds with SAM 3 (``detector.text``); None keeps the base's detector."""


class RunRequest(_Body):
    """Run ``video`` with the saved config into ``out``."""

    video: Path
    config: Path
    out: Path


class CorrectionsRequest(_Body):
    """Save corrections.yaml of a finished run."""

    path: Path
    corrections: Corrections = Field(default_factory=Corrections)


class ReferencesRequest(_Body):
    """Make a reference library from a finished run: these frames, these [track id, name] pairs, in naming order."""

    path: Path
    frames: list[FrameNumber] = Field(min_length=1)
    tracks: list[tuple[Annotated[int, Field(ge=1)], Annotated[str, Field(min_length=1)]]] = Field(min_length=1)
    dest: Path


class ReviewMarkRequest(_Body):
    """Mark items of a run's review list reviewed (or take the mark off), by their keys."""

    path: Path
    keys: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(min_length=1, max_length=1000)
    reviewed: bool = True


class RunPath(_Body):
    """A finished run's folder."""

    path: Path


class ApplyRequest(RunPath):
    """Re-stitch a finished run with its corrections; ``rerender`` draws annotated.mp4 again too."""

    rerender: bool = False
