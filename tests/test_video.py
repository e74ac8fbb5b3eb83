"""Probing and frame-accurate extraction with the real ffmpeg."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sam2flow.core.planning import plan_subsequences
from sam2flow.io.video import VideoError, extract_subsequence, iter_frames, probe
from tests.synth import read_index, write_clip


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 75-frame clip whose frames carry their own index."""
    return write_clip(tmp_path_factory.mktemp("clip") / "index.mp4", frames=75, fps=25)


def test_probe(clip: Path) -> None:
    """ffprobe facts of the synthetic clip."""
    info = probe(str(clip))
    assert (info.width, info.height, info.num_frames, info.fps) == (320, 240, 75, "25")
    assert info.constant_frame_rate
    assert abs(info.duration - 3.0) < 0.05


def test_every_extracted_jpeg_is_the_right_frame(clip: Path, tmp_path: Path) -> None:
    """Each subsequence's 00000.jpg … are exactly its global frames, at boundaries and in the last partial one."""
    info = probe(str(clip))
    plan = plan_subsequences(info.num_frames, 32, 16)
    assert plan[-1].length < 32  # a partial last subsequence is covered
    for sub in plan:
        out = tmp_path / f"{sub.index:05d}"
        assert extract_subsequence(str(clip), info, sub, out) == sub.length
        names = sorted(p.name for p in out.glob("*.jpg"))
        assert names == [f"{i:05d}.jpg" for i in range(sub.length)]
        got = [read_index(np.asarray(Image.open(out / n).convert("RGB"))) for n in names]
        assert got == list(range(sub.start, sub.stop)), f"subsequence {sub.index}"


def test_iter_frames_in_order(clip: Path) -> None:
    """The decoded stream yields every frame in order, and honours a frame limit."""
    info = probe(str(clip))
    assert [read_index(f) for f in iter_frames(str(clip), info)] == list(range(75))
    assert len(list(iter_frames(str(clip), info, max_frames=10))) == 10


@pytest.mark.parametrize(
    ("content", "match"),
    [(None, "does not exist"), (b"this is not a video", "not a readable video"), (b"", "not a readable video")],
)
def test_bad_input_gives_one_clear_error(tmp_path: Path, content: bytes | None, match: str) -> None:
    """Missing, non-video and empty files are rejected with the file's name in the message."""
    path = tmp_path / "input.mp4"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(VideoError, match=match) as err:
        probe(str(path))
    assert str(path) in str(err.value)


def test_sample_command_writes_a_clip_with_moving_objects(tmp_path: Path) -> None:
    """`sam2flow sample` writes a clip of the asked length and size in which three coloured objects move."""
    import subprocess
    import sys

    out = tmp_path / "sample.mp4"
    size = ["--width", "320", "--height", "180"]
    cmd = [sys.executable, "-m", "sam2flow.cli", "sample", str(out), "--frames", "30", *size]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    info = probe(str(out))
    assert (info.num_frames, info.width, info.height, info.fps) == (30, 320, 180, "24")
    first, *_, last = list(iter_frames(str(out), info))
    for colour in ((220, 60, 50), (40, 170, 230), (240, 200, 40)):  # the three objects' base colours
        near = [np.abs(f.astype(int) - colour).sum(axis=-1) < 60 for f in (first, last)]
        assert near[0].sum() > 50 and near[1].sum() > 50, f"object {colour} is visible"
        centres = [np.argwhere(m).mean(axis=0) for m in near]
        assert np.abs(centres[0] - centres[1]).max() > 5, f"object {colour} moves"


@pytest.mark.parametrize("degrees", [90, 180, 270])
def test_rotated_video_is_read_in_display_orientation(tmp_path: Path, degrees: int) -> None:
    """A clip with rotation metadata probes at its displayed size, and every decoded and extracted frame is the
    stored frame turned as a player shows it (not a scrambled buffer of the stored size)."""
    from tests.synth import with_rotation

    base = write_clip(tmp_path / "base.mp4", 6, width=160, height=96)
    clip = with_rotation(base, tmp_path / f"r{degrees}.mp4", degrees)
    info, stored = probe(str(clip)), probe(str(base))
    turned = degrees in (90, 270)
    assert info.rotation == degrees and stored.rotation == 0
    assert (info.width, info.height) == ((96, 160) if turned else (160, 96))
    frames = list(iter_frames(str(clip), info))
    originals = list(iter_frames(str(base), stored))
    assert len(frames) == 6
    for got, want in zip(frames, originals):
        assert np.array_equal(got, np.rot90(want, degrees // 90))
    sub = plan_subsequences(6, 4, 2)[1]
    extract_subsequence(str(clip), info, sub, tmp_path / "jpg")
    assert Image.open(tmp_path / "jpg" / "00000.jpg").size == (info.width, info.height)


def test_variable_frame_rate_timestamps_are_read_from_the_stream(tmp_path: Path) -> None:
    """A clip whose frames are not evenly spaced: every frame is decoded once and in order, and each frame's time is
    its presentation time, not frame / fps."""
    from sam2flow.io.video import frame_times
    from tests.synth import write_vfr_clip

    times = [0.0, 0.04, 0.08, 0.5, 0.54, 1.2, 1.24, 1.28, 1.9, 1.92]
    clip = write_vfr_clip(tmp_path / "vfr.mp4", times)
    info = probe(str(clip))
    assert info.num_frames == len(times) and not info.constant_frame_rate
    assert np.allclose(frame_times(str(clip), info), times, atol=1e-4)
    assert [read_index(f) for f in iter_frames(str(clip), info)] == list(range(len(times)))
    cfr = write_clip(tmp_path / "cfr.mp4", 30, fps=24)
    cfr_info = probe(str(cfr))
    assert np.array_equal(frame_times(str(cfr), cfr_info), np.arange(30) / 24)  # exactly frame / fps


def test_a_faster_preset_writes_the_same_frames_in_a_larger_file(tmp_path: Path) -> None:
    """`render.preset` reaches x264: on a textured clip `ultrafast` writes a larger file than `veryfast` at the same
    crf, with the same frames at the same times; an unknown preset is refused by the config."""
    from sam2flow.config import ConfigError, load_config
    from sam2flow.io.video import frame_times, video_writer

    rng = np.random.default_rng(5)
    frames = [rng.integers(0, 256, (96, 128, 3), dtype=np.uint8) for _ in range(6)]
    sizes, decoded = {}, {}
    for preset in ("veryfast", "ultrafast"):
        path = tmp_path / f"{preset}.mp4"
        with video_writer(path, 128, 96, crf=20, preset=preset) as writer:
            for t, frame in enumerate(frames):
                writer.write(frame, t / 12)
        info = probe(str(path))
        sizes[preset] = path.stat().st_size
        decoded[preset] = (info.num_frames, list(frame_times(str(path), info)))
    assert sizes["ultrafast"] > 1.2 * sizes["veryfast"], sizes
    assert decoded["ultrafast"] == decoded["veryfast"] and decoded["veryfast"][0] == 6
    assert load_config(None, ["render.preset=ultrafast"]).render.preset == "ultrafast"
    with pytest.raises(ConfigError, match="preset"):
        load_config(None, ["render.preset=placebo"])


def test_written_colours_come_back(tmp_path: Path) -> None:
    """The encoder's RGB -> YUV conversion keeps colours (BT.601, limited range, as ffmpeg reads them back): flat
    patches of pure and mixed colours decode to within a few levels of what was written."""
    import numpy as np

    from sam2flow.io.video import iter_frames, probe, video_writer

    colours = [(230, 40, 40), (40, 200, 60), (60, 80, 230), (128, 128, 128), (250, 250, 250), (16, 16, 16)]
    frame = np.zeros((96, 64 * len(colours), 3), np.uint8)
    for i, c in enumerate(colours):
        frame[:, i * 64 : (i + 1) * 64] = c
    path = tmp_path / "colours.mp4"
    with video_writer(path, frame.shape[1], frame.shape[0]) as writer:
        for t in range(3):
            writer.write(frame, t / 24)
    (back, *_) = list(iter_frames(str(path), probe(str(path))))
    for i, c in enumerate(colours):
        got = back[16:80, i * 64 + 16 : i * 64 + 48].reshape(-1, 3).mean(axis=0)
        assert np.abs(got - np.array(c)).max() < 4, (c, got)
