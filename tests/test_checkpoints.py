"""Checkpoint resolution: names, random weights, paths, and clear failures."""

from __future__ import annotations

from pathlib import Path

import pytest

from sam2flow.io import checkpoints
from sam2flow.io.checkpoints import CheckpointError, ManifestEntry
from sam2flow.models import weights


def test_manifest_lists_the_official_models() -> None:
    """The manifest names the four SAM2.1 checkpoints (with their configs) and YOLO11 weights."""
    m = checkpoints.load_manifest()
    for size, cfg in (("tiny", "t"), ("small", "s"), ("base_plus", "b+"), ("large", "l")):
        e = m[f"sam2.1_hiera_{size}"]
        assert e.kind == "sam2" and e.config == f"configs/sam2.1/sam2.1_hiera_{cfg}.yaml"
        assert e.url.endswith(f"/092824/sam2.1_hiera_{size}.pt")
    assert m["yolo11n"].kind == "yolo"


def test_unreachable_download_fails_fast_naming_url(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A named checkpoint that is not cached and cannot be downloaded gives one message with the URL and the fix."""
    monkeypatch.setenv("SAM2FLOW_CACHE", str(tmp_path))
    entry = ManifestEntry(
        "sam2.1_hiera_tiny", "sam2", "configs/sam2.1/sam2.1_hiera_t.yaml", "http://127.0.0.1:9/x.pt", None
    )
    monkeypatch.setattr(checkpoints, "load_manifest", lambda: {entry.name: entry})
    with pytest.raises(CheckpointError) as err:
        checkpoints.resolve("sam2.1_hiera_tiny", "sam2")
    msg = str(err.value)
    assert "http://127.0.0.1:9/x.pt" in msg and "copy the file to" in msg and "smoke.yaml" in msg
    assert not list(tmp_path.rglob("*.pt*")), "no partial download is left behind"


def test_hash_mismatch_is_an_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A cached file whose sha256 differs from the manifest's is refused; an unknown hash is reported, not faked."""
    monkeypatch.setenv("SAM2FLOW_CACHE", str(tmp_path))
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "x.pt").write_bytes(b"weights")
    bad = ManifestEntry("m", "sam2", "c.yaml", "http://127.0.0.1:9/x.pt", "0" * 64)
    monkeypatch.setattr(checkpoints, "load_manifest", lambda: {"m": bad})
    with pytest.raises(CheckpointError, match="expected 0000"):
        checkpoints.resolve("m", "sam2")
    unknown = ManifestEntry("m", "sam2", "c.yaml", "http://127.0.0.1:9/x.pt", None)
    monkeypatch.setattr(checkpoints, "load_manifest", lambda: {"m": unknown})
    r = checkpoints.resolve("m", "sam2")
    assert r.verified is False and len(r.sha256) == 64


@pytest.mark.parametrize(
    ("spec", "kind", "match"),
    [
        ("no_such_model.pt", "sam2", "does not exist"),
        ("random:not_a_model", "sam2", "unknown sam2 checkpoint"),
        ("random:yolo11n", "sam2", "unknown sam2 checkpoint"),
    ],
)
def test_bad_specs(spec: str, kind: str, match: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Unknown names and missing files are rejected with a message saying what is accepted."""
    monkeypatch.setenv(checkpoints.CHECKPOINT_DIRS_ENV, "*")  # paths allowed: the file itself is what is missing
    with pytest.raises(CheckpointError, match=match):
        checkpoints.resolve(spec, kind)  # type: ignore[arg-type]


def test_random_checkpoints_load_through_the_real_loaders() -> None:
    """random:<name> writes real checkpoint files that sam2's builder and ultralytics load (strictly)."""
    from sam2flow.models.detector import YoloDetector
    from sam2flow.models.segmenter import Sam2Segmenter

    sam = weights.resolve("random:sam2.1_hiera_tiny", "sam2")
    yolo = weights.resolve("random:yolo11n", "yolo")
    assert sam.random_weights and yolo.random_weights and sam.path.is_file()
    seg = Sam2Segmenter(sam, "cpu", image_size=256)
    assert seg.image_size == 256
    det = YoloDetector(yolo, "cpu", 1e-4, 0.7, 320, ["person"])
    assert det.class_ids == [0] and det.names[0] == "person"


def test_sam2_releases_old_outputs_without_changing_masks(tmp_path: Path) -> None:
    """Outputs older than SAM2's memory window are released inside a subsequence, and the masks stay identical."""
    import numpy as np
    from PIL import Image

    from sam2flow.core.types import LocalObjId, ObjectPrompt
    from sam2flow.models.segmenter import Sam2Segmenter
    from tests.synth import Square, draw_frame

    sq = Square((230, 40, 40), y=40, x0=10, speed=2.0, size=40)
    for i in range(22):
        Image.fromarray(draw_frame(i, 160, 120, (sq,))).save(tmp_path / f"{i:05d}.jpg")
    seg = Sam2Segmenter(weights.resolve("random:sam2.1_hiera_tiny", "sam2"), "cpu", image_size=256)
    prompt = ObjectPrompt(LocalObjId(0), 0, -1, "square", box=(10.0, 40.0, 50.0, 80.0))

    def run(window: int | None) -> tuple[list[np.ndarray], int]:
        seg.memory_window = window
        with seg.session(tmp_path) as s:
            first = s.add(prompt)
            masks = [first.masks] + [fm.masks for fm in s.propagate(1, 21)]
            # SAM2's own state, read white-box: the largest number of per-frame outputs any object still holds.
            outputs = s._state["output_dict_per_obj"].values()
            return masks, max(len(o["non_cond_frame_outputs"]) for o in outputs)

    kept, kept_n = run(None)
    released, released_n = run(16)
    assert kept_n == 21 and released_n <= 17
    assert any(m.any() for m in kept)
    assert all(np.array_equal(a, b) for a, b in zip(kept, released))
    # Releasing inside the window would change what SAM2 reads, and so the masks: the check above can fail.
    too_short, _ = run(2)
    assert not all(np.array_equal(a, b) for a, b in zip(kept, too_short))


def test_absent_objects_give_no_mask() -> None:
    """When SAM2 says an object is absent (its mask logits are all negative), the adapter reports no mask for it."""
    import torch

    from sam2flow.models.segmenter import Sam2Session

    session = Sam2Session.__new__(Sam2Session)
    session._state = {
        "temp_output_dict_per_obj": {},
        "output_dict_per_obj": {
            i: {"cond_frame_outputs": {}, "non_cond_frame_outputs": {3: {"object_score_logits": torch.tensor([[s]])}}}
            for i, s in ((0, -9.0), (1, 2.0))
        },
    }
    logits = torch.full((2, 1, 8, 10), -1024.0)
    logits[1, 0, 2:5, 3:7] = 4.0
    fm = session._frame_masks(3, [7, 9], logits)
    assert fm.obj_ids == (9,) and fm.masks.shape == (1, 8, 10) and int(fm.masks.sum()) == 12
    assert abs(float(fm.scores[0]) - float(torch.sigmoid(torch.tensor(2.0)))) < 1e-6


def test_concurrent_random_checkpoints_are_the_seeded_ones(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Videos in flight resolve the same random checkpoint at once: one thread writes it, the others wait, and the
    weights are exactly the seeded ones (interleaved draws from torch's global generator would change them)."""
    from concurrent.futures import ThreadPoolExecutor

    import torch

    from sam2flow.models.weights import resolve

    monkeypatch.setenv("SAM2FLOW_CACHE", str(tmp_path / "one"))
    single = torch.load(resolve("random:sam2.1_hiera_tiny", "sam2").path, weights_only=True)["model"]
    monkeypatch.setenv("SAM2FLOW_CACHE", str(tmp_path / "many"))
    with ThreadPoolExecutor(3) as pool:
        paths = {r.path for r in pool.map(lambda _: resolve("random:sam2.1_hiera_tiny", "sam2"), range(3))}
    assert len(paths) == 1
    many = torch.load(paths.pop(), weights_only=True)["model"]
    assert single.keys() == many.keys() and all(torch.equal(single[k], many[k]) for k in single)
