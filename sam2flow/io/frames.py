"""A subsequence's frames as the pipeline stores them between extraction and segmentation, no larger than the
model's input in either dimension, described by ``frames.json`` (written last, with the source size: masks, boxes
and prompts stay in source pixels). Two stores (`FrameStore`):

- ``raw``: the frames as raw YUV 4:2:0 in one file (``frames.yuv``);
- ``jpeg``: a folder of ``00000.jpg …`` (what SAM2's own predictor and the long-video scripts read).

SAM2 resizes every frame to its square input anyway, so frames are scaled once by ffmpeg while decoding (cheap in
YUV) instead of being written at full size and shrunk again. Both stores come from the same decoded YUV frames; the
JPEGs are encoded from them by one ffmpeg encoder, so a stream and a seek write the same files. A folder of JPEGs
without ``frames.json`` (e.g. written by the studio or for fine-tuning) is read too.
"""

from __future__ import annotations

import collections
import errno
import json
import subprocess
import tempfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from sam2flow.config import PipelineConfig
from sam2flow.core.types import Subsequence
from sam2flow.io.video import VideoError, VideoProbe, _command, _range_input, extraction_error, require_binary

LAYOUT = "frames.json"
DATA = "frames.yuv"
JPEG = "%05d.jpg"
SAM2_INPUT_SIZE = 1024
"""The input size of every SAM2 and SAM2.1 model config (`segmenter.image_size` rebuilds a model for another)."""


@dataclass(frozen=True)
class StoredFrames:
    """What ``frames.json`` says: how many frames, their stored size, and the source frame size."""

    count: int
    width: int
    height: int
    source_width: int
    source_height: int
    format: str = "yuv420p"
    """``yuv420p`` (raw, in ``frames.yuv``) or ``jpeg`` (``00000.jpg …``)."""

    @property
    def frame_bytes(self) -> int:
        return self.width * self.height * 3 // 2


@dataclass(frozen=True)
class FrameStore:
    """How extracted frames are stored: ``raw`` YUV or ``jpeg`` files of ffmpeg quality ``quality`` (-q:v)."""

    kind: str = "raw"
    quality: int = 2

    @classmethod
    def of(cls, cfg: PipelineConfig) -> FrameStore:
        return cls(cfg.video.frame_store, cfg.video.jpeg_quality)


RAW = FrameStore()


def _jpeg_encoder(out_dir: Path, width: int, height: int, quality: int, stdin: Any) -> subprocess.Popen[bytes]:
    """ffmpeg turning raw YUV 4:2:0 frames from ``stdin`` into ``out_dir/00000.jpg …``."""
    cmd = [require_binary("ffmpeg"), "-nostdin", "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "yuv420p",
           "-s", f"{width}x{height}", "-i", "pipe:", "-q:v", str(quality), "-start_number", "0", "-f", "image2",
           str(out_dir / JPEG)]  # fmt: skip
    return subprocess.Popen(cmd, stdin=stdin, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _finish(out_dir: Path, layout: StoredFrames, what: str) -> StoredFrames:
    """Check that ``layout.count`` frames were stored, then write ``frames.json`` (last)."""
    written = (
        len(list(out_dir.glob("*.jpg")))
        if layout.format == "jpeg"
        else (out_dir / DATA).stat().st_size // layout.frame_bytes
    )
    if written != layout.count:
        raise VideoError(
            f"extracting {what} gave {written} frames, expected {layout.count}; the file may be truncated or have a "
            "variable frame rate that ffprobe misreports"
        )
    (out_dir / LAYOUT).write_text(json.dumps(asdict(layout)))
    return layout


def _clear(out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / LAYOUT).unlink(missing_ok=True)
    (out_dir / DATA).unlink(missing_ok=True)
    for stale in out_dir.glob("*.jpg"):
        stale.unlink()


def frame_limit(cfg: PipelineConfig) -> int:
    """The largest frame side segmentation needs: SAM2's input size, or the detector's when that is larger."""
    sizes = [cfg.segmenter.image_size or SAM2_INPUT_SIZE]
    if cfg.detector.enabled:
        sizes.append(cfg.detector.image_size)
    if cfg.finetune.enabled:
        sizes.append(cfg.finetune.image_size)
    return max(sizes)


def stored_bytes(width: int, height: int, limit: int) -> int:
    """The size of one stored frame of a ``width`` x ``height`` source."""
    w, h = stored_size(width, height, limit)
    return StoredFrames(1, w, h, width, height).frame_bytes


def stored_size(width: int, height: int, limit: int) -> tuple[int, int]:
    """Each dimension at most ``limit`` (the model's input size), rounded down to even (YUV 4:2:0)."""
    return max(2, min(width, limit) // 2 * 2), max(2, min(height, limit) // 2 * 2)


def _scaled_input(video: str, info: VideoProbe, start: int, count: int | None, width: int, height: int) -> Any:
    """The video from frame ``start`` on (see `_range_input`), scaled to ``width`` x ``height`` when that differs."""
    stream = _range_input(video, info, start, count)
    if (width, height) != (info.width, info.height):
        stream = stream.filter("scale", width, height)
    return stream


def extract_frames(
    video: str, info: VideoProbe, sub: Subsequence, out_dir: Path, limit: int, store: FrameStore = RAW
) -> StoredFrames:
    """Decode the subsequence's frames (frame-accurate, see `_range_input`) into ``out_dir``, scaled so that neither
    dimension exceeds ``limit``, in the ``store`` format, and describe them in ``frames.json`` (written last).

    Raises:
        VideoError: If ffmpeg fails or writes a different number of frames.
        StorageError: If the disk is full.
    """
    _clear(out_dir)
    width, height = stored_size(info.width, info.height, limit)
    jpeg = store.kind == "jpeg"
    target = "pipe:" if jpeg else str(out_dir / DATA)
    stream = _scaled_input(video, info, sub.start, sub.length, width, height).output(
        target, format="rawvideo", pix_fmt="yuv420p", fps_mode="passthrough", **{"frames:v": sub.length}
    )
    if jpeg:
        code, stderr = _decode_to_jpegs(_command(stream), out_dir, width, height, store.quality)
    else:
        proc = subprocess.run(_command(stream), capture_output=True, text=True)
        code, stderr = proc.returncode, proc.stderr
    if code != 0:
        raise extraction_error(video, sub, out_dir, stderr)
    layout = StoredFrames(sub.length, width, height, info.width, info.height, "jpeg" if jpeg else "yuv420p")
    return _finish(out_dir, layout, f"frames {sub.start}-{sub.stop - 1} of {video}")


def _decode_to_jpegs(decode: list[str], out_dir: Path, width: int, height: int, quality: int) -> tuple[int, str]:
    """Run the decoder ``decode`` (raw YUV to its stdout) into the JPEG encoder; their exit code and errors."""
    decoder = subprocess.Popen(decode, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert decoder.stdout is not None and decoder.stderr is not None
    encoder = _jpeg_encoder(out_dir, width, height, quality, decoder.stdout)
    decoder.stdout.close()  # the encoder holds the pipe now
    encoder_errors = encoder.communicate()[1]
    decoder_errors = decoder.stderr.read()
    decoder.stderr.close()
    code = decoder.wait() or encoder.returncode
    return code, (decoder_errors + encoder_errors).decode(errors="replace")


def to_jpeg_folder(frames_dir: Path, quality: int) -> None:
    """Turn a raw store into a folder of JPEGs (what ``output.keep_frames`` keeps: files a user can open)."""
    layout = read_layout(frames_dir)
    if layout is None or layout.format == "jpeg":
        return
    (frames_dir / LAYOUT).unlink()
    with open(frames_dir / DATA, "rb") as raw:
        encoder = _jpeg_encoder(frames_dir, layout.width, layout.height, quality, raw)
        stderr = encoder.communicate()[1].decode(errors="replace")
    if encoder.returncode:
        raise VideoError(f"the frames in {frames_dir} could not be written as JPEGs: {stderr.strip()[-500:]}")
    (frames_dir / DATA).unlink()
    _finish(frames_dir, replace(layout, format="jpeg"), f"the frames in {frames_dir}")


class FrameStream:
    """One ffmpeg decoding a video, scaled as `extract_frames` scales it, from which consecutive subsequences are
    cut in order: each seek to a subsequence's start would decode again from the keyframe before it (up to several
    seconds of video), and the frames two subsequences share are kept instead of decoded twice. A subsequence that
    does not follow on reopens the stream at its start. `close` ends the ffmpeg process. One thread at a time."""

    SKIP = 256
    """Frames the stream decodes and drops to reach a later start, before it seeks instead."""

    def __init__(self, video: str, info: VideoProbe, limit: int, keep: int, store: FrameStore = RAW) -> None:
        self.video, self.info, self.keep, self.store = video, info, keep, store
        self.width, self.height = stored_size(info.width, info.height, limit)
        self.frame_bytes = stored_bytes(info.width, info.height, limit)
        self.proc: subprocess.Popen[bytes] | None = None
        self.errors: Any = None
        self.next = 0  # index of the next frame the pipe gives
        self.tail: collections.deque[tuple[int, bytes]] = collections.deque(maxlen=max(keep, 1))

    def _open(self, start: int) -> None:
        self.close()
        stream = _scaled_input(self.video, self.info, start, None, self.width, self.height)
        stream = stream.output("pipe:", format="rawvideo", pix_fmt="yuv420p", fps_mode="passthrough")
        self.errors = tempfile.TemporaryFile()  # noqa: SIM115 (closed by close)
        self.proc = subprocess.Popen(_command(stream), stdout=subprocess.PIPE, stderr=self.errors)
        self.next = start
        self.tail.clear()

    def _read(self, sub: Subsequence, out_dir: Path) -> bytes:
        assert self.proc is not None and self.proc.stdout is not None
        data = self.proc.stdout.read(self.frame_bytes)
        if len(data) < self.frame_bytes:
            self.proc.wait()
            self.errors.seek(0)
            stderr = self.errors.read().decode(errors="replace") if self.proc.returncode else ""
            self.close()
            raise extraction_error(self.video, sub, out_dir, stderr, f" (stopped at frame {self.next})")
        frame = self.next
        self.next += 1
        self.tail.append((frame, data))
        return data

    def extract(self, sub: Subsequence, out_dir: Path) -> StoredFrames:
        """What `extract_frames` writes for ``sub``, cut from the stream."""
        first_kept = self.tail[0][0] if self.tail else self.next
        if self.proc is None or not first_kept <= sub.start <= self.next + self.SKIP:
            self._open(sub.start)
        while self.next < sub.start:
            self._read(sub, out_dir)
        _clear(out_dir)
        jpeg = self.store.kind == "jpeg"
        try:
            if jpeg:
                encoder = _jpeg_encoder(out_dir, self.width, self.height, self.store.quality, subprocess.PIPE)
                assert encoder.stdin is not None
                try:
                    self._write(sub, out_dir, encoder.stdin)
                except BaseException:
                    encoder.kill()
                    encoder.communicate()
                    raise
                stderr = encoder.communicate()[1].decode(errors="replace")  # closes its stdin: the end of the frames
                if encoder.returncode:
                    raise extraction_error(self.video, sub, out_dir, stderr)
            else:
                with open(out_dir / DATA, "wb") as out:
                    self._write(sub, out_dir, out)
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
            raise extraction_error(self.video, sub, out_dir, "No space left on device") from exc
        layout = StoredFrames(sub.length, self.width, self.height, self.info.width, self.info.height,
                              "jpeg" if jpeg else "yuv420p")  # fmt: skip
        return _finish(out_dir, layout, f"frames {sub.start}-{sub.stop - 1} of {self.video}")

    def _write(self, sub: Subsequence, out_dir: Path, out: Any) -> None:
        for frame, data in list(self.tail):
            if sub.start <= frame < sub.stop:
                out.write(data)
        while self.next < sub.stop:
            out.write(self._read(sub, out_dir))

    def close(self) -> None:
        if self.proc is not None:
            if self.proc.stdout is not None:
                self.proc.stdout.close()
            self.proc.kill()
            self.proc.wait()
            self.proc = None
        if self.errors is not None:
            self.errors.close()
            self.errors = None


def read_layout(frames_dir: Path) -> StoredFrames | None:
    """The folder's ``frames.json``, or None for a folder of JPEGs."""
    path = frames_dir / LAYOUT
    return StoredFrames(**json.loads(path.read_text())) if path.is_file() else None


class FrameReader:
    """Random access to a folder's frames as RGB ``(H, W, 3)`` uint8 at their stored size, and the source size."""

    def __init__(self, frames_dir: Path) -> None:
        self.layout = read_layout(frames_dir)
        self._yuv: np.ndarray | None = None
        self._jpegs: list[Path] = []
        lay = self.layout
        if lay is not None and lay.format != "jpeg":
            shape = (lay.count, lay.height * 3 // 2, lay.width)
            self._yuv = np.memmap(frames_dir / DATA, np.uint8, "r", shape=shape)
        else:
            self._jpegs = sorted(frames_dir.glob("*.jpg"))
            if not self._jpegs:
                raise FileNotFoundError(f"no frames in {frames_dir} (neither {LAYOUT} nor JPEGs)")
        if lay is not None:  # the stored size may be smaller than the source's
            self.count, self.source_width, self.source_height = lay.count, lay.source_width, lay.source_height
        else:  # JPEGs written by others: their own size is the source size
            self.count = len(self._jpegs)
            self.source_height, self.source_width = _jpeg_size(self._jpegs[0])

    def rgb(self, index: int) -> np.ndarray:
        """Frame ``index`` (local) as RGB at its stored size."""
        if self._yuv is not None:
            rgb: np.ndarray = cv2.cvtColor(np.asarray(self._yuv[index]), cv2.COLOR_YUV2RGB_I420)
            return rgb
        bgr = cv2.imread(str(self._jpegs[index]), cv2.IMREAD_COLOR)
        if bgr is None:
            raise VideoError(f"{self._jpegs[index]} is not a readable JPEG")
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        return rgb

    def close(self) -> None:
        self._yuv = None


def _jpeg_size(path: Path) -> tuple[int, int]:
    """(height, width) of a JPEG from its header."""
    from PIL import Image

    with Image.open(path) as im:
        return im.height, im.width
