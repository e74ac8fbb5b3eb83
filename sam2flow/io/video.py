"""Video probing, frame-accurate JPEG extraction, and frame streams, through the ffmpeg/ffprobe binaries.

Every ffmpeg and ffprobe invocation is built with ffmpeg-python (``ffmpeg.probe`` and its stream builder); this
module runs them and turns their failures into `VideoError` messages that name the input.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import cv2
import ffmpeg
import numpy as np

from sam2flow.core.types import Subsequence
from sam2flow.errors import InputError
from sam2flow.io.storage import StorageError


class VideoError(InputError, RuntimeError):
    """The input is not a readable video; the message names it and what to do."""


def require_binary(name: str) -> str:
    """Path of an ffmpeg binary, or an error that says how to install it."""
    path = shutil.which(name)
    if path is None:
        raise VideoError(
            f"{name} was not found on PATH. Install it (Debian/Ubuntu: sudo apt-get install ffmpeg) "
            "or run scripts/setup.sh, which does."
        )
    return path


@dataclass(frozen=True)
class VideoProbe:
    """What the pipeline needs to know about a video stream.

    Sizes are the displayed ones: a phone recording stored 1920x1080 with a 90° display rotation is 1080x1920 here,
    and every frame sam2flow decodes (ffmpeg applies the rotation), every mask, box, prompt and zone, and the
    annotated video are in that orientation.
    """

    width: int
    height: int
    fps: str
    """Frame rate as an exact fraction string, e.g. '30000/1001'."""
    num_frames: int
    duration: float
    codec: str
    constant_frame_rate: bool
    rotation: int = 0
    """Display rotation of the stored frames, degrees counter-clockwise (0, 90, 180 or 270), from the display matrix."""

    @property
    def fps_float(self) -> float:
        """Frame rate as a float."""
        return float(Fraction(self.fps))

    def to_dict(self) -> dict[str, object]:
        """Plain dict for manifests."""
        return asdict(self)


def probe(path: str) -> VideoProbe:
    """Probe the first video stream of a local file.

    The frame count is the number of video packets (exact for the containers ffmpeg writes; no full decode).

    Raises:
        VideoError: If the file is missing, unreadable, has no video stream or has zero frames.
    """
    if not Path(path).is_file():
        raise VideoError(f"input video {path} does not exist")
    st = os.stat(path)
    return _probe(str(Path(path).resolve()), st.st_size, st.st_mtime_ns, path)


@functools.lru_cache(maxsize=32)
def _probe(resolved: str, size: int, mtime_ns: int, path: str) -> VideoProbe:
    """`probe` remembered per file, size and modification time: counting packets reads the whole file."""
    try:
        info = ffmpeg.probe(
            resolved, cmd=require_binary("ffprobe"), v="error", select_streams="v:0", count_packets=None
        )
    except ffmpeg.Error as exc:
        stderr = (exc.stderr or b"").decode(errors="replace").strip()
        reason = stderr.splitlines()[-1] if stderr else "ffprobe failed"
        raise VideoError(f"input {path} is not a readable video ({reason}); check the file or re-encode it") from exc
    streams = info.get("streams") or []
    if not streams:
        raise VideoError(f"input {path} has no video stream; give a video file (e.g. .mp4)")
    s = streams[0]
    frames = int(s.get("nb_read_packets") or 0)
    if frames <= 0:
        raise VideoError(f"input {path} has zero video frames; check the file or re-encode it")
    r_rate = s.get("r_frame_rate", "0/1")
    avg_rate = s.get("avg_frame_rate", "0/1")
    rate = r_rate if Fraction(r_rate) > 0 else avg_rate
    if Fraction(rate) <= 0:
        raise VideoError(f"input {path} has no frame rate; re-encode it with a constant frame rate")
    duration = float(s.get("duration") or info.get("format", {}).get("duration") or frames / float(Fraction(rate)))
    cfr = Fraction(avg_rate) > 0 and abs(float(Fraction(avg_rate)) - float(Fraction(r_rate))) < 1e-3
    rotation = _rotation(s)
    width, height = (
        (int(s["height"]), int(s["width"])) if rotation in (90, 270) else (int(s["width"]), int(s["height"]))
    )
    return VideoProbe(
        width=width,
        height=height,
        fps=str(Fraction(rate)),
        num_frames=frames,
        duration=duration,
        codec=str(s.get("codec_name", "")),
        constant_frame_rate=cfr,
        rotation=rotation,
    )


def _rotation(stream: dict[str, Any]) -> int:
    """The display rotation ffprobe reads from a stream's display matrix, as 0, 90, 180 or 270."""
    for side in stream.get("side_data_list") or []:
        if "rotation" in side:
            return round(float(side.get("rotation", 0)) / 90.0) % 4 * 90
    return 0


def frame_times(path: str, info: VideoProbe) -> np.ndarray:
    """Each frame's presentation time in seconds from the first frame, in display order (float64, one per frame).

    Read from the stream's packet timestamps, so a variable frame rate is kept; a stream whose packets carry no
    timestamps gets ``frame / fps``.

    Raises:
        VideoError: If ffprobe cannot read the file.
    """
    try:
        data = ffmpeg.probe(
            path,
            cmd=require_binary("ffprobe"),
            v="error",
            select_streams="v:0",
            show_entries="packet=pts:stream=time_base",
        )
    except ffmpeg.Error as exc:
        raise VideoError(f"input {path} is not a readable video (its timestamps cannot be read)") from exc
    base = Fraction(str(data["streams"][0].get("time_base", "0/1")))
    pts = sorted(int(p["pts"]) for p in data.get("packets", []) if str(p.get("pts", "")).lstrip("-").isdigit())
    if base <= 0 or len(pts) != info.num_frames:
        return np.arange(info.num_frames, dtype=np.float64) / info.fps_float
    return np.array([float((p - pts[0]) * base) for p in pts], dtype=np.float64)


def extract_subsequence(video: str, info: VideoProbe, sub: Subsequence, out_dir: Path, jpeg_quality: int = 2) -> int:
    """Write the subsequence's frames to ``out_dir/00000.jpg …`` (local index = global frame - ``sub.start``).

    Seeking is frame-accurate (see `_range_input`).

    Returns:
        The number of JPEGs written, which equals ``sub.length``.

    Raises:
        VideoError: If ffmpeg fails or writes a different number of frames.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.glob("*.jpg"):
        stale.unlink()
    stream = _range_input(video, info, sub.start, sub.length).output(
        str(out_dir / "%05d.jpg"),
        **{"frames:v": sub.length, "fps_mode": "passthrough", "q:v": jpeg_quality, "start_number": 0},
    )
    proc = subprocess.run(_command(stream), capture_output=True, text=True)
    if proc.returncode != 0:
        raise extraction_error(video, sub, out_dir, proc.stderr)
    written = len(list(out_dir.glob("*.jpg")))
    if written != sub.length:
        raise VideoError(
            f"extracting frames {sub.start}-{sub.stop - 1} of {video} gave {written} frames, expected {sub.length}; "
            "the file may be truncated or have a variable frame rate that ffprobe misreports"
        )
    return written


def extraction_error(video: str, sub: Subsequence, out_dir: Path, stderr: str, where: str = "") -> InputError:
    """The error for a failed extraction of ``sub`` into ``out_dir``: the folder is full (``stderr`` says so), or
    else the input is broken (``where``: e.g. the frame it stopped at)."""
    what = f"frames {sub.start}-{sub.stop - 1} of {video}"
    if "No space left on device" in stderr:
        return StorageError(
            f"no space left in {out_dir} while extracting {what}: free some space there, or set output.work_dir to "
            "a folder on a larger disk"
        )
    return VideoError(
        f"ffmpeg could not extract {what}{where}: the file may be truncated or corrupt; check it or re-encode it "
        f"(ffmpeg: {_telling_line(stderr) if stderr.strip() else 'it ended early'})"
    )


_TELLING = ("partial file", "Invalid data", "moov atom not found", "No such file", "Permission denied", "truncat")


def _telling_line(stderr: str) -> str:
    """The line of ffmpeg's error output that says most about a broken input (else its last line)."""
    lines = [line.strip() for line in stderr.strip().splitlines() if line.strip()]
    telling = [line for line in lines if any(word in line for word in _TELLING)]
    return (telling or lines or ["no message"])[-1 if not telling else 0]


def _command(stream: Any) -> list[str]:
    """The ffmpeg command line of an ffmpeg-python output stream: quiet, never reading stdin, overwriting."""
    args: list[str] = (
        stream.global_args("-nostdin", "-v", "error").overwrite_output().compile(cmd=require_binary("ffmpeg"))
    )
    return args


def _range_input(video: str, info: VideoProbe, start: int, count: int | None) -> Any:
    """The video stream of ``video`` from frame ``start`` on (``count`` frames of it, or to the end).

    Constant-frame-rate inputs are seeked to half a frame before ``start`` (ffmpeg's accurate seek then starts
    exactly at that frame); variable-frame-rate inputs are decoded from the start and selected by frame number.
    The output's ``frames:v`` option stops it after ``count`` frames.
    """
    if start == 0:
        return ffmpeg.input(video)["v:0"]
    if info.constant_frame_rate:
        return ffmpeg.input(video, ss=f"{max(0.0, (start - 0.5) / info.fps_float):.6f}")["v:0"]
    stop = start + count - 1 if count is not None else "1e12"
    return ffmpeg.input(video)["v:0"].filter("select", f"between(n,{start},{stop})")


def iter_frames(video: str, info: VideoProbe, max_frames: int | None = None, start: int = 0) -> Iterator[np.ndarray]:
    """Yield decoded RGB frames ``(H, W, 3)`` uint8, one at a time, in order, from frame ``start`` on.

    ffmpeg's error output is discarded: nothing reads it while frames stream, so a pipe could fill up and stall a
    decoder that reports many errors. A stream that ends early simply yields fewer frames.
    """
    limit = {"frames:v": max_frames} if max_frames is not None else {}
    # Frames come as YUV 4:2:0 and OpenCV converts them (BT.601, limited range, like ffmpeg's own rgb24 output to
    # within a few levels, and cheaper); odd sizes, which 4:2:0 cannot hold exactly, come as RGB from ffmpeg.
    yuv = info.width % 2 == 0 and info.height % 2 == 0
    stream = _range_input(video, info, start, max_frames).output(
        "pipe:", format="rawvideo", pix_fmt="yuv420p" if yuv else "rgb24", fps_mode="passthrough", **limit
    )
    shape = (info.height * 3 // 2, info.width) if yuv else (info.height, info.width, 3)
    frame_bytes = int(np.prod(shape))
    proc = subprocess.Popen(_command(stream), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None  # for type checkers: PIPE was requested
    try:
        while True:
            buf = proc.stdout.read(frame_bytes)
            if len(buf) < frame_bytes:
                break
            raw = np.frombuffer(buf, np.uint8).reshape(shape)
            yield cv2.cvtColor(raw, cv2.COLOR_YUV2RGB_I420) if yuv else raw
    finally:
        proc.stdout.close()
        proc.kill()
        proc.wait()


class FrameWriter:
    """Encodes RGB frames as H.264 (yuv420p), each at its own presentation time (so variable frame rates survive)."""

    TIME_BASE = Fraction(1, 90000)

    def __init__(self, container: Any, stream: Any, width: int, height: int) -> None:
        self.container, self.stream = container, stream
        self.width, self.height = width, height
        self.frames = 0

    def write(self, frame: np.ndarray, time: float) -> None:
        """Add one ``(height, width, 3)`` RGB frame shown at ``time`` seconds."""
        import av

        if frame.shape[:2] != (self.stream.height, self.stream.width):  # odd sizes: yuv420p needs even ones
            pad = ((0, self.stream.height - frame.shape[0]), (0, self.stream.width - frame.shape[1]), (0, 0))
            frame = np.pad(frame, pad)
        # OpenCV's RGB -> YUV 4:2:0 (BT.601, limited range, as swscale's default) is several times faster here
        yuv = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2YUV_I420)
        out = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
        out.pts = round(time / self.TIME_BASE)
        out.time_base = self.TIME_BASE
        for packet in self.stream.encode(out):
            self.container.mux(packet)
        self.frames += 1


@contextmanager
def video_writer(path: Path, width: int, height: int, crf: int = 20, preset: str = "veryfast") -> Iterator[FrameWriter]:
    """An H.264 encoder (x264, yuv420p, at ``crf`` with x264's ``preset``) writing ``path``: an MPEG-TS piece for
    ``.ts`` (pieces join byte by byte, see `concat_videos`), else a finished MP4 with ``+faststart``. Odd sizes are
    padded by one pixel. The file is complete when the block exits cleanly.

    Raises:
        VideoError: If the encoder or the file fails.
    """
    import av

    piece = path.suffix == ".ts"
    try:
        container = av.open(
            str(path), "w", format="mpegts" if piece else None, options={} if piece else {"movflags": "+faststart"}
        )
    except (av.FFmpegError, OSError) as exc:
        raise VideoError(f"cannot write {path}: {exc}") from exc
    try:
        # No B-frames: every piece then starts without an encoder delay, so pieces joined byte by byte keep the
        # source timing exactly (B-frames shift each piece by its own reordering delay).
        stream = container.add_stream("libx264", options={"crf": str(crf), "preset": preset, "bf": "0"})
        stream.width, stream.height = width + width % 2, height + height % 2
        stream.pix_fmt = "yuv420p"
        stream.time_base = stream.codec_context.time_base = FrameWriter.TIME_BASE
        writer = FrameWriter(container, stream, width, height)
        yield writer
        for packet in stream.encode():
            container.mux(packet)
    except av.FFmpegError as exc:
        raise VideoError(f"encoding {path} failed: {exc}") from exc
    finally:
        container.close()


def concat_videos(parts: list[Path], out: Path) -> None:
    """Join MPEG-TS pieces written by `video_writer` with the same settings into one MP4, without re-encoding.

    The pieces are concatenated byte by byte (ffmpeg reads MPEG-TS timestamps across the joins) and remuxed, so
    the result has every frame once at the pieces' frame rate.

    Raises:
        VideoError: If ffmpeg fails.
    """
    joined = out.with_name(out.stem + ".joined.ts")
    with open(joined, "wb") as dst:
        for p in parts:
            with open(p, "rb") as src:
                shutil.copyfileobj(src, dst, 1 << 22)
    stream = ffmpeg.input(str(joined)).output(str(out), c="copy", movflags="+faststart")
    proc = subprocess.run(_command(stream), capture_output=True, text=True)
    joined.unlink()
    if proc.returncode != 0:
        raise VideoError(f"ffmpeg could not join {len(parts)} rendered pieces into {out}: {proc.stderr.strip()}")
