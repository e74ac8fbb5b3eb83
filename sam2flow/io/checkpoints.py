"""Checkpoint resolution: manifest names, 'random:<name>', local paths and fsspec URIs → a verified local file."""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import threading
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Literal

import yaml

from sam2flow.errors import InputError
from sam2flow.io import access, storage

log = logging.getLogger(__name__)

Kind = Literal["sam2", "sam3", "yolo"]
"""A model family of the manifest. The segmenter takes a SAM2 or a SAM 3 checkpoint (`SEGMENTER_KINDS`): a spec
resolved as ``"sam2"`` may name either, and `ResolvedCheckpoint.family` says which it is. ``"sam3"`` asks for a SAM 3
one only (the text detector's)."""
SEGMENTER_KINDS: tuple[Kind, ...] = ("sam2", "sam3")
RandomWriter = Callable[[str, Kind, str, Path], Path]
"""Writes a randomly initialised checkpoint: (manifest name, kind, model config, destination) → destination."""
RANDOM_PREFIX = "random:"
DOWNLOAD_TIMEOUT_S = 15.0


class CheckpointError(InputError, RuntimeError):
    """A checkpoint cannot be found, downloaded or verified; the message says how to supply it."""


@dataclass(frozen=True)
class ManifestEntry:
    """One named model in ``checkpoints/manifest.yaml``."""

    name: str
    kind: Kind
    config: str
    url: str
    sha256: str | None
    hub: str | None = None
    """A model-hub repository (``owner/name`` on huggingface.co) the file comes from, with the user's token, when
    the weights are gated there (`_hub_download`); None for a plain download from ``url``."""
    licence: str | None = None
    """What the weights' licence is, when it is not an open one (`sam2flow checkpoints list` says it)."""

    @property
    def filename(self) -> str:
        """The file's name (in the cache, and in the hub repository)."""
        return Path(self.url).name


@dataclass(frozen=True)
class ResolvedCheckpoint:
    """A checkpoint file ready to load, and what it is."""

    spec: str
    path: Path
    config: str | None
    """The model config (SAM2 Hydra config or YOLO YAML) when known from the manifest."""
    random_weights: bool
    sha256: str
    verified: bool
    """True when the file's sha256 matched a recorded one: the manifest's, or the one sam2flow recorded when it wrote
    the file (random checkpoints, fine-tuned detectors)."""
    family: Kind | None = None
    """The manifest's family of the model (``sam2``, ``sam3``, ``yolo``); None for a file named by path."""


def cache_dir() -> Path:
    """Where downloaded and generated checkpoints live (``SAM2FLOW_CACHE`` or ``~/.cache/sam2flow``, + checkpoints)."""
    return storage.cache_root() / "checkpoints"


def manifest_path() -> Path:
    """The checkpoint table: ``checkpoints/manifest.yaml`` of the repository, installed as package data of
    ``sam2flow.checkpoints`` (in a development install, the repository's file itself)."""
    return Path(str(resources.files("sam2flow.checkpoints").joinpath("manifest.yaml")))


def load_manifest() -> dict[str, ManifestEntry]:
    """All named models of `manifest_path`, keyed by name."""
    raw = yaml.safe_load(manifest_path().read_text())
    out: dict[str, ManifestEntry] = {}
    for kind in ("sam2", "sam3", "yolo"):
        for name, e in (raw.get(kind) or {}).items():
            out[name] = ManifestEntry(
                name=name,
                kind=kind,
                config=e["config"],
                url=e["url"],
                sha256=e.get("sha256"),
                hub=e.get("hub"),
                licence=e.get("licence"),
            )
    return out


def _entry(name: str, kind: Kind) -> ManifestEntry:
    manifest = load_manifest()
    kinds = SEGMENTER_KINDS if kind == "sam2" else (kind,)
    entry = manifest.get(name)
    if entry is None or entry.kind not in kinds:
        known = ", ".join(sorted(n for n, e in manifest.items() if e.kind in kinds))
        raise CheckpointError(
            f"unknown {kind} checkpoint {name!r}: use one of [{known}], 'random:<name>', or a path/URI to a .pt file"
        )
    return entry


def _download(entry: ManifestEntry, target: Path) -> None:
    from tqdm import tqdm

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f"{target.name}.tmp-{uuid.uuid4().hex[:8]}")
    log.info("downloading %s from %s to %s", entry.name, entry.url, target)
    try:
        with urllib.request.urlopen(entry.url, timeout=DOWNLOAD_TIMEOUT_S) as resp, open(tmp, "wb") as f:
            total = int(resp.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=f"download {entry.name}") as bar:
                while chunk := resp.read(1 << 20):
                    f.write(chunk)
                    bar.update(len(chunk))
        tmp.replace(target)
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        tmp.unlink(missing_ok=True)
        raise CheckpointError(
            f"checkpoint {entry.name!r} is not in the cache ({target}) and could not be downloaded from {entry.url} "
            f"({exc}). Download that URL on a machine with network access and copy the file to {target}, or point "
            "the config at a local path or URI of the file. For offline runs with random weights use "
            "configs/smoke.yaml."
        ) from exc


HUB_HELP = (
    "request access on its page (https://huggingface.co/{repo}), accept the licence, then log in with "
    "`hf auth login` or set HF_TOKEN in the environment"
)


def _hub_download(entry: ManifestEntry) -> tuple[Path, str | None]:
    """The file of a gated hub repository, fetched the way the hub expects: ``huggingface_hub`` with the user's
    token (``HF_TOKEN`` or ``hf auth login``), resumable, into the hub's shared cache (``HF_HOME``), and from that
    cache alone under ``HF_HUB_OFFLINE=1``. Returns the file and the sha256 the hub gives it (an LFS file's cache
    blob is named by it), None when the hub gives none.

    Raises:
        CheckpointError: No access yet, no token, not in the cache while offline, or no network.
    """
    assert entry.hub is not None
    try:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import GatedRepoError, LocalEntryNotFoundError, RepositoryNotFoundError
    except ImportError as exc:  # pragma: no cover - a dependency of sam2flow
        raise CheckpointError(f"checkpoint {entry.name!r} comes from the model hub: install huggingface_hub") from exc
    help_ = HUB_HELP.format(repo=entry.hub)
    try:
        path = Path(hf_hub_download(entry.hub, entry.filename))
    except GatedRepoError as exc:
        raise CheckpointError(
            f"checkpoint {entry.name!r} is gated on the model hub and this account has no access to {entry.hub}: "
            f"{help_}"
        ) from exc
    except RepositoryNotFoundError as exc:  # what the hub answers a request without a token for a gated repo
        raise CheckpointError(
            f"checkpoint {entry.name!r}: {entry.hub} could not be read without access: {help_}"
        ) from exc
    except LocalEntryNotFoundError as exc:
        raise CheckpointError(
            f"checkpoint {entry.name!r} is not in the model hub's cache and cannot be fetched now ({exc}); with "
            f"network access, {help_}, and run `sam2flow checkpoints fetch {entry.name}`"
        ) from exc
    except OSError as exc:
        raise CheckpointError(f"checkpoint {entry.name!r} could not be fetched from {entry.hub} ({exc})") from exc
    blob = path.resolve().name
    hub_sha = blob if len(blob) == 64 and all(c in "0123456789abcdef" for c in blob) else None
    return path, hub_sha


def hub_cached(entry: ManifestEntry) -> bool:
    """Whether a hub entry's file is in the hub's shared cache (nothing is fetched)."""
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(entry.hub or "", entry.filename), str)


def _verify(path: Path, expected: str | None, label: str) -> tuple[str, bool]:
    digest = storage.sha256_file(path)
    if expected is None:
        log.warning("no sha256 recorded for %s in the manifest: %s is not verified (sha256 %s)", label, path, digest)
        return digest, False
    if digest != expected:
        raise CheckpointError(
            f"checkpoint {label} at {path} has sha256 {digest}, expected {expected}: delete the file to download "
            "it again, or check the manifest"
        )
    return digest, True


_LOCKS: dict[str, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


@contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    """Only one thread of one process at a time writes ``path`` (videos in flight share the cache).

    Without it, two threads generating the same random checkpoint interleave their draws from torch's global
    generator and save weights that match neither seed.
    """
    with _LOCKS_GUARD:
        lock = _LOCKS.setdefault(str(path), threading.Lock())
    locks = cache_dir() / ".locks"
    locks.mkdir(parents=True, exist_ok=True)
    name = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:24]
    with lock, open(locks / f"{name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


CHECKPOINT_DIRS_ENV = "SAM2FLOW_CHECKPOINT_DIRS"
"""Folders or URI prefixes (separated by ``os.pathsep``; ``*`` for any) from which a checkpoint may be named by path
or URI. An operator's setting: a run's config alone can only name checkpoints of the manifest."""


def allowed_checkpoint_dirs() -> list[str]:
    """The folders and URI prefixes from which checkpoints may be named by path (see `CHECKPOINT_DIRS_ENV`)."""
    return [d for d in os.environ.get(CHECKPOINT_DIRS_ENV, "").split(os.pathsep) if d.strip()]


def _path_allowed(spec: str) -> bool:
    return any(access.inside(spec, d) for d in allowed_checkpoint_dirs())


def record_sha256(path: Path) -> str:
    """Record the sha256 of a checkpoint sam2flow wrote itself, beside it (``<file>.sha256``); returns it."""
    digest = storage.sha256_file(path)
    sidecar = path.with_name(path.name + ".sha256")
    tmp = sidecar.with_name(f"{sidecar.name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.write_text(digest + "\n")
    tmp.replace(sidecar)
    return digest


def _recorded_sha256(path: Path) -> str | None:
    sidecar = path.with_name(path.name + ".sha256")
    return sidecar.read_text().strip() if sidecar.is_file() else None


def _random(spec: str, kind: Kind, make_random: RandomWriter | None) -> ResolvedCheckpoint:
    entry = _entry(spec[len(RANDOM_PREFIX) :], kind)
    path = cache_dir() / "random" / f"{entry.name}.pt"
    with _exclusive(path):
        if path.exists() and _recorded_sha256(path) is None:
            # Written before sam2flow recorded hashes (or put there by someone else): never loaded, written anew.
            log.warning("%s at %s has no recorded sha256; writing it again", spec, path)
            path.unlink()
        if not path.exists():
            if make_random is None:
                raise CheckpointError(f"{spec} is not in the cache ({path}); run `sam2flow checkpoints random`")
            make_random(entry.name, entry.kind, entry.config, path)
            record_sha256(path)
    digest = storage.sha256_file(path)
    if _recorded_sha256(path) != digest:
        raise CheckpointError(
            f"{spec} at {path} is not the file sam2flow wrote there (its sha256 {digest} does not match the one "
            f"recorded in {path.name}.sha256): it is not loaded. Write it again with "
            "`sam2flow checkpoints random --force`."
        )
    return ResolvedCheckpoint(spec, path, entry.config, True, digest, True, entry.kind)


def _local_path(spec: str) -> Path:
    if storage.is_remote(spec):
        try:
            return storage.localize(spec, cache_dir() / "remote")
        except (OSError, ValueError, ImportError) as exc:
            raise CheckpointError(
                f"checkpoint {spec} could not be read ({exc}); check the URI and credentials"
            ) from exc
    path = Path(spec).expanduser()
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint file {path} does not exist; give an existing .pt file, a manifest name, or 'random:<name>'"
        )
    return path


def resolve(
    spec: str, kind: Kind, make_random: RandomWriter | None = None, expected_sha256: str | None = None
) -> ResolvedCheckpoint:
    """Turn a checkpoint spec into a local, verified file.

    Args:
        spec: A manifest name, ``random:<name>``, a local path, or an fsspec URI.
        kind: ``"sam2"`` or ``"yolo"``.
        make_random: Writes a ``random:<name>`` checkpoint that is not in the cache yet (the models layer passes
            it: see `sam2flow.models.weights.resolve`). Its sha256 is recorded beside it and checked on every use.
        expected_sha256: For a path or URI sam2flow wrote itself (a fine-tuned detector): the sha256 recorded when
            it was written. Such a file may be read without the operator allowing its folder; any other path or URI
            only from the folders the operator allows (`CHECKPOINT_DIRS_ENV`).

    Raises:
        CheckpointError: Unknown name, path not allowed, missing file, failed download or hash mismatch.
    """
    if spec.startswith(RANDOM_PREFIX):
        return _random(spec, kind, make_random)
    if spec in load_manifest():
        entry = _entry(spec, kind)
        if entry.hub is not None:
            path, hub_sha = _hub_download(entry)
            digest, ok = _verify(path, entry.sha256 or hub_sha, repr(entry.name))
            return ResolvedCheckpoint(spec, path, entry.config, False, digest, ok, entry.kind)
        path = cache_dir() / Path(entry.url).name
        with _exclusive(path):
            if not path.exists():
                _download(entry, path)
        digest, ok = _verify(path, entry.sha256, repr(entry.name))
        return ResolvedCheckpoint(spec, path, entry.config, False, digest, ok, entry.kind)
    if expected_sha256 is None and not _path_allowed(spec):
        raise CheckpointError(
            f"checkpoint {spec!r} is neither a name from checkpoints/manifest.yaml nor 'random:<name>', and paths are "
            f"only read from folders the operator allows: set {CHECKPOINT_DIRS_ENV}=<folder> in the environment "
            "(or pass --checkpoint-dir to the command) to allow that folder"
        )
    path = _local_path(spec)
    digest = storage.sha256_file(path)
    if expected_sha256 is not None and digest != expected_sha256:
        raise CheckpointError(
            f"checkpoint {spec} has sha256 {digest}, not the {expected_sha256} recorded when sam2flow wrote it: it "
            "was changed since, and is not loaded"
        )
    return ResolvedCheckpoint(spec, path, None, False, digest, expected_sha256 is not None)
