"""Reference identities: making and verifying a library, the replayed blind-subsequence scene, and the real SAM2
path (reference frames never emitted, exact frame indices, bounded memory)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from sam2flow.config import ConfigError, load_config
from sam2flow.readers.evaluate import evaluate
from sam2flow.readers.references import ReferenceError, load_references, make_references, parse_tracks
from tests.replay import STRESS, STRESS_FRAMES, finished_run, run_scene, write_davis

ROOT = Path(__file__).resolve().parents[1]
REF_FRAME = 34  # every square of STRESS is on it and in the finished run, none hidden


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[int, str]]:
    """A finished run of the stress scene and a library of its four tracks, made by the command."""
    tmp = tmp_path_factory.mktemp("refs")
    run = finished_run(STRESS, tmp, STRESS_FRAMES)
    names = {1: "red", 2: "dark_a", 3: "dark_b", 4: "green"}
    lib = tmp / "lib"
    cmd = [sys.executable, "-m", "sam2flow.cli", "references", "make", str(run), "--frames", f"{REF_FRAME},60",
           "--tracks", ",".join(f"{t}:{n}" for t, n in names.items()), "--dest", str(lib)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    return run, lib, names


def test_a_library_names_each_track_and_verifies_its_files(library: tuple[Path, Path, dict[int, str]]) -> None:
    """A reference library holds each named track's masks on its frames; tampered or stray files are clear errors."""
    run, lib, names = library
    refs = load_references(lib)
    assert [(i.name, i.track_id) for i in refs.identities] == [(n, t) for t, n in names.items()]
    assert [f.source_frame for f in refs.frames] == [REF_FRAME, 60]
    first = refs.frames[0]
    assert first.rgb.shape == (STRESS.height, STRESS.width, 3) and set(first.masks) == set(names.values())
    masks = pq.read_table(run / "masks.parquet").to_pylist()
    from sam2flow.core import rle

    for r in (r for r in masks if r["frame"] == REF_FRAME):
        assert np.array_equal(first.masks[names[r["track_id"]]], rle.decode(r["rle"], r["height"], r["width"]))

    # Tampering, truncation and stray paths are clear errors naming the file.
    bad = lib.parent / "bad"
    import shutil

    shutil.copytree(lib, bad)
    png = next(bad.glob("*-red.png"))
    png.write_bytes(png.read_bytes()[:-1] + b"\0")
    with pytest.raises(ReferenceError, match=r"does not match the sha256"):
        load_references(bad)
    manifest = json.loads((bad / "references.json").read_text())
    manifest["frames"][0]["image"] = "../clip.mp4"
    (bad / "references.json").write_text(json.dumps(manifest))
    with pytest.raises(ReferenceError, match="plain file name"):
        load_references(bad)
    (bad / "references.json").write_text("{not json")
    with pytest.raises(ReferenceError, match="not a valid reference library"):
        load_references(bad)
    with pytest.raises(ReferenceError, match=r"no references\.json"):
        load_references(lib.parent)
    with pytest.raises(ReferenceError, match="exists"):
        make_references(str(run), [REF_FRAME], {1: "red"}, lib)
    with pytest.raises(ReferenceError, match="have no mask"):
        make_references(str(run), [0], {4: "green"}, lib.parent / "new")  # green enters on frame 20
    assert not (lib.parent / "new").exists()
    with pytest.raises(ReferenceError, match="<track id>:<name>"):
        parse_tracks("1:mouse a")
    with pytest.raises(ConfigError, match=r"chunking\.mode: parallel"):
        load_config(None, [f"references.path={lib}", "chunking.mode=carry"])
    from sam2flow.control.preflight import check_references

    assert check_references(load_config(None, [f"references.path={lib}", "segmenter.max_cond_frames=3"]))
    with pytest.raises(ConfigError, match=r"holds 2 frames; segmenter\.max_cond_frames \(2\) must be larger"):
        check_references(load_config(None, [f"references.path={lib}", "segmenter.max_cond_frames=2"]))


def test_references_keep_every_identity_where_the_detector_is_blind(
    tmp_path: Path, library: tuple[Path, Path, dict[int, str]]
) -> None:
    """Parallel mode with the detector blind for subsequence 2 loses identities; with references each square is
    its identity in every subsequence: IDF1 and HOTA 1, track ids and names from the library."""
    _, lib, names = library
    gt = write_davis(STRESS, STRESS_FRAMES, tmp_path / "gt")
    blind = frozenset({2})
    plain = evaluate(str(run_scene(STRESS, tmp_path / "plain", STRESS_FRAMES, 32, 16, every=1, blind=blind)), gt)
    masks = run_scene(
        STRESS, tmp_path / "refs", STRESS_FRAMES, 32, 16, every=1, blind=blind, overrides=(f"references.path={lib}",)
    )
    refs = evaluate(str(masks), gt)
    print(f"IDF1 without references {plain['IDF1']:.3f}, with {refs['IDF1']:.3f}")
    assert plain["IDF1"] < 0.9
    assert refs["IDF1"] == pytest.approx(1.0) and refs["HOTA"] == pytest.approx(1.0) and refs["IDSW"] == 0
    tracks = pq.read_table(tmp_path / "refs" / "tracks.parquet").to_pylist()
    assert {(t["track_id"], t["class_name"]) for t in tracks} == set(names.items())
    # Each identity's track follows the square its library masks show (checked on the reference frame itself).
    rows = [r for r in pq.read_table(masks).to_pylist() if r["frame"] == REF_FRAME]
    lib_refs = load_references(lib)
    from sam2flow.core import rle

    for r in rows:
        want = lib_refs.frames[0].masks[names[r["track_id"]]]
        assert np.array_equal(rle.decode(r["rle"], r["height"], r["width"]), want)


def test_real_sam2_starts_from_the_references(tmp_path: Path) -> None:
    """The real SAM2 adapter (random weights) with two reference frames: no row for them, frame indices exact
    (the subsequence's own), per-frame outputs released as without references, and the reference frames held as
    conditioning frames only."""
    from PIL import Image

    from sam2flow.core.types import LocalObjId, ReferencePrompt, Subsequence
    from sam2flow.models import weights
    from sam2flow.models.segmenter import Sam2Segmenter
    from tests.synth import Square, draw_frame

    sq = Square((230, 40, 40), y=40, x0=10, speed=2.0, size=40)
    for i in range(24):
        Image.fromarray(draw_frame(i + 100, 160, 120, (sq,))).save(tmp_path / f"{i:05d}.jpg")
    seg = Sam2Segmenter(weights.resolve("random:sam2.1_hiera_tiny", "sam2"), "cpu", image_size=256, max_cond_frames=3)
    assert seg.predictor.max_cond_frames_in_attn == 3, "segmenter.max_cond_frames reaches SAM2"
    seg.memory_window = 8
    refs = []
    for f in (3, 70):
        mask = np.zeros((240, 320), bool)  # another size than the subsequence's frames: scaled to them
        x0, y0, x1, y1 = sq.box(f)
        mask[y0 * 2 : y1 * 2, x0 * 2 : x1 * 2] = True
        big = np.asarray(Image.fromarray(draw_frame(f, 160, 120, (sq,))).resize((320, 240)))
        refs.append(ReferencePrompt(big, {LocalObjId(0): mask}, f))
    sub = Subsequence(5, 100, 124)
    with seg.session(tmp_path) as s:
        s.add_references(refs)
        assert s.num_frames == sub.length
        out = list(s.propagate(0, 23))
        state = s._state["output_dict_per_obj"][0]
        held, cond = len(state["non_cond_frame_outputs"]), sorted(state["cond_frame_outputs"])
        with pytest.raises(RuntimeError, match="fresh session"):
            s.add_references(refs)
    assert [fm.frame for fm in out] == list(range(24))
    assert any(fm.obj_ids == (0,) for fm in out), "the identity is tracked from the references"
    assert cond == [0, 1] and held <= 9


@pytest.mark.slow
def test_a_run_with_references_names_its_tracks(tmp_path: Path, library: tuple[Path, Path, dict[int, str]]) -> None:
    """`sam2flow run` (smoke config: real SAM2 and YOLO with random weights) with the library and no other prompt:
    every row belongs to an identity under its name and track id, on the clip's own frames; a tampered library, or
    one with more identities than segmenter.max_objects, stops the run before it starts (exit 2)."""
    run, _, _ = library
    names = {1: "red", 2: "green"}
    lib = make_references(str(run), [REF_FRAME], {1: "red", 4: "green"}, tmp_path / "two")
    manifest = json.loads((run / "manifest.json").read_text())
    clip = manifest["input"]
    out = tmp_path / "out"

    def sam2flow(*args: str) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "sam2flow.cli", "run", clip, "--out", str(out), "--config", "configs/smoke.yaml",
               "--set", "detector.enabled=false", "--set", "prompts=[]", "--set", "chunking.length=24",
               "--set", "video.max_frames=24", "--set", "render.enabled=false", *args]  # fmt: skip
        return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)

    proc = sam2flow("--set", f"references.path={lib}", "--set", "segmenter.max_objects=2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    folder = next(out.iterdir())
    rows = pq.read_table(folder / "masks.parquet", columns=["frame", "track_id", "class_name"]).to_pylist()
    assert rows and {(r["track_id"], r["class_name"]) for r in rows} <= set(names.items())
    assert {r["frame"] for r in rows} <= set(range(STRESS_FRAMES))
    assert len({(r["frame"], r["track_id"]) for r in rows}) == len(rows)
    parts = list((folder / "parts").iterdir())
    assert len(parts) == 1

    bad = tmp_path / "bad"
    import shutil

    shutil.copytree(lib, bad)
    jpg = next(bad.glob("*.jpg"))
    jpg.write_bytes(jpg.read_bytes() + b"\0")
    proc = sam2flow("--set", f"references.path={bad}", "--set", "segmenter.max_objects=2")
    assert proc.returncode == 2 and "sha256" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    proc = sam2flow("--set", f"references.path={lib}", "--set", "segmenter.max_objects=1")
    assert proc.returncode == 2 and "segmenter.max_objects" in proc.stderr, proc.stderr[-2000:]
