"""The frame store between extraction and segmentation: frames scaled to the models' size by ffmpeg, frame-accurate,
loaded for SAM2 as SAM2's own loader would, and read by the detector at its own size with boxes in source pixels."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any, ClassVar

import cv2
import numpy as np
import pytest

from sam2flow.core.types import Detections, Subsequence
from sam2flow.io.frames import FrameReader, extract_frames, read_layout, stored_size
from sam2flow.io.video import probe
from tests.synth import Square, read_index, with_rotation, write_clip

SQUARE = Square((230, 40, 40), y=60, x0=20, speed=3.0, size=50)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_clip(tmp_path_factory.mktemp("frames") / "clip.mp4", frames=40, squares=(SQUARE,))


def _sub(start: int, length: int) -> Subsequence:
    return Subsequence(index=0, start=start, stop=start + length)


def test_stored_size_caps_each_side_and_keeps_it_even() -> None:
    """Stored frames are at most the model's size on each side, never scaled up, and even."""
    assert stored_size(1920, 1080, 1024) == (1024, 1024)
    assert stored_size(960, 540, 1024) == (960, 540)  # never scaled up
    assert stored_size(1280, 720, 1024) == (1024, 720)
    assert stored_size(321, 241, 1024) == (320, 240)


@pytest.mark.parametrize("rotation", [0, 90])
def test_frames_are_scaled_frame_accurate_and_keep_the_source_size(clip: Path, tmp_path: Path, rotation: int) -> None:
    """Frames 13..24 of the clip (a seek into the middle), stored at most 128 px a side: each is the right frame,
    and the layout keeps the display size of the source (rotated sources included)."""
    video = with_rotation(clip, tmp_path / "rotated.mp4", rotation) if rotation else clip
    info = probe(str(video))
    layout = extract_frames(str(video), info, _sub(13, 12), tmp_path / "store", limit=128)
    assert read_layout(tmp_path / "store") == layout
    assert (layout.count, layout.source_width, layout.source_height) == (12, info.width, info.height)
    assert (layout.width, layout.height) == (128, 128)
    reader = FrameReader(tmp_path / "store")
    for k in range(12):
        upright = reader.rgb(k)
        if rotation:  # back to the clip's own orientation to read the index blocks
            upright = cv2.rotate(upright, cv2.ROTATE_90_CLOCKWISE)
        assert read_index(cv2.resize(upright, (320, 240), interpolation=cv2.INTER_CUBIC)) == 13 + k


def test_a_broken_file_is_one_clear_error(tmp_path: Path, clip: Path) -> None:
    """Extracting from a truncated file is a VideoError naming it, and leaves no complete-looking store."""
    from sam2flow.io.video import VideoError

    info = probe(str(clip))
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(clip.read_bytes()[: clip.stat().st_size // 3])
    with pytest.raises(VideoError, match=r"broken\.mp4"):
        extract_frames(str(broken), info, _sub(30, 10), tmp_path / "store", limit=128)
    assert read_layout(tmp_path / "store") is None  # never looks complete


def _jpegs(video: Path, folder: Path, start: int, count: int, size: tuple[int, int] | None = None) -> Path:
    """Frames ``start`` … of ``video`` as JPEGs the way SAM2's README extracts them (``-q:v 2``), optionally scaled."""
    folder.mkdir(parents=True)
    vf = f"select=between(n\\,{start}\\,{start + count - 1})" + (f",scale={size[0]}:{size[1]}" if size else "")
    cmd = ["ffmpeg", "-nostdin", "-v", "error", "-i", str(video), "-vf", vf, "-fps_mode", "passthrough",
           "-q:v", "2", "-start_number", "0", str(folder / "%05d.jpg")]  # fmt: skip
    subprocess.run(cmd, check=True)
    return folder


def test_loader_matches_sam2s_own(clip: Path, tmp_path: Path) -> None:
    """On the same JPEGs, sam2flow's loader gives SAM2's own tensor (to float rounding); from the frame store it
    gives nearly the same tensor as SAM2's loader on full-size JPEGs, with the source size."""
    import torch
    from sam2.utils.misc import load_video_frames

    from sam2flow.models.frames import load_frames

    size = 128
    square = _jpegs(clip, tmp_path / "square", 5, 6, (size, size))
    theirs, h, w = load_video_frames(str(square), size, True, compute_device=torch.device("cpu"))
    ours = load_frames(square, size)
    assert (ours.height, ours.width) == (h, w) == (size, size)
    assert len(ours.images) == len(theirs) == 6
    assert ours.images.nbytes == 6 * size * size * 3  # held as uint8: a quarter of SAM2's float32
    assert torch.allclose(_stacked(ours.images), theirs, atol=1e-5)

    full = _jpegs(clip, tmp_path / "full", 5, 6)
    theirs, h, w = load_video_frames(str(full), size, True, compute_device=torch.device("cpu"))
    extract_frames(str(clip), probe(str(clip)), _sub(5, 6), tmp_path / "store", limit=size)
    ours = load_frames(tmp_path / "store", size)
    assert (ours.height, ours.width) == (h, w) == (240, 320)
    diff = (_stacked(ours.images) - theirs).abs()
    assert float(diff.mean()) < 0.05, float(diff.mean())  # normalised units (one grey level is about 0.017)


def _stacked(frames: Any) -> Any:
    import torch

    return torch.stack([frames[i] for i in range(len(frames))])


def test_frames_normalise_alike_on_any_device() -> None:
    """The torch path (what a GPU runs after uploading the uint8 frame) gives the OpenCV path's values, and
    prepending reference frames puts them first, squared to the model's size."""
    import torch

    from sam2flow.models.frames import Frames, normalised_on

    rng = np.random.default_rng(3)
    squares = [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(2)]
    frames = Frames(squares, torch.device("cpu"))
    for i, sq in enumerate(squares):
        assert torch.allclose(frames[i], normalised_on(torch.from_numpy(sq)), atol=1e-6)
    assert frames[0].dtype == torch.float32 and frames[0].shape == (3, 32, 32)
    assert float(frames[0][0, 0, 0]) == pytest.approx((squares[0][0, 0, 0] / 255 - 0.485) / 0.229, abs=1e-5)
    ref = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    longer = frames.prepend([ref])
    assert len(longer) == 3 and len(frames) == 2
    assert longer.squares[0].shape == (32, 32, 3)
    assert torch.equal(longer[1], frames[0]) and torch.equal(longer[2], frames[1])


class _SquareFinder:
    """Test double for YOLO: finds the red square in the image it is given (RGB), in that image's pixels."""

    names: ClassVar[dict[int, str]] = {0: "square"}
    image_size = 64

    def __call__(self, image: np.ndarray) -> Detections:
        ys, xs = np.nonzero((image[:, :, 0] > 150) & (image[:, :, 1] < 100))
        box = np.array([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], np.float32)
        self.seen = image.shape
        return Detections(box, np.ones(1, np.float32), np.zeros(1, np.int64), ("square",))


def test_detector_sees_the_source_aspect_at_its_size_and_answers_in_source_pixels(clip: Path, tmp_path: Path) -> None:
    """The detector gets the frame in the source's aspect at its own size, and its boxes come back in source pixels."""
    from sam2flow.models.detector import StoredFrameDetector

    extract_frames(str(clip), probe(str(clip)), _sub(10, 4), tmp_path / "store", limit=128)  # stored 128x128
    finder = _SquareFinder()
    found = StoredFrameDetector(finder)(tmp_path / "store" / "00002.jpg")  # type: ignore[arg-type]
    assert finder.seen == (48, 64, 3)  # 320x240 scaled to 64 on its longest side
    x0, y0, x1, y1 = SQUARE.box(12)
    assert np.allclose(found.boxes[0], [x0, y0, x1, y1], atol=6), found.boxes  # a few source px (5x smaller image)


def test_finetune_and_studio_folders_of_jpegs_still_load(clip: Path, tmp_path: Path) -> None:
    """A folder of full-size JPEGs (fine-tuning, the studio) reads as before: its own size is the source size."""
    folder = _jpegs(clip, tmp_path / "jpegs", 0, 3)
    reader = FrameReader(folder)
    assert (reader.count, reader.source_width, reader.source_height) == (3, 320, 240)
    assert read_index(reader.rgb(2)) == 2
    shutil.rmtree(folder)


def test_a_stream_cuts_the_same_frames_as_seeking(clip: Path, tmp_path: Path) -> None:
    """Subsequences cut in order from one decoder (the frames they share kept, not decoded twice), then one out of
    order (the stream reopens at its start): byte for byte what seeking to each start gives."""
    from sam2flow.core.planning import plan_subsequences
    from sam2flow.io.frames import DATA, FrameStream

    info = probe(str(clip))
    plan = plan_subsequences(40, 16, 4)
    stream = FrameStream(str(clip), info, 128, keep=4)
    try:
        for sub in [*plan, plan[1], plan[-1]]:
            cut = stream.extract(sub, tmp_path / "cut")
            sought = extract_frames(str(clip), info, sub, tmp_path / "sought", limit=128)
            assert cut == sought
            assert (tmp_path / "cut" / DATA).read_bytes() == (tmp_path / "sought" / DATA).read_bytes(), sub
            assert read_index(cv2.resize(FrameReader(tmp_path / "cut").rgb(0), (320, 240))) == sub.start
    finally:
        stream.close()
    assert stream.proc is None


def test_a_stream_over_a_truncated_file_fails_naming_it(clip: Path, tmp_path: Path) -> None:
    """The shared decoder over a truncated file fails naming it, and closes its ffmpeg."""
    from sam2flow.io.frames import FrameStream
    from sam2flow.io.video import VideoError

    broken = tmp_path / "broken.mp4"
    broken.write_bytes(clip.read_bytes()[: clip.stat().st_size // 3])
    stream = FrameStream(str(broken), probe(str(clip)), 128, keep=4)
    with pytest.raises(VideoError, match=r"broken\.mp4"):
        stream.extract(_sub(0, 40), tmp_path / "store")
    assert read_layout(tmp_path / "store") is None and stream.proc is None


def test_the_jpeg_store_is_a_folder_sam2_reads_with_the_frames_the_raw_store_holds(clip: Path, tmp_path: Path) -> None:
    """frame_store jpeg writes 00000.jpg … at the stored size and frames.json with the source size; the frames are
    the raw store's up to JPEG loss; SAM2's own loader reads the folder; a stream writes the same files as a seek."""
    from sam2.utils.misc import load_video_frames

    from sam2flow.core.planning import plan_subsequences
    from sam2flow.io.frames import FrameStore, FrameStream

    info = probe(str(clip))
    jpeg = FrameStore("jpeg", 2)
    layout = extract_frames(str(clip), info, _sub(13, 12), tmp_path / "jpeg", limit=128, store=jpeg)
    extract_frames(str(clip), info, _sub(13, 12), tmp_path / "raw", limit=128)
    assert layout.format == "jpeg" and sorted(p.name for p in (tmp_path / "jpeg").iterdir()) == [
        *(f"{k:05d}.jpg" for k in range(12)), "frames.json"
    ]  # fmt: skip
    reader, raw = FrameReader(tmp_path / "jpeg"), FrameReader(tmp_path / "raw")
    assert (reader.count, reader.source_width, reader.source_height) == (12, 320, 240)
    for k in (0, 11):
        assert reader.rgb(k).shape == (128, 128, 3) and read_index(cv2.resize(reader.rgb(k), (320, 240))) == 13 + k
        assert np.abs(reader.rgb(k).astype(int) - raw.rgb(k)).mean() < 3
    images, height, width = load_video_frames(str(tmp_path / "jpeg"), 64, offload_video_to_cpu=True)
    assert tuple(images.shape) == (12, 3, 64, 64) and (height, width) == (128, 128)
    stream = FrameStream(str(clip), info, 128, keep=4, store=jpeg)
    try:
        for sub in plan_subsequences(40, 16, 4):
            stream.extract(sub, tmp_path / "cut")
            extract_frames(str(clip), info, sub, tmp_path / "sought", limit=128, store=jpeg)
            for k in range(sub.length):
                name = f"{k:05d}.jpg"
                assert (tmp_path / "cut" / name).read_bytes() == (tmp_path / "sought" / name).read_bytes(), (sub, k)
    finally:
        stream.close()


def test_kept_raw_frames_become_a_jpeg_folder(clip: Path, tmp_path: Path) -> None:
    """A raw store kept after segmentation (output.keep_frames) becomes JPEGs a user can open, frames.json last."""
    from sam2flow.io.frames import DATA, to_jpeg_folder

    extract_frames(str(clip), probe(str(clip)), _sub(5, 6), tmp_path / "store", limit=128)
    to_jpeg_folder(tmp_path / "store", 2)
    assert not (tmp_path / "store" / DATA).exists() and read_layout(tmp_path / "store").format == "jpeg"  # type: ignore[union-attr]
    image = cv2.imread(str(tmp_path / "store" / "00003.jpg"))
    assert image.shape == (128, 128, 3) and read_index(cv2.resize(image[:, :, ::-1], (320, 240))) == 8


def test_a_jpeg_stream_over_a_truncated_file_fails_and_leaves_no_encoder(clip: Path, tmp_path: Path) -> None:
    """With the JPEG store, a truncated input still fails naming it, with no ffmpeg left and nothing complete."""
    import psutil

    from sam2flow.io.frames import FrameStore, FrameStream
    from sam2flow.io.video import VideoError

    def ffmpegs() -> set[int]:
        return {p.pid for p in psutil.Process().children(recursive=True) if p.name() == "ffmpeg"}

    before = ffmpegs()
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(clip.read_bytes()[: clip.stat().st_size // 3])
    stream = FrameStream(str(broken), probe(str(clip)), 128, keep=4, store=FrameStore("jpeg", 2))
    with pytest.raises(VideoError, match=r"broken\.mp4"):
        stream.extract(_sub(0, 40), tmp_path / "store")
    assert read_layout(tmp_path / "store") is None and stream.proc is None
    assert ffmpegs() <= before
