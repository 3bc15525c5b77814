"""A local cluster dies with the process that started it.

``gazecrop-batch --engine ray`` (and :func:`gazecrop.ray.run` without an address) start a local Ray cluster: the
GCS, raylet, agents and worker processes, all descendants of the driver. When the driver is killed with
``SIGKILL`` it cannot shut them down, and they outlive it: measured on Ray 2.60, the cropping actors for 2-5 s
and Ray's dashboard and runtime-env agents for as long as anyone waited (over 30 s). A cropping worker still
writing while the job is rerun leaves a temporary file behind that nobody removes (``benchmarks/soak.py``'s
batch scenario found one). Dask's local workers need none of this: they die with their driver (measured on
Dask 2026.8; ``tests/test_batch_engines.py`` checks both engines).

:class:`ClusterReaper` starts a small watcher process (in its own session, so that a signal to the driver's
process group does not reach it) holding the read end of a pipe that only the driver writes to, and waits until
it says it is ready. Every ``interval`` seconds the watcher records the driver's child processes started since
the reaper was made and all their descendants (pid and start time, through psutil, so a reused pid is never
mistaken for one of them). The driver also marks the processes it starts while the cluster comes up with an
environment variable (:meth:`ClusterReaper.marking`; Ray's GCS, raylet and workers inherit it). When the pipe
reaches end of file (the driver is gone, however it ended) the watcher stops (``SIGSTOP``) every recorded
process still alive, every process started since the watcher with the mark, and their descendants, so none can
fork or write any more, then kills them all (``SIGKILL``) and exits: within a fraction of a second of the
driver's death, before a rerun can start. The mark catches what the recording cannot: a worker started and
orphaned within one interval (Ray's raylet dies with the driver, and its newest children are handed to init).
After the engine's own clean shutdown the driver closes the watcher, which kills nothing. Clusters the user
started (``--address``, or a Ray this process already joined) are never watched.

Caveat: while the reaper is open, every child process the driver starts is treated as the cluster's (killed if
the driver dies abruptly; left alone after a clean close). POSIX only (needs psutil, a dependency of the ``ray``
extra); elsewhere :class:`ClusterReaper` is a no-op, and when its watcher cannot start it warns and does nothing.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import time
import warnings
from typing import Dict, Iterator, List, Optional, Set, Tuple

__all__ = ["ClusterReaper", "MARK", "INTERVAL"]

INTERVAL = 0.5
"""Seconds between two records of the cluster's processes (one psutil scan of the process table each)."""

MARK = "GAZECROP_CLUSTER_MARK"
"""Environment variable that marks the processes started while the cluster comes up (:meth:`ClusterReaper.marking`)."""

READY_TIMEOUT = 30.0
"""Seconds the driver waits for the watcher to say it is ready."""

# The watcher is started with -c and the package's own folder first on sys.path, in place of the current
# directory (a psutil.py or gazecrop/ in the current folder must not shadow the real ones).
_BOOT = "import sys; sys.path[0] = sys.argv[1]; from gazecrop._reaper import _main; sys.exit(_main(sys.argv[2:]))"

_WRITE_ENDS: Set[int] = set()
"""Pipe ends held by open reapers: a child forked without exec closes its copies (or the pipe would never reach
end of file while the child lives)."""


def _close_in_child() -> None:
    for fd in list(_WRITE_ENDS):
        try:
            os.close(fd)
        except OSError:
            pass
    _WRITE_ENDS.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_close_in_child)


class ClusterReaper:
    """Context manager that makes the processes of a local cluster die with the current process (the driver).

    Open it just before starting the cluster and start the cluster inside :meth:`marking`; :meth:`close` (or
    leaving the ``with`` block) after the engine's own shutdown ends the watcher without killing anything. If
    the driver dies first, however it ends, the watcher kills the driver's children started since the reaper
    was made, the marked processes and all their descendants (module docstring). :meth:`kill` does the same on
    purpose (a cluster whose start failed). Processes the driver had before are never touched.

    Raises nothing: when the watcher cannot start (not POSIX, psutil missing) it does nothing; when it starts
    but does not answer it warns (RuntimeWarning) and does nothing.
    """

    def __init__(self, interval: float = INTERVAL) -> None:
        self._proc: Optional[subprocess.Popen] = None
        self._fd: Optional[int] = None
        self.token = f"{os.getpid()}.{time.time_ns()}"
        if os.name != "posix":
            return
        try:
            import psutil
        except ImportError:
            return
        me = psutil.Process()
        before = ",".join(str(c.pid) for c in me.children())
        pkg_parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        r, w = os.pipe()  # not inheritable (PEP 446): the cluster's processes do not hold the write end
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-c", _BOOT, pkg_parent, str(interval), str(me.pid), repr(me.create_time()),
                 self.token, before],
                stdin=r, stdout=subprocess.PIPE, start_new_session=True, close_fds=True)
        except OSError as e:
            os.close(w)
            warnings.warn(f"gazecrop: the cluster watcher could not start ({e}); a driver killed with SIGKILL "
                          "may leave the local cluster's processes behind", RuntimeWarning, stacklevel=2)
            return
        finally:
            os.close(r)
        self._fd = w
        _WRITE_ENDS.add(w)
        ready, _, _ = select.select([self._proc.stdout], [], [], READY_TIMEOUT)
        line = self._proc.stdout.readline() if ready else b""
        if line != b"ready\n":
            self.close()
            warnings.warn("gazecrop: the cluster watcher did not start (" + (
                "no answer in %.0f s" % READY_TIMEOUT if not ready else f"it said {line!r}") + "); a driver "
                "killed with SIGKILL may leave the local cluster's processes behind", RuntimeWarning, stacklevel=2)

    @property
    def pid(self) -> Optional[int]:
        """The watcher's process id (None when it is not running)."""
        return None if self._proc is None else self._proc.pid

    @property
    def active(self) -> bool:
        """Whether a watcher is running and will reap the cluster if this process dies."""
        return self._fd is not None

    @contextlib.contextmanager
    def marking(self) -> Iterator[None]:
        """Within the block, processes this driver starts (and theirs) carry :data:`MARK` in their environment
        (the previous value, if any, is restored after)."""
        old = os.environ.get(MARK)
        os.environ[MARK] = self.token
        try:
            yield
        finally:
            if old is None:
                os.environ.pop(MARK, None)
            else:
                os.environ[MARK] = old

    def close(self) -> None:
        """End the watcher without killing anything (the cluster was shut down); idempotent."""
        self._end(b"close\n")

    def kill(self) -> None:
        """End the watcher after it has killed the cluster's processes (as if the driver had died); idempotent."""
        self._end(b"")

    def _end(self, msg: bytes) -> None:
        if self._fd is not None:
            if msg:
                try:
                    os.write(self._fd, msg)
                except OSError:
                    pass
            _WRITE_ENDS.discard(self._fd)
            os.close(self._fd)
            self._fd = None
        if self._proc is not None:
            try:
                self._proc.wait(timeout=30)
            except subprocess.TimeoutExpired:  # pragma: no cover - a watcher stuck in the kernel
                self._proc.kill()
                self._proc.wait()
            self._proc.stdout.close()
            self._proc = None

    def __enter__(self) -> "ClusterReaper":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _table(psutil) -> Dict[int, Tuple[int, float]]:
    """pid -> (parent pid, start time) of every process (one scan of the process table)."""
    out = {}
    for p in psutil.process_iter(["ppid", "create_time"]):
        if p.info["ppid"] is not None and p.info["create_time"] is not None:
            out[p.pid] = (p.info["ppid"], p.info["create_time"])
    return out


def _descendants(table: Dict[int, Tuple[int, float]], roots: List[int]) -> List[int]:
    kids: Dict[int, List[int]] = {}
    for pid, (ppid, _) in table.items():
        kids.setdefault(ppid, []).append(pid)
    out, todo = [], list(roots)
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += kids.get(pid, [])
    return out


def _record(psutil, driver: Tuple[int, float], before: Set[int], own: int, seen: Dict[int, float]) -> None:
    """Add the driver's new children and every descendant of them or of a recorded process to ``seen`` (pid ->
    start time; a reused pid gets its new start time)."""
    table = _table(psutil)
    roots = [pid for pid, (ppid, _) in table.items() if ppid == driver[0] and pid not in before and pid != own]
    if driver[0] not in table or abs(table[driver[0]][1] - driver[1]) > 0.01:
        roots = []  # the driver is gone (or its pid reused): its children are no longer ours to find
    roots += [pid for pid, started in seen.items() if pid in table and abs(table[pid][1] - started) <= 0.01]
    for pid in _descendants(table, roots):
        seen[pid] = table[pid][1]


def _marked(psutil, token: str, since: float) -> Dict[int, float]:
    """Processes started since ``since`` (epoch seconds) whose environment holds :data:`MARK` = ``token``."""
    out = {}
    for p in psutil.process_iter(["create_time"]):
        started = p.info["create_time"]
        if started is None or started < since:
            continue
        try:
            if p.environ().get(MARK) == token:
                out[p.pid] = started
        except psutil.Error:
            pass
    return out


def _reap(psutil, seen: Dict[int, float]) -> int:
    """SIGSTOP then SIGKILL every process of ``seen`` (pid -> start time) still alive with the same start time,
    and their descendants (found while they are stopped, so none escapes by forking or by its parent dying
    first). Returns how many were killed."""
    procs: Dict[int, "psutil.Process"] = {}
    todo: List[Tuple[int, Optional[float]]] = list(seen.items())
    while todo:
        pid, started = todo.pop()
        if pid in procs:
            continue
        try:
            p = psutil.Process(pid)
            if started is not None and abs(p.create_time() - started) > 0.01:
                continue  # the pid was reused
            p.send_signal(signal.SIGSTOP)
            procs[pid] = p
            todo += [(c.pid, None) for c in p.children()]
        except psutil.Error:
            pass
    for p in procs.values():
        try:
            p.kill()
        except psutil.Error:
            pass
    return len(procs)


def _main(argv: List[str]) -> int:
    """The watcher: ``INTERVAL DRIVER_PID DRIVER_START TOKEN BEFORE`` (BEFORE: the driver's earlier children,
    comma-separated). Reads the driver's pipe on stdin; says ``ready`` on stdout."""
    import psutil

    interval, driver = float(argv[0]), (int(argv[1]), float(argv[2]))
    token, before = argv[3], {int(x) for x in argv[4].split(",") if x} if len(argv) > 4 else set()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the terminal's Ctrl-C is the driver's to handle
    own = os.getpid()
    since = psutil.Process(own).create_time() - 1.0
    seen: Dict[int, float] = {}
    _record(psutil, driver, before, own, seen)
    os.write(1, b"ready\n")
    buf = b""
    while True:
        ready, _, _ = select.select([0], [], [], interval)
        if ready:
            data = os.read(0, 4096)
            if not data:  # end of file: the driver is gone (or called kill)
                seen.update(_marked(psutil, token, since))
                _reap(psutil, seen)
                return 0
            buf += data
            if b"close\n" in buf:  # a clean close: the engine shut its cluster down
                return 0
        _record(psutil, driver, before, own, seen)


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
