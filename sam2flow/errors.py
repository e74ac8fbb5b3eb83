"""Errors a user can fix (bad input, a bad checkpoint, no room to write) and which failures are worth retrying.

Every such error names the input and says what to do. The command line prints it and exits 2; no task retries it,
since the same input would fail the same way again.
"""

from __future__ import annotations

import errno

PERMANENT_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR, errno.EISDIR, errno.ENOENT}
)
"""OS errors that another attempt would meet again: no space, read-only, no permission, wrong kind of path."""


class InputError(Exception):
    """Bad input or settings: the message names what is wrong and what to do."""


def is_permanent(exc: BaseException) -> bool:
    """Whether retrying the step that raised ``exc`` cannot help."""
    return isinstance(exc, InputError) or (isinstance(exc, OSError) and exc.errno in PERMANENT_ERRNOS)


REMEDIES = {
    errno.ENOSPC: "free some space there or choose a folder on another disk",
    errno.EDQUOT: "free some space there or choose a folder on another disk",
    errno.EROFS: "choose a writable folder",
    errno.EACCES: "check the permissions, or choose another folder",
    errno.EPERM: "check the permissions, or choose another folder",
}


def describe(exc: OSError) -> str:
    """One line for people about an OS error: what happened, where, and what to do."""
    where = f" ({exc.filename})" if exc.filename else ""
    remedy = REMEDIES.get(exc.errno or 0, "check the path")
    return f"{exc.strerror or exc}{where}: {remedy}"
