"""SAM 3's tracker as the segmenter: built by Ultralytics' builder from a randomly initialised checkpoint in Meta's key
layout, loaded through the real code path, its masks checked against Ultralytics' own SAM 3 video predictor, and a
whole `sam2flow run` with it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from sam2flow.config import ConfigError, load_config
from sam2flow.io.checkpoints import CheckpointError, ResolvedCheckpoint, load_manifest
from tests.smoke import SMALL_OVERRIDES, SMOKE, SQUARES

SIZE = 336
"""SAM 3 rebuilt for 336 px (24×24 features): about 2 s a frame on a 2-core CPU, against 20 s at its native 1008."""


def _frames(folder: Path, count: int = 4) -> list[np.ndarray]:
    """Square BGR frames of a red block moving down over noise, written as JPEGs ``00000.jpg …``."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    out = []
    for i in range(count):
        im = np.full((SIZE, SIZE, 3), 90, np.int32)
        im[60 + 8 * i : 160 + 8 * i, 80:200] = (60, 60, 220)
        im = np.clip(im + rng.integers(-20, 20, im.shape), 0, 255).astype(np.uint8)
        cv2.imwrite(str(folder / f"{i:05d}.jpg"), im, [cv2.IMWRITE_JPEG_QUALITY, 100])
        out.append(cv2.imread(str(folder / f"{i:05d}.jpg")))
    return out


class _MemoriesInFloat16:
    """Test double for the ``torch`` module as ``sam2``'s video predictor sees it: ``torch.bfloat16`` (the dtype it
    stores memories in) reads as ``torch.float16``, Ultralytics' storage dtype; everything else is torch."""

    bfloat16 = torch.float16

    def __getattr__(self, name: str) -> object:
        return getattr(torch, name)


def _ultralytics_logits(path: Path, frames: list[np.ndarray], box: np.ndarray) -> np.ndarray:
    """What Ultralytics' ``SAM3VideoPredictor`` gives for ``box`` on the first frame, tracked through ``frames``:
    each frame's low-resolution mask logits ``(F, S/3.5, S/3.5)``."""
    from ultralytics.models.sam import SAM3VideoPredictor

    pred = SAM3VideoPredictor(overrides={"model": str(path), "imgsz": SIZE, "device": "cpu", "verbose": False})
    pred.setup_model(model=None, verbose=False)
    pred.imgsz = [SIZE, SIZE]  # what its setup_source does for a source of this size
    pred.model.set_imgsz(pred.imgsz)
    pred._bb_feat_sizes = [[int(x / (pred.stride * i)) for x in pred.imgsz] for i in (1 / 4, 1 / 2, 1)]
    state = pred._init_state(len(frames))
    out = []
    with torch.inference_mode():
        for i, bgr in enumerate(frames):
            state["im"] = pred.preprocess([bgr])
            if i == 0:
                points, labels, _ = pred._prepare_prompts(state["im"].shape[2:], (SIZE, SIZE), bboxes=box[None])
                pred.add_new_prompts(obj_id=1, points=points, labels=labels, frame_idx=0, inference_state=state)
                pred.propagate_in_video_preflight(state)
            _, logits, _ = pred.propagate_in_video(state, i)
            out.append(logits[0].float().numpy())
    return np.stack(out)


@pytest.mark.slow
def test_sam3_tracker_masks_equal_ultralytics_predictor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`random:sam3` is written by Ultralytics' builder in Meta's key layout, resolved and safety-scanned like every
    checkpoint, and loaded by Ultralytics' loader; sam2flow's session over it (SAM2's predictor bookkeeping) gives the
    mask logits Ultralytics' own SAM 3 video predictor gives for the same frames and box: on the prompted frame the
    same values, on tracked ones the same masks up to float rounding (with memories stored as Ultralytics stores
    them; sam2flow keeps them in bfloat16 as SAM2 does, where about 0.2 % of low-resolution pixels flip)."""
    from sam2flow.core.types import LocalObjId, ObjectPrompt
    from sam2flow.models import weights
    from sam2flow.models.sam3 import missing_weights
    from sam2flow.models.segmenter import Sam2Segmenter

    ckpt = weights.resolve("random:sam3", "sam2")
    assert ckpt.family == "sam3" and ckpt.random_weights and ckpt.verified
    raw = torch.load(ckpt.path, map_location="cpu", weights_only=True, mmap=True)["model"]
    assert any(k.startswith("detector.backbone.vision_backbone.") for k in raw)  # Meta's layout, mapped on load
    assert any(k.startswith("tracker.sam_mask_decoder.") for k in raw)

    frames = _frames(tmp_path / "frames")
    box = np.array([80, 60, 200, 160], np.float32)
    seg = Sam2Segmenter(ckpt, "cpu", image_size=SIZE, precision="fp32")
    assert seg.family == "sam3" and seg.image_size == SIZE
    # SAM2's predictor keeps memories in bfloat16, Ultralytics' in float16: stored as Ultralytics stores them, the
    # two predictors' outputs can be compared value for value.
    import sam2.sam2_video_predictor as svp

    monkeypatch.setattr(svp, "torch", _MemoriesInFloat16())
    with seg.session(tmp_path / "frames") as s:
        s.add(ObjectPrompt(LocalObjId(1), 0, 0, "block", box=(80.0, 60.0, 200.0, 160.0)))
        tracked = [fm.frame for fm in s.propagate(1, len(frames) - 1)]
        outputs = s._state["output_dict_per_obj"][0]
        mine = np.stack([
            (outputs["cond_frame_outputs"] | outputs["non_cond_frame_outputs"])[i]["pred_masks"][0, 0].float().numpy()
            for i in range(len(frames))
        ])  # fmt: skip
    theirs = _ultralytics_logits(ckpt.path, frames, box)
    assert mine.shape == theirs.shape == (len(frames), SIZE * 2 // 7, SIZE * 2 // 7)
    assert theirs.std() > 0.1  # the logits vary over the image: the comparison can fail
    assert np.array_equal(mine[0], theirs[0])  # the prompted frame: the same computation
    assert np.abs(mine - theirs).max() < 0.005  # tracked frames: float rounding (their std is above 0.1)
    sure = np.abs(theirs) >= 0.005  # random weights put many logits near 0; the masks agree wherever one is not
    assert sure.mean() > 0.9 and np.array_equal((mine > 0)[sure], (theirs > 0)[sure])
    assert tracked == list(range(1, len(frames)))

    # A file that lacks tracker weights is refused by name, not loaded as a half-random tracker.
    partial = tmp_path / "partial.pt"
    torch.save({"model": {k: v for k, v in raw.items() if not k.startswith("tracker.sam_mask_decoder.")}}, partial)
    missing = missing_weights(seg.predictor, partial)
    assert missing and all(k.startswith("sam_mask_decoder.") for k in missing)


def test_sam3_is_a_segmenter_checkpoint_with_its_licence() -> None:
    """The manifest names SAM 3 as a gated hub model with its licence; a segmenter spec may name it, a detector
    spec may not."""
    from sam2flow.io.checkpoints import _entry

    entry = load_manifest()["sam3"]
    assert entry.kind == "sam3" and entry.hub == "facebook/sam3" and entry.filename == "sam3.pt"
    assert entry.licence is not None and "SAM License" in entry.licence
    assert _entry("sam3", "sam2") == entry
    with pytest.raises(CheckpointError, match="unknown yolo checkpoint 'sam3'"):
        _entry("sam3", "yolo")


def test_segmenter_settings_are_checked_against_the_tracker() -> None:
    """A SAM 3 tracker takes input sizes in multiples of 14 and has no compiled build; SAM2 in multiples of 16."""
    from sam2flow.control.preflight import check_segmenter_settings

    sam3 = ResolvedCheckpoint("random:sam3", Path("/x/s3.pt"), "c", True, "a" * 64, True, "sam3")
    sam2 = ResolvedCheckpoint("random:sam2.1_hiera_tiny", Path("/x/s2.pt"), "c", True, "a" * 64, True, "sam2")
    check_segmenter_settings(load_config(SMOKE, ["segmenter.image_size=336"]), sam3)
    with pytest.raises(ConfigError, match=r"segmenter.image_size 256: random:sam3 is a SAM 3 tracker.*e.g. 252"):
        check_segmenter_settings(load_config(SMOKE, ["segmenter.image_size=256"]), sam3)
    with pytest.raises(ConfigError, match="multiple of 16"):
        check_segmenter_settings(load_config(SMOKE, ["segmenter.image_size=350"]), sam2)
    with pytest.raises(ConfigError, match=r"segmenter\.compile"):
        check_segmenter_settings(load_config(SMOKE, ["segmenter.image_size=336", "segmenter.compile=true"]), sam3)


def test_a_sam2_file_is_not_taken_for_sam3(tmp_path: Path) -> None:
    """Preflight reads the file (weights only, memory-mapped) and refuses a SAM 3 entry that holds no tracker."""
    from sam2flow.control.preflight import check_sam2_loadable

    path = tmp_path / "s.pt"
    torch.save({"model": {"image_encoder.trunk.w": torch.zeros(2)}}, path)
    ckpt = ResolvedCheckpoint("sam3", path, "c", False, "a" * 64, False, "sam3")
    with pytest.raises(CheckpointError, match="holds no SAM 3 tracker weights"):
        check_sam2_loadable(ckpt)
    torch.save({"tracker.x": torch.zeros(2)}, path)  # Meta's files are flat; sam2flow's random one nests "model"
    check_sam2_loadable(ckpt)


def test_gated_hub_checkpoint_offline_is_one_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Not in the hub's cache and offline: `sam2flow checkpoints fetch sam3` exits 2 with one message saying how to
    get access, no traceback."""
    env = {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "SAM2FLOW_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run(
        [sys.executable, "-m", "sam2flow.cli", "checkpoints", "fetch", "sam3"],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert "huggingface.co/facebook/sam3" in proc.stderr and "HF_TOKEN" in proc.stderr, proc.stderr


@pytest.mark.slow
def test_run_with_the_sam3_tracker_and_text_detector(tmp_path: Path) -> None:
    """`sam2flow run` with SAM 3 as the tracker and its concept detector finding objects by phrase: the detections
    prompt the tracker as YOLO's do, tracks are named by the phrases, and the manifest records both checkpoints with
    their family."""
    from tests.synth import write_clip

    clip = write_clip(tmp_path / "clip.mp4", frames=6, squares=SQUARES)
    sets = [*SMALL_OVERRIDES, "segmenter.checkpoint=random:sam3", f"segmenter.image_size={SIZE}", "prompts=[]",
            "detector.model=random:sam3", "detector.text=[red square, green square]", f"detector.image_size={SIZE}",
            "detector.confidence=0.1", "render.enabled=false"]  # fmt: skip
    args = ["run", str(clip), "--config", str(SMOKE), "--out", str(tmp_path / "out")]
    for s in sets:
        args += ["--set", s]
    proc = subprocess.run([sys.executable, "-m", "sam2flow.cli", *args], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run_dir,) = (tmp_path / "out").iterdir()
    manifest = json.loads((run_dir / "manifest.json").read_text())
    seg, det = manifest["checkpoints"]["sam2"], manifest["checkpoints"]["yolo"]
    assert seg["spec"] == det["spec"] == "random:sam3" and seg["family"] == det["family"] == "sam3"
    assert manifest["config"]["detector"]["text"] == ["red square", "green square"]
    rows = pq.read_table(run_dir / "masks.parquet").to_pylist()
    assert rows and {r["class_name"] for r in rows} <= {"red square", "green square"}
    assert 0 in {r["frame"] for r in rows}  # found on the first keyframe (random weights track it no further)
    subs = manifest["stages"]["segment"]["subsequences"]
    assert subs[0]["objects"] >= 1 and subs[0]["frames"] == 6
    assert "SAM 3 computes in" in proc.stderr


def test_clip_tokenizer_is_openai_clip_tokenize() -> None:
    """The text detector's tokenizer gives what OpenAI CLIP's own ``clip.tokenize`` gives with the real BPE
    vocabulary: start and end tokens, lower-cased BPE, truncation keeping the end token, zero padding."""
    import clip

    from sam2flow.models.text_detector import ClipTokenizer

    phrases = ["person", "White Mouse", "a very long phrase " * 10]
    ours = ClipTokenizer()(phrases, 32)
    assert torch.equal(ours, clip.tokenize(phrases, context_length=32, truncate=True))
    assert ours[0, :3].tolist() == [49406, 2533, 49407] and ours[2, -1].item() == 49407


@pytest.mark.slow
def test_text_detector_reads_the_phrases(tmp_path: Path) -> None:
    """SAM 3's concept detector, built by Ultralytics' builder from `random:sam3` with the real tokenizer: boxes in
    the image's pixels, classes named by the phrases, and the phrases change what it finds (the text path runs)."""
    from sam2flow.models import weights
    from sam2flow.models.text_detector import Sam3TextDetector

    ckpt = weights.resolve("random:sam3", "sam3")
    image = cv2.cvtColor(_frames(tmp_path / "frames", 1)[0], cv2.COLOR_BGR2RGB)[:240]  # 240×336
    det = Sam3TextDetector(ckpt, "cpu", ["person", "white mouse"], 0.1, 0.7, SIZE)
    found = {}
    for phrases in (["person", "white mouse"], ["red block"]):
        det.use(phrases)  # as the studio's Find does: the model stays loaded, the phrases change
        assert det.names == dict(enumerate(phrases))
        found[phrases[0]] = d = det(image)
        assert len(d) > 0 and set(d.class_names) <= set(phrases)
        assert (d.scores >= 0.1).all()
        assert (d.boxes >= 0).all() and (d.boxes[:, 2] <= SIZE).all() and (d.boxes[:, 3] <= 240).all()
    assert not np.array_equal(found["person"].scores[:1], found["red block"].scores[:1])


def test_text_detection_settings_are_checked(tmp_path: Path) -> None:
    """Phrases replace YOLO classes: both at once, a repeated phrase, a YOLO model or fine-tuning are refused by
    name."""
    from sam2flow.control.preflight import text_detector_checkpoint

    with pytest.raises(ConfigError, match=r"detector\.classes and detector\.text"):
        load_config(SMOKE, ["detector.text=[person]", "detector.classes=[person]"])
    with pytest.raises(ConfigError, match="given twice"):
        load_config(SMOKE, ["detector.text=[person, Person]"])
    with pytest.raises(CheckpointError, match=r"set detector\.model to sam3"):
        text_detector_checkpoint(load_config(SMOKE, ["detector.text=[person]"]))
    cfg = load_config(SMOKE, ["detector.text=[person]", "detector.model=random:sam3", "finetune.enabled=true"])
    from sam2flow.control.preflight import check_models

    with pytest.raises(ConfigError, match=r"detector\.text and finetune\.enabled"):
        check_models(cfg)
    unset, phrases = load_config(SMOKE), load_config(SMOKE, ["detector.text=[person]"])
    assert unset.digest() != phrases.digest()  # phrases name part files; unset leaves earlier digests as they were
