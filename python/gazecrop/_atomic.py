"""Atomic file output: the one way gazecrop writes files (cropped images, heatmaps, thumbnails, weights,
training checkpoints).

Rules, each tested in ``tests/test_faults.py``:

- Content goes to a hidden temporary file beside the destination (``.NAME.gzPID_RANDOM.tmp``), through
  :func:`_write`, which loops until the kernel has taken every byte (a short ``write(2)`` is retried, a
  ``write`` that takes nothing is an error). Libraries get a file object without ``fileno()``, so they cannot
  bypass that loop (Pillow's encoders write to a raw descriptor and ignore short writes; on a full disk a
  progressive JPEG, written in one call, was silently truncated).
- Before the rename the file's size on disk must equal the number of bytes written (and, for
  :func:`write_bytes`, the size of the encoded data), the file is fsynced, and any error leaves the
  destination untouched and removes the temporary file.
- After the rename the folder is fsynced, so the new name survives a crash.
- Each writer holds an exclusive ``flock`` on its temporary file. The first atomic write of a process into a
  folder removes temporary files of this naming scheme that no live writer holds (left by a ``SIGKILL`` or a
  power cut); files of other programs and temporary files still being written are never touched.
- :func:`cancel_pending` (used by the command line on ``SIGINT`` / ``SIGTERM`` / a closed standard output)
  removes the temporary files of every write in progress and refuses new ones, so a process that stops on a
  signal leaves neither partial nor hidden files.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import re
import secrets
import tempfile
import threading
from typing import Dict, Iterator, Optional, Set

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None  # type: ignore[assignment]

__all__ = ["atomic_open", "write_bytes", "write_text", "cancel_pending", "allow_writes", "WriteCancelled", "umask",
           "TEMP_PATTERN", "CHUNK"]

CHUNK = 1 << 20
"""Largest number of bytes handed to one :func:`_write` call."""

TEMP_PATTERN = re.compile(r"^\.(?P<name>.+)\.gz(?P<pid>[0-9]+)_[A-Za-z0-9_]+\.tmp$")
"""Names of gazecrop's temporary files (``.NAME.gzPID_RANDOM.tmp``); nothing else is ever cleaned up."""

_NAME_BYTES = 128
"""At most this many bytes of the destination's name go into a temporary file's name (NAME_MAX is 255)."""

_write = os.write
"""The one place bytes reach the operating system: ``_write(fd, memoryview) -> bytes taken``. Tests replace
it with writers that short-write, fail or lie."""

_UMASK: Optional[int] = None
_LOCK = threading.Lock()
_PENDING: Dict[str, "_Writer"] = {}  # temporary path -> its writer, while a write is in progress
_CLEANED: Set[str] = set()  # folders (real paths) already swept for stale temporary files
_REFUSING = False


class WriteCancelled(OSError):
    """The write was cancelled by :func:`cancel_pending` (the process is stopping); nothing was published."""


def umask() -> int:
    """The process umask, read once (reading it means setting it; do that before worker threads start)."""
    global _UMASK
    if _UMASK is None:
        _UMASK = os.umask(0o022)
        os.umask(_UMASK)
    return _UMASK


class _Writer(io.RawIOBase):
    """Binary, seekable, write-only file object over a temporary file's descriptor. ``write`` takes all bytes
    or raises; there is no ``fileno()`` (see the module docstring)."""

    def __init__(self, fd: int, tmp: str) -> None:
        super().__init__()
        self._fd, self.tmp = fd, tmp
        self._pos = self.end = 0
        self.cancelled = False

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def fileno(self) -> int:
        raise io.UnsupportedOperation("gazecrop atomic writes go through write() only")

    def _check(self) -> None:
        if self.cancelled:
            raise WriteCancelled(errno.ECANCELED, "write cancelled (the process is stopping)", self.tmp)

    def write(self, data) -> int:  # type: ignore[override]
        self._check()
        view = memoryview(data).cast("B")
        total, done = len(view), 0
        while done < total:
            n = _write(self._fd, view[done:done + CHUNK])
            if not isinstance(n, int) or n <= 0:
                raise OSError(errno.ENOSPC, f"write took {n!r} of {min(total - done, CHUNK)} bytes (disk full?)",
                              self.tmp)
            done += n
            self._check()
        self._pos += total
        self.end = max(self.end, self._pos)
        return total

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        self._pos = os.lseek(self._fd, offset, whence)
        return self._pos

    def tell(self) -> int:
        return self._pos


def _fsync_folder(folder: str) -> None:
    """fsync a folder so that a rename in it is durable; file systems that cannot (EINVAL...) are skipped."""
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(folder, flags)
    except OSError:
        return  # e.g. a folder we may write but not read: the rename happened, nothing more to do
    try:
        os.fsync(fd)
    except OSError as e:
        if e.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF, errno.EROFS):
            raise
    finally:
        os.close(fd)


def _alive(pid: int) -> bool:
    """Whether process ``pid`` still runs. A zombie (exited, not yet reaped: a worker orphaned by a killed
    driver, in a container whose PID 1 does not reap) has stopped writing: not alive."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: another user's live process
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):  # no /proc (macOS): signal 0 is all there is
        return True


def clean_stale(folder: str) -> int:
    """Remove gazecrop temporary files in ``folder`` (:data:`TEMP_PATTERN`) that no live writer holds: their
    ``flock`` is free and their process (the PID in the name) is gone, or is this process but the file is
    none of its writes in progress (left by an earlier process with the same PID, as in containers). Returns how many were removed. Errors
    (an unreadable folder, a file that vanished) are ignored: cleaning is best effort."""
    if fcntl is None:  # pragma: no cover
        return 0
    removed = 0
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return 0
    for entry in entries:
        m = TEMP_PATTERN.match(entry.name)
        if not m:
            continue
        if int(m["pid"]) == os.getpid():  # ours, unless an earlier process had our PID (containers: PID 1)
            with _LOCK:  # (temporary names are unique: mkstemp's random part)
                if any(os.path.basename(t) == entry.name for t in _PENDING):
                    continue
        elif _alive(int(m["pid"])):
            continue
        try:
            fd = os.open(entry.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        except OSError:
            continue
        try:
            if not entry.is_file(follow_symlinks=False):
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                continue  # a live writer (another host or PID namespace) holds it
            st, now = os.fstat(fd), os.stat(entry.path, follow_symlinks=False)
            if (st.st_dev, st.st_ino) == (now.st_dev, now.st_ino):
                os.unlink(entry.path)
                removed += 1
        except OSError:
            pass
        finally:
            os.close(fd)
    return removed


def _clean_once(folder: str) -> None:
    key = os.path.realpath(folder)
    with _LOCK:
        if key in _CLEANED:
            return
        _CLEANED.add(key)
    clean_stale(folder)


def _new_temp(path: str) -> "_Writer":
    folder = os.path.dirname(os.path.abspath(path))
    _clean_once(folder)
    short = os.fsdecode(os.fsencode(os.path.basename(path))[:_NAME_BYTES])  # a long name still fits
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    with _LOCK:  # registered under the lock, so cancel_pending() never misses a temporary file
        for _ in range(tempfile.TMP_MAX):
            if _REFUSING:
                raise WriteCancelled(errno.ECANCELED, "write refused (the process is stopping)", path)
            tmp = os.path.join(folder, f".{short}.gz{os.getpid()}_{secrets.token_hex(6)}.tmp")
            # The name is registered before the file exists: a signal's exception (the command line's stop)
            # can arrive between any two bytecodes, and cancel_pending() must find every file created here.
            w = _Writer(-1, tmp)
            _PENDING[tmp] = w
            try:
                w._fd = os.open(tmp, flags, 0o600)
                break
            except FileExistsError:
                del _PENDING[tmp]
            except OSError:  # not created
                del _PENDING[tmp]
                raise
            except BaseException:  # a signal's exception, during or just after the open: ours if it exists
                del _PENDING[tmp]
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
        else:  # pragma: no cover - TMP_MAX random names all taken
            raise FileExistsError(errno.EEXIST, "no free temporary file name", folder)
    fd = w._fd
    if fcntl is not None:
        with contextlib.suppress(OSError):  # our own new file: never blocks; where locks are missing (ENOLCK),
            fcntl.flock(fd, fcntl.LOCK_EX)  # the PID in the name still protects it from cleaners on this host
    return w


@contextlib.contextmanager
def atomic_open(path: "os.PathLike[str] | str") -> Iterator[io.RawIOBase]:
    """Binary file object for ``path``'s new content; on a clean exit it replaces ``path`` (mode 0666 minus the
    umask) after checking that every byte reached the file and fsyncing it, then fsyncs the folder. On an
    exception (or a short or failed write) the temporary file is removed and ``path`` is unchanged.

    Raises:
        OSError: the write or the rename failed (ENOSPC for a full disk), or ``path``'s name matches
        :data:`TEMP_PATTERN` (EINVAL: the clean-up of stale files would remove it); WriteCancelled when
        :func:`cancel_pending` stopped it. Exceptions from the ``with`` body propagate unchanged.
    """
    path = os.fspath(path)
    if TEMP_PATTERN.match(os.path.basename(path)):  # the stale-file clean-up would delete it later
        raise OSError(errno.EINVAL, "name reserved for gazecrop's temporary files", path)
    w = _new_temp(path)
    fd, tmp = w._fd, w.tmp
    try:
        try:
            os.fchmod(fd, 0o666 & ~umask())
            yield w
            w._check()
            size = os.fstat(fd).st_size
            if size != w.end:
                raise OSError(errno.EIO, f"{w.end} bytes written but the file holds {size} (disk full?)", path)
            os.fsync(fd)
            w._check()
            os.replace(tmp, path)  # still holding the descriptor (and its lock): no cleaner can take it
        finally:
            w.close()
            os.close(fd)
        with _LOCK:
            _PENDING.pop(tmp, None)
        _fsync_folder(os.path.dirname(os.path.abspath(path)))
    except BaseException:
        with _LOCK:
            _PENDING.pop(tmp, None)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_bytes(path: "os.PathLike[str] | str", data: "bytes | bytearray | memoryview") -> int:
    """Write ``data`` to ``path`` atomically (:func:`atomic_open`); checks that the file holds exactly
    ``len(data)`` bytes before the rename. Returns the number of bytes written."""
    n = memoryview(data).nbytes
    with atomic_open(path) as f:
        f.write(data)
        if f.end != n:  # pragma: no cover - write() takes everything or raises
            raise OSError(errno.EIO, f"{f.end} of {n} bytes written", os.fspath(path))
    return n


def write_text(path: "os.PathLike[str] | str", text: str, encoding: str = "utf-8") -> int:
    """Write ``text`` (JSON, CSV, a marker file) to ``path`` atomically (:func:`write_bytes`), encoded as
    ``encoding``. Returns the number of bytes written."""
    return write_bytes(path, text.encode(encoding))


def cancel_pending() -> int:
    """Stop every atomic write in progress (their temporary files are removed now; their writers raise
    :class:`WriteCancelled` and never rename) and refuse new ones until :func:`allow_writes`. For a process
    that is stopping (signals, closed output). Safe to call from any thread; returns how many were stopped."""
    global _REFUSING
    with _LOCK:
        _REFUSING = True
        pending = list(_PENDING.items())
        _PENDING.clear()
    for tmp, w in pending:
        w.cancelled = True
        with contextlib.suppress(OSError):
            os.unlink(tmp)
    return len(pending)


def allow_writes() -> None:
    """Undo the refusal of :func:`cancel_pending` (a new command-line run in the same process)."""
    global _REFUSING
    with _LOCK:
        _REFUSING = False
