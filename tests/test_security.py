"""Untrusted checkpoints: a pickle that would run code is refused unread, wherever it comes from."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sam2flow.io.checkpoints import CHECKPOINT_DIRS_ENV, CheckpointError
from tests.synth import write_clip

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "configs" / "smoke.yaml"


class _Payload:
    """Unpickling this runs ``touch marker``: what a crafted checkpoint does to whoever loads it unsafely."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (f"touch {self.marker}",)


def write_malicious_checkpoint(path: Path, marker: Path) -> Path:
    """A real torch.save archive (like a YOLO .pt) whose pickle runs a command when loaded without weights_only."""
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": _Payload(marker), "train_args": {}}, path)
    return path


def _run(tmp_path: Path, cache: Path, *args: str) -> subprocess.CompletedProcess[str]:
    clip = write_clip(tmp_path / "clip.mp4", frames=8)
    cmd = [sys.executable, "-m", "sam2flow.cli", "run", str(clip), "--config", str(SMOKE), "--out", str(tmp_path / "o")]
    env = {**os.environ, "SAM2FLOW_CACHE": str(cache)}
    env.pop(CHECKPOINT_DIRS_ENV, None)
    return subprocess.run([*cmd, *args], capture_output=True, text=True, cwd=ROOT, env=env)


def _shared_cache(tmp_path: Path) -> Path:
    """A copy of the session's checkpoint cache (random checkpoints already written), to plant files in."""
    from sam2flow.io.checkpoints import cache_dir
    from sam2flow.models.weights import resolve

    resolve("random:sam2.1_hiera_tiny", "sam2")
    resolve("random:yolo11n", "yolo")
    cache = tmp_path / "cache"
    shutil.copytree(cache_dir(), cache / "checkpoints", ignore=shutil.ignore_patterns(".locks"))
    return cache


def test_the_payload_really_runs_when_loaded_unsafely(tmp_path: Path) -> None:
    """The test's crafted file is live: an unsafe torch.load of it creates the marker (so its absence means
    something below)."""
    import torch

    marker = tmp_path / "pwned"
    evil = write_malicious_checkpoint(tmp_path / "evil.pt", marker)
    torch.load(evil, weights_only=False)
    assert marker.exists()


@pytest.mark.parametrize("where", ["path", "manifest-name", "random-name"])
def test_malicious_yolo_checkpoint_is_refused_before_loading(tmp_path: Path, where: str) -> None:
    """Given as a path (in an allowed folder), planted in the cache under a manifest name, or under a random: name,
    a crafted detector checkpoint stops the run in its pre-check: exit 2, one message naming it, no traceback, no
    code run, no _SUCCESS."""
    cache = _shared_cache(tmp_path)
    marker = tmp_path / "pwned"
    if where == "path":
        evil = write_malicious_checkpoint(tmp_path / "models" / "detector.pt", marker)
        args = ["--set", f"detector.model={evil}", "--checkpoint-dir", str(tmp_path / "models")]
    elif where == "manifest-name":
        evil = write_malicious_checkpoint(cache / "checkpoints" / "yolo11n.pt", marker)
        args = ["--set", "detector.model=yolo11n"]
    else:
        evil = write_malicious_checkpoint(cache / "checkpoints" / "random" / "yolo11n.pt", marker)
        args = ["--set", "detector.model=random:yolo11n"]
    proc = _run(tmp_path, cache, *args)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert str(evil) in proc.stderr and "Traceback" not in proc.stderr
    assert not marker.exists(), "the checkpoint's code ran"
    assert not list(tmp_path.rglob("_SUCCESS"))


def test_planted_sam2_random_checkpoint_is_refused(tmp_path: Path) -> None:
    """A file put in place of sam2flow's random SAM2 checkpoint does not match the sha256 recorded when sam2flow
    wrote it, and is refused."""
    cache = _shared_cache(tmp_path)
    marker = tmp_path / "pwned"
    write_malicious_checkpoint(cache / "checkpoints" / "random" / "sam2.1_hiera_tiny.pt", marker)
    proc = _run(tmp_path, cache)
    assert proc.returncode == 2 and "sam2.1_hiera_tiny" in proc.stderr and "does not match" in proc.stderr
    assert not marker.exists()


def test_sam3_files_may_name_no_code_at_all(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ultralytics' SAM 3 loader unpickles with weights_only=False, so a SAM 3 checkpoint is scanned first like a
    SAM2 one: a file naming code is refused before any loader sees it, even with a matching recorded sha256, whether
    the segmenter or the text detector asks for it."""
    from sam2flow.io.checkpoints import record_sha256
    from sam2flow.models.weights import resolve, unsafe_names

    monkeypatch.setenv("SAM2FLOW_CACHE", str(tmp_path / "cache"))
    marker = tmp_path / "pwned"
    planted = write_malicious_checkpoint(tmp_path / "cache" / "checkpoints" / "random" / "sam3.pt", marker)
    record_sha256(planted)  # as if the attacker could also write the sidecar
    for kind in ("sam2", "sam3"):  # the segmenter's resolution and the text detector's
        with pytest.raises(CheckpointError, match="could run code"):
            resolve("random:sam3", kind)  # type: ignore[arg-type]
    assert not marker.exists()
    assert any("system" in n for n in unsafe_names(planted, "sam3"))


def test_checkpoint_paths_need_the_operators_permission(tmp_path: Path) -> None:
    """A config alone cannot point a run at an arbitrary file: without --checkpoint-dir (or SAM2FLOW_CHECKPOINT_DIRS)
    a path is refused, saying how to allow it."""
    from sam2flow.models.weights import resolve

    good = tmp_path / "models" / "detector.pt"
    good.parent.mkdir()
    shutil.copyfile(resolve("random:yolo11n", "yolo").path, good)
    proc = _run(tmp_path, _shared_cache(tmp_path), "--set", f"detector.model={good}")
    assert proc.returncode == 2 and CHECKPOINT_DIRS_ENV in proc.stderr and "--checkpoint-dir" in proc.stderr


def test_the_safe_loaders_refuse_what_the_scan_refuses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Both layers hold on their own: the scan names the offending import, and Ultralytics' safe mode (which sam2flow
    always turns on) refuses the same file even when called directly, without running it."""
    from sam2flow.io.checkpoints import ResolvedCheckpoint
    from sam2flow.models.weights import check_safe, load_yolo, resolve, unsafe_names

    marker = tmp_path / "pwned"
    evil = write_malicious_checkpoint(tmp_path / "evil.pt", marker)
    assert any("system" in n for n in unsafe_names(evil, "yolo"))
    assert unsafe_names(resolve("random:yolo11n", "yolo").path, "yolo") == []
    assert unsafe_names(resolve("random:sam2.1_hiera_tiny", "sam2").path, "sam2") == []
    with pytest.raises(CheckpointError, match="could run code"):
        check_safe(ResolvedCheckpoint("x", evil, None, False, "0" * 64, False), "yolo")
    with pytest.raises(Exception):  # noqa: B017  # Ultralytics' own error for a refused global
        load_yolo(evil)
    assert not marker.exists()
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"\x00" * 100)
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        unsafe_names(broken, "sam2")


def test_random_checkpoint_without_a_recorded_hash_is_written_anew(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A random: file with no recorded sha256 (from before hashes were recorded, or planted) is never loaded: it is
    written again from the seeded config."""
    import torch

    from sam2flow.models.weights import resolve

    monkeypatch.setenv("SAM2FLOW_CACHE", str(tmp_path / "cache"))
    marker = tmp_path / "pwned"
    evil = write_malicious_checkpoint(tmp_path / "cache" / "checkpoints" / "random" / "yolo11n.pt", marker)
    ckpt = resolve("random:yolo11n", "yolo")
    assert ckpt.path == evil and ckpt.verified and not marker.exists()
    assert (evil.parent / "yolo11n.pt.sha256").read_text().strip() == ckpt.sha256
    assert "model" in torch.load(evil, weights_only=False)  # now the real, seeded checkpoint
    assert not marker.exists()
