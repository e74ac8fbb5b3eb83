"""Live sources: a stream recorded into closed segment files, or a folder where recordings appear.

`record_stream` runs ffmpeg's segment muxer (no re-encoding) and hands over each segment as soon as ffmpeg closes it;
a dropped connection is retried with backoff, numbering on where it stopped, so nothing already recorded is touched.
`watch_folder` hands over each new file of a folder once it has stopped growing. Both call ``on_segment`` in order,
from the calling thread, and end when the source ends (or ``stop`` is set).
"""

from __future__ import annotations

import hashlib
import logging
import re
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sam2flow.errors import InputError
from sam2flow.io.video import require_binary

log = logging.getLogger(__name__)

STREAM_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "tcp://", "udp://", "srt://")
SEGMENT_NAME = "seg-{:06d}.mkv"
"""Recorded segments are Matroska: it takes any codec a stream carries, copied as it is."""
IO_TIMEOUT_US = 15_000_000
"""A connection that delivers nothing for this long (µs) counts as dropped."""
MAX_BACKOFF = 30.0


class SourceError(InputError, ValueError):
    """The source is neither a stream URL nor a local folder; the message says what is accepted."""


@dataclass(frozen=True)
class Segment:
    """One closed recording, in the order the source produced it."""

    index: int
    path: str
    start: float
    """Its first frame's time in the source's clock (seconds), when known; 0 for a folder's files."""


@dataclass(frozen=True)
class SourceEnd:
    """How a source ended: by itself (``ended``) or given up after retries; and how often it reconnected."""

    ended: bool
    segments: int
    reconnects: int
    reason: str = ""


def is_stream(source: str) -> bool:
    return source.lower().startswith(STREAM_SCHEMES)


def check_source(source: str, out: str) -> None:
    """A stream URL of a known scheme, or an existing local folder; and a local output folder (segments are
    recorded there as they come).

    Raises:
        SourceError: Otherwise, naming what is accepted.
    """
    if "://" in out:
        raise SourceError(f"--out {out!r}: a watch records and processes segments in a local folder; give a local path")
    if is_stream(source):
        return
    if "://" in source or not Path(source).is_dir():
        schemes = ", ".join(s.rstrip(":/") for s in STREAM_SCHEMES)
        raise SourceError(f"source {source!r} is neither a stream URL ({schemes}) nor an existing local folder")


def stream_id(source: str) -> str:
    """A folder name for a source: a readable part of it and a short digest of the whole."""
    tail = re.sub(r"[^a-z0-9]+", "-", source.lower().split("://", 1)[-1]).strip("-")[-40:] or "stream"
    return f"{tail}-{hashlib.sha256(source.encode()).hexdigest()[:8]}"


def _ffmpeg_command(url: str, folder: Path, segment_seconds: float, first: int, listing: Path) -> list[str]:
    timeout = ["-timeout", str(IO_TIMEOUT_US)] if url.lower().startswith(("rtsp", "rtsps")) else []
    if not timeout and not url.lower().startswith("udp"):
        timeout = ["-rw_timeout", str(IO_TIMEOUT_US)]
    return [
        require_binary("ffmpeg"), "-nostdin", "-v", "error", *timeout, "-i", url,
        "-map", "0:v:0", "-c", "copy", "-f", "segment", "-segment_time", f"{segment_seconds:g}",
        "-reset_timestamps", "1", "-segment_start_number", str(first),
        "-segment_list", str(listing), "-segment_list_type", "csv",
        str(folder / SEGMENT_NAME.replace("{:06d}", "%06d")),
    ]  # fmt: skip


def _listed(listing: Path, seen: int, folder: Path) -> list[Segment]:
    """Segments listed in ``listing`` after the first ``seen`` lines (ffmpeg appends a line as it closes each)."""
    if not listing.is_file():
        return []
    lines = [ln for ln in listing.read_text().splitlines() if ln.strip()]
    out = []
    for line in lines[seen:]:
        name, start, *_ = line.rsplit(",", 2)
        match = re.fullmatch(r"seg-(\d+)\.mkv", name)
        if match:
            out.append(Segment(int(match.group(1)), str(folder / name), float(start)))
    return out


def next_index(folder: Path) -> int:
    """The number after the last segment already recorded in ``folder`` (0 for an empty one)."""
    numbers = [int(m.group(1)) for p in folder.glob("seg-*.mkv") if (m := re.fullmatch(r"seg-(\d+)\.mkv", p.name))]
    return max(numbers, default=-1) + 1


def record_stream(
    url: str,
    folder: Path,
    segment_seconds: float,
    on_segment: Callable[[Segment], None],
    stop: threading.Event,
    retries: int = 5,
    backoff: float = 1.0,
) -> SourceEnd:
    """Record ``url`` into ``folder/seg-NNNNNN.mkv`` files of about ``segment_seconds`` (cut at keyframes), calling
    ``on_segment`` for each as soon as it is closed. A connection that fails or drops is retried after ``backoff``
    seconds, doubling up to 30 s, at most ``retries`` times in a row (a segment recorded resets the count)."""
    folder.mkdir(parents=True, exist_ok=True)
    segments = reconnects = failures = 0
    attempt = 0
    while not stop.is_set():
        attempt += 1
        listing = folder / f"segments-{time.strftime('%Y%m%dT%H%M%S')}-{attempt}.csv"
        cmd = _ffmpeg_command(url, folder, segment_seconds, next_index(folder), listing)
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        seen = 0
        while True:
            done = proc.poll() is not None
            for seg in _listed(listing, seen, folder):
                seen += 1
                segments += 1
                failures = 0
                on_segment(seg)
            if done:
                break
            if stop.wait(0.2):
                proc.terminate()
        stderr = (proc.stderr.read() if proc.stderr else b"").decode(errors="replace").strip()
        if proc.returncode == 0 or stop.is_set():
            return SourceEnd(True, segments, reconnects)
        failures += 1
        reason = stderr.splitlines()[-1] if stderr else f"ffmpeg exited with {proc.returncode}"
        if failures > retries:
            log.error("%s: giving up after %d failed attempt(s) in a row: %s", url, failures, reason)
            return SourceEnd(False, segments, reconnects, reason)
        wait = min(MAX_BACKOFF, backoff * 2 ** (failures - 1))
        log.warning("%s: connection failed or dropped (%s); retrying in %.0f s (%d/%d)", url, reason, wait,
                    failures, retries)  # fmt: skip
        reconnects += 1
        if stop.wait(wait):
            break
    return SourceEnd(True, segments, reconnects)


def watch_folder(
    folder: Path,
    pattern: str,
    on_segment: Callable[[Segment], None],
    stop: threading.Event,
    idle_exit: float | None = None,
    settle: float = 5.0,
    poll: float = 1.0,
) -> SourceEnd:
    """Call ``on_segment`` for each file of ``folder`` matching ``pattern``, in name order, once its size and time
    have not changed for ``settle`` seconds. Ends when ``stop`` is set, or after ``idle_exit`` seconds without a new
    file."""
    handed: set[str] = set()
    sizes: dict[str, tuple[tuple[int, int], float]] = {}  # name → (size, mtime) and since when it is so
    last_new = time.monotonic()
    count = 0
    while not stop.is_set():
        for path in sorted(folder.glob(pattern)):
            name = str(path)
            if name in handed or not path.is_file():
                continue
            st = path.stat()
            now = (st.st_size, st.st_mtime_ns)
            seen, since = sizes.get(name, (None, time.monotonic()))
            if seen != now:
                sizes[name] = (now, time.monotonic())
            elif st.st_size > 0 and time.monotonic() - since >= settle:
                handed.add(name)
                on_segment(Segment(count, name, 0.0))
                count += 1
                last_new = time.monotonic()
        if idle_exit is not None and time.monotonic() - last_new > idle_exit:
            break
        stop.wait(poll)
    return SourceEnd(True, count, 0)
