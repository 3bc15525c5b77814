"""Opening input files (images, weights): only regular files are read.

A FIFO blocks ``open()`` until a writer appears and ``/dev/zero`` reads without end, so every input path is
opened with ``O_NONBLOCK`` (which never blocks on a FIFO), checked with ``fstat`` on the opened descriptor
(no race between the check and the read) and refused unless it is a regular file.
"""

from __future__ import annotations

import errno
import io
import os
import stat
from typing import BinaryIO

__all__ = ["NotRegularFileError", "open_regular", "kind_of"]

_KINDS = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"))


def kind_of(mode: int) -> str:
    """Words for what a ``st_mode`` that is not a regular file or folder names ("a FIFO", "a socket"...)."""
    return next((k for test, k in _KINDS if test(mode)), "not a regular file")


class NotRegularFileError(ValueError):
    """A path names something other than a regular file (a FIFO, a device, a socket)."""


def open_regular(path: "str | os.PathLike[str]") -> BinaryIO:
    """Open ``path`` for binary reading if it is a regular file (symbolic links followed).

    Returns:
        A buffered binary file object the caller closes.
    Raises:
        FileNotFoundError, PermissionError and other OSError from ``open(2)`` (the operating system's reason,
        e.g. ``ELOOP`` for a symbolic link loop); IsADirectoryError for a folder; NotRegularFileError for a
        FIFO, device or socket (before reading a byte).
    """
    name = os.fspath(path)
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(name, flags)
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), name)
        if not stat.S_ISREG(st.st_mode):
            raise NotRegularFileError(f"{name}: not a regular file ({kind_of(st.st_mode)}); refusing to read it")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return io.open(fd, "rb", closefd=True)
    except BaseException:
        os.close(fd)
        raise

