"""Configuration loading, validation and overrides."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel

from sam2flow.config import ConfigError, PipelineConfig, load_config, parse_override

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.mark.parametrize("name", sorted(p.name for p in CONFIGS.glob("*.yaml")))
def test_shipped_configs_load(name: str) -> None:
    """Every config in configs/ validates."""
    assert isinstance(load_config(CONFIGS / name), PipelineConfig)


def test_smoke_config_is_offline() -> None:
    """The smoke config uses random checkpoints at 256 px, a near-zero threshold with a cap, and a manual prompt."""
    cfg = load_config(CONFIGS / "smoke.yaml")
    assert cfg.segmenter.checkpoint.startswith("random:") and cfg.detector.model.startswith("random:")
    assert cfg.segmenter.image_size == 256
    assert cfg.detector.confidence < 1e-3 and cfg.detector.max_objects_per_keyframe <= 3
    assert cfg.prompts and cfg.prompts[0].frame == 0


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        (["chunking.lenght=10"], r"chunking\.lenght: unknown key"),
        (["bogus.key=1"], r"bogus: unknown key"),
        (["chunking.overlap=8"], r"chunking\.overlap"),
        (["chunking.length=32", "chunking.overlap=40"], r"overlap \(40\) must be smaller"),
        (["detector.confidence=2"], r"detector\.confidence"),
        (["segmenter.image_size=250"], r"multiple of 16"),
        (["runtime.device=tpu"], r"runtime\.device"),
        (["detector.enabled=false"], r"nothing to track"),
        (["prompts=[{frame: 0, points: [[1, 2]]}]"], r"exactly one label"),
        (["prompts=[{frame: 0, box: [5, 5, 1, 1]}]"], r"x0 < x1"),
        (["nodots"], r"section\.key=value"),
    ],
)
def test_invalid_config_is_rejected(overrides: list[str], match: str) -> None:
    """Unknown keys and invalid values are rejected with a message naming the key."""
    with pytest.raises(ConfigError, match=match):
        load_config(None, overrides)


def test_overrides_apply_and_parse_yaml() -> None:
    """Overrides set nested values with YAML typing."""
    cfg = load_config(
        CONFIGS / "smoke.yaml", ["chunking.length=40", "detector.classes=[person, 2]", "video.max_frames=null"]
    )
    assert cfg.chunking.length == 40
    assert cfg.detector.classes == ["person", 2]
    assert cfg.video.max_frames is None
    assert parse_override("a.b= true") == ("a.b", True)


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    """A missing file and a non-mapping file each give one clear error naming the file."""
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml must hold a mapping"):
        load_config(bad)


def test_digest_tracks_results_not_rendering() -> None:
    """The config digest (which names part files) changes with segmentation settings, not with render settings."""
    base = load_config(None)
    assert base.digest() == load_config(None, ["render.alpha=0.1"]).digest()
    assert base.digest() != load_config(None, ["detector.confidence=0.5"]).digest()


def test_digest_covers_exactly_what_changes_the_masks() -> None:
    """Settings no mask depends on leave the digest alone; the same settings change it once they take effect."""
    base = load_config(None)
    assert base.digest() == load_config(None, ["finetune.epochs=3"]).digest(), "fine-tuning is off"
    assert base.digest() == load_config(None, ["video.max_frames=48"]).digest(), "part files are named by range"
    assert base.digest() == load_config(None, ["segmenter.offload_video_to_cpu=true"]).digest()
    manual = ["detector.enabled=false", "prompts=[{frame: 0, box: [0, 0, 10, 10]}]"]
    assert load_config(None, manual).digest() == load_config(None, [*manual, "detector.confidence=0.9"]).digest()
    tuned = ["finetune.enabled=true", "prompts=[{frame: 0, box: [0, 0, 10, 10]}]"]
    assert load_config(None, tuned).digest() != load_config(None, [*tuned, "finetune.epochs=3"]).digest()
    assert load_config(None, tuned).digest() == load_config(None, [*tuned, "detector.model=yolo11s"]).digest()
    assert base.digest() == load_config(None, ["video.jpeg_quality=5"]).digest()  # JPEGs only train a detector
    assert load_config(None, tuned).digest() != load_config(None, [*tuned, "video.jpeg_quality=5"]).digest()


ZONE = "zones.regions=[{name: door, polygon: [[0, 0], [10, 0], [10, 10]]}]"
EARLIER_DIGESTS = [
    # (config file, overrides, digest(), digest(prompts=False)) as the hand-kept digest gave them (commit e7b5e2b):
    # the part files of runs made before the digest was derived from the marks keep their names.
    (None, [], "82ae14517f0fda70", "03e5e4d340f26dcc"),
    ("smoke.yaml", [], "d0d8ccc93b6f80ff", "73c50a7cc014af8c"),
    ("smoke.yaml", ["segmenter.backward_fill=true", "segmenter.max_cond_frames=4"], "ddcc1d7931e98a21",
     "698878750b7564db"),
    ("smoke.yaml", ["finetune.enabled=true", "prompts=[{frame: 0, box: [1, 2, 30, 40]}]", "video.jpeg_quality=5"],
     "21b522d2e2ad3335", "bd0fecbc3f6bd930"),
    ("smoke.yaml", ["detector.enabled=false", "prompts=[{frame: 3, obj_id: 2, points: [[5, 6]], labels: [1]}]"],
     "c132e54c642e59f2", "b8bf5d29a7342e4e"),
    ("smoke.yaml", [ZONE, "zones.filter_prompts=true"], "69a1de1d64801530", "4649ab69881ab293"),
    ("smoke.yaml", [ZONE, "stitching.iou_threshold=0.7", "render.alpha=0.1", "video.max_frames=10",
                    "output.keep_frames=true", "video.jpeg_quality=5", "segmenter.offload_video_to_cpu=true"],
     "d0d8ccc93b6f80ff", "73c50a7cc014af8c"),
    ("smoke.yaml", ["references.path=/refs/lib"], "de185131930b6302", "978d7352f1e97833"),
    ("default.yaml", [], "a4c9ade2cb5dbaeb", "8363b99da7813d55"),
    ("finetune_first_frames.yaml", [], "1d9a6e6b73f8e757", "54e8e77d933d86df"),
    ("manual_prompts.yaml", [], "cdc7a3f2660884c3", "e4cd284f501b9e58"),
    ("people_in_zone.yaml", [], "942b889c5fa27bac", "35ed791e7d052978"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "overrides", "full", "without_prompts"), EARLIER_DIGESTS)
def test_digest_from_the_marks_is_the_earlier_digest(
    name: str | None, overrides: list[str], full: str, without_prompts: str
) -> None:
    """The digest derived from the fields' `Masks` marks equals the one the hand-kept exclusion list gave."""
    cfg = load_config(CONFIGS / name if name else None, overrides)
    assert (cfg.digest(), cfg.digest(prompts=False)) == (full, without_prompts)


def test_every_setting_says_whether_it_changes_the_masks() -> None:
    """The settings left out of the digest are exactly these: a new setting must be marked, or added here on
    purpose (it then never re-segments)."""
    from sam2flow.config import Masks

    unmarked = set()
    for section, info in PipelineConfig.model_fields.items():
        model = (
            info.annotation if isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel) else None
        )
        fields = model.model_fields.items() if model is not None else [(section, info)]
        for name, field in fields:
            if not any(isinstance(m, Masks) for m in field.metadata):
                unmarked.add(f"{section}.{name}" if model is not None else name)
    sections = ("stitching", "render", "report", "output", "runtime")
    # segmenter.precision: what it resolves to on the devices in use goes into the part digest instead
    expected = {"video.max_frames", "video.max_pixels", "segmenter.offload_video_to_cpu", "segmenter.precision",
                "zones.filter_prompts", "zones.anchor", "zones.hysteresis", "zones.draw"}  # fmt: skip
    expected |= {f"{s}.{n}" for s in sections for n in type(getattr(PipelineConfig(), s)).model_fields}
    assert unmarked == expected
