"""Atomic file output shared by the CLI (cropped images) and the weights writer: write a temporary file beside
the destination, fsync it, then rename it into place, so a reader never sees a partial file and a failed
write leaves the destination untouched."""

from __future__ import annotations

import contextlib
import os
import tempfile
from typing import BinaryIO, Iterator, Optional

_UMASK: Optional[int] = None


def umask() -> int:
    """The process umask, read once (reading it means setting it; do that before worker threads start)."""
    global _UMASK
    if _UMASK is None:
        _UMASK = os.umask(0o022)
        os.umask(_UMASK)
    return _UMASK


@contextlib.contextmanager
def atomic_open(path: "os.PathLike[str] | str") -> Iterator[BinaryIO]:
    """Binary file object for ``path``'s new content; on a clean exit it replaces ``path`` (mode 0666 minus the
    umask), on an exception the temporary file is removed and ``path`` is unchanged."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    try:
        os.chmod(tmp, 0o666 & ~umask())
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
