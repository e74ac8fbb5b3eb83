"""Every bad input is one clear message, exit code 2, early: the command-line matrix.

Each case runs the real `sam2flow run` (or `archive`) command and checks that it exits with code 2, prints exactly
one ``error:`` line that names the bad input and says what to do, prints no traceback, and leaves no ``_SUCCESS``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.synth import Square, write_clip

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "configs" / "smoke.yaml"


@dataclass
class Case:
    """The command's arguments (after the verb) and what the one error line must contain."""

    args: list[str]
    names: str
    remedy: str
    verb: str = "run"
    env: dict[str, str] | None = None


@dataclass
class Place:
    """Files a case can point at."""

    tmp: Path
    clip: Path
    out: Path

    def run(self, *extra: str, video: str | None = None, out: str | None = None) -> list[str]:
        work = ["--set", f"output.work_dir={self.tmp / 'work'}"]  # checked for leftovers after the run
        return [video or str(self.clip), "--config", str(SMOKE), "--out", out or str(self.out), *work, *extra]


def _mount(path: Path, size: str, read_only: bool = False) -> None:
    """A small tmpfs at ``path`` (needs root and mount rights; the case is skipped without them)."""
    path.mkdir(parents=True, exist_ok=True)
    options = f"size={size}" + (",ro" if read_only else "")
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)]).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")


def _not_a_video(p: Place) -> Case:
    bad = p.tmp / "notes.mp4"
    bad.write_text("this is not a video at all")
    return Case(p.run(video=str(bad)), str(bad), "re-encode")


def _empty(p: Place) -> Case:
    bad = p.tmp / "empty.mp4"
    bad.write_bytes(b"")
    return Case(p.run(video=str(bad)), str(bad), "re-encode")


def _truncated(p: Place) -> Case:
    indexed = p.tmp / "indexed.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(p.clip), "-c", "copy", "-movflags", "+faststart", str(indexed)],
                   check=True)  # fmt: skip
    cut = p.tmp / "cut.mp4"
    data = indexed.read_bytes()
    cut.write_bytes(data[: len(data) // 3])
    return Case(p.run(video=str(cut)), str(cut), "truncated")


def _audio_only(p: Place) -> Case:
    audio = p.tmp / "sound.m4a"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "sine=duration=1", str(audio)], check=True)
    return Case(p.run(video=str(audio)), str(audio), "give a video file")


def _folder(p: Place) -> Case:
    return Case(p.run(video=str(p.tmp)), str(p.tmp), "sam2flow archive")


def _out_is_file(p: Place) -> Case:
    f = p.tmp / "out.txt"
    f.write_text("x")
    return Case(p.run(out=str(f)), str(f), "give a folder")


def _out_read_only(p: Place) -> Case:
    ro = p.tmp / "ro"
    _mount(ro, "4m", read_only=True)
    return Case(p.run(out=str(ro / "results")), str(ro / "results"), "writable folder")


def _out_full(p: Place) -> Case:
    full = p.tmp / "full"
    _mount(full, "256k")
    return Case(p.run(out=str(full)), str(full), "free some space")


def _work_read_only(p: Place) -> Case:
    ro = p.tmp / "ro-work"
    _mount(ro, "4m", read_only=True)
    return Case(p.run("--set", f"output.work_dir={ro}"), "output.work_dir", "writable folder")


def _work_full(p: Place) -> Case:
    full = p.tmp / "full-work"
    _mount(full, "256k")
    return Case(p.run("--set", f"output.work_dir={full}"), "output.work_dir", "free some space")


def _corrupt_checkpoint(key: str) -> Callable[[Place], Case]:
    def make(p: Place) -> Case:
        models = p.tmp / "models"
        models.mkdir(exist_ok=True)
        bad = models / "broken.pt"
        bad.write_bytes(b"PK\x03\x04 not really a zip archive")
        return Case(p.run("--set", f"{key}={bad}", "--checkpoint-dir", str(models)), str(bad), "again")

    return make


def _corrupt_download(p: Place) -> Case:
    """A damaged download of a named SAM2 checkpoint in the cache (SAM2.1's hash is not published, so only the
    file's own check can catch it)."""
    from sam2flow.io.checkpoints import cache_dir
    from sam2flow.models.weights import resolve

    resolve("random:yolo11n", "yolo")
    cache = p.tmp / "cache"
    shutil.copytree(cache_dir() / "random", cache / "checkpoints" / "random")
    bad = cache / "checkpoints" / "sam2.1_hiera_tiny.pt"
    bad.write_bytes(b"PK\x03\x04 cut short")
    return Case(p.run("--set", "segmenter.checkpoint=sam2.1_hiera_tiny"), str(bad), "again",
                env={"SAM2FLOW_CACHE": str(cache)})  # fmt: skip


def _wrong_kind(key: str, other: str, remedy: str) -> Callable[[Place], Case]:
    """A real checkpoint of the other model given where this one is expected."""

    def make(p: Place) -> Case:
        from sam2flow.models.weights import resolve

        models = p.tmp / "models"
        models.mkdir(exist_ok=True)
        wrong = models / "other.pt"
        shutil.copyfile(resolve(other, "sam2" if "sam2" in other else "yolo").path, wrong)
        return Case(p.run("--set", f"{key}={wrong}", "--checkpoint-dir", str(models)), str(wrong), remedy)

    return make


def _path_not_allowed(p: Place) -> Case:
    from sam2flow.models.weights import resolve

    good = p.tmp / "detector.pt"
    shutil.copyfile(resolve("random:yolo11n", "yolo").path, good)
    return Case(p.run("--set", f"detector.model={good}"), str(good), "--checkpoint-dir")


def _missing_checkpoint(p: Place) -> Case:
    missing = p.tmp / "models" / "nope.pt"
    missing.parent.mkdir(exist_ok=True)
    return Case(p.run("--set", f"detector.model={missing}", "--checkpoint-dir", str(missing.parent)), str(missing),
                "give an existing")  # fmt: skip


def _config_file(text: str | None, remedy: str) -> Callable[[Place], Case]:
    def make(p: Place) -> Case:
        cfg = p.tmp / "cfg.yaml"
        if text is not None:
            cfg.write_text(text)
        return Case([str(p.clip), "--config", str(cfg), "--out", str(p.out)], str(cfg), remedy)

    return make


def _override(setting: str, names: str, remedy: str) -> Callable[[Place], Case]:
    return lambda p: Case(p.run("--set", setting), names, remedy)


def _roots(env: str, names_out: bool) -> Callable[[Place], Case]:
    def make(p: Place) -> Case:
        allowed = p.tmp / "allowed"
        allowed.mkdir()
        return Case(p.run(), str(p.out) if names_out else str(p.clip), "sam2flow serve", env={env: str(allowed)})

    return make


def _archive_source_missing(p: Place) -> Case:
    missing = p.tmp / "no-such-archive"
    return Case([str(missing), "--out", str(p.out), "--config", str(SMOKE)], str(missing), "give a local folder",
                verb="archive")  # fmt: skip


def _archive_out_is_file(p: Place) -> Case:
    (p.tmp / "arch").mkdir()
    shutil.copy(p.clip, p.tmp / "arch" / "a.mp4")
    f = p.tmp / "results.txt"
    f.write_text("x")
    return Case([str(p.tmp / "arch"), "--out", str(f), "--config", str(SMOKE)], str(f), "give a folder",
                verb="archive")  # fmt: skip


def _archive_empty(p: Place) -> Case:
    (p.tmp / "empty-arch").mkdir()
    return Case([str(p.tmp / "empty-arch"), "--out", str(p.out), "--config", str(SMOKE)], "no file under",
                "'*.mp4'", verb="archive")  # fmt: skip


CASES: dict[str, Callable[[Place], Case]] = {
    "video missing": lambda p: Case(p.run(video=str(p.tmp / "nope.mp4")), str(p.tmp / "nope.mp4"), "check the path"),
    "video is a folder": _folder,
    "video is text": _not_a_video,
    "video is empty": _empty,
    "video truncated": _truncated,
    "video has no video stream": _audio_only,
    "video unknown scheme": lambda p: Case(p.run(video="foo://bucket/a.mp4"), "foo://bucket/a.mp4", "local path"),
    "video s3 without s3fs": lambda p: Case(p.run(video="s3://bucket/a.mp4"), "s3://bucket/a.mp4", "sam2flow[s3]"),
    "out unknown scheme": lambda p: Case(p.run(out="foo://bucket/out"), "foo://bucket/out", "local path"),
    "out s3 without s3fs": lambda p: Case(p.run(out="s3://bucket/out"), "s3://bucket/out", "sam2flow[s3]"),
    "out is a file": _out_is_file,
    "out read-only": _out_read_only,
    "out full": _out_full,
    "work dir read-only": _work_read_only,
    "work dir full": _work_full,
    "device cuda:0 without GPU": _override("runtime.device=cuda:0", "cuda:0", "'cpu'"),
    "device cuda:3 without GPU": _override("runtime.device=cuda:3", "cuda:3", "'cpu'"),
    "frames too large": _override("video.max_pixels=10000", "video.max_pixels", "Downscale"),
    "corrupt sam2 checkpoint": _corrupt_download,
    "corrupt yolo checkpoint": _corrupt_checkpoint("detector.model"),
    "sam2 file as detector": _wrong_kind("detector.model", "random:sam2.1_hiera_tiny", "give a YOLO .pt"),
    "yolo file as segmenter": _wrong_kind("segmenter.checkpoint", "random:yolo11n", "checkpoints/manifest.yaml"),
    "checkpoint path not allowed": _path_not_allowed,
    "checkpoint path missing": _missing_checkpoint,
    "unknown sam2 name": _override("segmenter.checkpoint=sam3_giant", "sam3_giant", "random:<name>"),
    "unknown random name": _override("detector.model=random:yolo99", "yolo99", "random:<name>"),
    "unknown detector class": _override("detector.classes=[unicorn]", "unicorn", "known classes"),
    "finetune base model missing": lambda p: Case(
        p.run(
            "--set",
            "finetune.enabled=true",
            "--set",
            "prompts=[{frame: 0, box: [20, 60, 70, 110]}]",
            "--set",
            "finetune.base_model=/no/such/base.pt",
        ),
        "/no/such/base.pt",
        "--checkpoint-dir",
    ),
    "config file missing": _config_file(None, "configs/"),
    "config file not yaml": _config_file("chunking: [unclosed", "valid YAML"),
    "config unknown key": _config_file("chunking: {lenght: 40}", "check the spelling"),
    "config overlap too large": _override("chunking.overlap=300", "chunking.overlap", "smaller than"),
    "override without value": _override("chunking.length", "chunking.length", "section.key=value"),
    "output outside the served roots": _roots("SAM2FLOW_OUTPUT_ROOTS", names_out=True),
    "input outside the served roots": _roots("SAM2FLOW_INPUT_ROOTS", names_out=False),
    "archive source missing": _archive_source_missing,
    "archive out is a file": _archive_out_is_file,
    "archive matches nothing": _archive_empty,
}


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    square = Square((230, 40, 40), y=60, x0=20, speed=2.0, size=50)
    return write_clip(tmp_path_factory.mktemp("clip") / "clip.mp4", 8, squares=(square,))


@pytest.fixture
def place(tmp_path: Path, clip: Path) -> Iterator[Place]:
    yield Place(tmp_path, clip, tmp_path / "out")
    mounted = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    for m in mounted:
        if m.startswith(str(tmp_path)):
            subprocess.run(["umount", m], check=False)


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_one_clear_error(place: Place, name: str) -> None:
    """Each bad input of the matrix gives one message naming it and the remedy, exit 2, no traceback, nothing left."""
    case = CASES[name](place)
    env = {**os.environ, **(case.env or {})}
    env.pop("SAM2FLOW_CHECKPOINT_DIRS", None)
    proc = subprocess.run(
        [sys.executable, "-m", "sam2flow.cli", case.verb, *case.args],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert proc.stderr.count("error:") == 1, proc.stderr[-3000:]
    message = proc.stderr[proc.stderr.index("error:") :]  # the one message (a config error lists its keys below)
    assert case.names in message and case.remedy in message, message
    assert not list(place.tmp.rglob("_SUCCESS"))
    leftovers = [p for p in (place.tmp / "work").rglob("*") if p.suffix in (".jpg", ".ts")]
    assert leftovers == [], "a failed run leaves no frames or render pieces behind"


def test_the_matrix_is_broad() -> None:
    """At least thirty kinds of bad input are covered."""
    assert len(CASES) >= 30


@pytest.mark.parametrize("store", [True, False], ids=["frame-store", "jpegs"])
def test_no_space_while_extracting_blames_the_folder_not_the_video(tmp_path: Path, clip: Path, store: bool) -> None:
    """When the frame folder fills up during extraction (the pipeline's frame store, or fine-tuning's JPEGs), the
    error names that folder and says to free space; it does not call the video truncated."""
    from sam2flow.core.types import Subsequence
    from sam2flow.io.frames import extract_frames
    from sam2flow.io.storage import StorageError
    from sam2flow.io.video import extract_subsequence, probe

    full = tmp_path / "full"
    _mount(full, "16k")
    try:
        with pytest.raises(StorageError, match="no space left in") as err:
            if store:
                extract_frames(str(clip), probe(str(clip)), Subsequence(0, 0, 8), full / "frames", limit=1024)
            else:
                extract_subsequence(str(clip), probe(str(clip)), Subsequence(0, 0, 8), full / "frames")
        assert "truncated" not in str(err.value)
    finally:
        subprocess.run(["umount", str(full)], check=False)


def test_no_space_for_outputs_is_permanent_and_explained(tmp_path: Path) -> None:
    """A write that runs out of space is not retried, and its message names the file and the remedy."""
    from sam2flow.errors import describe, is_permanent
    from sam2flow.io import storage

    full = tmp_path / "full"
    _mount(full, "16k")
    try:
        with pytest.raises(OSError) as err:
            storage.write_bytes(str(full / "masks.parquet"), b"x" * 100_000)
        assert is_permanent(err.value)
        assert "masks.parquet" in describe(err.value) and "free some space" in describe(err.value)
        assert not list(full.iterdir()), "nothing half-written is left under its final name"
    finally:
        subprocess.run(["umount", str(full)], check=False)
