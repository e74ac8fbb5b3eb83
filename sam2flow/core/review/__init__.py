"""The review list: the moments of a run most likely to be wrong, ranked, each with the evidence to judge it.

Pure logic over what a run already has (no model, no I/O): the stitcher's boundary matches (`seams`), the masks of
every track frame by frame (`tracks`) and the detector's keyframe boxes (`detections`). Each signal yields `Item`\\ s
with a score in [0, 1] (how likely an error); `rank` merges items of one kind and one set of tracks that touch, and
orders them, 1 = look first.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

KINDS = {
    "seam": "identity at a subsequence seam: a weak or ambiguous match, or a track cut at the seam",
    "swap": "two tracks exchange places between consecutive frames",
    "takeover": "a track jumps onto the place another track held on the frame before",
    "jump": "a track's mask jumps (position, size or shape) between consecutive frames",
    "overlap": "two tracks' masks cover the same pixels",
    "fragment": "a track ends and another starts near where it ended, soon after",
    "gap": "a track is missing for some frames and comes back",
    "appears": "a track starts inside the picture, away from the border and from other tracks",
    "vanishes": "a track ends inside the picture, away from the border and from other tracks",
    "short": "a track lasting only a few frames",
    "missed": "the detector found an object no track covers",
    "drift": "a track with no detector support over several keyframes",
    "low-score": "a stretch of frames where SAM2's object score of a track stays low",
}
"""Every kind of review item, with what it means (the README's table)."""


@dataclass(frozen=True)
class Item:
    """One moment to look at.

    Attributes:
        kind: One of `KINDS`.
        frame_start: The first frame of the moment.
        frame_stop: One past its last frame.
        track_ids: The tracks involved (empty for a missed object).
        score: How likely this is an error, in [0, 1].
        evidence: One sentence: what was seen, with the numbers.
    """

    kind: str
    frame_start: int
    frame_stop: int
    track_ids: tuple[int, ...]
    score: float
    evidence: str

    @property
    def key(self) -> str:
        """A name for the item that stays the same when the run is stitched again with the same result: how a
        "reviewed" mark finds it."""
        tracks = ",".join(str(t) for t in self.track_ids)
        return f"{self.kind}:{self.frame_start}-{self.frame_stop}:{tracks}"


def ramp(x: float, lo: float, hi: float) -> float:
    """0 at or below ``lo``, 1 at or above ``hi``, linear between."""
    if hi <= lo:
        return float(x >= hi)
    return min(1.0, max(0.0, (x - lo) / (hi - lo)))


MERGE_FRAMES = 3
"""Items of one kind and one set of tracks whose frames are at most this far apart become one item."""


def merge(items: Iterable[Item]) -> list[Item]:
    """Items of one kind and one set of tracks that touch (within `MERGE_FRAMES`) as one item: the union of their
    frames, the highest score and that item's evidence."""
    groups: dict[tuple[str, tuple[int, ...]], list[Item]] = {}
    for item in items:
        groups.setdefault((item.kind, item.track_ids), []).append(item)
    out: list[Item] = []
    for group in groups.values():
        group.sort(key=lambda i: (i.frame_start, i.frame_stop))
        current = group[0]
        for item in group[1:]:
            if item.frame_start <= current.frame_stop + MERGE_FRAMES:
                best = item if item.score > current.score else current
                stop = max(current.frame_stop, item.frame_stop)
                current = replace(best, frame_start=current.frame_start, frame_stop=stop)
            else:
                out.append(current)
                current = item
        out.append(current)
    return out


MIN_SCORE = 0.1
"""Items scored below this are not listed."""


def rank(items: Iterable[Item]) -> list[Item]:
    """The items worth listing (`MIN_SCORE`), merged, best first: by score, then frame, kind and tracks."""
    kept = [i for i in merge(items) if i.score >= MIN_SCORE]
    return sorted(kept, key=lambda i: (-round(i.score, 6), i.frame_start, i.kind, i.track_ids))
