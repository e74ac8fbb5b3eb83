"""``OUT/<video_id>/corrections.yaml``: fixes to a run's tracks, written by hand or by the studio.

    prompts:                 # the config's prompt schema: points and/or a box on a frame
      - frame: 130
        obj_id: 7            # the track this prompt is for: prompts sharing an obj_id are one object, track 7
        points: [[412, 230]]
        labels: [1]
        class_name: person
        track_box: [380, 200, 460, 300]  # track 7's box up to frame 130 (the studio fills it in): refine that object
    merge: [[3, 5]]          # track 5 (and any further id in the list) becomes track 3
    split:                   # the rows of track 4 from frame 120 on become a new track
      - {track: 4, frame: 120}
    delete: [9]              # track 9 is removed
    classes:                 # track 2 is called dog
      - {track: 2, class_name: dog}
    reviewed:                # items of review.parquet the user has looked at (their ``key``)
      - "swap:118-120:3,5"

Prompts need the models: `sam2flow run` adds them to the config's prompts and re-segments only the subsequences
whose frames they touch. Merge, split, delete and classes need no model: they are applied after stitching, in
that order, by `sam2flow run` and `sam2flow stitch`. ``reviewed`` changes no track: it keeps the review list's
marks across re-stitching. Track ids are those the stitcher gives before corrections: a prompted object's
``obj_id``, then the others (split-off tracks get the next free ids, in the order of ``split``). Where a merge
puts two rows of one track on the same frame, the row with the higher score is kept.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sam2flow.config import ConfigError, ManualPrompt, format_validation_error
from sam2flow.core.review.seams import Seam
from sam2flow.core.stitching import ClassVotes, majority
from sam2flow.core.types import TrackId
from sam2flow.io import storage

FILE = "corrections.yaml"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Split(_Strict):
    """Cut a track: its rows from ``frame`` on become a new track."""

    track: int = Field(ge=1)
    frame: int = Field(ge=0)


class ClassChange(_Strict):
    """Give a track another class name."""

    track: int = Field(ge=1)
    class_name: str = Field(min_length=1)


class Corrections(_Strict):
    """Everything corrections.yaml may hold (see the module docs)."""

    prompts: list[ManualPrompt] = Field(default_factory=list)
    merge: list[Annotated[list[Annotated[int, Field(ge=1)]], Field(min_length=2)]] = Field(default_factory=list)
    split: list[Split] = Field(default_factory=list)
    delete: list[Annotated[int, Field(ge=1)]] = Field(default_factory=list)
    classes: list[ClassChange] = Field(default_factory=list)
    reviewed: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(default_factory=list)

    @property
    def edits_tracks(self) -> bool:
        """Whether any model-free correction is given."""
        return bool(self.merge or self.split or self.delete or self.classes)


def load(run_dir: str) -> Corrections | None:
    """The corrections of a run's output folder, or None when it has none.

    Raises:
        ConfigError: When the file is not valid YAML or does not follow the schema (the message names the key).
    """
    uri = storage.join(run_dir, FILE)
    if not storage.exists(uri):
        return None
    return parse(storage.read_bytes(uri).decode(), uri)


def parse(text: str, source: str) -> Corrections:
    """Validate corrections given as YAML text (``source`` names it in errors)."""
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{source} must hold a mapping (prompts, merge, split, delete, classes, reviewed)")
    try:
        return Corrections.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, source)) from err


def save(run_dir: str, corrections: Corrections) -> str:
    """Write corrections.yaml atomically; returns its URI."""
    uri = storage.join(run_dir, FILE)
    data = corrections.model_dump(mode="json", exclude_defaults=True)
    storage.write_bytes(uri, yaml.safe_dump(data, sort_keys=False).encode())
    return uri


class TrackEdits:
    """The model-free corrections as a function of (frame, track id) rows: which rows stay and their new ids."""

    def __init__(self, corrections: Corrections, next_track: int) -> None:
        self.delete = set(corrections.delete)
        self.merge: dict[int, int] = {}
        for group in corrections.merge:
            target = self.merge.get(group[0], group[0])
            for t in group[1:]:
                self.merge[t] = target
        self.splits: list[tuple[int, int, int]] = []  # (track after merges, from frame, new id)
        for s in corrections.split:
            self.splits.append((self.merge.get(s.track, s.track), s.frame, next_track))
            next_track += 1
        self.classes_by_track = {self.merge.get(c.track, c.track): c.class_name for c in corrections.classes}
        for track, _, fresh in self.splits:  # a split-off piece keeps the class its track was given
            if track in self.classes_by_track:
                self.classes_by_track.setdefault(fresh, self.classes_by_track[track])

    def apply(self, frames: np.ndarray, tracks: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rows sorted by frame in, ``(indices of the rows kept, their new track ids)`` out, sorted by (frame, id)."""
        keep = ~np.isin(tracks, list(self.delete)) if self.delete else np.ones(len(tracks), bool)
        new = np.array([self.merge.get(int(t), int(t)) for t in tracks], dtype=np.int64)
        for track, frame, fresh in self.splits:
            new[(new == track) & (frames >= frame)] = fresh
        idx = np.flatnonzero(keep)
        order = np.lexsort((-scores[idx], new[idx], frames[idx]))  # by frame, track, best score first
        idx = idx[order]
        pairs = np.stack([frames[idx], new[idx]], axis=1)
        first = np.ones(len(idx), bool)
        first[1:] = np.any(pairs[1:] != pairs[:-1], axis=1)
        return idx[first], new[idx[first]]

    def track_at(self, track: int, frame: int) -> int | None:
        """The corrected id of stitched track ``track`` on ``frame`` (None: deleted)."""
        if track in self.delete:
            return None
        new = self.merge.get(track, track)
        for source, start, fresh in self.splits:
            if new == source and frame >= start:
                new = fresh
        return new

    def seam(self, seam: Seam) -> Seam:
        """A seam of the stitched tracks in the corrected ids (on the seam's first frame)."""

        def fix(t: int | None) -> int | None:
            return None if t is None else self.track_at(t, seam.frame_start)

        pairs = tuple(replace(p, left_track=fix(p.left_track), right_track=fix(p.right_track)) for p in seam.pairs)
        return replace(seam, pairs=pairs)

    def votes(self, votes: dict[TrackId, ClassVotes]) -> dict[TrackId, ClassVotes]:
        """Each corrected track's class votes: a merged track sums its parts', a split-off one inherits its
        source's; deleted tracks have none."""
        out: dict[TrackId, ClassVotes] = {}
        for t, v in votes.items():
            if int(t) in self.delete:
                continue
            tally = out.setdefault(TrackId(self.merge.get(int(t), int(t))), {})
            for key, n in v.items():
                tally[key] = tally.get(key, 0) + n
        for track, _, fresh in self.splits:
            if TrackId(track) in out:
                out[TrackId(fresh)] = dict(out[TrackId(track)])
        return out

    def classes(self, votes: dict[TrackId, ClassVotes]) -> dict[TrackId, tuple[int, str]]:
        """Each corrected track's (class id, class name): the majority of its votes unless ``classes`` renames it
        (the id is then the one that name has elsewhere in the run, or -1)."""
        edited = self.votes(votes)
        ids = {name: cid for v in votes.values() for (cid, name) in v}
        out = {t: majority(v) for t, v in edited.items() if v}
        for t in out:
            name = self.classes_by_track.get(int(t))
            if name is not None:
                out[t] = (ids.get(name, -1), name)
        return out
