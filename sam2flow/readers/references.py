"""Reference identities: a small library of frames with one mask per named identity.

With ``references.path`` set, every subsequence starts with these frames as SAM2 conditioning frames (mask prompts),
so each identity is tracked under its name and its own fixed track id in every subsequence and every recording,
even where the detector finds nothing. The library is a folder:

- ``references.json``: the identities (name and track id, in order) and the frames (image file, size, the frame of
  the run it was taken from, and one mask file per identity shown on it), each file with its sha256;
- ``frame-<n>.jpg`` and ``frame-<n>-<identity>.png`` (0 background, 255 object).

`make_references` builds one from a finished run; `load_references` reads one and verifies every file.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sam2flow.core import rle
from sam2flow.errors import InputError

if TYPE_CHECKING:
    from sam2flow.readers.run import Run

LIBRARY = "references.json"
FORMAT = "sam2flow-references/1"
MAX_FRAMES = 8
"""Reference frames per library at most: each is a conditioning frame of every subsequence (memory and time)."""
MAX_IDENTITIES = 16
MAX_SIDE = 4096
MAX_LIBRARY_BYTES = 1 << 20
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class ReferenceError(InputError, ValueError):
    """The reference library (or the request to make one) is not usable; the message names the file and the fix."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Identity(_Strict):
    name: str = Field(pattern=NAME.pattern)
    track_id: int = Field(ge=1, le=1_000_000)


class _Mask(_Strict):
    identity: str
    file: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class _Frame(_Strict):
    image: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    width: int = Field(ge=16, le=MAX_SIDE)
    height: int = Field(ge=16, le=MAX_SIDE)
    source_frame: int = Field(ge=0)
    masks: list[_Mask] = Field(min_length=1)


class _Library(_Strict):
    format: str
    source: str = ""
    identities: list[_Identity] = Field(min_length=1, max_length=MAX_IDENTITIES)
    frames: list[_Frame] = Field(min_length=1, max_length=MAX_FRAMES)


@dataclass(frozen=True)
class Identity:
    """A named object with its fixed track id."""

    name: str
    track_id: int


@dataclass(frozen=True)
class ReferenceFrame:
    """One reference image with the masks of the identities it shows."""

    rgb: np.ndarray
    """``(H, W, 3)`` uint8."""
    masks: dict[str, np.ndarray]
    """Identity name → ``(H, W)`` bool mask."""
    source_frame: int
    """The frame of the run it was taken from."""


@dataclass(frozen=True)
class ReferenceSet:
    """A verified library: its identities, its frames, and the digest of its content (part of the part digest)."""

    identities: tuple[Identity, ...]
    frames: tuple[ReferenceFrame, ...]
    digest: str


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _read(folder: Path, name: str, sha256: str) -> bytes:
    if "/" in name or "\\" in name or name.startswith("."):
        raise ReferenceError(f"{folder / LIBRARY}: file name {name!r} must be a plain file name in the library folder")
    path = folder / name
    if not path.is_file():
        raise ReferenceError(f"{path} is missing: make the library again (sam2flow references make)")
    data = path.read_bytes()
    if _sha256(data) != sha256:
        raise ReferenceError(f"{path} does not match the sha256 in {LIBRARY}: it was changed; make the library again")
    return data


def _image(data: bytes, path: Path, mode: str, size: tuple[int, int]) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.size != size:
                raise ReferenceError(f"{path}: {img.size[0]}x{img.size[1]} px, but {LIBRARY} says {size[0]}x{size[1]}")
            return np.asarray(img.convert(mode))
    except (OSError, Image.DecompressionBombError) as exc:
        raise ReferenceError(f"{path} is not a readable image ({exc})") from exc


def load_references(folder: str | Path) -> ReferenceSet:
    """Read and verify a reference library.

    Raises:
        ReferenceError: When ``references.json`` is missing, too large, not valid, or names unknown identities, or a
            file is missing, changed (sha256) or of the wrong size.
    """
    root = Path(folder)
    path = root / LIBRARY
    if not path.is_file():
        raise ReferenceError(f"no {LIBRARY} in {root}: references.path must name a folder made by "
                             "`sam2flow references make`")  # fmt: skip
    raw = path.read_bytes()
    if len(raw) > MAX_LIBRARY_BYTES:
        raise ReferenceError(f"{path} is larger than {MAX_LIBRARY_BYTES} bytes: not a reference library")
    try:
        lib = _Library.model_validate_json(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ReferenceError(f"{path} is not a valid reference library ({where}: {first['msg']})") from exc
    if lib.format != FORMAT:
        raise ReferenceError(f"{path}: format {lib.format!r} is not {FORMAT!r}; make the library again")
    names = [i.name for i in lib.identities]
    if len(set(names)) != len(names) or len({i.track_id for i in lib.identities}) != len(names):
        raise ReferenceError(f"{path}: identity names and track ids must be unique")
    frames = []
    for f in lib.frames:
        size = (f.width, f.height)
        rgb = _image(_read(root, f.image, f.sha256), root / f.image, "RGB", size)
        masks: dict[str, np.ndarray] = {}
        for m in f.masks:
            if m.identity not in names or m.identity in masks:
                raise ReferenceError(f"{path}: frame {f.image} names identity {m.identity!r} unknown or twice")
            masks[m.identity] = _image(_read(root, m.file, m.sha256), root / m.file, "L", size) > 127
        frames.append(ReferenceFrame(rgb, masks, f.source_frame))
    identities = tuple(Identity(i.name, i.track_id) for i in lib.identities)
    return ReferenceSet(identities, tuple(frames), _sha256(raw)[:16])


def parse_tracks(text: str) -> dict[int, str]:
    """``1:mouse_a,2:mouse_b`` as {track id: identity name}.

    Raises:
        ReferenceError: When an item is not ``<track id>:<name>`` or a name is not a plain word.
    """
    out: dict[int, str] = {}
    for item in filter(None, (t.strip() for t in text.split(","))):
        track, sep, name = item.partition(":")
        if not sep or not track.strip().isdigit() or not NAME.match(name.strip()):
            raise ReferenceError(
                f"--tracks item {item!r} must be <track id>:<name>, the name of letters, digits, '_', '.' or '-'"
            )
        out[int(track)] = name.strip()
    if not out:
        raise ReferenceError("--tracks names no track: give e.g. 1:mouse_a,2:mouse_b")
    if len(set(out.values())) != len(out):
        raise ReferenceError("--tracks gives two tracks the same name")
    return out


def make_references(run_dir: str, frames: Sequence[int], tracks: dict[int, str], dest: str | Path) -> Path:
    """Build a reference library from a finished run: each listed frame of its video with the masks of the listed
    tracks on it. Identities get track ids 1, 2, … in the order of ``tracks``. Written to a temporary folder and
    moved to ``dest`` when complete.

    Raises:
        ReferenceError: When a frame is outside the run, a track has no mask on any listed frame, too many frames or
            identities are asked for, ``dest`` exists, or the run's video cannot be read.
    """
    from sam2flow.readers.run import read_run

    run = read_run(run_dir)
    target = Path(dest)
    if target.exists():
        raise ReferenceError(f"{target} exists: choose a new folder for the library")
    if not frames or len(frames) > MAX_FRAMES or len(set(frames)) != len(frames):
        raise ReferenceError(f"--frames: give 1 to {MAX_FRAMES} different frames")
    if len(tracks) > MAX_IDENTITIES:
        raise ReferenceError(f"--tracks: at most {MAX_IDENTITIES} identities")
    for f in frames:
        if not 0 <= f < run.num_frames:
            raise ReferenceError(f"--frames: frame {f} is outside the run's {run.num_frames} frames")
    video = run.local_video()
    if video is None:
        raise ReferenceError(f"{run_dir}: its input video is not readable here; make the library where it is")
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        _write_library(run, video, frames, tracks, work)
        os.chmod(work, 0o755)
        os.rename(work, target)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return target


def _write_library(run: Run, video: str, frames: Sequence[int], tracks: dict[int, str], work: Path) -> None:
    """Write the library's images, masks and ``references.json`` into ``work``."""
    from sam2flow.io.video import iter_frames

    identities = [_Identity(name=name, track_id=n) for n, name in enumerate(tracks.values(), 1)]
    entries: list[_Frame] = []
    shown: set[int] = set()
    for f in sorted(frames):
        (frame,) = run.frames(range(f, f + 1), tracks=list(tracks))
        if not len(frame):
            continue
        rgb = next(iter_frames(video, run.info, max_frames=1, start=f))
        image = f"frame-{f:06d}.jpg"
        Image.fromarray(rgb).save(work / image, quality=95)
        masks = []
        for track, m in zip(frame.track_ids.tolist(), frame.rles):
            name = tracks[int(track)]
            file = f"frame-{f:06d}-{name}.png"
            Image.fromarray(rle.decode(m, run.height, run.width).astype(np.uint8) * 255).save(work / file)
            masks.append(_Mask(identity=name, file=file, sha256=_sha256((work / file).read_bytes())))
            shown.add(int(track))
        h, w = rgb.shape[:2]
        sha = _sha256((work / image).read_bytes())
        entries.append(_Frame(image=image, sha256=sha, width=w, height=h, source_frame=f, masks=masks))
    missing = [f"{t}:{n}" for t, n in tracks.items() if t not in shown]
    if missing:
        raise ReferenceError(f"track(s) {', '.join(missing)} have no mask on frames {sorted(frames)}: pick frames "
                             "where each is visible")  # fmt: skip
    lib = _Library(format=FORMAT, source=str(run.path), identities=identities, frames=entries)
    (work / LIBRARY).write_text(json.dumps(lib.model_dump(), indent=2))
