"""manifest.json (`sam2flow.manifest`): one typed record written by one writer and read by one reader, which reads
what earlier versions wrote and refuses what it cannot read with one clear error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sam2flow.manifest import ManifestError, read_manifest
from sam2flow.readers.run import RunReadError, read_run
from tests.replay import STRESS, finished_run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return finished_run(STRESS, tmp_path_factory.mktemp("manifest"), 48)


def _rewrite(run_dir: Path, tmp_path: Path, change) -> Path:  # type: ignore[no-untyped-def]
    copy = tmp_path / "run"
    copy.mkdir()
    for name in ("manifest.json", "_SUCCESS", "masks.parquet", "tracks.parquet", "timestamps.parquet"):
        (copy / name).write_bytes((run_dir / name).read_bytes())
    data = json.loads((copy / "manifest.json").read_text())
    change(data)
    (copy / "manifest.json").write_text(json.dumps(data) if isinstance(data, dict) else data)
    return copy


def test_a_manifest_reads_back_typed(run_dir: Path) -> None:
    """Every field comes back typed: the probe, the config, the stage records."""
    m = read_manifest(str(run_dir))
    assert m.video_id == "synthetic" and m.frames_processed == 48 and m.probe.num_frames == 48
    assert m.config.chunking.length == 200 and m.stages.stitch is not None and m.stages.stitch.seconds == 0.25
    assert m.stages.seconds() == {"prepare": 0.5, "stitch": 0.25}


def test_stage_records_of_another_version_are_left_out(run_dir: Path, tmp_path: Path) -> None:
    """A stage record this version cannot read is left out (with a warning); the rest of the run reads."""

    def older(data: dict) -> None:  # type: ignore[type-arg]
        data["stages"]["stitch"] = {"seconds": 1.0}  # no track counts: written by some other version
        data["stages"]["segment"] = {"wall_seconds": 2.0, "task_seconds": 2.0, "sam2_seconds": 1.0, "reused": 0,
                                     "subsequences": []}  # before backward fill: no backfill_seconds  # fmt: skip
        data.pop("outputs")

    m = read_manifest(str(_rewrite(run_dir, tmp_path, older)))
    assert m.stages.stitch is None and m.stages.segment is not None and m.stages.segment.backfill_seconds == 0.0
    assert m.outputs == {}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.pop("probe"), "probe: Field required"),
        (lambda d: d["config"]["chunking"].update(lenght=3), "config.chunking.lenght"),
        (lambda d: d.update(frames_processed="many"), "frames_processed"),
    ],
)
def test_a_manifest_this_version_cannot_read_is_one_clear_error(run_dir: Path, tmp_path: Path, change,
                                                                message: str) -> None:  # type: ignore[no-untyped-def]  # fmt: skip
    """A manifest missing a field, with a key this version does not know, or with a wrong type is refused naming the
    field; read_run says the folder is not a finished run it can read."""
    copy = _rewrite(run_dir, tmp_path, change)
    with pytest.raises(ManifestError, match=message):
        read_manifest(str(copy))
    with pytest.raises(RunReadError, match=r"manifest\.json is not a sam2flow manifest this version reads"):
        read_run(str(copy))


def test_no_manifest_or_broken_json_is_one_clear_error(tmp_path: Path) -> None:
    """A folder without manifest.json, or with a truncated one, is refused naming the file."""
    with pytest.raises(ManifestError, match="does not exist"):
        read_manifest(str(tmp_path))
    (tmp_path / "manifest.json").write_text('{"video_id": "x", "inp')
    with pytest.raises(ManifestError, match="is not valid JSON"):
        read_manifest(str(tmp_path))
