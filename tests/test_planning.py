"""Subsequence planning and frame ownership."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sam2flow.core.planning import overlap_frames, owned_ranges, plan_subsequences
from sam2flow.core.types import Subsequence


@pytest.mark.parametrize(
    ("frames", "length", "overlap", "expected"),
    [
        (10, 64, 16, [(0, 10)]),
        (64, 64, 16, [(0, 64)]),
        (65, 64, 16, [(0, 64), (48, 65)]),
        (200, 64, 16, [(0, 64), (48, 112), (96, 160), (144, 200)]),
        (112, 64, 16, [(0, 64), (48, 112)]),
        (5, 3, 0, [(0, 3), (3, 5)]),
    ],
)
def test_plan_table(frames: int, length: int, overlap: int, expected: list[tuple[int, int]]) -> None:
    """Plans for known inputs are exactly the expected ranges."""
    assert [(s.start, s.stop) for s in plan_subsequences(frames, length, overlap)] == expected


@pytest.mark.parametrize(
    ("frames", "length", "overlap", "message"),
    [(0, 64, 16, "num_frames"), (10, 0, 0, "length"), (10, 16, 16, "overlap"), (10, 16, -1, "overlap")],
)
def test_plan_rejects_bad_input(frames: int, length: int, overlap: int, message: str) -> None:
    """Invalid plans raise ValueError naming the bad argument."""
    with pytest.raises(ValueError, match=message):
        plan_subsequences(frames, length, overlap)


@given(st.integers(1, 5000), st.integers(2, 300), st.data())
def test_plan_properties(frames: int, length: int, data: st.DataObject) -> None:
    """A plan covers every frame, neighbours share exactly O frames, and ownership is a disjoint cover."""
    overlap = data.draw(st.integers(0, length - 1))
    plan = plan_subsequences(frames, length, overlap)
    assert plan[0].start == 0 and plan[-1].stop == frames
    assert [s.index for s in plan] == list(range(len(plan)))
    assert all(s.length <= length for s in plan)
    for a, b in zip(plan, plan[1:]):
        assert len(overlap_frames(a, b)) == overlap
        assert b.stop > a.stop
    owned = owned_ranges(plan)
    flat = [f for r in owned for f in r]
    assert flat == list(range(frames))
    assert all(s.start <= r.start and r.stop <= s.stop for s, r in zip(plan, owned))


def test_local_global_mapping() -> None:
    """Local JPEG indices map to global frames in one place, and out-of-range frames are rejected."""
    sub = Subsequence(index=2, start=96, stop=160)
    assert sub.to_local(96) == 0 and sub.to_global(63) == 159
    with pytest.raises(ValueError):
        sub.to_local(160)
    with pytest.raises(ValueError):
        sub.to_global(64)
