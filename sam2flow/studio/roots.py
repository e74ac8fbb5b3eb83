"""The folders (or URI prefixes) the studio may read and write: nothing outside them is served or written."""

from __future__ import annotations

from pathlib import Path

from sam2flow.errors import InputError
from sam2flow.io import storage


class PathRefused(InputError):
    """A path outside every root (or a malformed one): the studio refuses it."""


class Roots:
    """Local folders and URI prefixes; `check` returns a path in canonical form or refuses it."""

    def __init__(self, roots: list[str]) -> None:
        if not roots:
            raise PathRefused("the studio needs at least one --root: the folders it may read and write")
        self.local = [Path(r).resolve() for r in roots if not storage.is_remote(r)]
        self.remote = [r.rstrip("/") + "/" for r in roots if storage.is_remote(r)]

    def check(self, path: str) -> str:
        """``path`` (local or URI) when it lies under a root.

        Raises:
            PathRefused: Otherwise, naming the path and the roots.
        """
        if not path:
            raise PathRefused("no path given")
        if storage.is_remote(path):
            if ".." not in path.split("/") and any(path.startswith(r) for r in self.remote):
                return path
        else:
            p = Path(path).resolve()
            if any(p == r or r in p.parents for r in self.local):
                return str(p)
        raise PathRefused(f"{path} is outside the studio's roots ({', '.join(self.names())})")

    def names(self) -> list[str]:
        """The roots as given, for messages and the start page."""
        return [*(str(r) for r in self.local), *self.remote]

    def listing(self, suffixes: tuple[str, ...] = (".mp4", ".mov", ".mkv", ".avi", ".webm")) -> dict[str, list[str]]:
        """Videos and finished runs (folders with manifest.json) under the local roots, at most 200 of each."""
        videos: list[str] = []
        runs: list[str] = []
        for root in self.local:
            for p in sorted(root.rglob("*")):
                if p.is_file() and p.suffix.lower() in suffixes and "export" not in p.parts and len(videos) < 200:
                    videos.append(str(p))
                elif p.name == "manifest.json" and (p.parent / "_SUCCESS").is_file() and len(runs) < 200:
                    runs.append(str(p.parent))
        return {"videos": videos, "runs": runs}
