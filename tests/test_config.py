"""Configuration loading, validation and overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

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
