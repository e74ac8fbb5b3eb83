"""A folder of outputs (an export, a report) built locally and published whole, or not at all."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from pathlib import Path

from sam2flow.io import storage
from sam2flow.io.storage import StorageError


def check_replaceable(target: str, last: str, what: str) -> None:
    """Refuse to publish onto ``target`` when that would destroy something that is not an earlier folder of this kind
    (one holding ``last``): a file, or a folder with other files in it. A missing or empty folder is fine.

    Raises:
        StorageError: Naming the target and what to do, with nothing touched.
    """
    fs, path = storage.filesystem(target)
    if not fs.exists(path):
        return
    if not fs.isdir(path):
        raise StorageError(f"{target} is a file, not a folder: give a new folder (or an earlier {what}) for the {what}")
    if fs.ls(path, detail=False) and not fs.isfile(f"{path.rstrip('/')}/{last}"):
        raise StorageError(
            f"{target} is a folder with other files in it, not an earlier sam2flow {what} (it has no {last}): give a "
            f"new or empty folder; an earlier {what} there would be replaced whole"
        )


class StagedFolder:
    """A local folder to build outputs in, published onto ``target`` only when the build succeeds.

    A local target is swapped in by renames (what was there before is replaced whole). A remote target gets each
    file uploaded, with ``last`` (removed first) uploaded last: a remote folder without it is incomplete.
    """

    def __init__(self, target: str, last: str) -> None:
        self.target, self.last = target, last
        self.remote = storage.is_remote(target)
        if self.remote:
            self.folder = Path(tempfile.mkdtemp(prefix="sam2flow-staged-"))
        else:
            parent = Path(target).parent
            try:
                parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StorageError(f"cannot write to {target}: {exc.strerror or exc}") from exc
            self.folder = parent / f".{Path(target).name}.tmp-{uuid.uuid4().hex[:8]}"
            self.folder.mkdir()

    def __enter__(self) -> Path:
        return self.folder

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        try:
            if exc_type is None:
                self._publish()
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)

    def _publish(self) -> None:
        if self.remote:
            storage.remove(storage.join(self.target, self.last))
            files = sorted(p for p in self.folder.rglob("*") if p.is_file() and p.name != self.last)
            for p in [*files, self.folder / self.last]:
                storage.upload(p, storage.join(self.target, p.relative_to(self.folder).as_posix()))
            return
        final = Path(self.target)
        old = final.with_name(f".{final.name}.old-{uuid.uuid4().hex[:8]}")
        if final.exists():
            final.rename(old)
        self.folder.rename(final)
        shutil.rmtree(old, ignore_errors=True)
