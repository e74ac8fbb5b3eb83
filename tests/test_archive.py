"""Archives: listing, skipping finished videos, and the real process_archive flow with a corrupt file among videos."""

from __future__ import annotations

import json
from pathlib import Path

import fsspec
import pytest

from sam2flow.config import load_config
from sam2flow.io import storage
from sam2flow.sources.archive import finished_run, list_videos
from tests.archives import make_archive
from tests.prefect_api import run_tree_artifacts

ROOT = Path(__file__).resolve().parents[1]


def test_content_digest_covers_the_whole_file_and_is_remembered(tmp_path: Path) -> None:
    """A file edited in the middle, with its size kept, gets another digest (so another video id, and an archive
    does not skip it); an unchanged file's digest is read back from the cache, not recomputed."""
    big = tmp_path / "big.bin"
    data = bytearray(b"\x01" * (40 << 20))  # larger than the 16 MiB head and tail a sampled digest would read
    big.write_bytes(data)
    before = storage.content_digest(str(big))
    data[20 << 20] ^= 0xFF
    big.write_bytes(data)
    assert big.stat().st_size == 40 << 20 and storage.content_digest(str(big)) != before
    same = tmp_path / "same.bin"
    same.write_bytes(b"abc")
    first = storage.content_digest(str(same))
    for m in (storage.cache_root() / "digests").glob("*"):
        if m.read_text().strip() == first:
            m.write_text("remembered\n")  # proves the next call reads the memo instead of the file
    assert storage.content_digest(str(same)) == "remembered"


def test_list_videos_local_and_memory(tmp_path: Path) -> None:
    """Archive listing: matching files sorted, ** into sub-folders, URIs for object storage, a missing folder named."""
    (tmp_path / "cam1").mkdir()
    for name in ("b.mp4", "a.mp4", "notes.txt", "cam1/c.mp4"):
        (tmp_path / name).write_bytes(b"x")
    assert list_videos(str(tmp_path), "*.mp4") == [str(tmp_path / "a.mp4"), str(tmp_path / "b.mp4")]
    assert list_videos(str(tmp_path), "**/*.mp4")[-1] == str(tmp_path / "cam1" / "c.mp4")
    mem = fsspec.filesystem("memory")
    mem.pipe("/arch/x.mp4", b"x")
    mem.pipe("/arch/y.mov", b"y")
    (listed,) = list_videos("memory://arch", "*.mp4")
    assert listed.startswith("memory://") and listed.endswith("/arch/x.mp4") and storage.exists(listed)
    with pytest.raises(FileNotFoundError, match="not a folder"):
        list_videos(str(tmp_path / "missing"), "*.mp4")


@pytest.mark.slow
def test_archive_flow_reports_skips_and_fails_alone(prefect_harness: None, tmp_path: Path) -> None:
    """An archive run finishes the good videos, reports the corrupt one alone, lists the finished ones worst review
    score first, and skips finished ones next time."""
    from sam2flow.flows.process_archive import process_archive

    archive, cfg = make_archive(tmp_path)
    out = tmp_path / "out"

    state = process_archive(source=str(archive), out=str(out), config=cfg, max_in_flight=2, return_state=True)
    assert state.is_failed() and "2 done, 0 skipped, 1 failed of 3" in (state.message or "")
    reports = {Path(r.video).name: r for r in state.result(raise_on_failure=False)}
    assert [reports[n].status for n in ("a.mp4", "b.mp4", "c_corrupt.mp4")] == ["done", "done", "failed"]
    assert "c_corrupt.mp4" in reports["c_corrupt.mp4"].reason and "readable video" in reports["c_corrupt.mp4"].reason
    for name in ("a.mp4", "b.mp4"):
        run_dir = Path(str(reports[name].out_dir))
        tracks = reports[name].tracks
        assert (run_dir / "_SUCCESS").is_file() and tracks is not None and tracks >= 1 and reports[name].frames == 24
        assert finished_run(str(archive / name), str(out), cfg) == str(run_dir)
    assert finished_run(str(archive / "a.mp4"), str(out), load_config(ROOT / "configs" / "smoke.yaml")) is None

    # Artifacts, read back through the API: a summary table, a markdown note per video, a progress bar per run.
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        runs, arts = run_tree_artifacts(client, state.state_details.flow_run_id)
    assert len(runs) == 1 + 3, "one process_video subflow per video"
    table = [a for a in arts if a.key == "archive-summary"]
    assert len(table) == 1 and table[0].type == "table"
    worst = [a for a in arts if a.key == "archive-review"]  # the finished videos, worst review score first
    assert len(worst) == 1 and worst[0].type == "table"
    rows = json.loads(worst[0].data) if isinstance(worst[0].data, str) else worst[0].data
    scores = [r["top_score"] for r in rows]
    assert len(rows) == 2 and scores == sorted(scores, reverse=True)
    assert {r["items"] for r in rows} == {reports[n].review_items for n in ("a.mp4", "b.mp4")}
    notes = [a for a in arts if a.type == "markdown" and a.key.startswith("video-")]
    assert len(notes) == 3 and any("**failed**" in str(a.data) for a in notes)
    reports = [a for a in arts if a.type == "markdown" and a.key.startswith("report-")]
    assert len(reports) == 2, "one report per finished video"
    assert all("data:image/jpeg;base64," in str(a.data) and "report.html" in str(a.data) for a in reports)
    progress = [a for a in arts if a.type == "progress"]
    assert len(progress) == 2 and all(float(a.data) == 100.0 for a in progress)

    # A second run skips the finished videos and fails the corrupt one again.
    again = process_archive(source=str(archive), out=str(out), config=cfg, return_state=True)
    statuses = sorted(r.status for r in again.result(raise_on_failure=False))
    assert statuses == ["failed", "skipped", "skipped"] and again.is_failed()


def test_archive_cli_rejects_an_empty_match(tmp_path: Path) -> None:
    """`sam2flow archive` on a folder with no matching file is one clear error, exit code 2."""
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "sam2flow.cli", "archive", str(tmp_path), "--out", str(tmp_path / "o"),
         "--config", "configs/smoke.yaml"],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 2 and "no file under" in proc.stderr
