"""Pure planning of subsequences and the frames each one owns in the final output."""

from __future__ import annotations

from sam2flow.core.types import Subsequence


def plan_subsequences(num_frames: int, length: int, overlap: int) -> list[Subsequence]:
    """Cover ``num_frames`` frames with subsequences of ``length`` frames sharing ``overlap`` frames.

    Consecutive subsequences share exactly ``overlap`` frames; the last one may be shorter but always extends past
    the previous one's end. A video no longer than ``length`` is a single subsequence.

    Args:
        num_frames: Frames in the video (after any frame limit).
        length: Frames per subsequence.
        overlap: Frames shared by neighbours, ``0 <= overlap < length``.

    Returns:
        The subsequences in order.

    Raises:
        ValueError: On a non-positive frame count or length, or an overlap outside ``[0, length)``.
    """
    if num_frames <= 0:
        raise ValueError(f"num_frames must be positive, got {num_frames}")
    if length <= 0:
        raise ValueError(f"length must be positive, got {length}")
    if not 0 <= overlap < length:
        raise ValueError(f"overlap must be in [0, length={length}), got {overlap}")
    step = length - overlap
    plan: list[Subsequence] = []
    start = 0
    while True:
        stop = min(start + length, num_frames)
        plan.append(Subsequence(index=len(plan), start=start, stop=stop))
        if stop == num_frames:
            return plan
        start += step


def overlap_frames(left: Subsequence, right: Subsequence) -> range:
    """Global frames shared by two neighbouring subsequences (empty when they do not overlap)."""
    return range(max(left.start, right.start), min(left.stop, right.stop))


def owned_ranges(plan: list[Subsequence]) -> list[range]:
    """The frames each subsequence contributes to the final output, a disjoint cover of the video.

    Inside an overlap, the first half (rounded down) comes from the earlier subsequence and the rest from the later
    one, so each side contributes the frames nearest its own prompts.
    """
    bounds = [plan[0].start]
    for left, right in zip(plan, plan[1:]):
        shared = overlap_frames(left, right)
        bounds.append(shared.start + len(shared) // 2)
    bounds.append(plan[-1].stop)
    return [range(a, b) for a, b in zip(bounds, bounds[1:])]
