"""Stitching: the real prompting, part-file and stitching code driven by the replay test doubles."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sam2flow.config import load_config
from sam2flow.core import rle
from sam2flow.core.planning import plan_subsequences
from sam2flow.core.stitching import (
    FirstSeen,
    LinkState,
    MatchRule,
    ObjectRef,
    PairMatch,
    final_ids,
    joined,
    link_subsequence,
    propose_boundary,
)
from sam2flow.core.types import LocalObjId
from sam2flow.stages.segment.driver import SegmentSettings, segment_subsequence
from tests.replay import ReplaySegmenter, Scene, run_scene, thin_scene, track_purity
from tests.synth import Square

FRAMES, LENGTH, OVERLAP, EVERY = 100, 32, 16, 8
SCENE = Scene(
    (
        Square((255, 0, 0), y=10, x0=0, speed=1.5, size=20),  # crosses every boundary
        Square((0, 255, 0), y=40, x0=150, speed=-1.0, size=18, first=40),  # appears late, at a keyframe
        Square((0, 0, 255), y=70, x0=20, speed=0.5, size=24, last=50),  # disappears early, inside an overlap
        Square((255, 255, 0), y=90, x0=60, speed=1.0, size=16, first=70, last=90),  # comes and goes mid-video
    )
)


def run_replay(tmp: Path, seed: int) -> Path:
    """The stress scene through the real driver and stitcher, with the replay doubles."""
    return run_scene(SCENE, tmp, FRAMES, LENGTH, OVERLAP, EVERY, seed)


def gt_of_row(frame: int, counts: str) -> int:
    """Which ground-truth square a row's mask is (exact match)."""
    mask = rle.decode(counts, SCENE.height, SCENE.width)
    hits = [i for i in SCENE.present(frame) if np.array_equal(SCENE.mask(i, frame), mask)]
    assert len(hits) == 1, f"frame {frame}: mask matches {hits}"
    return hits[0]


def first_keyframe_at_or_after(frame: int) -> int:
    """The first frame at which some subsequence's detector runs, at or after ``frame``."""
    keys = {s.start + k for s in plan_subsequences(FRAMES, LENGTH, OVERLAP) for k in range(0, s.length, EVERY)}
    return min(k for k in keys if k >= frame)


def test_every_object_keeps_one_track_id(tmp_path: Path) -> None:
    """Objects crossing boundaries, appearing late and leaving early each keep one id; ids differ between objects."""
    table = pq.read_table(run_replay(tmp_path, seed=0)).to_pylist()
    tracks_of: dict[int, set[int]] = {}
    frames_of: dict[int, set[int]] = {}
    for row in table:
        gt = gt_of_row(row["frame"], row["rle"])
        tracks_of.setdefault(gt, set()).add(row["track_id"])
        frames_of.setdefault(gt, set()).add(row["frame"])
    assert set(tracks_of) == {0, 1, 2, 3}
    assert all(len(t) == 1 for t in tracks_of.values()), tracks_of
    assert len({next(iter(t)) for t in tracks_of.values()}) == 4
    for gt, sq in enumerate(SCENE.squares):
        expected = set(range(first_keyframe_at_or_after(sq.first), min(sq.last, FRAMES - 1) + 1))
        assert frames_of[gt] == expected, f"object {gt} is missing frames {sorted(expected - frames_of[gt])}"
    # One row per (frame, track), sorted; ids numbered 1.. by first appearance.
    keys = [(r["frame"], r["track_id"]) for r in table]
    assert keys == sorted(set(keys))
    first = {}
    for r in table:
        first.setdefault(r["track_id"], r["frame"])
    assert sorted(first) == [1, 2, 3, 4]
    assert [first[t] for t in sorted(first)] == sorted(first.values())


def test_tracks_table_matches_masks(tmp_path: Path) -> None:
    """tracks.parquet rows agree with the mask rows of each track."""
    masks = pq.read_table(run_replay(tmp_path, seed=0)).to_pylist()
    tracks = pq.read_table(tmp_path / "tracks.parquet").to_pylist()
    for t in tracks:
        rows = [r for r in masks if r["track_id"] == t["track_id"]]
        assert t["num_frames"] == len(rows)
        assert t["first_frame"] == min(r["frame"] for r in rows)
        assert t["last_frame"] == max(r["frame"] for r in rows)
        assert t["class_name"] == "square"


def test_permuting_local_ids_changes_nothing(tmp_path: Path) -> None:
    """Shuffling detection order (so local ids differ in every subsequence) gives an identical masks.parquet."""
    a = pq.read_table(run_replay(tmp_path / "a", seed=0))
    b = pq.read_table(run_replay(tmp_path / "b", seed=7))

    def local_ids(run: str) -> dict[tuple[int, int, str], int]:
        out = {}
        for part in sorted((tmp_path / run).glob("part-*.parquet")):
            for r in pq.read_table(part).to_pylist():
                out[(int(part.stem.split("-")[1]), r["frame"], r["rle"])] = r["obj_id"]
        return out

    assert local_ids("a") != local_ids("b"), "the shuffle should have changed local ids"
    assert a.equals(b)


FIXED = (1.0, 1.0)  # floor and margin: a fixed threshold
MARGIN = (0.05, 2.0)  # the default floor and margin


@pytest.mark.parametrize(
    ("left", "right", "threshold", "rule", "expected"),
    [
        # identical masks match; a disjoint one does not
        ({0: {1: "a"}}, {0: {5: "a"}}, 0.5, FIXED, [(1, 5)]),
        ({0: {1: "a"}}, {0: {5: "b"}}, 0.5, FIXED, []),
        ({0: {1: "a"}}, {0: {5: "b"}}, 0.5, MARGIN, []),
        # present together on one of two frames: mean IoU 0.5, below a 0.6 threshold
        ({0: {1: "a"}, 1: {1: "a"}}, {0: {5: "a"}}, 0.6, FIXED, []),
        ({0: {1: "a"}, 1: {1: "a"}}, {0: {5: "a"}}, 0.5, FIXED, [(1, 5)]),
        # ... but with no other candidate at all it clearly is that object
        ({0: {1: "a"}, 1: {1: "a"}}, {0: {5: "a"}}, 0.6, MARGIN, [(1, 5)]),
        # two candidates for one object: one-to-one keeps the best only
        ({0: {1: "a", 2: "c"}}, {0: {5: "a"}}, 0.1, FIXED, [(1, 5)]),
        # "c" overlaps "a" (IoU 0.125): "a"-"a" at 0.5 over two frames beats it exactly 4 times
        ({0: {1: "a", 2: "c"}, 1: {1: "a"}}, {0: {5: "a"}}, 0.6, (0.1, 4.0), [(1, 5)]),
        ({0: {1: "a", 2: "c"}, 1: {1: "a"}}, {0: {5: "a"}}, 0.6, (0.1, 4.5), []),
        # below the floor nothing joins, however clear
        ({0: {1: "a"}, 1: {1: "a"}, 2: {1: "a"}, 3: {1: "a"}}, {0: {5: "a"}}, 0.6, (0.3, 4.0), []),
    ],
)
def test_match_boundary_table(left, right, threshold, rule, expected) -> None:  # type: ignore[no-untyped-def]
    """Boundary matching is one-to-one by mean IoU over the overlap; a pair is kept above the threshold, or above
    the floor when it beats every alternative of both objects by the margin."""
    masks = {"a": (0, 4), "b": (6, 10), "c": (3, 8)}
    enc = {}
    for name, (x0, x1) in masks.items():
        m = np.zeros((4, 10), bool)
        m[:, x0:x1] = True
        enc[name] = rle.encode(m)
    lft = {f: {LocalObjId(o): enc[n] for o, n in objs.items()} for f, objs in left.items()}
    rgt = {f: {LocalObjId(o): enc[n] for o, n in objs.items()} for f, objs in right.items()}
    frames = sorted({*left, *right})
    got = joined(propose_boundary(0, 1, lft, rgt, frames, 4, 10, MatchRule(threshold, *rule)))
    assert [(m.left[1], m.right[1]) for m in got] == expected


@pytest.mark.parametrize("width", [2, 3])
def test_thin_objects_keep_one_track_each_where_a_fixed_threshold_fragments(tmp_path: Path, width: int) -> None:
    """Bars 2-3 px wide, crossing and touching, with masks shifted by up to 2 px on every frame: correct pairs share
    about 0.2-0.4 mean IoU across a boundary while wrong ones stay near 0. The margin-aware rule keeps one track per
    bar and never mixes two; a fixed threshold of 0.5 (floor 0.5) fragments them."""
    scene = thin_scene(width)
    common = {"frames": 96, "length": 32, "overlap": 16, "every": 32, "noise": (2, 0, 0.0)}
    for seed in range(3):
        masks = run_scene(scene, tmp_path / f"margin-{seed}", seed=seed, iou=0.5, **common)  # type: ignore[arg-type]
        assert track_purity(scene, masks) == (0, 0, 4), f"seed {seed}"
    fixed = run_scene(scene, tmp_path / "fixed", seed=0, iou=0.5, min_iou=0.5, **common)  # type: ignore[arg-type]
    fragments, mixed, tracks = track_purity(scene, fixed)
    assert fragments >= 4 and mixed == 0 and tracks > 4


def test_track_numbering_ignores_local_ids() -> None:
    """Tracks are numbered by first appearance, ties broken by the object's own box, not its local id."""
    first = {LocalObjId(0): (0, 50.0, 0.0, 60.0, 10.0, "x"), LocalObjId(1): (0, 10.0, 0.0, 20.0, 10.0, "y")}
    swapped = {LocalObjId(1): first[LocalObjId(0)], LocalObjId(0): first[LocalObjId(1)]}
    a = link_subsequence(None, 0, [], first, {}).track_of
    b = link_subsequence(None, 0, [], swapped, {}).track_of
    assert a[LocalObjId(1)] == 1 and a[LocalObjId(0)] == 2
    assert b[LocalObjId(0)] == 1 and b[LocalObjId(1)] == 2


def _seen(*xs: float) -> dict[LocalObjId, FirstSeen]:
    """Objects 0, 1, … first seen on frame 0 at these x positions (so their first-appearance order is known)."""
    return {LocalObjId(i): (0, x, 0.0, x + 5.0, 5.0, "r") for i, x in enumerate(xs)}


def test_prompted_ids_are_track_ids_and_detector_tracks_come_after() -> None:
    """Objects prompted as 2 and 1 keep those numbers whatever their first appearance; unnamed tracks take the
    ids after the config's prompts and skip every id a prompt uses (a correction's new object 4)."""
    named = {LocalObjId(0): 2, LocalObjId(1): 1}  # object 2 appears first
    state = link_subsequence(None, 0, [], _seen(0, 10, 20, 30), {}, named, first_track=3, skip=frozenset({1, 2, 4}))
    assert state.track_of == {0: 2, 1: 1, 2: 3, 3: 5}
    assert state.names == {1, 2} and state.next_track == 6


def test_a_prompt_naming_a_detector_track_keeps_every_number() -> None:
    """A correction prompt on a later subsequence naming the track the detector found (obj_id 4): that track is
    4 from its start, and the other unnamed tracks keep the numbers they had before the correction."""
    skip = frozenset({1, 4})
    s0 = link_subsequence(None, 0, [], _seen(0, 10, 20, 30), {}, {LocalObjId(0): 1}, first_track=2, skip=skip)
    assert s0.track_of == {0: 1, 1: 2, 2: 3, 3: 5}  # provisional: 4 is reserved for the prompt
    right = [PairMatch((0, LocalObjId(i)), (1, LocalObjId(i)), 0.9) for i in range(4)]
    s1 = link_subsequence(s0, 1, right, _seen(0, 10, 20, 30, 40), {}, {LocalObjId(2): 4}, skip=skip)
    assert s1.aliases == {3: 4} and s1.track_of == {0: 1, 1: 2, 2: 4, 3: 5, 4: 6}
    final = final_ids([s0, s1])
    assert [final[t] for t in (1, 2, 3, 5, 6)] == [1, 2, 4, 3, 5]
    assert final_ids([s0]) == {1: 1, 2: 2, 3: 3, 5: 5}  # no alias: every id is its own


def test_a_name_seen_before_does_not_take_over_another_track() -> None:
    """A prompt naming object 1 again on an object that continues another track cuts that track: only a name's
    first appearance takes over the track it continues."""
    s0 = link_subsequence(None, 0, [], _seen(0, 10), {}, {LocalObjId(0): 1}, first_track=2, skip=frozenset({1}))
    right = [PairMatch((0, LocalObjId(1)), (1, LocalObjId(0)), 0.9)]
    s1 = link_subsequence(s0, 1, right, _seen(10), {}, {LocalObjId(0): 1}, skip=frozenset({1}))
    assert s1.aliases == {} and s1.track_of == {0: 1}
    assert final_ids([s0, s1]) == {1: 1, 2: 2}


def _tracks_by_union_find(first_seen: dict[ObjectRef, FirstSeen], matches: list[PairMatch]) -> dict[ObjectRef, int]:
    """Reference: join all matched objects at once (union-find), number components by earliest first appearance."""
    parent: dict[ObjectRef, ObjectRef] = {}

    def find(x: ObjectRef) -> ObjectRef:
        while parent.setdefault(x, x) != x:
            x = parent[x]
        return x

    for m in matches:
        parent[find(m.left)] = find(m.right)
    earliest: dict[ObjectRef, FirstSeen] = {}
    for ref, key in first_seen.items():
        root = find(ref)
        earliest[root] = min(earliest.get(root, key), key)
    number = {root: n + 1 for n, root in enumerate(sorted(earliest, key=lambda r: earliest[r]))}
    return {ref: number[find(ref)] for ref in first_seen}


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_linking_subsequence_by_subsequence_equals_joining_all_at_once(data: st.DataObject) -> None:
    """Track ids linked one subsequence at a time (bounded state) equal those of one union-find over all matches,
    including objects seen only on frames another subsequence owns, and the class votes of each track add up."""
    n_subs = data.draw(st.integers(1, 6))
    objects = [data.draw(st.integers(0, 4)) for _ in range(n_subs)]
    first_seen: dict[ObjectRef, FirstSeen] = {}
    votes: dict[ObjectRef, dict[tuple[int, str], int]] = {}
    for i, n in enumerate(objects):
        for o in range(n):
            if data.draw(st.booleans()):  # present on the frames this subsequence owns
                frame = 10 * i + data.draw(st.integers(0, 9))
                first_seen[(i, LocalObjId(o))] = (frame, float(data.draw(st.integers(0, 3))), 0.0, 1.0, 1.0, "r")
                votes[(i, LocalObjId(o))] = {(data.draw(st.integers(0, 1)), "c"): data.draw(st.integers(1, 3))}
    matches: list[PairMatch] = []
    for i in range(1, n_subs):
        left = data.draw(st.permutations(range(objects[i - 1])))
        right = data.draw(st.permutations(range(objects[i])))
        pairs = data.draw(st.integers(0, min(len(left), len(right))))
        matches += [PairMatch((i - 1, LocalObjId(a)), (i, LocalObjId(b)), 1.0) for a, b in zip(left[:pairs], right)]
    expected = _tracks_by_union_find(first_seen, matches)
    state = None
    got: dict[ObjectRef, int] = {}
    total: dict[int, dict[tuple[int, str], int]] = {}
    for i in range(n_subs):
        state = link_subsequence(
            state,
            i,
            [m for m in matches if m.right[0] == i],
            {o: k for (s, o), k in first_seen.items() if s == i},
            {o: v for (s, o), v in votes.items() if s == i},
        )
        got.update({(i, o): t for o, t in state.track_of.items() if (i, o) in first_seen})
        total.update(state.votes)
        assert LinkState.from_json(json.loads(json.dumps(state.to_json()))) == state
    assert got == expected
    for track in set(expected.values()):
        want: dict[tuple[int, str], int] = {}
        for ref, t in expected.items():
            if t == track:
                for key, k in votes[ref].items():
                    want[key] = want.get(key, 0) + k
        assert total[track] == want


def test_manual_prompts_with_and_without_obj_id(tmp_path: Path) -> None:
    """Prompts sharing an obj_id are one object (a correction on a later frame); other prompts are new objects."""
    a, c = SCENE.box(0, 0), SCENE.box(2, 0)
    prompts = (
        f"prompts=[{{frame: 0, obj_id: 7, box: {list(a)}, class_name: red}},"
        f" {{frame: 10, obj_id: 7, box: {list(SCENE.box(0, 10))}, class_name: red}},"
        f" {{frame: 0, box: {list(c)}, class_name: blue}}]"
    )
    cfg = load_config(None, ["detector.enabled=false", prompts])
    sub = plan_subsequences(FRAMES, LENGTH, OVERLAP)[0]
    uri = str(tmp_path / "part.parquet")
    stats = segment_subsequence(ReplaySegmenter(SCENE, sub), None, tmp_path, sub, SegmentSettings.from_config(cfg), uri)
    rows = pq.read_table(uri).to_pylist()
    assert stats.objects == 2
    by_obj = {}
    for r in rows:
        by_obj.setdefault(r["obj_id"], set()).add((r["class_name"], gt_of_row(r["frame"], r["rle"])))
    assert sorted(by_obj.values(), key=str) == sorted([{("red", 0)}, {("blue", 2)}], key=str)
    assert min(r["frame"] for r in rows) == 0 and {r["class_id"] for r in rows} == {-1}


@pytest.mark.parametrize(
    ("candidate", "existing", "duplicate"),
    [
        ((0, 10, 0, 10), [(0, 10, 0, 10)], True),  # the same mask
        ((0, 10, 0, 10), [(20, 30, 20, 30)], False),  # elsewhere
        ((0, 4, 0, 10), [(0, 10, 0, 10)], True),  # mostly inside a tracked object (a part, or a partly hidden one)
        ((0, 10, 0, 10), [(0, 10, 5, 30)], False),  # half overlapping a bigger one: IoU 0.2, half inside
        (None, [(0, 10, 0, 10)], True),  # empty: SAM2 sees nothing there
        ((0, 10, 0, 10), [], False),  # nothing tracked yet
    ],
)
def test_is_duplicate_mask(candidate, existing, duplicate) -> None:  # type: ignore[no-untyped-def]
    """A new object's first mask is a duplicate when empty, overlapping (IoU) or mostly inside a tracked mask."""
    from sam2flow.core.prompts import is_duplicate_mask

    def rect(r: tuple[int, int, int, int] | None) -> np.ndarray:
        m = np.zeros((40, 40), bool)
        if r is not None:
            m[r[0] : r[1], r[2] : r[3]] = True
        return m

    assert is_duplicate_mask(rect(candidate), [rect(e) for e in existing], 0.5) is duplicate


@pytest.mark.parametrize(
    ("style", "points", "has_box"),
    [
        ("box", (), True),
        ("center", ((15.0, 30.0),), False),
        ("vertical", ((15.0, 20.0), (15.0, 30.0), (15.0, 40.0)), False),
    ],
)
def test_prompt_styles(style: str, points: tuple[tuple[float, float], ...], has_box: bool) -> None:
    """A detector box becomes a box prompt, its centre point, or centre plus points along the vertical axis."""
    from sam2flow.core.prompts import new_object_prompts
    from sam2flow.core.types import Detections

    dets = Detections(np.array([[10, 10, 20, 50]], np.float32), np.array([0.9], np.float32), np.array([0]), ("person",))
    (p,) = new_object_prompts(dets, np.zeros((0, 4)), 0, 1, 0.5, style=style)  # type: ignore[arg-type]
    assert p.points == points and p.labels == (1,) * len(points) and (p.box is not None) == has_box
    assert p.class_name == "person"


@pytest.mark.parametrize("style", ["center", "vertical"])
def test_point_prompt_styles_track_every_object(tmp_path: Path, style: str) -> None:
    """Point prompt styles go through the whole driver and stitcher: every object keeps one track id."""
    cfg_style = (f"detector.prompt_style={style}",)
    table = pq.read_table(run_scene(SCENE, tmp_path, FRAMES, LENGTH, OVERLAP, EVERY, overrides=cfg_style)).to_pylist()
    tracks_of: dict[int, set[int]] = {}
    for row in table:
        tracks_of.setdefault(gt_of_row(row["frame"], row["rle"]), set()).add(row["track_id"])
    assert set(tracks_of) == {0, 1, 2, 3} and all(len(t) == 1 for t in tracks_of.values())
