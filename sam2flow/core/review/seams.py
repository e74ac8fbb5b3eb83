"""Review signals at subsequence seams, from the stitcher's boundary matching."""

from __future__ import annotations

from dataclasses import dataclass

from sam2flow.core.review import Item, ramp
from sam2flow.core.stitching import MatchRule


@dataclass(frozen=True)
class SeamPair:
    """One pair the Hungarian assignment proposed across a seam, in track ids (None: the object has no track).

    Attributes:
        left_track: The track of the object before the seam.
        right_track: The track of the object after it.
        iou: Their mask IoU averaged over the shared frames.
        alternative: The best IoU either object has with another object of the other side.
        joined: Whether the stitcher joined them.
    """

    left_track: int | None
    right_track: int | None
    iou: float
    alternative: float
    joined: bool


@dataclass(frozen=True)
class Seam:
    """What the stitcher saw at one boundary: the shared frames and its proposed pairs."""

    index: int
    """The subsequence after the seam."""
    frame_start: int
    frame_stop: int
    pairs: tuple[SeamPair, ...]


def _tracks(*tracks: int | None) -> tuple[int, ...]:
    return tuple(sorted({t for t in tracks if t is not None}))


def _joined(seam: Seam, p: SeamPair, rule: MatchRule) -> Item | None:
    """A joined pair is suspect when its IoU is low (joined by the margin rule) or another pairing comes close."""
    weak = ramp(rule.threshold + 0.2 - p.iou, 0.0, rule.threshold + 0.2 - rule.floor)
    rival = ramp(p.alternative / max(p.iou, 1e-9), 0.3, 1.0)
    score = max(0.35 + 0.6 * weak if p.iou < rule.threshold else 0.4 * weak, 0.95 * rival)
    if score < 0.1:
        return None
    how = (
        f"joined through the margin rule (IoU {p.iou:.2f} below the threshold {rule.threshold:.2f})"
        if p.iou < rule.threshold
        else f"joined with overlap IoU {p.iou:.2f}"
    )
    rival_text = f"; the best other pairing has IoU {p.alternative:.2f}" if p.alternative > 0 else ""
    return _item(seam, p, score, f"track {p.left_track} continues as track {p.right_track}, {how}{rival_text}.")


def _item(seam: Seam, p: SeamPair, score: float, what: str) -> Item:
    tracks = _tracks(p.left_track, p.right_track)
    return Item(
        "seam",
        seam.frame_start,
        seam.frame_stop,
        tracks,
        round(score, 4),
        f"Seam before subsequence {seam.index}: {what}",
    )


def _cut(seam: Seam, p: SeamPair, rule: MatchRule) -> Item | None:
    """A pair the assignment proposed but the rule refused: one object may have become two tracks."""
    if p.iou <= 0 or p.left_track is None or p.right_track is None or p.left_track == p.right_track:
        return None
    score = 0.3 + 0.6 * ramp(p.iou, 0.0, rule.threshold)
    what = (
        f"track {p.left_track} and track {p.right_track} share overlap IoU {p.iou:.2f} but were kept apart "
        f"(threshold {rule.threshold:.2f}, floor {rule.floor:.2f}, best other pairing {p.alternative:.2f})."
    )
    return _item(seam, p, score, what)


def seam_items(seam: Seam, rule: MatchRule) -> list[Item]:
    """The suspect pairs of one seam."""
    out = []
    for p in seam.pairs:
        item = _joined(seam, p, rule) if p.joined else _cut(seam, p, rule)
        if item is not None:
            out.append(item)
    return out
