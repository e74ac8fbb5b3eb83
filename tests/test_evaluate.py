"""Evaluation with TrackEval metrics, on stress scenes segmented by the replay doubles through the real stitcher."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from sam2flow.core import rle
from sam2flow.readers.evaluate import EvaluationError, evaluate
from tests.replay import STRESS, run_scene, write_davis, write_mot
from tests.replay import STRESS_FRAMES as FRAMES

LENGTH, OVERLAP = 32, 16


@pytest.fixture(scope="module")
def perfect(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The stress scene with perfect replayed masks, and its DAVIS ground truth."""
    tmp = tmp_path_factory.mktemp("perfect")
    masks = run_scene(STRESS, tmp / "run", FRAMES, LENGTH, OVERLAP, every=1)
    return masks, write_davis(STRESS, FRAMES, tmp / "gt")


def test_perfect_masks_score_perfectly(perfect: tuple[Path, Path]) -> None:
    """Perfect replayed masks stitched by sam2flow: IDF1 = HOTA = J&F = 1 and no ID switch."""
    masks, gt = perfect
    m = evaluate(str(masks), gt)
    assert m["format"] == "davis" and m["gt_tracks"] == 4 and m["pred_tracks"] == 4
    assert m["IDSW"] == 0
    assert m["IDF1"] == pytest.approx(1.0) and m["HOTA"] == pytest.approx(1.0)
    assert m["J&F"] == pytest.approx(1.0)


def test_broken_stitching_is_caught(tmp_path: Path, perfect: tuple[Path, Path]) -> None:
    """With stitching switched off (threshold and floor above any IoU) the metrics show switches: the check can
    fail."""
    masks = run_scene(STRESS, tmp_path, FRAMES, LENGTH, OVERLAP, every=1, iou=1.5, min_iou=1.5)
    m = evaluate(str(masks), perfect[1])
    assert m["pred_tracks"] > 4 and m["IDSW"] > 0 and m["IDF1"] < 0.8


def test_mot_ground_truth(tmp_path: Path, perfect: tuple[Path, Path]) -> None:
    """MOT text ground truth (boxes) is read and compared by box IoU; J&F is not reported for boxes."""
    gt = write_mot(STRESS, FRAMES, tmp_path / "gt.txt")
    m = evaluate(str(perfect[0]), gt)
    assert m["format"] == "mot" and "J&F" not in m
    # Ground-truth boxes are whole squares; predicted boxes bound the visible mask, so while one look-alike hides
    # the other the box IoU drops below 0.5 for a few frames: misses, but never an ID switch.
    assert m["gt_tracks"] == 4 and m["IDSW"] == 0 and m["IDF1"] > 0.9


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda d: d / "missing", "does not exist"),
        (lambda d: (d / "empty").mkdir() or d / "empty", "holds no .png"),
        (lambda d: (d / "bad.txt").write_text("a,b,c\n") and d / "bad.txt", r"bad\.txt:1: expected frame,id"),
    ],
)
def test_bad_ground_truth(tmp_path: Path, perfect: tuple[Path, Path], make, match: str) -> None:  # type: ignore[no-untyped-def]
    """Unreadable ground truth gives one error naming the file and the expected format."""
    with pytest.raises(EvaluationError, match=match):
        evaluate(str(perfect[0]), make(tmp_path))


def test_evaluate_cli(tmp_path: Path, perfect: tuple[Path, Path]) -> None:
    """`sam2flow evaluate` prints the metrics and writes them as JSON."""
    import json
    import subprocess
    import sys

    out = tmp_path / "m.json"
    proc = subprocess.run(
        [sys.executable, "-m", "sam2flow.cli", "evaluate", str(perfect[0]), str(perfect[1]), "--json", str(out)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert "IDF1" in proc.stdout and json.loads(out.read_text())["IDSW"] == 0


def test_carry_mode_tracks_a_manual_object_through_the_video(tmp_path: Path) -> None:
    """Carry mode with no detector: one manual box on frame 0 is tracked to the end with a single track id."""
    box = list(STRESS.box(0, 0))
    masks = run_scene(
        STRESS, tmp_path, FRAMES, LENGTH, OVERLAP, every=1,
        overrides=("chunking.mode=carry", "detector.enabled=false", f"prompts=[{{frame: 0, box: {box}}}]"),
    )  # fmt: skip
    rows = pq.read_table(masks).to_pylist()
    assert [r["frame"] for r in rows] == list(range(FRAMES))
    assert {r["track_id"] for r in rows} == {1}
    assert all(np.array_equal(rle.decode(r["rle"], r["height"], r["width"]), STRESS.mask(0, r["frame"])) for r in rows)
    # Parallel mode cannot do this: the later subsequences have no prompt at all.
    parallel = run_scene(
        STRESS, tmp_path / "parallel", FRAMES, LENGTH, OVERLAP, every=1,
        overrides=("detector.enabled=false", f"prompts=[{{frame: 0, box: {box}}}]"),
    )  # fmt: skip
    assert max(r["frame"] for r in pq.read_table(parallel).to_pylist()) < LENGTH


def test_detector_blind_for_a_whole_subsequence(tmp_path: Path, perfect: tuple[Path, Path]) -> None:
    """A subsequence whose detector finds nothing: carry mode keeps every identity (perfect scores); parallel mode
    loses those frames and splits tracks there, but never swaps identities."""
    gt = perfect[1]
    carry = run_scene(
        STRESS,
        tmp_path / "carry",
        FRAMES,
        LENGTH,
        OVERLAP,
        every=1,
        overrides=("chunking.mode=carry",),
        blind=frozenset({2}),
    )
    m = evaluate(str(carry), gt)
    assert m["IDSW"] == 0 and m["IDF1"] == pytest.approx(1.0) and m["HOTA"] == pytest.approx(1.0)
    parallel = run_scene(STRESS, tmp_path / "parallel", FRAMES, LENGTH, OVERLAP, every=1, blind=frozenset({2}))
    m = evaluate(str(parallel), gt)
    assert m["pred_tracks"] > 4 and m["IDF1"] < 1.0
    gt_of_track: dict[int, set[int]] = {}
    for r in pq.read_table(parallel).to_pylist():
        mask = rle.decode(r["rle"], r["height"], r["width"])
        hit = [i for i in STRESS.present(r["frame"]) if np.array_equal(STRESS.mask(i, r["frame"]), mask)]
        gt_of_track.setdefault(r["track_id"], set()).update(hit)
    assert all(len(v) == 1 for v in gt_of_track.values()), gt_of_track


@pytest.mark.parametrize("mode", ["parallel", "carry"])
def test_objects_lost_for_a_frame_are_reacquired_not_duplicated(
    tmp_path: Path, perfect: tuple[Path, Path], mode: str
) -> None:
    """With 10 % of masks dropped, a detection of an object lost a frame ago re-prompts it: no duplicate tracks."""
    masks = run_scene(
        STRESS, tmp_path, FRAMES, LENGTH, OVERLAP, every=1, overrides=(f"chunking.mode={mode}",), noise=(0, 0, 0.1)
    )
    m = evaluate(str(masks), perfect[1])
    assert m["pred_tracks"] == 4, m
    assert m["IDF1"] > 0.9
