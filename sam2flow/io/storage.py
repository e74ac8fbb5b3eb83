"""Local paths and fsspec URIs behind one small API; every final file is written under a temporary name first."""

from __future__ import annotations

import functools
import hashlib
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import fsspec
from fsspec.core import url_to_fs

from sam2flow.errors import InputError


def is_remote(uri: str) -> bool:
    """Whether the URI names a non-local filesystem (``s3://``, ``memory://`` …)."""
    return "://" in uri and not uri.startswith("file://")


def absolute(uri: str) -> str:
    """A local path made absolute (what a run records, so that it means the same from any folder); URIs as given."""
    return uri if "://" in uri else os.path.abspath(os.path.expanduser(uri))


class StorageError(InputError):
    """A path or URI cannot be used: unknown scheme, missing driver, not a folder, read-only, or out of space."""


EXTRAS = {"s3": "s3", "s3a": "s3", "gs": "gcs", "gcs": "gcs"}
"""The pip extra of sam2flow that installs the driver of a storage scheme."""


def filesystem(uri: str) -> tuple[Any, str]:
    """The fsspec filesystem and the path inside it.

    Raises:
        StorageError: For a scheme fsspec does not know, or whose driver is not installed.
    """
    try:
        fs, path = url_to_fs(uri)
    except ValueError as exc:
        scheme = uri.split("://", 1)[0]
        raise StorageError(
            f"{uri}: unknown storage scheme {scheme!r}; give a local path or a URI such as s3://bucket/prefix"
        ) from exc
    except ImportError as exc:
        scheme = uri.split("://", 1)[0]
        extra = EXTRAS.get(scheme)
        hint = f"pip install 'sam2flow[{extra}]'" if extra else "install the fsspec driver for it"
        raise StorageError(f"{uri}: reading {scheme}:// needs a driver that is not installed ({exc}); {hint}") from exc
    return fs, str(path)


def join(base: str, *parts: str) -> str:
    """Join path parts onto a local path or URI."""
    out = base.rstrip("/")
    for p in parts:
        out = f"{out}/{p.strip('/')}"
    return out


def exists(uri: str) -> bool:
    """Whether the file or folder exists."""
    fs, path = filesystem(uri)
    return bool(fs.exists(path))


def remove(uri: str) -> None:
    """Delete a file if it exists."""
    fs, path = filesystem(uri)
    if fs.exists(path):
        fs.rm(path)


def makedirs(uri: str) -> None:
    """Create a folder and its parents."""
    fs, path = filesystem(uri)
    fs.makedirs(path, exist_ok=True)


@contextmanager
def atomic_open(uri: str, mode: str = "wb") -> Iterator[IO[Any]]:
    """Open ``uri`` for writing through a temporary sibling that is renamed onto ``uri`` only on success."""
    fs, path = filesystem(uri)
    parent = path.rsplit("/", 1)[0] if "/" in path else ""
    if parent:
        fs.makedirs(parent, exist_ok=True)
    tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        with fs.open(tmp, mode) as f:
            yield f
        fs.mv(tmp, path)
    except OSError as exc:
        if fs.exists(tmp):
            fs.rm(tmp)
        if exc.filename is None and exc.errno is not None:  # name the file people will look for in the message
            raise OSError(exc.errno, exc.strerror or str(exc), uri) from exc
        raise
    except BaseException:
        if fs.exists(tmp):
            fs.rm(tmp)
        raise


def write_bytes(uri: str, data: bytes) -> None:
    """Write a whole file atomically."""
    with atomic_open(uri, "wb") as f:
        f.write(data)


def read_bytes(uri: str) -> bytes:
    """Read a whole file."""
    with fsspec.open(uri, "rb") as f:
        data: bytes = f.read()
    return data


def upload(local: Path, uri: str) -> None:
    """Copy a local file to ``uri`` atomically."""
    with atomic_open(uri, "wb") as dst, open(local, "rb") as src:
        while chunk := src.read(1 << 22):
            dst.write(chunk)


def cache_root() -> Path:
    """sam2flow's cache folder (``SAM2FLOW_CACHE``, default ``~/.cache/sam2flow``): checkpoints, inputs, digests."""
    return Path(os.environ.get("SAM2FLOW_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "sam2flow"))


def content_digest(uri: str) -> str:
    """sha256 of a file's whole content (local path or URI).

    Reading a long video takes a while, so the digest is remembered under the cache, keyed by the file's URI and
    what its filesystem says of it (size and modification time, or an object store's ETag): it is computed again
    only when the file changes. An edit anywhere in the file, even one that keeps its size, changes the digest.
    """
    fs, path = filesystem(uri)
    key = hashlib.sha256(f"{uri}|{fs.ukey(path)}".encode()).hexdigest()[:40]
    memo = cache_root() / "digests" / key
    if memo.is_file():
        return memo.read_text().strip()
    h = hashlib.sha256()
    with fs.open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    digest = h.hexdigest()
    memo.parent.mkdir(parents=True, exist_ok=True)
    tmp = memo.with_name(f"{memo.name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.write_text(digest + "\n")
    tmp.replace(memo)
    return digest


def sha256_file(path: Path) -> str:
    """Full sha256 of a local file (remembered per path, size and modification time within a process)."""
    st = os.stat(path)
    return _sha256_cached(str(Path(path).resolve()), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _sha256_cached(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def localize(uri: str, cache_dir: Path) -> Path:
    """A local path for ``uri``: the path itself when local, else a cached copy keyed by the URI's content digest."""
    if not is_remote(uri):
        return Path(uri[len("file://") :] if uri.startswith("file://") else uri)
    digest = content_digest(uri)[:16]
    name = os.path.basename(uri.rstrip("/")) or "input"
    target = cache_dir / digest / name
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + f".tmp-{uuid.uuid4().hex[:8]}")
        fs, path = filesystem(uri)
        fs.get(path, str(tmp))
        tmp.replace(target)
    return target
